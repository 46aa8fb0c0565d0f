"""The UA core: two UserAgents wired through an in-memory network in one event loop."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator

import pytest
from sip_net import T1, FakeNet, Msg, make_ua, settled, until

from ippbx.sip.dialog import Dialog
from ippbx.sip.message import Request, Response, make_response, parse_message
from ippbx.sip.transaction import TransactionError
from ippbx.sip.ua import ServerRequest, UserAgent
from ippbx.sip.wire import Peer

A = Peer("10.0.0.1", 5060)
B = Peer("10.0.0.2", 5060)
NOWHERE = Peer("10.0.0.99", 5060)


@pytest.fixture
async def net() -> FakeNet:
    return FakeNet()


@pytest.fixture
async def pair(net: FakeNet) -> AsyncIterator[tuple[UserAgent, UserAgent]]:
    a = make_ua(net, A.host)
    b = make_ua(net, B.host)
    await a.start()
    await b.start()
    yield a, b
    await a.stop()
    await b.stop()


def new_invite(ua: UserAgent, to: str = "sip:bob@10.0.0.2", body: bytes = b"v=0 offer") -> Request:
    return Request("INVITE", to, [
        ("From", f"<sip:alice@{ua.advertised_host}>;tag={ua.new_tag()}"),
        ("To", f"<{to}>"),
        ("Call-ID", ua.new_call_id()),
        ("CSeq", "1 INVITE"),
        ("Contact", f"<{ua.contact_uri('alice')}>"),
        ("Content-Type", "application/sdp"),
    ], body)


def out_of_dialog(ua: UserAgent, method: str, to_tag: str | None = None) -> Request:
    to = "<sip:bob@10.0.0.2>" + (f";tag={to_tag}" if to_tag else "")
    return Request(method, "sip:bob@10.0.0.2", [
        ("From", f"<sip:alice@10.0.0.1>;tag={ua.new_tag()}"),
        ("To", to),
        ("Call-ID", ua.new_call_id()),
        ("CSeq", f"1 {method}"),
    ])


class Callee:
    """B's request handler: answers INVITE 180+200 and BYE 200, recording everything."""

    def __init__(self, ua: UserAgent, answer: bool = True) -> None:
        self.ua = ua
        self.answer = answer
        self.requests: list[ServerRequest] = []
        self.acks: list[Request | None] = []
        self.dialog: Dialog | None = None
        ua.on_request = self

    async def __call__(self, sr: ServerRequest) -> None:
        self.requests.append(sr)
        method = sr.request.method
        if method == "INVITE":
            if sr.dialog is not None:  # re-INVITE
                sr.respond(200, body=b"v=0 answer2",
                           headers=[("Content-Type", "application/sdp")])
                self.acks.append(await sr.acked())
                return
            sr.respond(180)
            await asyncio.sleep(2 * T1)
            if sr.cancelled.is_set():
                sr.respond(487)
                self.acks.append(await sr.acked())
                return
            if not self.answer:
                await sr.cancelled.wait()
                sr.respond(487)
                return
            sr.respond(200, body=b"v=0 answer", headers=[("Content-Type", "application/sdp")])
            self.dialog = sr.dialog
            self.acks.append(await sr.acked())
        elif method == "BYE":
            sr.respond(200)
            assert sr.dialog is not None
            self.ua.forget_dialog(sr.dialog)
        else:
            sr.respond(200)


async def place_call(a: UserAgent, net: FakeNet) -> tuple[Dialog, list[Response]]:
    ringing: list[Response] = []
    ci = a.invite(new_invite(a), B, on_provisional=ringing.append)
    final = await asyncio.wait_for(ci.final(), 2)
    assert final.status == 200 and final.body == b"v=0 answer"
    assert ci.dialog is not None
    a.ack(ci.dialog)
    return ci.dialog, ringing


