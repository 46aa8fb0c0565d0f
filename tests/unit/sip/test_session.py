"""The INVITE session table (sip/session.py): complete, closed, and the rules of RFC 3261
§9.1, §13 and RFC 3262 that it encodes, checked on the table alone and on any sequence
of stimuli (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ippbx.sip.session import (
    INITIAL,
    OFFER_TABLE,
    TABLE,
    UAC_STATES,
    UAC_STIMULI,
    UAS_STATES,
    UAS_STIMULI,
    Action,
    Offer,
    OfferStimulus,
    RefreshMethod,
    RefreshOutcome,
    Role,
    SessionError,
    State,
    Stimulus,
    Verdict,
    glare_retry_delay,
    offer_step,
    refresh_method,
    refresh_outcome,
    step,
    uac_response_stimulus,
    uas_response_stimulus,
)

A, S, T = Action, State, Stimulus
ROLES = {Role.UAC: (UAC_STATES, UAC_STIMULI), Role.UAS: (UAS_STATES, UAS_STIMULI)}
UAC_ACTIONS = {a for a in Action if a.value <= A.REACK.value}
FINALS_TO_TU = {A.DELIVER_FINAL, A.FINAL_408, A.FINAL_503, A.FINAL_503_UNREACHABLE}
LIVE_UAC = (S.CALLING, S.CANCEL_PENDING, S.PROCEEDING, S.CANCELLING)


def run(role: Role, stimuli: list[Stimulus]) -> list[tuple[State, Stimulus, tuple[Action, ...]]]:
    """Feed `stimuli` from the role's first state: (state before, stimulus, actions)."""
    state, trace = INITIAL[role], []
    for stimulus in stimuli:
        nxt, actions = step(role, state, stimulus)
        trace.append((state, stimulus, actions))
        state = nxt
    return trace


def test_the_table_is_complete_and_holds_nothing_else() -> None:
    expected = {(role, state, stimulus) for role, (states, stimuli) in ROLES.items()
                for state in states for stimulus in stimuli}
    assert set(TABLE) == expected


def test_rows_stay_in_their_role() -> None:
    for (role, _state, _stimulus), (nxt, actions) in TABLE.items():
        states, _ = ROLES[role]
        assert nxt in states
        own = UAC_ACTIONS if role is Role.UAC else set(Action) - UAC_ACTIONS
        assert set(actions) <= own, (role, _state, _stimulus, actions)


def test_every_state_is_reachable_and_terminated_is_final() -> None:
    for role, (states, stimuli) in ROLES.items():
        seen, todo = {INITIAL[role]}, [INITIAL[role]]
        while todo:
            state = todo.pop()
            for stimulus in stimuli:
                nxt, _ = step(role, state, stimulus)
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert seen == set(states), role
        for stimulus in stimuli:
            assert step(role, S.TERMINATED, stimulus)[0] is S.TERMINATED
            assert step(role, S.CONFIRMED, stimulus)[0] is S.CONFIRMED


def test_a_missing_row_is_an_error_not_a_silent_no_op() -> None:
    with pytest.raises(SessionError, match="RECV_ACK in CALLING"):
        step(Role.UAC, S.CALLING, T.RECV_ACK)
    with pytest.raises(SessionError):
        step(Role.UAS, S.PROCEEDING, T.SEND_2XX)


def test_stimuli_of_responses() -> None:
    assert [uac_response_stimulus(s) for s in (100, 183, 200, 299, 300, 487, 699)] == [
        T.RECV_100, T.RECV_1XX, T.RECV_2XX, T.RECV_2XX, T.RECV_FAILURE, T.RECV_FAILURE,
        T.RECV_FAILURE]
    assert [uas_response_stimulus(s) for s in (100, 180, 200, 486)] == [
        T.SEND_100, T.SEND_1XX, T.SEND_2XX, T.SEND_FAILURE]


