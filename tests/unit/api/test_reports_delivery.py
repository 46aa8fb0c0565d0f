"""The report outbox's delivery: order per lane, no head-of-line blocking across lanes,
4xx/5xx/unreachable handling, the retry window, one queue per destination, restart."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ippbx.api.reports import Action, Delivery, Form, Report, ReportService, route_of
from ippbx.api.reports.build import Party
from ippbx.api.reports.delivery import Outcome
from ippbx.api.sessions import Session, SessionManager
from ippbx.config import ReportsSection, load_config
from ippbx.pbx.calls import CallRegistry, Leg, LegKind
from ippbx.pbx.cdr import CdrRecord
from ippbx.store import batch
from ippbx.store.sqlite import Store

Handler = Callable[[str, bytes], Awaitable[Outcome]]


class Net:
    """A fake poster (the receivers' side of the network): records the POSTs (URL, body)
    and answers with `handler` (a POST's outcome), else delivers."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes]] = []
        self.requests: list[tuple[str, bytes]] = []
        self.handler: Handler | None = None

    async def __call__(self, url: str, body: bytes) -> Outcome:
        self.requests.append((url, body))
        if self.handler is not None:
            return await self.handler(url, body)
        self.seen.append((url, body))
        return Outcome.DELIVERED


def sessions_with(*ports: str, **login: str) -> tuple[SessionManager, list[Session]]:
    config = load_config(None)
    manager = SessionManager(config.api)
    found = []
    for port in ports:
        found.append(manager.login("api", _md5(config.api.password), "10.0.0.1", "openvox",
                                   port=port, **login))
    return manager, found


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


async def drained(delivery: Delivery, timeout: float = 5.0) -> None:
    async def wait() -> None:
        while delivery.pending():
            await asyncio.sleep(0.005)
    await asyncio.wait_for(wait(), timeout)


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async def wait() -> None:
        while not predicate():
            await asyncio.sleep(0.005)
    await asyncio.wait_for(wait(), timeout)


def make(store: Store, sessions: SessionManager, net: Net, **cfg: float) -> Delivery:
    config = ReportsSection(**cfg)  # type: ignore[arg-type]
    return Delivery(store, sessions, config, poster=net)


def rows(session: Session, *items: tuple[str, bytes]) -> list[tuple[str, str, bytes, float]]:
    """Outbox rows (lane, body) for the destination of `session`."""
    now = time.time()
    return [(route_of(session), lane, body, now) for lane, body in items]


async def test_delivers_in_order_deletes_and_renews_the_token() -> None:
    store, net = Store(":memory:"), Net()
    sessions, [session] = sessions_with("8260")
    delivery = make(store, sessions, net)
    await delivery.start()
    try:
        delivery.add(store.outbox_add(rows(session, *[("c1", b'{"n":%d}' % i)
                                                      for i in range(20)])))
        await drained(delivery)
    finally:
        await delivery.stop()
    assert [json.loads(body)["n"] for _, body in net.seen] == list(range(20))
    assert {url for url, _ in net.seen} == {"http://10.0.0.1:8260/"}
    assert store.outbox_count() == 0 and delivery.delivered == 20
    # (the request itself, byte for byte: test_report_poster.py)


async def test_failures_back_off_and_keep_the_order_of_a_lane() -> None:
    store, net = Store(":memory:"), Net()
    sessions, [session] = sessions_with("8260")
    failures = {"left": 3}

    async def flaky(url: str, body: bytes) -> Outcome:
        if failures["left"]:
            failures["left"] -= 1
            if failures["left"] == 1:
                return Outcome.UNREACHABLE
            return Outcome.FAILED
        net.seen.append((url, body))
        return Outcome.DELIVERED

    net.handler = flaky
    delivery = make(store, sessions, net, backoff_max=0.02)
    await delivery.start()
    try:
        delivery.add(store.outbox_add(rows(session, ("c", b"0"), ("c", b"1"), ("c", b"2"))))
        await drained(delivery)
    finally:
        await delivery.stop()
    assert [body for _, body in net.seen] == [b"0", b"1", b"2"]
    assert len(net.requests) == 6 and delivery.dropped == 0


async def test_a_rejected_report_holds_up_no_other_lane_and_is_dropped() -> None:
    store, net = Store(":memory:"), Net()
    sessions, [session] = sessions_with("8260")
    sent_at: dict[bytes, list[float]] = {}

    async def reject_status(url: str, body: bytes) -> Outcome:
        sent_at.setdefault(body, []).append(time.monotonic())
        if body.startswith(b"status"):
            return Outcome.REJECTED  # a receiver that wants a callid in every report
        net.seen.append((url, body))
        return Outcome.DELIVERED

    net.handler = reject_status
    delivery = make(store, sessions, net, backoff_max=0.05)
    await delivery.start()
    try:
        delivery.add(store.outbox_add(rows(
            session, ("ext:1001", b"status1"), ("ext:1001", b"status2"), ("c1", b"ring1"),
            ("c1", b"answer1"), ("c2", b"ring2"))))
        await until(lambda: len(net.seen) == 3, 0.5)  # the calls' reports went at once
        got = [body for _, body in net.seen]
        assert sorted(got) == [b"answer1", b"ring1", b"ring2"]
        assert got.index(b"ring1") < got.index(b"answer1")
        await drained(delivery)
    finally:
        await delivery.stop()
    # 3 tries for the first; the receiver has shown it refuses ExtensionStatus: one for
    # the next (until one is delivered)
    assert len(sent_at[b"status1"]) == 3 and len(sent_at[b"status2"]) == 1
    assert sent_at[b"status2"][0] >= sent_at[b"status1"][-1]  # the lane kept its order
    assert delivery.dropped == 2 and store.outbox_count() == 0


async def test_a_failing_call_holds_up_only_its_own_later_reports() -> None:
    store, net = Store(":memory:"), Net()
    sessions, [session] = sessions_with("8260")
    broken = {"on": True}

    async def fail_call_1(url: str, body: bytes) -> Outcome:
        if body.startswith(b"c1") and broken["on"]:
            return Outcome.FAILED
        net.seen.append((url, body))
        return Outcome.DELIVERED

    net.handler = fail_call_1
    delivery = make(store, sessions, net, backoff_max=0.05)
    await delivery.start()
    try:
        delivery.add(store.outbox_add(rows(session, ("1", b"c1-ring"), ("2", b"c2-ring"),
                                           ("1", b"c1-answer"), ("2", b"c2-answer"))))
        await until(lambda: len(net.seen) == 2)
        await asyncio.sleep(0.2)  # call 1 keeps failing: nothing of it goes out of order
        assert [body for _, body in net.seen] == [b"c2-ring", b"c2-answer"]
        broken["on"] = False
        await drained(delivery)
    finally:
        await delivery.stop()
    assert [body for _, body in net.seen] == [b"c2-ring", b"c2-answer", b"c1-ring",
                                              b"c1-answer"]
    assert delivery.dropped == 0


async def test_an_unreachable_receiver_is_probed_then_everything_goes_in_lane_order() -> None:
    store, net = Store(":memory:"), Net()
    sessions, [session] = sessions_with("8260")
    up = {"on": False}

    async def down_then_up(url: str, body: bytes) -> Outcome:
        if not up["on"]:
            return Outcome.UNREACHABLE
        net.seen.append((url, body))
        return Outcome.DELIVERED

    net.handler = down_then_up
    delivery = make(store, sessions, net, backoff_max=0.1)
    await delivery.start()
    try:
        items = [(f"c{i % 10}", b"%d-%d" % (i % 10, i // 10)) for i in range(100)]
        delivery.add(store.outbox_add(rows(session, *items)))
        await asyncio.sleep(0.5)
        tries_while_down = len(net.requests)
        assert tries_while_down <= 10  # probes with backoff, not a storm of 100 POSTs
        up["on"] = True
        await drained(delivery)
    finally:
        await delivery.stop()
    got = [body.decode() for _, body in net.seen]
    assert sorted(got) == sorted(body.decode() for _, body in items)  # all, none twice
    for lane in range(10):
        mine = [g for g in got if g.startswith(f"{lane}-")]
        assert mine == [f"{lane}-{n}" for n in range(10)]
    assert delivery.dropped == 0 and store.outbox_count() == 0


async def test_a_dead_receiver_costs_memory_for_memory_rows_reports_only() -> None:
    """Past `memory_rows` pending reports a destination leaves the later ones in the
    outbox file; they are read back as its lanes drain: all of them, each lane in order,
    and never more than `memory_rows` in memory."""
    store, net = Store(":memory:"), Net()
    sessions, [session] = sessions_with("8260")
    up = {"on": False}
    most = {"in memory": 0}

    def in_memory() -> int:
        return sum(len(lane.rows) for dest in delivery._dests.values()
                   for lane in dest.lanes.values())

    async def down_then_up(url: str, body: bytes) -> Outcome:
        most["in memory"] = max(most["in memory"], in_memory())
        if not up["on"]:
            return Outcome.UNREACHABLE
        net.seen.append((url, body))
        return Outcome.DELIVERED

    net.handler = down_then_up
    config = ReportsSection(backoff_max=0.05)  # type: ignore[call-arg]
    delivery = Delivery(store, sessions, config, poster=net, memory_rows=6)
    await delivery.start()
    try:
        items = [(f"c{i % 8}", b'{"n":%d}' % i) for i in range(48)]
        delivery.add(store.outbox_add(rows(session, *items), hold=[True] * 48))
        assert in_memory() == 6 and delivery.pending() == 48
        await until(lambda: len(net.requests) >= 2)  # (probes while down, backing off)
        up["on"] = True
        await drained(delivery)
        more = [(f"c{i % 3}", b'{"n":%d}' % i) for i in range(48, 60)]  # (and afterwards)
        delivery.add(store.outbox_add(rows(session, *more)))
        await drained(delivery)
    finally:
        await delivery.stop()
    got = [json.loads(body)["n"] for _, body in net.seen]
    assert sorted(got) == list(range(60))  # every report read back, none twice
    for lane in range(8):
        mine = [n for n in got if n < 48 and n % 8 == lane]
        assert mine == list(range(lane, 48, 8))
    assert most["in memory"] <= 6
    assert delivery.dropped == 0 and store.outbox_count() == 0 and delivery.delivered == 60


async def test_a_report_older_than_the_retry_window_is_dropped() -> None:
    store, net = Store(":memory:"), Net()
    sessions, [session] = sessions_with("8260")

    async def refuse_old(url: str, body: bytes) -> Outcome:
        if body == b"old":
            return Outcome.FAILED
        net.seen.append((url, body))
        return Outcome.DELIVERED

    net.handler = refuse_old
    delivery = make(store, sessions, net, backoff_max=0.01, retry_minutes=0.001)
    await delivery.start()
    try:
        delivery.add(store.outbox_add(rows(session, ("c", b"old"), ("c", b"new"))))
        await drained(delivery)
    finally:
        await delivery.stop()
    assert [body for _, body in net.seen] == [b"new"]
    assert delivery.dropped == 1 and store.outbox_count() == 0


async def test_a_hanging_receiver_blocks_only_its_own_destination() -> None:
    store, net = Store(":memory:"), Net()
    sessions, [slow, fast] = sessions_with("1", "2")
    release = asyncio.Event()

    async def hang_port_1(url: str, body: bytes) -> Outcome:
        if urlsplit(url).port == 1:
            await release.wait()
        net.seen.append((url, body))
        return Outcome.DELIVERED

    net.handler = hang_port_1
    delivery = make(store, sessions, net, concurrency=1)
    await delivery.start()
    try:
        delivery.add(store.outbox_add(rows(slow, ("c", b"s1"), ("c", b"s2"))
                                      + rows(fast, ("c", b"f1"), ("c", b"f2"))))
        await until(lambda: len(net.seen) == 2)
        assert [body for _, body in net.seen] == [b"f1", b"f2"]
        release.set()
        await drained(delivery)
    finally:
        await delivery.stop()
    assert [body for _, body in net.seen] == [b"f1", b"f2", b"s1", b"s2"]


async def test_logout_drops_the_reports_of_a_destination_no_session_uses() -> None:
    store, net = Store(":memory:"), Net()
    sessions, [session, other] = sessions_with("1", "2")

    async def refuse(url: str, body: bytes) -> Outcome:
        return Outcome.FAILED

    net.handler = refuse
    delivery = make(store, sessions, net, backoff_max=0.01)
    await delivery.start()
    try:
        delivery.add(store.outbox_add(rows(session, ("c", b"a"), ("c", b"b"))))
        await asyncio.sleep(0.03)
        sessions.logout(session.token)
        await drained(delivery)
    finally:
        await delivery.stop()
    assert store.outbox_count() == 0 and delivery.dropped == 2


async def test_two_sessions_on_one_destination_share_it() -> None:
    config = load_config(None)
    store, registry = Store(":memory:"), CallRegistry()
    sessions = SessionManager(config.api)
    service = ReportService(config, registry, sessions, store)
    net = Net()
    service.delivery = make(store, sessions, net)
    md5 = _md5(config.api.password)
    first = sessions.login("api", md5, "10.0.0.1", "openvox", port="8260", url="cb")
    second = sessions.login("api", md5, "10.0.0.1", "yeastar", port="8260", url="/cb")
    await service.delivery.start()
    try:
        registry.start_call(Leg(LegKind.EXTENSION, "1001", "1002", extension="1001"), "1002")
        assert store.outbox_count() == 1  # one row, for the one destination
        await drained(service.delivery)
        sessions.logout(first.token)  # the other session still wants the reports
        registry.start_call(Leg(LegKind.EXTENSION, "1003", "1002", extension="1003"), "1002")
        await drained(service.delivery)
    finally:
        await service.delivery.stop()
    assert [json.loads(body)["extension"] for _, body in net.seen] == ["1001", "1003"]
    assert {url for url, _ in net.seen} == {"http://10.0.0.1:8260/cb"}
    assert sessions.session(second.token) is not None


async def test_stored_reports_resume_after_a_restart(tmp_path: Path) -> None:
    path = f"{tmp_path}/db.sqlite3"
    store, net = Store(path), Net()
    sessions, [session] = sessions_with("8260")
    now = time.time()
    store.outbox_add(rows(session, ("c", b"1"))
                     + [("openvox http://gone:1/", "c", b"x", now)] + rows(session, ("c", b"2")))
    store.close()
    store = Store(path)
    delivery = make(store, sessions, net)
    delivery.load()
    assert delivery.pending() == 2 and store.outbox_count() == 2  # the unused one went
    await delivery.start()
    try:
        await drained(delivery)
    finally:
        await delivery.stop()
    assert [body for _, body in net.seen] == [b"1", b"2"]


async def test_a_large_outbox_after_a_restart_is_read_back_a_part_at_a_time(
        tmp_path: Path) -> None:
    """After a long outage and a restart, a destination takes its first `memory_rows`
    stored reports into memory and the rest as those go: all delivered, in lane order."""
    path = f"{tmp_path}/db.sqlite3"
    store, net = Store(path), Net()
    sessions, [session] = sessions_with("8260")
    store.outbox_add(rows(session, *[(f"c{i % 3}", b"%d" % i) for i in range(30)]))
    store.close()
    store = Store(path)
    delivery = Delivery(store, sessions, ReportsSection(), poster=net,  # type: ignore[call-arg]
                        memory_rows=5)
    delivery.load()
    in_memory = sum(len(lane.rows) for dest in delivery._dests.values()
                    for lane in dest.lanes.values())
    assert delivery.pending() == 30 and in_memory == 5
    await delivery.start()
    try:
        await drained(delivery)
    finally:
        await delivery.stop()
    got = [int(body) for _, body in net.seen]
    assert sorted(got) == list(range(30)) and store.outbox_count() == 0
    for lane in range(3):
        assert [n for n in got if n % 3 == lane] == list(range(lane, 30, 3))


async def test_an_outbox_of_the_per_session_version_is_carried_over(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, token TEXT NOT NULL,
                             body BLOB NOT NULL, created REAL NOT NULL);
        CREATE INDEX outbox_token ON outbox (token, id);
    """)
    sessions, [session] = sessions_with("8260")
    now = time.time()
    for token, body in [(session.token, b'{"action":"RING","callid":"1.1"}'),
                        ("f" * 32, b'{"action":"RING","callid":"2.2"}'),
                        (session.token, b'{"action":"ExtensionStatus","extension":"1001"}')]:
        old.execute("INSERT INTO outbox (token, body, created) VALUES (?,?,?)",
                    (token, body, now))
    old.commit()
    old.close()
    store, net = Store(path), Net()
    delivery = make(store, sessions, net)
    delivery.load()
    assert [(r.dest, r.lane) for r in store.outbox_load()] == [
        (route_of(session), "1.1"), (route_of(session), "ext:1001")]
    assert delivery.pending() == 2 and delivery.dropped == 1
    await delivery.start()
    try:
        await drained(delivery)
    finally:
        await delivery.stop()
    assert len(net.seen) == 2 and store.outbox_count() == 0
    store.close()
    assert Store(path).outbox_count() == 0  # migrated once


async def test_service_stores_one_row_per_destination_and_report_in_its_form() -> None:
    config = load_config(None)
    store, registry = Store(":memory:"), CallRegistry()
    sessions = SessionManager(config.api)
    service = ReportService(config, registry, sessions, store)
    registry.start_call(Leg(LegKind.EXTENSION, "1001", "1002", extension="1001"), "1002")
    assert store.outbox_count() == 0  # nobody logged in: nothing stored
    md5 = _md5(config.api.password)
    ov = sessions.login("api", md5, "10.0.0.1", "openvox", port="1")
    ys = sessions.login("api", md5, "10.0.0.1", "yeastar", port="2", version="1.0.2")
    registry.start_call(Leg(LegKind.EXTENSION, "1003", "1002", extension="1003"), "1003")
    stored = store.outbox_load()
    assert [(r.dest, r.lane, json.loads(r.body)["status"]) for r in stored] == [
        (route_of(ov), "ext:1003", "InUse"), (route_of(ys), "ext:1003", "Busy")]
    assert service.delivery.pending() == 2


async def test_a_session_that_logs_in_mid_call_hears_the_extension_go_idle() -> None:
    """With nobody logged in no report is built, but the extension states still follow
    the calls: a session that logs in while 1001 is busy gets its Idle when the call ends."""
    config = load_config(None)
    store, registry = Store(":memory:"), CallRegistry()
    sessions = SessionManager(config.api)
    ReportService(config, registry, sessions, store)
    caller = Leg(LegKind.EXTENSION, "1001", "1002", extension="1001")
    call = registry.start_call(caller, "1002")
    assert store.outbox_count() == 0
    session = sessions.login("api", _md5(config.api.password), "10.0.0.1", "openvox", port="1")
    registry.end_leg(caller.id, 487)
    assert registry.get(call.callid) is None
    stored = [json.loads(r.body) for r in store.outbox_load()]
    assert {r.dest for r in store.outbox_load()} == {route_of(session)}
    assert [body["action"] for body in stored] == ["ExtensionStatus", "CallFailed", "NewCdr"]
    assert (stored[0]["extension"], stored[0]["status"]) == ("1001", "Idle")


async def test_service_holds_every_report_but_new_cdr_until_it_waits(
    tmp_path: Path,
) -> None:
    """Reports a receiver takes at once never reach the file; a NewCdr is committed with
    the CDR before it (the delivery waits for that)."""
    config = load_config(None)
    path = tmp_path / "db.sqlite3"
    store, registry = Store(path), CallRegistry()
    sessions = SessionManager(config.api)
    service = ReportService(config, registry, sessions, store)
    sessions.login("api", _md5(config.api.password), "10.0.0.1", "openvox", port="1")
    record = CdrRecord("1.1", 10.0, None, 12.0, "1001", "1002", 2, 0, "BUSY", "Internal")
    service.send([Report(Action.RING, "1.1"), Report(Action.NEW_CDR, "1.1", record=record)])
    await store.flushed()
    with sqlite3.connect(path) as other:
        bodies = [json.loads(b)["action"] for (b,) in other.execute("SELECT body FROM outbox")]
    assert bodies == ["NewCdr"] and store.outbox_count() == 2
    store.close()


def test_a_header_byte_that_was_not_utf8_does_not_lose_the_report() -> None:
    """SIP heads are decoded with surrogateescape: a From user with a stray byte holds a
    lone surrogate, which no JSON encoder takes; the report goes, a '?' in its place."""
    config = load_config(None)
    service = ReportService(config, CallRegistry(), SessionManager(config.api),
                            Store(":memory:"))
    report = Report(Action.RING, "1.1", (Party("ext", "10\udcff2"),))
    body = service.encode(report, Form.OPENVOX)
    assert json.loads(body)["ext"] == {"extid": "10?2"}


def test_a_report_body_in_memory_takes_about_its_length() -> None:
    """Reports wait in memory (held for `outbox.HOLD`, or for a receiver that is down):
    a body must not keep the encoder's 4 KiB working buffer (orjson's bytes do)."""
    config = load_config(None)
    service = ReportService(config, CallRegistry(), SessionManager(config.api),
                            Store(":memory:"))
    report = Report(Action.RING, "1589938378.1130", (Party("ext", "1001"),))
    service.encode(report, Form.OPENVOX)  # (one-time allocations out of the way)
    tracemalloc.start()
    try:
        bodies = [service.encode(report, Form.OPENVOX) for _ in range(200)]
        used = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    length = len(bodies[0])
    assert length < 300 and used / len(bodies) < length + 200, (length, used / len(bodies))


def test_report_urls_are_logged_without_their_secrets() -> None:
    from ippbx.api.reports.delivery import safe_url

    url = "https://crm:s3cret@crm.example:8443/hook?apikey=abc123&tenant=7"
    assert safe_url(url) == "https://crm.example:8443/hook?apikey=…&tenant=…"
    assert safe_url("http://10.0.0.1:8260/") == "http://10.0.0.1:8260/"


async def test_a_new_cdr_leaves_only_once_it_and_its_cdr_are_in_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes are committed in batches; a NewCdr is not POSTed before its row and the CDR
    written before it are committed (a crash cannot take back a CDR a receiver heard of),
    while the call's other reports do not wait for the batch."""
    monkeypatch.setattr(batch, "FLUSH_DELAY", 0.5)  # (the batch is surely still queued)
    path = tmp_path / "db.sqlite3"
    store, net = Store(path), Net()
    sessions, [session] = sessions_with("8260")
    in_file: list[tuple[bytes, int, int]] = []  # at each POST: (body, outbox rows, CDRs)

    async def handler(url: str, body: bytes) -> Outcome:
        with sqlite3.connect(path) as other:  # what a crash now would leave
            in_file.append((body, other.execute("SELECT COUNT(*) FROM outbox").fetchone()[0],
                            other.execute("SELECT COUNT(*) FROM cdr").fetchone()[0]))
        return Outcome.DELIVERED

    net.handler = handler
    delivery = make(store, sessions, net)
    await delivery.start()
    answer = b'{"action":"ANSWER","callid":"1.1"}'
    new_cdr = b'{"action":"NewCdr","callid":"1.1"}'
    try:
        store.add_cdr(CdrRecord("1.1", 10.0, None, 12.0, "1001", "1002", 2, 0, "BUSY",
                                "Internal"))
        delivery.add(store.outbox_add(rows(session, ("1.1", answer), ("1.1", new_cdr))))
        await drained(delivery)
    finally:
        await delivery.stop()
    assert [body for body, _, _ in in_file] == [answer, new_cdr]
    assert in_file[0][1:] == (0, 0)  # the ANSWER went before the batch was committed
    assert in_file[1][2] == 1  # the NewCdr only once its CDR was
    assert store.outbox_count() == 0
    store.close()
