"""sip/transport.py against real loopback sockets (UDP and TCP), on asyncio and uvloop."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import uvloop
from sip_wire import read_message

from ippbx.sip.message import Request, Response, make_response, parse_message
from ippbx.sip.transport import SipTransport
from ippbx.sip.wire import Peer

WAIT = 5.0  # upper bound of every wait in this file


def options(port: int, call_id: str = "c1", via_host: str = "127.0.0.1", *,
            transport: str = "UDP", body: bytes = b"", rport: bool = False) -> Request:
    via = f"SIP/2.0/{transport} {via_host}:{port};branch=z9hG4bK-{call_id}"
    if rport:
        via += ";rport"
    return Request("OPTIONS", "sip:ippbx@127.0.0.1", [
        ("Via", via),
        ("From", f"<sip:test@127.0.0.1:{port}>;tag=f-{call_id}"),
        ("To", "<sip:ippbx@127.0.0.1>"),
        ("Call-ID", call_id),
        ("CSeq", "1 OPTIONS"),
        ("Max-Forwards", "70"),
    ], body)


class Inbox:
    """Collects (message, peer) pairs handed to on_message; awaitable one at a time."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[Request | Response, Peer]] = asyncio.Queue()
        self.transport: SipTransport | None = None
        self.auto_answer = False

    def __call__(self, message: Request | Response, peer: Peer) -> None:
        self.queue.put_nowait((message, peer))
        if self.auto_answer and isinstance(message, Request) and self.transport is not None:
            response = make_response(message, 200, to_tag="srv")
            self.transport.send(response, self.transport.response_destination(response, peer))

    async def get(self, timeout: float = WAIT) -> tuple[Request | Response, Peer]:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def nothing(self, seconds: float = 0.3) -> None:
        await asyncio.sleep(seconds)
        assert self.queue.empty(), f"unexpected message: {self.queue.get_nowait()}"


Factory = Callable[..., Awaitable[tuple[SipTransport, Inbox]]]


@pytest.fixture
async def make_transport() -> AsyncIterator[Factory]:
    started: list[SipTransport] = []

    async def make(answer: bool = False, **kwargs: object) -> tuple[SipTransport, Inbox]:
        inbox = Inbox()
        transport = SipTransport("127.0.0.1", 0, inbox, **kwargs)  # type: ignore[arg-type]
        await transport.start()
        started.append(transport)
        inbox.transport = transport
        inbox.auto_answer = answer
        return transport, inbox

    yield make
    for transport in started:
        await transport.stop()


