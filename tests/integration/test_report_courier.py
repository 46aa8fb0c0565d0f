"""The report courier (`[reports] own_process`): a real courier process started by
`CourierLink`, POSTing over loopback to a real HTTP receiver, with the outbox in a real
SQLite file. What a user sees: every report arrives once, in order per call, the outbox
empties, sessions are renewed; a receiver that is down costs bounded memory; a courier
that dies is replaced and nothing is lost; a logout drops its reports; a stop is prompt.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sipp_harness import free_port

from ippbx.api.http_server import HttpRequest, HttpResponse
from ippbx.api.reports import route_of
from ippbx.api.reports.courier_link import CourierLink
from ippbx.api.reports.delivery import MEMORY_ROWS
from ippbx.api.server import ApiServer
from ippbx.api.sessions import Session, SessionManager
from ippbx.config import ReportsSection, load_config
from ippbx.store.sqlite import Store


class Receiver:
    """Records the reports POSTed to it (answers 200)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.got: list[dict[str, object]] = []
        self.server: ApiServer | None = None
        self.on_report: Callable[[dict[str, object]], None] | None = None

    def _handle(self, request: HttpRequest) -> HttpResponse:
        report = json.loads(request.body)
        self.got.append(report)
        if self.on_report is not None:
            self.on_report(report)
        return HttpResponse(200, (), b"")

    async def start(self) -> None:
        self.server = ApiServer(self._handle, "127.0.0.1", self.port)
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None


def login(port: int) -> tuple[SessionManager, Session]:
    config = load_config(None)
    sessions = SessionManager(config.api)
    md5 = hashlib.md5(config.api.password.encode()).hexdigest()
    return sessions, sessions.login("api", md5, "127.0.0.1", "openvox", port=str(port))


def rows_for(route: str, calls: int, per_call: int) -> list[tuple[str, str, bytes, float]]:
    """`calls` calls' reports, interleaved as calls overlap: call c's n-th has seq n."""
    now = time.time()
    return [(route, f"call{c}", json.dumps({"action": "RING", "callid": f"call{c}",
                                             "seq": n}).encode(), now)
            for n in range(per_call) for c in range(calls)]


def in_order(got: list[dict[str, object]], calls: int, per_call: int) -> bool:
    """Each call's reports arrived once each, in order."""
    seen: dict[object, list[object]] = {}
    for report in got:
        seen.setdefault(report["callid"], []).append(report["seq"])
    return seen == {f"call{c}": list(range(per_call)) for c in range(calls)}


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.01)


async def found_down(caplog: pytest.LogCaptureFixture) -> None:
    """Until the courier's warning that the receiver is down reaches this process's log
    (it holds the reports and has tried them)."""
    await until(lambda: "unreachable; retrying" in caplog.text, 5, "the courier's warning")


@asynccontextmanager
async def courier(store: Store, sessions: SessionManager, *, memory_rows: int = MEMORY_ROWS,
                  **kw: float) -> AsyncIterator[CourierLink]:
    link = CourierLink(store, sessions, ReportsSection(**kw),  # type: ignore[arg-type]
                       memory_rows=memory_rows)
    link.load()
    await link.start()
    try:
        yield link
    finally:
        await link.stop()


def child_pid(link: CourierLink) -> int:
    assert link.pid is not None
    return link.pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


async def test_reports_arrive_in_order_and_the_outbox_empties(tmp_path: Path) -> None:
    receiver = Receiver()
    await receiver.start()
    sessions, session = login(receiver.port)
    store = Store(str(tmp_path / "pbx.sqlite3"))
    delays: list[float] = []
    try:
        async with courier(store, sessions) as link:
            link.on_delivered = delays.append
            pid = child_pid(link)
            assert pid != os.getpid() and alive(pid)
            session.last_seen -= 100  # (so the renewal shows)
            before = session.last_seen
            link.add(store.outbox_add(rows_for(route_of(session), 40, 5),
                                      hold=[True] * 200))
            await until(lambda: link.pending() == 0, 10, "200 reports delivered")
            assert in_order(receiver.got, 40, 5)
            assert (link.queued, link.delivered, link.dropped) == (200, 200, 0)
            assert len(delays) == 200 and all(0 <= d < 10 for d in delays)
            assert store.outbox_count() == 0
            assert session.last_seen > before  # the delivery renewed the session
        assert not alive(pid)  # stopped with the link
    finally:
        store.close()
        await receiver.stop()


