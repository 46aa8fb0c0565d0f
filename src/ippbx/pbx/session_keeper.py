"""The timers that end calls: session refreshes and expiries per leg, the longest call.

`SessionKeeper` is the asyncio adapter of `sip/session.py`'s `SessionRefresh`, one per
side of a bridged call that has a session timer (`session_timers.py` agrees on it):

* ippbx refreshes: every half interval an UPDATE (when the peer's Allow lists it) or a
  re-INVITE with the SDP that side last got from us, unchanged (an in-dialog OPTIONS
  when there is none, a late-offer call: a re-INVITE without SDP would be a new offer).
  A final answer 408 or 481, a refresh the transport could not deliver (a TCP/TLS peer
  whose connection is gone), or none within the timer's answer timeout, means the peer
  is gone: the call is torn down (BYE on both legs, the legs end with 408). 491 (glare
  with a re-INVITE of the call itself) is tried again after §14.1's pause; an UPDATE
  answered 405/501 makes the next try a re-INVITE, at once; a re-INVITE that finds
  another offer in progress on the dialog waits 2-4 s. Any other answer shows the peer
  is there.
* the peer refreshes: each re-INVITE or UPDATE from it (`refreshed`) restarts the expiry;
  without one for the interval less min(32 s, a third of it), the call is torn down.
* `[calls] max_duration`: the call is hung up (BYE on both legs) that long after it was
  answered.

The machine decides; the keeper keeps its `deadline` in a heap, sends the refresh it
asks for, feeds it the answer, and ends the call it says is over. A 2xx to a refreshing
re-INVITE is ACKed whenever it comes, even after the call ended or the wait gave up.

A side whose dialog is replaced (a transfer target answered) is refreshed by ippbx from
then on, whatever the first party agreed. `stop(bridge)` cancels a call's timers when it
ends. The timers of all calls live in one heap behind one loop timer: a loop TimerHandle
per side cost about 1.3 KB and 10 objects per held call (bench/held_profile.py).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from ippbx.pbx.session_timers import SessionTimer
from ippbx.sip.message import Response
from ippbx.sip.session import (
    OfferStimulus,
    RefreshAction,
    RefreshMethod,
    RefreshState,
    RefreshStimulus,
    SessionRefresh,
    Verdict,
)
from ippbx.sip.ua import UNREACHABLE

if TYPE_CHECKING:
    from ippbx.pbx.b2bua import B2BUA, Bridge, Side
    from ippbx.sip.dialog import Dialog

__all__ = ["SessionKeeper"]

log = logging.getLogger(__name__)


class _Timer:
    """One scheduled callback in the keeper's heap; `cancel()` makes it a no-op."""

    __slots__ = ("callback", "args", "keeper")

    def __init__(self, callback: Callable[..., None], args: tuple[object, ...],
                 keeper: SessionKeeper) -> None:
        self.callback: Callable[..., None] | None = callback
        self.args = args
        self.keeper: SessionKeeper | None = keeper  # counts its stale entries

    def cancel(self) -> None:
        keeper = self.keeper
        self.callback, self.args, self.keeper = None, (), None
        if keeper is not None:
            keeper._cancelled()


class _SideState(SessionRefresh):
    """One side's machine, with the agreement it runs and its place in the heap (one
    object per side: a held call keeps two)."""

    __slots__ = ("timer", "handle")

    def __init__(self, timer: SessionTimer, allows_update: bool, now: float) -> None:
        super().__init__(timer.interval, timer.we_refresh, allows_update, now)
        self.timer = timer
        self.handle: _Timer | None = None


@dataclass(eq=False, slots=True)
class _Kept:
    sides: dict[str, _SideState] = field(default_factory=dict)
    limit: _Timer | None = None