# -- UAC ------------------------------------------------------------------------------------
def test_cancel_before_any_provisional_waits_for_one() -> None:
    trace = run(Role.UAC, [T.TU_CANCEL, T.TU_CANCEL, T.RECV_1XX, T.RECV_FAILURE])
    assert [actions for _, _, actions in trace] == [
        (), (),
        (A.TRACK_EARLY, A.SEND_CANCEL, A.DELIVER_PROVISIONAL),  # §9.1: only now
        (A.END_EARLY, A.DELIVER_FINAL),
    ]
    assert step(Role.UAC, S.CANCELLING, T.RECV_FAILURE)[0] is S.TERMINATED


def test_a_2xx_crossing_our_cancel_is_still_the_answer() -> None:
    trace = run(Role.UAC, [T.RECV_1XX, T.TU_CANCEL, T.RECV_2XX, T.RECV_2XX])
    assert [actions for _, _, actions in trace] == [
        (A.TRACK_EARLY, A.DELIVER_PROVISIONAL),
        (A.SEND_CANCEL,),
        (A.CONFIRM_DIALOG, A.END_EARLY, A.DELIVER_FINAL),
        (A.REACK,),  # a retransmission, or another fork's 2xx
    ]


def test_timer_c_cancels_a_ringing_callee_but_timer_b_sends_nothing() -> None:
    assert step(Role.UAC, S.PROCEEDING, T.TIMEOUT) == (
        S.TERMINATED, (A.END_EARLY, A.SEND_CANCEL, A.FINAL_408))
    assert step(Role.UAC, S.CALLING, T.TIMEOUT) == (S.TERMINATED, (A.END_EARLY, A.FINAL_408))
    assert step(Role.UAC, S.CANCELLING, T.TIMEOUT) == (S.TERMINATED, (A.END_EARLY, A.FINAL_408))
    for state in LIVE_UAC:
        assert step(Role.UAC, state, T.TRANSPORT_ERROR)[1][-1] is A.FINAL_503_UNREACHABLE
        assert step(Role.UAC, state, T.TX_ENDED)[1][-1] is A.FINAL_503


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(UAC_STIMULI), max_size=12))
def test_uac_any_sequence(stimuli: list[Stimulus]) -> None:
    trace = run(Role.UAC, stimuli)
    actions = [a for _, _, row in trace for a in row]
    assert sum(a in FINALS_TO_TU for a in actions) <= 1  # the TU gets one final answer
    assert actions.count(A.SEND_CANCEL) <= 1
    assert actions.count(A.CONFIRM_DIALOG) <= 1
    provisional_seen = False
    for _, stimulus, row in trace:
        if A.SEND_CANCEL in row:  # never before a provisional, except Timer C's own
            assert provisional_seen or stimulus in (T.RECV_100, T.RECV_1XX)
        provisional_seen |= stimulus in (T.RECV_100, T.RECV_1XX)
    # a live INVITE that ends delivers exactly one final answer
    ended = [i for i, (_, s, _) in enumerate(trace)
             if s in (T.RECV_2XX, T.RECV_FAILURE, T.TIMEOUT, T.TRANSPORT_ERROR, T.TX_ENDED)]
    if ended:
        assert sum(a in FINALS_TO_TU for a in actions) == 1
        first = ended[0]
        assert not any(a in FINALS_TO_TU for _, _, row in trace[:first] for a in row)


# -- UAS ------------------------------------------------------------------------------------
def test_uas_ring_answer_ack() -> None:
    trace = run(Role.UAS, [T.SEND_100, T.SEND_1XX, T.SEND_1XX, T.SEND_2XX, T.RECV_ACK])
    assert [actions for _, _, actions in trace] == [
        (A.SEND_PROVISIONAL,),
        (A.CREATE_EARLY, A.SEND_PROVISIONAL),
        (A.CREATE_EARLY, A.SEND_PROVISIONAL),  # (a no-op: the early dialog exists)
        (A.STOP_RELIABLE, A.SEND_FINAL, A.START_2XX),
        (A.RESOLVE_ACK,),
    ]
    assert step(Role.UAS, S.CONNECTING, T.RECV_ACK)[0] is S.CONFIRMED


