"""RFC 3261 §17 transaction state machines, driven by hand with an injected clock."""

from __future__ import annotations

import gc

import pytest

from ippbx.sip.message import Message, Request, Response, make_response, parse_message
from ippbx.sip.transaction import (
    AckReceived,
    Cancelled,
    Event,
    RequestReceived,
    ResponseReceived,
    Send,
    StrayResponse,
    Terminated,
    Timeout,
    TransactionError,
    TransactionLayer,
    TransportError,
    TxKey,
    make_ack,
    make_cancel,
)

DEST = ("10.0.0.2", 5060)
SRC = ("10.0.0.9", 5060)


def request(method: str = "INVITE", branch: str = "z9hG4bKabc", cseq: int = 1,
            to_tag: str | None = None, via_host: str = "10.0.0.9") -> Request:
    to = "<sip:bob@b.example>" + (f";tag={to_tag}" if to_tag else "")
    return Request(method, "sip:bob@b.example", [
        ("Via", f"SIP/2.0/UDP {via_host}:5060;branch={branch}"),
        ("Max-Forwards", "70"),
        ("From", "<sip:alice@a.example>;tag=ftag"),
        ("To", to),
        ("Call-ID", "call-1@a"),
        ("CSeq", f"{cseq} {method}"),
        ("Route", "<sip:proxy.example;lr>"),
    ])


def response(req: Request, status: int, tag: str | None = "ttag") -> Response:
    return make_response(req, status, to_tag=tag)


