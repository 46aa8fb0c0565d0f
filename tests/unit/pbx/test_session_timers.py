"""RFC 4028 negotiation (pbx/session_timers.py): what we ask, what we agree, when."""

from __future__ import annotations

from ippbx.pbx.session_timers import (
    MIN_SE,
    SessionTimer,
    TooSmall,
    allows_update,
    answer_headers,
    from_request,
    from_response,
    offer_headers,
    retry_interval,
)
from ippbx.sip.message import Request, Response, make_response
from ippbx.sip.session import answer_timeout, expire_after, refresh_after


def invite(*headers: tuple[str, str]) -> Request:
    return Request("INVITE", "sip:5551234@pbx", [
        ("Via", "SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKst"),
        ("From", "<sip:1001@pbx>;tag=a"), ("To", "<sip:5551234@pbx>"),
        ("Call-ID", "st@10.0.0.9"), ("CSeq", "1 INVITE"), ("Max-Forwards", "70"),
        *headers,
    ])


def ok(*headers: tuple[str, str]) -> Response:
    return make_response(invite(), 200, to_tag="b", headers=headers)


def test_offer_asks_to_refresh_ourselves() -> None:
    assert offer_headers(1800) == [("Session-Expires", "1800;refresher=uac"),
                                   ("Min-SE", "90")]


def test_caller_without_session_timers_gets_ippbx_as_refresher() -> None:
    agreed = from_request(invite(), 1800)
    assert agreed == SessionTimer(1800, we_refresh=True, peer_supports=False)
    assert refresh_after(agreed.interval) == 900 and expire_after(agreed.interval) == 1800 - 32
    assert answer_headers(agreed) == [("Session-Expires", "1800;refresher=uas")]
    # a Session-Expires put in by a proxy, the caller not supporting it: we refresh
    agreed = from_request(invite(("Session-Expires", "600")), 1800)
    assert agreed == SessionTimer(600, we_refresh=True)
    # too small, and the caller could not understand a 422: raised to our minimum
    assert from_request(invite(("Session-Expires", "30")), 1800) == SessionTimer(90, True)


def test_caller_with_session_timers_chooses_the_refresher() -> None:
    caller = from_request(invite(("Supported", "100rel, timer"),
                                 ("Session-Expires", "600;refresher=uac")), 1800)
    assert caller == SessionTimer(600, we_refresh=False, peer_supports=True)
    assert answer_headers(caller) == [("Session-Expires", "600;refresher=uac"),
                                      ("Require", "timer")]
    # no refresher named: we take it (§9); a larger interval than ours: ours
    ours = from_request(invite(("Supported", "timer"), ("Session-Expires", "7200")), 1800)
    assert ours == SessionTimer(1800, we_refresh=True, peer_supports=True)
    assert answer_headers(ours) == [("Session-Expires", "1800;refresher=uas"),
                                    ("Require", "timer")]
    # the caller's Min-SE is a floor for what we agree
    assert from_request(invite(("Supported", "timer"), ("Min-SE", "3600")), 1800).interval \
        == 3600


def test_too_small_from_a_timer_capable_caller_gets_422() -> None:
    answer = from_request(invite(("Supported", "timer"), ("Session-Expires", "60")), 1800)
    assert answer == TooSmall(MIN_SE)
    assert answer.headers == [("Min-SE", "90")]


def test_malformed_session_expires_is_ignored_not_fatal() -> None:
    for value in ("soon", "-5", "0", "600;=x"):
        agreed = from_request(invite(("Session-Expires", value)), 1800)
        assert agreed == SessionTimer(1800, we_refresh=True), value


def test_callee_answer() -> None:
    assert from_response(ok(), 1800) == SessionTimer(1800, we_refresh=True)
    assert from_response(ok(("Session-Expires", "900;refresher=uas"), ("Require", "timer")),
                         1800) == SessionTimer(900, we_refresh=False, peer_supports=True)
    assert from_response(ok(("Session-Expires", "900;refresher=uac")), 1800) \
        == SessionTimer(900, we_refresh=True, peer_supports=True)


def test_422_retry_interval() -> None:
    too_small = make_response(invite(), 422, to_tag="b", headers=[("Min-SE", "3600")])
    assert retry_interval(too_small, 1800) == 3600
    assert retry_interval(too_small, 3600) is None  # asking the same again is useless
    assert retry_interval(ok(), 1800) is None


def test_allows_update() -> None:
    assert allows_update(ok(("Allow", "INVITE, ACK, BYE"), ("Allow", "update")))
    assert not allows_update(ok(("Allow", "INVITE, ACK, CANCEL, BYE")))
    assert not allows_update(ok())


def test_short_intervals_wait_less_for_an_answer() -> None:
    assert answer_timeout(1800) == 32
    assert answer_timeout(90) == 30
    assert answer_timeout(4) == 4 / 3
