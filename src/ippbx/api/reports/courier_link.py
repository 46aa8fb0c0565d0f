"""The PBX process's end of the courier (`ippbx.api.reports.courier`): what `Delivery`
does for `ReportService`, with the POSTs made in a process of its own.

Why: with an application logged in, each call makes about seven reports, and delivering
them (lanes, the HTTP client, its answers) made a call cost about a quarter more CPU in
the process that runs SIP. Here that process keeps only building the reports and the
outbox; the courier, on another core when the machine has one, does the rest.

`CourierLink` has `Delivery`'s interface (`load`, `start`, `stop`, `add`, `routes`,
`pending`, the counters, `on_delivered`). What it keeps:

- the outbox (ids, held rows, the file) as before: the courier says which rows are done
  and they are deleted here;
- per destination, how many rows the courier holds: past `memory_rows` the later ones
  wait in the file only and are read back, in id order, as the courier gets through
  them (so a receiver that is down costs the courier that much memory, no more);
- the order of hand-over: rows go over in the order they were added, at the end of the
  loop's pass that made them, or under load 5 ms' worth per message; a NewCdr (and what
  follows it) only once its CDR is committed;
- the sessions: sent over whenever `SessionManager.live()` changes (looked at on every
  hand-over and once a second), touched here when the courier delivered to them; the
  reports of a destination no session uses any more are dropped here from the file
  (the courier drops the ones it holds when it sees the new sessions).

If the courier dies, it is started again a second later (two, four … up to a minute while
each new one dies within ten seconds) and given again everything not yet done (from the
outbox: at least once, as delivery always is).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import ippbx
from ippbx.api.reports.delivery import (
    MEMORY_ROWS,
    STOP_GRACE,
    LiveRoute,
    OutboxStore,
    RouteCache,
    Session,
    Sessions,
    needs_its_cdr,
    stored_backlog,
)
from ippbx.api.reports.frames import FrameReader, Message, frame
from ippbx.config import ReportsSection
from ippbx.store.outbox import OutboxRow

log = logging.getLogger(__name__)

SEND_DELAY = 0.005
"""Under load, at most one message of reports to the courier per this many seconds (the
reports of this long go together: one write to the pipe, not one per report). Otherwise
reports go at the end of the loop's pass that made them."""
BUSY_ROWS = 50
"""Reports handed over in `BUSY_WINDOW` that make the next window's "under load" (500/s:
about 70 calls/s with an application logged in)."""
BUSY_WINDOW = 0.1
COMMIT_POLL = 0.002
"""Seconds between looks at whether the NewCdr next in line is committed."""
READY_WAIT = 10.0
"""Seconds `start()` waits for the courier to say it is ready at most."""
CHECK_EVERY = 1.0
"""Seconds between looks at the sessions (expiry) while the courier runs."""
RESTART_DELAY = 1.0
"""Seconds before a courier that died is started again; doubled (up to a minute) while
each new one dies within `STEADY` seconds."""
STEADY = 10.0
COURIER_MAIN = ("import signal\n"
                "for sig in (signal.SIGINT, signal.SIGTERM):\n"
                "    signal.signal(sig, signal.SIG_IGN)\n"
                "from ippbx.api.reports.courier import main\n"
                "main()\n")
"""The courier's command (`python -c`): signals are ignored before anything is imported
(see `ippbx.api.reports.courier`); its own session keeps a terminal's Ctrl-C away."""


@dataclass(eq=False, slots=True)
class _Held:
    """A destination's reports: how many the courier holds, how many wait in the file."""

    key: str
    in_courier: int = 0
    spilled: int = 0  # in the outbox file only, for now
    spill_from: int = 0  # the id of the first of them


class _Pipe(asyncio.SubprocessProtocol):
    def __init__(self, link: CourierLink) -> None:
        self.link = link
        self.reader = FrameReader()
        loop = asyncio.get_running_loop()
        # the process ended and its pipes are closed (all it said was received)
        self.finished: asyncio.Future[None] = loop.create_future()
        self.ready: asyncio.Future[None] = loop.create_future()  # it said so

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        for message in self.reader.feed(data):
            if message[0] == "ready":
                if not self.ready.done():
                    self.ready.set_result(None)
            else:
                self.link.receive(message)

    def connection_lost(self, exc: Exception | None) -> None:
        for future in (self.finished, self.ready):
            if not future.done():
                future.set_result(None)
        self.link.exited(self)


