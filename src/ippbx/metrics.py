"""Prometheus metrics: `GET /metrics` on the API port(s), in Prometheus text format.

Nothing here costs anything per SIP message or per API request. The numbers are either
kept by their owners as plain attributes (`Delivery.delivered`, `Registrar.replies`,
`Trunks.in_use`, `ApiApp.requests`, `NgClient.requests`, …) and only read when
`/metrics` is scraped, or kept here from the call registry's domain events (`CallStats`:
a few dict operations per call state change), so a scrape never walks the live calls.
A private `CollectorRegistry` holds one collector (`Metrics.collect`) that turns those
numbers into metric families at scrape time, plus the process collector (CPU, memory,
descriptors, as `ippbx_process_*`).

Two small probes run while the app runs (`start()`/`stop()`): every `LAG_EVERY` seconds
a timer measures how late it fires (the event-loop lag) and samples the call counter
(calls started per second over the last `RATE_WINDOW` seconds), and every `PING_EVERY`
seconds each rtpengine is pinged (its health and round trip). With `[metrics] token`
set the page wants `Authorization: Bearer <token>` (401 otherwise; compared in constant
time); `[api] allowed_ips`, when set, limits who may scrape (403 for other addresses);
`[metrics] enabled = false` leaves the page unserved (404) and subscribes and runs
nothing. Every metric is listed in docs/metrics.md.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hmac
import itertools
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from ippbx.api.http_server import HttpRequest, HttpResponse
from ippbx.api.reports.courier_link import CourierLink
from ippbx.pbx import events
from ippbx.pbx.calls import Call, CallStore, CallType, LegStatus
from ippbx.pbx.cdr import failure_cause
from ippbx.pbx.trunks import TrunkStatus

if TYPE_CHECKING:
    from ippbx.app import App
    from ippbx.media.engine import MediaEngine

PATH = "/metrics"
LAG_EVERY = 0.5
"""Seconds between two event-loop lag probes (and call-rate samples)."""
LAG_WINDOW = 10.0
"""`ippbx_event_loop_lag_max_seconds` is the largest lag of this many last seconds."""
RATE_WINDOW = 10.0
"""`ippbx_call_setups_per_second` averages the calls started over this many seconds."""
PING_EVERY = 5.0
"""Seconds between two pings of each rtpengine."""
PING_TIMEOUT = 1.0
"""A ping unanswered after this many seconds marks the engine down."""
REPORT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                  60.0, 300.0, 1800.0)
"""Upper bounds (s) of the report delivery latency histogram."""

DIRECTIONS = tuple(t.value.lower() for t in CallType)  # internal, outbound, inbound
_DIRECTION = {t: t.value.lower() for t in CallType}
STATES = ("progress", "ringing", "talking", "wait")
_TRUNK_STATES = tuple(TrunkStatus)

_TEXT = (b"Content-Type", b"text/plain; charset=utf-8")
_NOT_FOUND = HttpResponse(404, (_TEXT,), b"Not Found")
_NOT_ALLOWED = HttpResponse(405, (_TEXT, (b"Allow", b"GET, HEAD")), b"Method Not Allowed")
_UNAUTHORIZED = HttpResponse(
    401, (_TEXT, (b"WWW-Authenticate", b'Bearer realm="ippbx metrics"')), b"Unauthorized")
_FORBIDDEN = HttpResponse(403, (_TEXT,), b"Forbidden")


# -- numbers kept here -----------------------------------------------------------------------


class Histogram:
    """Observations counted into fixed buckets (inclusive upper bounds), and their sum:
    `observe` is a bisection and two additions."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError("bucket bounds must be increasing")
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative = list(itertools.accumulate(self.counts))
        buckets = [(floatToGoString(bound), float(n))
                   for bound, n in zip(self.bounds, cumulative, strict=False)]
        buckets.append(("+Inf", float(cumulative[-1])))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.sum)


class _Mark:
    """What `CallStats` remembers of one live call."""

    __slots__ = ("key", "direction", "answered")

    def __init__(self) -> None:
        self.key: tuple[str, str] | None = None  # its (direction, state) in `live`
        self.direction = ""  # settled for the counters ("" not yet)
        self.answered = False  # a leg of it has been talking


