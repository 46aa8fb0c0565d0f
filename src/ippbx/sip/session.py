"""INVITE sessions (RFC 3261 §13-§15, RFC 3262), sans-IO: one INVITE's life as its user
agent sees it, from the request to the ACK, as one table.

A transaction (`sip/transaction.py`) makes one request and its responses reliable. An
INVITE *session* is what the user agent must do on top of that: create the early dialog
of a tagged 1xx, send the CANCEL only once a provisional came (§9.1), confirm the dialog
on a 2xx, re-ACK a retransmitted 2xx and ACK-and-BYE a forked one (§13.2.2.4), resend
our own 2xx until its ACK (§13.3.1.4), resend a reliable 1xx until its PRACK, and turn a
timeout or a transport failure into the final answer the transaction user waits for.

`TABLE` maps ``(role, state, stimulus)`` to ``(next state, actions)``. It is complete:
every state of a role has a row for every stimulus of that role (a test checks it), so a
stimulus that must change nothing says so with an empty action tuple, and a missing row
is a programming error (`SessionError`), never a silent no-op. States, stimuli and
actions are enums, so a misspelt one cannot be a dead row.

The adapter (`sip/ua.py`: `ClientInvite` for the UAC role, `ServerRequest` of an INVITE
for the UAS role) classifies what happened into a `Stimulus`, calls `step`, stores the
next state *before* it runs the actions in order, and runs each action against the
dialogs, the transaction layer and the transaction user. One action may stop the rest of
its row: `TRACK_EARLY` drops a reliable 1xx already seen (a retransmission or an older
RSeq, RFC 3262 §4). It only does so in a state the 1xx leaves unchanged.

Two smaller machines of a confirmed dialog live here too:

* `Offer` (one offer at a time in each dialog, §14.1, with the 491 pause
  `glare_retry_delay`);
* `SessionRefresh`, one dialog's RFC 4028 session timer as its own table
  (`REFRESH_TABLE`, complete in the same way): who refreshes, when the next refresh or
  the peer's is due, how long our refresh may wait for its answer, and what that answer
  means (`refresh_method`: UPDATE, re-INVITE or OPTIONS; `refresh_outcome`: alive, gone,
  glare, no UPDATE). It keeps a `deadline` on the adapter's clock; `pbx/session_keeper.py`
  holds the deadlines of all calls in one heap, sends the refreshes and ends the calls
  it is told to.

UAC states::

    CALLING ──1xx──▶ PROCEEDING ──2xx──▶ CONFIRMED
       │ TU cancel        │ TU cancel (CANCEL sent)
       ▼                  ▼
    CANCEL_PENDING ─1xx─▶ CANCELLING ──487──▶ TERMINATED
    (a final non-2xx, a timeout or a transport failure ends any live state: TERMINATED)

UAS states::

    INCOMING ──1xx──▶ EARLY ──2xx──▶ CONNECTING ──ACK──▶ CONFIRMED
    (a final non-2xx or a failed transaction ends INCOMING or EARLY; a 2xx never
     ACKed within 64*T1 ends CONNECTING: TERMINATED)
"""

from __future__ import annotations

import random
from collections.abc import Callable
from enum import IntEnum

from mypy_extensions import mypyc_attr


class SessionError(Exception):
    """A (role, state, stimulus) without a row: a bug in the table or its adapter."""


class Role(IntEnum):
    UAC = 1  # we sent the INVITE
    UAS = 2  # we answer it


class State(IntEnum):
    # UAC
    CALLING = 1  # the INVITE went out; nothing but silence yet
    CANCEL_PENDING = 2  # the TU cancelled before any provisional: CANCEL at the first
    PROCEEDING = 3  # a provisional came (a CANCEL may go out now)
    CANCELLING = 4  # our CANCEL went out; waiting for the 487 (or a crossing 2xx)
    # UAS
    INCOMING = 5  # the INVITE arrived; nothing answered beyond 100
    EARLY = 6  # a 1xx went out (tagged: the early dialog exists)
    CONNECTING = 7  # our 2xx went out and is resent until the ACK
    # both
    CONFIRMED = 8  # UAC: the 2xx came (the TU ACKs it); UAS: the ACK came
    TERMINATED = 9  # a final non-2xx, a timeout, a transport failure, or no ACK


