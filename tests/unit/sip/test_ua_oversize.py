"""The UA sends large new requests over TCP (RFC 3261 §18.1.1), over UDP if TCP fails.

A recording transport stands in for SipTransport: it keeps what the UA sends and the
connections it asks for; the far end's answers are fed to `ua.receive` by hand, and a
failed connect is the transport's `on_unreachable`, i.e. `ua.unreachable(dest)`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ippbx.sip.message import (
    Outgoing,
    Request,
    Response,
    SentResponse,
    make_response,
    parse_message,
)
from ippbx.sip.oversize import TCP_CONNECT_TIMEOUT
from ippbx.sip.ua import UNREACHABLE, UserAgent
from ippbx.sip.wire import Peer

T1 = 0.005
FAR = Peer("10.0.0.2", 5062, "udp")
FAR_TCP = Peer("10.0.0.2", 5062, "tcp")
BIG = b"v=0\r\n" + b"a=x-padding:" + b"p" * 1400 + b"\r\n"
SMALL = b"v=0\r\n"


class Recorder:
    """What the UA needs of SipTransport, recording sends and `connect` calls."""

    local_host = "10.0.0.1"
    local_port = 5060

    def __init__(self, can_connect: bool = True) -> None:
        self.sent: list[tuple[Request | Response, Peer]] = []
        self.connects: list[tuple[Peer, float]] = []
        self.can_connect = can_connect  # False: as when too many connections are open

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def send(self, message: Outgoing, dest: Peer) -> None:
        self.sent.append((parse_message(message.to_bytes()), dest))

    def response_destination(self, response: Response | SentResponse, source: Peer) -> Peer:
        return source

    def port_for(self, transport: str) -> int:
        return self.local_port

    def connect(self, dest: Peer, timeout: float) -> bool:
        self.connects.append((dest, timeout))
        return self.can_connect

    def requests(self, method: str) -> list[tuple[Request, Peer]]:
        return [(m, d) for m, d in self.sent if isinstance(m, Request) and m.method == method]


class UdpOnlyRecorder(Recorder):
    connect = None  # type: ignore[assignment]  # a transport without TCP


async def make(transport: Recorder, limit: int = 1300) -> UserAgent:
    ua = UserAgent(transport, t1=T1, t2=4 * T1, t4=2 * T1, timer_d=5 * T1,
                   udp_max_request=limit)
    await ua.start()
    return ua


@pytest.fixture
async def wire() -> AsyncIterator[tuple[UserAgent, Recorder]]:
    transport = Recorder()
    ua = await make(transport)
    yield ua, transport
    await ua.stop()


def invite(ua: UserAgent, body: bytes) -> Request:
    return Request("INVITE", f"sip:5551234@{FAR.host}:{FAR.port}", [
        ("From", f"<sip:1001@{ua.advertised_host}>;tag={ua.new_tag()}"),
        ("To", f"<sip:5551234@{FAR.host}>"),
        ("Call-ID", ua.new_call_id()),
        ("CSeq", "1 INVITE"),
        ("Contact", f"<{ua.contact_uri('1001')}>"),
        ("Content-Type", "application/sdp"),
    ], body)


def answer(ua: UserAgent, request: Request, status: int, source: Peer) -> None:
    """The far end's `status` to `request`, arriving from `source`."""
    response = make_response(request, status, to_tag="far1", headers=[
        ("Contact", f"<sip:far@{FAR.host}:{FAR.port}>")])
    ua.receive(response, source)


async def settled(ua: UserAgent) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + 3
    while any(ua.counts().values()):
        assert loop.time() < end, ua.counts()
        await asyncio.sleep(0.01)


async def test_large_invite_goes_over_tcp_and_its_ack_and_cancel_follow(
    wire: tuple[UserAgent, Recorder]
) -> None:
    ua, transport = wire
    call = ua.invite(invite(ua, BIG), FAR)
    assert transport.connects == [(FAR_TCP, TCP_CONNECT_TIMEOUT)]
    [(sent, dest)] = transport.requests("INVITE")
    assert dest == FAR_TCP
    assert sent.top_via.transport == "TCP" and sent.top_via.port == 5060
    assert "rport" in sent.top_via.params
    assert sent.get("Contact") == "<sip:1001@10.0.0.1:5060>"  # the Contact stays as it is
    assert call.dest == FAR_TCP
    answer(ua, sent, 200, FAR_TCP)
    final = await asyncio.wait_for(call.final(), 1)
    assert final.status == 200 and call.dialog is not None
    ua.ack(call.dialog)
    [(ack, dest)] = transport.requests("ACK")
    assert dest == FAR_TCP and ack.top_via.transport == "TCP"
    bye = asyncio.ensure_future(ua.request_in_dialog(call.dialog, "BYE"))
    await asyncio.sleep(0)
    [(sent_bye, dest)] = transport.requests("BYE")
    assert dest == FAR_TCP and sent_bye.top_via.transport == "TCP"
    answer(ua, sent_bye, 200, FAR_TCP)
    assert (await asyncio.wait_for(bye, 1)).status == 200
    ua.forget_dialog(call.dialog)

    # a CANCEL goes the INVITE's way, with its branch
    transport.sent.clear()
    call = ua.invite(invite(ua, BIG), FAR)
    [(sent, _)] = transport.requests("INVITE")
    answer(ua, sent, 180, FAR_TCP)
    call.cancel()
    [(cancel, dest)] = transport.requests("CANCEL")
    assert dest == FAR_TCP
    assert str(cancel.top_via) == str(sent.top_via)
    answer(ua, cancel, 200, FAR_TCP)
    answer(ua, sent, 487, FAR_TCP)
    assert (await asyncio.wait_for(call.final(), 1)).status == 487
    [(ack, dest)] = transport.requests("ACK")  # the ACK for the 487, by the transaction
    assert dest == FAR_TCP and ack.top_via.branch == sent.top_via.branch
    await settled(ua)


