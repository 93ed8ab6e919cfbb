"""Prometheus metrics of the router: kthena's names and labels, bounded label values, a cheap hot path.

The proxy calls `downstream_started`/`downstream_finished` and `upstream_started`/`upstream_finished` around
each request and each upstream attempt, and `request_done` once per finished request with its `RequestRecord`;
`/metrics` calls `render`, which first runs the `refreshers` (callbacks that bring a gauge up to date when it
is read, such as ending outlier ejections whose time is up). Nothing here logs or does I/O (bar the process
collector reading /proc during a scrape), and the only clock read is `perf_counter` for a record without
`t_end`.

Label values are bounded: a client chooses the model name and the path, so both go through `model_label` and
`path_label` before they reach a label. Endpoint labels follow the configuration: `forget_endpoint` drops the
series of an endpoint that left it.

Storage is our own rather than prometheus_client's metric objects: a counter is a slotted cell with a `value`,
a histogram a list of per-bucket counts found with `bisect`. An `observe` costs about a fifth of
prometheus_client's (no lock, no linear bucket scan) and the families are built only when scraped. The event
loop is the only writer, and `render` runs on it too (its refreshers touch the router's state); collecting
copies each dict before walking it and derives a histogram's count from its own bucket counts.
prometheus_client still does the exposition (text 0.0.4 or OpenMetrics) and the process, platform and GC
collectors.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from kthena_router import __version__
from kthena_router.record import RequestRecord

# kthena's request-duration buckets; time-to-first-byte/token get finer low buckets, since a router's own
# share of them is well under 5 ms.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
FIRST_BYTE_BUCKETS = (0.001, 0.0025) + DURATION_BUCKETS
# A scheduler plugin runs for microseconds; kthena's buckets start at 1 ms, ours resolve below that.
PLUGIN_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5)
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

UNKNOWN_MODEL = "unknown"  # no model in the request (kthena's metrics.UnknownModel)
OTHER = "other"  # a model past the `max_models` bound, or a path we do not name
NONE = "none"  # kthena's value for an empty destination label
MAX_MODEL_NAME_LEN = 256  # longer names are "other": a label value must not carry a client's payload

KNOWN_PATHS = frozenset((
    "/v1/completions",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/models",
    "/v1/responses",
    "/v1/rerank",
    "/v2/rerank",
    "/rerank",
    "/v1/score",
    "/score",
    "/v1/classify",
    "/classify",
    "/pooling",
    "/v1/moderations",
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
    "/v1/audio/speech",
    "/v1/images/generations",
    "/v1/tokenize",
    "/v1/detokenize",
    "/tokenize",
    "/detokenize",
    "/health",
    "/healthz",
    "/readyz",
    "/metrics",
))

_DEST_LABELS = ("model_route", "backend_type", "backend_name", "upstream_model")


class _Cell:
    """One counter or gauge series."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0


