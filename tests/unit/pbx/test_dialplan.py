import pytest

from ippbx.config import parse_config
from ippbx.pbx.dialplan import Dialplan, Refusal, Refused, ToExtension, ToTrunks
from ippbx.pbx.patterns import PatternError, compile_pattern, matches

CONFIG = """
[api]
password = "x"
[[extensions]]
number = "1001"
password = "a"
[[extensions]]
number = "1002"
password = "b"
[[trunks]]
name = "t1"
host = "127.0.0.1"
[[trunks]]
name = "t2"
host = "127.0.0.2"
[[outbound_routes]]
name = "intl"
prefix = "900"
match = "X."
prepend = "+"
trunks = ["t2"]
extensions = ["1002"]
[[outbound_routes]]
name = "local"
prefix = "9"
match = "NXXXXXX"
prepend = "1"
trunks = ["t1", "t2"]
[[outbound_routes]]
name = "emergency"
match = "11[2-9]"
trunks = ["t1"]
[[inbound_routes]]
name = "catch-all"
trunk = "t1"
destination = "extension:1002"
[[inbound_routes]]
name = "main"
trunk = "t1"
did = "5550100"
destination = "extension:1001"
allow_transfer_out = true
[[inbound_routes]]
name = "blocked"
trunk = "t2"
callerid = "_666X."
destination = "hangup"
"""


@pytest.fixture
def plan() -> Dialplan:
    return Dialplan(parse_config(CONFIG))


@pytest.mark.parametrize(
    ("pattern", "number", "ok"),
    [
        ("X.", "5", False),
        ("X.", "55", True),
        ("X!", "5", True),
        ("NXX", "200", True),
        ("NXX", "100", False),
        ("ZXX", "100", True),
        ("ZXX", "010", False),
        ("_1[2-4]X", "135", True),
        ("_1[2-4]X", "155", False),
        ("[a-c]9", "b9", True),
        ("555", "555", True),
        ("555", "5555", False),
        ("*7X", "*71", True),
    ],
)
def test_patterns(pattern: str, number: str, ok: bool) -> None:
    assert matches(pattern, number) is ok


@pytest.mark.parametrize("bad", ["", "_", "X.X", "[12", "1]", "[]", "[-1]", "12 3", "X(", "!X"])
def test_bad_patterns_raise(bad: str) -> None:
    with pytest.raises(PatternError):
        compile_pattern(bad)


def test_extension_to_extension(plan: Dialplan) -> None:
    assert plan.route_from_extension("1001", "1002") == ToExtension("1002")


def test_prefix_stripped_and_prepend_added(plan: Dialplan) -> None:
    expected = ToTrunks("local", "15551234", ("t1", "t2"))
    assert plan.route_from_extension("1001", "95551234") == expected


def test_route_limited_to_extensions(plan: Dialplan) -> None:
    assert plan.route_from_extension("1002", "900441234") == ToTrunks("intl", "+441234", ("t2",))
    # 1001 may not use "intl"; "local" does not match 900441234 (N must be 2-9 and length 7)
    assert plan.route_from_extension("1001", "900441234") == Refused(Refusal.FORBIDDEN)


def test_route_without_prefix(plan: Dialplan) -> None:
    assert plan.route_from_extension("1001", "112") == ToTrunks("emergency", "112", ("t1",))


def test_no_route(plan: Dialplan) -> None:
    result = plan.route_from_extension("1001", "0123")
    assert result == Refused(Refusal.NO_ROUTE)
    assert isinstance(result, Refused) and result.sip_status == 404


def test_inbound_did_beats_catch_all(plan: Dialplan) -> None:
    assert plan.route_inbound("t1", "5550100", "0300") == ToExtension("1001", "main")
    assert plan.route_inbound("t1", "5550199", "0300") == ToExtension("1002", "catch-all")


def test_inbound_callerid_hangup(plan: Dialplan) -> None:
    assert plan.route_inbound("t2", "1", "66612") == Refused(Refusal.HANGUP)
    assert plan.route_inbound("t2", "1", "5551234") == Refused(Refusal.NO_ROUTE)


def test_a_transfer_is_routed_with_the_transferors_permissions(plan: Dialplan) -> None:
    # an extension transfers as it would dial
    assert plan.route_transfer("1001", "", "95551234") == ToTrunks("local", "15551234",
                                                                   ("t1", "t2"))
    assert plan.route_transfer("1001", "", "900441234") == Refused(Refusal.FORBIDDEN)
    # a party on a trunk reaches extensions, and trunks only if its route allows it
    assert plan.route_transfer("", "catch-all", "1002") == ToExtension("1002")
    assert plan.route_transfer("", "catch-all", "95551234") == Refused(Refusal.FORBIDDEN)
    assert plan.route_transfer("", "", "95551234") == Refused(Refusal.FORBIDDEN)
    assert plan.route_transfer("", "main", "95551234") == ToTrunks("local", "15551234",
                                                                   ("t1", "t2"))
    # (through routes open to every extension only)
    assert plan.route_transfer("", "main", "900441234") == Refused(Refusal.FORBIDDEN)
