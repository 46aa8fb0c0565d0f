"""RFC 3261 §18.1.1 over loopback: ippbx sends a large INVITE over TCP, else over UDP.

Extension 1001 (ippbx's own SIP stack, UDP) dials 9 5551234 with an SDP of about 1.5 KB;
ippbx relays it to the trunk `carrier`, a UDP peer (ippbx's own stack again):

- a carrier listening on TCP too (on the same port) gets the INVITE over TCP with a TCP
  Via, and the ACK and the BYE the same way; the call completes;
- a carrier listening on UDP only gets it over UDP within a second or two (the refused
  connect is not waited for twice: the next large INVITE goes over UDP at once);
- a small INVITE goes over UDP as it always did.

And the transport's `connect` gives up after its own (short) timeout when SYNs go
unanswered, telling its owner through `on_unreachable`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pbx_harness import PbxHarness, TrunkSpec, ext_password
from sipp_harness import free_port

from ippbx.pbx.auth import next_attempt
from ippbx.sip.digest import DigestClient
from ippbx.sip.message import Outgoing, Request, Response, SentResponse
from ippbx.sip.transport import SipTransport
from ippbx.sip.ua import ServerRequest, UserAgent
from ippbx.sip.wire import Peer, read_datagram, reply_address

WAIT = 10.0
SDP_HEAD = (b"v=0\r\no=1001 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            b"m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n")
BIG_SDP = SDP_HEAD + b"".join(b"a=x-large-offer-%02d:%s\r\n" % (n, b"z" * 40)
                              for n in range(30))
assert len(BIG_SDP) > 1300


class UdpOnlyTransport(asyncio.DatagramProtocol):
    """A SIP transport on one UDP socket and nothing else (no TCP listener on its port),
    like the many phones that take no TCP."""

    def __init__(self, on_message: Callable[[Request | Response, Peer], None]) -> None:
        self.on_message = on_message
        self.local_host = "127.0.0.1"
        self.local_port = free_port()
        self.udp: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.udp, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(self.local_host, self.local_port))

    async def stop(self) -> None:
        if self.udp is not None:
            self.udp.close()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        peer = Peer(addr[0], addr[1], "udp")
        message = read_datagram(data, peer)
        if isinstance(message, Request | Response):
            self.on_message(message, peer)

    def send(self, message: Outgoing, dest: Peer) -> None:
        assert self.udp is not None and dest.transport == "udp"
        self.udp.sendto(message.to_bytes(), (dest.host, dest.port))

    def response_destination(self, response: Response | SentResponse, source: Peer) -> Peer:
        return reply_address(response, source)

    def port_for(self, transport: str) -> int:
        return self.local_port


@dataclass
class Carrier:
    """The trunk's far end: answers INVITE 200 (the offer as answer) and BYE 200; records
    each request as (method, transport it came over, transport its top Via names)."""

    ua: UserAgent
    seen: list[tuple[str, str, str]] = field(default_factory=list)
    invited: asyncio.Event = field(default_factory=asyncio.Event)
    invited_at: float = 0.0

    @classmethod
    async def start(cls, tcp: bool) -> Carrier:
        if tcp:
            ua = UserAgent(lambda cb: SipTransport("127.0.0.1", free_port(), cb))
        else:
            ua = UserAgent(lambda cb: UdpOnlyTransport(cb))
        carrier = cls(ua)
        ua.on_request = carrier.handle
        await ua.start()
        return carrier

    @property
    def port(self) -> int:
        return self.ua.transport.local_port

    def record(self, request: Request, source: Peer) -> None:
        self.seen.append((request.method, source.transport, request.top_via.transport))

    async def handle(self, sr: ServerRequest) -> None:
        self.record(sr.request, sr.source)
        if sr.method != "INVITE":
            sr.respond(200)
            return
        self.invited_at = asyncio.get_running_loop().time()
        self.invited.set()
        sr.respond(200, headers=[("Content-Type", "application/sdp")], body=sr.request.body)
        ack = await sr.acked()
        if ack is not None:
            self.seen.append(("ACK", "", ack.top_via.transport))


async def call_through(pbx: PbxHarness, carrier: Carrier, sdp: bytes) -> float:
    """Extension 1001 calls 9 5551234 (answered by `carrier`), then hangs up; how long
    the INVITE took from the caller to the carrier."""
    caller = UserAgent(lambda cb: SipTransport("127.0.0.1", free_port(), cb))
    await caller.start()
    try:
        transport = pbx.app.pbx.transport
        dest = Peer(transport.local_host, transport.local_port)
        uri = f"sip:95551234@{dest.host}:{dest.port}"
        invite = Request("INVITE", uri, [
            ("From", f"<sip:1001@{dest.host}>;tag={caller.new_tag()}"),
            ("To", f"<sip:95551234@{dest.host}>"),
            ("Call-ID", caller.new_call_id()),
            ("CSeq", "1 INVITE"),
            ("Contact", f"<{caller.contact_uri('1001')}>"),
            ("Content-Type", "application/sdp"),
        ], sdp)
        loop = asyncio.get_running_loop()
        started = loop.time()
        call = caller.invite(invite, dest)
        final = await asyncio.wait_for(call.final(), WAIT)
        if final.status == 407:  # the extension proves who it is
            retry = next_attempt(invite)
            retry.set("Proxy-Authorization", DigestClient("1001", ext_password("1001")).answer(
                final.get("Proxy-Authenticate") or "", "INVITE", uri))
            started = loop.time()
            call = caller.invite(retry, dest)
            final = await asyncio.wait_for(call.final(), WAIT)
        assert final.status == 200, final
        assert final.body == sdp  # the carrier's answer, relayed
        assert call.dialog is not None
        caller.ack(call.dialog)
        took = carrier.invited_at - started
        bye = await asyncio.wait_for(caller.request_in_dialog(call.dialog, "BYE"), WAIT)
        assert bye.status == 200
        caller.forget_dialog(call.dialog)
        await pbx.wait_idle(timeout=5)
        return took
    finally:
        await caller.stop()


async def test_a_large_invite_goes_over_tcp_to_a_udp_trunk_that_takes_it(
    tmp_path: Path,
) -> None:
    carrier = await Carrier.start(tcp=True)
    pbx = await PbxHarness.start(tmp_path, trunks=[TrunkSpec("carrier", carrier.port)])
    try:
        assert pbx.app.pbx.ua.udp_max_request == 1300  # the default
        await call_through(pbx, carrier, BIG_SDP)
        assert carrier.seen == [("INVITE", "tcp", "TCP"), ("ACK", "", "TCP"),
                                ("BYE", "tcp", "TCP")]
        assert len(pbx.app.pbx.ua.udp_only) == 0

        carrier.seen.clear()  # a small INVITE still goes over UDP
        await call_through(pbx, carrier, SDP_HEAD)
        assert carrier.seen == [("INVITE", "udp", "UDP"), ("ACK", "", "UDP"),
                                ("BYE", "udp", "UDP")]
    finally:
        await pbx.stop()
        await carrier.ua.stop()


async def test_a_large_invite_goes_over_udp_when_the_trunk_takes_no_tcp(
    tmp_path: Path,
) -> None:
    carrier = await Carrier.start(tcp=False)
    pbx = await PbxHarness.start(tmp_path, trunks=[TrunkSpec("carrier", carrier.port)])
    try:
        took = await call_through(pbx, carrier, BIG_SDP)
        assert took < 2.0, took  # the refused connect costs next to nothing
        assert carrier.seen == [("INVITE", "udp", "UDP"), ("ACK", "", "UDP"),
                                ("BYE", "udp", "UDP")]
        ua = pbx.app.pbx.ua
        assert ua.udp_only.has(Peer("127.0.0.1", carrier.port), ua._now())

        carrier.seen.clear()  # remembered: no second connect, straight over UDP
        took = await call_through(pbx, carrier, BIG_SDP)
        assert took < 1.0, took
        assert [s for s in carrier.seen if s[0] == "INVITE"] == [("INVITE", "udp", "UDP")]
    finally:
        await pbx.stop()
        await carrier.ua.stop()


async def test_connect_gives_up_after_its_own_timeout() -> None:
    """SYNs to a listener whose accept queue is full go unanswered: `connect(dest, 0.5)`
    reports the destination unreachable after about 0.5 s, not `connect_timeout`."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    held = []
    for _ in range(4):  # fill the accept queue
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        held.append(sock)
    unreachable: asyncio.Queue[Peer] = asyncio.Queue()
    transport = SipTransport("127.0.0.1", 0, lambda message, peer: None,
                             on_unreachable=unreachable.put_nowait, connect_timeout=30)
    await transport.start()
    loop = asyncio.get_running_loop()
    try:
        await asyncio.sleep(0.2)
        dest = Peer("127.0.0.1", port, "tcp")
        started = loop.time()
        transport.connect(dest, 0.5)
        transport.connect(dest, 0.5)  # already opening: not a second connection
        assert await asyncio.wait_for(unreachable.get(), WAIT) == dest
        assert 0.4 < loop.time() - started < 3
        await asyncio.sleep(0.2)
        assert unreachable.empty() and not transport._all
    finally:
        await transport.stop()
        for sock in held:
            sock.close()
        listener.close()