def of(events: list[Event], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def sends(events: list[Event]) -> list[bytes]:
    """What `events` put on the wire, as bytes."""
    return [e.message.to_bytes() for e in events if isinstance(e, Send)]


def wire(*messages: Request | Response) -> list[bytes]:
    return [m.to_bytes() for m in messages]


def sent(events: list[Event]) -> list[Request | Response]:
    """What `events` put on the wire, parsed back."""
    return [parse_message(data) for data in sends(events)]


def run_until(layer: TransactionLayer, end: float) -> list[tuple[float, Event]]:
    """Tick at every deadline up to `end`; return (time, event) pairs."""
    log: list[tuple[float, Event]] = []
    while (deadline := layer.next_deadline()) is not None and deadline <= end:
        log.extend((deadline, e) for e in layer.tick(deadline))
    return log


# -- client INVITE ----------------------------------------------------------------------

def test_client_invite_timer_a_doubles_and_timer_b_times_out() -> None:
    layer = TransactionLayer()
    req = request()
    key, out = layer.send_request(req, DEST, 0.0)
    assert sends(out) == wire(req) and of(out, Send)[0].dest == DEST
    assert layer.state(key) == "Calling"
    log = run_until(layer, 100.0)
    resend_times = [t for t, e in log if isinstance(e, Send)]
    # A: 0.5, 1, 2, 4, 8, 16 (no T2 cap for INVITE) → sent at .5, 1.5, 3.5, 7.5, 15.5, 31.5
    assert resend_times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    timeouts = [(t, e) for t, e in log if isinstance(e, Timeout)]
    assert timeouts == [(32.0, Timeout(key))]
    assert (32.0, Terminated(key)) in log
    assert len(layer) == 0 and layer.next_deadline() is None


def test_client_invite_provisional_stops_retransmission_and_timer_b() -> None:
    layer = TransactionLayer()
    req = request()
    key, _ = layer.send_request(req, DEST, 0.0)
    out = layer.receive(response(req, 180), DEST, False, 0.2)
    assert out == [ResponseReceived(key, out[0].response)]
    assert layer.state(key) == "Proceeding"
    assert run_until(layer, 180.0) == []  # no A, no B in Proceeding (only Timer C)
    assert layer.state(key) == "Proceeding"


def test_client_invite_timer_c_ends_a_callee_that_rings_forever() -> None:
    """RFC 3261 §16.6.11: > 3 min after the last provisional with no final, a Timeout."""
    layer = TransactionLayer()
    req = request()
    key, _ = layer.send_request(req, DEST, 0.0)
    layer.receive(response(req, 180), DEST, False, 1.0)
    layer.receive(response(req, 183), DEST, False, 100.0)  # each provisional resets it
    assert run_until(layer, 100.0 + 180.0) == []
    log = run_until(layer, 400.0)
    assert [(t, e) for t, e in log if isinstance(e, Timeout)] == [(100.0 + 181.0, Timeout(key))]
    assert layer.state(key) is None and layer.next_deadline() is None


def test_client_invite_cancelled_without_487_ends_after_64_t1() -> None:
    """A callee that ignores our CANCEL (no 487, no final at all) cannot hold the
    transaction: 64*T1 after the CANCEL it times out, provisionals notwithstanding."""
    layer = TransactionLayer()
    req = request()
    key, _ = layer.send_request(req, DEST, 0.0)
    layer.receive(response(req, 180), DEST, False, 1.0)
    assert layer.cancelling(key, 10.0) == []
    layer.receive(response(req, 180), DEST, False, 20.0)  # does not reset it
    layer.cancelling(key, 25.0)  # asking twice changes nothing
    log = run_until(layer, 100.0)
    assert [(t, e) for t, e in log if isinstance(e, Timeout)] == [(42.0, Timeout(key))]
    assert layer.state(key) is None

    # a 487 in time ends it the usual way, and Timer C is not left behind
    req2 = request(branch="z9hG4bKdef")
    key2, _ = layer.send_request(req2, DEST, 200.0)
    layer.receive(response(req2, 180), DEST, False, 201.0)
    layer.cancelling(key2, 202.0)
    out = layer.receive(response(req2, 487), DEST, False, 203.0)
    assert [type(e) for e in out] == [ResponseReceived, Send]  # up to the TU, our ACK
    log = run_until(layer, 1000.0)
    assert of([e for _, e in log], Timeout) == [] and layer.state(key2) is None

    # CANCEL before any provisional (the TU does not send it then): Timer B still rules
    req3 = request(branch="z9hG4bKghi")
    key3, _ = layer.send_request(req3, DEST, 2000.0)
    layer.cancelling(key3, 2001.0)
    log = run_until(layer, 3000.0)
    assert [(t, e) for t, e in log if isinstance(e, Timeout)] == [(2032.0, Timeout(key3))]


def test_client_invite_non2xx_is_acked_and_timer_d() -> None:
    layer = TransactionLayer()
    req = request()
    key, _ = layer.send_request(req, DEST, 0.0)
    layer.receive(response(req, 180), DEST, False, 0.1)
    busy = response(req, 486)
    out = layer.receive(busy, DEST, False, 1.0)
    assert of(out, ResponseReceived) == [ResponseReceived(key, busy)]
    (ack,) = sent(out)
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert ack.uri == req.uri and ack.top_via.branch == "z9hG4bKabc"
    assert ack.to.tag == "ttag" and ack.cseq == (1, "ACK")
    assert ack.get_all("Route") == ["<sip:proxy.example;lr>"]
    assert layer.state(key) == "Completed"
    # a retransmitted 486 is absorbed and re-ACKed with the same ACK
    out = layer.receive(parse_message(busy.to_bytes()), DEST, False, 2.0)
    assert sends(out) == wire(ack) and not of(out, ResponseReceived)
    # Timer D: 32 s on UDP
    assert run_until(layer, 32.9) == []
    log = run_until(layer, 33.0)
    assert log == [(33.0, Terminated(key))]
    assert len(layer) == 0


def test_client_invite_non2xx_reliable_terminates_at_once() -> None:
    layer = TransactionLayer()
    req = request()
    key, out = layer.send_request(req, DEST, 0.0, reliable=True)
    out = layer.receive(response(req, 404), DEST, True, 1.0)
    assert [type(e) for e in out] == [ResponseReceived, Send, Terminated]
    assert len(layer) == 0


def test_client_invite_reliable_has_no_timer_a_but_timer_b() -> None:
    layer = TransactionLayer()
    key, _ = layer.send_request(request(), DEST, 0.0, reliable=True)
    log = run_until(layer, 100.0)
    assert [e for _, e in log] == [Timeout(key), Terminated(key)]
    assert log[0][0] == 32.0


def test_client_invite_2xx_accepted_passes_retransmissions_then_timer_m() -> None:
    layer = TransactionLayer()
    req = request()
    key, _ = layer.send_request(req, DEST, 0.0)
    ok = response(req, 200)
    out = layer.receive(ok, DEST, False, 0.3)
    assert out == [ResponseReceived(key, ok)]  # no ACK from the transaction for a 2xx
    assert layer.state(key) == "Accepted"
    out = layer.receive(ok, DEST, False, 0.8)  # retransmission still reaches the TU
    assert out == [ResponseReceived(key, ok)]
    fork = response(req, 200, tag="other")
    assert layer.receive(fork, DEST, False, 0.9) == [ResponseReceived(key, fork)]
    assert layer.receive(response(req, 180), DEST, False, 1.0) == []
    assert layer.receive(response(req, 500), DEST, False, 1.0) == []
    log = run_until(layer, 100.0)
    assert log == [(0.3 + 32.0, Terminated(key))]
    # after Timer M a 2xx is stray (the UA may still re-ACK it from its dialog)
    out = layer.receive(ok, DEST, False, 40.0)
    assert out == [StrayResponse(ok, DEST)]


def test_client_invite_transport_error() -> None:
    layer = TransactionLayer()
    key, _ = layer.send_request(request(), DEST, 0.0)
    assert layer.transport_error(key, 0.1) == [TransportError(key), Terminated(key)]
    assert len(layer) == 0
    assert layer.transport_error(key, 0.2) == []


# -- client non-INVITE ------------------------------------------------------------------

def test_client_non_invite_timer_e_capped_at_t2_and_timer_f() -> None:
    layer = TransactionLayer()
    key, _ = layer.send_request(request("OPTIONS"), DEST, 0.0)
    log = run_until(layer, 100.0)
    times = [t for t, e in log if isinstance(e, Send)]
    intervals = [round(b - a, 6) for a, b in zip([0.0, *times], times, strict=False)]
    assert intervals == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert [(t, e) for t, e in log if not isinstance(e, Send)] == [
        (32.0, Timeout(key)), (32.0, Terminated(key))
    ]


def test_client_non_invite_proceeding_retransmits_at_t2() -> None:
    layer = TransactionLayer()
    req = request("BYE")
    key, _ = layer.send_request(req, DEST, 0.0)
    log = run_until(layer, 0.5)  # first E at 0.5 → next due 1.5
    assert len(log) == 1
    layer.receive(response(req, 100, None), DEST, False, 0.6)
    assert layer.state(key) == "Proceeding"
    log = run_until(layer, 20.0)
    times = [t for t, e in log if isinstance(e, Send)]
    assert times == [1.5, 5.5, 9.5, 13.5, 17.5]  # after firing in Proceeding: T2


def test_client_non_invite_final_then_timer_k() -> None:
    layer = TransactionLayer()
    req = request("BYE")
    key, _ = layer.send_request(req, DEST, 0.0)
    ok = response(req, 200)
    assert layer.receive(ok, DEST, False, 0.1) == [ResponseReceived(key, ok)]
    assert layer.receive(ok, DEST, False, 0.2) == []  # absorbed in Completed
    log = run_until(layer, 100.0)
    assert log == [(0.1 + 5.0, Terminated(key))]  # K = T4


def test_client_non_invite_reliable_final_terminates_at_once() -> None:
    layer = TransactionLayer()
    req = request("BYE")
    key, _ = layer.send_request(req, DEST, 0.0, reliable=True)
    assert layer.next_deadline() == 32.0  # only F
    out = layer.receive(response(req, 481), DEST, True, 0.1)
    assert [type(e) for e in out] == [ResponseReceived, Terminated]


def test_client_rejects_ack_and_duplicates() -> None:
    layer = TransactionLayer()
    with pytest.raises(TransactionError):
        layer.send_request(request("ACK"), DEST, 0.0)
    layer.send_request(request("OPTIONS"), DEST, 0.0)
    with pytest.raises(TransactionError):
        layer.send_request(request("OPTIONS"), DEST, 0.0)


def test_response_matching_uses_branch_and_method() -> None:
    layer = TransactionLayer()
    inv = request()
    ikey, _ = layer.send_request(inv, DEST, 0.0)
    cancel = make_cancel(inv)
    ckey, out = layer.send_request(cancel, DEST, 0.1)
    assert ikey != ckey and len(layer) == 2
    assert cancel.top_via.branch == "z9hG4bKabc" and cancel.cseq == (1, "CANCEL")
    assert cancel.get("To") == inv.get("To") and cancel.get_all("Route") == inv.get_all("Route")
    out = layer.receive(response(cancel, 200), DEST, False, 0.2)
    assert [type(e) for e in out] == [ResponseReceived] and out[0].key == ckey
    out = layer.receive(response(inv, 487), DEST, False, 0.3)
    assert of(out, ResponseReceived)[0].key == ikey
    other = response(request(branch="z9hG4bKzzz"), 200)
    assert layer.receive(other, DEST, False, 0.4) == [StrayResponse(other, DEST)]


# -- server INVITE ----------------------------------------------------------------------

def new_server(layer: TransactionLayer, req: Request, reliable: bool = False,
               now: float = 0.0) -> tuple[TxKey, list[Event]]:
    out = layer.receive(req, SRC, reliable, now)
    (received,) = of(out, RequestReceived)
    assert received.request is req and received.source == SRC
    return received.key, out


def test_server_invite_sends_100_after_200_ms_and_absorbs_retransmissions() -> None:
    layer = TransactionLayer()
    req = request()
    key, out = new_server(layer, req)
    assert sends(out) == []  # the TU may answer at once (RFC 3261 §17.2.1)
    assert layer.receive(parse_message(req.to_bytes()), SRC, False, 0.1) == []
    assert layer.next_deadline() == 0.2
    (trying,) = sent(layer.tick(0.2))
    assert isinstance(trying, Response) and trying.status == 100
    # retransmitted INVITE: the last provisional again, no new RequestReceived
    out = layer.receive(parse_message(req.to_bytes()), SRC, False, 0.5)
    assert sends(out) == wire(trying) and of(out, Send)[0].dest == SRC
    ringing = response(req, 180)
    assert sends(layer.respond(key, ringing, 1.0)) == wire(ringing)
    assert sends(layer.receive(req, SRC, False, 1.5)) == wire(ringing)


def test_server_invite_answered_within_200_ms_gets_no_100() -> None:
    layer = TransactionLayer()
    req = request()
    key, _ = new_server(layer, req)
    challenge = response(req, 407)
    assert sends(layer.respond(key, challenge, 0.01)) == wire(challenge)
    # never a provisional after the final (the 100 timer is stopped)
    assert all(not isinstance(e, Send) for _, e in run_until(layer, 100.0))
    ringing = response(req, 180)
    key2, _ = new_server(layer, request(branch="z9hG4bKother"), now=200.0)
    assert sends(layer.respond(key2, ringing, 200.1)) == wire(ringing)
    assert sends(layer.tick(200.3)) == []  # a provisional went out: no 100 either


def test_server_invite_tu_100_after_auto_100_is_not_sent_twice() -> None:
    layer = TransactionLayer()
    req = request()
    key, _ = new_server(layer, req)
    assert len(sends(layer.tick(0.2))) == 1
    assert layer.respond(key, response(req, 100, None), 0.3) == []


def test_server_invite_without_auto_trying() -> None:
    layer = TransactionLayer(auto_trying=False)
    req = request()
    key, out = new_server(layer, req)
    assert sends(out) == []
    assert sends(layer.tick(0.2)) == []
    assert layer.receive(req, SRC, False, 0.3) == []  # nothing to resend yet


def test_server_invite_final_before_any_provisional_is_not_retransmitted() -> None:
    """No Timer G while the client still retransmits its INVITE (it heard nothing):
    one final per INVITE received, none to a source that never sends again."""
    layer = TransactionLayer()
    req = request()
    key, _ = new_server(layer, req)
    challenge = response(req, 407)
    assert sends(layer.respond(key, challenge, 0.05)) == wire(challenge)
    assert layer.state(key) == "Completed"
    assert layer.next_deadline() == 0.05 + 32.0  # H only
    for when in (0.5, 1.5, 3.5):  # the client's Timer A: each retransmission, one answer
        assert sends(layer.receive(parse_message(req.to_bytes()), SRC, False, when)) == wire(
            challenge)
    log = run_until(layer, 100.0)
    assert log == [(32.05, Timeout(key)), (32.05, Terminated(key))]


def test_server_invite_non2xx_timer_g_capped_and_timer_h() -> None:
    layer = TransactionLayer()
    req = request()
    key, _ = new_server(layer, req)
    ringing = response(req, 180)
    layer.respond(key, ringing, 0.0)  # a provisional: the client stops retransmitting
    busy = response(req, 486)
    out = layer.respond(key, busy, 0.0)
    assert sends(out) == wire(busy)
    assert layer.state(key) == "Completed"
    log = run_until(layer, 100.0)
    times = [t for t, e in log if isinstance(e, Send)]
    intervals = [round(b - a, 6) for a, b in zip([0.0, *times], times, strict=False)]
    assert intervals[:5] == [0.5, 1.0, 2.0, 4.0, 4.0] and set(intervals[3:]) == {4.0}
    assert all(e.message.to_bytes() == busy.to_bytes() for _, e in log if isinstance(e, Send))
    assert [(t, e) for t, e in log if not isinstance(e, Send)] == [
        (32.0, Timeout(key)), (32.0, Terminated(key))
    ]


def test_server_invite_ack_for_non2xx_is_absorbed_then_timer_i() -> None:
    layer = TransactionLayer()
    req = request()
    key, _ = new_server(layer, req)
    busy = response(req, 486)
    layer.respond(key, busy, 0.0)
    # retransmitted INVITE in Completed → the final response again
    assert sends(layer.receive(req, SRC, False, 0.1)) == wire(busy)
    ack = make_ack(req, busy)
    assert layer.receive(ack, SRC, False, 0.2) == []  # absorbed
    assert layer.state(key) == "Confirmed"
    assert layer.receive(ack, SRC, False, 0.3) == []
    assert layer.receive(req, SRC, False, 0.3) == []
    log = run_until(layer, 100.0)
    assert log == [(0.2 + 5.0, Terminated(key))]  # I = T4, no more G


def test_server_invite_reliable_confirmed_terminates_at_once_no_timer_g() -> None:
    layer = TransactionLayer()
    req = request()
    key, _ = new_server(layer, req, reliable=True)
    busy = response(req, 486)
    layer.respond(key, busy, 0.0)
    assert layer.next_deadline() == 32.0  # H only
    out = layer.receive(make_ack(req, busy), SRC, True, 1.0)
    assert out == [Terminated(key)]


def test_server_invite_2xx_accepted_ack_to_tu_then_timer_l() -> None:
    layer = TransactionLayer()
    req = request()
    key, _ = new_server(layer, req)
    ok = response(req, 200)
    assert sends(layer.respond(key, ok, 1.0)) == wire(ok)
    assert layer.state(key) == "Accepted"
    assert layer.receive(req, SRC, False, 1.2) == []  # retransmitted INVITE absorbed
    assert sends(layer.respond(key, ok, 1.5)) == wire(ok)  # a TU 2xx retransmission goes out
    ack = request("ACK", branch="z9hG4bKnew", to_tag="ttag")
    assert layer.receive(ack, SRC, False, 2.0) == [AckReceived(ack, SRC)]  # new branch
    # an RFC 2543-style ACK with the INVITE's branch reaches the TU through the transaction
    same = make_ack(req, ok)
    assert layer.receive(same, SRC, False, 2.0) == [AckReceived(same, SRC, key)]
    assert run_until(layer, 100.0) == [(33.0, Terminated(key))]


def test_server_illegal_tu_event_raises_naming_state() -> None:
    layer = TransactionLayer()
    req = request()
    key, _ = new_server(layer, req)
    layer.respond(key, response(req, 486), 0.0)
    with pytest.raises(TransactionError, match="Completed"):
        layer.respond(key, response(req, 200), 0.1)
    with pytest.raises(TransactionError, match="no server transaction"):
        layer.respond(TxKey(False, "z9hG4bKnone", "x", "INVITE"), response(req, 200), 0.1)


def test_server_invite_transport_error() -> None:
    layer = TransactionLayer()
    key, _ = new_server(layer, request())
    assert layer.transport_error(key, 0.1) == [TransportError(key), Terminated(key)]


# -- what a finished transaction keeps -------------------------------------------------

def reachable_messages(root: object) -> list[Message]:
    """Every parsed or built SIP message reachable from `root` through its data: plain
    containers and ippbx's objects (not classes, modules or functions, through which
    anything alive in the process would be)."""
    seen: set[int] = set()
    found: list[Message] = []
    todo = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, Message):
            found.append(obj)
        if isinstance(obj, dict | list | tuple | set | frozenset) \
                or type(obj).__module__.startswith("ippbx."):
            todo.extend(gc.get_referents(obj))
    return found