class SessionKeeper:
    """Session refreshes, expiries and the longest-call limit of the B2BUA's calls."""

    def __init__(self, b2bua: B2BUA, max_duration: float = 0.0) -> None:
        self.b2bua = b2bua
        self.max_duration = max_duration
        self._kept: dict[int, _Kept] = {}
        self.ended = 0  # calls torn down because a session expired or went unanswered
        self._heap: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()
        self._wakeup: asyncio.TimerHandle | None = None
        self._wakeup_at = math.inf
        self._stale = 0  # cancelled timers still in the heap

    def __len__(self) -> int:
        return len(self._kept)

    def start(self, bridge: Bridge, side: Side, timer: SessionTimer | None,
              allows_update: bool, max_duration: float | None = None) -> None:
        """Run `timer` for `side` of `bridge` (None: no session timer on that side).
        The call lasts `max_duration` s at most (None: `[calls] max_duration`; 0: no
        limit), counted from its first start."""
        kept = self._kept.setdefault(id(bridge), _Kept())
        limit = self.max_duration if max_duration is None else max_duration
        if kept.limit is None and limit > 0:
            kept.limit = self._later(limit, partial(self._limit_reached, limit), bridge)
        old = kept.sides.pop(side, None)
        if old is not None and old.handle is not None:
            old.handle.cancel()
        if timer is None:
            return
        state = kept.sides[side] = _SideState(timer, allows_update, self._now())
        self._arm(bridge, side, state)

    def replaced(self, bridge: Bridge, side: Side, timer: SessionTimer,
                 allows_update: bool) -> None:
        """`side` has a new dialog (a transfer target): keep it alive from now on."""
        if id(bridge) in self._kept:
            self.start(bridge, side, timer, allows_update)

    def timer(self, bridge: Bridge, side: Side) -> SessionTimer | None:
        kept = self._kept.get(id(bridge))
        state = kept.sides.get(side) if kept is not None else None
        return state.timer if state is not None else None

    def refreshed(self, bridge: Bridge, side: Side) -> None:
        """A refresh (re-INVITE or UPDATE answered 2xx) happened on `side`."""
        kept = self._kept.get(id(bridge))
        state = kept.sides.get(side) if kept is not None else None
        if state is not None:
            state.step(RefreshStimulus.PEER_REFRESHED, self._now())
            self._arm(bridge, side, state)

    def stop(self, bridge: Bridge) -> None:
        kept = self._kept.pop(id(bridge), None)
        if kept is None:
            return
        if kept.limit is not None:
            kept.limit.cancel()
        for state in kept.sides.values():
            state.step(RefreshStimulus.STOP, self._now())
            if state.handle is not None:
                state.handle.cancel()

    # -- internals ----------------------------------------------------------------------
    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _later(self, delay: float, callback: Callable[..., None], *args: object) -> _Timer:
        return self._at(self._now() + delay, callback, *args)

    def _at(self, when: float, callback: Callable[..., None], *args: object) -> _Timer:
        timer = _Timer(callback, args, self)
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        if when < self._wakeup_at:
            if self._wakeup is not None:
                self._wakeup.cancel()
            self._wakeup_at = when
            self._wakeup = asyncio.get_running_loop().call_at(when, self._run)
        return timer

    def _run(self) -> None:
        """Run the timers that are due, then sleep until the next one."""
        loop = asyncio.get_running_loop()
        self._wakeup, self._wakeup_at = None, math.inf
        heap = self._heap
        while heap and heap[0][0] <= loop.time():
            _, _, timer = heapq.heappop(heap)
            callback, args = timer.callback, timer.args
            if callback is None:
                self._stale -= 1
                continue
            timer.callback, timer.args, timer.keeper = None, (), None  # (it is out)
            try:
                callback(*args)
            except Exception:
                log.exception("session timer callback failed")
        while heap and heap[0][2].callback is None:
            heapq.heappop(heap)  # cancelled ones at the front need no wakeup
            self._stale -= 1
        if heap:
            self._wakeup_at = heap[0][0]
            self._wakeup = loop.call_at(self._wakeup_at, self._run)

    def _cancelled(self) -> None:
        """A timer in the heap was cancelled. Its entry stays until its time (up to
        `session_expires`, half an hour, after the call ended) unless the heap is swept:
        at a few hundred calls a second, the ended calls' entries would be millions."""
        self._stale += 1
        heap = self._heap
        if self._stale > 1024 and self._stale * 2 > len(heap):
            heap[:] = [entry for entry in heap if entry[2].callback is not None]
            heapq.heapify(heap)
            self._stale = 0

    def _arm(self, bridge: Bridge, side: Side, state: _SideState) -> None:
        """Wake up at the machine's deadline (nothing when it has none)."""
        if state.handle is not None:
            state.handle.cancel()
            state.handle = None
        if state.deadline != math.inf:
            state.handle = self._at(state.deadline, self._due, bridge, side, state)

    def _current(self, bridge: Bridge, side: Side, state: _SideState) -> bool:
        kept = self._kept.get(id(bridge))
        return (not bridge.ended and kept is not None and kept.sides.get(side) is state)

    def _due(self, bridge: Bridge, side: Side, state: _SideState) -> None:
        state.handle = None
        if not self._current(bridge, side, state):
            return
        was = state.state
        actions = state.step(RefreshStimulus.DEADLINE, self._now())
        if RefreshAction.END in actions:
            party = "caller" if side == "a" else "callee"
            if was is RefreshState.REFRESHING:
                log.info("call %s: the %s side did not answer its session refresh; "
                         "ending it", bridge.call.callid, party)
            else:
                log.info("call %s: no session refresh from the %s side in time; ending it",
                         bridge.call.callid, party)
            self._end(bridge, 408)
            return
        if RefreshAction.SEND in actions:
            self.b2bua.spawn(self._refresh(bridge, side, state))
        self._arm(bridge, side, state)

    def _limit_reached(self, limit: float, bridge: Bridge) -> None:
        if bridge.ended or id(bridge) not in self._kept:
            return
        log.info("call %s reached its longest duration (%g s); hanging up",
                 bridge.call.callid, limit)
        self._end(bridge, 200)

    def _end(self, bridge: Bridge, status: int) -> None:
        self.ended += 1
        self.stop(bridge)
        self.b2bua.teardown(bridge, status)

    async def _refresh(self, bridge: Bridge, side: Side, state: _SideState) -> None:
        """Send the refresh the machine asked for and feed it the answer."""
        dialog = bridge.dialog(side)
        theirs: Side = "b" if side == "a" else "a"  # (this side last got the other's SDP)
        body = b"" if state.allows_update else bridge.sdp.get(theirs, b"")
        method = state.sending(bool(body), dialog is not None and dialog.is_uac)
        if dialog is None or (method is RefreshMethod.INVITE and bridge.offer(
                side, OfferStimulus.OUR_OFFER) is not Verdict.ACCEPT):
            # (a re-INVITE is in progress on the dialog: one offer at a time)
            state.step(RefreshStimulus.BUSY, self._now())
            self._arm(bridge, side, state)
            return
        headers = [("Supported", "timer"),
                   ("Session-Expires", f"{int(state.interval)};refresher=uac")]
        if method is RefreshMethod.INVITE:
            headers.append(("Content-Type", bridge.content_type))
        sent = asyncio.ensure_future(
            self.b2bua.request(dialog, method.name, body, headers))
        if method is RefreshMethod.INVITE:  # (its offer is marked out above)
            sent.add_done_callback(partial(self._invite_answered, bridge, side, dialog))
        # the machine's deadline ends a wait that is too long; the wait itself lasts as
        # long as the transaction (its Timer B) or until the call ends
        response: Response = await asyncio.shield(sent)
        if not self._current(bridge, side, state):
            return
        actions = state.answered(response.status, response.reason == UNREACHABLE,
                                 self._now())
        if RefreshAction.END in actions:
            log.info("call %s: the %s side did not answer its session refresh (%s); "
                     "ending it", bridge.call.callid, "caller" if side == "a" else "callee",
                     response.status)
            self._end(bridge, 408)
        else:
            self._arm(bridge, side, state)

    def _invite_answered(self, bridge: Bridge, side: Side, dialog: Dialog,
                         task: asyncio.Future[Response]) -> None:
        """Our refreshing re-INVITE got its final answer: the dialog's offer is free, and
        a 2xx is ACKed, whether or not anyone still waits for it."""
        bridge.offer(side, OfferStimulus.OUR_ANSWERED)
        if not task.cancelled() and task.exception() is None and task.result().status < 300:
            self.b2bua.ack(dialog)