async def test_call_invite_ringing_answer_ack_bye(pair: tuple[UserAgent, UserAgent],
                                                  net: FakeNet) -> None:
    a, b = pair
    callee = Callee(b)
    dialog, ringing = await place_call(a, net)
    assert [r.status for r in ringing] == [180]  # answered at once: no 100 Trying
    await asyncio.sleep(3 * T1)
    assert callee.acks and callee.acks[0] is not None and callee.acks[0].method == "ACK"
    assert callee.dialog is not None and len(b.dialogs) == 1 and len(a.dialogs) == 1
    assert dialog.remote_target == "sip:10.0.0.2:5060"
    assert callee.dialog.remote_target == "sip:alice@10.0.0.1:5060"
    invite = net.sent(lambda m: isinstance(m, Request) and m.method == "INVITE")[0]
    assert invite.top_via.branch.startswith("z9hG4bK") and invite.get("Max-Forwards") == "70"
    assert invite.get("User-Agent") == "ippbx"
    ok = net.sent(lambda m: isinstance(m, Response) and m.status == 200)[0]
    assert ok.get("Contact") == "<sip:10.0.0.2:5060>" and ok.to.tag
    bye = await a.request_in_dialog(dialog, "BYE")
    assert bye.status == 200
    a.forget_dialog(dialog)
    assert [sr.request.method for sr in callee.requests] == ["INVITE", "BYE"]
    assert callee.requests[1].dialog is callee.dialog
    await settled(a, b)


async def test_a_bye_is_answered_through_a_future_with_no_task(
        pair: tuple[UserAgent, UserAgent], net: FakeNet) -> None:
    a, b = pair
    Callee(b)
    dialog, _ = await place_call(a, net)
    tasks = a.pending_tasks
    answer = a.bye(dialog)
    assert a.pending_tasks == tasks
    assert (await asyncio.wait_for(answer, 2)).status == 200
    [bye] = net.sent(lambda m: isinstance(m, Request) and m.method == "BYE")
    assert bye.call_id == dialog.call_id and bye.cseq[1] == "BYE"
    a.forget_dialog(dialog)
    await settled(a, b)


async def test_2xx_retransmitted_until_ack_and_reacked(pair: tuple[UserAgent, UserAgent],
                                                        net: FakeNet) -> None:
    a, b = pair
    callee = Callee(b)
    dropped: list[Msg] = []

    def drop_first_ack(m: Msg, dest: Peer) -> bool:
        if isinstance(m, Request) and m.method == "ACK" and not dropped:
            dropped.append(m)
            return True
        return False

    net.drop = drop_first_ack
    dialog, _ = await place_call(a, net)
    await asyncio.sleep(10 * T1)
    oks = net.sent(lambda m: isinstance(m, Response) and m.status == 200
                   and m.cseq[1] == "INVITE")
    acks = net.sent(lambda m: isinstance(m, Request) and m.method == "ACK")
    assert len(oks) >= 2 and len(acks) == 2 and len(dropped) == 1
    assert acks[0].to_bytes() == acks[1].to_bytes()  # the very same ACK again
    assert len(callee.acks) == 1 and callee.acks[0] is not None
    await a.request_in_dialog(dialog, "BYE")
    a.forget_dialog(dialog)
    await settled(a, b)


async def test_lost_invite_is_retransmitted_and_retransmissions_absorbed(
        pair: tuple[UserAgent, UserAgent], net: FakeNet) -> None:
    a, b = pair
    callee = Callee(b)
    count = {"n": 0}

    def drop_first_invite_and_dup_others(m: Msg, dest: Peer) -> bool:
        if isinstance(m, Request) and m.method == "INVITE":
            count["n"] += 1
            return count["n"] == 1
        return False

    net.drop = drop_first_invite_and_dup_others
    dialog, _ = await place_call(a, net)
    assert count["n"] >= 2
    assert len([sr for sr in callee.requests if sr.request.method == "INVITE"]) == 1
    await a.request_in_dialog(dialog, "BYE")
    a.forget_dialog(dialog)
    await settled(a, b)


