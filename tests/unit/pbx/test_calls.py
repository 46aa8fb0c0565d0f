import ast
import inspect
import re
from pathlib import Path

import pytest

from ippbx.ids import IdGenerator, set_node, use
from ippbx.pbx import call_model, events
from ippbx.pbx.calls import (
    Call,
    CallRegistry,
    CallStore,
    CallType,
    Leg,
    LegKind,
    LegStatus,
    UnknownCall,
)


def ext_leg(number: str, dialled: str) -> Leg:
    return Leg(LegKind.EXTENSION, number, dialled, extension=number)


def trunk_leg(frm: str, to: str, trunk: str = "carrier") -> Leg:
    return Leg(LegKind.TRUNK, frm, to, trunk=trunk)


def test_ids_have_epoch_seq_form_and_keep_trailing_zeros() -> None:
    gen = IdGenerator(clock=lambda: 1589938378.9, start=1129)
    assert gen.next() == "1589938378.1129"
    assert gen.next() == "1589938378.1130"
    assert re.fullmatch(r"\d+\.\d+", Leg(LegKind.EXTENSION, "1", "2").id)


def test_outbound_call_lifecycle_and_indexes() -> None:
    reg = CallRegistry()
    seen: list[str] = []
    reg.subscribe(lambda e: seen.append(type(e).__name__))
    call = reg.start_call(ext_leg("1001", "95551234"), "95551234")
    out = trunk_leg("66666", "5551234")
    reg.add_callee(call, out)
    assert call.type is CallType.OUTBOUND
    assert reg.by_outboundid(out.id) is call
    assert reg.outbound() == [call] and reg.inbound() == []
    assert reg.by_extension("1001") == [call]
    assert reg.find(out.id) is call and reg.find(call.callid) is call
    reg.set_status(out.id, LegStatus.TALKING, now=10.0)
    assert out.answered == 10.0 and call.answered == 10.0
    reg.end_leg(out.id, 200)
    assert len(reg) == 1  # the caller leg is still live
    assert reg.by_outboundid(out.id) is None
    reg.end_leg(call.caller.id, 200)
    assert len(reg) == 0 and reg.by_extension("1001") == [] and reg.busy_extensions() == 0
    assert seen == ["CallCreated", "LegAdded", "LegStatusChanged", "LegEnded", "LegEnded",
                    "CallEnded"]


def test_query_by_ids_keeps_request_order_and_drops_unknown() -> None:
    reg = CallRegistry()
    legs = []
    for i in range(3):
        call = reg.start_call(ext_leg(f"100{i}", "9"), "9")
        leg = trunk_leg("x", str(i))
        reg.add_callee(call, leg)
        legs.append(leg)
    got = reg.outbound([legs[2].id, "nope", legs[0].id])
    assert [c.outbound_leg.id for c in got if c.outbound_leg] == [legs[2].id, legs[0].id]


def test_inbound_call_indexed_by_trunk_leg() -> None:
    reg = CallRegistry()
    inbound = trunk_leg("0300", "5550100")
    call = reg.start_call(inbound, "5550100")
    reg.add_callee(call, ext_leg("1001", "1001"))
    assert call.type is CallType.INBOUND
    assert reg.by_inboundid(inbound.id) is call and reg.inbound() == [call]


def test_failover_replaces_an_ended_callee_leg_only() -> None:
    reg = CallRegistry()
    call = reg.start_call(ext_leg("1001", "9"), "9")
    first = trunk_leg("a", "b", "t1")
    reg.add_callee(call, first)
    with pytest.raises(ValueError):
        reg.add_callee(call, trunk_leg("a", "b", "t2"))
    reg.end_leg(first.id, 503)
    second = trunk_leg("a", "b", "t2")
    reg.add_callee(call, second)
    assert reg.outbound() == [call] and reg.by_outboundid(second.id) is call


def test_unknown_leg_raises_and_bad_subscriber_is_isolated() -> None:
    reg = CallRegistry()

    def broken(event: events.DomainEvent) -> None:
        raise RuntimeError("boom")

    reg.subscribe(broken)
    call = reg.start_call(ext_leg("1001", "1002"), "1002")
    assert len(reg) == 1
    with pytest.raises(UnknownCall):
        reg.end_leg("1.1")
    reg.end_leg(call.caller.id)
    assert len(reg) == 0