class UdpClient:
    """A raw UDP socket speaking to the transport (no ippbx code on this side)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    def send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, ("127.0.0.1", port))

    async def recv(self, timeout: float = WAIT) -> bytes:
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.sock_recv(self.sock, 65535), timeout)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def udp_client() -> AsyncIterator[UdpClient]:
    client = UdpClient()
    yield client  # type: ignore[misc]
    client.close()


async def tcp_connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT)


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float = WAIT) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(65536), timeout)
    except ConnectionResetError:
        return True
    return data == b""


def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.transport.abort()


# -- UDP ------------------------------------------------------------------------------------


async def test_udp_round_trip_and_same_port_for_tcp(make_transport: Factory) -> None:
    server, server_inbox = await make_transport(answer=True)
    client, client_inbox = await make_transport()
    assert server.local_port != 0 and server.local_host == "127.0.0.1"
    # TCP listens on the very same port number
    reader, writer = await tcp_connect(server.local_port)
    close_writer(writer)

    request = options(client.local_port, "udp-rt")
    client.send(request, Peer("127.0.0.1", server.local_port))
    got, peer = await server_inbox.get()
    assert isinstance(got, Request) and got.method == "OPTIONS" and got.call_id == "udp-rt"
    assert peer == Peer("127.0.0.1", client.local_port, "udp")
    response, peer = await client_inbox.get()
    assert isinstance(response, Response) and response.status == 200
    assert peer == Peer("127.0.0.1", server.local_port, "udp")


def test_no_other_socket_can_share_the_sip_udp_port() -> None:
    """A process binding with SO_REUSEADDR (rtpengine does, for each RTP port of its
    range) cannot take ippbx's SIP UDP port and its datagrams: on uvloop, ippbx's loop,
    which sets SO_REUSEADDR on a datagram socket it is handed."""

    async def main() -> int:
        transport = SipTransport("127.0.0.1", 0, lambda message, source: None)
        await transport.start()
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            other.bind(("127.0.0.1", transport.local_port))
        except OSError as exc:
            return exc.errno or 0
        finally:
            other.close()
            await transport.stop()
        return 0

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(main()) == errno.EADDRINUSE


async def test_received_and_rport_filled(make_transport: Factory, udp_client: UdpClient) -> None:
    server, inbox = await make_transport(answer=True)
    request = options(5999, "rport", via_host="client.invalid", rport=True)
    udp_client.send(request.to_bytes(), server.local_port)
    got, peer = await inbox.get()
    assert peer == Peer("127.0.0.1", udp_client.port)
    top = got.top_via
    assert top.params["received"] == "127.0.0.1"
    assert top.params["rport"] == str(udp_client.port)
    # the response follows received/rport, not the (unreachable) sent-by 5999
    response = parse_message(await udp_client.recv())
    assert isinstance(response, Response) and response.status == 200
    assert response.call_id == "rport"


async def test_received_without_rport_goes_to_sent_by_port(
    make_transport: Factory, udp_client: UdpClient
) -> None:
    server, inbox = await make_transport()
    request = options(udp_client.port, "recv", via_host="localhost")
    udp_client.send(request.to_bytes(), server.local_port)
    got, peer = await inbox.get()
    assert got.top_via.params["received"] == "127.0.0.1"
    assert "rport" not in got.top_via.params
    assert isinstance(got, Request)
    response = make_response(got, 200)
    dest = server.response_destination(response, peer)
    assert dest == Peer("127.0.0.1", udp_client.port)


async def test_garbage_request_with_readable_headers_gets_400(
    make_transport: Factory, udp_client: UdpClient
) -> None:
    server, inbox = await make_transport()
    garbage = (
        b"INVITE sip:1001@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKgarbage;rport\r\n"
        b"From: <sip:a@127.0.0.1>;tag=x\r\n"
        b"To: <sip:b@127.0.0.1>\r\n"
        b"Call-ID: garbage-1\r\n"
        b"CSeq: 7 INVITE\r\n"
        b"this line is not a header\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    udp_client.send(garbage, server.local_port)
    response = parse_message(await udp_client.recv())
    assert isinstance(response, Response)
    assert (response.status, response.call_id, response.cseq) == (400, "garbage-1", (7, "INVITE"))
    # a bad SIP version gets 505
    udp_client.send(garbage.replace(b" SIP/2.0\r\nVia", b" SIP/3.0\r\nVia"), server.local_port)
    response = parse_message(await udp_client.recv())
    assert isinstance(response, Response) and response.status == 505
    await inbox.nothing(0.1)


async def test_unreadable_garbage_and_bad_responses_dropped_silently(
    make_transport: Factory, udp_client: UdpClient
) -> None:
    server, inbox = await make_transport(answer=True)
    for junk in (
        b"\x00\x01\x02\x03\xff" * 20,
        b"hello world\r\n\r\n",
        b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1\r\n\r\n",  # no From/To/...
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bK1\r\n\r\n",
        b"SIP/2.0 999 Nope\r\n\r\n",
        b"\r\n\r\n",  # keep-alive
        b"x" * 70000,  # larger than any SIP datagram
    ):
        udp_client.send(junk[:65000], server.local_port)
    with pytest.raises(TimeoutError):
        await udp_client.recv(timeout=0.3)
    await inbox.nothing(0.05)
    # still alive
    udp_client.send(options(udp_client.port, "alive").to_bytes(), server.local_port)
    response = parse_message(await udp_client.recv())
    assert isinstance(response, Response) and response.call_id == "alive"


async def test_on_message_exception_does_not_escape(
    make_transport: Factory, udp_client: UdpClient
) -> None:
    server, inbox = await make_transport(answer=True)
    calls = 0

    def explode(message: Request | Response, peer: Peer) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("UA bug")
        inbox(message, peer)

    server.on_message = explode
    udp_client.send(options(udp_client.port, "boom").to_bytes(), server.local_port)
    udp_client.send(options(udp_client.port, "after").to_bytes(), server.local_port)
    got, _ = await inbox.get()
    assert got.call_id == "after"


async def test_large_udp_request_still_sent(make_transport: Factory) -> None:
    server, inbox = await make_transport()
    client, _ = await make_transport()
    big = options(client.local_port, "big", body=b"a" * 4000)
    client.send(big, Peer("127.0.0.1", server.local_port))
    got, _ = await inbox.get()
    assert got.body == b"a" * 4000


async def test_datagrams_sent_in_one_pass_go_out_whole_and_in_order(
        make_transport: Factory, udp_client: UdpClient) -> None:
    """UDP sends are queued and written together once the loop's pass is done."""
    server, _ = await make_transport()
    for n in range(100):  # all in one pass of the loop
        server.send(options(server.local_port, f"burst-{n}"),
                    Peer("127.0.0.1", udp_client.port))
    got = [parse_message(await udp_client.recv()).call_id for _ in range(100)]
    assert got == [f"burst-{n}" for n in range(100)]


