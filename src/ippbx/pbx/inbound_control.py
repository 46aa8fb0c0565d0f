"""Control Inbound Call (Yeastar's feature): inbound calls held until an application
accepts or refuses them.

An inbound route with `control_inbound_call` has the B2BUA hand each call it admits to
`InboundControl.hold` before the call goes to the route's destination. The caller hears
ringing meanwhile (the B2BUA's 180). The registry publishes `InboundHeld` (the `Invite`
report) and the call waits, at most `[calls] inbound_control_seconds` (10 s, the
vendor's fixed window), for the first of:

- `accept(inboundid)` (inbound/accept): the call goes on to its destination like any
  other; accepting does not answer it. `InboundAdmitted` (the `Incoming` report) is
  published first.
- `refuse(inboundid)` (inbound/refuse): the B2BUA rejects the call (603 Decline).
- the window passing: the call is accepted by default, `InboundAdmitted` as for accept.
- the caller giving up (CANCEL) or an API hang-up: the wait ends at once and the call
  ends as any call its caller cancelled (487); nothing more is published.

`accept`/`refuse` raise `InboundControlError`: `NO_CALL` when no live call with that
inbound id was ever held (an unknown id, an ended call, a call on a route without
control: the API's 10007); `TOO_LATE` when the call was held, is still live, and its
decision is made (accepted, refused, timed out, or its caller gave up: 10016). Nothing
here knows SIP or HTTP: the B2BUA supplies what ends a wait early, the API maps the
errors to errnos.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from enum import StrEnum
from typing import Any

from ippbx.pbx import events
from ippbx.pbx.calls import Call, CallStore

DEFAULT_WINDOW = 10.0  # seconds, as the vendor has it (and not configurable there)


class Decision(StrEnum):
    """How a held inbound call's wait ended."""

    ACCEPTED = "accepted"  # an application accepted it
    REFUSED = "refused"  # an application refused it
    TIMED_OUT = "timed out"  # no decision in the window: accepted by default
    GAVE_UP = "gave up"  # the caller cancelled, or the call was hung up, while held

    @property
    def admitted(self) -> bool:
        """The call goes on to its destination."""
        return self in (Decision.ACCEPTED, Decision.TIMED_OUT)


class InboundControlError(Exception):
    """An accept or refuse that cannot be done; `reason` says why."""

    NO_CALL = "no call"
    TOO_LATE = "too late"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InboundControl:
    """The inbound calls waiting for a decision, and those whose decision is made."""

    def __init__(self, registry: CallStore, window: float = DEFAULT_WINDOW) -> None:
        self.registry = registry
        self.window = window
        self._waiting: dict[str, asyncio.Future[Decision]] = {}  # inbound id → decision
        self._decided: set[str] = set()  # inbound ids of held calls, decided, still live
        registry.subscribe(self._on_event, events.LegEnded)

    def __len__(self) -> int:
        """How many calls wait for a decision now."""
        return len(self._waiting)

    @property
    def remembered(self) -> int:
        """How many live calls are remembered as decided (for the 10016 answer)."""
        return len(self._decided)

    def _on_event(self, event: events.DomainEvent) -> None:
        if self._decided and isinstance(event, events.LegEnded):
            self._decided.discard(event.leg.id)

    async def hold(self, call: Call, gave_up: Collection[asyncio.Future[Any]]) -> Decision:
        """Hold inbound call `call` for a decision: publish `InboundHeld`, wait for
        accept/refuse, any of `gave_up` (the caller's CANCEL, a hang-up) or the window,
        whichever comes first; publish `InboundAdmitted` if the call goes on."""
        leg = call.inbound_leg
        if leg is None:
            raise ValueError(f"call {call.callid} is no inbound call")
        decision: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._waiting[leg.id] = decision
        try:
            self.registry.inbound_held(call)
            done, _ = await asyncio.wait({decision, *gave_up}, timeout=self.window,
                                         return_when=asyncio.FIRST_COMPLETED)
            if any(waiter in done for waiter in gave_up):
                outcome = Decision.GAVE_UP
            elif decision.done():  # (also one made as the window closed)
                outcome = decision.result()
            else:
                outcome = Decision.TIMED_OUT
        finally:
            del self._waiting[leg.id]
            decision.cancel()  # (no-op once decided)
            if self.registry.by_inboundid(leg.id) is call:  # forgotten when its leg ends
                self._decided.add(leg.id)
        if outcome.admitted:
            self.registry.inbound_admitted(call)
        return outcome

    def accept(self, inboundid: str) -> None:
        """Let held call `inboundid` through to its destination."""
        self._decide(inboundid, Decision.ACCEPTED)

    def refuse(self, inboundid: str) -> None:
        """Have held call `inboundid` rejected."""
        self._decide(inboundid, Decision.REFUSED)

    def _decide(self, inboundid: str, decision: Decision) -> None:
        waiting = self._waiting.get(inboundid)
        if waiting is not None and not waiting.done():
            waiting.set_result(decision)
            return
        if waiting is not None or inboundid in self._decided:
            raise InboundControlError(InboundControlError.TOO_LATE)
        raise InboundControlError(InboundControlError.NO_CALL)
