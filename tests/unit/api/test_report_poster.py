"""The report POST client against real loopback servers: the request byte for byte, how
answers of every shape map to outcomes (split, unframed, interim, oversized, silent,
refused, TLS trusted or not), timeouts, and nothing left behind on cancellation."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import uvloop

from ippbx.api.reports import Delivery, route_of
from ippbx.api.reports.delivery import MEMORY_ROWS
from ippbx.api.reports.poster import Outcome, Poster, parse_target
from ippbx.api.sessions import SessionManager
from ippbx.certs import make_self_signed, server_context
from ippbx.config import ReportsSection, load_config
from ippbx.store.sqlite import Store

Handler = Callable[["Server", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
BODY = b'{"action":"RING","callid":"1.1"}'
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Server:
    """A loopback server running `handler` per connection; records what each request
    sent (bytes until the body's end) and whether the client closed afterwards."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[bytes] = []
        self.closed = asyncio.Event()  # the client closed a connection
        self.connections = 0  # connections accepted
        self.port = 0

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(self, reader, writer)
            await reader.read()  # until the client closes
            self.closed.set()
        except (OSError, asyncio.IncompleteReadError):
            self.closed.set()
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def serving(handler: Handler, *, host: str = "127.0.0.1",
                  tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = Server(handler)
    listener = await asyncio.start_server(server._serve, host, 0, ssl=tls)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        for conn in list(getattr(listener, "_clients", ())):  # (3.11: no close_clients())
            conn.abort()


async def silent(server: Server, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
    """A receiver that reads the request and never answers."""
    await reader.read()


def answer(*chunks: bytes, pause: float = 0.0, close: bool = True) -> Handler:
    """A handler that reads the request, writes `chunks` (`pause` s apart), then closes
    (or keeps the connection open and reads on)."""

    async def handler(server: Server, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
        if close:
            writer.close()
            await writer.wait_closed()

    return handler


async def post_to(handler: Handler, path: str = "/", *, timeout: float = 2.0,
                  **poster: int) -> tuple[Outcome, float, Server]:
    """POST BODY through a fresh `Poster` to a server answering with `handler`:
    (outcome, seconds it took, the server)."""
    async with serving(handler) as server:
        client = Poster(timeout=timeout, **poster)
        t0 = time.monotonic()
        outcome = await client(f"http://127.0.0.1:{server.port}{path}", BODY)
        took = time.monotonic() - t0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.closed.wait(), 1.0)
    return outcome, took, server


# -- the request -------------------------------------------------------------------------------


async def test_the_request_byte_for_byte_and_the_connection_closed_after() -> None:
    outcome, took, server = await post_to(answer(OK, close=False), "/cb/in?key=a b&x=1")
    assert outcome is Outcome.DELIVERED and took < 1.0
    assert server.requests == [
        b"POST /cb/in?key=a%%20b&x=1 HTTP/1.1\r\n"
        b"Host: 127.0.0.1:%d\r\n"
        b"Content-Type: application/json\r\n"
        b"Accept: application/json\r\n"
        b"User-Agent: WebAPI\r\n"
        b"Connection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (server.port, len(BODY), BODY)]
    assert server.closed.is_set()  # the server kept it open: the client closed it


def test_urls_default_ports_ipv6_userinfo_and_bad_ones() -> None:
    t = parse_target("http://[::1]/", "WebAPI")
    assert t is not None and (t.host, t.port, t.tls) == ("::1", 80, False)
    assert t.head.startswith(b"POST / HTTP/1.1\r\nHost: [::1]\r\n")
    t = parse_target("http://[::1]:8260", "WebAPI")
    assert t is not None and t.port == 8260 and b"Host: [::1]:8260\r\n" in t.head
    t = parse_target("https://CRM.example/hook/ü?q=1", "Agent\r\nX-Evil: 1")
    assert t is not None and (t.host, t.port, t.tls, t.server_hostname) == (
        "crm.example", 443, True, "crm.example")
    assert t.head.startswith(b"POST /hook/%C3%BC?q=1 HTTP/1.1\r\nHost: crm.example\r\n")
    assert b"User-Agent: AgentX-Evil: 1\r\n" in t.head  # no header smuggled in
    t = parse_target("https://crm:s%3Acret@crm.example:8443/h", "WebAPI")
    assert t is not None and t.port == 8443 and t.label == "https://crm.example:8443/h"
    auth = base64.b64encode(b"crm:s:cret").decode()
    assert f"Authorization: Basic {auth}\r\n".encode() in t.head
    t = parse_target("http://h/a\r\nX-Evil: 1", "WebAPI")
    assert t is not None and b"\r\nX-Evil" not in t.head
    for bad in ("ftp://h/", "http:///x", "http://h:99999/", "http://h:x/", "http://b d/",
                "h:80/x", ""):
        assert parse_target(bad, "WebAPI") is None, bad


async def test_a_bad_url_is_unreachable() -> None:
    assert await Poster()("http://h:99999/", BODY) is Outcome.UNREACHABLE
    assert await Poster()("mailto:crm@example", BODY) is Outcome.UNREACHABLE


async def test_ipv6_loopback() -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    handler = answer(OK)
    async with serving(handler, host="::1") as server:
        outcome = await Poster(timeout=2)(f"http://[::1]:{server.port}/v6", BODY)
    assert outcome is Outcome.DELIVERED
    assert server.requests[0].startswith(b"POST /v6 HTTP/1.1\r\nHost: [::1]:%d\r\n"
                                         % server.port)


# -- answers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "expected"), [
    (200, Outcome.DELIVERED), (204, Outcome.DELIVERED), (299, Outcome.DELIVERED),
    (302, Outcome.FAILED), (400, Outcome.REJECTED), (404, Outcome.REJECTED),
    (499, Outcome.REJECTED), (500, Outcome.FAILED), (503, Outcome.FAILED)])
async def test_the_status_decides(status: int, expected: Outcome) -> None:
    head = b"HTTP/1.1 %d Whatever\r\nContent-Length: 2\r\n\r\nOK" % status
    outcome, took, _ = await post_to(answer(head, close=False))
    assert outcome is expected and took < 1.0


async def test_an_answer_split_across_many_packets() -> None:
    text = (b"HTTP/1.1 404 Not Found\r\nServer: x\r\nContent-Length: 11\r\n"
            b"Content-Type: text/plain\r\n\r\nno such cb!")
    outcome, _, _ = await post_to(answer(*[text[i:i + 1] for i in range(len(text))],
                                         pause=0.001, close=False))
    assert outcome is Outcome.REJECTED
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    outcome, _, _ = await post_to(answer(*[ok[i:i + 3] for i in range(0, len(ok), 3)],
                                         pause=0.001, close=False))
    assert outcome is Outcome.DELIVERED


async def test_no_content_length_then_close() -> None:
    outcome, took, _ = await post_to(answer(b"HTTP/1.0 200 OK\r\n\r\n", b"a body", b" more"))
    assert outcome is Outcome.DELIVERED and took < 1.0
    outcome, _, _ = await post_to(answer(b"HTTP/1.1 500 Oops\r\n\r\nbroken"))
    assert outcome is Outcome.FAILED


async def test_no_content_length_and_no_close_the_status_decides_within_the_timeout() -> None:
    for status, expected in ((201, Outcome.DELIVERED), (422, Outcome.REJECTED)):
        outcome, took, _ = await post_to(
            answer(b"HTTP/1.1 %d X\r\n\r\nstill coming" % status, close=False), timeout=0.3)
        assert outcome is expected and 0.25 <= took < 1.0


async def test_a_chunked_answer_ends_at_its_last_chunk() -> None:
    text = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: y\r\n\r\n")
    outcome, took, _ = await post_to(answer(*[text[i:i + 4] for i in range(0, len(text), 4)],
                                            close=False), timeout=2.0)
    assert outcome is Outcome.DELIVERED and took < 1.0
    outcome, _, _ = await post_to(answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked"
                                         b"\r\n\r\nzz\r\n", close=False))
    assert outcome is Outcome.FAILED


async def test_interim_answers_are_skipped() -> None:
    outcome, took, _ = await post_to(answer(
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 202 Accepted\r\n",
        b"Content-Length: 0\r\n\r\n", close=False))
    assert outcome is Outcome.DELIVERED and took < 1.0
    outcome, _, _ = await post_to(answer(b"HTTP/1.1 100 Continue\r\n\r\n", close=False),
                                  timeout=0.3)
    assert outcome is Outcome.FAILED  # only an interim answer: no status decides


async def test_broken_answers_fail() -> None:
    for text in (b"", b"HTTP/1.1 200 OK\r\nContent-Le",  # closed before / within the head
                 b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",  # closed mid-body
                 b"SIP/2.0 200 OK\r\n\r\n", b"HTTP/1.1 2xx OK\r\n\r\n",
                 b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
                 b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"):
        outcome, took, _ = await post_to(answer(text))
        assert outcome is Outcome.FAILED and took < 1.0, text


async def test_a_silent_server_fails_after_the_timeout() -> None:
    outcome, took, server = await post_to(silent, timeout=0.3)
    assert outcome is Outcome.FAILED and 0.25 <= took < 1.0
    assert server.closed.is_set()
    # a body that stops short of its Content-Length: the same
    outcome, took, _ = await post_to(
        answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", close=False), timeout=0.3)
    assert outcome is Outcome.FAILED and 0.25 <= took < 1.0


async def test_oversized_answers_fail_early_without_holding_them() -> None:
    huge_header = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200_000
    outcome, took, _ = await post_to(answer(huge_header, close=False), timeout=5.0,
                                     max_head=16_384)
    assert outcome is Outcome.FAILED and took < 1.0
    outcome, took, _ = await post_to(
        answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5000000\r\n\r\n", close=False),
        timeout=5.0, max_body=1_000_000)
    assert outcome is Outcome.FAILED and took < 1.0
    outcome, took, _ = await post_to(
        answer(b"HTTP/1.1 200 OK\r\n\r\n", *[b"x" * 65536] * 32, close=False),
        timeout=5.0, max_body=1_000_000)
    assert outcome is Outcome.FAILED and took < 1.0


async def test_a_refused_port_is_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        t0 = time.monotonic()
        outcome = await Poster(timeout=2)(f"http://127.0.0.1:{port}/", BODY)
    assert outcome is Outcome.UNREACHABLE and time.monotonic() - t0 < 1.0


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def receiver_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    cert, key = make_self_signed("receiver", ["127.0.0.1"])
    folder = tmp_path_factory.mktemp("tls")
    (folder / "r.crt").write_bytes(cert)
    (folder / "r.key").write_bytes(key)
    return folder / "r.crt", server_context(folder / "r.crt", folder / "r.key")


async def test_https_to_a_trusted_self_signed_receiver_and_not_to_an_untrusted_one(
    receiver_cert: tuple[Path, ssl.SSLContext]
) -> None:
    ca, context = receiver_cert
    handler = answer(OK)
    async with serving(handler, tls=context) as server:
        url = f"https://127.0.0.1:{server.port}/crm"
        assert await Poster(timeout=2, tls_ca=str(ca))(url, BODY) is Outcome.DELIVERED
        assert server.requests[0].startswith(b"POST /crm HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                                             % server.port)
        assert await Poster(timeout=2)(url, BODY) is Outcome.UNREACHABLE  # system CAs
        assert await Poster(timeout=2, tls_verify=False)(url, BODY) is Outcome.DELIVERED
        assert len(server.requests) == 2  # nothing was sent to the untrusted one


async def test_a_tls_handshake_that_never_ends_is_a_connect_timeout() -> None:
    async with serving(silent) as server:
        t0 = time.monotonic()
        outcome = await Poster(timeout=0.3)(f"https://127.0.0.1:{server.port}/", BODY)
    assert outcome is Outcome.UNREACHABLE and 0.25 <= time.monotonic() - t0 < 1.0


# -- cancellation, the event loop ippbx runs on, Delivery --------------------------------------


async def test_cancelling_a_post_leaves_nothing_behind() -> None:
    async with serving(silent) as server:
        before = asyncio.all_tasks()
        task = asyncio.create_task(Poster(timeout=30)(f"http://127.0.0.1:{server.port}/",
                                                      BODY))
        await asyncio.sleep(0.1)  # connected, waiting for an answer
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(server.closed.wait(), 1.0)  # the connection was dropped
        assert asyncio.all_tasks() == before
        loop = asyncio.get_running_loop()
        timers = [h for h in getattr(loop, "_scheduled", []) if not h.cancelled()
                  and h.when() > loop.time() + 5]
        assert timers == []  # (its 30 s answer timer went with it)


def test_under_uvloop_plain_and_tls(receiver_cert: tuple[Path, ssl.SSLContext]) -> None:
    ca, context = receiver_cert

    async def main() -> list[Outcome]:
        out = []
        for tls in (None, context):
            handler = answer(b"HTTP/1.1 200 OK\r\n", b"Content-Length: 2\r\n\r\nOK",
                             close=False)
            async with serving(handler, tls=tls) as server:
                scheme = "https" if tls else "http"
                out.append(await Poster(timeout=2, tls_ca=str(ca))(
                    f"{scheme}://127.0.0.1:{server.port}/", BODY))
        return out

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(main()) == [Outcome.DELIVERED, Outcome.DELIVERED]


async def test_delivery_posts_with_it_by_default() -> None:
    config = load_config(None)
    sessions = SessionManager(config.api)
    handler = answer(OK)
    async with serving(handler) as server:
        md5 = hashlib.md5(config.api.password.encode()).hexdigest()
        session = sessions.login("api", md5, "127.0.0.1", "openvox", port=str(server.port),
                                 url="reports")
        store = Store(":memory:")
        delivery = Delivery(store, sessions, ReportsSection(user_agent="CRM-PBX"))
        await delivery.start()
        try:
            delivery.add(store.outbox_add([(route_of(session), "1.1", BODY, time.time())]))
            while delivery.pending():
                await asyncio.sleep(0.01)
        finally:
            await delivery.stop()
    assert delivery.delivered == 1 and store.outbox_count() == 0
    assert server.requests[0].startswith(b"POST /reports HTTP/1.1\r\n")
    assert b"\r\nUser-Agent: CRM-PBX\r\n" in server.requests[0]


# -- connections kept open ([reports] keep_alive) ----------------------------------------------


async def eventually(predicate: Callable[[], bool], timeout: float = 1.0) -> None:
    """Return once `predicate()` holds (it depends on the peer's close reaching the
    loop, which nothing signals); fail after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)

KEPT = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"


def serve_kept(answers: int) -> Handler:
    """An HTTP/1.1 receiver: answers up to `answers` requests on each connection, keeping
    it open between them, then closes it."""

    async def handler(server: Server, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        for _ in range(answers):
            await server.read_request(reader)
            writer.write(KEPT)
            await writer.drain()
        writer.close()

    return handler


async def test_a_receiver_that_keeps_the_connection_gets_every_report_on_it() -> None:
    async with serving(serve_kept(100)) as server:
        client = Poster(timeout=2, keep_alive=True)
        url = f"http://127.0.0.1:{server.port}/cb"
        outcomes = [await client(url, BODY) for _ in range(5)]
        assert outcomes == [Outcome.DELIVERED] * 5
        assert client.opened == 1 and client.idle() == 1
        client.close()
        await asyncio.wait_for(server.closed.wait(), 1.0)
    assert server.requests == [
        b"POST /cb HTTP/1.1\r\n"
        b"Host: 127.0.0.1:%d\r\n"
        b"Content-Type: application/json\r\n"
        b"Accept: application/json\r\n"
        b"User-Agent: WebAPI\r\n"
        b"Connection: keep-alive\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (server.port, len(BODY), BODY)] * 5


async def test_a_receiver_that_closes_after_each_answer_gets_a_connection_per_report() -> None:
    async with serving(serve_kept(1)) as server:  # (what the vendors ask of receivers)
        client = Poster(timeout=2, keep_alive=True)
        url = f"http://127.0.0.1:{server.port}/"
        for _ in range(3):  # (a close not seen yet when the next report goes: sent anew)
            assert await client(url, BODY) is Outcome.DELIVERED
        assert client.opened == 3 and server.connections == 3
        await eventually(lambda: client.idle() == 0)  # (once its last close is seen)
        # an answer without framing or with `Connection: close` is not kept either
        for last in (b"HTTP/1.1 200 OK\r\n\r\n", OK):
            async with serving(answer(last)) as other:
                assert await client(f"http://127.0.0.1:{other.port}/", BODY) \
                    is Outcome.DELIVERED
            assert client.idle() == 0


async def test_a_kept_connection_the_receiver_dropped_meanwhile_is_retried_on_a_new_one(
) -> None:
    connections = 0

    async def handler(server: Server, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await server.read_request(reader)
        writer.write(KEPT)
        await writer.drain()
        if connections == 1:  # the next request on it finds it closing: no answer
            await server.read_request(reader)
            writer.transport.abort()

    async with serving(handler) as server:
        client = Poster(timeout=2, keep_alive=True)
        url = f"http://127.0.0.1:{server.port}/"
        assert await client(url, BODY) is Outcome.DELIVERED
        t0 = time.monotonic()
        assert await client(url, BODY) is Outcome.DELIVERED  # lost on the old, sent anew
        assert time.monotonic() - t0 < 1.0 and client.opened == 2
    assert len(server.requests) == 3  # (delivery is at least once)


async def test_a_receiver_that_answers_once_per_connection_and_stays_silent() -> None:
    async def handler(server: Server, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(KEPT)  # framed, no `Connection: close`, and never another answer
        await writer.drain()

    async with serving(handler) as server:
        client = Poster(timeout=0.3, keep_alive=True)
        url = f"http://127.0.0.1:{server.port}/"
        assert await client(url, BODY) is Outcome.DELIVERED
        assert await client(url, BODY) is Outcome.DELIVERED  # after one silent timeout
        assert await client(url, BODY) is Outcome.DELIVERED
        assert client.opened == 3 and client.idle() == 0
    # (the request it left unanswered is not recorded); from the silence on: one
    # connection per report, asked to close
    assert [b"Connection: close" in r for r in server.requests] == [False, True, True]


async def test_idle_connections_are_closed_after_a_while(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ippbx.api.reports.poster.KEEP_IDLE", 0.1)
    async with serving(serve_kept(100)) as server:
        client = Poster(timeout=2, keep_alive=True)
        url = f"http://127.0.0.1:{server.port}/"
        assert await client(url, BODY) is Outcome.DELIVERED and client.idle() == 1
        await asyncio.wait_for(server.closed.wait(), 1.0)  # closed by the client
        assert client.idle() == 0
        assert await client(url, BODY) is Outcome.DELIVERED and client.opened == 2


Row = tuple[str, str, bytes, float]


async def deliver(port: int, make: Callable[[str], list[Row]],
                  reports: ReportsSection | None = None,
                  memory_rows: int = MEMORY_ROWS) -> tuple[Delivery, int]:
    """A `Delivery` (the default configuration or `reports`, its own HTTP client) with
    one session reporting to `port` delivers (or drops) the rows `make(route)` gives,
    within 10 s; the delivery (stopped) and how many POSTs its client pipelined."""
    config = load_config(None)
    sessions = SessionManager(config.api)
    md5 = hashlib.md5(config.api.password.encode()).hexdigest()
    session = sessions.login("api", md5, "127.0.0.1", "openvox", port=str(port))
    store = Store(":memory:")
    delivery = Delivery(store, sessions, reports or config.reports, memory_rows=memory_rows)
    await delivery.start()
    try:
        delivery.add(store.outbox_add(make(route_of(session))))
        async with asyncio.timeout(10):  # (nothing signals "all settled": look often)
            while delivery.pending():
                await asyncio.sleep(0.01)
        assert delivery._client is not None
        pipelined = delivery._client.pipelined
    finally:
        await delivery.stop()
    return delivery, pipelined


async def test_delivery_keeps_connections_by_default_and_closes_them_at_stop() -> None:
    config = load_config(None)
    async with serving(serve_kept(1000)) as server:
        now = time.time()
        delivery, _ = await deliver(server.port, lambda route: [
            (route, f"1.{i % 3}", BODY, now) for i in range(30)])
        await asyncio.wait_for(server.closed.wait(), 1.0)
    assert delivery.delivered == 30 and len(server.requests) == 30
    assert server.connections <= config.reports.concurrency  # (each kept for the next)
    assert all(b"\r\nConnection: keep-alive\r\n" in r for r in server.requests)


async def test_a_kept_connection_that_talks_out_of_turn_is_not_used_again() -> None:
    async def handler(server: Server, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(KEPT)
        await writer.drain()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")  # nobody asked
        await writer.drain()
        await server.read_request(reader)  # (answered on a new connection, or lost here)

    async with serving(handler) as server:
        client = Poster(timeout=2, keep_alive=True)
        url = f"http://127.0.0.1:{server.port}/"
        assert await client(url, BODY) is Outcome.DELIVERED
        await eventually(lambda: client.idle() == 0)  # (the extra answer spoils it)
        assert await client(url, BODY) is Outcome.DELIVERED
        assert client.opened == 2


# -- pipelining ---------------------------------------------------------------------------
def bodies(n: int) -> list[bytes]:
    return [b'{"action":"RING","callid":"%d.1"}' % i for i in range(n)]


async def test_pipelined_posts_go_in_one_write_and_their_answers_come_in_order() -> None:
    seen: list[int] = []  # requests found in the first read of each connection

    async def handler(server: Server, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.05)
        data = await reader.read(65536)
        seen.append(data.count(b"POST "))
        writer.write(KEPT + b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
                     + b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        await writer.drain()

    async with serving(handler) as server:
        client = Poster(timeout=2, keep_alive=True, pipelining=True)
        url = f"http://127.0.0.1:{server.port}/"
        assert client.pipelines(url)
        outcomes = await client.post_many(url, bodies(3))
        assert outcomes == [Outcome.DELIVERED, Outcome.REJECTED, Outcome.FAILED]
        assert seen == [3] and client.opened == 1 and client.pipelined == 3
        assert client.idle() == 1 and client.pipelines(url)  # kept, still pipelining
        client.close()


async def test_a_receiver_that_closes_after_one_answer_gets_the_rest_again_one_by_one(
) -> None:
    async with serving(serve_kept(1)) as server:
        client = Poster(timeout=2, keep_alive=True, pipelining=True)
        url = f"http://127.0.0.1:{server.port}/"
        assert await client.post_many(url, bodies(3)) == [Outcome.DELIVERED] * 3
        assert not client.pipelines(url)  # (from now on one POST at a time)
        assert await client.post_many(url, bodies(2)) == [Outcome.DELIVERED] * 2
    # the two left unanswered on the first connection went again, each on its own
    assert [r.rpartition(b"\r\n\r\n")[2] for r in server.requests] \
        == bodies(3) + bodies(2)
    assert server.connections == 5


async def test_a_receiver_that_leaves_pipelined_posts_unanswered() -> None:
    async def handler(server: Server, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(KEPT)  # and never reads or answers the next one
        await writer.drain()

    async with serving(handler) as server:
        client = Poster(timeout=0.3, keep_alive=True, pipelining=True)
        url = f"http://127.0.0.1:{server.port}/"
        t0 = time.monotonic()
        assert await client.post_many(url, bodies(3)) == [Outcome.DELIVERED] * 3
        assert time.monotonic() - t0 < 2.0 and not client.pipelines(url)
    assert sorted(r.rpartition(b"\r\n\r\n")[2] for r in server.requests) == bodies(3)


async def test_without_pipelining_post_many_sends_one_after_the_other() -> None:
    async with serving(serve_kept(100)) as server:
        client = Poster(timeout=2, keep_alive=True)  # (pipelining off)
        url = f"http://127.0.0.1:{server.port}/"
        assert not client.pipelines(url)
        assert await client.post_many(url, bodies(3)) == [Outcome.DELIVERED] * 3
        assert client.pipelined == 0 and client.opened == 1
        client.close()


async def test_delivery_pipelines_reports_of_different_calls_keeping_each_calls_order(
) -> None:
    config = load_config(None)
    async with serving(serve_kept(10_000)) as server:
        now = time.time()
        delivery, pipelined = await deliver(server.port, lambda route: [
            (route, f"{i % 20}.1", b'{"n":%d}' % i, now) for i in range(200)])
    assert delivery.delivered == 200 and len(server.requests) == 200
    assert pipelined > 0 and server.connections <= config.reports.concurrency
    got = [int(r.rpartition(b'{"n":')[2].rstrip(b"}")) for r in server.requests]
    for lane in range(20):  # each call's reports in the order they were made
        mine = [n for n in got if n % 20 == lane]
        assert mine == sorted(mine) and len(mine) == 10


async def test_pipelined_reports_read_back_from_the_outbox_file_arrive_whole() -> None:
    """A destination past `memory_rows`: the heads of a pipelined write whose bodies are
    in the outbox file only are read back, each arrives once, byte for byte."""
    async with serving(serve_kept(10_000)) as server:
        now = time.time()
        delivery, pipelined = await deliver(server.port, lambda route: [
            (route, f"{i % 20}.1", b'{"n":%d}' % i, now) for i in range(200)],
            memory_rows=10)
    assert delivery.delivered == 200 and pipelined > 0
    got = [int(r.rpartition(b'{"n":')[2].rstrip(b"}")) for r in server.requests]
    assert sorted(got) == list(range(200))
    for lane in range(20):
        assert [n for n in got if n % 20 == lane] == list(range(lane, 200, 20))


async def test_delivery_to_a_receiver_that_closes_after_each_answer_loses_nothing() -> None:
    async with serving(serve_kept(1)) as server:  # (the vendors' kind of receiver)
        now = time.time()
        delivery, _ = await deliver(server.port, lambda route: [
            (route, f"{i % 10}.1", b'{"n":%d}' % i, now) for i in range(50)])
    assert delivery.delivered == 50 and delivery.dropped == 0
    got = [int(r.rpartition(b'{"n":')[2].rstrip(b"}")) for r in server.requests]
    assert sorted(got) == list(range(50))  # each once
    for lane in range(10):
        mine = [n for n in got if n % 10 == lane]
        assert mine == sorted(mine)


async def test_a_report_refused_inside_a_pipeline_holds_up_only_its_own_call() -> None:
    async def handler(server: Server, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        while True:
            request = await server.read_request(reader)
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
                         if b'"bad"' in request else KEPT)
            await writer.drain()

    reports = load_config(None).reports.model_copy(update={"rejected_tries": 1})
    async with serving(handler) as server:
        now = time.time()
        delivery, pipelined = await deliver(server.port, lambda route: [
            (route, "bad.1", b'{"bad":1}', now), (route, "bad.1", b'{"n":0}', now),
            *[(route, f"{i}.1", b'{"n":%d}' % i, now) for i in range(1, 30)]], reports)
    assert delivery.dropped == 1 and delivery.delivered == 30 and pipelined > 0
    bodies = [r.rpartition(b"\r\n\r\n")[2] for r in server.requests]
    assert bodies.count(b'{"bad":1}') == 1  # refused once, then dropped (1 try)
    assert bodies.index(b'{"bad":1}') < bodies.index(b'{"n":0}')  # its call's order