async def test_refused_tcp_sends_the_request_over_udp_as_a_new_transaction(
    wire: tuple[UserAgent, Recorder]
) -> None:
    ua, transport = wire
    call = ua.invite(invite(ua, BIG), FAR)
    [(over_tcp, _)] = transport.requests("INVITE")
    ua.unreachable(FAR_TCP)  # refused, or not connected within TCP_CONNECT_TIMEOUT
    assert not call.done
    [_, (over_udp, dest)] = transport.requests("INVITE")
    assert dest == FAR and call.dest == FAR
    assert over_udp.top_via.transport == "UDP"
    assert over_udp.top_via.branch != over_tcp.top_via.branch
    assert over_udp.body == BIG and over_udp.cseq == over_tcp.cseq
    await asyncio.sleep(3 * T1)  # UDP: retransmitted (Timer A), never over TCP again
    retransmitted = transport.requests("INVITE")[2:]
    assert retransmitted and {d for _, d in retransmitted} == {FAR}
    assert ua.udp_only.has(FAR, ua._now())
    answer(ua, over_udp, 180, FAR)
    call.cancel()  # the CANCEL follows the UDP INVITE now
    [(cancel, dest)] = transport.requests("CANCEL")
    assert dest == FAR and cancel.top_via.branch == over_udp.top_via.branch
    answer(ua, over_udp, 200, FAR)
    final = await asyncio.wait_for(call.final(), 1)
    assert final.status == 200 and call.dialog is not None
    assert call.dialog.peer == FAR
    ua.ack(call.dialog)
    assert [d for _, d in transport.requests("ACK")] == [FAR]
    ua.forget_dialog(call.dialog)

    # the peer took no TCP: its next large request goes over UDP at once
    transport.sent.clear()
    again = ua.invite(invite(ua, BIG), FAR)
    assert len(transport.connects) == 1
    [(sent, dest)] = transport.requests("INVITE")
    assert dest == FAR and sent.top_via.transport == "UDP"
    answer(ua, sent, 486, FAR)
    assert (await asyncio.wait_for(again.final(), 1)).status == 486
    await settled(ua)


async def test_an_answered_request_is_not_sent_again_over_udp(
    wire: tuple[UserAgent, Recorder]
) -> None:
    ua, transport = wire
    call = ua.invite(invite(ua, BIG), FAR)
    [(sent, _)] = transport.requests("INVITE")
    answer(ua, sent, 180, FAR_TCP)
    ua.unreachable(FAR_TCP)  # (e.g. a reconnect for the CANCEL failed)
    final = await asyncio.wait_for(call.final(), 1)
    assert (final.status, final.reason) == (503, UNREACHABLE)
    assert len(transport.requests("INVITE")) == 1
    await settled(ua)


async def test_small_requests_and_switching_off_stay_on_udp() -> None:
    for transport, limit, body in ((Recorder(), 1300, SMALL), (Recorder(), 0, BIG),
                                   (UdpOnlyRecorder(), 1300, BIG),
                                   (Recorder(can_connect=False), 1300, BIG)):
        ua = await make(transport, limit)
        try:
            call = ua.invite(invite(ua, body), FAR)
            [(sent, dest)] = transport.requests("INVITE")
            assert dest == FAR and sent.top_via.transport == "UDP"
            assert len(transport.connects) == (0 if transport.can_connect else 1)
            answer(ua, sent, 486, FAR)
            assert (await asyncio.wait_for(call.final(), 1)).status == 486
        finally:
            await ua.stop()


async def test_a_large_reinvite_takes_its_dialog_to_tcp(
    wire: tuple[UserAgent, Recorder]
) -> None:
    ua, transport = wire
    call = ua.invite(invite(ua, SMALL), FAR)
    [(sent, dest)] = transport.requests("INVITE")
    assert dest == FAR
    answer(ua, sent, 200, FAR)
    assert (await asyncio.wait_for(call.final(), 1)).status == 200
    dialog = call.dialog
    assert dialog is not None and dialog.peer == FAR
    ua.ack(dialog)
    reinvite = asyncio.ensure_future(ua.request_in_dialog(dialog, "INVITE", BIG))
    await asyncio.sleep(0)
    [_, (sent, dest)] = transport.requests("INVITE")
    assert dest == FAR_TCP and sent.top_via.transport == "TCP"
    assert dialog.peer == FAR_TCP
    answer(ua, sent, 200, FAR_TCP)
    assert (await asyncio.wait_for(reinvite, 1)).status == 200
    ua.ack(dialog)
    assert [d for _, d in transport.requests("ACK")] == [FAR, FAR_TCP]
    ua.forget_dialog(dialog)
    await settled(ua)