def test_a_subscriber_for_some_kinds_gets_only_those_in_order_with_the_others() -> None:
    reg = CallRegistry()
    seen: list[str] = []
    reg.subscribe(lambda e: seen.append(f"all:{type(e).__name__}"))
    stop = reg.subscribe(lambda e: seen.append(f"ended:{type(e).__name__}"),
                         events.LegEnded, events.CallEnded)
    reg.subscribe(lambda e: seen.append(f"last:{type(e).__name__}"), events.CallEnded)
    call = reg.start_call(ext_leg("1001", "1002"), "1002")
    reg.end_leg(call.caller.id, 200)
    assert seen == ["all:CallCreated",
                    "all:LegEnded", "ended:LegEnded",
                    "all:CallEnded", "ended:CallEnded", "last:CallEnded"]
    seen.clear()
    stop()  # unsubscribed: the next call's events no longer reach it
    reg.subscribe(lambda e: seen.append(f"new:{type(e).__name__}"), events.CallEnded)
    call = reg.start_call(ext_leg("1001", "1002"), "1002")
    reg.end_leg(call.caller.id, 200)
    assert seen == ["all:CallCreated", "all:LegEnded", "all:CallEnded", "last:CallEnded",
                    "new:CallEnded"]


def test_a_node_name_prefixes_ids_and_the_counter_goes_on() -> None:
    gen = IdGenerator(clock=lambda: 1589938378.9, start=7, node="pbx2")
    assert gen.next() == "pbx2-1589938378.7"
    gen.node = ""
    assert gen.next() == "1589938378.8"
    previous = use(gen)
    try:
        set_node("east")
        assert Leg(LegKind.EXTENSION, "1", "2").id == "east-1589938378.9"
    finally:
        use(previous)


def test_branches_ring_together_and_the_elected_one_is_the_callee() -> None:
    reg = CallRegistry()
    seen: list[str] = []
    reg.subscribe(lambda e: seen.append(type(e).__name__))
    call = reg.start_call(ext_leg("1001", "6300"), "6300")
    desk, soft, mobile = ext_leg("1002", "6300"), ext_leg("1003", "6300"), trunk_leg("1003",
                                                                                      "555")
    for leg in (desk, soft, mobile):
        reg.add_branch(call, leg)
    assert call.callee is None and call.legs() == [call.caller, desk, soft, mobile]
    assert reg.by_extension("1003") == [call] and reg.by_outboundid(mobile.id) is call
    assert seen.count("LegAdded") == 3
    reg.end_leg(mobile.id, 487)
    reg.elect(call, soft)
    reg.set_status(soft.id, LegStatus.TALKING, now=5.0)
    assert call.callee is soft and call.answered == 5.0
    reg.end_leg(desk.id, 487)
    assert call.branches is None and call.legs() == [call.caller, soft]
    assert reg.by_extension("1002") == []
    reg.end_leg(soft.id)
    reg.end_leg(call.caller.id)
    assert len(reg) == 0 and seen[-1] == "CallEnded"


def test_a_call_whose_branches_all_failed_names_the_first_to_fail() -> None:
    reg = CallRegistry()
    call = reg.start_call(ext_leg("1001", "6300"), "6300")
    first, second = ext_leg("1002", "6300"), ext_leg("1003", "6300")
    reg.add_branch(call, first)
    reg.add_branch(call, second)
    reg.end_leg(first.id, 486)
    reg.end_leg(second.id, 480)
    assert call.callee is first and call.branches is None  # (its CDR's callee)
    assert len(reg) == 1
    reg.end_leg(call.caller.id, 480)
    assert len(reg) == 0


