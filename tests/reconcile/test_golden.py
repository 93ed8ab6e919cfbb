"""Reconcile as data: every `cases/<rule>.in.yaml` (manifests) must reconcile to `cases/<rule>.out.yaml`
(a summary of the Snapshot plus every status). Run with `--update-golden` to rewrite the outputs, then
review the diff. Loading and rendering live in `conftest.py`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from kthena_router.reconcile import format_statuses, reconcile
from kthena_router.resources import Resources

CASES = Path(__file__).parent / "cases"
CASE_NAMES = sorted(p.name.removesuffix(".in.yaml") for p in CASES.glob("*.in.yaml"))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_golden(name: str, update_golden: bool, load_case, render) -> None:
    resources, options = load_case(name)
    result = reconcile(resources, options)
    assert result.ports == frozenset(result.snapshot.ports)
    got = render(result)
    out = CASES / f"{name}.out.yaml"
    if update_golden or not out.exists():
        out.write_text(got)
        if not update_golden:
            pytest.fail(f"{out.name} did not exist; wrote it, review it")
    assert got == out.read_text(), f"reconcile output for {name} changed; rerun with --update-golden and review"


def _reversed(mapping: Any) -> dict:
    return dict(reversed(list(mapping.items())))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_output_does_not_depend_on_input_order(name: str, load_case, render) -> None:
    resources, options = load_case(name)
    shuffled = Resources(**{f.name: _reversed(getattr(resources, f.name)) for f in dataclasses.fields(Resources)})
    assert render(reconcile(shuffled, options)) == render(reconcile(resources, options))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_statuses_print(name: str, load_case) -> None:
    resources, options = load_case(name)
    text = format_statuses(reconcile(resources, options).statuses)
    assert text.startswith("GATEWAYCLASSES\n")
    assert "CONDITIONS\n" in text
