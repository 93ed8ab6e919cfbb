import shutil
import subprocess

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from kthena_router import __version__
from kthena_router.metrics import RouterMetrics
from kthena_router.record import RequestRecord

POOL = "default/llama-pool"
CHAT = "/v1/chat/completions"
DEST = {"model_route": "none", "backend_type": "inference_pool", "backend_name": POOL,
        "upstream_model": "llama"}


def record(*, path: str = CHAT, model: str = "llama", status: int = 200, stream: bool = False,
           pool: str = POOL, error_type: str = "", upstream: bool = True) -> RequestRecord:
    """A finished request with round timings: routed at +1 ms, sent at +2 ms, headers at +50 ms, first
    token (streaming) at +100 ms, upstream done at +1 s, response done at +1.5 s."""
    rec = RequestRecord("POST", path)
    rec.start = 1000.0
    rec.model = model
    rec.status_code = status
    rec.stream = stream
    rec.inference_pool = pool
    rec.error_type = error_type
    rec.t_routed = 1000.001
    if upstream:
        rec.t_upstream_start = 1000.002
        rec.t_first_byte = 1000.05
        if stream:
            rec.t_first_token = 1000.1
        rec.t_upstream_end = 1001.0
        rec.input_tokens = 12
        rec.output_tokens = 34
    rec.t_end = 1001.5
    return rec


