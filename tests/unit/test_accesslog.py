import asyncio
import re
import shlex

import orjson
import pytest

from kthena_router.accesslog import AccessLog, format_json, format_text, timestamp
from kthena_router.record import RequestRecord

START_WALL = 1_735_787_045.123456  # 2025-01-02T03:04:05.123Z
TS = "2025-01-02T03:04:05.123Z"


def full_record() -> RequestRecord:
    """A streamed request through a pool: routed after 0.4 ms, upstream 2 ms..511.7 ms, done at 512.3 ms."""
    rec = RequestRecord("POST", "/v1/chat/completions")
    rec.start = 100.0
    rec.start_wall = START_WALL
    rec.status_code = 200
    rec.model = "llama"
    rec.request_id = "r-1"
    rec.stream = True
    rec.gateway = "kthena-system/default"
    rec.http_route = "default/llm-route"
    rec.inference_pool = "default/llama-pool"
    rec.selected_endpoint = "10.0.0.1:8000"
    rec.selected_pod = "default/llama-0"
    rec.upstream_status_code = 200
    rec.upstream_attempts = 1
    rec.input_tokens = 12
    rec.output_tokens = 34
    rec.t_routed = 100.0004
    rec.t_upstream_start = 100.002
    rec.t_first_byte = 100.05
    rec.t_first_token = 100.0805
    rec.t_upstream_end = 100.5117
    rec.t_end = 100.5123
    return rec


def bare_record(path: str = "/v1/models", status: int = 200) -> RequestRecord:
    rec = RequestRecord("GET", path)
    rec.start = 100.0
    rec.start_wall = START_WALL
    rec.status_code = status
    rec.t_end = 100.0015
    return rec


def test_timestamp_is_rfc3339_utc_with_milliseconds():
    assert timestamp(START_WALL) == TS
    assert timestamp(0.0) == "1970-01-01T00:00:00.000Z"
    assert timestamp(59.9999) == "1970-01-01T00:00:59.999Z"


def test_text_layout_follows_kthena_field_order():
    assert format_text(full_record()) == (
        f'[{TS}] "POST /v1/chat/completions HTTP/1.1" 200 model_name=llama selected_pod=default/llama-0 '
        "request_id=r-1 backend_type=inference_pool backend_name=default/llama-pool upstream_status_code=200 "
        "upstream_attempts=1 gateway=kthena-system/default http_route=default/llm-route "
        "inference_pool=default/llama-pool selected_endpoint=10.0.0.1:8000 tokens=12/34 "
        "timings=512.3ms(0.4+509.7+2.2)"
    )


def test_text_layout_leaves_out_empty_fields():
    assert format_text(bare_record()) == f'[{TS}] "GET /v1/models HTTP/1.1" 200 timings=1.5ms(1.5+0.0+0.0)'


def test_text_layout_puts_the_error_right_after_the_status():
    rec = bare_record("/v1/completions", 404)
    rec.error_type = "route_not_found"
    rec.error_message = "no route"
    rec.model = "llama"
    assert format_text(rec) == (
        f'[{TS}] "GET /v1/completions HTTP/1.1" 404 error="route_not_found:no route" model_name=llama '
        "timings=1.5ms(1.5+0.0+0.0)"
    )


def test_timing_parts_add_up_to_the_total():
    rec = full_record()
    rec.t_routed = 100.00033
    rec.t_upstream_end = 100.51166
    line = format_text(rec)
    timings = line.rsplit(" timings=", 1)[1]
    total, parts = timings.removesuffix(")").split("ms(")
    assert sum(float(p) for p in parts.split("+")) == pytest.approx(float(total))


def test_json_layout_uses_kthena_field_names_in_order():
    entry = orjson.loads(format_json(full_record()))
    assert list(entry) == [
        "timestamp", "method", "path", "protocol", "status_code", "model_name", "selected_pod",
        "selected_endpoint", "request_id", "backend_type", "backend_name", "upstream_status_code",
        "upstream_attempts", "gateway", "http_route", "inference_pool", "input_tokens", "output_tokens",
        "duration_total", "duration_request_processing", "duration_upstream_processing",
        "duration_response_processing", "ttft_ms",
    ]
    assert entry["timestamp"] == TS
    assert entry["backend_type"] == "inference_pool"
    assert entry["duration_total"] == 512.3
    assert entry["ttft_ms"] == 80.5


def test_json_layout_leaves_out_empty_fields_but_keeps_model_name():
    entry = orjson.loads(format_json(bare_record()))
    assert entry == {
        "timestamp": TS, "method": "GET", "path": "/v1/models", "protocol": "HTTP/1.1", "status_code": 200,
        "model_name": "", "duration_total": 1.5, "duration_request_processing": 1.5,
        "duration_upstream_processing": 0.0, "duration_response_processing": 0.0,
    }


def test_json_layout_has_the_error_object_after_the_status():
    rec = bare_record("/v1/completions", 503)
    rec.error_type = "no_endpoints"
    rec.error_message = "pool has no ready endpoints"
    entry = orjson.loads(format_json(rec))
    assert list(entry)[4:7] == ["status_code", "error", "model_name"]
    assert entry["error"] == {"type": "no_endpoints", "message": "pool has no ready endpoints"}


