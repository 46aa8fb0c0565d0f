"""The timers that end calls: session refreshes and expiries per leg, the longest call.

`SessionKeeper` runs what `session_timers.py` agreed for each side of a bridged call (the
timers and the requests here; which request refreshes and what its answer means are
`sip/session.py`'s `refresh_method` and `refresh_outcome`):

* ippbx refreshes (`we_refresh`): every half interval an UPDATE (when the peer's Allow
  lists it) or a re-INVITE with the SDP that side last got from us, unchanged (an
  in-dialog OPTIONS when there is none, a late-offer call: a re-INVITE without SDP would
  be a new offer). A final
  answer 408 or 481, a refresh the transport could not deliver (a TCP/TLS peer whose
  connection is gone), or none within the timer's `answer_timeout`, means the peer is gone:
  the call is torn down (BYE on both legs, the legs end with 408). 491 (glare with a
  re-INVITE of the call itself) is tried again 2-4 s later; an UPDATE answered 405/501
  makes the next try a re-INVITE. Any other answer shows the peer is there.
* the peer refreshes: each re-INVITE or UPDATE from it (`refreshed`) restarts the expiry;
  without one for the interval less min(32 s, a third of it), the call is torn down.
* `[calls] max_duration`: the call is hung up (BYE on both legs) that long after it was
  answered.

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
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from ippbx.pbx.session_timers import SessionTimer
from ippbx.sip.message import Response
from ippbx.sip.session import (
    OfferStimulus,
    RefreshMethod,
    RefreshOutcome,
    Verdict,
    glare_retry_delay,
    refresh_method,
    refresh_outcome,
)
from ippbx.sip.ua import UNREACHABLE

if TYPE_CHECKING:
    from ippbx.pbx.b2bua import B2BUA, Bridge, Side

__all__ = ["SessionKeeper"]

log = logging.getLogger(__name__)


class _Timer:
    """One scheduled callback in the keeper's heap; `cancel()` makes it a no-op."""

    __slots__ = ("callback", "args")

    def __init__(self, callback: Callable[..., None], args: tuple[object, ...]) -> None:
        self.callback: Callable[..., None] | None = callback
        self.args = args

    def cancel(self) -> None:
        self.callback, self.args = None, ()


@dataclass(eq=False, slots=True)
class _SideState:
    timer: SessionTimer
    allows_update: bool
    handle: _Timer | None = None


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
        state = kept.sides[side] = _SideState(timer, allows_update)
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
            self._arm(bridge, side, state)

    def stop(self, bridge: Bridge) -> None:
        kept = self._kept.pop(id(bridge), None)
        if kept is None:
            return
        if kept.limit is not None:
            kept.limit.cancel()
        for state in kept.sides.values():
            if state.handle is not None:
                state.handle.cancel()

    # -- internals ----------------------------------------------------------------------
    def _later(self, delay: float, callback: Callable[..., None], *args: object) -> _Timer:
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        timer = _Timer(callback, args)
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        if when < self._wakeup_at:
            if self._wakeup is not None:
                self._wakeup.cancel()
            self._wakeup_at = when
            self._wakeup = loop.call_at(when, self._run)
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
                continue
            timer.cancel()
            try:
                callback(*args)
            except Exception:
                log.exception("session timer callback failed")
        while heap and heap[0][2].callback is None:
            heapq.heappop(heap)  # cancelled ones at the front need no wakeup
        if heap:
            self._wakeup_at = heap[0][0]
            self._wakeup = loop.call_at(self._wakeup_at, self._run)

    def _arm(self, bridge: Bridge, side: Side, state: _SideState, delay: float | None = None
             ) -> None:
        if state.handle is not None:
            state.handle.cancel()
        timer = state.timer
        if timer.we_refresh:
            wait = timer.refresh_after if delay is None else delay
            state.handle = self._later(wait, self._refresh_due, bridge, side, state)
        else:
            state.handle = self._later(timer.expire_after, self._expired, bridge, side)

    def _current(self, bridge: Bridge, side: Side, state: _SideState) -> bool:
        kept = self._kept.get(id(bridge))
        return (not bridge.ended and kept is not None and kept.sides.get(side) is state)

    def _expired(self, bridge: Bridge, side: Side) -> None:
        if bridge.ended or id(bridge) not in self._kept:
            return
        log.info("call %s: no session refresh from the %s side in time; ending it",
                 bridge.call.callid, "caller" if side == "a" else "callee")
        self._end(bridge, 408)

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

    def _refresh_due(self, bridge: Bridge, side: Side, state: _SideState) -> None:
        state.handle = None
        if self._current(bridge, side, state):
            self.b2bua.spawn(self._refresh(bridge, side, state))

    async def _refresh(self, bridge: Bridge, side: Side, state: _SideState) -> None:
        dialog = bridge.dialog(side)
        if dialog is None:
            return
        ua = self.b2bua.ua
        timer = state.timer
        headers = [("Supported", "timer"),
                   ("Session-Expires", f"{int(timer.interval)};refresher=uac")]
        body = b"" if state.allows_update else bridge.sdp.get("b" if side == "a" else "a", b"")
        method = refresh_method(state.allows_update, bool(body))
        if method is RefreshMethod.INVITE:
            if bridge.offer(side, OfferStimulus.OUR_OFFER) is not Verdict.ACCEPT:
                self._arm(bridge, side, state, delay=random.uniform(2.0, 4.0))
                return  # one INVITE at a time on a dialog: a re-INVITE is in progress
            headers.append(("Content-Type", bridge.content_type))
        sent = asyncio.ensure_future(ua.request_in_dialog(dialog, method.name, body, headers))
        if method is RefreshMethod.INVITE:  # (its offer is marked out above)

            def done(_: object) -> None:
                bridge.offer(side, OfferStimulus.OUR_ANSWERED)

            sent.add_done_callback(done)
        try:
            response: Response | None = await asyncio.wait_for(asyncio.shield(sent),
                                                                timer.answer_timeout)
        except TimeoutError:
            response = None
            if method is RefreshMethod.INVITE:  # a 2xx that comes later is still ACKed
                sent.add_done_callback(lambda task: self._late_ack(task, dialog))
        if not self._current(bridge, side, state):
            return
        if method is RefreshMethod.INVITE and response is not None and response.status < 300:
            ua.ack(dialog)
        outcome = refresh_outcome(method, response.status if response is not None else None,
                                  response is not None and response.reason == UNREACHABLE)
        if outcome is RefreshOutcome.GONE:
            log.info("call %s: the %s side did not answer its session refresh (%s); "
                     "ending it", bridge.call.callid, "caller" if side == "a" else "callee",
                     response.status if response is not None else "no answer")
            self._end(bridge, 408)
        elif outcome is RefreshOutcome.GLARE:  # (§14.1's pause, as for any re-INVITE of ours)
            self._arm(bridge, side, state, delay=glare_retry_delay(dialog.is_uac))
        elif outcome is RefreshOutcome.NO_UPDATE:
            state.allows_update = False
            self._arm(bridge, side, state, delay=0.0)
        else:
            self._arm(bridge, side, state)

    def _late_ack(self, task: asyncio.Future[Response], dialog: object) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        if task.result().status < 300:
            self.b2bua.ua.ack(dialog)  # type: ignore[arg-type]
