"""PbxStatus: extension status from the registrar and the live calls, trunk status."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ippbx.config import Config, load_config
from ippbx.pbx.calls import Call, CallRegistry, Leg, LegKind, LegStatus
from ippbx.pbx.extension_state import ExtState, line_in_call
from ippbx.pbx.registrar import Registrar
from ippbx.pbx.status import PbxStatus
from ippbx.pbx.trunks import Trunks, TrunkStatus
from ippbx.sip.message import Request, parse_message
from ippbx.sip.wire import Peer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def register_request(ext: str, expires: int = 300) -> Request:
    text = (
        f"REGISTER sip:ippbx.local SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{ext}\r\n"
        f"From: <sip:{ext}@ippbx.local>;tag=1\r\nTo: <sip:{ext}@ippbx.local>\r\n"
        f"Call-ID: reg-{ext}\r\nCSeq: 1 REGISTER\r\n"
        f"Contact: <sip:{ext}@127.0.0.1:5070>\r\nExpires: {expires}\r\n"
        f"Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def setup() -> tuple[Config, CallRegistry, Registrar, Clock, PbxStatus]:
    config = load_config(None)
    registry = CallRegistry()
    clock = Clock()
    registrar = Registrar(config, None, clock=clock)
    return config, registry, registrar, clock, PbxStatus(registry, registrar, Trunks(config))


def register(registrar: Registrar, ext: str) -> None:
    assert registrar.register(register_request(ext), Peer("127.0.0.1", 5070, "udp"), ext).status \
        == 200


def test_registration_decides_when_idle() -> None:
    _, _, registrar, clock, status = setup()
    assert status.extension_status("1001") == "Unregistered"
    register(registrar, "1001")
    assert status.extension_status("1001") == "Registered"
    assert status.extension_call("1001") is None
    clock.now += 301  # the binding expires
    assert status.extension_status("1001") == "Unregistered"


def test_internal_call_ringing_busy_hold() -> None:
    _, registry, registrar, _, status = setup()
    register(registrar, "1001")
    register(registrar, "1002")
    call = registry.start_call(Leg(LegKind.EXTENSION, "1001", "1002", extension="1001"), "1002")
    assert status.extension_status("1001") == "Busy"  # dialling out is busy
    assert status.extension_status("1002") == "Registered"
    callee = Leg(LegKind.EXTENSION, "1001", "1002", extension="1002")
    registry.add_callee(call, callee)
    assert status.extension_status("1002") == "Ringing"
    assert status.extension_call("1002") is call
    registry.set_status(callee.id, LegStatus.TALKING)
    registry.set_status(call.caller.id, LegStatus.TALKING)
    assert status.extension_status("1001") == status.extension_status("1002") == "Busy"
    registry.set_status(callee.id, LegStatus.WAIT)  # held: both sides show Hold
    assert status.extension_status("1001") == status.extension_status("1002") == "Hold"
    registry.end_leg(callee.id)
    registry.end_leg(call.caller.id)
    assert status.extension_status("1001") == "Registered"
    assert status.extension_call("1001") is None


def test_inbound_call_rings_the_extension_even_unregistered() -> None:
    _, registry, _, _, status = setup()
    call = registry.start_call(Leg(LegKind.TRUNK, "0123", "5550100", trunk="carrier"), "5550100")
    leg = Leg(LegKind.EXTENSION, "0123", "1001", extension="1001")
    registry.add_callee(call, leg)
    assert status.extension_status("1001") == "Ringing"
    registry.set_status(leg.id, LegStatus.TALKING)
    assert status.extension_status("1001") == "Busy"


def test_busy_beats_hold_beats_ringing() -> None:
    _, registry, _, _, status = setup()
    held = registry.start_call(Leg(LegKind.EXTENSION, "1001", "9555", extension="1001"), "9555")
    registry.set_status(held.caller.id, LegStatus.WAIT)
    ringing = registry.start_call(Leg(LegKind.TRUNK, "0123", "x", trunk="carrier"), "x")
    registry.add_callee(ringing, Leg(LegKind.EXTENSION, "0123", "1001", extension="1001"))
    assert status.extension_status("1001") == "Hold"
    assert status.extension_call("1001") is held
    talking = registry.start_call(Leg(LegKind.EXTENSION, "1001", "1003", extension="1001"), "1003")
    assert status.extension_status("1001") == "Busy"
    assert status.extension_call("1001") is talking


def test_trunk_status() -> None:
    config, registry, registrar, _, _ = setup()
    trunks = Trunks(config)
    status = PbxStatus(registry, registrar, trunks)
    assert status.trunk_status("carrier") == "Unknown"  # a peer trunk never registers
    trunks.status["carrier"] = TrunkStatus.FAILURE
    assert status.trunk_status("carrier") == "Failure"
    assert status.trunk_status("nope") == "Unknown"
    bare = PbxStatus(registry)
    assert bare.trunk_status("carrier") == "Unknown"
    assert bare.extension_status("1001") == "Unregistered"


# -- one call's part in a line, against the table in extension_state's docstring ---------
_LEG = st.tuples(st.sampled_from(list(LegStatus)), st.sampled_from(["1001", "1002", None]),
                 st.booleans())


@given(st.lists(_LEG, min_size=1, max_size=4))
def test_a_calls_part_in_a_line_follows_the_documented_table(
        legs: list[tuple[LegStatus, str | None, bool]]) -> None:
    made = []
    for status, extension, outgoing in legs:
        leg = Leg(LegKind.EXTENSION if extension else LegKind.TRUNK, "1", "2",
                  extension=extension)
        leg.status, leg.outgoing = status, outgoing
        made.append(leg)
    call = Call(caller=made[0], dialled="2", callee=made[1] if len(made) > 1 else None)
    call.branches = made[2:] or None
    live = [leg for leg in made if leg.status is not LegStatus.ENDED]
    own = [leg for leg in live if leg.extension == "1001"]
    if not own:
        expected = None  # no live leg of its own: the call says nothing of its line
    elif any(leg.status is LegStatus.WAIT for leg in live):
        expected = ExtState.HOLD  # any live leg held, either side
    elif all(leg.outgoing and leg.status is LegStatus.PROGRESS for leg in own):
        expected = ExtState.RINGING  # its own legs are ippbx's, all still in Progress
    else:
        expected = ExtState.BUSY
    assert line_in_call(call, "1001") is expected