class Stimulus(IntEnum):
    # UAC: from the wire, the transaction layer or the TU
    RECV_100 = 1
    RECV_1XX = 2  # 101-199
    RECV_2XX = 3  # the first, a retransmission, or another fork's
    RECV_FAILURE = 4  # 300-699
    TU_CANCEL = 5
    TIMEOUT = 6  # Timer B or Timer C
    TRANSPORT_ERROR = 7  # the transport could not deliver (a refused connect…)
    TX_ENDED = 8  # the transaction ended with no final answer for the TU
    # UAS
    SEND_100 = 11
    SEND_1XX = 12
    SEND_2XX = 13
    SEND_FAILURE = 14
    RECV_CANCEL = 15  # (the transaction layer answered the CANCEL 200)
    RECV_ACK = 16  # the ACK for our 2xx
    NO_ACK = 17  # our 2xx was resent for 64*T1 and never ACKed
    NO_PRACK = 18  # our reliable 1xx was resent for 64*T1 and never PRACKed
    TX_FAILED = 19  # the server transaction failed (a response could not be sent)


class Action(IntEnum):
    # UAC
    TRACK_EARLY = 1  # a tagged 1xx: its early dialog; stop the row on a repeated reliable 1xx
    DELIVER_PROVISIONAL = 2  # remember it, hand it to the TU
    SEND_CANCEL = 3  # CANCEL the INVITE; its early dialogs leave the store
    CONFIRM_DIALOG = 4  # the 2xx's dialog (the early one of its tag if any) is confirmed
    END_EARLY = 5  # the other early dialogs are over
    DELIVER_FINAL = 6  # the final response to the TU
    FINAL_408 = 7  # a 408 made up for the TU
    FINAL_503_UNREACHABLE = 8  # a 503 "unreachable" made up for the TU (fail over)
    FINAL_503 = 9  # a 503 made up for the TU
    REACK = 10  # a 2xx after the answer: re-ACK its dialog, or ACK and BYE a new fork
    # UAS
    CREATE_EARLY = 11  # a tagged 1xx to a new INVITE: the early dialog
    SEND_PROVISIONAL = 12  # send the 1xx (reliably, RFC 3262, if the TU asked)
    STOP_RELIABLE = 13  # stop resending a reliable 1xx; drop those queued behind it
    SEND_FINAL = 14  # send the final response; no CANCEL can matter any more
    START_2XX = 15  # the dialog is confirmed; resend the 2xx until the ACK
    CLOSE_EARLY = 16  # the early dialog of our 1xx is over
    RESOLVE_ACK = 17  # the TU waiting for the ACK gets it
    RESOLVE_NO_ACK = 18  # the TU waiting for the ACK gets None
    MARK_CANCELLED = 19  # tell the TU a CANCEL came (it answers 487)
    REJECT_504 = 20  # answer 504 (no PRACK, RFC 3262 §3)
    REFUSE = 21  # the TU answered after the final answer: TransactionError


S, T, A = State, Stimulus, Action
Row = tuple[State, tuple[Action, ...]]

UAC_STATES = (S.CALLING, S.CANCEL_PENDING, S.PROCEEDING, S.CANCELLING, S.CONFIRMED,
              S.TERMINATED)
UAS_STATES = (S.INCOMING, S.EARLY, S.CONNECTING, S.CONFIRMED, S.TERMINATED)
UAC_STIMULI = (T.RECV_100, T.RECV_1XX, T.RECV_2XX, T.RECV_FAILURE, T.TU_CANCEL, T.TIMEOUT,
               T.TRANSPORT_ERROR, T.TX_ENDED)