def test_finished_transactions_keep_bytes_not_messages() -> None:
    """A busy PBX has thousands of finished transactions lingering up to 32 s (Timers
    D, H, J): they keep what they may send again as bytes, not parsed messages."""
    layer = TransactionLayer()
    bye = request("BYE", branch="z9hG4bKbye", cseq=2)
    key, _ = new_server(layer, bye)
    ok = response(bye, 200)
    layer.respond(key, ok, 0.0)
    invite = request(branch="z9hG4bKinv")
    ikey, _ = new_server(layer, invite)
    layer.respond(ikey, response(invite, 180), 0.0)
    busy = response(invite, 486)
    layer.respond(ikey, busy, 0.0)
    out_invite = request(branch="z9hG4bKout")
    ckey, _ = layer.send_request(out_invite, DEST, 0.0)
    rejected = response(out_invite, 503)
    (ack,) = sent(layer.receive(rejected, DEST, False, 0.1))
    assert [layer.state(k) for k in (key, ikey, ckey)] == ["Completed"] * 3
    assert reachable_messages(layer) == []
    # and what they send again is what went out (before Timer G's first resend, at T1)
    assert sends(layer.receive(parse_message(bye.to_bytes()), SRC, False, 0.2)) == wire(ok)
    assert sends(layer.receive(parse_message(invite.to_bytes()), SRC, False, 0.3)) == wire(busy)
    assert sends(layer.receive(parse_message(rejected.to_bytes()), DEST, False, 0.4)) == wire(
        ack)


