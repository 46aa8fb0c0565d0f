"""Destinations beyond extensions and trunks: IVRs, ring groups, mailboxes, feature codes,
the configuration that names them, and the run-time settings feature codes change."""

import pytest

from ippbx.config import ConfigError, parse_config
from ippbx.pbx.b2bua import dtmf_relay_digit
from ippbx.pbx.dialplan import (
    Dialplan,
    Feature,
    Refusal,
    Refused,
    ToExtension,
    ToFeature,
    ToIvr,
    ToMailbox,
    ToPaging,
    ToQueue,
    ToRingGroup,
    ToTrunks,
    ToVoicemail,
)
from ippbx.pbx.extension_features import ExtensionFeatures
from ippbx.store.sqlite import Store

BASE = """
[api]
password = "x"
[[extensions]]
number = "1001"
password = "a"
[[extensions]]
number = "1002"
password = "b"
voicemail = true
[[trunks]]
name = "t1"
host = "127.0.0.1"
[[outbound_routes]]
name = "local"
prefix = "9"
match = "X."
trunks = ["t1"]
extensions = ["1002"]
"""

APPS = BASE + """
[[ivrs]]
number = "6000"
options = { "1" = "extension:1002", "2" = "ringgroup:6300", "0" = "voicemail:1002" }
default = "hangup"
[[ring_groups]]
number = "6300"
members = ["1001", "1002"]
failover = "voicemail:1002"
[[inbound_routes]]
name = "main"
trunk = "t1"
destination = "ivr:6000"
"""


def test_one_number_space_reaches_ivrs_and_ring_groups() -> None:
    plan = Dialplan(parse_config(APPS))
    assert plan.route_from_extension("1001", "6000") == ToIvr("6000")
    assert plan.route_from_extension("1001", "6300") == ToRingGroup("6300")
    assert plan.route_from_extension("1001", "1002") == ToExtension("1002")
    assert plan.route_inbound("t1", "5550100", "555") == ToIvr("6000", "main")


def test_destination_strings() -> None:
    plan = Dialplan(parse_config(APPS))
    assert plan.resolve("voicemail:1002") == ToVoicemail("1002")
    assert plan.resolve("hangup") == Refused(Refusal.HANGUP)
    assert plan.resolve("queue:7000") == Refused(Refusal.NO_ROUTE)  # (no queues yet)
    # number: is dialled with the acting extension's permissions
    assert plan.resolve("number:95551234", acting_ext="1002") == \
        ToTrunks("local", "5551234", ("t1",))
    assert plan.resolve("number:95551234", acting_ext="1001") == Refused(Refusal.FORBIDDEN)


def test_feature_codes() -> None:
    plan = Dialplan(parse_config(APPS))
    assert plan.route_from_extension("1001", "*97") == ToMailbox("1001")
    assert plan.route_from_extension("1001", "*98") == ToMailbox("")
    assert plan.route_from_extension("1001", "*78") == ToFeature(Feature.DND_ON, "1001")
    assert plan.route_from_extension("1001", "*79") == ToFeature(Feature.DND_OFF, "1001")
    assert plan.route_from_extension("1001", "*211002") == \
        ToFeature(Feature.FORWARD_ON, "1001", "extension:1002")
    assert plan.route_from_extension("1002", "*2195551234") == \
        ToFeature(Feature.FORWARD_ON, "1002", "number:95551234")
    # forwarding somewhere the extension may not dial is refused like the dial itself
    assert plan.route_from_extension("1001", "*2195551234") == Refused(Refusal.FORBIDDEN)
    assert plan.route_from_extension("1001", "*22") == ToFeature(Feature.FORWARD_OFF, "1001")
    # a transfer reaches local numbers, never a feature code
    assert plan.route_transfer("1001", "", "*97") == Refused(Refusal.NO_ROUTE)
    assert plan.route_transfer("1001", "", "*211002") == Refused(Refusal.NO_ROUTE)