class _Hist:
    """One histogram series: `counts[i]` observations fell in bucket i (not cumulative), the last is +Inf."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left finds the first bound >= value: Prometheus buckets are "le".
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class _Family:
    """The series of one metric, keyed by their label values in `labelnames` order."""

    __slots__ = ("name", "doc", "labelnames")

    def __init__(self, name: str, doc: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.doc = doc
        self.labelnames = tuple(labelnames)

    def describe(self) -> Metric:
        return self._empty()

    def collect(self) -> Metric:
        raise NotImplementedError

    def _empty(self) -> Metric:
        raise NotImplementedError


class _Counter(_Family):
    __slots__ = ("children",)

    def __init__(self, name: str, doc: str, labelnames: Sequence[str]) -> None:
        super().__init__(name, doc, labelnames)
        self.children: dict[tuple[str, ...], _Cell] = {}

    def child(self, labels: tuple[str, ...]) -> _Cell:
        c = self.children.get(labels)
        if c is None:
            c = self.children[labels] = _Cell()
        return c

    def collect(self) -> Metric:
        mf = self._empty()
        for labels, c in list(self.children.items()):  # a copy: the loop may add children during a scrape
            mf.add_metric(labels, c.value)
        return mf

    def _empty(self) -> Metric:
        return CounterMetricFamily(self.name, self.doc, labels=self.labelnames)


class _Gauge(_Counter):
    __slots__ = ()

    def _empty(self) -> Metric:
        return GaugeMetricFamily(self.name, self.doc, labels=self.labelnames)


class _Histogram(_Family):
    __slots__ = ("buckets", "les", "children")

    def __init__(self, name: str, doc: str, labelnames: Sequence[str], buckets: tuple[float, ...]) -> None:
        super().__init__(name, doc, labelnames)
        self.buckets = buckets
        self.les = tuple(floatToGoString(b) for b in buckets) + ("+Inf",)
        self.children: dict[tuple[str, ...], _Hist] = {}

    def child(self, labels: tuple[str, ...]) -> _Hist:
        h = self.children.get(labels)
        if h is None:
            h = self.children[labels] = _Hist(self.buckets)
        return h

    def collect(self) -> Metric:
        mf = self._empty()
        les = self.les
        for labels, h in list(self.children.items()):
            acc = 0
            buckets = []
            for le, n in zip(les, list(h.counts), strict=True):
                acc += n
                buckets.append((le, acc))
            # The count is the +Inf bucket, so count and buckets always agree, even mid-update.
            mf.add_metric(labels, buckets, h.sum)
        return mf

    def _empty(self) -> Metric:
        return HistogramMetricFamily(self.name, self.doc, labels=self.labelnames)


class _Families:
    """The router's metric families; the registry collects them in this order."""

    __slots__ = ("requests", "duration", "prefill", "decode", "ttfb", "ttft", "tokens", "active",
                 "active_down", "active_up", "build", "plugin_duration", "queue_size", "queue_duration",
                 "shed", "ejected", "ejections", "all")

    def __init__(self) -> None:
        dest = _DEST_LABELS
        self.requests = _Counter(
            "kthena_router_requests_total", "Finished requests.",
            ("model", "path", "status_code", "error_type", *dest))
        self.duration = _Histogram(
            "kthena_router_request_duration_seconds",
            "Time from receiving a request to finishing its response.",
            ("model", "path", "status_code", *dest), DURATION_BUCKETS)
        self.prefill = _Histogram(
            "kthena_router_request_prefill_duration_seconds",
            "Time from sending a request upstream to its first token (streaming) or response headers.",
            ("model", "path", "status_code"), DURATION_BUCKETS)
        self.decode = _Histogram(
            "kthena_router_request_decode_duration_seconds",
            "Time from the first streamed token to the end of the upstream response.",
            ("model", "path", "status_code"), DURATION_BUCKETS)
        self.ttfb = _Histogram(
            "kthena_router_time_to_first_byte_seconds",
            "Time from receiving a request to receiving the upstream response headers.",
            ("model", "path"), FIRST_BYTE_BUCKETS)
        self.ttft = _Histogram(
            "kthena_router_time_to_first_token_seconds",
            "Time from receiving a streaming request to relaying its first data chunk.",
            ("model", "path"), FIRST_BYTE_BUCKETS)
        self.tokens = _Counter(
            "kthena_router_tokens_total", "Tokens reported by the model server, by token_type.",
            ("model", "path", "token_type", *dest))
        self.active = _Gauge("kthena_router_active_requests", "Requests in progress.", ())
        self.active_down = _Gauge(
            "kthena_router_active_downstream_requests", "Client requests in progress, by model.", ("model",))
        self.active_up = _Gauge(
            "kthena_router_active_upstream_requests", "Requests in progress to model server endpoints.",
            ("model_server", *dest))
        self.build = _Gauge("kthena_router_build_info", "Router build; the value is always 1.", ("version",))
        self.plugin_duration = _Histogram(
            "kthena_router_scheduler_plugin_duration_seconds", "Time one scheduler plugin took for one pick.",
            ("model", "plugin", "type"), PLUGIN_BUCKETS)
        self.queue_size = _Gauge(
            "kthena_router_fairness_queue_size",
            "Requests waiting in the router's admission queue of a saturated InferencePool.", ("inference_pool",))
        self.queue_duration = _Histogram(
            "kthena_router_fairness_queue_duration_seconds",
            "Time requests spent in the admission queue, by outcome (dispatched, timeout, cancelled).",
            ("inference_pool", "outcome"), QUEUE_BUCKETS)
        self.shed = _Counter(
            "kthena_router_scheduler_shed_total",
            "Requests refused by admission: saturated (priority < 0), queue_full (429), queue_timeout (503).",
            ("inference_pool", "reason"))
        self.ejected = _Gauge(
            "kthena_router_endpoint_ejected",
            "1 while passive outlier detection leaves the endpoint out of picking.", ("endpoint",))
        self.ejections = _Counter(
            "kthena_router_endpoint_ejections_total",
            "Times passive outlier detection left the endpoint out of picking.", ("endpoint",))
        self.all: tuple[_Family, ...] = (
            self.requests, self.duration, self.prefill, self.decode, self.ttfb, self.ttft, self.tokens,
            self.active, self.active_down, self.active_up, self.build, self.plugin_duration, self.queue_size,
            self.queue_duration, self.shed, self.ejected, self.ejections,
        )