def test_uas_cancel_then_487_and_late_answers_are_refused() -> None:
    trace = run(Role.UAS, [T.SEND_1XX, T.RECV_CANCEL, T.SEND_FAILURE])
    assert trace[1][2] == (A.MARK_CANCELLED,)
    assert trace[2][2] == (A.STOP_RELIABLE, A.SEND_FINAL, A.CLOSE_EARLY, A.RESOLVE_NO_ACK)
    for stimulus in (T.SEND_100, T.SEND_1XX, T.SEND_2XX, T.SEND_FAILURE):
        assert step(Role.UAS, S.TERMINATED, stimulus) == (S.TERMINATED, (A.REFUSE,))
    for stimulus in (T.RECV_CANCEL, T.RECV_ACK, T.NO_ACK, T.NO_PRACK, T.TX_FAILED):
        assert step(Role.UAS, S.TERMINATED, stimulus) == (S.TERMINATED, ())


def test_uas_no_prack_and_no_ack() -> None:
    assert step(Role.UAS, S.EARLY, T.NO_PRACK) == (S.EARLY, (A.MARK_CANCELLED, A.REJECT_504))
    assert step(Role.UAS, S.CONNECTING, T.NO_ACK) == (S.TERMINATED, (A.RESOLVE_NO_ACK,))
    # a second 2xx is resent in place of the first (RFC 6026 "Accepted")
    assert step(Role.UAS, S.CONNECTING, T.SEND_2XX) == (S.CONNECTING,
                                                        (A.SEND_FINAL, A.START_2XX))
    assert step(Role.UAS, S.CONNECTING, T.SEND_1XX) == (S.CONNECTING, (A.REFUSE,))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(UAS_STIMULI), max_size=12))
def test_uas_any_sequence(stimuli: list[Stimulus]) -> None:
    trace = run(Role.UAS, stimuli)
    actions = [a for _, _, row in trace for a in row]
    # the TU waiting for the ACK learns once; a final non-2xx and a 2xx never both go out
    assert actions.count(A.RESOLVE_ACK) + actions.count(A.RESOLVE_NO_ACK) <= 1
    sent = [s for _, s, row in trace if A.SEND_FINAL in row]
    assert not (T.SEND_FAILURE in sent and T.SEND_2XX in sent)
    assert sent.count(T.SEND_FAILURE) <= 1
    # nothing is sent once the INVITE is over, and a 1xx never follows a final
    final_at = next((i for i, (_, _, row) in enumerate(trace) if A.SEND_FINAL in row), None)
    if final_at is not None:
        for _, stimulus, row in trace[final_at + 1:]:
            if stimulus in (T.SEND_100, T.SEND_1XX, T.SEND_FAILURE):
                assert row == (A.REFUSE,)
            assert A.CREATE_EARLY not in row and A.MARK_CANCELLED not in row


# -- one offer at a time in a dialog ---------------------------------------------------------
def test_offer_table_glare_retry_and_wait() -> None:
    Of, OS, V = Offer, OfferStimulus, Verdict  # noqa: N806
    assert offer_step(Of.IDLE, OS.PEER_OFFER) == (Of.THEIRS, V.ACCEPT)
    assert offer_step(Of.OURS, OS.PEER_OFFER) == (Of.OURS, V.GLARE)  # ours crossed it: 491
    assert offer_step(Of.THEIRS, OS.PEER_OFFER) == (Of.THEIRS, V.RETRY)  # 500 Retry-After
    assert offer_step(Of.THEIRS, OS.OUR_OFFER) == (Of.THEIRS, V.WAIT)
    assert offer_step(Of.OURS, OS.OUR_OFFER) == (Of.OURS, V.WAIT)
    assert V.GLARE.value == 491 and V.RETRY.value == 500
    # an answer for an offer that is not out is a bookkeeping bug, never ignored
    for state, stimulus in [(Of.IDLE, OS.OUR_ANSWERED), (Of.IDLE, OS.PEER_ANSWERED),
                            (Of.OURS, OS.PEER_ANSWERED), (Of.THEIRS, OS.OUR_ANSWERED)]:
        assert (state, stimulus) not in OFFER_TABLE
        with pytest.raises(SessionError):
            offer_step(state, stimulus)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["peer", "ours", "answered"]), max_size=12))
