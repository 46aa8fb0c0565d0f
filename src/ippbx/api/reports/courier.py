"""The courier: a process of its own that POSTs the reports, so the HTTP work of delivery
runs on another core than SIP (`main()`, run by
`ippbx.api.reports.courier_link.CourierLink` with `[reports] own_process`).

It runs the same `Delivery` as the PBX process would (lanes, retries, pipelining, the
HTTP client), fed over its stdin and answering over its stdout, one frame per message
(a 4-byte big-endian length, then a pickle: the two ends are one program):

    PBX → courier   ("config", {ReportsSection fields})     first, once; it answers "ready"
                    ("sessions", [(token, url, urltag, port, version, report_ip), …])
                                                            the live sessions, when they change
                    ("rows", [(id, dest, lane, body, created), …])   reports to deliver
                    ("stop",)                               stop (what is left stays stored)
    courier → PBX   ("ready",)                              its delivery has started
                    ("status", done ids, tokens delivered to, delays (s), delivered, dropped)
                    ("log", level, logger name, message)    its log lines, for the PBX's log

The outbox stays the PBX process's: the courier holds the rows it is given in memory and
says which are done (delivered or dropped, `outbox_delete`), and the PBX deletes them
(most were never written: they are held for `outbox.HOLD`). The PBX bounds how many
rows of a destination the courier holds, hands over a NewCdr only once its CDR is
committed, and drops the destinations no session uses any more from the file; so this
side's store answers nothing but `outbox_delete`. `delivered` and `dropped` are the
courier's running totals. Sessions a delivered report renews are touched in the PBX.

The courier runs in a session of its own (a terminal's Ctrl-C does not reach it) and
ignores SIGINT and SIGTERM from its first instruction on (a service manager may signal
every process of the service): the PBX stops it in order. It ends when told to or when
its stdin closes (the PBX is gone), stopping its delivery first. It runs on uvloop, as
the PBX does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import uvloop

from ippbx.api.reports.delivery import Delivery
from ippbx.api.reports.frames import FrameReader, Message, frame
from ippbx.store.outbox import LegacyRow, OutboxRow

if TYPE_CHECKING:
    from ippbx.config import ReportsSection

STATUS_DELAY = 0.02
"""Seconds the courier gathers what it has done into one status frame (the PBX deletes
the rows and renews the sessions then; nothing waits on it)."""
STOP_WRITE = 2.0
"""Seconds the courier's last words may take to leave before it exits all the same."""
NO_LIMIT = 1 << 62
"""The courier's own `memory_rows`: the PBX process bounds what it hands over."""

class _Relay:
    """The courier's side of the outbox: rows it is done with go back to the PBX."""

    def __init__(self, on_done: Callable[[int], None], on_change: Callable[[], None]) -> None:
        self.on_done = on_done
        self.on_change = on_change

    def outbox_delete(self, row_id: int) -> None:
        self.on_done(row_id)

    def outbox_page(self, dest: str, from_id: int, limit: int) -> list[OutboxRow]:
        return []  # (nothing spills here: the PBX keeps the rest)

    def outbox_stored(self, row_id: int) -> bool:
        return True  # (a NewCdr comes once its CDR is committed)

    async def flushed(self) -> None:
        return None

    def outbox_delete_dest(self, dest: str) -> int:
        self.on_change()  # (the count of dropped reports goes up)
        return 0  # (the PBX drops it from the file)

    def outbox_dests(self) -> dict[str, int]:
        return {}

    def outbox_adopt_legacy(
        self, convert: Callable[[LegacyRow], tuple[str, str] | None]
    ) -> tuple[int, int]:
        return 0, 0


@dataclass(frozen=True, slots=True)
class SessionCopy:
    """What the delivery reads of an API session (`delivery.Session`), as the PBX sent it."""

    token: str
    url: str
    urltag: str
    port: str
    version: str
    report_ip: str


class _LiveSessions:
    """The live sessions as the PBX last sent them; a delivery touches tokens here."""

    def __init__(self, on_touch: Callable[[str], None]) -> None:
        self.on_touch = on_touch
        self._live: tuple[SessionCopy, ...] = ()
        self._by_token: dict[str, SessionCopy] = {}

    def update(self, live: list[tuple[str, ...]]) -> None:
        self._live = tuple(SessionCopy(*fields) for fields in live)
        self._by_token = {s.token: s for s in self._live}

    def live(self) -> tuple[SessionCopy, ...]:
        return self._live

    def session(self, token: str) -> SessionCopy | None:
        return self._by_token.get(token)

    def touch(self, token: str) -> bool:
        self.on_touch(token)
        return token in self._by_token