UAS_STIMULI = (T.SEND_100, T.SEND_1XX, T.SEND_2XX, T.SEND_FAILURE, T.RECV_CANCEL, T.RECV_ACK,
               T.NO_ACK, T.NO_PRACK, T.TX_FAILED)
INITIAL = {Role.UAC: S.CALLING, Role.UAS: S.INCOMING}

_ANSWERED = (A.CONFIRM_DIALOG, A.END_EARLY, A.DELIVER_FINAL)  # a 2xx to a live INVITE
_FAILED = (A.END_EARLY, A.DELIVER_FINAL)
_ABANDONED = {  # the transaction ended without a final answer from the callee
    T.TIMEOUT: (A.END_EARLY, A.FINAL_408),
    T.TRANSPORT_ERROR: (A.END_EARLY, A.FINAL_503_UNREACHABLE),
    T.TX_ENDED: (A.END_EARLY, A.FINAL_503),
}

_UAC: dict[tuple[State, Stimulus], Row] = {
    (S.CALLING, T.RECV_100): (S.PROCEEDING, (A.DELIVER_PROVISIONAL,)),
    (S.CALLING, T.RECV_1XX): (S.PROCEEDING, (A.TRACK_EARLY, A.DELIVER_PROVISIONAL)),
    (S.CALLING, T.TU_CANCEL): (S.CANCEL_PENDING, ()),
    (S.CANCEL_PENDING, T.RECV_100): (S.CANCELLING, (A.SEND_CANCEL, A.DELIVER_PROVISIONAL)),
    (S.CANCEL_PENDING, T.RECV_1XX): (S.CANCELLING, (A.TRACK_EARLY, A.SEND_CANCEL,
                                                    A.DELIVER_PROVISIONAL)),
    (S.CANCEL_PENDING, T.TU_CANCEL): (S.CANCEL_PENDING, ()),
    (S.PROCEEDING, T.RECV_100): (S.PROCEEDING, (A.DELIVER_PROVISIONAL,)),
    (S.PROCEEDING, T.RECV_1XX): (S.PROCEEDING, (A.TRACK_EARLY, A.DELIVER_PROVISIONAL)),
    (S.PROCEEDING, T.TU_CANCEL): (S.CANCELLING, (A.SEND_CANCEL,)),
    # Timer C after a provisional: tell the callee we gave up (§16.6.11)
    (S.PROCEEDING, T.TIMEOUT): (S.TERMINATED, (A.END_EARLY, A.SEND_CANCEL, A.FINAL_408)),
    (S.CANCELLING, T.RECV_100): (S.CANCELLING, (A.DELIVER_PROVISIONAL,)),
    (S.CANCELLING, T.RECV_1XX): (S.CANCELLING, (A.TRACK_EARLY, A.DELIVER_PROVISIONAL)),
    (S.CANCELLING, T.TU_CANCEL): (S.CANCELLING, ()),
}
for _state in (S.CALLING, S.CANCEL_PENDING, S.PROCEEDING, S.CANCELLING):
    # a 2xx crossing our CANCEL is an answer all the same: the TU ACKs and BYEs it
    _UAC[(_state, T.RECV_2XX)] = (S.CONFIRMED, _ANSWERED)
    _UAC[(_state, T.RECV_FAILURE)] = (S.TERMINATED, _FAILED)
    for _stimulus, _actions in _ABANDONED.items():
        _UAC.setdefault((_state, _stimulus), (S.TERMINATED, _actions))
for _state in (S.CONFIRMED, S.TERMINATED):  # answered: only a late 2xx still matters
    for _stimulus in UAC_STIMULI:
        _UAC[(_state, _stimulus)] = (_state, (A.REACK,) if _stimulus is T.RECV_2XX else ())

