"""The report outbox's delivery: order, backoff, retry window, independence, restart."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from ippbx.api.reports import Delivery, ReportService
from ippbx.api.sessions import SessionManager
from ippbx.config import ReportsSection, load_config
from ippbx.pbx.calls import CallRegistry, Leg, LegKind
from ippbx.store.sqlite import Store

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


class Net:
    """A mock transport: records requests per URL and answers with `handler`."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes]] = []
        self.requests: list[httpx.Request] = []
        self.handler: Handler | None = None

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.handler is not None:
            return await self.handler(request)
        self.seen.append((str(request.url), request.content))
        return httpx.Response(200)


def sessions_with(*ports: str) -> tuple[SessionManager, list[str]]:
    config = load_config(None)
    manager = SessionManager(config.api)
    tokens = []
    for port in ports:
        s = manager.login("api", _md5(config.api.password), "10.0.0.1", "openvox", port=port)
        tokens.append(s.token)
    return manager, tokens


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


async def drained(delivery: Delivery, timeout: float = 5.0) -> None:
    async def wait() -> None:
        while delivery.pending():
            await asyncio.sleep(0.005)
    await asyncio.wait_for(wait(), timeout)


def make(store: Store, sessions: SessionManager, net: Net, **cfg: float) -> Delivery:
    config = ReportsSection(**cfg)  # type: ignore[arg-type]
    return Delivery(store, sessions, config, transport=httpx.MockTransport(net))


async def test_delivers_in_order_deletes_and_renews_the_token() -> None:
    store, net = Store(":memory:"), Net()
    sessions, [token] = sessions_with("8260")
    delivery = make(store, sessions, net)
    await delivery.start()
    try:
        delivery.add(store.outbox_add([(token, b'{"n":%d}' % i, time.time()) for i in range(20)]))
        await drained(delivery)
    finally:
        await delivery.stop()
    assert [json.loads(body)["n"] for _, body in net.seen] == list(range(20))
    assert {url for url, _ in net.seen} == {"http://10.0.0.1:8260/"}
    assert store.outbox_count() == 0 and delivery.delivered == 20
    request = net.requests[0]
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "WebAPI"
    assert request.headers["connection"] == "close"


async def test_failures_back_off_and_keep_the_order() -> None:
    store, net = Store(":memory:"), Net()
    sessions, [token] = sessions_with("8260")
    failures = {"left": 3}

    async def flaky(request: httpx.Request) -> httpx.Response:
        if failures["left"]:
            failures["left"] -= 1
            if failures["left"] == 1:
                raise httpx.ConnectError("refused", request=request)
            return httpx.Response(503)
        net.seen.append((str(request.url), request.content))
        return httpx.Response(204)

    net.handler = flaky
    delivery = make(store, sessions, net, backoff_max=0.02)
    await delivery.start()
    try:
        delivery.add(store.outbox_add([(token, b"%d" % i, time.time()) for i in range(3)]))
        await drained(delivery)
    finally:
        await delivery.stop()
    assert [body for _, body in net.seen] == [b"0", b"1", b"2"]
    assert len(net.requests) == 6 and delivery.dropped == 0


async def test_a_report_older_than_the_retry_window_is_dropped() -> None:
    store, net = Store(":memory:"), Net()
    sessions, [token] = sessions_with("8260")

    async def refuse_old(request: httpx.Request) -> httpx.Response:
        if request.content == b"old":
            return httpx.Response(500)
        net.seen.append((str(request.url), request.content))
        return httpx.Response(200)

    net.handler = refuse_old
    delivery = make(store, sessions, net, backoff_max=0.01, retry_minutes=0.001)
    await delivery.start()
    try:
        now = time.time()
        delivery.add(store.outbox_add([(token, b"old", now), (token, b"new", now)]))
        await drained(delivery)
    finally:
        await delivery.stop()
    assert [body for _, body in net.seen] == [b"new"]
    assert delivery.dropped == 1 and store.outbox_count() == 0


async def test_a_hanging_receiver_blocks_only_its_own_session() -> None:
    store, net = Store(":memory:"), Net()
    sessions, [slow, fast] = sessions_with("1", "2")
    release = asyncio.Event()

    async def hang_port_1(request: httpx.Request) -> httpx.Response:
        if request.url.port == 1:
            await release.wait()
        net.seen.append((str(request.url), request.content))
        return httpx.Response(200)

    net.handler = hang_port_1
    delivery = make(store, sessions, net)
    await delivery.start()
    try:
        delivery.add(store.outbox_add([(slow, b"s1", time.time()), (fast, b"f1", time.time()),
                                       (slow, b"s2", time.time()), (fast, b"f2", time.time())]))
        for _ in range(200):
            if len(net.seen) == 2:
                break
            await asyncio.sleep(0.005)
        assert [body for _, body in net.seen] == [b"f1", b"f2"]
        release.set()
        await drained(delivery)
    finally:
        await delivery.stop()
    assert [body for _, body in net.seen] == [b"f1", b"f2", b"s1", b"s2"]


async def test_logout_drops_the_sessions_reports() -> None:
    store, net = Store(":memory:"), Net()
    sessions, [token, other] = sessions_with("1", "2")

    async def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500)

    net.handler = refuse
    delivery = make(store, sessions, net, backoff_max=0.01)
    await delivery.start()
    try:
        delivery.add(store.outbox_add([(token, b"a", time.time()), (token, b"b", time.time())]))
        await asyncio.sleep(0.03)
        sessions.logout(token)
        await drained(delivery)
    finally:
        await delivery.stop()
    assert store.outbox_count() == 0 and delivery.dropped == 2


async def test_stored_reports_resume_after_a_restart(tmp_path: Path) -> None:
    path = f"{tmp_path}/db.sqlite3"
    store, net = Store(path), Net()
    sessions, [token] = sessions_with("8260")
    now = time.time()
    store.outbox_add([(token, b"1", now), ("gone" * 8, b"x", now), (token, b"2", now)])
    store.close()
    store = Store(path)
    delivery = make(store, sessions, net)
    delivery.load()
    assert delivery.pending() == 2 and store.outbox_count() == 2  # the unknown session's went
    await delivery.start()
    try:
        await drained(delivery)
    finally:
        await delivery.stop()
    assert [body for _, body in net.seen] == [b"1", b"2"]


async def test_service_stores_one_row_per_session_and_report_in_its_form() -> None:
    config = load_config(None)
    store, registry = Store(":memory:"), CallRegistry()
    sessions = SessionManager(config.api)
    service = ReportService(config, registry, sessions, store)
    registry.start_call(Leg(LegKind.EXTENSION, "1001", "1002", extension="1001"), "1002")
    assert store.outbox_count() == 0  # nobody logged in: nothing stored
    md5 = _md5(config.api.password)
    ov = sessions.login("api", md5, "10.0.0.1", "openvox", port="1")
    ys = sessions.login("api", md5, "10.0.0.1", "yeastar", port="2")
    service.builder._ext_state.clear()
    registry.start_call(Leg(LegKind.EXTENSION, "1003", "1002", extension="1003"), "1003")
    rows = store.outbox_load()
    assert [(r.token, json.loads(r.body)["status"]) for r in rows] == [
        (ov.token, "InUse"), (ys.token, "Busy")]
    assert service.delivery.pending() == 2