def test_calls_and_legs_are_the_same_when_their_ids_are() -> None:
    """A store other than the in-memory one hands out copies: identity cannot say which
    call or leg it is, the id does."""
    leg = ext_leg("1001", "1002")
    copy = Leg(LegKind.EXTENSION, "1001", "1002", extension="1001", id=leg.id)
    assert copy == leg and copy is not leg and hash(copy) == hash(leg)
    assert ext_leg("1001", "1002") != leg
    call = Call(leg, "1002")
    assert Call(copy, "1002") == call and {call: 1}[Call(copy, "1002")] == 1
    assert Call(ext_leg("1001", "1002"), "1002") != call
    assert leg != call  # (a leg is never a call, whatever its id)


def test_what_a_call_notes_goes_through_the_store() -> None:
    reg = CallRegistry()
    call = reg.start_call(ext_leg("1001", "6000"), "6000")
    reg.note(call, application="ivr:6000", outbound_route="out")
    assert (call.application, call.outbound_route) == ("ivr:6000", "out")
    with pytest.raises(ValueError, match="callee"):
        reg.note(call, callee=None)  # a leg changes through add_callee, end_leg…
    reg.hung_up_by(call, "caller")
    reg.hung_up_by(call, "pbx")  # (the first to end it is the one noted)
    assert call.hangup_by == "caller"


def test_the_registry_is_a_call_store_and_the_model_needs_no_pbx() -> None:
    for name, member in vars(CallStore).items():
        if name.startswith("_") and name != "__len__" or not callable(member):
            continue
        mine = getattr(CallRegistry, name)
        assert inspect.signature(mine) == inspect.signature(member), name
    tree = ast.parse(Path(call_model.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
    assert not {m for m in imported if m and m.startswith("ippbx.pbx")}, imported


def test_a_snapshot_copies_every_field_and_shares_no_leg() -> None:
    caller = ext_leg("1001", "95551234")
    call = Call(caller, "95551234")
    call.callee = trunk_leg("66666", "5551234")
    call.branches = [ext_leg("1002", "2000")]
    call.extensions.append("1001")
    for leg in call.legs():  # every field set to something of its own
        leg.answered, leg.ended, leg.end_cause, leg.ringing = 1.0, 2.0, 486, 0.5
    call.hangup_by, call.recording, call.application = "api", "rec.wav", "ivr:6000"
    view = call.snapshot()
    for field in Call.__slots__:
        assert getattr(view, field) == getattr(call, field), field
    pairs = list(zip(view.legs(), call.legs(), strict=True))
    for copy, leg in pairs:
        assert copy is not leg
        for field in Leg.__slots__:
            assert getattr(copy, field) == getattr(leg, field), field
    assert view.origin is view.caller and view.extensions is not call.extensions
    call.caller, call.callee = call.callee, call.caller  # (after swap_sides)
    swapped = call.snapshot()
    assert swapped.origin is swapped.callee


def test_events_carry_snapshots_of_the_moment() -> None:
    reg = CallRegistry()
    got: list[events.DomainEvent] = []
    reg.subscribe(got.append)
    call = reg.start_call(ext_leg("1001", "95551234"), "95551234")
    out = trunk_leg("66666", "5551234")
    reg.add_callee(call, out)
    reg.set_status(out.id, LegStatus.TALKING, now=10.0)
    talking = got[-1]
    assert isinstance(talking, events.LegStatusChanged)
    assert talking.leg == out and talking.leg is talking.call.callee
    assert talking.call.answered == 10.0
    # a subscriber's doings do not reach the store
    talking.call.callee = None
    talking.leg.status = LegStatus.ENDED
    assert call.callee is out and out.status is LegStatus.TALKING
    assert reg.by_outboundid(out.id) is call
    # and the store's later changes do not reach what it published
    reg.end_leg(out.id, 200)
    reg.end_leg(call.caller.id, 200)
    created, added = got[0], got[1]
    assert isinstance(created, events.CallCreated) and created.call.callee is None
    assert isinstance(added, events.LegAdded) and added.leg.status is LegStatus.PROGRESS
    ended = got[-1]
    assert isinstance(ended, events.CallEnded)
    assert [leg.status for leg in ended.call.legs()] == [LegStatus.ENDED] * 2
    assert all(e.call is not call for e in got if isinstance(e, events.CallCreated
                                                             | events.LegAdded
                                                             | events.LegStatusChanged
                                                             | events.LegEnded
                                                             | events.CallEnded))