_UAS: dict[tuple[State, Stimulus], Row] = {
    (S.INCOMING, T.SEND_100): (S.INCOMING, (A.SEND_PROVISIONAL,)),
    (S.INCOMING, T.SEND_1XX): (S.EARLY, (A.CREATE_EARLY, A.SEND_PROVISIONAL)),
    (S.INCOMING, T.NO_PRACK): (S.INCOMING, ()),
    (S.EARLY, T.SEND_100): (S.EARLY, (A.SEND_PROVISIONAL,)),
    (S.EARLY, T.SEND_1XX): (S.EARLY, (A.CREATE_EARLY, A.SEND_PROVISIONAL)),
    (S.EARLY, T.NO_PRACK): (S.EARLY, (A.MARK_CANCELLED, A.REJECT_504)),
}
for _state in (S.INCOMING, S.EARLY):
    _UAS[(_state, T.SEND_2XX)] = (S.CONNECTING, (A.STOP_RELIABLE, A.SEND_FINAL, A.START_2XX))
    _UAS[(_state, T.SEND_FAILURE)] = (S.TERMINATED, (A.STOP_RELIABLE, A.SEND_FINAL,
                                                     A.CLOSE_EARLY, A.RESOLVE_NO_ACK))
    _UAS[(_state, T.RECV_CANCEL)] = (_state, (A.MARK_CANCELLED,))
    # the transaction is gone (a response could not be sent): so is the session
    _UAS[(_state, T.TX_FAILED)] = (S.TERMINATED, (A.STOP_RELIABLE, A.CLOSE_EARLY,
                                                  A.RESOLVE_NO_ACK))
    _UAS[(_state, T.RECV_ACK)] = (_state, ())  # (the ACK of a non-2xx stays in its transaction)
    _UAS[(_state, T.NO_ACK)] = (_state, ())
for _state in (S.CONNECTING, S.CONFIRMED, S.TERMINATED):
    for _stimulus in UAS_STIMULI:
        _UAS[(_state, _stimulus)] = (_state, ())
    for _stimulus in (T.SEND_100, T.SEND_1XX, T.SEND_FAILURE):
        _UAS[(_state, _stimulus)] = (_state, (A.REFUSE,))
# a second 2xx (e.g. with a new body) replaces the one being resent (RFC 6026 "Accepted")
_UAS[(S.CONNECTING, T.SEND_2XX)] = (S.CONNECTING, (A.SEND_FINAL, A.START_2XX))
_UAS[(S.CONFIRMED, T.SEND_2XX)] = (S.CONFIRMED, (A.SEND_FINAL, A.START_2XX))
_UAS[(S.TERMINATED, T.SEND_2XX)] = (S.TERMINATED, (A.REFUSE,))
_UAS[(S.CONNECTING, T.RECV_ACK)] = (S.CONFIRMED, (A.RESOLVE_ACK,))
_UAS[(S.CONNECTING, T.NO_ACK)] = (S.TERMINATED, (A.RESOLVE_NO_ACK,))

TABLE: dict[tuple[Role, State, Stimulus], Row] = {
    **{(Role.UAC, state, stimulus): row for (state, stimulus), row in _UAC.items()},
    **{(Role.UAS, state, stimulus): row for (state, stimulus), row in _UAS.items()},
}
_BY_ROLE = {Role.UAC: _UAC, Role.UAS: _UAS}
del S, T, A, _state, _stimulus, _actions


def step(role: Role, state: State, stimulus: Stimulus) -> Row:
    """The next state and the actions to run, in order, for `stimulus` in `state`."""
    try:
        return _BY_ROLE[role][(state, stimulus)]
    except KeyError:
        raise SessionError(f"{role.name}: no row for {stimulus.name} in {state.name}") from None


def uac_response_stimulus(status: int) -> Stimulus:
    """What a response to our INVITE is, as a stimulus."""
    if status < 200:
        return Stimulus.RECV_100 if status == 100 else Stimulus.RECV_1XX
    return Stimulus.RECV_2XX if status < 300 else Stimulus.RECV_FAILURE