async def test_cancel_after_ringing(pair: tuple[UserAgent, UserAgent], net: FakeNet) -> None:
    a, b = pair
    callee = Callee(b, answer=False)
    ringing = asyncio.Event()
    ci = a.invite(new_invite(a), B,
                  on_provisional=lambda r: ringing.set() if r.status == 180 else None)
    await asyncio.wait_for(ringing.wait(), 2)
    assert a.unanswered_invites() == [ci.final_future()]  # (what a stop waits for)
    ci.cancel()
    final = await asyncio.wait_for(ci.final(), 2)
    assert final.status == 487 and ci.dialog is None and a.unanswered_invites() == []
    cancel_ok = net.sent(lambda m: isinstance(m, Response) and m.cseq[1] == "CANCEL")
    assert [r.status for r in cancel_ok] == [200]
    assert callee.requests[0].cancelled.is_set()
    assert [sr.request.method for sr in callee.requests] == ["INVITE"]  # CANCEL not passed up
    assert net.sent(lambda m: isinstance(m, Request) and m.method == "ACK")  # ACK for 487
    await settled(a, b)


async def test_cancel_before_any_provisional_waits_for_one(
        pair: tuple[UserAgent, UserAgent], net: FakeNet) -> None:
    a, b = pair
    Callee(b, answer=False)
    b.transactions.auto_trying = False  # no 100 Trying: the 180 is the first provisional
    ci = a.invite(new_invite(a), B)
    ci.cancel()
    await asyncio.sleep(0)
    assert not net.sent(lambda m: isinstance(m, Request) and m.method == "CANCEL")
    final = await asyncio.wait_for(ci.final(), 2)
    assert final.status == 487
    methods = [(m.method if isinstance(m, Request) else m.status) for _, _, m in net.log]
    assert methods.index(180) < methods.index("CANCEL")
    await settled(a, b)


async def test_2xx_crossing_cancel_reaches_caller(pair: tuple[UserAgent, UserAgent],
                                                  net: FakeNet) -> None:
    a, b = pair
    answered: list[ServerRequest] = []

    async def stubborn(sr: ServerRequest) -> None:
        if sr.request.method == "INVITE":
            sr.respond(180)
            await sr.cancelled.wait()
            sr.respond(200)  # answers although cancelled (the race of §9.1)
            answered.append(sr)
            await sr.acked()
        elif sr.request.method == "BYE":
            sr.respond(200)
            assert sr.dialog is not None
            b.forget_dialog(sr.dialog)

    b.on_request = stubborn
    ringing = asyncio.Event()
    ci = a.invite(new_invite(a), B,
                  on_provisional=lambda r: ringing.set() if r.status == 180 else None)
    await asyncio.wait_for(ringing.wait(), 2)
    ci.cancel()
    final = await asyncio.wait_for(ci.final(), 2)
    assert final.status == 200 and ci.dialog is not None
    a.ack(ci.dialog)
    assert (await a.request_in_dialog(ci.dialog, "BYE")).status == 200
    a.forget_dialog(ci.dialog)
    await settled(a, b)


async def test_reinvite_updates_target_and_is_acked(pair: tuple[UserAgent, UserAgent],
                                                    net: FakeNet) -> None:
    a, b = pair
    callee = Callee(b)
    dialog, _ = await place_call(a, net)
    await asyncio.sleep(2 * T1)
    resp = await a.request_in_dialog(dialog, "INVITE", b"v=0 hold",
                                     [("Content-Type", "application/sdp")])
    assert resp.status == 200 and resp.body == b"v=0 answer2"
    ack = a.ack(dialog)
    assert ack.cseq == (2, "ACK")
    await asyncio.sleep(3 * T1)
    reinvite = callee.requests[1]
    assert reinvite.dialog is callee.dialog and reinvite.request.cseq == (2, "INVITE")
    assert callee.acks[-1] is not None and callee.acks[-1].cseq == (2, "ACK")
    assert (await a.request_in_dialog(dialog, "BYE")).cseq == (3, "BYE")
    a.forget_dialog(dialog)
    await settled(a, b)


