"""The Invite and Incoming reports (Control Inbound Call): built from InboundHeld and
InboundAdmitted, in the flat OpenVox form and Yeastar's `call:[…]` form."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from ippbx.api.reports import Form, ReportBuilder, render
from ippbx.config import parse_config
from ippbx.pbx.calls import CallRegistry, Leg, LegKind
from ippbx.pbx.extension_state import ExtensionStates

SN = "sn1"
CONFIG = parse_config('[api]\npassword = "x"\n[[extensions]]\nnumber = "1002"\n'
                      'password = "p"\n')


def test_invite_then_incoming_in_both_forms() -> None:
    registry = CallRegistry()
    builder = ReportBuilder(CONFIG, ExtensionStates(registry))
    flat: list[dict[str, Any]] = []
    listed: list[dict[str, Any]] = []

    def on_event(event: Any) -> None:
        for report in builder.on_event(event):
            flat.append(render(report, Form.OPENVOX, SN, ZoneInfo("UTC")))
            listed.append(render(report, Form.YEASTAR, SN, ZoneInfo("UTC")))

    registry.subscribe(on_event)
    leg = Leg(LegKind.TRUNK, "1929383883", "5550100", trunk="SPS-6-36", id="1547389566.275")
    call = registry.start_call(leg, "5550100")
    registry.inbound_held(call)
    registry.inbound_admitted(call)
    inbound = {"from": "1929383883", "to": "5550100", "trunk": "SPS-6-36",
               "inboundid": "1547389566.275"}
    # Yeastar's own example, field for field and in its order
    assert listed == [
        {"action": "Invite", "callid": "1547389566.275", "call": [{"inbound": inbound}],
         "sn": SN},
        {"action": "Incoming", "callid": "1547389566.275", "call": [{"inbound": inbound}],
         "sn": SN},
    ]
    assert [list(r) for r in listed] == 2 * [["action", "callid", "call", "sn"]]
    assert flat == [
        {"action": "Invite", "callid": "1547389566.275", "inbound": inbound, "sn": SN},
        {"action": "Incoming", "callid": "1547389566.275", "inbound": inbound, "sn": SN},
    ]
    assert [list(r) for r in flat] == 2 * [["action", "callid", "inbound", "sn"]]