async def test_a_newcdr_waits_for_its_cdr_and_keeps_its_place(tmp_path: Path) -> None:
    """A NewCdr (stored with its CDR, not held) is POSTed only once committed, after the
    call's earlier reports."""
    receiver = Receiver()
    await receiver.start()
    sessions, session = login(receiver.port)
    store = Store(str(tmp_path / "pbx.sqlite3"))
    route, now = route_of(session), time.time()
    try:
        async with courier(store, sessions) as link:
            bodies = [b'{"action":"BYE","callid":"c1","seq":0}',
                      b'{"action":"NewCdr","callid":"c1","seq":1}',
                      b'{"action":"RING","callid":"c2","seq":0}']
            rows = store.outbox_add([(route, json.loads(b)["callid"], b, now) for b in bodies],
                                    hold=[True, False, True])
            committed: list[bool] = []
            receiver.on_report = lambda report: committed.append(
                report["action"] != "NewCdr" or store.outbox_stored(rows[1].id))
            assert not store.outbox_stored(rows[1].id)
            link.add(rows)
            await until(lambda: link.pending() == 0, 10, "3 reports delivered")
            assert committed == [True, True, True]
            assert [r["seq"] for r in receiver.got if r["callid"] == "c1"] == [0, 1]
            assert len(receiver.got) == 3 and store.outbox_count() == 0
    finally:
        store.close()
        await receiver.stop()