# -- server non-INVITE ------------------------------------------------------------------

def test_server_non_invite_paths_and_timer_j() -> None:
    layer = TransactionLayer()
    req = request("OPTIONS")
    key, out = new_server(layer, req)
    assert sends(out) == []  # no automatic 100 for non-INVITE
    assert layer.receive(req, SRC, False, 0.1) == []  # Trying: absorbed
    trying = response(req, 100, None)
    assert sends(layer.respond(key, trying, 0.2)) == wire(trying)
    assert sends(layer.receive(req, SRC, False, 0.3)) == wire(trying)
    ok = response(req, 200)
    assert sends(layer.respond(key, ok, 1.0)) == wire(ok)
    assert sends(layer.receive(req, SRC, False, 2.0)) == wire(ok)
    with pytest.raises(TransactionError, match="Completed"):
        layer.respond(key, ok, 2.0)
    assert run_until(layer, 100.0) == [(33.0, Terminated(key))]  # J = 64*T1


def test_server_non_invite_reliable_terminates_at_once() -> None:
    layer = TransactionLayer()
    req = request("REGISTER")
    key, _ = new_server(layer, req, reliable=True)
    out = layer.respond(key, response(req, 200), 0.0)
    assert [type(e) for e in out] == [Send, Terminated]
    assert len(layer) == 0