def value(m: RouterMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_model_label_keeps_the_first_names_then_says_other():
    m = RouterMetrics(max_models=2)
    assert m.model_label("a") == "a"
    assert m.model_label("b") == "b"
    assert m.model_label("c") == "other"
    assert m.model_label("a") == "a"
    assert m.model_label("d") == "other"


def test_model_label_of_no_model_is_unknown_and_of_an_overlong_name_is_other():
    m = RouterMetrics()
    assert m.model_label("") == "unknown"
    assert m.model_label("x" * 10_000) == "other"


def test_path_label_names_known_paths_and_folds_the_rest_into_other():
    m = RouterMetrics()
    for path in (CHAT, "/v1/completions", "/v1/embeddings", "/v1/models", "/v1/responses", "/v1/rerank",
                 "/v1/score", "/v1/audio/transcriptions", "/v1/tokenize", "/v1/detokenize", "/health",
                 "/metrics"):
        assert m.path_label(path) == path
    for path in ("/", "/v1/chat/completions/", "/v1/models/llama", "/admin?x=1", "/v1/%0a"):
        assert m.path_label(path) == "other"


def test_successful_request_counts_durations_and_tokens():
    m = RouterMetrics()
    m.request_done(record())

    assert value(m, "kthena_router_requests_total", model="llama", path=CHAT, status_code="200",
                 error_type="successful_request", **DEST) == 1
    assert value(m, "kthena_router_request_duration_seconds_count", model="llama", path=CHAT,
                 status_code="200", **DEST) == 1
    assert value(m, "kthena_router_request_duration_seconds_sum", model="llama", path=CHAT,
                 status_code="200", **DEST) == pytest.approx(1.5)
    assert value(m, "kthena_router_time_to_first_byte_seconds_sum", model="llama",
                 path=CHAT) == pytest.approx(0.05)
    # Non-streaming: prefill ends at the response headers; there is no decode phase and no first token.
    assert value(m, "kthena_router_request_prefill_duration_seconds_sum", model="llama", path=CHAT,
                 status_code="200") == pytest.approx(0.048)
    assert value(m, "kthena_router_request_decode_duration_seconds_count", model="llama", path=CHAT,
                 status_code="200") is None
    assert value(m, "kthena_router_time_to_first_token_seconds_count", model="llama", path=CHAT) is None
    assert value(m, "kthena_router_tokens_total", model="llama", path=CHAT, token_type="input", **DEST) == 12
    assert value(m, "kthena_router_tokens_total", model="llama", path=CHAT, token_type="output", **DEST) == 34


def test_streaming_request_observes_first_token_prefill_and_decode():
    m = RouterMetrics()
    m.request_done(record(stream=True))

    assert value(m, "kthena_router_time_to_first_token_seconds_sum", model="llama",
                 path=CHAT) == pytest.approx(0.1)
    assert value(m, "kthena_router_request_prefill_duration_seconds_sum", model="llama", path=CHAT,
                 status_code="200") == pytest.approx(0.098)
    assert value(m, "kthena_router_request_decode_duration_seconds_sum", model="llama", path=CHAT,
                 status_code="200") == pytest.approx(0.9)


def test_histogram_buckets_are_cumulative_and_inclusive_of_their_bound():
    m = RouterMetrics()
    rec = record()
    rec.t_end = rec.start + 0.25  # exactly on a bound: counted in le="0.25"
    m.request_done(rec)
    m.request_done(record())  # 1.5 s

    def bucket(le: str) -> float | None:
        return value(m, "kthena_router_request_duration_seconds_bucket", model="llama", path=CHAT,
                     status_code="200", le=le, **DEST)

    assert bucket("0.1") == 0
    assert bucket("0.25") == 1
    assert bucket("1.0") == 1
    assert bucket("2.5") == 2
    assert bucket("+Inf") == 2


def test_failed_request_with_a_reason_carries_it_and_no_destination():
    m = RouterMetrics()
    m.request_done(record(model="", status=404, pool="", error_type="route_not_found", upstream=False))

    labels = {"model": "unknown", "path": CHAT, "status_code": "404", "model_route": "none",
              "backend_type": "none", "backend_name": "none", "upstream_model": "unknown"}
    assert value(m, "kthena_router_requests_total", error_type="route_not_found", **labels) == 1
    assert value(m, "kthena_router_request_duration_seconds_count", **labels) == 1
    assert value(m, "kthena_router_time_to_first_byte_seconds_count", model="unknown", path=CHAT) is None
    assert value(m, "kthena_router_tokens_total", token_type="input", **{k: v for k, v in labels.items()
                                                                         if k != "status_code"}) is None


def test_failed_request_without_a_reason_is_request_failed():
    m = RouterMetrics()
    m.request_done(record(status=503))
    m.request_done(record(status=503))

    assert value(m, "kthena_router_requests_total", model="llama", path=CHAT, status_code="503",
                 error_type="request_failed", **DEST) == 2


def test_unknown_path_and_overflowing_model_are_folded():
    m = RouterMetrics(max_models=1)
    m.request_done(record(model="first"))
    m.request_done(record(model="second", path="/secret/admin"))

    dest = {**DEST, "upstream_model": "other"}
    assert value(m, "kthena_router_requests_total", model="other", path="other", status_code="200",
                 error_type="successful_request", **dest) == 1


def test_active_gauges_go_up_and_down():
    m = RouterMetrics()
    m.downstream_started("llama")
    m.downstream_started("llama")
    m.upstream_started("10.0.0.1:8000", POOL, "llama")
    up = {"model_server": "10.0.0.1:8000", **DEST}

    assert value(m, "kthena_router_active_requests") == 2
    assert value(m, "kthena_router_active_downstream_requests", model="llama") == 2
    assert value(m, "kthena_router_active_upstream_requests", **up) == 1

    m.upstream_finished("10.0.0.1:8000", POOL, "llama")
    m.downstream_finished("llama")
    m.downstream_finished("llama")

    assert value(m, "kthena_router_active_requests") == 0
    assert value(m, "kthena_router_active_downstream_requests", model="llama") == 0
    assert value(m, "kthena_router_active_upstream_requests", **up) == 0


def test_forget_endpoint_drops_its_idle_series_only():
    m = RouterMetrics()
    for endpoint in ("10.0.0.1:8000", "10.0.0.2:8000"):
        m.upstream_started(endpoint, POOL, "llama")
        m.upstream_finished(endpoint, POOL, "llama")

    m.forget_endpoint("10.0.0.1:8000", POOL)

    assert value(m, "kthena_router_active_upstream_requests", model_server="10.0.0.1:8000", **DEST) is None
    assert value(m, "kthena_router_active_upstream_requests", model_server="10.0.0.2:8000", **DEST) == 0


def test_forget_endpoint_keeps_a_busy_series_until_its_last_request_finishes():
    m = RouterMetrics()
    up = {"model_server": "10.0.0.1:8000", **DEST}
    m.upstream_started("10.0.0.1:8000", POOL, "llama")

    m.forget_endpoint("10.0.0.1:8000", POOL)
    assert value(m, "kthena_router_active_upstream_requests", **up) == 1

    m.upstream_finished("10.0.0.1:8000", POOL, "llama")
    assert value(m, "kthena_router_active_upstream_requests", **up) is None


def test_endpoint_that_comes_back_before_draining_is_not_dropped():
    m = RouterMetrics()
    up = {"model_server": "10.0.0.1:8000", **DEST}
    m.upstream_started("10.0.0.1:8000", POOL, "llama")
    m.forget_endpoint("10.0.0.1:8000", POOL)
    m.upstream_started("10.0.0.1:8000", POOL, "llama")  # re-added to the pool

    m.upstream_finished("10.0.0.1:8000", POOL, "llama")
    assert value(m, "kthena_router_active_upstream_requests", **up) == 1


def test_metrics_live_on_their_own_registry_with_process_metrics():
    m = RouterMetrics()
    assert m.registry is not REGISTRY
    assert REGISTRY.get_sample_value("kthena_router_build_info", {"version": __version__}) is None
    assert value(m, "kthena_router_build_info", version=__version__) == 1
    names = {f.name for f in parse_text(m.render()[0].decode())}
    assert {"process_cpu_seconds", "python_info", "python_gc_objects_collected"} <= names


def test_a_given_registry_gets_only_the_router_metrics():
    registry = CollectorRegistry()
    m = RouterMetrics(registry)
    assert m.registry is registry
    assert registry.get_sample_value("python_info") is None
    assert registry.get_sample_value("kthena_router_active_requests") == 0


def busy() -> RouterMetrics:
    m = RouterMetrics()
    m.request_done(record())
    m.request_done(record(stream=True))
    m.request_done(record(model='a "quoted"\nname', status=502, error_type="upstream_error"))
    m.request_done(record(model="", status=404, pool="", error_type="route_not_found", upstream=False))
    m.downstream_started("llama")
    m.upstream_started("10.0.0.1:8000", POOL, "llama")
    return m


def test_text_exposition_is_plain_prometheus_without_created_series():
    body, content_type = busy().render()
    assert content_type.startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in parse_text(body.decode())}
    assert families["kthena_router_requests"].type == "counter"
    assert families["kthena_router_request_duration_seconds"].type == "histogram"
    assert b"_created" not in body


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_text_exposition_passes_promtool():
    body, _ = busy().render()
    result = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_openmetrics_is_served_when_asked_for():
    accept = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1"
    body, content_type = busy().render(accept)
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n")
    families = {f.name: f for f in parse_openmetrics(body.decode())}
    requests = families["kthena_router_requests"]
    assert requests.type == "counter"
    assert sum(s.value for s in requests.samples if s.name == "kthena_router_requests_total") == 4
    assert families["kthena_router_time_to_first_byte_seconds"].type == "histogram"
