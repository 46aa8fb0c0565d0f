"""The live-call store: every call in progress, its legs, and O(1) lookups by any id.

A call has a `callid` (its caller leg's id) and up to two legs at a time: the caller's
(an extension or an inbound trunk) and the callee's (an extension or an outbound trunk).
A callee leg that fails may be replaced by another (trunk failover). While a ring group
or an extension with several phones rings, the call has several callee legs at once
(`branches`); the one that answers becomes the callee (`elect`). The call leaves the
registry when its caller leg has ended and no callee leg is live. Every change is
published as a domain event (`ippbx.pbx.events`) to the subscribers, in order; an event
carries a snapshot of the call (and of the leg it is about, one of that snapshot's
legs), never the live objects, so what a subscriber keeps or does with it cannot reach
the store, and a store on another node could send it over the wire.

`CallStore` is what the PBX, the API and the reports ask of the store: every change to
a call and every lookup goes through it. `CallRegistry` is the in-memory one; the calls
themselves are plain data (`pbx/call_model.py`), so a store shared by several nodes can
take its place.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from ippbx.pbx import events
from ippbx.pbx.call_model import (
    Call,
    CallType,
    Leg,
    LegKind,
    LegStatus,
    UnknownCall,
    leg_of,
)

__all__ = ["Call", "CallRegistry", "CallStore", "CallType", "Leg", "LegKind", "LegStatus",
           "Subscriber", "UnknownCall"]

log = logging.getLogger(__name__)


def _seen(call: Call, leg: Leg) -> tuple[Call, Leg]:
    """A snapshot of `call` and, in it, the snapshot of `leg` (a copy of its own if the
    call no longer holds it)."""
    view = call.snapshot()
    leg_id = leg.id
    for copy in (view.caller, view.callee, view.origin, *(view.branches or ())):
        if copy is not None and copy.id == leg_id:
            return view, copy
    return view, leg.snapshot()


Subscriber = Callable[[events.DomainEvent], None]

# the fields of a call its runners note on it (`CallStore.note`); everything else a call
# holds changes through the store's own methods, which publish the change
NOTED = frozenset({"application", "recording", "hangup_by", "inbound_route",
                   "outbound_route", "answered"})


class CallStore(Protocol):
    """Live calls: the changes (each published to the subscribers as a domain event, in
    order) and the lookups. Calls and legs are named by their ids."""

    changes: int  # counts every change published (readers cache by it)

    def subscribe(self, fn: Subscriber, *kinds: type[events.DomainEvent]
                  ) -> Callable[[], None]: ...

    # -- changes
    def start_call(self, caller: Leg, dialled: str) -> Call: ...

    def add_callee(self, call: Call, leg: Leg) -> None: ...

    def add_branch(self, call: Call, leg: Leg) -> None: ...

    def elect(self, call: Call, leg: Leg) -> None: ...

    def replace_leg(self, call: Call, old_id: str, leg: Leg, cause: int = 200) -> None: ...

    def swap_sides(self, call: Call) -> None: ...

    def transferred(self, call: Call, leg: Leg, target: str) -> None: ...

    def set_status(self, leg_id: str, status: LegStatus, now: float | None = None) -> None: ...

    def ringing(self, leg_id: str, now: float | None = None) -> None: ...

    def end_leg(self, leg_id: str, cause: int = 200, now: float | None = None) -> None: ...

    def note(self, call: Call, **fields: object) -> None: ...

    def hung_up_by(self, call: Call, who: str) -> None: ...

    def dtmf(self, callid: str, leg_id: str, digit: str) -> None: ...

    def prompt_ended(self, callid: str, leg_id: str, prompt: str) -> None: ...

    def inbound_held(self, call: Call) -> None: ...

    def inbound_admitted(self, call: Call) -> None: ...

    def registration_changed(self, extension: str, registered: bool) -> None: ...

    # -- lookups
    def __len__(self) -> int: ...

    def calls(self) -> list[Call]: ...

    def leg_count(self) -> int: ...

    def has_leg(self, leg_id: str) -> bool: ...

    def get(self, callid: str) -> Call | None: ...

    def leg(self, leg_id: str) -> tuple[Call, Leg]: ...

    def find(self, any_id: str) -> Call | None: ...

    def by_outboundid(self, outboundid: str) -> Call | None: ...

    def by_inboundid(self, inboundid: str) -> Call | None: ...

    def by_extension(self, number: str) -> list[Call]: ...

    def busy_extensions(self) -> int: ...

    def outbound(self, ids: Iterable[str] | None = None) -> list[Call]: ...

    def outbound_legs(self, ids: Iterable[str] | None = None) -> list[Leg]: ...

    def inbound(self, ids: Iterable[str] | None = None) -> list[Call]: ...


class CallRegistry:
    """In-memory index of live calls by callid, leg id, outboundid, inboundid and extension."""

    def __init__(self) -> None:
        self._calls: dict[str, Call] = {}
        self._by_leg: dict[str, Call] = {}
        self._outbound: dict[str, Call] = {}
        self._inbound: dict[str, Call] = {}
        self._by_ext: dict[str, dict[str, Call]] = {}
        # (subscriber, the event types it takes; () = every event), in subscription order
        self._subscribers: list[tuple[Subscriber, tuple[type, ...]]] = []
        self._routes: dict[type, tuple[Subscriber, ...]] = {}  # event type → its subscribers
        self.changes = 0  # counts every change published (readers cache by it)

    # -- events -------------------------------------------------------------------------
    def subscribe(self, fn: Subscriber, *kinds: type[events.DomainEvent]
                  ) -> Callable[[], None]:
        """Call `fn` with every domain event, or only with those of the types `kinds`
        (a subscriber that takes a few kinds is not called for the others: most events
        of a call matter to few subscribers); returns a function that unsubscribes."""
        entry = (fn, kinds)
        self._subscribers.append(entry)
        self._routes.clear()

        def unsubscribe() -> None:
            self._subscribers.remove(entry)
            self._routes.clear()

        return unsubscribe

    def _publish(self, event: events.DomainEvent) -> None:
        self.changes += 1
        kind = type(event)
        route = self._routes.get(kind)
        if route is None:  # (once per event type and set of subscribers)
            route = self._routes[kind] = tuple(
                fn for fn, kinds in self._subscribers if not kinds or issubclass(kind, kinds))
        for fn in route:
            try:
                fn(event)
            except Exception:  # a broken subscriber must not break call handling
                log.exception("call event subscriber failed on %s", kind.__name__)

    # -- changes ------------------------------------------------------------------------
    def start_call(self, caller: Leg, dialled: str) -> Call:
        call = Call(caller=caller, dialled=dialled, created=caller.created)
        self._calls[call.callid] = call
        self._index_leg(call, caller)
        self._publish(events.CallCreated(call.snapshot()))
        return call

    def add_callee(self, call: Call, leg: Leg) -> None:
        """Make `leg` the call's callee leg (a previous callee leg must have ended)."""
        if call.callid not in self._calls:
            raise UnknownCall(call.callid)
        if call.callee is not None and call.callee.live:
            raise ValueError(f"call {call.callid} already has a live callee leg")
        call.callee = leg
        leg.outgoing = True
        self._index_leg(call, leg)
        self._publish(events.LegAdded(*_seen(call, leg)))

    def add_branch(self, call: Call, leg: Leg) -> None:
        """A callee leg ringing beside others (no live callee leg meanwhile); `elect`
        makes the one that answers the callee."""
        if call.callid not in self._calls:
            raise UnknownCall(call.callid)
        if call.branches is None:
            call.branches = []
        call.branches.append(leg)
        leg.outgoing = True
        self._index_leg(call, leg)
        self._publish(events.LegAdded(*_seen(call, leg)))

    def elect(self, call: Call, leg: Leg) -> None:
        """The branch `leg` answered: it is the call's callee now (the other branches
        must be ended by whoever rang them)."""
        if call.branches and leg in call.branches:
            call.branches.remove(leg)
            if not call.branches:
                call.branches = None
        call.callee = leg

    def replace_leg(self, call: Call, old_id: str, leg: Leg, cause: int = 200) -> None:
        """Put `leg` (placed by us) in the place of the live leg `old_id` (a transfer):
        the old leg ends, the call and its callid go on."""
        callee = call.callee
        old = call.caller if call.caller.id == old_id else (
            callee if callee is not None and callee.id == old_id else None
        )
        if old is None or call.callid not in self._calls:
            raise UnknownCall(old_id)
        was_live = old.live
        if was_live:  # (an earlier attempt that failed has ended already)
            old.status = LegStatus.ENDED
            old.ended = time.time()
            old.end_cause = cause
            self._unindex_leg(call, old)
        if was_live:  # published while the old leg still holds its place in the call
            self._publish(events.LegEnded(*_seen(call, old), cause))
        leg.outgoing = True
        leg.replaces = old.id
        if old == call.caller:
            call.caller = leg
        else:
            call.callee = leg
        self._index_leg(call, leg)
        self._publish(events.LegAdded(*_seen(call, leg)))

    def swap_sides(self, call: Call) -> None:
        """The callee leg takes the caller's place and the caller's leg the callee's: a
        party a transfer hands to what ippbx answers itself (an IVR, a ring group) is
        served as the call's caller (`pbx/control.py`). No leg changes: nothing is
        published."""
        if call.callee is None or call.callid not in self._calls:
            raise UnknownCall(call.callid)
        call.caller, call.callee = call.callee, call.caller

    def note(self, call: Call, **fields: object) -> None:
        """Note what the call is doing (`NOTED`: its application, recording, routes, who
        hung up, when it was answered); published to nobody."""
        unknown = fields.keys() - NOTED
        if unknown:
            raise ValueError(f"not a noted field of a call: {sorted(unknown)}")
        for name, value in fields.items():
            setattr(call, name, value)

    def hung_up_by(self, call: Call, who: str) -> None:
        """Note who ended the call ("caller", "callee", "api", "pbx"), unless noted."""
        if not call.hangup_by:
            call.hangup_by = who

    def transferred(self, call: Call, leg: Leg, target: str) -> None:
        """A party transferred the call from its phone (reported as `Tranfer`)."""
        self._publish(events.CallTransferred(*_seen(call, leg), target))

    def set_status(self, leg_id: str, status: LegStatus, now: float | None = None) -> None:
        call, leg = self.leg(leg_id)
        if status is LegStatus.ENDED:
            raise ValueError("use end_leg() to end a leg")
        old = leg.status
        if old is status:
            return
        leg.status = status
        if status is LegStatus.TALKING and leg.answered is None:
            leg.answered = time.time() if now is None else now
            if call.answered is None and leg == call.callee:
                call.answered = leg.answered
        self._publish(events.LegStatusChanged(*_seen(call, leg), old))

    def ringing(self, leg_id: str, now: float | None = None) -> None:
        """The leg `leg_id` we placed (a callee, a transfer target) got 180/183; published
        once per leg, unknown ids ignored."""
        try:
            call, leg = self.leg(leg_id)
        except UnknownCall:
            return
        if leg.ringing is not None or not leg.outgoing:
            return
        if leg.status is not LegStatus.PROGRESS:
            return
        leg.ringing = time.time() if now is None else now
        self._publish(events.LegRinging(*_seen(call, leg)))

    def dtmf(self, callid: str, leg_id: str, digit: str) -> None:
        """A party of call `callid` (leg `leg_id`) sent a DTMF digit; unknown ids ignored
        (a call that just ended)."""
        call = self._calls.get(callid)
        owner = self._by_leg.get(leg_id)  # (the call the leg is in)
        if call is None or owner is None or owner.callid != callid:
            return
        self._publish(events.DtmfPressed(*_seen(call, leg_of(call, leg_id)), digit))

    def prompt_ended(self, callid: str, leg_id: str, prompt: str) -> None:
        """The prompts `prompt` played to leg `leg_id` of call `callid` have ended."""
        call = self._calls.get(callid)
        if call is None or (owner := self._by_leg.get(leg_id)) is None \
                or owner.callid != callid:
            return
        self._publish(events.PromptEnded(*_seen(call, leg_of(call, leg_id)), prompt))

    def inbound_held(self, call: Call) -> None:
        """Inbound call `call` waits for an application to accept or refuse it."""
        self._publish(events.InboundHeld(*_seen(call, call.caller)))

    def inbound_admitted(self, call: Call) -> None:
        """Held inbound call `call` is let through to its destination."""
        self._publish(events.InboundAdmitted(*_seen(call, call.caller)))

    def registration_changed(self, extension: str, registered: bool) -> None:
        """Publish an extension's registration change (the registrar's `on_change` hook)."""
        self._publish(events.ExtensionRegistration(extension, registered))

    def end_leg(self, leg_id: str, cause: int = 200, now: float | None = None) -> None:
        """End one leg; the call leaves the registry once no leg of it is live."""
        call, leg = self.leg(leg_id)
        leg.status = LegStatus.ENDED
        leg.ended = time.time() if now is None else now
        leg.end_cause = cause
        self._unindex_leg(call, leg)
        self._publish(events.LegEnded(*_seen(call, leg), cause))
        if call.branches and leg in call.branches:
            call.branches.remove(leg)
            if not call.branches:
                call.branches = None
            if call.callee is None:  # (the call's records name a party it rang)
                call.callee = leg
        if not any(other.live for other in call.legs()):
            del self._calls[call.callid]
            self._publish(events.CallEnded(call.snapshot()))

    def _index_leg(self, call: Call, leg: Leg) -> None:
        self._by_leg[leg.id] = call
        if leg.kind is LegKind.TRUNK:
            (self._outbound if leg.outgoing else self._inbound)[leg.id] = call
        if leg.extension is not None:
            self._by_ext.setdefault(leg.extension, {})[leg.id] = call
            if leg.extension not in call.extensions:
                call.extensions.append(leg.extension)

    def _unindex_leg(self, call: Call, leg: Leg) -> None:
        self._by_leg.pop(leg.id, None)
        self._outbound.pop(leg.id, None)
        self._inbound.pop(leg.id, None)
        if leg.extension is not None:
            legs = self._by_ext.get(leg.extension)
            if legs is not None:
                legs.pop(leg.id, None)
                if not legs:
                    del self._by_ext[leg.extension]

    # -- lookups ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._calls)

    def calls(self) -> list[Call]:
        return list(self._calls.values())

    def leg_count(self) -> int:
        """How many legs are live."""
        return len(self._by_leg)

    def has_leg(self, leg_id: str) -> bool:
        return leg_id in self._by_leg

    def get(self, callid: str) -> Call | None:
        return self._calls.get(callid)

    def leg(self, leg_id: str) -> tuple[Call, Leg]:
        call = self._by_leg.get(leg_id)
        if call is None:
            raise UnknownCall(leg_id)
        return call, leg_of(call, leg_id)

    def find(self, any_id: str) -> Call | None:
        """The call a callid or any live leg id belongs to."""
        return self._calls.get(any_id) or self._by_leg.get(any_id)

    def by_outboundid(self, outboundid: str) -> Call | None:
        return self._outbound.get(outboundid)

    def by_inboundid(self, inboundid: str) -> Call | None:
        return self._inbound.get(inboundid)

    def by_extension(self, number: str) -> list[Call]:
        """Live calls with a leg on extension `number` (a call appears once)."""
        legs = self._by_ext.get(number)
        if not legs:
            return []
        return list({id(c): c for c in legs.values()}.values())

    def busy_extensions(self) -> int:
        return len(self._by_ext)

    def outbound(self, ids: Iterable[str] | None = None) -> list[Call]:
        """Live outbound calls: all of them in creation order, or those listed, in order."""
        if ids is None:
            return list(self._outbound.values())
        return [c for i in ids if (c := self._outbound.get(i)) is not None]

    def outbound_legs(self, ids: Iterable[str] | None = None) -> list[Leg]:
        """Live trunk legs we placed: all in creation order, or those listed, in order."""
        found = self._outbound.items() if ids is None else (
            (i, c) for i in ids if (c := self._outbound.get(i)) is not None
        )
        return [leg_of(call, leg_id) for leg_id, call in found]

    def inbound(self, ids: Iterable[str] | None = None) -> list[Call]:
        """Live inbound calls: all of them in creation order, or those listed, in order."""
        if ids is None:
            return list(self._inbound.values())
        return [c for i in ids if (c := self._inbound.get(i)) is not None]