async def test_unknown_dialog_gets_481_and_handler_is_not_called(
        pair: tuple[UserAgent, UserAgent], net: FakeNet) -> None:
    a, b = pair
    callee = Callee(b)
    resp = await a.request(out_of_dialog(a, "BYE", to_tag="nope"), B)
    assert resp.status == 481
    ack = out_of_dialog(a, "ACK", to_tag="nope")
    ack.set("Via", a.via())
    a.transport.send(ack, B)  # an ACK to nothing is dropped silently
    await asyncio.sleep(2 * T1)
    assert callee.requests == []
    assert not net.sent(lambda m: isinstance(m, Response) and m.cseq[1] == "ACK")
    await settled(a, b)


async def test_old_cseq_in_dialog_gets_500(pair: tuple[UserAgent, UserAgent],
                                           net: FakeNet) -> None:
    a, b = pair
    Callee(b)
    dialog, _ = await place_call(a, net)
    assert (await a.request_in_dialog(dialog, "INFO")).status == 200
    stale = dialog.create_request("INFO")
    stale.set("CSeq", "1 INFO")
    assert (await a.request(stale, B)).status == 500
    await a.request_in_dialog(dialog, "BYE")
    a.forget_dialog(dialog)
    await settled(a, b)


async def test_timer_b_gives_408(pair: tuple[UserAgent, UserAgent], net: FakeNet) -> None:
    a, _ = pair
    loop = asyncio.get_running_loop()
    start = loop.time()
    resp = await asyncio.wait_for(a.request(new_invite(a), NOWHERE), 3)
    assert resp.status == 408
    assert loop.time() - start == pytest.approx(64 * T1, abs=0.15)
    sent = net.sent(lambda m: isinstance(m, Request) and m.method == "INVITE")
    assert len(sent) == 7  # first send + Timer A at 1, 2, 4, 8, 16, 32 T1
    await settled(a)


async def test_timer_f_gives_408(pair: tuple[UserAgent, UserAgent], net: FakeNet) -> None:
    a, _ = pair
    resp = await asyncio.wait_for(a.request(out_of_dialog(a, "OPTIONS"), NOWHERE), 3)
    assert resp.status == 408 and resp.cseq == (1, "OPTIONS")
    await settled(a)


async def test_handler_errors_answer_500(pair: tuple[UserAgent, UserAgent]) -> None:
    a, b = pair

    def broken(sr: ServerRequest) -> None:
        raise RuntimeError("boom")

    b.on_request = broken
    assert (await a.request(out_of_dialog(a, "OPTIONS"), B)).status == 500

    async def broken_later(sr: ServerRequest) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("boom")

    b.on_request = broken_later
    assert (await a.request(out_of_dialog(a, "OPTIONS"), B)).status == 500
    b.on_request = None
    assert (await a.request(out_of_dialog(a, "OPTIONS"), B)).status == 501
    await settled(a, b)


async def test_no_ack_gives_up_and_acked_returns_none(pair: tuple[UserAgent, UserAgent],
                                                      net: FakeNet) -> None:
    a, b = pair
    callee = Callee(b)
    net.drop = lambda m, d: isinstance(m, Request) and m.method == "ACK"
    dialog, _ = await place_call(a, net)
    for _ in range(200):
        if callee.acks:
            break
        await asyncio.sleep(0.01)
    assert callee.acks == [None]
    oks = net.sent(lambda m: isinstance(m, Response) and m.status == 200)
    assert 14 <= len(oks) <= 19  # 1 + resends at T1, 3T1, 7T1, then every T2 until 64*T1
    await a.request_in_dialog(dialog, "BYE")
    a.forget_dialog(dialog)
    await settled(a, b)