class Courier:
    """The courier's loop: messages in, a `Delivery`, status out."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self.write = write
        self.delivery: Delivery | None = None
        self.sessions = _LiveSessions(self._touched)
        self.done = asyncio.Event()  # stopped (asked to, or the PBX is gone)
        self._done_ids: list[int] = []
        self._tokens: set[str] = set()
        self._delays: list[float] = []
        self._status: asyncio.TimerHandle | None = None
        self._stopping: asyncio.Task[None] | None = None

    def receive(self, message: Message) -> None:
        kind = message[0]
        if kind == "rows":
            if self.delivery is not None:
                rows = message[1]
                assert isinstance(rows, list)
                self.delivery.add([OutboxRow(*row) for row in rows])
        elif kind == "sessions":
            live = message[1]
            assert isinstance(live, list)
            self.sessions.update(live)
        elif kind == "config":
            fields = message[1]
            assert isinstance(fields, dict)
            # (validated in the PBX; pydantic would double the courier's start-up time)
            config = cast("ReportsSection", SimpleNamespace(**fields))
            self.delivery = Delivery(_Relay(self._row_done, self._soon), self.sessions,
                                     config, memory_rows=NO_LIMIT)
            self.delivery.on_delivered = self._delivered
            asyncio.get_running_loop().create_task(self._start(self.delivery))
        elif kind == "stop":
            self.stop()

    async def _start(self, delivery: Delivery) -> None:
        await delivery.start()
        self.write(frame(("ready",)))

    def stop(self) -> None:
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(self._stop())

    async def _stop(self) -> None:
        try:
            if self.delivery is not None:
                await self.delivery.stop()
            with contextlib.suppress(Exception):  # (the PBX may be gone: a broken pipe)
                self.send_status()
        finally:
            self.done.set()

    def _row_done(self, row_id: int) -> None:
        self._done_ids.append(row_id)
        self._soon()

    def _delivered(self, delay: float) -> None:
        self._delays.append(delay)

    def _touched(self, token: str) -> None:
        self._tokens.add(token)

    def _soon(self) -> None:
        if self._status is None:
            self._status = asyncio.get_running_loop().call_later(STATUS_DELAY,
                                                                 self.send_status)

    def send_status(self) -> None:
        if self._status is not None:
            self._status.cancel()
            self._status = None
        delivery = self.delivery
        if delivery is None:
            return
        done, self._done_ids = self._done_ids, []
        delays, self._delays = self._delays, []
        tokens = list(self._tokens)
        self._tokens.clear()
        self.write(frame(("status", done, tokens, delays, delivery.delivered,
                          delivery.dropped)))


class _LogToPbx(logging.Handler):
    def __init__(self, write: Callable[[bytes], None]) -> None:
        super().__init__(logging.INFO)
        self.write = write

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.write(frame(("log", record.levelno, record.name, record.getMessage())))


class _Output(asyncio.Protocol):
    def __init__(self) -> None:
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _Input(asyncio.Protocol):
    def __init__(self, courier: Courier) -> None:
        self.courier = courier
        self.reader = FrameReader()

    def data_received(self, data: bytes) -> None:
        for message in self.reader.feed(data):
            self.courier.receive(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.courier.stop()  # (the PBX is gone, or closed our stdin)


async def serve() -> None:
    """Run until told to stop or until stdin closes."""
    loop = asyncio.get_running_loop()
    out, output = await loop.connect_write_pipe(_Output, sys.stdout.buffer)
    write = out.write
    root = logging.getLogger()
    root.handlers[:] = [_LogToPbx(write)]
    root.setLevel(logging.INFO)
    courier = Courier(write)
    await loop.connect_read_pipe(lambda: _Input(courier), sys.stdin.buffer)
    await courier.done.wait()
    out.close()  # (what is buffered is written first, if the PBX still reads)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(STOP_WRITE):
            await output.closed


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):  # (the PBX stops it, in order)
        signal.signal(sig, signal.SIG_IGN)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve())


if __name__ == "__main__":
    main()
