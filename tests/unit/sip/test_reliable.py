"""The pure parts of RFC 3262: which 1xx are reliable, RAck parsing, the resend timer."""

from __future__ import annotations

from ippbx.sip.message import Request, Response
from ippbx.sip.reliable import ReliableRetransmit, first_rseq, has_tag, rack_of, rseq_of


def provisional(status: int, *headers: tuple[str, str]) -> Response:
    return Response(status, None, [("CSeq", "1 INVITE"), *headers])


def test_a_reliable_provisional_needs_require_100rel_and_a_valid_rseq() -> None:
    assert rseq_of(provisional(180, ("Require", "100rel"), ("RSeq", "7"))) == 7
    assert rseq_of(provisional(183, ("Require", "timer, 100REL"), ("RSeq", " 2147483647"))) \
        == 2**31 - 1
    assert rseq_of(provisional(180, ("RSeq", "7"))) is None  # no Require: not reliable
    assert rseq_of(provisional(180, ("Require", "100rel"))) is None  # no RSeq
    for bad in ("0", "-1", "2147483648", "x"):
        assert rseq_of(provisional(180, ("Require", "100rel"), ("RSeq", bad))) is None
    assert rseq_of(provisional(100, ("Require", "100rel"), ("RSeq", "1"))) is None
    assert rseq_of(provisional(200, ("Require", "100rel"), ("RSeq", "1"))) is None


def test_rack_and_option_tags() -> None:
    prack = Request("PRACK", "sip:a@b", [("RAck", "12 1 invite"), ("Supported", "100rel")])
    assert rack_of(prack) == (12, 1, "INVITE")
    assert has_tag(prack, "Supported", "100rel") and not has_tag(prack, "Require", "100rel")
    for bad in ("", "12 1", "x 1 INVITE", "1 2 INVITE extra"):
        assert rack_of(Request("PRACK", "sip:a@b", [("RAck", bad)])) is None


def test_the_first_rseq_leaves_room_to_count_up() -> None:
    assert all(0 < first_rseq() <= 2**30 for _ in range(100))


def test_resent_from_t1_doubling_without_the_t2_cap_until_64_t1() -> None:
    timer = ReliableRetransmit(provisional(180), None, 0.0, t1=0.5)
    resends = []
    now = 0.0
    while True:
        assert timer.deadline is not None
        now = timer.deadline
        action = timer.on_timer(now)
        if action == "give_up":
            break
        resends.append(now)
    assert resends == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # 0.5, 1, 2, 4, 8, 16 apart
    assert now == 32.0
