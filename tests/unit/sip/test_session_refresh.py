"""One dialog's session timer (sip/session.py: `SessionRefresh`, RFC 4028) on virtual
time: the table is complete, and a refresher or a watcher ends the session exactly when
RFC 4028 §10 says, and not before, whatever the answers and the peer's refreshes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ippbx.sip.session import (
    REFRESH_STATES,
    REFRESH_STIMULI,
    REFRESH_TABLE,
    RefreshAction,
    Refresher,
    RefreshMethod,
    RefreshState,
    RefreshStimulus,
    SessionError,
    SessionRefresh,
    answer_timeout,
    expire_after,
    refresh_step,
)

RA, RS, ST = RefreshAction, RefreshStimulus, RefreshState


def low(a: float, b: float) -> float:
    return a  # the random pauses at their shortest


def test_the_table_is_complete_and_holds_nothing_else() -> None:
    expected = {(role, state, stimulus) for role in Refresher
                for state in REFRESH_STATES[role] for stimulus in REFRESH_STIMULI[role]}
    assert set(REFRESH_TABLE) == expected
    with pytest.raises(SessionError):
        refresh_step(Refresher.PEER, ST.REFRESHING, RS.ALIVE)  # the watcher never sends


def test_only_the_refresher_sends_and_only_from_waiting() -> None:
    senders = {(role, state) for (role, state, _), (_, actions) in REFRESH_TABLE.items()
               if RA.SEND in actions}
    assert senders == {(Refresher.US, ST.WAITING)}
    # every END leaves nothing armed, and an ended session stays ended and quiet
    for (_, state, _), (nxt, actions) in REFRESH_TABLE.items():
        if RA.END in actions:
            assert nxt is ST.ENDED and RA.DISARM in actions
        if state is ST.ENDED:
            assert (nxt, actions) == (ST.ENDED, ())


def test_we_refresh_at_half_the_interval_and_a_live_answer_keeps_it() -> None:
    session = SessionRefresh(1800, we_refresh=True, allows_update=True, now=0.0)
    assert session.deadline == 900
    assert session.step(RS.DEADLINE, 900) == (RA.SEND, RA.ARM_ANSWER)
    assert session.sending(has_sdp=True, owns_call_id=False) is RefreshMethod.UPDATE
    assert session.deadline == 900 + 32  # the answer is due within 32 s
    assert session.answered(200, False, 901) == (RA.ARM_REFRESH,)
    assert (session.state, session.deadline) == (ST.WAITING, 901 + 900)


@pytest.mark.parametrize("answer", [481, 408, None, "unreachable"])
def test_a_refresh_answered_gone_or_never_ends_the_session(answer: int | str | None) -> None:
    session = SessionRefresh(90, we_refresh=True, allows_update=False, now=0.0)
    session.step(RS.DEADLINE, 45)
    session.sending(has_sdp=True, owns_call_id=True)
    if answer is None:  # nothing came: the deadline ends it, 30 s after the refresh
        assert session.deadline == 45 + answer_timeout(90) == 75
        actions = session.step(RS.DEADLINE, 75)
    else:
        actions = session.answered(503 if answer == "unreachable" else int(answer),
                                   answer == "unreachable", 50)
    assert RA.END in actions and session.state is ST.ENDED
    assert session.deadline == math.inf
    assert session.answered(200, False, 80) == ()  # whatever comes after changes nothing


def test_glare_busy_and_no_update_try_again_and_the_method_follows() -> None:
    session = SessionRefresh(100, we_refresh=True, allows_update=True, now=0.0, draw=low)
    session.step(RS.DEADLINE, 50)
    assert session.sending(has_sdp=True, owns_call_id=True) is RefreshMethod.UPDATE
    assert session.answered(501, False, 51) == (RA.FORGET_UPDATE, RA.ARM_NOW)
    assert session.deadline == 51 and not session.allows_update  # at once, as re-INVITE
    session.step(RS.DEADLINE, 51)
    assert session.sending(has_sdp=True, owns_call_id=True) is RefreshMethod.INVITE
    assert session.answered(491, False, 52) == (RA.ARM_GLARE,)
    assert session.deadline == 52 + 2.1  # we own the Call-ID: 2.1-4 s (§14.1)
    session.step(RS.DEADLINE, 54.1)
    session.sending(has_sdp=True, owns_call_id=False)
    assert session.step(RS.BUSY, 54.1) == (RA.ARM_BUSY,)  # an offer is out: 2-4 s
    assert session.deadline == 56.1 and session.state is ST.WAITING
    session.step(RS.DEADLINE, 56.1)
    assert session.sending(has_sdp=False, owns_call_id=False) is RefreshMethod.OPTIONS
    assert session.answered(404, False, 57) == (RA.ARM_REFRESH,)  # an answer: alive


def test_the_watcher_ends_a_session_nobody_refreshes_and_refreshes_keep_it() -> None:
    session = SessionRefresh(1800, we_refresh=False, allows_update=False, now=0.0)
    assert session.deadline == expire_after(1800) == 1768
    for now in (600.0, 1500.0, 3000.0):
        assert session.step(RS.PEER_REFRESHED, now) == (RA.ARM_EXPIRY,)
        assert session.deadline == now + 1768
    assert RA.END in session.step(RS.DEADLINE, 3000 + 1768)


def test_the_peers_refresh_restarts_our_interval_but_not_our_wait_for_an_answer() -> None:
    session = SessionRefresh(200, we_refresh=True, allows_update=True, now=0.0)
    session.step(RS.PEER_REFRESHED, 60)
    assert session.deadline == 160
    session.step(RS.DEADLINE, 160)
    session.sending(has_sdp=False, owns_call_id=False)
    assert session.step(RS.PEER_REFRESHED, 161) == ()
    assert session.deadline == 160 + answer_timeout(200)  # ours is still out


EVENTS = st.lists(st.tuples(
    st.sampled_from([RS.DEADLINE, RS.PEER_REFRESHED, RS.BUSY, "answer"]),
    st.sampled_from([200, 404, 408, 481, 491, 501, 503, None]),
    st.floats(min_value=0.0, max_value=5000.0)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(we_refresh=st.booleans(), allows_update=st.booleans(), interval=st.sampled_from(
    [90, 1800]), events=EVENTS)
def test_a_session_ends_only_when_it_must(we_refresh: bool, allows_update: bool,
                                          interval: int, events: list) -> None:
    """Any order of deadlines, peer refreshes and answers: the session ends only on a
    deadline that came, or a gone answer; never later than its deadline; and a deadline
    is always one of the §10 / §7.4 moments after the last thing that happened."""
    session = SessionRefresh(interval, we_refresh, allows_update, 0.0, draw=low)
    now = 0.0
    for kind, status, wait in events:
        if session.state is ST.ENDED:
            break
        if kind is RS.DEADLINE:
            now = session.deadline
        else:
            now = min(now + wait, session.deadline)  # (things happen before the deadline)
        before = session.state
        if kind == "answer":
            if before is not ST.REFRESHING:
                assert session.answered(status, False, now) == ()
                continue
            actions = session.answered(status, False, now)
            gone = status in (408, 481, None)
            assert (RA.END in actions) == gone
        elif kind is RS.BUSY and not (we_refresh and before is ST.REFRESHING):
            continue  # only a refresh going out can find the dialog busy
        else:
            actions = session.step(kind, now)
            if RA.SEND in actions:
                session.sending(has_sdp=True, owns_call_id=False)
            if kind is RS.PEER_REFRESHED:
                assert RA.END not in actions
            if kind is RS.DEADLINE:
                assert (RA.END in actions) == (before is ST.REFRESHING or not we_refresh)
        if session.state is ST.ENDED:
            assert session.deadline == math.inf
        else:
            assert now <= session.deadline <= now + interval