async def test_extra_fork_2xx_is_acked_and_byed(pair: tuple[UserAgent, UserAgent],
                                                net: FakeNet) -> None:
    a, b = pair
    callee = Callee(b)
    dialog, _ = await place_call(a, net)
    ok = net.sent(lambda m: isinstance(m, Response) and m.status == 200)[0]
    fork = make_response(Request("INVITE", "sip:x", [
        (n, v) for n, v in ok.headers if n in ("Via", "From", "Call-ID", "CSeq")
    ] + [("To", "<sip:bob@10.0.0.2>")]), 200, to_tag="forked")
    fork.add("Contact", "<sip:bob@10.0.0.2:5060>")
    a.receive(parse_message(fork.to_bytes()), B)
    await asyncio.sleep(3 * T1)
    byes = net.sent(lambda m: isinstance(m, Request) and m.method == "BYE")
    assert [m.to.tag for m in byes] == ["forked"]
    acks = net.sent(lambda m: isinstance(m, Request) and m.method == "ACK")
    assert "forked" in [m.to.tag for m in acks]
    assert len(a.dialogs) == 1
    await a.request_in_dialog(dialog, "BYE")
    a.forget_dialog(dialog)
    assert callee.requests[0].request.method == "INVITE"
    await settled(a, b)


async def test_tcp_dest_uses_reliable_transactions(pair: tuple[UserAgent, UserAgent],
                                                   net: FakeNet) -> None:
    a, b = pair
    Callee(b)
    resp = await a.request(out_of_dialog(a, "OPTIONS"), Peer(B.host, B.port, "tcp"))
    assert resp.status == 200
    sent = net.sent(lambda m: isinstance(m, Request) and m.method == "OPTIONS")[0]
    assert sent.top_via.transport == "TCP"
    # reliable: Timer K = 0 on A, Timer J = 0 on B
    assert len(a.transactions) == 0 and len(b.transactions) == 0
    await settled(a, b)


async def test_stop_cancels_handler_tasks_and_unblocks_waiters(net: FakeNet) -> None:
    a = make_ua(net, A.host)
    b = make_ua(net, B.host)
    await a.start()
    await b.start()
    started = asyncio.Event()

    async def forever(sr: ServerRequest) -> None:
        started.set()
        await asyncio.sleep(3600)

    b.on_request = forever
    ci = a.invite(new_invite(a), B)
    await asyncio.wait_for(started.wait(), 2)
    assert b.pending_tasks == 1
    await b.stop()
    assert b.pending_tasks == 0
    await a.stop()
    assert (await asyncio.wait_for(ci.final(), 1)).status == 503


async def test_late_2xx_after_timer_m_is_reacked_from_the_dialog(
        pair: tuple[UserAgent, UserAgent], net: FakeNet) -> None:
    a, b = pair
    Callee(b)
    dialog, _ = await place_call(a, net)
    await asyncio.sleep(80 * T1)  # Timer M ended the client transaction
    assert len(a.transactions) == 0
    ok = net.sent(lambda m: isinstance(m, Response) and m.status == 200)[0]
    before = len(net.sent(lambda m: isinstance(m, Request) and m.method == "ACK"))
    a.receive(parse_message(ok.to_bytes()), B)
    acks = net.sent(lambda m: isinstance(m, Request) and m.method == "ACK")
    assert len(acks) == before + 1 and acks[-1].to_bytes() == acks[0].to_bytes()
    await a.request_in_dialog(dialog, "BYE")
    a.forget_dialog(dialog)
    a.receive(parse_message(ok.to_bytes()), B)  # dialog gone: dropped, no ACK
    assert len(net.sent(lambda m: isinstance(m, Request) and m.method == "ACK")) == before + 1
    await settled(a, b)


