"""Render Statuses for people: kubectl-get-like tables per kind, then every condition worth reading.

Used by the status command and the debug dump; reads only the status dicts, so what it shows is exactly
what would be written back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from kthena_router.reconcile.status import Statuses, ref_key


def _cell(conditions: Iterable[dict[str, Any]], type_: str) -> str:
    for c in conditions:
        if c["type"] == type_:
            return c["status"] if c["reason"] == type_ else f"{c['status']}/{c['reason']}"
    return "-"


def _healthy(c: dict[str, Any]) -> bool:
    if c["type"] == "Conflicted":
        return c["status"] == "False"
    if c["type"] == "PartiallyInvalid":
        return False
    return c["status"] == "True" and c["reason"] == c["type"]


def _table(title: str, header: Sequence[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [list(header), *rows]) for i in range(len(header))]
    lines = [title]
    for row in [list(header), *rows]:
        lines.append("   ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        lines.append("(none)")
    return lines


def _parent_name(parent_ref: dict[str, Any]) -> str:
    name = f"{parent_ref['namespace']}/{parent_ref['name']}"
    if parent_ref.get("sectionName"):
        name += f"/{parent_ref['sectionName']}"
    if parent_ref.get("port"):
        name += f":{parent_ref['port']}"
    return name


def format_statuses(statuses: Statuses) -> str:
    """Tables for GatewayClasses, Gateways, HTTPRoutes and InferencePools, then the notable conditions."""
    out: list[str] = []
    notes: list[str] = []

    def note(what: str, conds: Iterable[dict[str, Any]]) -> None:
        for c in conds:
            if not _healthy(c) or c["message"]:
                text = f"{what}: {c['type']}={c['status']} {c['reason']}"
                notes.append(f"{text}: {c['message']}" if c["message"] else text)

    rows = []
    for name in sorted(statuses.gateway_classes):
        conds = statuses.gateway_classes[name]["conditions"]
        rows.append([name, _cell(conds, "Accepted"), _cell(conds, "SupportedVersion")])
        note(f"GatewayClass {name}", conds)
    out += _table("GATEWAYCLASSES", ["NAME", "ACCEPTED", "SUPPORTEDVERSION"], rows)

    rows = []
    for ref in sorted(statuses.gateways):
        status = statuses.gateways[ref]
        conds = status["conditions"]
        listeners = ", ".join(f"{ls['name']}({ls['attachedRoutes']})" for ls in status["listeners"])
        addresses = ", ".join(a["value"] for a in status["addresses"]) or "-"
        rows.append([ref.namespace, ref.name, _cell(conds, "Accepted"), _cell(conds, "Programmed"),
                     listeners or "-", addresses])
        note(f"Gateway {ref_key(ref)}", conds)
        for ls in status["listeners"]:
            note(f"Gateway {ref_key(ref)} listener {ls['name']}", ls["conditions"])
    out.append("")
    out += _table("GATEWAYS", ["NAMESPACE", "NAME", "ACCEPTED", "PROGRAMMED", "LISTENERS(ROUTES)", "ADDRESSES"],
                  rows)

    for title, kind, entries in (("HTTPROUTES", "HTTPRoute", statuses.http_routes),
                                 ("INFERENCEPOOLS", "InferencePool", statuses.pools)):
        rows = []
        for ref in sorted(entries):
            parents = entries[ref]["parents"]
            if not parents:
                rows.append([ref.namespace, ref.name, "-", "-", "-"])
            for p in parents:
                parent = _parent_name(p["parentRef"])
                conds = p["conditions"]
                rows.append([ref.namespace, ref.name, parent, _cell(conds, "Accepted"),
                             _cell(conds, "ResolvedRefs")])
                note(f"{kind} {ref_key(ref)} parent {parent}", conds)
        out.append("")
        out += _table(title, ["NAMESPACE", "NAME", "PARENT", "ACCEPTED", "RESOLVEDREFS"], rows)

    out.append("")
    out.append("CONDITIONS")
    out += notes or ["(all healthy)"]
    return "\n".join(out) + "\n"