class CourierLink:
    """Report delivery through the courier process. (`clock` is `Delivery`'s parameter:
    the courier's own wall clock ages the reports.)"""

    def __init__(self, store: OutboxStore, sessions: Sessions, config: ReportsSection, *,
                 clock: Callable[[], float] = time.time,
                 memory_rows: int = MEMORY_ROWS) -> None:
        self.store = store
        self.sessions = sessions
        self.config = config
        self.clock = clock
        self.memory_rows = memory_rows
        self.queued = 0
        self.delivered = 0
        self.dropped = 0
        self.on_delivered: Callable[[float], None] | None = None
        self.restarts = 0  # couriers started again after dying
        self._restart_delay = RESTART_DELAY
        self._started_at = 0.0  # (loop time) the running courier's start
        self._routes = RouteCache(sessions)
        self._held: dict[str, _Held] = {}
        self._where: dict[int, _Held] = {}  # rows given (or to be given) to the courier
        self._outgoing: list[OutboxRow] = []
        self._pending = 0
        self._sent_live: tuple[Session, ...] | None = None
        self._sent_routes: dict[str, LiveRoute] | None = None
        self._counted = (0, 0)  # the running courier's last (delivered, dropped)
        self._transport: asyncio.SubprocessTransport | None = None
        self._pipe: _Pipe | None = None
        self._send: asyncio.TimerHandle | asyncio.Handle | None = None
        self._sent_at = 0.0  # (loop time) the last message of reports
        self._busy = False  # under load: messages `SEND_DELAY` apart
        self._window_start = 0.0  # (loop time) and the rows handed over since
        self._window_rows = 0
        self._stdin: asyncio.WriteTransport | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._running = False
        self._spawning: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def load(self) -> None:
        """Queue the reports left in the outbox by a previous run."""
        backlog, self.dropped = stored_backlog(self.store, self.sessions, self.routes(),
                                               self.memory_rows, self.dropped)
        for key, rows, rest in backlog:
            self.add(rows)
            if rest > 0:
                held = self._held[key]
                held.spilled, held.spill_from = rest, rows[-1].id + 1
                self._pending += rest
                self.queued += rest

    async def start(self) -> None:
        """Start the courier and wait (up to `READY_WAIT` s) until it can deliver, so the
        reports of the first calls do not wait for its start."""
        self._running = True
        await self._spawn()
        pipe = self._pipe
        if pipe is not None:
            try:
                async with asyncio.timeout(READY_WAIT):
                    await asyncio.shield(pipe.ready)
            except TimeoutError:
                log.warning("the report courier is not ready after %.0f s; going on",
                            READY_WAIT)
        self._ticker = asyncio.create_task(self._tick(), name="ippbx-courier-check")

    async def stop(self) -> None:
        """Stop the courier; what it did not deliver stays in the outbox for the next run."""
        self._running = False
        if self._spawning is not None:  # (a courier being started again: let it start)
            await asyncio.gather(self._spawning, return_exceptions=True)
            self._spawning = None
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None
        if self._send is not None:
            self._send.cancel()
            self._send = None
        transport, pipe = self._transport, self._pipe
        if transport is None or pipe is None:
            return
        self._write(("stop",))
        try:
            async with asyncio.timeout(STOP_GRACE + 2.0):  # (shielded: the timeout would
                await asyncio.shield(pipe.finished)  # cancel the future it waits for)
        except TimeoutError:
            log.warning("the report courier did not stop in time: killed")
            transport.kill()
            await pipe.finished
        transport.close()
        self._transport = self._pipe = self._stdin = None

    async def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        env = dict(os.environ)
        # (the child imports ippbx from wherever this process did)
        root = str(Path(ippbx.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (root, env.get("PYTHONPATH", "")) if p)
        transport, pipe = await loop.subprocess_exec(
            lambda: _Pipe(self), sys.executable, "-c", COURIER_MAIN,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=None,
            env=env, start_new_session=True)
        self._transport, self._pipe = transport, pipe
        self._started_at = loop.time()
        self._stdin = transport.get_pipe_transport(0)  # type: ignore[assignment]
        self._counted = (0, 0)
        self._sent_live = self._sent_routes = None
        self._write(("config", self.config.model_dump()))
        self._flush()

    def exited(self, pipe: _Pipe) -> None:
        """The courier process ended (stopped, or died)."""
        if pipe is not self._pipe or not self._running:
            return
        loop = asyncio.get_running_loop()
        if loop.time() - self._started_at >= STEADY:
            self._restart_delay = RESTART_DELAY
        delay = self._restart_delay
        self._restart_delay = min(60.0, delay * 2)
        code = self._transport.get_returncode() if self._transport is not None else None
        log.error("the report courier ended (exit status %s): started again in %.0f s",
                  code, delay)
        if self._transport is not None:
            self._transport.close()
        self._transport = self._pipe = self._stdin = None
        loop.call_later(delay, self._restart)

    def _restart(self) -> None:
        if not self._running or self._transport is not None:
            return
        self.restarts += 1
        queued = self.queued
        # everything not done is in the outbox: read it back as at a start
        self._held.clear()
        self._where.clear()
        self._outgoing.clear()
        self._pending = 0
        self.load()
        self.queued = queued
        self._spawning = asyncio.get_running_loop().create_task(self._spawn())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(CHECK_EVERY)
            self._flush()

    # -- queueing ---------------------------------------------------------------------------
    def add(self, rows: Iterable[OutboxRow]) -> None:
        """Queue stored rows (in id order) for the courier."""
        held_of, where, outgoing = self._held, self._where, self._outgoing
        limit = self.memory_rows
        count = 0
        for row in rows:
            count += 1
            held = held_of.get(row.dest)
            if held is None:
                held = held_of[row.dest] = _Held(row.dest)
            if held.spilled or held.in_courier >= limit:  # in the file only, for now
                if not held.spilled:
                    held.spill_from = row.id
                held.spilled += 1
                continue
            held.in_courier += 1
            where[row.id] = held
            outgoing.append(row)
        self._pending += count
        self.queued += count
        if outgoing and self._send is None and self._transport is not None:
            loop = asyncio.get_running_loop()
            wait = self._sent_at + SEND_DELAY - loop.time() if self._busy else 0.0
            self._send = (loop.call_later(wait, self._flush) if wait > 0
                          else loop.call_soon(self._flush))

    @property
    def pid(self) -> int | None:
        """The running courier's process id (None: none runs now)."""
        return None if self._transport is None else self._transport.get_pid()

    def pending(self) -> int:
        """Reports queued and not yet delivered or dropped."""
        return self._pending

    def routes(self) -> dict[str, LiveRoute]:
        """The destinations in use (`RouteCache`)."""
        return self._routes.routes()

    def _flush(self) -> None:
        """Give the courier what changed: the sessions, then the rows waiting."""
        if self._send is not None:
            self._send.cancel()
            self._send = None
        if self._transport is None:
            return
        live = self.sessions.live()
        if live is not self._sent_live:
            self._sent_live = live
            self._write(("sessions", [(x.token, x.url, x.urltag, x.port, x.version,
                                       x.report_ip) for x in live]))
            routes = self.routes()
            if routes is not self._sent_routes:
                self._sent_routes = routes
                self._drop_unused(routes)
        outgoing = self._outgoing
        if not outgoing:
            return
        stored = self.store.outbox_stored
        cut = len(outgoing)
        for index, row in enumerate(outgoing):
            if needs_its_cdr(row.body) and not stored(row.id):
                cut = index
                break
        if cut:
            # (as plain tuples: a NamedTuple pickles through Python code, 4x slower)
            self._write(("rows", [tuple(row) for row in outgoing[:cut]]))
            del outgoing[:cut]
            now = self._sent_at = asyncio.get_running_loop().time()
            self._window_rows += cut
            if now - self._window_start >= BUSY_WINDOW:
                self._busy = self._window_rows >= BUSY_ROWS
                self._window_start, self._window_rows = now, 0
        if outgoing:  # (a NewCdr whose CDR is not committed yet: a few ms)
            self._send = asyncio.get_running_loop().call_later(COMMIT_POLL, self._flush)

    def _drop_unused(self, routes: dict[str, LiveRoute]) -> None:
        """Destinations no session uses any more: their reports go (from the file here;
        the courier drops those it holds, and counts them)."""
        for key in [key for key in self._held if key not in routes]:
            held = self._held.pop(key)
            self.store.outbox_delete_dest(key)
            self.dropped += held.spilled
            self._pending -= held.spilled + held.in_courier
            for row_id in [i for i, h in self._where.items() if h is held]:
                del self._where[row_id]

    def _write(self, message: Message) -> None:
        stdin = self._stdin
        if stdin is not None and not stdin.is_closing():
            stdin.write(frame(message))

    # -- what the courier says --------------------------------------------------------------
    def receive(self, message: Message) -> None:
        kind = message[0]
        if kind == "status":
            _, done, tokens, delays, delivered, dropped = message
            assert isinstance(done, list) and isinstance(tokens, list)
            assert isinstance(delays, list)
            assert isinstance(delivered, int) and isinstance(dropped, int)
            self._settled(done)
            for token in tokens:
                self.sessions.touch(token)
            if self.on_delivered is not None:
                for delay in delays:
                    self.on_delivered(delay)
            last_delivered, last_dropped = self._counted
            self.delivered += delivered - last_delivered
            self.dropped += dropped - last_dropped
            self._counted = (delivered, dropped)
        elif kind == "log":
            _, level, name, text = message
            assert isinstance(level, int) and isinstance(name, str)
            logging.getLogger(name).log(level, "%s", text)

    def _settled(self, done: list[int]) -> None:
        where, store, half = self._where, self.store, self.memory_rows // 2
        for row_id in done:
            held = where.pop(row_id, None)
            if held is None:
                continue  # (its destination was dropped meanwhile)
            store.outbox_delete(row_id)
            self._pending -= 1
            held.in_courier -= 1
            if held.spilled:
                if held.in_courier <= half:
                    self._refill(held)
            elif not held.in_courier and self._held.get(held.key) is held:
                del self._held[held.key]

    def _refill(self, held: _Held) -> None:
        """Read the next reports of a destination that wait in the file only, in id
        order, up to `memory_rows` with the courier."""
        limit = self.memory_rows - held.in_courier
        rows = self.store.outbox_page(held.key, held.spill_from, max(1, limit))
        for row in rows:
            held.in_courier += 1
            self._where[row.id] = held
            self._outgoing.append(row)
        held.spilled -= len(rows)
        if rows:
            held.spill_from = rows[-1].id + 1
        if len(rows) < limit and held.spilled:  # (none left in the file: a count was off)
            log.warning("%d reports to %s were not in the outbox", held.spilled, held.key)
            self._pending -= held.spilled
            held.spilled = 0
        if not held.spilled:
            held.spill_from = 0
        self._flush()