class _Request:
    """The series of one combination of request labels. The request counter and duration exist at once;
    the rest appear on their first observation, so that, say, a non-streaming model has no empty
    time-to-first-token histogram and a 404 no zero token counters."""

    __slots__ = ("requests", "duration", "prefill", "decode", "ttfb", "ttft", "tokens_in", "tokens_out",
                 "_families", "_model", "_path", "_code", "_dest")

    def __init__(self, families: _Families, model: str, path: str, status: int, error_type: str,
                 pool: str) -> None:
        code = str(status)
        if not error_type:
            error_type = "successful_request" if status < 400 else "request_failed"
        dest = (NONE, "inference_pool" if pool else NONE, pool or NONE, model)
        self._families = families
        self._model = model
        self._path = path
        self._code = code
        self._dest = dest
        self.requests = families.requests.child((model, path, code, error_type, *dest))
        self.duration = families.duration.child((model, path, code, *dest))
        self.prefill: _Hist | None = None
        self.decode: _Hist | None = None
        self.ttfb: _Hist | None = None
        self.ttft: _Hist | None = None
        self.tokens_in: _Cell | None = None
        self.tokens_out: _Cell | None = None

    def new_prefill(self) -> _Hist:
        h = self.prefill = self._families.prefill.child((self._model, self._path, self._code))
        return h

    def new_decode(self) -> _Hist:
        h = self.decode = self._families.decode.child((self._model, self._path, self._code))
        return h

    def new_ttfb(self) -> _Hist:
        h = self.ttfb = self._families.ttfb.child((self._model, self._path))
        return h

    def new_ttft(self) -> _Hist:
        h = self.ttft = self._families.ttft.child((self._model, self._path))
        return h

    def new_tokens_in(self) -> _Cell:
        c = self.tokens_in = self._families.tokens.child((self._model, self._path, "input", *self._dest))
        return c

    def new_tokens_out(self) -> _Cell:
        c = self.tokens_out = self._families.tokens.child((self._model, self._path, "output", *self._dest))
        return c


class _Upstream:
    """In-flight upstream requests of one (endpoint, pool, model); `retiring` once the endpoint is gone."""

    __slots__ = ("labels", "cell", "retiring")

    def __init__(self, labels: tuple[str, ...], cell: _Cell) -> None:
        self.labels = labels
        self.cell = cell
        self.retiring = False


