"""The call queries' items encoded once per call: the same bytes as encoding the whole
answer, rebuilt when the call changes, never confused by a reused id, swept when ended."""

from __future__ import annotations

import pytest

from ippbx.api import codec
from ippbx.api.call_views import CallViews, inbound_view, outbound_view
from ippbx.api.codec import Format
from ippbx.pbx.calls import CallRegistry, Leg, LegKind, LegStatus


def outbound(registry: CallRegistry, leg_id: str, to: str = "5551234") -> Leg:
    call = registry.start_call(Leg(LegKind.EXTENSION, "1001", "9" + to, extension="1001"), to)
    leg = Leg(LegKind.TRUNK, "66666", to, trunk="carrier & co <1>", id=leg_id)
    registry.add_callee(call, leg)
    return leg


@pytest.mark.parametrize("fmt", list(Format))
@pytest.mark.parametrize("count", [0, 1, 3])
def test_outbound_pieces_equal_the_whole_answer(fmt: Format, count: int) -> None:
    registry = CallRegistry()
    legs = [outbound(registry, f"{i}.5", to=f"55{i}") for i in range(count)]
    if legs:
        registry.set_status(legs[0].id, LegStatus.TALKING)
    answer = CallViews().outbound(registry, None, fmt)
    whole = codec.encode(codec.success({"outbound": [outbound_view(x) for x in legs]}), fmt)
    assert answer.body() == whole and answer.size == len(whole)
    assert b"".join(answer.pieces(50)) == whole  # the parts of a streamed answer


@pytest.mark.parametrize("fmt", list(Format))
@pytest.mark.parametrize("as_list", [False, True])
def test_inbound_pieces_equal_the_whole_answer(fmt: Format, as_list: bool) -> None:
    registry = CallRegistry()
    lone = registry.start_call(Leg(LegKind.TRUNK, "0123", "5550100", trunk="t", id="1.1"), "x")
    taken = registry.start_call(Leg(LegKind.TRUNK, "0456", "5550100", trunk="t", id="2.2"), "x")
    registry.add_callee(taken, Leg(LegKind.EXTENSION, "0456", "1001", extension="1001"))
    answer = CallViews().inbound(registry, None, fmt, as_list)
    whole = codec.encode(codec.success(
        {"inbound": [inbound_view(c, as_list) for c in (lone, taken)]}), fmt)
    assert answer.body() == whole and answer.size == len(whole)


def test_an_item_is_encoded_again_only_when_its_call_changed() -> None:
    registry = CallRegistry()
    leg = outbound(registry, "7.7")
    views = CallViews()
    first = views.outbound(registry, [leg.id], Format.JSON).items
    assert b'"status":"Progress"' in first[0] and views.encoded == 1
    assert views.outbound(registry, [leg.id], Format.JSON).items == first and views.encoded == 1
    registry.set_status(leg.id, LegStatus.TALKING)
    again = views.outbound(registry, [leg.id], Format.JSON).items
    assert b'"status":"Talking"' in again[0] and views.encoded == 2
    views.outbound(registry, [leg.id], Format.XML)  # another format: its own item
    assert views.encoded == 3


def test_inbound_item_follows_its_callee() -> None:
    registry = CallRegistry()
    call = registry.start_call(Leg(LegKind.TRUNK, "0123", "5550100", trunk="t", id="1.1"), "x")
    views = CallViews()

    def item() -> bytes:
        return views.inbound(registry, [call.callid], Format.JSON, False).items[0]

    assert b'"callee":{"extid":""}' in item()
    registry.add_callee(call, Leg(LegKind.EXTENSION, "0123", "1005", extension="1005"))
    assert b'"callee":{"extid":"1005"}' in item()


def test_a_reused_leg_id_is_a_new_item() -> None:
    views = CallViews()
    one = CallRegistry()
    first = outbound(one, "9.9", to="111")
    assert b'"to":"111"' in views.outbound(one, [first.id], Format.JSON).items[0]
    other = CallRegistry()  # (ids repeat only across registries, as in tests)
    assert b'"to":"222"' in views.outbound(other, [outbound(other, "9.9", to="222").id],
                                           Format.JSON).items[0]


def test_items_of_ended_calls_are_swept() -> None:
    registry = CallRegistry()
    views = CallViews()
    for i in range(3000):
        leg = outbound(registry, f"{i}.1")
        call = registry.find(leg.id)
        assert call is not None
        views.outbound(registry, [leg.id], Format.JSON)
        registry.end_leg(leg.id)
        registry.end_leg(call.caller.id)
    live = outbound(registry, "live.1")
    views.outbound(registry, [live.id], Format.JSON)
    assert len(registry) == 1
    assert len(views) <= 2 * registry.leg_count() + 1024 + 1


def test_all_calls_reuse_the_whole_list_until_the_registry_changes() -> None:
    registry = CallRegistry()
    legs = [outbound(registry, f"{i}.3") for i in range(5)]
    views = CallViews()
    first = views.outbound(registry, None, Format.JSON)
    assert views.outbound(registry, None, Format.JSON) is first  # nothing changed
    registry.set_status(legs[2].id, LegStatus.TALKING)
    again = views.outbound(registry, None, Format.JSON)
    assert again is not first and views.encoded == 6  # one item encoded again
    assert b'"status":"Talking"' in again.items[2] and again.items[1] is first.items[1]
