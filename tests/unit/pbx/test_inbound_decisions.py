"""Control Inbound Call's decisions (`ippbx.pbx.inbound_control`) over a real call registry:
what ends a held call's wait, what is published, and what a decision answers once made."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ippbx.config import ConfigError, parse_config
from ippbx.pbx import events
from ippbx.pbx.calls import Call, CallRegistry, Leg, LegKind
from ippbx.pbx.inbound_control import Decision, InboundControl, InboundControlError

WAIT = 2.0  # the most any wait here may take (they take milliseconds)


class Setup:
    """A registry, its events by type name, and the control on it."""

    def __init__(self, window: float = 5.0) -> None:
        self.registry = CallRegistry()
        self.seen: list[str] = []
        self.registry.subscribe(lambda event: self.seen.append(type(event).__name__))
        self.control = InboundControl(self.registry, window)

    def inbound_call(self) -> Call:
        leg = Leg(LegKind.TRUNK, "0123456", "5550100", trunk="carrier")
        return self.registry.start_call(leg, "5550100")

    def held(self) -> list[str]:
        return [n for n in self.seen if n in ("InboundHeld", "InboundAdmitted")]

    async def holding(self, call: Call, gave_up: list[asyncio.Future[Any]] | None = None
                      ) -> asyncio.Task[Decision]:
        """`hold` running, once the call waits."""
        waiting = len(self.control)
        task = asyncio.ensure_future(self.control.hold(call, gave_up or []))
        async with asyncio.timeout(WAIT):
            while len(self.control) == waiting:
                await asyncio.sleep(0)
        return task


def refused_with(control: InboundControl, action: str, inboundid: str) -> str:
    with pytest.raises(InboundControlError) as caught:
        getattr(control, action)(inboundid)
    return caught.value.reason


async def test_accept_lets_the_call_through_once() -> None:
    s = Setup()
    call = s.inbound_call()
    task = await s.holding(call)
    assert s.held() == ["InboundHeld"]
    s.control.accept(call.caller.id)
    # a second decision before the wait has even ended is too late as well
    assert refused_with(s.control, "refuse", call.caller.id) == InboundControlError.TOO_LATE
    assert await asyncio.wait_for(task, WAIT) is Decision.ACCEPTED
    assert s.held() == ["InboundHeld", "InboundAdmitted"]
    assert len(s.control) == 0 and s.control.remembered == 1
    for action in ("accept", "refuse"):  # decided, the call still live: 10016
        assert refused_with(s.control, action, call.caller.id) == InboundControlError.TOO_LATE
    s.registry.end_leg(call.caller.id, 200)
    assert s.control.remembered == 0  # the call is over: no such call any more
    assert refused_with(s.control, "accept", call.caller.id) == InboundControlError.NO_CALL


async def test_refuse_admits_nothing() -> None:
    s = Setup()
    call = s.inbound_call()
    task = await s.holding(call)
    s.control.refuse(call.caller.id)
    assert await asyncio.wait_for(task, WAIT) is Decision.REFUSED
    assert s.held() == ["InboundHeld"]
    assert refused_with(s.control, "accept", call.caller.id) == InboundControlError.TOO_LATE


async def test_no_decision_in_the_window_accepts_by_default() -> None:
    s = Setup(window=0.05)
    call = s.inbound_call()
    decision = await asyncio.wait_for(s.control.hold(call, []), WAIT)
    assert decision is Decision.TIMED_OUT and decision.admitted
    assert s.held() == ["InboundHeld", "InboundAdmitted"]
    assert refused_with(s.control, "refuse", call.caller.id) == InboundControlError.TOO_LATE


async def test_the_caller_giving_up_ends_the_wait_at_once() -> None:
    s = Setup(window=30.0)
    call = s.inbound_call()
    cancelled: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    task = await s.holding(call, [cancelled])
    cancelled.set_result(None)
    assert await asyncio.wait_for(task, WAIT) is Decision.GAVE_UP
    assert s.held() == ["InboundHeld"] and len(s.control) == 0
    assert refused_with(s.control, "accept", call.caller.id) == InboundControlError.TOO_LATE
    s.registry.end_leg(call.caller.id, 487)
    assert s.control.remembered == 0


async def test_a_cancelled_hold_leaves_nothing() -> None:
    s = Setup(window=30.0)
    call = s.inbound_call()
    task = await s.holding(call)
    task.cancel()  # (the PBX stopping)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, WAIT)
    assert len(s.control) == 0
    s.registry.end_leg(call.caller.id, 503)
    assert s.control.remembered == 0 and s.held() == ["InboundHeld"]


async def test_ids_never_held_are_no_call() -> None:
    s = Setup()
    call = s.inbound_call()  # live, but its route has no control: never held
    for inboundid in (call.caller.id, "1589879501.901"):
        for action in ("accept", "refuse"):
            assert refused_with(s.control, action, inboundid) == InboundControlError.NO_CALL
    extension_call = s.registry.start_call(
        Leg(LegKind.EXTENSION, "1001", "1002", extension="1001"), "1002")
    with pytest.raises(ValueError):
        await s.control.hold(extension_call, [])


async def test_two_calls_are_decided_apart() -> None:
    s = Setup()
    first, second = s.inbound_call(), s.inbound_call()
    one, two = await s.holding(first), await s.holding(second)
    s.control.refuse(second.caller.id)
    s.control.accept(first.caller.id)
    assert await asyncio.wait_for(one, WAIT) is Decision.ACCEPTED
    assert await asyncio.wait_for(two, WAIT) is Decision.REFUSED


def test_the_route_switch_and_the_window_in_the_configuration() -> None:
    base = '[api]\npassword = "x"\n[[trunks]]\nname = "t"\nhost = "127.0.0.1"\n'
    route = '[[inbound_routes]]\nname = "r"\ntrunk = "t"\ndestination = "hangup"\n'
    config = parse_config(base + route)
    assert config.inbound_routes[0].control_inbound_call is False
    assert config.calls.inbound_control_seconds == 10.0  # the vendor's window
    config = parse_config(base + "[calls]\ninbound_control_seconds = 2.5\n" + route
                          + "control_inbound_call = true\n")
    assert config.inbound_routes[0].control_inbound_call is True
    assert config.calls.inbound_control_seconds == 2.5
    for bad in ("0", "61"):
        with pytest.raises(ConfigError):
            parse_config(base + f"[calls]\ninbound_control_seconds = {bad}\n")


def test_events_carry_the_inbound_leg() -> None:
    s = Setup()
    call = s.inbound_call()
    got: list[events.DomainEvent] = []
    s.registry.subscribe(got.append)
    s.registry.inbound_held(call)
    s.registry.inbound_admitted(call)
    assert [type(e) for e in got] == [events.InboundHeld, events.InboundAdmitted]
    assert all(e.leg == call.caller and e.call == call for e in got)  # type: ignore[union-attr]
    assert all(e.leg is e.call.caller for e in got)  # type: ignore[union-attr]
