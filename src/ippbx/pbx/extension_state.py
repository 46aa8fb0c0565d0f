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

from collections import Counter
from collections.abc import Callable
from enum import StrEnum
from typing import get_args

from ippbx.pbx import events
from ippbx.pbx.calls import Call, CallStore, LegStatus


class ExtState(StrEnum):
    """The states of an extension (neutral names; each API maps them)."""

    UNREGISTERED = "Unregistered"
    REGISTERED = "Registered"
    IDLE = "Idle"
    RINGING = "Ringing"
    BUSY = "Busy"
    HOLD = "Hold"



def line_in_call(call: Call, number: str) -> ExtState | None:
    """What `call` makes extension `number`'s line (Ringing, Busy, Hold); None if the
    extension has no live leg in it."""
    own = held = False
    ringing = True  # (while every live leg of its own is one ippbx placed, in Progress)
    for leg in call.legs():  # (one loop over two legs, most calls)
        status = leg.status
        if status is LegStatus.ENDED:
            continue
        if status is LegStatus.WAIT:
            held = True
        if leg.extension == number:
            own = True
            if not (leg.outgoing and status is LegStatus.PROGRESS):
                ringing = False
    if not own:
        return None
    if held:
        return ExtState.HOLD
    return ExtState.RINGING if ringing else ExtState.BUSY


# The events after which a line may differ: the others (a 180, a DTMF digit, a prompt's
# end, a registration) change no leg's liveness, status or extension, nor a call's
# extensions, so the lines are not worked out again for them.
_LINE_EVENTS: frozenset[type] = frozenset(get_args(events.DomainEvent)) - {
    events.LegRinging, events.DtmfPressed, events.PromptEnded, events.ExtensionRegistration}


class ExtensionStates:
    """The state of every extension, from the live calls and the registrar.

    It follows the registry's events itself (it subscribes when made): for each event it
    recomputes the line of the call's extensions *in that call* (`line_in_call`, a look at
    two legs) and keeps, per extension, how many of its calls are at each line. An
    extension's line is then the strongest with a count, in O(1) per event however many
    calls an extension carries (a call-centre trunk line with hundreds of calls at once).
    """

    def __init__(
        self,
        registry: CallStore,
        is_registered: Callable[[str], bool] | None = None,
    ) -> None:
        self.registry = registry
        self.is_registered = is_registered
        self._in_call: dict[str, dict[str, ExtState]] = {}  # ext → callid → line there
        self._counts: dict[str, Counter[ExtState]] = {}  # ext → line → calls at it
        self._reported: dict[str, ExtState] = {}  # last line reported; absent = IDLE
        self._applied: object = None
        registry.subscribe(self._apply, *_LINE_EVENTS)

    def _apply(self, event: events.DomainEvent) -> None:
        """Bring the lines up to date with `event` (once: `changes` may come first)."""
        if event is self._applied or type(event) not in _LINE_EVENTS:
            return
        self._applied = event
        call: Call | None = getattr(event, "call", None)
        if call is None:
            return
        for number in _numbers(event, call):
            state = line_in_call(call, number)
            calls = self._in_call.setdefault(number, {})
            old = calls.get(call.callid)
            if old is state:
                continue
            counts = self._counts.setdefault(number, Counter())
            if old is not None:
                counts[old] -= 1
            if state is None:
                del calls[call.callid]
            else:
                calls[call.callid] = state
                counts[state] += 1
            if not calls:
                del self._in_call[number]
                del self._counts[number]

    def _line(self, number: str) -> ExtState:
        counts = self._counts.get(number)
        if counts:
            for state in (ExtState.BUSY, ExtState.HOLD, ExtState.RINGING):
                if counts[state] > 0:
                    return state
        return ExtState.IDLE

    def line(self, number: str) -> tuple[ExtState, Call | None]:
        """The extension's line and a call that decides it (None when idle)."""
        line = self._line(number)
        if line is ExtState.IDLE:
            return line, None
        for callid, state in self._in_call.get(number, {}).items():
            if state is line:
                return line, self.registry.get(callid)
        return line, None  # pragma: no cover - counts and calls agree

    def state(self, number: str) -> ExtState:
        """What a query shows: the line, or the registration when the line is idle."""
        line = self._line(number)
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
        self._apply(event)
        call: Call | None = getattr(event, "call", None)
        if call is None:
            return []
        out: list[tuple[str, ExtState]] = []
        for number in _numbers(event, call):
            line = self._line(number)
            if self._reported.get(number, ExtState.IDLE) is line:
                continue
            if line is ExtState.IDLE:
                self._reported.pop(number, None)
            else:
                self._reported[number] = line
            out.append((number, line))
        return out


def _numbers(event: events.DomainEvent, call: Call) -> list[str]:
    """The extensions an event on `call` may have changed: every extension that took part,
    and the event's own leg's."""
    numbers = list(call.extensions)
    leg = getattr(event, "leg", None)
    if leg is not None and leg.extension is not None and leg.extension not in numbers:
        numbers.append(leg.extension)
    return numbers