async def test_a_receiver_down_costs_the_courier_memory_rows_at_most(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    receiver = Receiver()  # (not started: refused)
    sessions, session = login(receiver.port)
    store = Store(str(tmp_path / "pbx.sqlite3"))
    try:
        async with courier(store, sessions, backoff_max=0.2, memory_rows=7) as link:
            link.add(store.outbox_add(rows_for(route_of(session), 6, 5), hold=[True] * 30))
            held = link._held[route_of(session)]
            assert (held.in_courier, held.spilled, link.pending()) == (7, 23, 30)
            with caplog.at_level(logging.WARNING):
                await found_down(caplog)
            assert link.pending() == 30 and link.delivered == 0
            await receiver.start()
            most = 0
            deadline = time.monotonic() + 15
            while link.pending() and time.monotonic() < deadline:
                most = max(most, sum(h.in_courier for h in link._held.values()))
                await asyncio.sleep(0.005)
            assert link.pending() == 0
            assert most <= 7
            assert in_order(receiver.got, 6, 5)
            assert store.outbox_count() == 0
    finally:
        store.close()
        await receiver.stop()


async def test_a_courier_that_dies_is_replaced_and_nothing_is_lost(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    receiver = Receiver()  # (down while the courier dies: its rows are all in flight)
    sessions, session = login(receiver.port)
    store = Store(str(tmp_path / "pbx.sqlite3"))
    try:
        async with courier(store, sessions, backoff_max=0.2) as link:
            with caplog.at_level(logging.WARNING):
                link.add(store.outbox_add(rows_for(route_of(session), 10, 3),
                                          hold=[True] * 30))
                await found_down(caplog)
            first = child_pid(link)
            caplog.clear()
            with caplog.at_level(logging.ERROR):
                os.kill(first, signal.SIGKILL)
                await until(lambda: link.restarts == 1 and link._transport is not None, 5,
                            "a new courier")
            assert "the report courier ended" in caplog.text
            assert child_pid(link) != first
            await receiver.start()
            await until(lambda: link.pending() == 0, 15, "the 30 reports delivered")
            assert in_order(receiver.got, 10, 3)
            assert link.delivered == 30 and store.outbox_count() == 0
    finally:
        store.close()
        await receiver.stop()


async def test_a_logout_drops_its_reports_and_the_courier_logs_here(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    receiver = Receiver()  # (never up)
    sessions, session = login(receiver.port)
    store = Store(str(tmp_path / "pbx.sqlite3"))
    try:
        with caplog.at_level(logging.INFO):
            async with courier(store, sessions, backoff_max=0.2, memory_rows=4) as link:
                link.add(store.outbox_add(rows_for(route_of(session), 3, 3), hold=[True] * 9))
                await found_down(caplog)
                sessions.logout(session.token)
                await until(lambda: link.pending() == 0 and link.dropped == 9, 5,
                            "the 9 reports dropped")
                assert store.outbox_count() == 0
                assert not link._held
    finally:
        store.close()


async def test_a_stop_is_prompt_and_leaves_what_is_not_delivered(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    receiver = Receiver()  # (never up)
    sessions, session = login(receiver.port)
    path = str(tmp_path / "pbx.sqlite3")
    store = Store(path)
    started = time.monotonic()
    async with courier(store, sessions) as link:
        with caplog.at_level(logging.WARNING):
            link.add(store.outbox_add(rows_for(route_of(session), 5, 2), hold=[True] * 10))
            await found_down(caplog)
        pid = child_pid(link)
    assert time.monotonic() - started < 5
    assert not alive(pid)
    store.close()
    store = Store(path)  # the next run finds them
    try:
        assert store.outbox_count() == 10
    finally:
        store.close()


async def test_signals_to_the_process_group_leave_the_courier_to_the_pbx(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A Ctrl-C or a service manager's SIGTERM reaches every process; the courier waits
    to be stopped by the PBX in order (no restart, no error), and one that keeps dying
    is started again later each time."""
    receiver = Receiver()
    await receiver.start()
    sessions, session = login(receiver.port)
    store = Store(str(tmp_path / "pbx.sqlite3"))
    try:
        with caplog.at_level(logging.ERROR):
            async with courier(store, sessions) as link:
                pid = child_pid(link)  # (ready: its signals were ignored before its imports)
                os.kill(pid, signal.SIGINT)
                os.kill(pid, signal.SIGTERM)
                link.add(store.outbox_add(rows_for(route_of(session), 2, 2),
                                          hold=[True] * 4))
                await until(lambda: link.pending() == 0, 5, "4 reports delivered")
                assert alive(pid) and link.restarts == 0 and not caplog.text
                os.kill(pid, signal.SIGKILL)
                await until(lambda: link.pid not in (None, pid), 5, "a second courier")
                os.kill(link.pid or 0, signal.SIGKILL)
                await until(lambda: link.restarts == 2, 5, "a third courier")
            delays = [r.getMessage().rpartition(" in ")[2] for r in caplog.records]
            assert delays == ["1 s", "2 s"]
        assert not alive(pid)
    finally:
        store.close()
        await receiver.stop()


ORPHAN = """
import asyncio, os, sys
from ippbx.api.reports.courier_link import CourierLink
from ippbx.api.reports.frames import frame
from ippbx.api.sessions import SessionManager
from ippbx.config import load_config
from ippbx.store.sqlite import Store

async def main():
    config = load_config(None)
    link = CourierLink(Store(":memory:"), SessionManager(config.api), config.reports)
    await link.start()  # (returns once the courier is ready)
    print(link.pid, flush=True)
    os._exit(0)  # (as a kill -9 would: nothing stops the courier)

asyncio.run(main())
"""


async def test_the_courier_ends_when_the_pbx_is_gone() -> None:
    """A PBX killed outright leaves no courier behind (it sees its stdin close)."""
    src = str(Path(__file__).resolve().parents[2] / "src")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ORPHAN, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": src})
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    pid = int(out.decode().split()[-1])
    try:
        await until(lambda: not alive(pid), 5, "the orphaned courier to end")
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


async def test_a_courier_that_hangs_is_killed_at_the_stop(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A courier that answers nothing (stopped, swapped out, stuck) does not hold up
    ippbx's stop: it is killed after the grace, and its reports stay stored."""
    receiver = Receiver()  # (never up)
    sessions, session = login(receiver.port)
    path = str(tmp_path / "pbx.sqlite3")
    store = Store(path)
    with caplog.at_level(logging.WARNING):
        async with courier(store, sessions) as link:
            link.add(store.outbox_add(rows_for(route_of(session), 2, 2), hold=[True] * 4))
            await found_down(caplog)
            pid = child_pid(link)
            os.kill(pid, signal.SIGSTOP)
            started = time.monotonic()
    assert 2.0 < time.monotonic() - started < 6  # (STOP_GRACE + 2 s, then killed)
    assert "did not stop in time: killed" in caplog.text
    assert not alive(pid)
    store.close()
    store = Store(path)
    try:
        assert store.outbox_count() == 4
    finally:
        store.close()