def uas_response_stimulus(status: int) -> Stimulus:
    """What the TU's response to an INVITE is, as a stimulus."""
    if status < 200:
        return Stimulus.SEND_100 if status == 100 else Stimulus.SEND_1XX
    return Stimulus.SEND_2XX if status < 300 else Stimulus.SEND_FAILURE


# -- offers in a confirmed dialog (re-INVITE, UPDATE with SDP) ----------------------------
class Offer(IntEnum):
    """Where a dialog's offer/answer stands: one offer at a time in each dialog (RFC
    3261 §14.1, RFC 3311 §5.2)."""

    IDLE = 0
    OURS = 1  # our re-INVITE or UPDATE offer is out; its final answer has not come
    THEIRS = 2  # the peer's is being answered


class OfferStimulus(IntEnum):
    PEER_OFFER = 1  # the peer's re-INVITE (or UPDATE with SDP) arrived
    PEER_ANSWERED = 2  # we sent the final answer to it
    OUR_OFFER = 3  # we would send one
    OUR_ANSWERED = 4  # ours got its final answer


class Verdict(IntEnum):
    """What the one who asked must do. The peer's offer is answered 491 (GLARE: ours
    crossed it; it retries after a random pause, §14.2) or 500 with Retry-After (RETRY:
    its previous one is still being answered); ours WAITs for the dialog to be free."""

    ACCEPT = 0
    GLARE = 491
    RETRY = 500
    WAIT = 1


Of, OS, V = Offer, OfferStimulus, Verdict
OFFER_TABLE: dict[tuple[Offer, OfferStimulus], tuple[Offer, Verdict]] = {
    (Of.IDLE, OS.PEER_OFFER): (Of.THEIRS, V.ACCEPT),
    (Of.IDLE, OS.OUR_OFFER): (Of.OURS, V.ACCEPT),
    (Of.OURS, OS.PEER_OFFER): (Of.OURS, V.GLARE),
    (Of.OURS, OS.OUR_OFFER): (Of.OURS, V.WAIT),
    (Of.OURS, OS.OUR_ANSWERED): (Of.IDLE, V.ACCEPT),
    (Of.THEIRS, OS.PEER_OFFER): (Of.THEIRS, V.RETRY),
    (Of.THEIRS, OS.OUR_OFFER): (Of.THEIRS, V.WAIT),
    (Of.THEIRS, OS.PEER_ANSWERED): (Of.IDLE, V.ACCEPT),
}
del Of, OS, V


def offer_step(state: Offer, stimulus: OfferStimulus) -> tuple[Offer, Verdict]:
    """The dialog's next offer state and the verdict. An answer to an offer that is not
    out (a bookkeeping bug in the caller) raises `SessionError`."""
    try:
        return OFFER_TABLE[(state, stimulus)]
    except KeyError:
        raise SessionError(f"offer: {stimulus.name} in {state.name}") from None


def glare_retry_delay(owns_call_id: bool,
                      draw: Callable[[float, float], float] = random.uniform) -> float:
    """How long a UAC whose re-INVITE got 491 waits before trying it once more (RFC 3261
    §14.1): 2.1-4 s if it owns the dialog's Call-ID (it sent the initial INVITE), else
    0-2 s, in steps of 10 ms. So of two sides that crossed, one goes first."""
    low, high = (2.1, 4.0) if owns_call_id else (0.0, 2.0)
    return round(draw(low, high), 2)


# -- session refreshes (RFC 4028) ---------------------------------------------------------
class RefreshMethod(IntEnum):
    """What refreshes a session we are the refresher of."""

    UPDATE = 1  # the peer's Allow lists UPDATE (RFC 4028 §7.4: preferred, no offer)
    INVITE = 2  # a re-INVITE repeating the SDP the peer last got, unchanged
    OPTIONS = 3  # no SDP to repeat (a late-offer call): a re-INVITE without one would be
    # a new offer; an in-dialog OPTIONS still shows whether the peer is there