def test_server_matching_includes_sent_by_and_method() -> None:
    layer = TransactionLayer()
    new_server(layer, request("OPTIONS"))
    new_server(layer, request("OPTIONS", via_host="10.0.0.10"))  # same branch, other host
    new_server(layer, request("INFO"))  # same branch, other method
    assert len(layer) == 3


def test_rfc2543_requests_match_without_branch() -> None:
    layer = TransactionLayer()
    old = request(branch="1234")
    old.set("Via", "SIP/2.0/UDP 10.0.0.9:5060")
    key, _ = new_server(layer, old)
    again = parse_message(old.to_bytes())
    out = layer.receive(again, SRC, False, 0.1)
    assert not of(out, RequestReceived)
    busy = response(old, 486)
    layer.respond(key, busy, 0.2)
    ack = make_ack(old, busy)
    assert layer.receive(ack, SRC, False, 0.3) == []
    assert layer.state(key) == "Confirmed"
    newer = request(branch="1234", cseq=2)
    newer.set("Via", "SIP/2.0/UDP 10.0.0.9:5060")
    assert of(layer.receive(newer, SRC, False, 0.4), RequestReceived)


# -- CANCEL -----------------------------------------------------------------------------

def test_cancel_matches_invite_answers_200_and_reports() -> None:
    layer = TransactionLayer()
    req = request()
    key, _ = new_server(layer, req)
    layer.respond(key, response(req, 180, "mytag"), 0.1)
    cancel = make_cancel(req)
    out = layer.receive(cancel, SRC, False, 0.5)
    (ok,) = sent(out)
    assert isinstance(ok, Response) and ok.status == 200 and ok.cseq == (1, "CANCEL")
    assert ok.to.tag == "mytag"
    assert of(out, Cancelled) == [Cancelled(key, cancel)]
    assert not of(out, RequestReceived)
    # a retransmitted CANCEL gets the same 200 and no second report
    again = layer.receive(cancel, SRC, False, 0.6)
    assert again == [Send(of(out, Send)[0].message, SRC, ok_key(out))]
    # the TU answers the INVITE 487; the ACK is absorbed
    terminated = response(req, 487, "mytag")
    layer.respond(key, terminated, 0.7)
    assert layer.receive(make_ack(req, terminated), SRC, False, 0.8) == []
    run_until(layer, 100.0)
    assert len(layer) == 0