async def test_an_answered_invite_lingers_without_its_answers(
        pair: tuple[UserAgent, UserAgent], net: FakeNet) -> None:
    """After its 2xx an INVITE's transaction lingers 32 s (Timer M) for retransmissions.
    What the UA keeps meanwhile is what a late fork's 2xx needs of its request, not the
    180 and 200 it received: at hundreds of calls a second, ended calls' answers were most
    of ippbx's memory."""
    a, b = pair
    callee = Callee(b)
    dialog, ringing = await place_call(a, net)
    call_id = dialog.call_id
    del ringing
    assert (await a.request_in_dialog(dialog, "BYE")).status == 200
    a.forget_dialog(dialog)
    del dialog
    assert len(a.transactions) > 0  # the INVITE still lingers (Timer M)
    logged = {id(m) for _, _, m in net.log}  # (the network's parsed copies, and b's)
    logged |= {id(sr.request) for sr in callee.requests}
    gc.collect()
    received = [o for o in gc.get_objects() if isinstance(o, Response)
                and id(o) not in logged and o.call_id == call_id and o.cseq[1] == "INVITE"]
    assert received == []
    # nor the INVITE as sent (its SDP, its other headers): what a late fork's dialog needs
    sent = [o for o in gc.get_objects() if isinstance(o, Request) and id(o) not in logged
            and o.call_id == call_id and o.method == "INVITE"]
    assert [(o.body, sorted(name for name, _ in o.headers)) for o in sent] == \
        [(b"", ["CSeq", "Call-ID", "Contact", "From"])]
    await settled(a, b)


async def test_bad_to_header_gets_400_not_a_leak(pair: tuple[UserAgent, UserAgent],
                                                 net: FakeNet) -> None:
    a, b = pair
    callee = Callee(b)
    bad = out_of_dialog(a, "OPTIONS")
    bad.set("To", "no uri here")
    bad.set("Via", a.via())
    b.receive(bad, A)
    assert [m.status for m in net.sent(lambda m: isinstance(m, Response))] == [400]
    assert callee.requests == []
    await settled(a, b)


async def test_server_request_rules(pair: tuple[UserAgent, UserAgent]) -> None:
    a, b = pair
    seen: list[ServerRequest] = []

    async def handler(sr: ServerRequest) -> None:
        seen.append(sr)
        first = sr.respond(200, headers=[("X-Test", "1")])
        assert first.to.tag == sr.to_tag and first.get("X-Test") == "1"
        assert first.get("Server") == "ippbx"
        with pytest.raises(TransactionError):
            sr.respond(404)
        assert await sr.acked() is None  # not an INVITE
        assert not sr.cancelled.is_set() and sr.final_sent

    b.on_request = handler
    resp = await a.request(out_of_dialog(a, "OPTIONS"), B)
    assert resp.status == 200 and resp.to.tag and seen
    await settled(a, b)


async def test_rejected_invite_acked_returns_none(pair: tuple[UserAgent, UserAgent]) -> None:
    a, b = pair
    results: list[Request | None] = []

    async def busy(sr: ServerRequest) -> None:
        waiter = asyncio.ensure_future(sr.acked())
        await asyncio.sleep(0)
        sr.respond(486)
        results.append(await waiter)

    b.on_request = busy
    resp = await a.request(new_invite(a), B)
    assert resp.status == 486 and len(a.dialogs) == 0
    await asyncio.sleep(2 * T1)
    assert results == [None]
    await settled(a, b)


async def test_transport_exception_gives_503(pair: tuple[UserAgent, UserAgent],
                                             net: FakeNet) -> None:
    a, _ = pair

    def explode(m: Msg, dest: Peer) -> bool:
        raise OSError("network is down")

    net.drop = explode
    resp = await asyncio.wait_for(a.request(out_of_dialog(a, "OPTIONS"), B), 2)
    assert resp.status == 503
    net.drop = None
    await settled(a)


# -- what the UA refuses before its handler sees it (sip/checks.py) --------------------------


def raw_request(method: str, *, uri: str = "sip:bob@10.0.0.2", from_: str =
                "<sip:alice@10.0.0.1>;tag=f1", extra: str = "", n: int = 0) -> bytes:
    return (f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKraw{n}\r\n"
            f"From: {from_}\r\nTo: <sip:bob@10.0.0.2>\r\nCall-ID: raw-{n}\r\n"
            f"CSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n").encode()


