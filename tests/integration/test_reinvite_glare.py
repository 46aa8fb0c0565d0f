"""Offer glare (RFC 3261 §14, RFC 3311 §5.2): two offers cross on a dialog, resolved.

The caller (sipp, extension 1001) puts the call on hold with a re-INVITE, which ippbx
relays to the carrier. The carrier - scripted here over a raw UDP socket, so the crossing
is exact - sends a re-INVITE (or an UPDATE with SDP) of its own on that dialog before
answering ippbx's. ippbx, with its INVITE still pending on the dialog, answers the
carrier's 491 (§14.2) and relays nothing; the carrier ACKs a 491 to its INVITE and answers
ippbx's re-INVITE, the hold completes, and the call ends normally. (A carrier would try
its own again after a random pause, §14.1.)
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from pbx_harness import PbxHarness, TrunkSpec, dialling
from sipp_harness import SippFactory, free_port

from ippbx.sip.headers import NameAddr
from ippbx.sip.message import Request, Response, make_response, parse_message

SDP = (b"v=0\r\no=carrier 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


class RawCarrier:
    """A UDP socket that the test drives message by message."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.port = port
        self.peer: tuple[str, int] | None = None

    async def receive(self, want: str, timeout: float = 10.0) -> Request | Response:
        """The next message whose method (request) or "status CSeq-method" (response)
        is `want`; retransmissions and anything else are skipped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            data, self.peer = await asyncio.wait_for(loop.sock_recvfrom(self.sock, 65536),
                                                     left)
            message = parse_message(data)
            key = (message.method if isinstance(message, Request)
                   else f"{message.status} {message.cseq[1]}")
            if key == want:
                return message
        raise AssertionError(f"no {want} within {timeout} s")

    def send(self, message: Request | Response) -> None:
        assert self.peer is not None
        self.sock.sendto(message.to_bytes(), self.peer)

    def answer(self, request: Request, status: int, body: bytes = b"") -> None:
        headers = [("Contact", f"<sip:carrier@127.0.0.1:{self.port}>")]
        if body:
            headers.append(("Content-Type", "application/sdp"))
        self.send(make_response(request, status, to_tag="carrier1", headers=headers,
                                body=body))


def crossing(method: str, invite: Request, trunk_port: int) -> Request:
    """The carrier's own offer (re-INVITE or UPDATE) on the dialog of `invite`."""
    contact = NameAddr.parse(invite.get("Contact") or "").uri
    return Request(method, contact, [
        ("Via", f"SIP/2.0/UDP 127.0.0.1:{trunk_port};branch=z9hG4bK-glare1;rport"),
        ("From", f"{invite.get('To')};tag=carrier1"),
        ("To", invite.get("From") or ""),
        ("Call-ID", invite.call_id),
        ("CSeq", f"1 {method}"),
        ("Contact", f"<sip:carrier@127.0.0.1:{trunk_port}>"),
        ("Max-Forwards", "70"),
        ("Content-Type", "application/sdp"),
    ], SDP.replace(b"40000", b"40002"))


@pytest.mark.parametrize("method", ["INVITE", "UPDATE"])
async def test_crossing_offers_get_491_and_the_hold_completes(
    tmp_path: Path, sipp: SippFactory, method: str
) -> None:
    """A re-INVITE (RFC 3261 §14.2) or an UPDATE with SDP (RFC 3311 §5.2) from the
    carrier crosses the relayed hold: 491, not relayed, and the hold completes."""
    trunk_port = free_port()
    carrier = RawCarrier(trunk_port)
    pbx = await PbxHarness.start(tmp_path, trunks=[TrunkSpec("carrier", trunk_port)])
    try:
        near = await dialling(sipp, pbx, "pbx_uac_auth_hold.xml", "95551234",
                              duration_ms=300).astart()
        invite = await carrier.receive("INVITE")
        assert isinstance(invite, Request)
        carrier.answer(invite, 200, SDP)
        await carrier.receive("ACK")

        relayed = await carrier.receive("INVITE")  # the caller's hold, relayed
        assert isinstance(relayed, Request) and b"a=sendonly" in relayed.body
        assert relayed.call_id == invite.call_id

        # the carrier's own offer crosses it on the same dialog
        ours = crossing(method, invite, trunk_port)
        carrier.send(ours)
        pending = await carrier.receive(f"491 {method}")
        assert isinstance(pending, Response)
        if method == "INVITE":
            ack = Request("ACK", ours.uri, [
                ("Via", ours.get("Via") or ""),
                ("From", ours.get("From") or ""),
                ("To", pending.get("To") or ""),
                ("Call-ID", invite.call_id),
                ("CSeq", "1 ACK"),
                ("Max-Forwards", "70"),
            ])
            carrier.send(ack)

        # then the carrier answers ippbx's re-INVITE: the hold goes through
        carrier.answer(relayed, 200, SDP.replace(b"PCMU/8000\r\n", b"PCMU/8000\r\na=recvonly\r\n"))
        await carrier.receive("ACK")

        async def held() -> bool:
            return [c["status"] for c in await pbx.outbound()] == ["Wait"]

        await pbx.wait_for(held, timeout=5, what="the call on hold")
        bye = await carrier.receive("BYE", timeout=15)
        assert isinstance(bye, Request)
        carrier.send(make_response(bye, 200))
        (await near.await_result(15)).assert_ok(calls=1)  # (no offer reached the caller)
        await pbx.wait_idle()
    finally:
        carrier.sock.close()
        await pbx.stop()