def ok_key(out: list[Event]) -> TxKey | None:
    return of(out, Send)[0].key


def test_cancel_without_match_is_481() -> None:
    layer = TransactionLayer()
    cancel = make_cancel(request())
    out = layer.receive(cancel, SRC, False, 0.0)
    (resp,) = sent(out)
    assert resp.status == 481 and not of(out, Cancelled)


def test_cancel_after_final_is_200_without_report() -> None:
    layer = TransactionLayer()
    req = request()
    key, _ = new_server(layer, req)
    layer.respond(key, response(req, 200), 0.1)
    out = layer.receive(make_cancel(req), SRC, False, 0.2)
    assert sent(out)[0].status == 200 and not of(out, Cancelled)


# -- bookkeeping ------------------------------------------------------------------------

def test_many_transactions_heap_stays_small() -> None:
    layer = TransactionLayer()
    now = 0.0
    for i in range(20000):
        req = request("OPTIONS", branch=f"z9hG4bK{i}")
        key, _ = layer.send_request(req, DEST, now, reliable=True)
        layer.receive(response(req, 200), DEST, True, now)
        now += 0.001
    assert len(layer) == 0
    assert len(layer._heap) < 10000  # stopped timers were compacted away
    assert run_until(layer, 1000.0) == []
    assert layer.next_deadline() is None


