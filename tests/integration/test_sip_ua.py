"""ippbx's own UA (sip/ua.py over sip/transport.py) against sipp, on loopback.

(a) a tiny ippbx UAS answers sipp's uac.xml at 200 calls/s for 10 s: 0 failed, 0 retrans;
(b) an ippbx UAC places calls to sipp's uas.xml (INVITE/ACK/BYE), UDP and TCP;
(c) the 2xx retransmission: sipp's uac_no_ack.xml never ACKs; ippbx resends the 200 at
    T1, 2*T1, 4*T1… capped at T2 and gives up at 64*T1 (`await acked()` is None);
(d) OPTIONS from sipp gets an answer (405 from this UAS) and breaks nothing.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from sipp_harness import SippFactory, free_port

from ippbx.sip.message import Request
from ippbx.sip.transport import SipTransport
from ippbx.sip.wire import Peer

ua_module = pytest.importorskip("ippbx.sip.ua", reason="sip/ua.py has not landed yet")
UserAgent = ua_module.UserAgent
ServerRequest = ua_module.ServerRequest

SDP = (b"v=0\r\no=ippbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
SDP_HEADERS = [("Content-Type", "application/sdp")]


@dataclass
class TinyUas:
    """INVITE → 180, 200 (SDP); BYE → 200; anything else 405. Counts what it saw."""

    ua: object
    seen: Counter[str] = field(default_factory=Counter)
    no_ack: list[float] = field(default_factory=list)  # seconds from 200 to giving up

    async def __call__(self, sr: ServerRequest) -> None:  # type: ignore[valid-type]
        self.seen[sr.method] += 1
        if sr.method == "INVITE":
            sr.respond(180)
            sr.respond(200, headers=SDP_HEADERS, body=SDP)
            loop = asyncio.get_running_loop()
            sent = loop.time()
            if await sr.acked() is None:
                self.no_ack.append(loop.time() - sent)
        elif sr.method == "BYE":
            sr.respond(200)
            if sr.dialog is not None:
                self.ua.forget_dialog(sr.dialog)  # type: ignore[attr-defined]
        else:
            sr.respond(405, headers=[("Allow", "INVITE, ACK, BYE, CANCEL")])


@pytest.fixture
async def make_ua() -> AsyncIterator[object]:
    started: list[object] = []

    async def make(**kwargs: object) -> UserAgent:  # type: ignore[valid-type]
        ua = UserAgent(lambda on_message: SipTransport("127.0.0.1", 0, on_message),
                       user_agent="ippbx-test", **kwargs)
        await ua.start()
        started.append(ua)
        return ua

    yield make
    for ua in started:
        await asyncio.wait_for(ua.stop(), 10)  # type: ignore[attr-defined]


async def tiny_uas(make_ua: object, **kwargs: object) -> tuple[object, TinyUas]:
    ua = await make_ua(**kwargs)  # type: ignore[operator]
    uas = TinyUas(ua)
    ua.on_request = uas
    return ua, uas


# -- (a) ------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_uas_answers_200_calls_per_second_for_10_s(
    make_ua: object, sipp: SippFactory
) -> None:
    ua, uas = await tiny_uas(make_ua)
    uac = sipp("uac.xml", remote=f"127.0.0.1:{ua.transport.local_port}", calls=2000,
               rate=200, duration_ms=100, recv_timeout_ms=5000)
    uac.start()
    result = await uac.await_result(timeout=40)
    result.assert_ok(calls=2000, retransmissions=0)
    assert uas.seen["INVITE"] == 2000 and uas.seen["BYE"] == 2000, uas.seen
    assert uas.no_ack == []
    counts = ua.counts()
    assert counts["dialogs"] == 0 and counts["awaiting_ack"] == 0, counts


async def test_a_uas_over_tcp(make_ua: object, sipp: SippFactory) -> None:
    ua, uas = await tiny_uas(make_ua)
    uac = sipp("uac.xml", remote=f"127.0.0.1:{ua.transport.local_port}", calls=10,
               rate=50, transport="tcp", recv_timeout_ms=5000)
    uac.start()
    (await uac.await_result(timeout=20)).assert_ok(calls=10)
    assert uas.seen["INVITE"] == 10 and uas.seen["BYE"] == 10


# -- (b) ------------------------------------------------------------------------------------


async def place_call(ua: object, port: int, transport: str = "udp") -> None:
    u: UserAgent = ua  # type: ignore[valid-type]
    dest = Peer("127.0.0.1", port, transport)
    target = f"sip:1000@127.0.0.1:{port}" + (";transport=tcp" if transport == "tcp" else "")
    request = Request("INVITE", target, [
        ("From", f"<sip:ippbx@127.0.0.1:{u.transport.local_port}>;tag={u.new_tag()}"),
        ("To", f"<sip:1000@127.0.0.1:{port}>"),
        ("Call-ID", u.new_call_id()),
        ("CSeq", "1 INVITE"),
        ("Contact", f"<{u.contact_uri('ippbx', transport)}>"),
        *SDP_HEADERS,
    ], SDP)
    call = u.invite(request, dest)
    final = await asyncio.wait_for(call.final(), 10)
    assert final.status == 200, final
    assert call.dialog is not None
    u.ack(call.dialog)
    bye = await asyncio.wait_for(u.request_in_dialog(call.dialog, "BYE"), 10)
    assert bye.status == 200, bye
    u.forget_dialog(call.dialog)


@pytest.mark.parametrize(("transport", "calls"), [("udp", 20), ("tcp", 5)])
async def test_b_uac_places_calls_to_sipp(
    make_ua: object, sipp: SippFactory, transport: str, calls: int
) -> None:
    ua = await make_ua()  # type: ignore[operator]
    uas_port = free_port()
    uas = await sipp("uas.xml", port=uas_port, calls=calls, transport=transport).astart()
    await asyncio.wait_for(
        asyncio.gather(*(place_call(ua, uas_port, transport) for _ in range(calls))), 30)
    result = await uas.await_result(timeout=15)
    if transport == "tcp":  # sipp's last call may be in <timewait> when we hang up TCP
        assert result.successful == calls and result.failed == 0, result.describe()
    else:
        result.assert_ok(calls=calls, retransmissions=0)
    assert ua.counts()["dialogs"] == 0


# -- (c) ------------------------------------------------------------------------------------

T1, T2 = 0.05, 0.4  # short timers: Timer H = 64 * T1 = 3.2 s


async def test_c_2xx_retransmitted_until_timer_h(make_ua: object, sipp: SippFactory) -> None:
    ua, uas = await tiny_uas(make_ua, t1=T1, t2=T2)
    uac = sipp("uac_no_ack.xml", remote=f"127.0.0.1:{ua.transport.local_port}", calls=1,
               duration_ms=4500, trace_msg=True, recv_timeout_ms=5000)
    uac.start()
    result = await uac.await_result(timeout=20)
    result.assert_ok(calls=1, retransmissions=0)
    # resent after T1, then 2*T1, 4*T1, capped at T2, until 64*T1 after the first send
    expected = [T1, 2 * T1, 4 * T1] + [T2] * 7  # sends at 0.05 … 3.15 s; gives up at 3.2
    oks = [m for m in result.messages()
           if m.direction == "received" and m.first_line.startswith("SIP/2.0 200")]
    gaps = [b.time - a.time for a, b in zip(oks, oks[1:], strict=False)]
    assert result.count("4_200_Recv") == 1
    assert result.count("4_200_Retrans") == len(expected) == len(gaps), gaps
    assert all(abs(g - e) < 0.04 for g, e in zip(gaps, expected, strict=True)), gaps
    assert oks[-1].time - oks[0].time < 64 * T1
    # the UA reported the missing ACK at Timer H
    assert len(uas.no_ack) == 1 and 64 * T1 - 0.05 < uas.no_ack[0] < 64 * T1 + 0.3, uas.no_ack
    assert ua.counts()["awaiting_ack"] == 0


# -- (d) ------------------------------------------------------------------------------------


async def test_d_options_answered_and_nothing_breaks(make_ua: object, sipp: SippFactory) -> None:
    ua, uas = await tiny_uas(make_ua)
    remote = f"127.0.0.1:{ua.transport.local_port}"
    options = sipp("uac_options.xml", remote=remote, calls=10, rate=50, trace_msg=True,
                   recv_timeout_ms=3000)
    options.start()
    result = (await options.await_result(timeout=20)).assert_ok(calls=10)
    answers = {m.first_line for m in result.messages() if m.direction == "received"}
    assert answers <= {"SIP/2.0 405 Method Not Allowed", "SIP/2.0 200 OK"}, answers
    assert uas.seen["OPTIONS"] == 10
    # still serving calls afterwards
    call = sipp("uac.xml", remote=remote, calls=1, rate=1, recv_timeout_ms=3000)
    call.start()
    (await call.await_result(timeout=10)).assert_ok(calls=1)
