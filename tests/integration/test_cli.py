"""The command line as a user runs it: `kthena-router status`, and the quickstart served with --simulate."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest

from kthena_router.cli import build_parser, settings_from_args

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"


def test_flags_keep_kthenas_names_and_defaults():
    settings = settings_from_args(build_parser().parse_args([]))
    assert (settings.port, settings.metrics_port, settings.debug_port) == (8080, 9090, 15000)
    assert settings.enable_gateway_api and settings.enable_inference_extension
    assert settings.max_body_bytes == 32 * 1024 * 1024
    off = settings_from_args(build_parser().parse_args(
        ["--enable-gateway-api=false", "--enable-gateway-api-inference-extension", "false", "--drain-timeout", "5m"]))
    assert not off.enable_gateway_api and not off.enable_inference_extension and off.drain_timeout == 300


def test_bad_flags_exit_with_a_message(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--port", "70000"])
    assert "port must be" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--max-scrapes-per-second", "-5"])
    assert "must be a finite number >= 0" in capsys.readouterr().err


def test_the_scrape_rate_limit_reaches_the_settings():
    assert settings_from_args(build_parser().parse_args([])).max_scrapes_per_second == 500
    off = settings_from_args(build_parser().parse_args(["--max-scrapes-per-second", "0"]))
    assert off.max_scrapes_per_second == 0


async def _run(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "kthena_router", *args, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def test_status_prints_the_quickstart_conditions_like_kubectl():
    code, out, err = await _run("status", "--config-dir", str(QUICKSTART))
    assert code == 0, err
    assert "inference-gateway" in out and "kthena-demo-route" in out and "kthena-demo" in out
    code, out, _ = await _run("status", "--config-dir", str(QUICKSTART), "-o", "json")
    statuses = orjson.loads(out)
    gateway = statuses["gateways"]["default/inference-gateway"]
    assert {c["type"]: c["status"] for c in gateway["conditions"]} == {"Accepted": "True", "Programmed": "True"}
    pool = statuses["inferencepools"]["default/kthena-demo"]["parents"][0]
    assert pool["parentRef"]["namespace"] == "default"
    assert {c["type"]: c["status"] for c in pool["conditions"]} == {"Accepted": "True", "ResolvedRefs": "True"}


async def test_status_of_a_missing_directory_fails_cleanly(tmp_path):
    code, _, err = await _run("status", "--config-dir", str(tmp_path / "nope"))
    assert code == 2 and "does not exist" in err and "Traceback" not in err


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


async def test_make_run_serves_the_guides_curl_and_exits_cleanly_on_sigterm():
    """`make run` is this command; the guide's curl is a completions request for Qwen2.5-0.5B-Instruct."""
    needed = [("0.0.0.0", 8080), ("0.0.0.0", 9090), ("127.0.0.1", 15000)] + [
        (f"127.0.0.{i}", 8000) for i in (2, 3, 4)]
    if not all(_port_free(h, p) for h, p in needed):
        pytest.skip("the quickstart's ports are in use on this machine")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kthena_router", "--config-dir", str(QUICKSTART), "--simulate", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(15):
                while True:
                    try:
                        async with session.get("http://127.0.0.1:8080/readyz") as resp:
                            if resp.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        pass
                    await asyncio.sleep(0.1)
            body = {"model": "Qwen2.5-0.5B-Instruct", "prompt": "San Francisco is a", "max_tokens": 7,
                    "temperature": 0}
            async with session.post("http://127.0.0.1:8080/v1/completions", json=body) as resp:
                assert resp.status == 200
                assert (await resp.json())["choices"][0]["text"]
            async with session.post("http://127.0.0.1:8080/v1/completions", json={**body, "stream": True}) as resp:
                assert resp.status == 200
                assert (await resp.read()).endswith(b"data: [DONE]\n\n")
    finally:
        proc.terminate()
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    assert b'"POST /v1/completions HTTP/1.1" 200' in out  # the access log, kthena's text layout
    assert b"Traceback" not in err


async def test_a_bad_scheduler_config_stops_the_router_with_one_line(tmp_path):
    bad = tmp_path / "scheduler.yaml"
    bad.write_text("scheduler:\n  plugins:\n    Score:\n      enabled: [{name: nope, weight: 1}]\n")
    code, _, err = await _run("--config-dir", str(QUICKSTART), "--scheduler-config", str(bad))
    assert code == 2
    assert "scheduler.plugins.Score.enabled[0]: unknown plugin 'nope'" in err
    assert "Traceback" not in err