def test_configurable_timers() -> None:
    layer = TransactionLayer(t1=0.01, t2=0.04, t4=0.05, timer_d=0.1)
    req = request()
    key, _ = layer.send_request(req, DEST, 0.0)
    log = run_until(layer, 1.0)
    assert [t for t, e in log if isinstance(e, Timeout)] == [pytest.approx(0.64)]
    key, _ = layer.send_request(request(branch="z9hG4bKb2"), DEST, 2.0)
    layer.receive(response(request(branch="z9hG4bKb2"), 500), DEST, False, 2.0)
    assert run_until(layer, 3.0) == [(pytest.approx(2.1), Terminated(key))]


def test_client_invite_proceeding_to_accepted() -> None:
    layer = TransactionLayer()
    req = request()
    key, _ = layer.send_request(req, DEST, 0.0)
    layer.receive(response(req, 183), DEST, False, 0.1)
    ok = response(req, 200)
    assert layer.receive(ok, DEST, False, 5.0) == [ResponseReceived(key, ok)]
    assert layer.state(key) == "Accepted"
    assert run_until(layer, 100.0) == [(37.0, Terminated(key))]


def test_client_non_invite_proceeding_to_completed_and_timer_f_in_proceeding() -> None:
    layer = TransactionLayer()
    req = request("INFO")
    key, _ = layer.send_request(req, DEST, 0.0)
    layer.receive(response(req, 180), DEST, False, 0.1)
    ok = response(req, 200)
    out = layer.receive(ok, DEST, False, 0.2)
    assert out == [ResponseReceived(key, ok)] and layer.state(key) == "Completed"
    assert run_until(layer, 100.0) == [(5.2, Terminated(key))]
    # Timer F also fires in Proceeding
    req2 = request("INFO", branch="z9hG4bKf")
    key2, _ = layer.send_request(req2, DEST, 0.0)
    layer.receive(response(req2, 180), DEST, False, 0.1)
    log = run_until(layer, 100.0)
    assert [(t, e) for t, e in log if not isinstance(e, Send)] == [
        (32.0, Timeout(key2)), (32.0, Terminated(key2))
    ]
