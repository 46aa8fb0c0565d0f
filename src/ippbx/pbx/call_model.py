"""Calls and their legs as data: what a call is, whoever keeps it.

`Leg` is one SIP dialog of a call (who is on it, the numbers it carries, its state);
`Call` is the caller leg, the current callee leg, the branches ringing at once and what
the call is doing. They know nothing of the PBX that runs them, of SIP or of where they
are kept: this module imports nothing of `ippbx.pbx`, so a store other than the
in-memory `CallRegistry` (`pbx/calls.py`, behind its `CallStore` protocol) can hold
them. Two legs are the same leg when their ids are, two calls when their callids are
(not when they are the same object). Leg ids come from the process-wide generator of
`ippbx.ids`, which a node prefixes with its name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum

from ippbx.ids import new_id

__all__ = ["Call", "CallType", "Leg", "LegKind", "LegStatus", "UnknownCall", "leg_of"]


class LegStatus(StrEnum):
    """A leg's state as the API shows it (`Progress`, `Talking`, `Wait`), plus `Ended`."""

    PROGRESS = "Progress"
    TALKING = "Talking"
    WAIT = "Wait"
    ENDED = "Ended"


class LegKind(StrEnum):
    EXTENSION = "extension"
    TRUNK = "trunk"


class CallType(StrEnum):
    INTERNAL = "Internal"
    OUTBOUND = "Outbound"
    INBOUND = "Inbound"


@dataclass(slots=True, eq=False)
class Leg:
    """One SIP dialog of a call: who is on it, the numbers it carries, its state."""

    kind: LegKind
    from_number: str
    to_number: str
    extension: str | None = None
    trunk: str | None = None
    id: str = field(default_factory=new_id)
    status: LegStatus = LegStatus.PROGRESS
    created: float = field(default_factory=time.time)
    answered: float | None = None
    ended: float | None = None
    end_cause: int | None = None
    outgoing: bool = False  # we sent this leg's INVITE (set by the registry)
    ringing: float | None = None  # when the leg first got 180/183
    replaces: str = ""  # a transfer target: the id of the leg it took the place of

    @property
    def live(self) -> bool:
        return self.status is not LegStatus.ENDED

    def snapshot(self) -> Leg:
        """A copy of the leg as it is now (what a domain event carries)."""
        copy = _new(Leg)
        copy.kind = self.kind
        copy.from_number = self.from_number
        copy.to_number = self.to_number
        copy.extension = self.extension
        copy.trunk = self.trunk
        copy.id = self.id
        copy.status = self.status
        copy.created = self.created
        copy.answered = self.answered
        copy.ended = self.ended
        copy.end_cause = self.end_cause
        copy.outgoing = self.outgoing
        copy.ringing = self.ringing
        copy.replaces = self.replaces
        return copy

    def __eq__(self, other: object) -> bool:  # the same leg: the same id
        return self is other or (isinstance(other, Leg) and other.id == self.id)

    def __hash__(self) -> int:
        return hash(self.id)


@dataclass(slots=True, eq=False)
class Call:
    """A call: the caller leg, the current callee leg (if any), what was dialled."""

    caller: Leg
    dialled: str
    callee: Leg | None = None
    created: float = field(default_factory=time.time)
    answered: float | None = None
    callid: str = ""  # the first caller leg's id, kept when a transfer replaces that leg
    hangup_by: str = ""  # who ended it: "caller", "callee", "api" or "pbx" (timeouts…)
    inbound_route: str = ""  # the inbound route that admitted a call from a trunk
    outbound_route: str = ""  # the outbound route that sent it out through trunks
    recording: str = ""  # the recording's file name, when the call is recorded
    # the application of ippbx's the caller is in ("ivr:6000"; "" none): what
    # `inbound/query` shows as the callee while no party is
    application: str = ""
    origin: Leg = field(init=False)  # the first caller leg, kept when a transfer replaces it
    extensions: list[str] = field(default_factory=list)  # every extension that took part
    # callee legs ringing at once (a ring group, an extension's several phones): the
    # first to answer becomes the callee (None: no such legs; most calls have none)
    branches: list[Leg] | None = None

    def __post_init__(self) -> None:
        self.origin = self.caller
        if not self.callid:
            self.callid = self.caller.id

    def snapshot(self) -> Call:
        """A copy of the call and its legs as they are now (what a domain event carries):
        later changes of the call do not reach it, and nothing done to it reaches the
        call. A leg that holds two places (the origin is the caller) is one copy."""
        copy = _new(Call)
        caller, callee, origin = self.caller, self.callee, self.origin
        copy.caller = caller_copy = caller.snapshot()
        copy.callee = callee_copy = callee.snapshot() if callee is not None else None
        copy.origin = caller_copy if origin is caller else (
            callee_copy if origin is callee else origin.snapshot())
        branches = self.branches
        copy.branches = [leg.snapshot() for leg in branches] if branches is not None else None
        copy.dialled = self.dialled
        copy.created = self.created
        copy.answered = self.answered
        copy.callid = self.callid
        copy.hangup_by = self.hangup_by
        copy.inbound_route = self.inbound_route
        copy.outbound_route = self.outbound_route
        copy.recording = self.recording
        copy.application = self.application
        copy.extensions = list(self.extensions)
        return copy

    def __eq__(self, other: object) -> bool:  # the same call: the same callid
        return self is other or (isinstance(other, Call) and other.callid == self.callid)

    def __hash__(self) -> int:
        return hash(self.callid)

    @property
    def type(self) -> CallType:
        if self.caller.kind is LegKind.TRUNK and not self.caller.outgoing:
            return CallType.INBOUND  # (a trunk leg a transfer placed is no inbound call)
        if self.outbound_leg is not None:  # (a callee's, or a caller's ippbx called)
            return CallType.OUTBOUND
        return CallType.INTERNAL

    @property
    def outbound_leg(self) -> Leg | None:
        """The trunk leg we placed (the callee's, or a transferred caller's), if any."""
        for leg in (self.callee, self.caller):
            if leg is not None and leg.kind is LegKind.TRUNK and leg.outgoing:
                return leg
        return None

    @property
    def inbound_leg(self) -> Leg | None:
        caller = self.caller
        return caller if caller.kind is LegKind.TRUNK and not caller.outgoing else None

    def legs(self) -> list[Leg]:
        legs = [self.caller] if self.callee is None else [self.caller, self.callee]
        if self.branches:
            legs += self.branches
        return legs


_new = object.__new__


def leg_of(call: Call, leg_id: str) -> Leg:
    """The live leg `leg_id` of `call` (the registry's indexes say it is one of them)."""
    if call.caller.id == leg_id:
        return call.caller
    callee = call.callee
    if callee is not None and callee.id == leg_id:
        return callee
    for branch in call.branches or ():
        if branch.id == leg_id:
            return branch
    raise UnknownCall(leg_id)  # pragma: no cover - index and call disagree


class UnknownCall(KeyError):
    """No live call or leg with that id."""