class RouterMetrics:
    """The router's metrics, registered as one collector.

    Without a `registry` they get their own, with the process, platform and GC collectors beside them (never
    prometheus_client's global default); a given registry gets the router's metrics only.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, max_models: int = 256) -> None:
        if max_models < 0:
            raise ValueError(f"max_models must be >= 0, got {max_models}")
        own = registry is None
        self.registry = CollectorRegistry() if registry is None else registry
        self._max_models = max_models
        self._models: dict[str, str] = {}
        self._requests_by_key: dict[tuple[str, str, int, str, str], _Request] = {}
        self._downstream_by_model: dict[str, _Cell] = {}
        self._upstream_by_key: dict[tuple[str, str, str], _Upstream] = {}
        self._plugin_by_key: dict[tuple[str, str, str], _Hist] = {}
        self.refreshers: list[Callable[[], None]] = []  # run before each exposition

        self._f = _Families()
        self._active = self._f.active.child(())
        self._f.build.child((__version__,)).value = 1.0

        self.registry.register(self)
        if own:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    # -- label bounding --------------------------------------------------------------------------------

    def model_label(self, model: str) -> str:
        """`model` as a label value: the first `max_models` distinct names as is, later ones "other"."""
        label = self._models.get(model)
        if label is not None:
            return label
        if not model:
            return UNKNOWN_MODEL
        if len(self._models) >= self._max_models or len(model) > MAX_MODEL_NAME_LEN:
            return OTHER  # not remembered: a flood of names must not grow the dict
        self._models[model] = model
        return model

    def path_label(self, path: str) -> str:
        """`path` as a label value: a path in KNOWN_PATHS as is, anything else "other"."""
        return path if path in KNOWN_PATHS else OTHER

    # -- in-flight gauges ------------------------------------------------------------------------------

    def downstream_started(self, model_label: str) -> None:
        cell = self._downstream_by_model.get(model_label)
        if cell is None:
            cell = self._downstream_by_model[model_label] = self._f.active_down.child((model_label,))
        cell.value += 1
        self._active.value += 1

    def downstream_finished(self, model_label: str) -> None:
        cell = self._downstream_by_model.get(model_label)
        if cell is not None:
            cell.value -= 1
        self._active.value -= 1

    def upstream_started(self, endpoint: str, pool: str, model_label: str) -> None:
        key = (endpoint, pool, model_label)
        up = self._upstream_by_key.get(key)
        if up is None:
            labels = (endpoint, NONE, "inference_pool" if pool else NONE, pool or NONE, model_label)
            up = self._upstream_by_key[key] = _Upstream(labels, self._f.active_up.child(labels))
        elif up.retiring:
            up.retiring = False  # the endpoint came back before its last request finished
        up.cell.value += 1

    def upstream_finished(self, endpoint: str, pool: str, model_label: str) -> None:
        key = (endpoint, pool, model_label)
        up = self._upstream_by_key.get(key)
        if up is None:
            return
        up.cell.value -= 1
        if up.retiring and up.cell.value <= 0:
            self._drop_upstream(key, up)

    def forget_endpoint(self, endpoint: str, pool: str) -> None:
        """Drop the series of an endpoint that left the configuration.

        Series with requests still in flight stay until the last of them finishes, so the gauge never shows
        a negative or lost count.
        """
        for key, up in list(self._upstream_by_key.items()):
            if key[0] != endpoint or key[1] != pool:
                continue
            if up.cell.value <= 0:
                self._drop_upstream(key, up)
            else:
                up.retiring = True

    def _drop_upstream(self, key: tuple[str, str, str], up: _Upstream) -> None:
        del self._upstream_by_key[key]
        self._f.active_up.children.pop(up.labels, None)

    # -- finished requests -----------------------------------------------------------------------------

    def request_done(self, rec: RequestRecord) -> None:
        """Count one finished request and observe its durations and tokens."""
        model = self._models.get(rec.model) or self.model_label(rec.model)
        path = rec.path if rec.path in KNOWN_PATHS else OTHER
        key = (model, path, rec.status_code, rec.error_type, rec.inference_pool)
        series = self._requests_by_key.get(key)
        if series is None:
            series = self._requests_by_key[key] = _Request(self._f, *key)

        start = rec.start
        series.requests.value += 1
        series.duration.observe((rec.t_end or time.perf_counter()) - start)
        t_first_byte = rec.t_first_byte
        if t_first_byte:
            (series.ttfb or series.new_ttfb()).observe(t_first_byte - start)
        t_upstream_start = rec.t_upstream_start
        if rec.stream:
            t_first_token = rec.t_first_token
            if t_first_token:
                (series.ttft or series.new_ttft()).observe(t_first_token - start)
                if t_upstream_start:
                    (series.prefill or series.new_prefill()).observe(t_first_token - t_upstream_start)
                if rec.t_upstream_end:
                    (series.decode or series.new_decode()).observe(rec.t_upstream_end - t_first_token)
        elif t_first_byte and t_upstream_start:
            (series.prefill or series.new_prefill()).observe(t_first_byte - t_upstream_start)
        if rec.input_tokens:
            (series.tokens_in or series.new_tokens_in()).value += rec.input_tokens
        if rec.output_tokens:
            (series.tokens_out or series.new_tokens_out()).value += rec.output_tokens

    # -- scheduling ------------------------------------------------------------------------------------

    def observe_plugin(self, model: str, plugin: str, kind: str, seconds: float) -> None:
        """One scheduler plugin's time for one pick (`kind` is filter or score)."""
        key = (self._models.get(model) or self.model_label(model), plugin, kind)
        hist = self._plugin_by_key.get(key)
        if hist is None:
            hist = self._plugin_by_key[key] = self._f.plugin_duration.child(key)
        hist.observe(seconds)

    def queue_size(self, pool: str, size: int) -> None:
        self._f.queue_size.child((pool,)).value = size

    def queue_wait(self, pool: str, seconds: float, outcome: str) -> None:
        self._f.queue_duration.child((pool, outcome)).observe(seconds)

    def shed(self, pool: str, reason: str) -> None:
        self._f.shed.child((pool, reason)).value += 1

    def endpoint_ejected(self, endpoint: str, ejected: bool) -> None:
        """Outlier detection took an endpoint out (True) or let it back (False)."""
        self._f.ejected.child((endpoint,)).value = 1 if ejected else 0
        if ejected:
            self._f.ejections.child((endpoint,)).value += 1

    def forget_ejections(self, endpoint: str) -> None:
        self._f.ejected.children.pop((endpoint,), None)
        self._f.ejections.children.pop((endpoint,), None)

    # -- exposition ------------------------------------------------------------------------------------

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition body and its content type: OpenMetrics if `accept` asks for it, else text 0.0.4."""
        for refresh in self.refreshers:
            refresh()
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    def describe(self) -> Iterator[Metric]:
        """Family names for the registry's duplicate check."""
        for f in self._f.all:
            yield f.describe()

    def collect(self) -> Iterator[Metric]:
        """Build the families; called by the registry on each scrape."""
        for f in self._f.all:
            yield f.collect()