class RefreshOutcome(IntEnum):
    """What a refresh's answer says, and so what the refresher does next."""

    ALIVE = 1  # the peer is there: the next refresh at half the interval
    GONE = 2  # 408 or 481 (RFC 4028 §10), no answer in time, or the transport could not
    # deliver it: the session is over; the call is torn down
    GLARE = 3  # 491: our request crossed an offer of the peer's: again after §14.1's pause
    NO_UPDATE = 4  # an UPDATE the peer does not do (405, 501): a re-INVITE, at once


_GONE = frozenset({408, 481})  # RFC 4028 §10
_NO_UPDATE = frozenset({405, 501})


def refresh_method(allows_update: bool, has_sdp: bool) -> RefreshMethod:
    """How to refresh a dialog whose peer does (`allows_update`) or does not list UPDATE,
    when we do (`has_sdp`) or do not have an SDP of ours to repeat."""
    if allows_update:
        return RefreshMethod.UPDATE
    return RefreshMethod.INVITE if has_sdp else RefreshMethod.OPTIONS


def refresh_outcome(method: RefreshMethod, status: int | None,
                    unreachable: bool = False) -> RefreshOutcome:
    """What the final answer `status` to a refresh sent with `method` means (None: none
    came in time; `unreachable`: the transport could not deliver it, a TCP/TLS peer whose
    connection is gone). Any answer not listed shows the peer is there: a 4xx to an
    OPTIONS, say, is still an answer."""
    if status is None or unreachable or status in _GONE:
        return RefreshOutcome.GONE
    if status == 491:
        return RefreshOutcome.GLARE
    if method is RefreshMethod.UPDATE and status in _NO_UPDATE:
        return RefreshOutcome.NO_UPDATE
    return RefreshOutcome.ALIVE


# -- session refresh timers (RFC 4028 §7.4, §9, §10) ---------------------------------------
def refresh_after(interval: float) -> float:
    """When the refresher sends its refresh: half the interval (§7.4, §9)."""
    return interval / 2


def expire_after(interval: float) -> float:
    """When a session the peer refreshes is over without a refresh (§10): the interval
    less min(32 s, a third of it)."""
    return interval - min(32.0, interval / 3)


def answer_timeout(interval: float) -> float:
    """How long our refresh may wait for its final answer before the peer counts as gone
    (the transaction's own limit, 32 s, is longer than short intervals allow)."""
    return min(32.0, max(1.0, interval / 3))


BUSY_RETRY = (2.0, 4.0)  # s: our refresh found an offer in progress on the dialog


class Refresher(IntEnum):
    """Who keeps a session alive."""

    US = 1  # ippbx sends the refreshes
    PEER = 2  # the peer does; ippbx watches for them


class RefreshState(IntEnum):
    WAITING = 1  # until `deadline`: our next refresh, or the peer's latest one
    REFRESHING = 2  # our refresh is out; its answer is due by `deadline`
    ENDED = 3  # expired, gone, or stopped: nothing is armed


class RefreshStimulus(IntEnum):
    DEADLINE = 1  # the time in `deadline` came
    PEER_REFRESHED = 2  # a re-INVITE or UPDATE of the peer's was answered 2xx
    BUSY = 3  # our re-INVITE could not go out: an offer is in progress on the dialog
    ALIVE = 4  # the answers to our refresh, as `refresh_outcome` reads them
    GONE = 5
    GLARE = 6
    NO_UPDATE = 7
    STOP = 8  # the call ended