@pytest.fixture
async def lone_b(net: FakeNet) -> AsyncIterator[UserAgent]:
    b = make_ua(net, B.host)

    def answer(sr: ServerRequest) -> None:
        sr.respond(200)

    b.on_request = answer
    await b.start()
    yield b
    await b.stop()


async def test_malformed_ack_is_dropped_with_one_line(
    lone_b: UserAgent, net: FakeNet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    transport = net.endpoints[(B.host, 5060)]
    for n in range(1000):
        transport.deliver(raw_request("ACK", from_="<sip:alice@10.0.0.1", n=n), A)
    await asyncio.sleep(0)
    assert net.log == []  # an ACK is never answered
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert 1 <= len(warnings) <= 10 and all(r.exc_info is None for r in caplog.records)
    assert lone_b.rejects.suppressed("malformed ACK") == 1000 - len(warnings)


async def test_malformed_request_gets_a_stateless_400(lone_b: UserAgent, net: FakeNet) -> None:
    transport = net.endpoints[(B.host, 5060)]
    transport.deliver(raw_request("INVITE", from_="<sip:alice@10.0.0.1"), A)
    await asyncio.sleep(0)
    [(_, dest, response)] = net.log
    assert isinstance(response, Response) and response.status == 400
    assert dest == A and response.call_id == "raw-0" and response.to.tag
    assert lone_b.counts()["transactions"] == 0  # nothing to hang a transaction on


@pytest.mark.parametrize(("data", "status", "header"), [
    (raw_request("OPTIONS", uri="unknownscheme:bob"), 416, None),
    (raw_request("OPTIONS", extra="Require: foo, bar\r\n"), 420, "foo, bar"),
    (raw_request("INVITE", extra="Require: 100rel\r\n"), 420, "100rel"),
])
async def test_refused_before_the_handler(lone_b: UserAgent, net: FakeNet, data: bytes,
                                          status: int, header: str | None) -> None:
    transport = net.endpoints[(B.host, 5060)]
    transport.deliver(data, A)
    await asyncio.sleep(0.3)  # past the 100 Trying delay: the final only
    [(_, dest, response)] = net.log
    assert isinstance(response, Response) and response.status == status and dest == A
    assert response.get("Unsupported") == header


# -- reliable provisional responses (RFC 3262) and early dialogs ------------------------------

class ReliableCallee:
    """B's handler: two reliable 1xx (the second waits for the first's PRACK), then 200."""

    def __init__(self, ua: UserAgent, answer: bool = True) -> None:
        self.ua = ua
        self.answer = answer
        self.pracks: list[Request] = []
        self.invite: ServerRequest | None = None
        self.in_early: list[ServerRequest] = []
        ua.on_request = self

    async def __call__(self, sr: ServerRequest) -> None:
        method = sr.request.method
        if method == "INVITE" and sr.dialog is None:
            self.invite = sr
            sr.on_prack = self.pracks.append
            sr.respond(180, reliable=True)
            sr.respond(183, reliable=True, body=b"v=0 early",
                       headers=[("Content-Type", "application/sdp")])
            if not self.answer:
                await until(lambda: sr.final_sent or sr.was_cancelled,
                            "a CANCEL or our final answer")
                if not sr.final_sent:
                    sr.respond(487)
                return
            await until(lambda: len(self.pracks) >= 2, "both PRACKs")
            sr.respond(200, body=b"v=0 answer", headers=[("Content-Type", "application/sdp")])
            await sr.acked()
        elif sr.dialog is not None and sr.dialog.state == "early":
            self.in_early.append(sr)
            sr.respond(200)
            if method == "BYE" and self.invite is not None:
                self.invite.respond(487)
        else:
            sr.respond(200)
            if method == "BYE":
                assert sr.dialog is not None
                self.ua.forget_dialog(sr.dialog)


def responses(net: FakeNet, status: int) -> list[Response]:
    return net.sent(lambda m: isinstance(m, Response) and m.status == status)


async def test_reliable_provisionals_are_pracked_one_at_a_time(
        pair: tuple[UserAgent, UserAgent], net: FakeNet) -> None:
    a, b = pair
    callee = ReliableCallee(b)
    seen: list[Response] = []
    dropped: list[Msg] = []

    def drop_first_prack(m: Msg, dest: Peer) -> bool:
        if isinstance(m, Request) and m.method == "PRACK" and not dropped:
            dropped.append(m)
            return True
        return False

    net.drop = drop_first_prack
    invite = new_invite(a)
    invite.add("Supported", "100rel")
    ci = a.invite(invite, B, on_provisional=lambda r: (seen.append(r), ci.prack(r)))
    final = await asyncio.wait_for(ci.final(), 2)
    assert final.status == 200 and ci.dialog is not None
    a.ack(ci.dialog)
    # each reliable 1xx reached the TU once, though the 180 was resent until its PRACK
    assert [r.status for r in seen] == [180, 183]
    ringing = responses(net, 180)
    assert len(ringing) >= 2 and all(r.get("Require") == "100rel" for r in ringing)
    first = int(ringing[0].get("RSeq") or 0)
    assert first > 0 and {r.get("RSeq") for r in ringing} == {str(first)}
    # the 183 went out only once the 180 was acknowledged, with the next RSeq
    sessions = responses(net, 183)
    assert sessions and sessions[0].get("RSeq") == str(first + 1)
    assert [p.get("RAck") for p in callee.pracks] == [f"{first} 1 INVITE",
                                                      f"{first + 1} 1 INVITE"]
    # the PRACKs were in the early dialog; the confirmed dialog goes on counting from them
    assert [p.cseq[0] for p in callee.pracks] == [2, 3]
    assert (await a.request_in_dialog(ci.dialog, "BYE")).status == 200
    a.forget_dialog(ci.dialog)
    await settled(a, b)


async def test_a_prack_that_names_nothing_gets_481(
        pair: tuple[UserAgent, UserAgent], net: FakeNet) -> None:
    a, b = pair
    ReliableCallee(b, answer=False)
    provisional: list[Response] = []
    ci = a.invite(new_invite(a), B, on_provisional=provisional.append)
    await until(lambda: provisional, "the reliable 180")
    assert ci.early is not None
    early = next(iter(ci.early.values()))
    rseq = int(provisional[0].get("RSeq") or 0)
    wrong = early.create_request("PRACK", headers=[("RAck", f"{rseq + 5} 1 INVITE")])
    assert (await a.request(wrong, B)).status == 481
    ci.cancel()
    assert (await asyncio.wait_for(ci.final(), 2)).status == 487


async def test_no_prack_rejects_the_invite_and_tells_the_tu(
        pair: tuple[UserAgent, UserAgent], net: FakeNet) -> None:
    a, b = pair
    callee = ReliableCallee(b, answer=False)
    ci = a.invite(new_invite(a), B)  # never PRACKs
    final = await asyncio.wait_for(ci.final(), 2)
    assert final.status == 504
    assert callee.invite is not None and callee.invite.was_cancelled
    # resent at T1, 2T1, 4T1… until 64*T1, then given up
    assert 6 <= len(responses(net, 180)) <= 8
    await settled(a, b)


async def test_bye_in_the_early_dialog_reaches_the_tu(
        pair: tuple[UserAgent, UserAgent], net: FakeNet) -> None:
    a, b = pair
    callee = ReliableCallee(b, answer=False)
    provisional: list[Response] = []
    ci = a.invite(new_invite(a), B, on_provisional=lambda r: (provisional.append(r),
                                                               ci.prack(r)))
    await until(lambda: len(callee.pracks) >= 2, "both PRACKs")
    assert ci.early is not None and len(b.dialogs) == 1
    early = next(iter(ci.early.values()))
    assert (await a.request_in_dialog(early, "BYE")).status == 200
    assert [sr.request.method for sr in callee.in_early] == ["BYE"]
    assert (await asyncio.wait_for(ci.final(), 2)).status == 487
    assert ci.early is None and len(a.dialogs) == 0 and len(b.dialogs) == 0
    await settled(a, b)