def call_state(call: Call) -> str:
    """`talking` when a live leg talks, else `wait` (on hold, in a queue, in an IVR menu),
    else `ringing` when a leg we placed is alerted, else `progress`."""
    ringing = waiting = False
    for leg in (call.caller, call.callee) if call.branches is None else call.legs():
        if leg is None:
            continue
        status = leg.status
        if status is LegStatus.TALKING:
            return "talking"
        if status is LegStatus.WAIT:
            waiting = True
        elif status is LegStatus.PROGRESS and leg.ringing is not None:
            ringing = True
    return "wait" if waiting else "ringing" if ringing else "progress"


class CallStats:
    """Call registry subscriber: live calls by direction and state, and the counters of
    call attempts, answers and failures.

    `live` follows each call's direction as it is now (`Call.type`) and its state
    (`call_state`). The counters label a call with one direction for its whole life,
    settled as soon as it is known: at its start for a trunk's call (inbound) or one
    ippbx placed to a trunk (outbound), else when its first callee leg is added, when
    ippbx answers it itself (an IVR, voicemail, a queue), or when it ends. A call counts
    once in `attempts`, then once in `answered` (when a leg first talks) or, if it ends
    unanswered, once in `failures` with the SIP status it failed with (the CDR's
    cause). So `attempts = answered + failures + live calls not answered yet` for each
    direction. Each event costs a dict lookup or two and a few attribute reads.
    """

    def __init__(self) -> None:
        self.live: Counter[tuple[str, str]] = Counter(
            {(direction, state): 0 for direction in DIRECTIONS for state in STATES})
        self.created = 0  # calls started (the setup rate is sampled from it)
        self.attempts: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.failures: Counter[tuple[str, int]] = Counter()
        self.registrations: Counter[bool] = Counter()  # extensions (un)registered
        self._marks: dict[str, _Mark] = {}  # by callid
        self._handlers: dict[type, Callable[[Any], None]] = {
            events.LegStatusChanged: self._on_status,
            events.LegAdded: self._on_added,
            events.LegRinging: self._on_leg,
            events.LegEnded: self._on_leg,
            events.CallCreated: self._on_created,
            events.CallEnded: self._on_ended,
            events.ExtensionRegistration: self._on_registration,
        }

    def __call__(self, event: events.DomainEvent) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def follow(self, registry: CallStore) -> None:
        """Subscribe each handler to its own kind of event (no dispatch per event)."""
        for kind, handler in self._handlers.items():
            registry.subscribe(handler, kind)

    def tracked(self) -> int:
        """Live calls followed."""
        return len(self._marks)

    def _on_created(self, event: events.CallCreated) -> None:
        call = event.call
        self.created += 1
        mark = self._marks[call.callid] = _Mark()
        direction = call.type
        if direction is not CallType.INTERNAL:  # (a trunk's call, or one ippbx placed out)
            self._settle(mark, _DIRECTION[direction])
        self._update(call, mark)

    def _on_added(self, event: events.LegAdded) -> None:
        call = event.call
        mark = self._marks.get(call.callid)
        if mark is not None:
            if not mark.direction:
                self._settle(mark, _DIRECTION[call.type])
            self._update(call, mark)

    def _on_leg(self, event: events.LegRinging | events.LegEnded) -> None:
        mark = self._marks.get(event.call.callid)
        if mark is not None:
            self._update(event.call, mark)

    def _on_status(self, event: events.LegStatusChanged) -> None:
        call, leg = event.call, event.leg
        mark = self._marks.get(call.callid)
        if mark is None:
            return
        if leg.status is LegStatus.TALKING and not mark.answered:
            mark.answered = True
            if mark.direction:
                self.answered[mark.direction] += 1
            elif not (leg is call.caller and leg.outgoing):
                # (ippbx answered the caller itself; a party ippbx called first - a
                # click-to-call - answering says nothing yet of where the call goes)
                self._settle(mark, _DIRECTION[call.type])
        self._update(call, mark)

    def _on_ended(self, event: events.CallEnded) -> None:
        call = event.call
        mark = self._marks.pop(call.callid, None)
        if mark is None:
            return
        if mark.key is not None:
            self.live[mark.key] -= 1
        if not mark.answered and call.answered is not None:
            mark.answered = True  # (answered without a leg talking: counted now)
            if mark.direction:
                self.answered[mark.direction] += 1
        if not mark.direction:
            self._settle(mark, _DIRECTION[call.type])
        if not mark.answered:
            self.failures[mark.direction, failure_cause(call)] += 1

    def _on_registration(self, event: events.ExtensionRegistration) -> None:
        self.registrations[event.registered] += 1

    def _settle(self, mark: _Mark, direction: str) -> None:
        mark.direction = direction
        self.attempts[direction] += 1
        if mark.answered:
            self.answered[direction] += 1

    def _update(self, call: Call, mark: _Mark) -> None:
        key = (_DIRECTION[call.type], call_state(call))
        if key != mark.key:
            if mark.key is not None:
                self.live[mark.key] -= 1
            self.live[key] += 1
            mark.key = key