def test_offers_never_overlap(moves: list[str]) -> None:
    """Whatever order offers come and end in, at most one is in progress in the dialog:
    the first one accepted since the dialog was last free."""
    state, out = Offer.IDLE, None
    for move in moves:
        if move == "answered":
            if out is not None:
                state, _ = offer_step(state, OfferStimulus.OUR_ANSWERED if out == "ours"
                                      else OfferStimulus.PEER_ANSWERED)
                assert state is Offer.IDLE
                out = None
            continue
        stimulus = OfferStimulus.PEER_OFFER if move == "peer" else OfferStimulus.OUR_OFFER
        state, verdict = offer_step(state, stimulus)
        if out is None:
            assert verdict is Verdict.ACCEPT
            out = move
        elif move == "peer":  # the peer hears 491 when ours is out, else 500
            assert verdict is (Verdict.GLARE if out == "ours" else Verdict.RETRY)
        else:
            assert verdict is Verdict.WAIT
        assert state is (Offer.OURS if out == "ours" else Offer.THEIRS)


def test_glare_retry_delay_follows_rfc_3261_14_1() -> None:
    assert glare_retry_delay(True, lambda low, high: low) == 2.1
    assert glare_retry_delay(True, lambda low, high: high) == 4.0
    assert glare_retry_delay(False, lambda low, high: low) == 0.0
    assert glare_retry_delay(False, lambda low, high: high) == 2.0
    assert glare_retry_delay(False, lambda low, high: 1.23456) == 1.23  # 10 ms steps
    drawn = [glare_retry_delay(True) for _ in range(200)]
    assert all(2.1 <= d <= 4.0 for d in drawn) and len(set(drawn)) > 20


# -- RFC 4028 refreshes ---------------------------------------------------------------

def test_refresh_method_prefers_update_then_the_same_sdp_then_options() -> None:
    assert refresh_method(allows_update=True, has_sdp=True) is RefreshMethod.UPDATE
    assert refresh_method(allows_update=True, has_sdp=False) is RefreshMethod.UPDATE
    assert refresh_method(allows_update=False, has_sdp=True) is RefreshMethod.INVITE
    # a late-offer call: a re-INVITE without SDP would be a new offer
    assert refresh_method(allows_update=False, has_sdp=False) is RefreshMethod.OPTIONS


@pytest.mark.parametrize("method", list(RefreshMethod))
def test_refresh_outcome_by_answer(method: RefreshMethod) -> None:
    gone, alive = RefreshOutcome.GONE, RefreshOutcome.ALIVE
    for status in (408, 481, None):  # RFC 4028 §10, and no answer in time
        assert refresh_outcome(method, status) is gone
    assert refresh_outcome(method, 503, unreachable=True) is gone  # the connection is gone
    assert refresh_outcome(method, 503) is alive  # the peer answered: it is there
    assert refresh_outcome(method, 200) is alive and refresh_outcome(method, 404) is alive
    assert refresh_outcome(method, 491) is RefreshOutcome.GLARE
    update_refused = RefreshOutcome.NO_UPDATE if method is RefreshMethod.UPDATE else alive
    assert refresh_outcome(method, 405) is update_refused
    assert refresh_outcome(method, 501) is update_refused