class RefreshAction(IntEnum):
    # the machine's own: where `deadline` goes
    ARM_REFRESH = 1  # half the interval from now
    ARM_EXPIRY = 2  # the interval less min(32 s, a third) from now
    ARM_ANSWER = 3  # `answer_timeout` from now
    ARM_GLARE = 4  # §14.1's pause (`glare_retry_delay`)
    ARM_BUSY = 5  # 2-4 s from now
    ARM_NOW = 6  # now: the refresh goes again at once
    FORGET_UPDATE = 7  # the peer does not do UPDATE: refresh by re-INVITE from now on
    DISARM = 8  # nothing armed
    # the adapter's
    SEND = 9  # send the refresh (its method: `SessionRefresh.sending`)
    END = 10  # the session is over: tear the call down


_OUTCOME_STIMULUS = {
    RefreshOutcome.ALIVE: RefreshStimulus.ALIVE,
    RefreshOutcome.GONE: RefreshStimulus.GONE,
    RefreshOutcome.GLARE: RefreshStimulus.GLARE,
    RefreshOutcome.NO_UPDATE: RefreshStimulus.NO_UPDATE,
}

R, RS, RA = RefreshState, RefreshStimulus, RefreshAction
RefreshRow = tuple[RefreshState, tuple[RefreshAction, ...]]
REFRESH_STATES = {Refresher.US: (R.WAITING, R.REFRESHING, R.ENDED),
                  Refresher.PEER: (R.WAITING, R.ENDED)}
REFRESH_STIMULI = {Refresher.US: tuple(RefreshStimulus),
                   Refresher.PEER: (RS.DEADLINE, RS.PEER_REFRESHED, RS.STOP)}
_OVER = (R.ENDED, (RA.DISARM, RA.END))
_US: dict[tuple[RefreshState, RefreshStimulus], RefreshRow] = {
    (R.WAITING, RS.DEADLINE): (R.REFRESHING, (RA.SEND, RA.ARM_ANSWER)),
    # the peer's refresh restarts the interval (§10: either side's refresh counts)
    (R.WAITING, RS.PEER_REFRESHED): (R.WAITING, (RA.ARM_REFRESH,)),
    (R.REFRESHING, RS.DEADLINE): _OVER,  # no answer in time
    (R.REFRESHING, RS.PEER_REFRESHED): (R.REFRESHING, ()),  # ours is still out
    (R.REFRESHING, RS.BUSY): (R.WAITING, (RA.ARM_BUSY,)),
    (R.REFRESHING, RS.ALIVE): (R.WAITING, (RA.ARM_REFRESH,)),
    (R.REFRESHING, RS.GONE): _OVER,
    (R.REFRESHING, RS.GLARE): (R.WAITING, (RA.ARM_GLARE,)),
    (R.REFRESHING, RS.NO_UPDATE): (R.WAITING, (RA.FORGET_UPDATE, RA.ARM_NOW)),
}
for _answer in (RS.BUSY, RS.ALIVE, RS.GONE, RS.GLARE, RS.NO_UPDATE):
    _US[(R.WAITING, _answer)] = (R.WAITING, ())  # an answer no refresh waits for
_PEER: dict[tuple[RefreshState, RefreshStimulus], RefreshRow] = {
    (R.WAITING, RS.DEADLINE): _OVER,  # no refresh from the peer in time
    (R.WAITING, RS.PEER_REFRESHED): (R.WAITING, (RA.ARM_EXPIRY,)),
}
for _table, _role in ((_US, Refresher.US), (_PEER, Refresher.PEER)):
    _table[(R.WAITING, RS.STOP)] = (R.ENDED, (RA.DISARM,))
    _table[(R.REFRESHING, RS.STOP)] = (R.ENDED, (RA.DISARM,))
    for _answer in REFRESH_STIMULI[_role]:
        _table[(R.ENDED, _answer)] = (R.ENDED, ())
del _PEER[(R.REFRESHING, RS.STOP)]  # (the peer's role never sends)
REFRESH_TABLE: dict[tuple[Refresher, RefreshState, RefreshStimulus], RefreshRow] = {
    **{(Refresher.US, state, stimulus): row for (state, stimulus), row in _US.items()},
    **{(Refresher.PEER, state, stimulus): row for (state, stimulus), row in _PEER.items()},
}
del R, RS, RA, _US, _PEER, _OVER, _table, _role, _answer