def hostile_record() -> RequestRecord:
    rec = bare_record('/v1/completions\n[2025-01-01T00:00:00.000Z] "GET /admin HTTP/1.1" 200', 404)
    rec.model = 'x gateway=forged\r\ninference_pool=forged "\\ \u2028\x1b[31m'
    rec.request_id = "id\nfake"
    rec.error_type = "route_not_found"
    rec.error_message = 'no route for "x"\nsecond line'
    return rec


LINE = re.compile(r'^\[([^]]+)\] "((?:[^"\\]|\\.)*)" (\d+) (.*)$')


def test_text_layout_escapes_client_values_so_no_line_or_field_can_be_forged():
    line = format_text(hostile_record())
    assert "\n" not in line and "\r" not in line and "\u2028" not in line and "\x1b" not in line
    assert line.splitlines() == [line]

    ts, request_line, status, fields = LINE.match(line).groups()
    assert (ts, status) == (TS, "404")
    method, path, protocol = request_line.split(" ")
    assert (method, protocol) == ("GET", "HTTP/1.1")
    assert path == '/v1/completions\\n[2025-01-01T00:00:00.000Z]%20\\"GET%20/admin%20HTTP/1.1\\"%20200'
    keys = [field.split("=", 1)[0] for field in shlex.split(fields)]
    assert keys == ["error", "model_name", "request_id", "timings"]
    assert ' model_name="x gateway=forged\\r\\ninference_pool=forged \\"\\\\ \\u2028\\x1b[31m" ' in line
    assert ' request_id="id\\nfake" ' in line
    assert ' error="route_not_found:no route for \\"x\\"\\nsecond line" ' in line


def test_json_layout_keeps_client_values_on_one_line_and_intact():
    rec = hostile_record()
    raw = format_json(rec)
    assert raw.splitlines() == [raw]
    entry = orjson.loads(raw)
    assert entry["path"] == rec.path
    assert entry["model_name"] == rec.model
    assert entry["error"]["message"] == rec.error_message


async def test_file_output_appends_one_line_per_request(tmp_path):
    out = tmp_path / "access.log"
    out.write_text("earlier line\n")
    log = AccessLog(fmt="json", output=str(out))
    await log.start()
    log.log(full_record())
    log.log(bare_record())
    await log.close()

    lines = out.read_text().splitlines()
    assert lines[0] == "earlier line"
    assert [orjson.loads(line)["path"] for line in lines[1:]] == ["/v1/chat/completions", "/v1/models"]


def watch_writes(log: AccessLog) -> asyncio.Event:
    """An event set after the log's writer thread finishes a write."""
    loop = asyncio.get_running_loop()
    wrote = asyncio.Event()
    write = log._write

    def spy(data: bytes) -> None:
        write(data)
        loop.call_soon_threadsafe(wrote.set)

    log._write = spy  # type: ignore[method-assign]
    return wrote


async def test_lines_are_written_in_the_background_before_close(tmp_path):
    out = tmp_path / "access.log"
    log = AccessLog(output=str(out), flush_interval=0.01)
    wrote = watch_writes(log)
    await log.start()
    log.log(bare_record())
    async with asyncio.timeout(5):
        await wrote.wait()
    assert out.read_text() == format_text(bare_record()) + "\n"
    await log.close()


async def test_a_full_buffer_is_written_without_waiting_for_the_interval(tmp_path):
    out = tmp_path / "access.log"
    log = AccessLog(output=str(out), flush_interval=3600, flush_lines=3)
    wrote = watch_writes(log)
    await log.start()
    for _ in range(3):
        log.log(bare_record())
    async with asyncio.timeout(5):
        await wrote.wait()
    assert out.read_text().count("\n") == 3
    await log.close()


async def test_close_writes_every_line_even_without_start(tmp_path):
    out = tmp_path / "access.log"
    log = AccessLog(output=str(out), flush_interval=3600)
    for _ in range(1000):
        log.log(bare_record())
    await log.close()
    assert out.read_text().count("\n") == 1000


async def test_close_writes_lines_still_buffered_by_a_running_writer(tmp_path):
    out = tmp_path / "access.log"
    log = AccessLog(output=str(out), flush_interval=3600)
    await log.start()
    log.log(full_record())
    await log.close()
    assert out.read_text() == format_text(full_record()) + "\n"


async def test_lines_after_close_are_dropped_not_raised(tmp_path):
    out = tmp_path / "access.log"
    log = AccessLog(output=str(out))
    await log.close()
    log.log(bare_record())
    await log.close()
    assert out.read_text() == ""


async def test_disabled_log_opens_nothing_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "access.log"
    log = AccessLog(enabled=False, output=str(out))
    await log.start()
    log.log(full_record())
    await log.close()
    assert not out.exists()
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("output", ["stdout", "stderr"])
async def test_standard_streams(output, capsys):
    log = AccessLog(output=output)
    await log.start()
    log.log(bare_record())
    await log.close()
    captured = capsys.readouterr()
    assert getattr(captured, "out" if output == "stdout" else "err") == format_text(bare_record()) + "\n"


def test_bad_settings_fail_at_construction(tmp_path):
    with pytest.raises(ValueError):
        AccessLog(fmt="xml")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        AccessLog(output=str(tmp_path / "missing" / "access.log"))
