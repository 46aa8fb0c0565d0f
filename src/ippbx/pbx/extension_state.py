"""An extension's state, one machine for everyone: the configuration queries read it, the
call reports follow its transitions.

An extension has two independent parts of state. Its **registration** (a live binding or
not) comes from the registrar. Its **line** comes from the live calls the registry holds
for it:

| what the registry holds for the extension                     | line      |
|----------------------------------------------------------------|-----------|
| a call with any live leg in `Wait` (held, either side)          | `HOLD`    |
| its own legs are legs ippbx placed, all still in `Progress`      | `RINGING` |
| any other live leg (dialling out, talking)                      | `BUSY`    |
| no live call                                                    | `IDLE`    |

With several calls at once the strongest wins: Busy, then Hold, then Ringing (a phone
talking on one line and ringing on another is busy). A leg ippbx placed is a callee leg,
a transfer target or the first party of a click-to-call: while it is in `Progress`, that
phone is ringing.

`state(number)` is what a query shows: the line when it is not idle, else `REGISTERED` or
`UNREGISTERED`. `changes(event)` is what the reports show: after each domain event, the
extensions whose line changed since the last change reported (a registration change is a
change of its own: `REGISTERED` / `UNREGISTERED`). The API layer maps the states to each
vendor's words (`BUSY` is `InUse` for OpenVox and `Busy` for Yeastar; an unregistered
extension is `Unavailable` in the queries).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from ippbx.pbx import events
from ippbx.pbx.calls import Call, CallRegistry, LegStatus


class ExtState(StrEnum):
    """The states of an extension (neutral names; each API maps them)."""

    UNREGISTERED = "Unregistered"
    REGISTERED = "Registered"
    IDLE = "Idle"
    RINGING = "Ringing"
    BUSY = "Busy"
    HOLD = "Hold"


_RANK = {ExtState.IDLE: 0, ExtState.RINGING: 1, ExtState.HOLD: 2, ExtState.BUSY: 3}


def line_in_call(call: Call, number: str) -> ExtState | None:
    """What `call` makes extension `number`'s line (Ringing, Busy, Hold); None if the
    extension has no live leg in it."""
    legs = call.legs()
    own = [leg for leg in legs if leg.live and leg.extension == number]
    if not own:
        return None
    if any(leg.live and leg.status is LegStatus.WAIT for leg in legs):
        return ExtState.HOLD
    if all(leg.outgoing and leg.status is LegStatus.PROGRESS for leg in own):
        return ExtState.RINGING
    return ExtState.BUSY


class ExtensionStates:
    """The state of every extension, from the live calls and the registrar."""

    def __init__(
        self,
        registry: CallRegistry,
        is_registered: Callable[[str], bool] | None = None,
    ) -> None:
        self.registry = registry
        self.is_registered = is_registered
        self._reported: dict[str, ExtState] = {}  # last line reported; absent = IDLE

    def line(self, number: str) -> tuple[ExtState, Call | None]:
        """The extension's line and the call that decides it (None when idle)."""
        best: tuple[ExtState, Call | None] = (ExtState.IDLE, None)
        for call in self.registry.by_extension(number):
            state = line_in_call(call, number)
            if state is not None and _RANK[state] > _RANK[best[0]]:
                best = (state, call)
        return best

    def state(self, number: str) -> ExtState:
        """What a query shows: the line, or the registration when the line is idle."""
        line, _ = self.line(number)
        if line is not ExtState.IDLE:
            return line
        if self.is_registered is not None and self.is_registered(number):
            return ExtState.REGISTERED
        return ExtState.UNREGISTERED

    def changes(self, event: events.DomainEvent) -> list[tuple[str, ExtState]]:
        """The extensions whose state `event` changed, with their new state, in the order
        of the call's legs."""
        if isinstance(event, events.ExtensionRegistration):
            state = ExtState.REGISTERED if event.registered else ExtState.UNREGISTERED
            return [(event.extension, state)]
        call: Call | None = getattr(event, "call", None)
        if call is None:
            return []
        numbers = list(call.extensions)
        leg = getattr(event, "leg", None)
        if leg is not None and leg.extension is not None and leg.extension not in numbers:
            numbers.append(leg.extension)
        out: list[tuple[str, ExtState]] = []
        for number in numbers:
            line, _ = self.line(number)
            if self._reported.get(number, ExtState.IDLE) is line:
                continue
            if line is ExtState.IDLE:
                self._reported.pop(number, None)
            else:
                self._reported[number] = line
            out.append((number, line))
        return out