def refresh_step(refresher: Refresher, state: RefreshState, stimulus: RefreshStimulus
                 ) -> RefreshRow:
    """The next state and the actions, in order, for `stimulus` in `state`."""
    try:
        return REFRESH_TABLE[(refresher, state, stimulus)]
    except KeyError:
        raise SessionError(
            f"refresh ({refresher.name}): no row for {stimulus.name} in {state.name}"
        ) from None


@mypyc_attr(allow_interpreted_subclasses=True)  # the session keeper extends it
class SessionRefresh:
    """One dialog's session timer, fed stimuli and the time: it keeps its state and the
    moment (`deadline`, on the adapter's clock) at which the adapter must feed it
    `DEADLINE`. `step` applies the row's timer actions itself and returns the whole row;
    the adapter runs `SEND` (first asking `sending` for the method) and `END`, feeds the
    answer to `answered`, and re-arms its timer at the new `deadline` after each step.
    `draw(low, high)` picks the random pauses (tests pass a fixed one)."""

    __slots__ = ("interval", "refresher", "allows_update", "state", "deadline", "method",
                 "owns_call_id", "_draw")

    def __init__(self, interval: float, we_refresh: bool, allows_update: bool, now: float,
                 draw: Callable[[float, float], float] = random.uniform) -> None:
        self.interval = interval
        self.refresher = Refresher.US if we_refresh else Refresher.PEER
        self.allows_update = allows_update  # the peer's Allow lists UPDATE
        self.state = RefreshState.WAITING
        self.deadline = now + (refresh_after(interval) if we_refresh
                               else expire_after(interval))
        self.method: RefreshMethod | None = None  # of the refresh out
        self.owns_call_id = False  # we sent the dialog's initial INVITE (§14.1's pause)
        self._draw = draw

    def step(self, stimulus: RefreshStimulus, now: float) -> tuple[RefreshAction, ...]:
        self.state, actions = refresh_step(self.refresher, self.state, stimulus)
        for action in actions:
            if action is RefreshAction.ARM_REFRESH:
                self.deadline = now + refresh_after(self.interval)
            elif action is RefreshAction.ARM_EXPIRY:
                self.deadline = now + expire_after(self.interval)
            elif action is RefreshAction.ARM_ANSWER:
                self.deadline = now + answer_timeout(self.interval)
            elif action is RefreshAction.ARM_GLARE:
                self.deadline = now + glare_retry_delay(self.owns_call_id, self._draw)
            elif action is RefreshAction.ARM_BUSY:
                self.deadline = now + self._draw(*BUSY_RETRY)
            elif action is RefreshAction.ARM_NOW:
                self.deadline = now
            elif action is RefreshAction.FORGET_UPDATE:
                self.allows_update = False
            elif action is RefreshAction.DISARM:
                self.deadline = float("inf")
        if self.state is not RefreshState.REFRESHING:
            self.method = None
        return actions

    def sending(self, has_sdp: bool, owns_call_id: bool) -> RefreshMethod:
        """The method of the refresh `SEND` asks for: UPDATE if the peer allows it, else
        a re-INVITE with our last SDP (`has_sdp`), else OPTIONS."""
        self.method = refresh_method(self.allows_update, has_sdp)
        self.owns_call_id = owns_call_id
        return self.method

    def answered(self, status: int | None, unreachable: bool, now: float
                 ) -> tuple[RefreshAction, ...]:
        """The final answer to our refresh (None: none came), as a step."""
        if self.method is None:  # not waiting for one: a stale answer changes nothing
            return ()
        outcome = refresh_outcome(self.method, status, unreachable)
        return self.step(_OUTCOME_STIMULUS[outcome], now)