def test_a_refused_send_in_a_pass_does_not_hold_back_the_others() -> None:
    """A peer gone (its port closed: ICMP unreachable) and an address the socket refuses
    at once (an IPv6 one from a lying Via, to our IPv4 socket: uvloop, which ippbx runs
    on, raises), queued between good sends, lose only their own datagrams."""

    async def scenario() -> None:
        client = UdpClient()
        server = SipTransport("127.0.0.1", 0, Inbox())
        await server.start()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
                gone.bind(("127.0.0.1", 0))
                closed_port = gone.getsockname()[1]
            for n in range(20):
                server.send(options(server.local_port, f"gone-{n}"),
                            Peer("127.0.0.1", closed_port))
                server.send(options(server.local_port, f"v6-{n}"), Peer("::1", 5060))
                server.send(options(server.local_port, f"ok-{n}"),
                            Peer("127.0.0.1", client.port))
            got = [parse_message(await client.recv()).call_id for _ in range(20)]
            assert got == [f"ok-{n}" for n in range(20)]
        finally:
            await server.stop()
            client.close()

    uvloop.run(scenario())


async def test_stop_writes_the_datagrams_queued_before_it(udp_client: UdpClient) -> None:
    """A stop right after a send (a BYE, the answer to one) still puts it on the wire."""
    server = SipTransport("127.0.0.1", 0, Inbox())
    await server.start()
    server.send(options(server.local_port, "last-words"), Peer("127.0.0.1", udp_client.port))
    await server.stop()  # in the same pass as the send
    assert parse_message(await udp_client.recv()).call_id == "last-words"


# -- TCP ------------------------------------------------------------------------------------


async def test_tcp_framing_across_chunks_and_two_in_one_segment(make_transport: Factory) -> None:
    server, inbox = await make_transport(answer=True)
    reader, writer = await tcp_connect(server.local_port)
    try:
        local_port = writer.get_extra_info("sockname")[1]
        first = options(local_port, "chunked", transport="TCP", body=b"v=0\r\n").to_bytes()
        for i in range(0, len(first), 7):  # 7-byte segments, split inside lines and CRLFs
            writer.write(first[i : i + 7])
            await writer.drain()
            await asyncio.sleep(0.001)
        got, peer = await inbox.get()
        assert got.call_id == "chunked" and got.body == b"v=0\r\n"
        assert peer == Peer("127.0.0.1", local_port, "tcp")
        response = await read_message(reader)
        assert isinstance(response, Response) and response.call_id == "chunked"

        two = options(local_port, "two-a", transport="TCP").to_bytes() + options(
            local_port, "two-b", transport="TCP").to_bytes()
        writer.write(b"\r\n\r\n" + two)  # a keep-alive, then two messages in one write
        await writer.drain()
        ids = [(await inbox.get())[0].call_id, (await inbox.get())[0].call_id]
        assert ids == ["two-a", "two-b"]
        assert {(await read_message(reader)).call_id for _ in range(2)} == {"two-a", "two-b"}
    finally:
        close_writer(writer)


async def test_tcp_outgoing_lazy_connect_reuses_one_connection(make_transport: Factory) -> None:
    server, server_inbox = await make_transport(answer=True)
    client, client_inbox = await make_transport()
    dest = Peer("127.0.0.1", server.local_port, "tcp")
    for i in range(3):  # queued while the connection is still being opened
        client.send(options(client.local_port, f"tcp-{i}", transport="TCP"), dest)
    peers = set()
    for i in range(3):
        got, peer = await server_inbox.get()
        assert got.call_id == f"tcp-{i}"
        peers.add(peer)
    assert len(peers) == 1
    (server_side_peer,) = peers
    assert server_side_peer.transport == "tcp" and server_side_peer.port != client.local_port
    for _ in range(3):
        response, peer = await client_inbox.get()
        assert isinstance(response, Response) and response.status == 200
        assert peer == dest
    # the server reaches the client through the connection the client opened
    server.send(options(server.local_port, "reverse", transport="TCP"), server_side_peer)
    got, _ = await client_inbox.get()
    assert got.call_id == "reverse"


async def test_tcp_connect_failure_is_quiet(make_transport: Factory) -> None:
    client, inbox = await make_transport()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]  # bound, not listening: connection refused
        client.send(options(client.local_port, "refused"), Peer("127.0.0.1", closed_port, "tcp"))
        await asyncio.sleep(0.2)
    await inbox.nothing(0.01)


async def test_tcp_garbage_closes_only_that_connection(make_transport: Factory) -> None:
    server, inbox = await make_transport(answer=True)
    bad_reader, bad_writer = await tcp_connect(server.local_port)
    good_reader, good_writer = await tcp_connect(server.local_port)
    try:
        bad_writer.write(b"NOT SIP AT ALL\r\nfoo bar\r\n\r\n")
        assert await closed_by_peer(bad_reader)
        port = good_writer.get_extra_info("sockname")[1]
        good_writer.write(options(port, "good", transport="TCP").to_bytes())
        got, _ = await inbox.get()
        assert got.call_id == "good"
        response = await read_message(good_reader)
        assert isinstance(response, Response) and response.call_id == "good"
    finally:
        close_writer(bad_writer)
        close_writer(good_writer)