def test_a_transfer_reaches_every_local_number_whoever_transfers() -> None:
    plan = Dialplan(parse_config(APPS + """
[[queues]]
number = "6800"
agents = ["1001"]
[[paging_groups]]
number = "6900"
members = ["1002"]
"""))
    for transferor, route in (("1001", ""), ("", "main"), ("", "")):
        assert plan.route_transfer(transferor, route, "6000") == ToIvr("6000")
        assert plan.route_transfer(transferor, route, "6800") == ToQueue("6800")
        assert plan.route_transfer(transferor, route, "6900") == ToPaging("6900")
        assert plan.route_transfer(transferor, route, "6300") == ToRingGroup("6300")
        assert plan.route_transfer(transferor, route, "1002") == ToExtension("1002")
    # outside numbers: with the transferor's permissions (no trunk for a trunk party)
    assert plan.route_transfer("1002", "", "95551234") == ToTrunks("local", "5551234", ("t1",))
    assert plan.route_transfer("1001", "", "95551234") == Refused(Refusal.FORBIDDEN)
    assert plan.route_transfer("", "main", "95551234") == Refused(Refusal.FORBIDDEN)


@pytest.mark.parametrize(("extra", "message"), [
    ('[[ivrs]]\nnumber = "1001"', "ivrs[0].number: '1001' is already extensions[0]"),
    ('[[ivrs]]\nnumber = "6000"\ndefault = "extension:1009"',
     "ivrs[0].default: no extension '1009'"),
    ('[[ivrs]]\nnumber = "6000"\noptions = { "1" = "ringgroup:6301" }',
     "ivrs[0].options.1: no ringgroup '6301'"),
    ('[[ivrs]]\nnumber = "6000"\noptions = { "12" = "hangup" }', "ivrs[0].options.12"),
    ('[[ring_groups]]\nnumber = "6300"\nmembers = ["1003"]',
     "ring_groups[0].members[0]: no extension '1003'"),
    ('[[ring_groups]]\nnumber = "6300"\nmembers = ["1001"]\nfailover = "somewhere"',
     "is not a destination"),
    ('[[inbound_routes]]\nname = "x"\ntrunk = "t1"\ndestination = "number:123"',
     "not out again"),
])
def test_configuration_refuses_what_names_nothing(extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(BASE + extra)
    assert message in str(refused.value)


def test_extension_forwarding_must_name_something() -> None:
    text = BASE.replace('voicemail = true', 'forward_busy = "ivr:6000"')
    with pytest.raises(ConfigError, match="extensions.1..forward_busy: no ivr '6000'"):
        parse_config(text)


@pytest.mark.parametrize(("body", "digit"), [
    (b"Signal=5\r\nDuration=160\r\n", "5"),
    (b"Signal= #\r\n", "#"),
    (b"signal=10\r\n", "*"),
    (b"Signal=11", "#"),
    (b"7", "7"),
    (b"Signal=\r\n", None),
    (b"Signal=55\r\n", None),
    (b"", None),
    (b"\xff\xfe", None),
])
def test_dtmf_relay_bodies(body: bytes, digit: str | None) -> None:
    assert dtmf_relay_digit(body) == digit


def test_feature_settings_outlive_a_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = parse_config(BASE.replace('voicemail = true', 'dnd = true'))
    store = Store(tmp_path / "s.sqlite3")
    features = ExtensionFeatures(config, store)
    assert features.dnd("1002") and not features.dnd("1001")
    features.set_dnd("1002", False)
    features.set_forward("1001", "extension:1002")
    features.set_dnd("9999", True)  # (no such extension: nothing)
    store.close()
    again = ExtensionFeatures(config, Store(tmp_path / "s.sqlite3"))
    assert not again.dnd("1002")  # the phone's choice wins over the file's
    assert again.forward_always("1001") == "extension:1002"
    assert again.forward_always("1002") == "" and not again.dnd("9999")
