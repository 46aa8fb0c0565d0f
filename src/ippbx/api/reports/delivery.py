"""Report delivery: the outbox's rows POSTed to their destinations, in order per call.

Theory of operation. Every report is an outbox row before `add()` hands it here (held
in memory and written only if it waits past `ippbx.store.outbox.HOLD`; a NewCdr is
queued at once with its CDR and waits for that commit before its first POST, so no
receiver hears of a CDR that a crash could still take back, while the other reports
leave at once). A row belongs to
a **destination** (a report form and a URL: every session with the same ones shares it,
so each report reaches a receiver once) and to a **lane** inside it:
the call's callid for call reports, `ext:<number>` for an extension's ExtensionStatus
reports, "" for BootUp. Order is kept within a lane and never across lanes, so one
report a receiver will not take holds up only the reports of its own call (or extension).

Each destination has one dispatcher task. Lanes whose head may be sent now wait in a FIFO;
the dispatcher gives each a sender task, at most `concurrency` at a time, which POSTs the
lane's reports one after the other while they go through, never two of one lane at once
(HTTP/1.1, `Content-Type: application/json`, `User-Agent`; a new connection per report as
the vendors do, or with `[reports] keep_alive` the connection of the last report when the
receiver kept it open; `poster.Poster` is the client, lean enough for
thousands of reports a second from the event loop that runs SIP, and a test can give
`Delivery` any `(url, body) -> Outcome` coroutine instead). What an answer means for the
head of a lane:

- 2xx: delivered; the row is deleted and the destination's sessions renewed.
- 4xx: the receiver does not want it; tried again after 1 s, 2 s … and after
  `rejected_tries` tries (3) dropped with one warning. The destination then counts as
  refusing that kind of report (its `action`): the next ones get a single try until one
  of them is delivered, so a receiver that never takes ExtensionStatus costs one POST
  per report and its extension's lane does not fall behind.
- 5xx, a read timeout, a broken answer: tried again after 1, 2, 4 … `backoff_max` s.
- refused, unreachable, a connect timeout: the whole destination waits 1, 2, 4 …
  `backoff_max` s, then sends one probe; the other lanes wait too (nothing could reach
  the receiver) and go on at once when the probe is delivered.

A head older than `retry_minutes` is dropped (one warning) instead of being sent again,
so nothing waits for a dead receiver forever. Meanwhile a destination keeps its first
`MEMORY_ROWS` pending reports in its lanes; the later ones wait in the outbox file only
and are read back, in id order, a batch at a time, as the lanes drain (each lane's order
holds: a call's later reports have the larger ids). So a receiver that is down for the
whole window costs memory for that many reports, not for every call made meanwhile.
A destination no live session uses any more (logout, expiry, a heartbeat that moved it)
is dropped with its rows. Call handling only ever appends (a SQLite insert and a deque
append), so a slow or dead receiver blocks nothing but its own reports.

After a restart `load()` puts the stored rows back in their lanes (the first `MEMORY_ROWS` of
each destination; the rest wait in the file as above; rows of destinations no
surviving session uses are deleted; an earlier version's per-session outbox is filed under
each session's destination) before `start()` begins sending. A report whose 2xx arrived
but whose row was not yet deleted when the process died is sent again: delivery is at
least once, exactly once when the process is not killed mid-POST.

Destinations (spec §5.2): no `url` → `http://<login source IP or heartbeat ipaddr>:<port>/`;
`urltag` 0 → the relative `url` joined to that with one `/`; `urltag` 1 → `http://` +
`url` (`host:port/path`). A `url` that already starts with `http://` or `https://` is used
as is whatever `urltag` says. No `port` → 8260 (Yeastar's default). `https://` receivers
are checked against the system's CAs, or `tls_ca`, unless `tls_verify` is off.

For the metrics: `queued`, `delivered` and `dropped` count reports, `pending()` says how
many wait, and `on_delivered` (when set) hears how long each delivered report took.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit, urlunsplit

from ippbx.api.reports.form import Form
from ippbx.api.reports.poster import Outcome, Poster
from ippbx.store.outbox import LegacyRow, OutboxRow

if TYPE_CHECKING:  # (the courier imports this module: no pydantic at run time)
    from ippbx.config import ReportsSection

log = logging.getLogger(__name__)

DEFAULT_PORT = "8260"
STOP_GRACE = 1.0
"""Seconds `stop()` lets a POST in flight finish before cancelling it."""
EXPIRE_EVERY = 5.0
"""While a destination is down, how often (s) its lanes are searched for expired heads."""
PIPELINE_MAX = 16
# reports per destination kept in its lanes (in memory); the others wait in the outbox
# file and are read back as the lanes drain below half of it
MEMORY_ROWS = 20_000
"""Reports (of as many calls) pipelined in one write at most."""


class OutboxStore(Protocol):
    """The outbox table (`ippbx.store.sqlite.Store`)."""

    def outbox_delete(self, row_id: int) -> None: ...

    def outbox_page(self, dest: str, from_id: int, limit: int) -> list[OutboxRow]: ...

    def outbox_stored(self, row_id: int) -> bool: ...

    async def flushed(self) -> None: ...

    def outbox_delete_dest(self, dest: str) -> int: ...

    def outbox_dests(self) -> dict[str, int]: ...

    def outbox_adopt_legacy(
        self, convert: Callable[[LegacyRow], tuple[str, str] | None]
    ) -> tuple[int, int]: ...


class Session(Protocol):
    """What the delivery reads of an API session (`ippbx.api.sessions.Session`, or the
    courier's copy of it)."""

    @property
    def token(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def urltag(self) -> str: ...

    @property
    def port(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def report_ip(self) -> str: ...


class Sessions(Protocol):
    """The live API sessions as the delivery sees them (`ippbx.api.sessions.SessionManager`,
    or the courier process's copy of them, `ippbx.api.reports.courier`)."""

    def live(self) -> tuple[Session, ...]: ...

    def session(self, token: str) -> Session | None: ...

    def touch(self, token: str) -> bool: ...


def destination(session: Session) -> str:
    """The URL a session's reports are POSTed to."""
    url = session.url.strip()
    if url.lower().startswith(("http://", "https://")):
        return url
    if url and session.urltag.strip() == "1":
        return "http://" + url
    host = session.report_ip
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    base = f"http://{host}:{session.port or DEFAULT_PORT}/"
    return base + url.strip("/") if url else base


def form_of(session: Session) -> Form:
    """The report form follows the login `version` alone: `1.0.2` is Yeastar's `call:[…]`
    form, anything else (or nothing) OpenVox's flat form, on either API path."""
    return Form.YEASTAR if session.version.strip() == "1.0.2" else Form.OPENVOX


def route_of(session: Session) -> str:
    """The key of a session's destination: its report form and URL."""
    return f"{form_of(session).value} {destination(session)}"


def lane_of(body: bytes) -> str:
    """The lane of a stored report body (for rows an earlier version stored without one)."""
    try:
        report = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(report, dict):
        return ""
    if report.get("action") == "ExtensionStatus":
        return f"ext:{report.get('extension', '')}"
    return str(report.get("callid", ""))


def action_of(body: bytes) -> str:
    """The `action` of a stored report body (rendered with `action` first)."""
    prefix = b'{"action":"'
    if body.startswith(prefix):
        end = body.find(b'"', len(prefix))
        if end > 0:
            return body[len(prefix):end].decode("utf-8", "replace")
    try:
        report = json.loads(body)
    except ValueError:
        return ""
    return str(report.get("action", "")) if isinstance(report, dict) else ""


def safe_url(url: str) -> str:
    """A URL fit for a log line: no user:password, no query values (they may hold keys)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<bad url>"
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(f"{p.partition('=')[0]}=…" for p in parts.query.split("&") if p)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


Backlog = list[tuple[str, list[OutboxRow], int]]
"""Per destination: its key, its first rows, how many more wait in the outbox file only."""


def stored_backlog(store: OutboxStore, sessions: Sessions, live: dict[str, LiveRoute],
                   memory_rows: int, dropped: int) -> tuple[Backlog, int]:
    """What a previous run left in the outbox, for a delivery starting: per destination
    still in `live`, its first `memory_rows` rows and how many more wait in the file only;
    and `dropped` plus the reports dropped meanwhile (those of destinations no live
    session uses; an earlier version's rows are first filed under their destination)."""

    def legacy(row: LegacyRow) -> tuple[str, str] | None:
        session = sessions.session(row.token)
        return None if session is None else (route_of(session), lane_of(row.body))

    kept, lost = store.outbox_adopt_legacy(legacy)
    dropped += lost
    if kept or lost:
        log.info("outbox of an earlier version: %d reports kept, %d dropped", kept, lost)
    backlog: Backlog = []
    kept = 0
    for key, count in store.outbox_dests().items():
        if key not in live:
            dropped += store.outbox_delete_dest(key)
            continue
        rows = store.outbox_page(key, 0, memory_rows)
        if rows:
            backlog.append((key, rows, count - len(rows)))
        kept += count
    if kept:
        log.info("%d stored reports to deliver", kept)
    return backlog, dropped


@dataclass(eq=False, slots=True)
class LiveRoute:
    """A destination in use: the form its reports take and the sessions that use it."""

    form: Form
    tokens: list[str] = field(default_factory=list)


class RouteCache:
    """The destinations the live sessions use, worked out again only when
    `Sessions.live()` answers a new tuple (a session logged in or out, moved, or may have
    expired)."""

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions
        self._live: tuple[Session, ...] | None = None  # the live sessions, and …
        self._routes: dict[str, LiveRoute] = {}  # … their destinations

    def routes(self) -> dict[str, LiveRoute]:
        """By `route_of` key: each destination's form and the tokens of its sessions."""
        live = self.sessions.live()
        if live is not self._live:
            routes: dict[str, LiveRoute] = {}
            for session in live:
                key = route_of(session)
                route = routes.get(key)
                if route is None:
                    route = routes[key] = LiveRoute(form_of(session))
                route.tokens.append(session.token)
            self._live, self._routes = live, routes
        return self._routes


Post = Callable[[str, bytes], Awaitable[Outcome]]
"""POSTs one report body to a URL and says what came of it (`Poster` by default)."""


@dataclass(eq=False)
class _Lane:
    key: str
    rows: deque[OutboxRow] = field(default_factory=deque)
    tries: int = 0  # failed tries of the head
    busy: bool = False  # a POST of the head is in flight
    queued: bool = False  # waiting in its destination's `ready` or `later`


@dataclass(eq=False)
class _Destination:
    key: str
    url: str
    lanes: dict[str, _Lane] = field(default_factory=dict)
    ready: deque[_Lane] = field(default_factory=deque)  # lanes whose head may go now
    later: list[tuple[float, int, _Lane]] = field(default_factory=list)  # heap by due
    in_flight: int = 0  # lanes with a report in flight
    sending: int = 0  # their sender tasks (one per lane, or one per pipelined batch)
    pending: int = 0  # in its lanes and in the file only
    spilled: int = 0  # of those, the ones in the outbox file only (past `memory_rows`)
    spill_from: int = 0  # the id of the first of them
    down_until: float = 0.0  # unreachable: nothing is sent before this (monotonic)
    down_delay: float = 0.0  # the current wait after a failure to connect; 0 when up
    next_expiry: float = 0.0  # while down: when to look for heads past the window again
    refused: set[str] = field(default_factory=set)  # actions it refuses (4xx), kept by
    # `Delivery` while a session uses the destination, across idle spells
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    senders: set[asyncio.Task[None]] = field(default_factory=set)


class Delivery:
    """Report destinations, their lanes and the tasks sending them."""

    def __init__(
        self,
        store: OutboxStore,
        sessions: Sessions,
        config: ReportsSection,
        *,
        clock: Callable[[], float] = time.time,
        poster: Post | None = None,
        memory_rows: int = MEMORY_ROWS,
    ) -> None:
        self.store = store
        self.memory_rows = memory_rows  # reports kept in memory per destination
        self.sessions = sessions
        self.config = config
        self.clock = clock  # wall clock: the rows' `created`
        self.queued = 0  # reports handed to `add()` (those a restart found included)
        self.delivered = 0
        self.dropped = 0
        # told each delivered report's delay, from its creation to its 2xx, in seconds
        # (the metrics' histogram; None: nobody asks)
        self.on_delivered: Callable[[float], None] | None = None
        self._dests: dict[str, _Destination] = {}
        self._pending = 0
        self._post: Post | None = None  # set while started
        self._stopping = False
        self._poster = poster  # tests inject a fake receiver
        self._client: Poster | None = None  # the HTTP client, while started (no fake)
        self._seq = 0  # ties in the retry heaps
        self._refused: dict[str, set[str]] = {}  # by destination: the actions it refuses
        self._routes = RouteCache(sessions)

    # -- lifecycle --------------------------------------------------------------------------
    def load(self) -> None:
        """Queue the reports left in the outbox by a previous run."""
        backlog, self.dropped = stored_backlog(self.store, self.sessions, self.routes(),
                                               self.memory_rows, self.dropped)
        for key, rows, rest in backlog:
            self.add(rows)
            if rest > 0:
                dest = self._dests[key]
                dest.spilled, dest.spill_from = rest, rows[-1].id + 1
                dest.pending += rest
                self._pending += rest
                self.queued += rest

    async def start(self) -> None:
        self._stopping = False
        if self._poster is None:
            self._client = Poster(
                timeout=self.config.timeout, user_agent=self.config.user_agent,
                tls_verify=self.config.tls_verify, tls_ca=self.config.tls_ca,
                keep_alive=self.config.keep_alive, pipelining=self.config.pipelining)
        self._post = self._poster or self._client
        for dest in self._dests.values():
            self._kick(dest)

    async def stop(self) -> None:
        """Stop sending; what is not delivered stays in the outbox for the next run."""
        self._stopping = True
        tasks: list[asyncio.Task[None]] = []
        for dest in self._dests.values():
            dest.wake.set()
            tasks += dest.senders
            if dest.task is not None:
                tasks.append(dest.task)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._post = None
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- queueing ---------------------------------------------------------------------------
    def add(self, rows: Iterable[OutboxRow]) -> None:
        """Queue stored rows (in id order) and make sure their destinations are served."""
        touched: dict[str, _Destination] = {}
        for row in rows:
            dest = self._dests.get(row.dest)
            if dest is None:
                url = row.dest.partition(" ")[2]
                dest = self._dests[row.dest] = _Destination(row.dest, url)
                dest.refused = self._refused.setdefault(row.dest, set())
            if dest.spilled or dest.pending >= self.memory_rows:  # in the file only, for now
                if not dest.spilled:
                    dest.spill_from = row.id
                dest.spilled += 1
            else:
                lane = dest.lanes.get(row.lane)
                if lane is None:
                    lane = dest.lanes[row.lane] = _Lane(row.lane)
                    _make_ready(dest, lane)
                lane.rows.append(row)
            dest.pending += 1
            self._pending += 1
            self.queued += 1
            touched[row.dest] = dest
        if self._post is not None and not self._stopping:
            for dest in touched.values():
                self._kick(dest)

    def pending(self) -> int:
        """Reports queued and not yet delivered or dropped."""
        return self._pending

    def _kick(self, dest: _Destination) -> None:
        if dest.task is None and dest.pending:
            dest.task = asyncio.create_task(self._run(dest), name="ippbx-report-destination")
        dest.wake.set()

    def routes(self) -> dict[str, LiveRoute]:
        """The destinations in use (`route_of`), each with its form and the tokens of its
        sessions (`RouteCache`)."""
        return self._routes.routes()

    # -- the dispatcher ---------------------------------------------------------------------
    async def _run(self, dest: _Destination) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not self._stopping and dest.pending:
                dest.wake.clear()
                if dest.key not in self.routes():  # logged out, expired, moved
                    self._drop_destination(dest)
                    break
                now = loop.time()
                while dest.later and dest.later[0][0] <= now:
                    dest.ready.append(heapq.heappop(dest.later)[2])  # (still queued)
                if dest.down_until > now:
                    if now >= dest.next_expiry:
                        dest.next_expiry = now + EXPIRE_EVERY
                        self._expire_heads(dest)
                    await self._sleep(dest, dest.down_until - now)
                    continue
                limit = 1 if dest.down_delay else self.config.concurrency  # probe first
                many = PIPELINE_MAX if not dest.down_delay and self._pipelines(dest) else 1
                while dest.ready and dest.sending < limit:
                    lanes = self._take_ready(dest, many)
                    if not lanes:
                        break
                    dest.sending += 1
                    sender = asyncio.create_task(
                        self._serve(dest, lanes[0]) if many == 1 else self._serve_many(dest, lanes))
                    dest.senders.add(sender)
                    sender.add_done_callback(dest.senders.discard)
                due = dest.later[0][0] - now if dest.later else None
                await self._sleep(dest, due)
        finally:
            dest.task = None
            if not dest.pending and not dest.in_flight and not self._stopping:
                self._dests.pop(dest.key, None)

    @staticmethod
    async def _sleep(dest: _Destination, timeout: float | None) -> None:
        if dest.wake.is_set():
            return
        if timeout is None:  # (the usual case: no retry is due; no timer, no extra task)
            await dest.wake.wait()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await dest.wake.wait()

    def _pipelines(self, dest: _Destination) -> bool:
        """Whether the destination's reports may go several to a write (the HTTP client's
        choice; a test's fake poster never)."""
        return self._client is not None and self._post is self._client \
            and self._client.pipelines(dest.url)

    def _take_ready(self, dest: _Destination, most: int) -> list[_Lane]:
        """Up to `most` lanes whose head may go now, each made busy (its report in flight)."""
        lanes: list[_Lane] = []
        while dest.ready and len(lanes) < most:
            lane = dest.ready.popleft()
            lane.queued = False
            if dest.lanes.get(lane.key) is not lane or not lane.rows:
                continue
            if lane.tries and self._too_old(lane.rows[0]):  # (tried, failed, aged)
                self._drop_head(dest, lane, "not delivered within the retry window")
                continue
            lane.busy = True
            dest.in_flight += 1
            lanes.append(lane)
        return lanes

    def _release(self, dest: _Destination, lane: _Lane) -> None:
        """`lane` has no report in flight any more; back among the ready if it has more."""
        lane.busy = False
        dest.in_flight -= 1
        if dest.lanes.get(lane.key) is lane and lane.rows:
            _make_ready(dest, lane, front=True)  # (no-op if waiting to be retried)
        dest.wake.set()

    async def _serve(self, dest: _Destination, lane: _Lane) -> None:
        """POST the heads of `lane` one after the other while they go through: the lane
        keeps its sender (and its place among the `concurrency` in flight), so the next
        report of a call leaves at once, without a hop through the dispatcher."""
        try:
            while True:
                row = lane.rows[0]
                body = row.body
                if not self.store.outbox_stored(row.id) and needs_its_cdr(body):
                    await self.store.flushed()
                outcome = await self._send(dest.url, body)
                if dest.lanes.get(lane.key) is not lane or not lane.rows \
                        or lane.rows[0] is not row:
                    return  # the destination was dropped meanwhile
                if not self._settle(dest, lane, row, outcome, body) or not lane.rows \
                        or self._stopping or dest.down_until:
                    return
        finally:
            dest.sending -= 1
            self._release(dest, lane)

    async def _serve_many(self, dest: _Destination, lanes: list[_Lane]) -> None:
        """`_serve` for a receiver that takes pipelined POSTs: the heads of several lanes
        (one report of each call, never two) in one write on one connection, their
        answers in order; the lanes that go on, joined by lanes that became ready
        meanwhile, make the next write. Under load more calls have a report waiting, so
        a write carries more of them: fewer system calls per report."""
        try:
            while lanes:
                rows = [lane.rows[0] for lane in lanes]
                bodies = [row.body for row in rows]
                if any(needs_its_cdr(body) and not self.store.outbox_stored(row.id)
                       for row, body in zip(rows, bodies, strict=True)):
                    await self.store.flushed()
                outcomes = await self._send_many(dest.url, bodies)
                going: list[_Lane] = []
                for lane, row, body, outcome in zip(lanes, rows, bodies, outcomes, strict=True):
                    if dest.lanes.get(lane.key) is lane and lane.rows \
                            and lane.rows[0] is row \
                            and self._settle(dest, lane, row, outcome, body) \
                            and lane.rows and not self._stopping and not dest.down_until:
                        going.append(lane)
                    else:
                        self._release(dest, lane)
                lanes = going
                if lanes and not self._pipelines(dest):  # (it turned out not to take them)
                    for lane in lanes:
                        self._release(dest, lane)  # (to one sender each, as before)
                    lanes = []
                elif lanes:
                    lanes += self._take_ready(dest, PIPELINE_MAX - len(lanes))
        finally:
            dest.sending -= 1
            for lane in lanes:
                self._release(dest, lane)
            dest.wake.set()

    def _settle(self, dest: _Destination, lane: _Lane, row: OutboxRow,
                outcome: Outcome, body: bytes) -> bool:
        """Act on what one POST of the head of `lane` came to; True if the head is done
        (delivered or dropped) and the next one may go at once."""
        now = asyncio.get_running_loop().time()
        if outcome is not Outcome.UNREACHABLE and dest.down_delay:
            log.info("report receiver %s is reachable again", safe_url(dest.url))
            dest.down_delay = dest.down_until = 0.0
        if outcome is Outcome.DELIVERED:
            self.delivered += 1
            if self.on_delivered is not None:
                self.on_delivered(self.clock() - row.created)
            if dest.refused:
                dest.refused.discard(action_of(body))
            self._done(dest, lane)
            route = self.routes().get(dest.key)
            for token in route.tokens if route is not None else ():
                self.sessions.touch(token)
            return True
        if outcome is Outcome.UNREACHABLE:
            if self._too_old(row):
                self._drop_head(dest, lane, "not delivered within the retry window")
                return True
            if dest.down_until <= now:  # (the other POSTs in flight fail the same way)
                if not dest.down_delay:
                    log.warning("report receiver %s unreachable; retrying", safe_url(dest.url))
                dest.down_delay = min(self.config.backoff_max, max(1.0, dest.down_delay * 2))
                dest.down_until = now + dest.down_delay
            return False  # (back among the ready lanes, first)
        lane.tries += 1
        if outcome is Outcome.REJECTED:
            action = action_of(body)
            if lane.tries >= self.config.rejected_tries or action in dest.refused:
                dest.refused.add(action)
                self._drop_head(dest, lane, f"refused ({lane.tries} tries)")
                return True
        if outcome is Outcome.FAILED and self._too_old(row):
            self._drop_head(dest, lane, "not delivered within the retry window")
            return True
        delay = min(self.config.backoff_max, 2.0 ** (lane.tries - 1))
        lane.queued = True
        self._seq += 1
        heapq.heappush(dest.later, (now + delay, self._seq, lane))
        return False

    def _too_old(self, row: OutboxRow) -> bool:
        return self.clock() - row.created >= self.config.retry_minutes * 60

    def _expire_heads(self, dest: _Destination) -> None:
        """While the destination is down: drop the heads that aged past the window."""
        for lane in list(dest.lanes.values()):
            while not lane.busy and lane.rows and self._too_old(lane.rows[0]):
                self._drop_head(dest, lane, "not delivered within the retry window")
                if dest.lanes.get(lane.key) is not lane:
                    break

    def _drop_head(self, dest: _Destination, lane: _Lane, why: str) -> None:
        row = lane.rows[0]
        log.warning("report %d (lane %s) to %s %s: dropped", row.id, lane.key or "-",
                    safe_url(dest.url), why)
        self.dropped += 1
        self._done(dest, lane)

    def _done(self, dest: _Destination, lane: _Lane) -> None:
        """The head of `lane` is delivered or dropped: forget it, the next one may go."""
        row = lane.rows.popleft()
        self.store.outbox_delete(row.id)
        dest.pending -= 1
        self._pending -= 1
        lane.tries = 0
        if lane.rows:
            _make_ready(dest, lane)  # (no-op while its sender goes on with it)
        else:
            del dest.lanes[lane.key]
        if dest.spilled and dest.pending - dest.spilled <= self.memory_rows // 2:
            self._refill(dest)
        if dest.ready or not dest.pending:  # (else the dispatcher has nothing to do)
            dest.wake.set()

    def _refill(self, dest: _Destination) -> None:
        """Read the next reports of `dest` that wait in the outbox file only into their
        lanes, in id order, up to `memory_rows` in memory."""
        limit = self.memory_rows - (dest.pending - dest.spilled)
        rows = self.store.outbox_page(dest.key, dest.spill_from, max(1, limit))
        for row in rows:
            lane = dest.lanes.get(row.lane)
            if lane is None:
                lane = dest.lanes[row.lane] = _Lane(row.lane)
                _make_ready(dest, lane)
            lane.rows.append(row)
        dest.spilled -= len(rows)
        if rows:
            dest.spill_from = rows[-1].id + 1
        if len(rows) < limit and dest.spilled:  # (none left in the file: a count was off)
            log.warning("%d reports to %s were not in the outbox", dest.spilled,
                        safe_url(dest.url))
            dest.pending -= dest.spilled
            self._pending -= dest.spilled
            dest.spilled = 0
        if not dest.spilled:
            dest.spill_from = 0
        dest.wake.set()

    def _drop_destination(self, dest: _Destination) -> None:
        """No live session uses `dest` any more: its reports go."""
        self.store.outbox_delete_dest(dest.key)
        self._refused.pop(dest.key, None)
        if dest.pending:
            log.info("%d reports to %s dropped: no session uses it any more", dest.pending,
                     safe_url(dest.url))
        self.dropped += dest.pending
        self._pending -= dest.pending
        dest.pending = dest.spilled = dest.spill_from = 0
        dest.lanes.clear()
        dest.ready.clear()
        dest.later.clear()

    async def _send(self, url: str, body: bytes) -> Outcome:
        post = self._post
        return Outcome.UNREACHABLE if post is None else await post(url, body)

    async def _send_many(self, url: str, bodies: list[bytes]) -> list[Outcome]:
        client = self._client
        if client is None or self._post is not client:  # (stopped meanwhile)
            return [await self._send(url, body) for body in bodies]
        return await client.post_many(url, bodies)


def needs_its_cdr(body: bytes) -> bool:
    """A NewCdr tells the receiver the call's CDR exists: it leaves only once that CDR
    (stored in the same transaction as its row) is committed."""
    return body.startswith(b'{"action":"NewCdr"')


def _make_ready(dest: _Destination, lane: _Lane, *, front: bool = False) -> None:
    """Put `lane` among those whose head may be sent now (once)."""
    if lane.queued or lane.busy:
        return
    lane.queued = True
    if front:
        dest.ready.appendleft(lane)
    else:
        dest.ready.append(lane)