async def test_stalled_tcp_connections_closed(make_transport: Factory) -> None:
    server, inbox = await make_transport(answer=True, idle_timeout=0.5)
    silent_reader, silent_writer = await tcp_connect(server.local_port)
    slow_reader, slow_writer = await tcp_connect(server.local_port)
    busy_reader, busy_writer = await tcp_connect(server.local_port)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        slow_writer.write(b"INVITE sip:1001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1")
        # the busy client completes a message every 0.2 s and must stay open
        port = busy_writer.get_extra_info("sockname")[1]

        async def keep_busy() -> None:
            for i in range(6):
                busy_writer.write(options(port, f"busy-{i}", transport="TCP").to_bytes())
                await read_message(busy_reader)
                slow_writer.write(b";x=y")  # bytes trickle in, but no message completes
                await asyncio.sleep(0.2)

        busy = asyncio.create_task(keep_busy())
        assert await closed_by_peer(silent_reader, 2)
        assert await closed_by_peer(slow_reader, 2)
        elapsed = loop.time() - started
        assert 0.4 < elapsed < 1.5
        await asyncio.wait_for(busy, WAIT)
        assert not busy_writer.transport.is_closing()
    finally:
        for w in (silent_writer, slow_writer, busy_writer):
            close_writer(w)


async def test_max_connections_bounded(make_transport: Factory) -> None:
    server, inbox = await make_transport(answer=True, max_connections=2)
    clients = [await tcp_connect(server.local_port) for _ in range(2)]
    try:
        await asyncio.sleep(0.05)
        extra_reader, extra_writer = await tcp_connect(server.local_port)
        clients.append((extra_reader, extra_writer))
        assert await closed_by_peer(extra_reader)
        reader, writer = clients[0]
        writer.write(options(1, "first-ok", transport="TCP").to_bytes())
        assert (await read_message(reader)).call_id == "first-ok"
    finally:
        for _, w in clients:
            close_writer(w)


async def test_peer_that_does_not_read_is_dropped(make_transport: Factory) -> None:
    server, inbox = await make_transport(max_write_buffer=64 * 1024)
    reader, writer = await tcp_connect(server.local_port)
    try:
        port = writer.get_extra_info("sockname")[1]
        writer.write(options(port, "hello", transport="TCP").to_bytes())
        _, peer = await inbox.get()
        big = options(server.local_port, "big", transport="TCP", body=b"x" * 60000)
        for _ in range(400):  # ~24 MB, far more than the socket buffers hold
            server.send(big, peer)
            if (peer.host, peer.port, "tcp") not in server._conns:
                break
            await asyncio.sleep(0)
        assert (peer.host, peer.port, "tcp") not in server._conns
    finally:
        close_writer(writer)


# -- lifecycle ------------------------------------------------------------------------------


async def test_stop_closes_everything_without_leaking_tasks() -> None:
    before = asyncio.all_tasks()
    inbox = Inbox()
    server = SipTransport("127.0.0.1", 0, inbox)
    await server.start()
    peer_inbox = Inbox()
    other = SipTransport("127.0.0.1", 0, peer_inbox)
    await other.start()
    port = server.local_port
    reader, writer = await tcp_connect(port)
    # one outgoing connection up, one to a host that resolves slowly or never
    server.send(options(port, "out", transport="TCP"),
                Peer("127.0.0.1", other.local_port, "tcp"))
    await peer_inbox.get()
    server.send(options(port, "dns"), Peer("unresolvable.invalid", 5060))
    server.send(options(port, "dns-tcp"), Peer("unresolvable.invalid", 5060, "tcp"))
    await server.stop()
    await other.stop()
    assert await closed_by_peer(reader)
    close_writer(writer)
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == before
    # both sockets are really gone: the port can be bound again
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
    server.send(options(port, "after-stop"), Peer("127.0.0.1", 9))  # no exception


def test_runs_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        server_inbox, client_inbox = Inbox(), Inbox()
        server = SipTransport("127.0.0.1", 0, server_inbox)
        client = SipTransport("127.0.0.1", 0, client_inbox)
        server_inbox.transport, server_inbox.auto_answer = server, True
        await server.start()
        await client.start()
        try:
            for kind in ("udp", "tcp"):
                client.send(options(client.local_port, f"uv-{kind}", transport=kind.upper()),
                            Peer("127.0.0.1", server.local_port, kind))
                response, peer = await client_inbox.get()
                assert isinstance(response, Response) and response.call_id == f"uv-{kind}"
                assert peer.transport == kind
        finally:
            await client.stop()
            await server.stop()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(scenario(), 10))