class LoopProbe:
    """How late a timer fires (the event loop's lag) and how fast calls start, sampled
    every `LAG_EVERY` seconds by one timer on the loop (no task)."""

    def __init__(self, created: Callable[[], int]) -> None:
        self._created = created
        self.lag = 0.0  # the last probe's, seconds
        self._lags: deque[float] = deque(maxlen=max(1, round(LAG_WINDOW / LAG_EVERY)))
        # (loop time, calls started then), oldest first
        self._samples: deque[tuple[float, int]] = deque(
            maxlen=round(RATE_WINDOW / LAG_EVERY) + 1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0

    @property
    def running(self) -> bool:
        return self._timer is not None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.stop()
        self._loop = loop
        now = loop.time()
        self._samples.clear()
        self._samples.append((now, self._created()))
        self._due = now + LAG_EVERY
        self._timer = loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        self.lag = lag = max(0.0, now - self._due)
        self._lags.append(lag)
        self._samples.append((now, self._created()))
        self._due = now + LAG_EVERY
        self._timer = loop.call_at(self._due, self._tick)

    def max_lag(self) -> float:
        return max(self._lags, default=0.0)

    def setup_rate(self) -> float:
        """Calls started per second over the last `RATE_WINDOW` seconds (0 when the
        probe has not run)."""
        if self._loop is None or not self._samples:
            return 0.0
        since, before = self._samples[0]
        span = self._loop.time() - since
        return (self._created() - before) / max(span, 1.0)


class EngineWatch:
    """Pings each rtpengine every `every` seconds (`PING_EVERY`): is it up, how fast it
    answers (a ping unanswered within `timeout` marks it down)."""

    def __init__(self, engine: MediaEngine) -> None:
        self.engine = engine
        self.up: dict[str, bool] = {}  # by ng address, from the last ping
        self.rtt: dict[str, float] = {}  # seconds, the last answered ping's
        self.pings = 0
        self.every = PING_EVERY
        self.timeout = PING_TIMEOUT
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ippbx-metrics-rtpengine")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            client = self.engine.client
            if client is not None and not client.closed:
                names = list(client.engines)
                for name in names:
                    started = loop.time()
                    ok = await client.ping_engine(name, timeout=self.timeout, tries=1)
                    self.pings += 1
                    self.up[name] = ok
                    if ok:
                        self.rtt[name] = loop.time() - started
                for gone in set(self.up) - set(names):  # (an engine restarted elsewhere)
                    self.up.pop(gone, None)
                    self.rtt.pop(gone, None)
            await asyncio.sleep(self.every)


# -- the page and the collector --------------------------------------------------------------


def _bearer(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The credentials of an `Authorization: Bearer …` header, if there is one."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, credentials = value.strip().partition(b" ")
            if scheme.lower() == b"bearer":
                return credentials.strip()
            return None
    return None


def _header(headers: Iterable[tuple[bytes, bytes]], wanted: bytes) -> str:
    for name, value in headers:
        if name == wanted:
            return value.decode("latin-1")
    return ""


class Metrics:
    """The process's metrics: what `/metrics` shows, and the probes feeding it.

    `Metrics.for_app(app)` wires it to an app; a bare `Metrics()` shows its own numbers
    (calls it is given events of, the loop probe, report latencies) and the process's.
    `token` is the bearer token wanted (a callable is asked at each scrape, so a
    configuration reload applies).
    """

    def __init__(self, *, enabled: bool = True, token: str | Callable[[], str] = "",
                 allowed: Callable[[str], bool] | None = None) -> None:
        self.enabled = enabled
        self._token: Callable[[], str] = token if callable(token) else (lambda: token)
        self._allowed = allowed  # which client addresses may scrape (None: all)
        self.registry = CollectorRegistry()
        self.calls = CallStats()
        self.report_latency = Histogram(REPORT_BUCKETS)
        self.probe = LoopProbe(lambda: self.calls.created)
        self.engine: EngineWatch | None = None
        self.scrapes = 0
        self._app: App | None = None
        # API requests by (endpoint, errno): the API handler's counter, once it exists
        self.api_requests: Mapping[tuple[str, int], int] = {}
        if enabled:
            self.registry.register(self)
            ProcessCollector(namespace="ippbx", registry=self.registry)

    @classmethod
    def for_app(cls, app: App) -> Metrics:
        """The metrics of `app` (built once its parts exist, before its API server)."""
        metrics = cls(enabled=app.config.metrics.enabled,
                      token=lambda: app.config.metrics.token,
                      allowed=app.sessions.ip_allowed)
        if not metrics.enabled:
            return metrics
        metrics._app = app
        metrics.calls.follow(app.registry)
        app.reports.delivery.on_delivered = metrics.report_latency.observe
        if app.media.engine is not None:
            metrics.engine = EngineWatch(app.media.engine)
        return metrics

    async def start(self) -> None:
        if not self.enabled:
            return
        self.probe.start(asyncio.get_running_loop())
        if self.engine is not None:
            self.engine.start()

    async def stop(self) -> None:
        self.probe.stop()
        if self.engine is not None:
            await self.engine.stop()

    # -- the page -------------------------------------------------------------------------
    def page(self, request: HttpRequest) -> HttpResponse:
        """`GET /metrics`: the metrics in the format the scraper accepts (Prometheus
        text, or OpenMetrics when asked for)."""
        if request.path != PATH or not self.enabled:
            return _NOT_FOUND
        if request.method not in ("GET", "HEAD"):
            return _NOT_ALLOWED
        if self._allowed is not None and not self._allowed(request.client):
            return _FORBIDDEN
        token = self._token()
        if token:
            given = _bearer(request.headers)
            if given is None or not hmac.compare_digest(given, token.encode("utf-8")):
                return _UNAUTHORIZED
        encode, content_type = choose_encoder(_header(request.headers, b"accept"))
        self.scrapes += 1
        return HttpResponse(200, ((b"Content-Type", content_type.encode("latin-1")),
                                  (b"Cache-Control", b"no-store")), encode(self.registry))

    # -- the collector --------------------------------------------------------------------
    def describe(self) -> list[Metric]:
        return []  # (nothing to check at registration; everything is made at scrape time)

    def collect(self) -> Iterator[Metric]:
        yield from self._call_families()
        yield from self._loop_families()
        yield self.report_latency.family(
            "ippbx_report_delivery_seconds",
            "Delay from a call report's creation to its receiver's 2xx, in seconds.")
        app = self._app
        if app is not None:
            yield from self._app_families(app)

    def _call_families(self) -> Iterator[Metric]:
        calls = self.calls
        live = GaugeMetricFamily(
            "ippbx_live_calls", "Calls in progress, by direction (internal, outbound, "
            "inbound) and state (progress, ringing, talking, wait).",
            labels=["direction", "state"])
        for direction in DIRECTIONS:
            for state in STATES:
                live.add_metric([direction, state], calls.live[direction, state])
        yield live
        attempts = CounterMetricFamily(
            "ippbx_call_attempts_total", "Calls started, by direction.", labels=["direction"])
        answered = CounterMetricFamily(
            "ippbx_calls_answered_total", "Calls answered (a leg talked), by direction.",
            labels=["direction"])
        for direction in DIRECTIONS:
            attempts.add_metric([direction], calls.attempts[direction])
            answered.add_metric([direction], calls.answered[direction])
        yield attempts
        yield answered
        failures = CounterMetricFamily(
            "ippbx_call_failures_total", "Calls that ended unanswered, by direction and "
            "the SIP status they failed with (486 busy, 487 cancelled, 404 unknown number…).",
            labels=["direction", "code"])
        for (direction, code), n in sorted(calls.failures.items()):
            failures.add_metric([direction, str(code)], n)
        yield failures
        changes = CounterMetricFamily(
            "ippbx_registration_changes_total", "Extensions that became registered "
            "(change=registered: a first binding) or unregistered (the last one went).",
            labels=["change"])
        changes.add_metric(["registered"], calls.registrations[True])
        changes.add_metric(["unregistered"], calls.registrations[False])
        yield changes

    def _loop_families(self) -> Iterator[Metric]:
        probe = self.probe
        yield GaugeMetricFamily(
            "ippbx_call_setups_per_second",
            f"Calls started per second, over the last {RATE_WINDOW:g} s.",
            value=probe.setup_rate())
        yield GaugeMetricFamily(
            "ippbx_event_loop_lag_seconds",
            f"How late the event loop ran a timer due every {LAG_EVERY:g} s, at the last "
            "probe, in seconds.", value=probe.lag)
        yield GaugeMetricFamily(
            "ippbx_event_loop_lag_max_seconds",
            f"The largest event-loop lag of the last {LAG_WINDOW:g} s, in seconds.",
            value=probe.max_lag())

    def _app_families(self, app: App) -> Iterator[Metric]:
        yield GaugeMetricFamily("ippbx_start_time_seconds",
                                "When this ippbx process started, in unix seconds.",
                                value=app.boot_time)
        yield from _registrar_families(app)
        yield from _trunk_families(app)
        yield from _report_families(app)
        yield from _api_families(app, self.api_requests)
        yield from _sip_families(app)
        yield from _media_families(app, self.engine)
        yield from _mixer_families(app)


def _registrar_families(app: App) -> Iterator[Metric]:
    registrar = app.pbx.registrar
    yield GaugeMetricFamily("ippbx_registered_extensions",
                            "Extensions with at least one registered contact.",
                            value=registrar.bound_extensions())
    yield GaugeMetricFamily("ippbx_registration_bindings",
                            "Registered contacts (bindings) of all extensions.",
                            value=registrar.binding_count)
    replies = CounterMetricFamily(
        "ippbx_register_requests_total", "REGISTER requests of authenticated extensions "
        "answered by the registrar, by response status.", labels=["status"])
    for status, n in sorted(registrar.replies.items()):
        replies.add_metric([str(status)], n)
    yield replies


def _trunk_families(app: App) -> Iterator[Metric]:
    trunks = app.pbx.trunks
    in_use = GaugeMetricFamily("ippbx_trunk_channels_in_use",
                               "Live calls (legs) on each trunk, both ways.", labels=["trunk"])
    most = GaugeMetricFamily("ippbx_trunk_channels_max",
                             "Each trunk's channel limit (0: unlimited).", labels=["trunk"])
    status = GaugeMetricFamily(
        "ippbx_trunk_status", "Each trunk's registration status: 1 for the status it is "
        "in (a peer trunk, which does not register, stays Unknown).",
        labels=["trunk", "status"])
    for trunk in trunks.all():
        name = trunk.name
        in_use.add_metric([name], trunks.in_use.get(name, 0))
        most.add_metric([name], trunk.max_channels)
        now = trunks.status.get(name, TrunkStatus.UNKNOWN)
        for state in _TRUNK_STATES:
            status.add_metric([name, state.value], 1.0 if state is now else 0.0)
    yield in_use
    yield most
    yield status


def _report_families(app: App) -> Iterator[Metric]:
    delivery = app.reports.delivery
    yield CounterMetricFamily("ippbx_reports_queued_total",
                              "Call reports queued for delivery (one per destination).",
                              value=delivery.queued)
    yield CounterMetricFamily("ippbx_reports_delivered_total",
                              "Call reports their receiver answered with a 2xx.",
                              value=delivery.delivered)
    yield CounterMetricFamily(
        "ippbx_reports_dropped_total", "Call reports given up: refused, too old, or "
        "their destination no longer used.", value=delivery.dropped)
    yield GaugeMetricFamily("ippbx_reports_pending",
                            "Call reports queued and not yet delivered or dropped.",
                            value=delivery.pending())
    if isinstance(delivery, CourierLink):  # ([reports] own_process)
        yield CounterMetricFamily(
            "ippbx_report_courier_restarts_total",
            "Report courier processes started again after one ended on its own.",
            value=delivery.restarts)


def _api_families(app: App, counted: Mapping[tuple[str, int], int]) -> Iterator[Metric]:
    requests = CounterMetricFamily(
        "ippbx_api_requests_total", "API requests answered, by endpoint and errno "
        "(0: Success; endpoint `unknown` for paths the API does not have).",
        labels=["endpoint", "errno"])
    for (endpoint, errno), n in sorted(counted.items()):
        requests.add_metric([endpoint, str(errno)], n)
    yield requests
    yield GaugeMetricFamily("ippbx_api_sessions", "API sessions logged in and not expired.",
                            value=len(app.sessions.live()))


def _sip_families(app: App) -> Iterator[Metric]:
    ua = app.pbx.ua
    counts = ua.counts()
    yield GaugeMetricFamily("ippbx_sip_dialogs", "SIP dialogs the user agent holds.",
                            value=counts["dialogs"])
    yield GaugeMetricFamily("ippbx_sip_transactions", "SIP transactions under way.",
                            value=counts["transactions"])
    shedder = ua.shedder
    yield CounterMetricFamily(
        "ippbx_sip_overload_rejected_total", "New INVITEs and REGISTERs refused with 503 "
        "by overload control.", value=shedder.shed if shedder is not None else 0)


def _mixer_families(app: App) -> Iterator[Metric]:
    janus = app.media.janus
    yield GaugeMetricFamily("ippbx_mixer_up", "1 when the conference mixer (janus) runs "
                            "and answers; 0 when it is down or being restarted, or there "
                            "is none.", value=1.0 if app.media.mixer() is not None else 0.0)
    yield CounterMetricFamily("ippbx_mixer_restarts_total",
                              "Times the conference mixer died (or lost its rooms) and "
                              "was started again.",
                              value=janus.restarts if janus is not None else 0)
    rooms = [room for room in app.conferences.rooms.values() if not room.held]
    yield GaugeMetricFamily("ippbx_conference_rooms", "Conference rooms in session.",
                            value=len(rooms))
    members = GaugeMetricFamily("ippbx_conference_members",
                                "Members in conference rooms, by state (up, hold).",
                                labels=["state"])
    for state in ("Up", "HOLD"):
        members.add_metric([state.lower()], sum(
            1 for room in rooms for m in room.members if m.status == state))
    yield members
    yield GaugeMetricFamily("ippbx_supervisions", "Listen, whisper and barge sessions "
                            "on the mixer under way.", value=app.supervision.count)


def _media_families(app: App, watch: EngineWatch | None) -> Iterator[Metric]:
    engine = app.media.engine
    yield GaugeMetricFamily("ippbx_rtpengine_enabled",
                            "1 when calls' media is anchored on rtpengine ([media] engine).",
                            value=1.0 if engine is not None else 0.0)
    if engine is None:
        return
    up = GaugeMetricFamily(
        "ippbx_rtpengine_up", "1 when the rtpengine answered its last ping (and, for "
        "ippbx's own, runs and is not being restarted).", labels=["engine"])
    rtt = GaugeMetricFamily("ippbx_rtpengine_ping_seconds",
                            "Round trip of the last answered ping, in seconds.",
                            labels=["engine"])
    ready = engine.ready
    for name in engine.ng_addresses:
        pinged = watch.up.get(name) if watch is not None else None
        up.add_metric([name], 1.0 if ready and pinged is not False else 0.0)
        if watch is not None and name in watch.rtt:
            rtt.add_metric([name], watch.rtt[name])
    yield up
    yield rtt
    yield CounterMetricFamily("ippbx_rtpengine_restarts_total",
                              "Times ippbx's own rtpengine died and was started again.",
                              value=engine.restarts)
    client = engine.client
    requests = CounterMetricFamily("ippbx_rtpengine_requests_total",
                                   "ng requests sent to rtpengine (pings included).",
                                   value=client.requests if client is not None else 0)
    failures = CounterMetricFamily(
        "ippbx_rtpengine_request_failures_total", "ng requests that failed: no answer "
        "after every retransmission (reason=no_answer) or an error answer (reason=error).",
        labels=["reason"])
    failures.add_metric(["no_answer"], client.unanswered if client is not None else 0)
    failures.add_metric(["error"], client.errors if client is not None else 0)
    yield requests
    yield failures
    yield GaugeMetricFamily("ippbx_rtpengine_calls", "Calls the rtpengine holds for ippbx.",
                            value=client.call_count() if client is not None else 0)
