"""Configuration queries over real HTTP, JSON and XML, both dialects: extensionlist/query,
extension/query (with live status and call fields), trunklist/query (the `trunkname` list
key), siptrunk/query, outroute/query, inroute/query.

Most tests use the session's API server with a richer config than the demo, and a
`PbxStatus` over a registrar and calls driven directly; the last one runs a whole ippbx
where a sipp phone registers and calls out for real.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pbx_harness import PbxHarness, TrunkSpec, ext_password
from sipp_harness import SippFactory, free_port

from ippbx.config import parse_config
from ippbx.pbx.calls import CallRegistry, Leg, LegKind, LegStatus
from ippbx.pbx.registrar import Registrar
from ippbx.pbx.status import PbxStatus
from ippbx.pbx.trunks import Trunks, TrunkStatus
from ippbx.sip.message import Request, parse_message
from ippbx.sip.wire import Peer

if TYPE_CHECKING:
    from conftest import ApiHarness, FakeClock

pytestmark = pytest.mark.asyncio(loop_scope="session")

DECL = b'<?xml version="1.0" encoding="UTF-8" ?>\n'
OK_XML = DECL + b"<xml>\n    <status>Success</status>\n"
VERSIONS = ["v0.0.1", "v1.1.0"]

CONFIG = """
[pbx]
sn = "ippbxcfg0001"
[sip]
no_answer_seconds = 25
[api]
password = "apipass"
[[extensions]]
number = "1001"
password = "secret1001"
name = "Alice"
callerid = "5550101"
[[extensions]]
number = "1002"
password = "secret1002"
[[extensions]]
number = "1005"
password = "secret1005"
max_contacts = 3
[[trunks]]
name = "carrier"
host = "127.0.0.1"
port = 5080
[[trunks]]
name = "provider"
type = "register"
host = "sip.example.com"
username = "acct1"
password = "provider-pw"
from_user = "5550199"
[[outbound_routes]]
name = "external"
prefix = "9"
match = "X."
trunks = ["carrier", "provider"]
[[outbound_routes]]
name = "to-pbx"
prefix = "16"
match = "NXX"
prepend = "0"
trunks = ["provider"]
[[inbound_routes]]
name = "main-did"
trunk = "carrier"
did = "5550100"
destination = "extension:1001"
[[inbound_routes]]
name = "night"
trunk = "provider"
callerid = "0123X."
destination = "hangup"
"""


class Pbx:
    """The live state behind the API: a registrar and trunks the test drives by hand."""

    def __init__(self, api: ApiHarness) -> None:
        self.registry = api.registry
        self.registrar = Registrar(api.ctx.config, None, clock=api.clock)
        self.trunks = Trunks(api.ctx.config)

    def register(self, ext: str) -> None:
        text = (
            f"REGISTER sip:ippbx.local SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{ext}\r\n"
            f"From: <sip:{ext}@ippbx.local>;tag=1\r\nTo: <sip:{ext}@ippbx.local>\r\n"
            f"Call-ID: reg-{ext}\r\nCSeq: 1 REGISTER\r\n"
            f"Contact: <sip:{ext}@127.0.0.1:5070>\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n"
        )
        request = parse_message(text.encode())
        assert isinstance(request, Request)
        assert self.registrar.register(request, Peer("127.0.0.1", 5070, "udp"), ext).status == 200


@pytest.fixture
def cfg_api(api: ApiHarness, clock: FakeClock) -> Iterator[ApiHarness]:
    """The session API server serving CONFIG (no PBX view: registry-only statuses)."""
    api.reset(parse_config(CONFIG), clock)
    yield api
    api.ctx.pbx = None


@pytest.fixture
def pbx(cfg_api: ApiHarness) -> Pbx:
    """A PbxStatus over a hand-driven registrar and trunks, put into the API context."""
    state = Pbx(cfg_api)
    cfg_api.ctx.pbx = PbxStatus(state.registry, state.registrar, state.trunks)
    return state


async def ask(
    api: ApiHarness, version: str, endpoint: str, body: Any = None, fmt: str | None = None,
    token: str | None = None,
) -> bytes:
    token = token or await api.login(version)
    url = f"/api/{version}/{endpoint}?token={token}" + (f"&type={fmt}" if fmt else "")
    content = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    response = await api.post(url, content=content)
    assert response.status_code == 200
    return response.content


async def ask_json(api: ApiHarness, version: str, endpoint: str, body: Any = None) -> Any:
    return json.loads(await ask(api, version, endpoint, body))


def outbound_call(registry: CallRegistry, ext: str, leg_id: str) -> Leg:
    call = registry.start_call(Leg(LegKind.EXTENSION, ext, "95551234", extension=ext), "95551234")
    leg = Leg(LegKind.TRUNK, "66666", "5551234", trunk="carrier", id=leg_id)
    registry.add_callee(call, leg)
    registry.set_status(leg.id, LegStatus.TALKING)
    registry.set_status(call.caller.id, LegStatus.TALKING)
    return leg


# -- extensionlist/query ----------------------------------------------------------------------
async def test_extensionlist_json_both_dialects(cfg_api: ApiHarness, pbx: Pbx) -> None:
    pbx.register("1001")
    call = pbx.registry.start_call(Leg(LegKind.TRUNK, "0123", "5550100", trunk="carrier"), "x")
    pbx.registry.add_callee(call, Leg(LegKind.EXTENSION, "0123", "1005", extension="1005"))
    for version, ext_type in (("v0.0.1", "pjsip"), ("v1.1.0", "SIP")):
        for body in (None, b"{}"):
            assert await ask(cfg_api, version, "extensionlist/query", body) == (
                b'{"status":"Success","extlist":['
                b'{"extnumber":"1001","status":"Registered","type":"%s","username":"Alice",'
                b'"agentid":""},'
                b'{"extnumber":"1002","status":"Unavailable","type":"%s","username":"1002",'
                b'"agentid":""},'
                b'{"extnumber":"1005","status":"Ringing","type":"%s","username":"1005",'
                b'"agentid":""}]}' % ((ext_type.encode(),) * 3)
            )


async def test_extensionlist_xml_items(cfg_api: ApiHarness) -> None:
    def item(index: int, number: str, name: str) -> bytes:
        return (
            b'        <item id="%d">\n' % index
            + b"            <extnumber>%s</extnumber>\n" % number.encode()
            + b"            <status>Unavailable</status>\n"
            + b"            <type>pjsip</type>\n"
            + b"            <username>%s</username>\n" % name.encode()
            + b"            <agentid></agentid>\n"
            + b"        </item>\n"
        )

    assert await ask(cfg_api, "v0.0.1", "extensionlist/query", None, "xml") == (
        OK_XML + b"    <extlist>\n" + item(0, "1001", "Alice") + item(1, "1002", "1002")
        + item(2, "1005", "1005") + b"    </extlist>\n</xml>\n"
    )


async def test_extensionlist_empty_config(cfg_api: ApiHarness, clock: FakeClock) -> None:
    cfg_api.reset(parse_config('[api]\npassword = "apipass"\n'), clock)
    assert await ask(cfg_api, "v0.0.1", "extensionlist/query") == (
        b'{"status":"Success","extlist":[]}'
    )
    assert await ask(cfg_api, "v0.0.1", "extensionlist/query", None, "xml") == (
        OK_XML + b"    <extlist></extlist>\n</xml>\n"
    )
    assert await ask(cfg_api, "v0.0.1", "trunklist/query") == (
        b'{"status":"Success","trunkname":[]}'
    )


# -- extension/query --------------------------------------------------------------------------
EXT_1002_KEYS = [
    "extnumber", "username", "type", "status", "callerid", "registerpassword",
    "maxregistrations", "loginpassword", "email", "moblie", "language", "hasvoicemail",
    "vmsecret", "enablevmtoemail", "noanswerforward", "ntransferto", "ntransferext",
    "ntransferprefix", "ntransfernum", "busyforward", "btransferto", "btransferext",
    "btransferprefix", "btransfernum", "enablemobile", "ringsimultaneous", "mobileprefix",
    "allowbeingmonitored", "monitormode", "ringtimeout", "maxduration", "dnd",
]


@pytest.mark.parametrize("version", VERSIONS)
async def test_extension_query_one_idle_extension(
    cfg_api: ApiHarness, pbx: Pbx, version: str
) -> None:
    pbx.register("1001")
    answer = await ask_json(cfg_api, version, "extension/query", {"extid": "1001"})
    assert answer["status"] == "Success" and len(answer["extinfos"]) == 1
    info = answer["extinfos"][0]
    assert list(info) == EXT_1002_KEYS
    assert info == {
        "extnumber": "1001", "username": "Alice",
        "type": "pjsip" if version == "v0.0.1" else "SIP", "status": "Registered",
        "callerid": "5550101", "registerpassword": "secret1001", "maxregistrations": "1",
        "loginpassword": "", "email": "", "moblie": "", "language": "", "hasvoicemail": "off",
        "vmsecret": "", "enablevmtoemail": "off", "noanswerforward": "off", "ntransferto": "",
        "ntransferext": "", "ntransferprefix": "", "ntransfernum": "", "busyforward": "off",
        "btransferto": "", "btransferext": "", "btransferprefix": "", "btransfernum": "",
        "enablemobile": "off", "ringsimultaneous": "off", "mobileprefix": "",
        "allowbeingmonitored": "off", "monitormode": "disable", "ringtimeout": "25",
        "maxduration": "Unlimited", "dnd": "off",
    }


FEATURES = """
[sip]
no_answer_seconds = 25
[calls]
max_duration = 7200
[api]
password = "apipass"
[[extensions]]
number = "2101"
password = "Sip#2101x"
name = "alice"
email = "alice@example.net"
voicemail = true
vm_pin = "2468"
vm_email = "alice@example.net"
dnd = true
forward_noanswer = "voicemail:2101"
forward_busy = "extension:2102"
ring_timeout = 30
max_duration = 3600
mobile = "15550001111"
mobile_prefix = "9"
ring_mobile = true
[[extensions]]
number = "2102"
password = "Sip#2102x"
mobile = "15550002222"
forward_noanswer = "number:915550002222"
forward_busy = "number:95550003333"
[[extensions]]
number = "2103"
password = "Sip#2103x"
forward_noanswer = "ivr:6000"
forward_busy = "hangup"
[[ivrs]]
number = "6000"
"""


def features(info: dict[str, Any]) -> dict[str, Any]:
    """extension/query's fields from `email` on, without the vendor defaults of what ippbx
    has nothing behind (web login, language, monitoring)."""
    keys = EXT_1002_KEYS[EXT_1002_KEYS.index("email"):]
    skip = {"language", "allowbeingmonitored", "monitormode"}
    return {key: info[key] for key in keys if key not in skip}


@pytest.mark.parametrize("version", VERSIONS)
async def test_extension_query_shows_the_configured_features(
    cfg_api: ApiHarness, clock: FakeClock, version: str
) -> None:
    cfg_api.reset(parse_config(FEATURES), clock)
    answer = await ask_json(cfg_api, version, "extension/query")
    alice, bob, carol = answer["extinfos"]
    assert [list(info) for info in (alice, bob, carol)] == [EXT_1002_KEYS] * 3
    assert features(alice) == {
        "email": "alice@example.net", "moblie": "15550001111", "hasvoicemail": "on",
        "vmsecret": "2468", "enablevmtoemail": "on",
        "noanswerforward": "on", "ntransferto": "Voicemail", "ntransferext": "2101",
        "ntransferprefix": "", "ntransfernum": "",
        "busyforward": "on", "btransferto": "Extension", "btransferext": "2102",
        "btransferprefix": "", "btransfernum": "",
        "enablemobile": "on", "ringsimultaneous": "on", "mobileprefix": "9",
        "ringtimeout": "30", "maxduration": "3600", "dnd": "on",
    }
    assert (alice["loginpassword"], alice["language"], alice["allowbeingmonitored"],
            alice["monitormode"]) == ("", "", "off", "disable")
    assert features(bob) == {
        "email": "", "moblie": "15550002222", "hasvoicemail": "off", "vmsecret": "",
        "enablevmtoemail": "off",
        # the mobile dialled through route 9 (no mobile_prefix): a number like any other
        "noanswerforward": "on", "ntransferto": "Custom Number", "ntransferext": "",
        "ntransferprefix": "", "ntransfernum": "915550002222",
        "busyforward": "on", "btransferto": "Custom Number", "btransferext": "",
        "btransferprefix": "", "btransfernum": "95550003333",
        "enablemobile": "on", "ringsimultaneous": "off", "mobileprefix": "",
        "ringtimeout": "25", "maxduration": "7200", "dnd": "off",  # the system's values
    }
    assert features(carol) == {
        "email": "", "moblie": "", "hasvoicemail": "off", "vmsecret": "",
        "enablevmtoemail": "off",
        # an IVR is dialled like an extension; hangup: forwarded to nowhere
        "noanswerforward": "on", "ntransferto": "Extension", "ntransferext": "6000",
        "ntransferprefix": "", "ntransfernum": "",
        "busyforward": "on", "btransferto": "", "btransferext": "",
        "btransferprefix": "", "btransfernum": "",
        "enablemobile": "off", "ringsimultaneous": "off", "mobileprefix": "",
        "ringtimeout": "25", "maxduration": "7200", "dnd": "off",
    }


async def test_extension_query_mobile_number_forward_and_xml(
    cfg_api: ApiHarness, clock: FakeClock
) -> None:
    config = FEATURES.replace('forward_busy = "extension:2102"',
                              'forward_busy = "number:915550001111"')
    cfg_api.reset(parse_config(config), clock)
    xml = await ask(cfg_api, "v0.0.1", "extension/query", b"<xml><extid>2101</extid></xml>",
                    "xml")
    assert (
        b"            <email>alice@example.net</email>\n"
        b"            <moblie>15550001111</moblie>\n"
        b"            <language></language>\n"
        b"            <hasvoicemail>on</hasvoicemail>\n"
        b"            <vmsecret>2468</vmsecret>\n"
        b"            <enablevmtoemail>on</enablevmtoemail>\n"
        b"            <noanswerforward>on</noanswerforward>\n"
        b"            <ntransferto>Voicemail</ntransferto>\n"
        b"            <ntransferext>2101</ntransferext>\n"
        b"            <ntransferprefix></ntransferprefix>\n"
        b"            <ntransfernum></ntransfernum>\n"
        b"            <busyforward>on</busyforward>\n"
        b"            <btransferto>Mobile Number</btransferto>\n"
        b"            <btransferext></btransferext>\n"
        b"            <btransferprefix></btransferprefix>\n"
        b"            <btransfernum>915550001111</btransfernum>\n"
        b"            <enablemobile>on</enablemobile>\n"
        b"            <ringsimultaneous>on</ringsimultaneous>\n"
        b"            <mobileprefix>9</mobileprefix>\n"
        b"            <allowbeingmonitored>off</allowbeingmonitored>\n"
        b"            <monitormode>disable</monitormode>\n"
        b"            <ringtimeout>30</ringtimeout>\n"
        b"            <maxduration>3600</maxduration>\n"
        b"            <dnd>on</dnd>\n"
        b"        </item>\n    </extinfos>\n</xml>\n"
    ) in xml
    info = (await ask_json(cfg_api, "v1.1.0", "extension/query", {"extid": "2101"}))[
        "extinfos"][0]
    assert (info["btransferto"], info["btransfernum"]) == ("Mobile Number", "915550001111")


@pytest.mark.parametrize("version", VERSIONS)
async def test_extension_query_filters(cfg_api: ApiHarness, version: str) -> None:
    token = await cfg_api.login(version)

    async def numbers(body: Any) -> list[str]:
        answer = json.loads(await ask(cfg_api, version, "extension/query", body, token=token))
        assert answer["status"] == "Success", answer
        return [info["extnumber"] for info in answer["extinfos"]]

    everything = ["1001", "1002", "1005"]
    for body in (None, {}, {"extid": ""}, {"extid": "all"}, {"extid": "ALL"}, {"extid": None}):
        assert await numbers(body) == everything
    assert await numbers({"extid": "1002"}) == ["1002"]
    assert await numbers(b'{"extid": 1005}') == ["1005"]  # a number, not a string
    # a comma list: request order, trimmed, duplicates and unknown numbers dropped
    assert await numbers({"extid": " 1005 ,9999,1001,1005"}) == ["1005", "1001"]
    # an unknown extension is an empty success, not 10006
    assert await numbers({"extid": "9999"}) == []


async def test_extension_query_xml(cfg_api: ApiHarness) -> None:
    body = b"<xml><extid>1005</extid></xml>"
    xml = await ask(cfg_api, "v0.0.1", "extension/query", body, "xml")
    assert xml.startswith(OK_XML + (
        b"    <extinfos>\n"
        b'        <item id="0">\n'
        b"            <extnumber>1005</extnumber>\n"
        b"            <username>1005</username>\n"
        b"            <type>pjsip</type>\n"
        b"            <status>Unavailable</status>\n"
        b"            <callerid>1005</callerid>\n"
        b"            <registerpassword>secret1005</registerpassword>\n"
        b"            <maxregistrations>3</maxregistrations>\n"
        b"            <loginpassword></loginpassword>\n"
    ))
    assert xml.endswith(
        b"            <dnd>off</dnd>\n        </item>\n    </extinfos>\n</xml>\n"
    )
    assert await ask(cfg_api, "v0.0.1", "extension/query", b"<xml><extid>9</extid></xml>",
                     "xml") == OK_XML + b"    <extinfos></extinfos>\n</xml>\n"


async def test_extension_query_live_outbound_call(cfg_api: ApiHarness, pbx: Pbx) -> None:
    pbx.register("1001")
    leg = outbound_call(pbx.registry, "1001", "1589881535.980")
    info = (await ask_json(cfg_api, "v0.0.1", "extension/query", {"extid": "1001"}))[
        "extinfos"][0]
    assert info["status"] == "Busy"
    assert list(info)[-1] == "outbound" and "inbound" not in info and "ext" not in info
    assert info["outbound"] == {"outboundid": "1589881535.980", "from": "66666",
                                "to": "5551234", "trunk": "carrier"}
    xml = await ask(cfg_api, "v0.0.1", "extension/query", {"extid": "1001"}, "json")
    assert json.loads(xml)["extinfos"][0]["outbound"]["outboundid"] == "1589881535.980"
    xml = await ask(cfg_api, "v0.0.1", "extension/query",
                    b"<xml><extid>1001</extid></xml>", "xml")
    assert xml.endswith(
        b"            <dnd>off</dnd>\n"
        b"            <outbound>\n"
        b"                <outboundid>1589881535.980</outboundid>\n"
        b"                <from>66666</from>\n"
        b"                <to>5551234</to>\n"
        b"                <trunk>carrier</trunk>\n"
        b"            </outbound>\n"
        b"        </item>\n    </extinfos>\n</xml>\n"
    )
    pbx.registry.set_status(leg.id, LegStatus.WAIT)
    info = (await ask_json(cfg_api, "v1.1.0", "extension/query", {"extid": "1001"}))[
        "extinfos"][0]
    assert info["status"] == "Hold"
    pbx.registry.end_leg(leg.id)
    pbx.registry.end_leg(pbx.registry.calls()[0].caller.id)
    info = (await ask_json(cfg_api, "v0.0.1", "extension/query", {"extid": "1001"}))[
        "extinfos"][0]
    assert info["status"] == "Registered" and "outbound" not in info


async def test_extension_query_live_inbound_and_internal_calls(
    cfg_api: ApiHarness, pbx: Pbx
) -> None:
    inbound = pbx.registry.start_call(
        Leg(LegKind.TRUNK, "0123456", "5550100", trunk="carrier", id="1589881290.963"),
        "5550100",
    )
    pbx.registry.add_callee(inbound, Leg(LegKind.EXTENSION, "0123456", "1001", extension="1001"))
    internal = pbx.registry.start_call(
        Leg(LegKind.EXTENSION, "1002", "1005", extension="1002"), "1005"
    )
    pbx.registry.add_callee(internal, Leg(LegKind.EXTENSION, "1002", "1005", extension="1005"))
    answer = await ask_json(cfg_api, "v0.0.1", "extension/query", {"extid": "1001,1002,1005"})
    first, second, third = answer["extinfos"]
    assert first["status"] == "Ringing"
    assert first["inbound"] == {"inboundid": "1589881290.963", "from": "0123456",
                                "to": "5550100", "trunk": "carrier"}
    assert "outbound" not in first and "ext" not in first
    assert second["status"] == "Busy" and second["ext"] == {"extid": "1005"}
    assert third["status"] == "Ringing" and third["ext"] == {"extid": "1002"}
    listed = await ask_json(cfg_api, "v1.1.0", "extensionlist/query")
    assert [e["status"] for e in listed["extlist"]] == ["Ringing", "Busy", "Ringing"]


# -- trunklist/query --------------------------------------------------------------------------
async def test_trunklist_trunkname_key_on_openvox_trunklist_on_yeastar(
    cfg_api: ApiHarness, pbx: Pbx
) -> None:
    items = (
        b'[{"trunkname":"carrier","status":"Unknown","type":"SIP"},'
        b'{"trunkname":"provider","status":"Registering","type":"SIP"}]'
    )
    assert await ask(cfg_api, "v0.0.1", "trunklist/query") == (
        b'{"status":"Success","trunkname":' + items + b"}"
    )
    assert await ask(cfg_api, "v1.1.0", "trunklist/query", b"{}") == (
        b'{"status":"Success","trunklist":' + items + b"}"
    )
    pbx.trunks.status["provider"] = TrunkStatus.REGISTERED
    assert await ask(cfg_api, "v0.0.1", "trunklist/query", None, "xml") == OK_XML + (
        b"    <trunkname>\n"
        b'        <item id="0">\n'
        b"            <trunkname>carrier</trunkname>\n"
        b"            <status>Unknown</status>\n"
        b"            <type>SIP</type>\n"
        b"        </item>\n"
        b'        <item id="1">\n'
        b"            <trunkname>provider</trunkname>\n"
        b"            <status>Registered</status>\n"
        b"            <type>SIP</type>\n"
        b"        </item>\n"
        b"    </trunkname>\n"
        b"</xml>\n"
    )
    pbx.trunks.status["provider"] = TrunkStatus.FAILURE
    answer = await ask_json(cfg_api, "v0.0.1", "trunklist/query")
    assert answer["trunkname"][1]["status"] == "Failure"


async def test_trunklist_without_a_pbx_shows_unknown(cfg_api: ApiHarness) -> None:
    answer = await ask_json(cfg_api, "v0.0.1", "trunklist/query")
    assert [t["status"] for t in answer["trunkname"]] == ["Unknown", "Unknown"]


# -- siptrunk/query ---------------------------------------------------------------------------
CARRIER = {"id": "1", "trunkname": "carrier", "tech": "pjsip", "trunktype": "peer",
           "host": "127.0.0.1", "port": "5080", "domain": "127.0.0.1"}
PROVIDER = {"id": "2", "trunkname": "provider", "tech": "pjsip", "trunktype": "register",
            "host": "sip.example.com", "port": "5060", "domain": "sip.example.com",
            "username": "acct1", "authname": "acct1", "fromuser": "5550199",
            "password": "provider-pw"}


@pytest.mark.parametrize("version", VERSIONS)
async def test_siptrunk_query_filters(cfg_api: ApiHarness, version: str) -> None:
    token = await cfg_api.login(version)

    async def trunks(body: Any) -> Any:
        return json.loads(await ask(cfg_api, version, "siptrunk/query", body, token=token))

    assert await trunks({"trunkname": "all"}) == {
        "status": "Success", "trunks": [CARRIER, PROVIDER]
    }
    assert (await trunks({"trunkname": "provider"}))["trunks"] == [PROVIDER]
    assert (await trunks({"trunkname": "provider, nope,carrier"}))["trunks"] == [
        PROVIDER, CARRIER
    ]
    assert await trunks({"trunkname": "nope"}) == {"status": "Success", "trunks": []}
    for body in (None, {}, {"trunkname": ""}, {"trunkname": " , "}, {"other": "x"}):
        assert await trunks(body) == {"status": "Failed", "errno": "10004"}, body


async def test_siptrunk_query_xml(cfg_api: ApiHarness) -> None:
    body = b"<xml><trunkname>carrier</trunkname></xml>"
    assert await ask(cfg_api, "v0.0.1", "siptrunk/query", body, "xml") == OK_XML + (
        b"    <trunks>\n"
        b'        <item id="0">\n'
        b"            <id>1</id>\n"
        b"            <trunkname>carrier</trunkname>\n"
        b"            <tech>pjsip</tech>\n"
        b"            <trunktype>peer</trunktype>\n"
        b"            <host>127.0.0.1</host>\n"
        b"            <port>5080</port>\n"
        b"            <domain>127.0.0.1</domain>\n"
        b"        </item>\n"
        b"    </trunks>\n"
        b"</xml>\n"
    )
    assert await ask(cfg_api, "v0.0.1", "siptrunk/query", b"<xml></xml>", "xml") == (
        DECL + b"<xml>\n    <status>Failed</status>\n    <errno>10004</errno>\n</xml>\n"
    )


# -- outroute/query, inroute/query ------------------------------------------------------------
EXTERNAL = {"id": "1", "name": "external", "prepend": "", "prefix": "9", "matchpattern": "X.",
            "callerid": "", "trunks": "carrier,provider"}
TO_PBX = {"id": "2", "name": "to-pbx", "prepend": "0", "prefix": "16", "matchpattern": "NXX",
          "callerid": "", "trunks": "provider"}
MAIN_DID = {"id": "1", "name": "main-did", "did": "5550100", "caller_id": "",
            "desttype": "extension", "dest": "1001"}
NIGHT = {"id": "2", "name": "night", "did": "", "caller_id": "0123X.", "desttype": "hangup",
         "dest": ""}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("endpoint", "key", "first", "second"), [
    ("outroute/query", "outroutes", EXTERNAL, TO_PBX),
    ("inroute/query", "inroutes", MAIN_DID, NIGHT),
])
async def test_route_queries(
    cfg_api: ApiHarness, version: str, endpoint: str, key: str, first: dict[str, str],
    second: dict[str, str],
) -> None:
    token = await cfg_api.login(version)

    async def routes(body: Any) -> Any:
        return json.loads(await ask(cfg_api, version, endpoint, body, token=token))

    assert await routes({"name": "all"}) == {"status": "Success", key: [first, second]}
    assert list((await routes({"name": "all"}))[key][0]) == list(first)
    assert (await routes({"name": second["name"]}))[key] == [second]
    names = f"{second['name']},missing, {first['name']},{second['name']}"
    assert (await routes({"name": names}))[key] == [second, first]
    assert await routes({"name": "missing"}) == {"status": "Success", key: []}
    for body in (None, {}, {"name": ""}, {"name": ","}, {"name": None}):
        assert await routes(body) == {"status": "Failed", "errno": "10004"}, body


async def test_outroute_query_vendor_example_xml(cfg_api: ApiHarness) -> None:
    body = b"<xml><name>to-pbx</name></xml>"
    assert await ask(cfg_api, "v0.0.1", "outroute/query", body, "xml") == OK_XML + (
        b"    <outroutes>\n"
        b'        <item id="0">\n'
        b"            <id>2</id>\n"
        b"            <name>to-pbx</name>\n"
        b"            <prepend>0</prepend>\n"
        b"            <prefix>16</prefix>\n"
        b"            <matchpattern>NXX</matchpattern>\n"
        b"            <callerid></callerid>\n"
        b"            <trunks>provider</trunks>\n"
        b"        </item>\n"
        b"    </outroutes>\n"
        b"</xml>\n"
    )


async def test_inroute_query_xml(cfg_api: ApiHarness) -> None:
    xml = await ask(cfg_api, "v0.0.1", "inroute/query", b"<xml><name>all</name></xml>", "xml")
    assert xml == OK_XML + (
        b"    <inroutes>\n"
        b'        <item id="0">\n'
        b"            <id>1</id>\n"
        b"            <name>main-did</name>\n"
        b"            <did>5550100</did>\n"
        b"            <caller_id></caller_id>\n"
        b"            <desttype>extension</desttype>\n"
        b"            <dest>1001</dest>\n"
        b"        </item>\n"
        b'        <item id="1">\n'
        b"            <id>2</id>\n"
        b"            <name>night</name>\n"
        b"            <did></did>\n"
        b"            <caller_id>0123X.</caller_id>\n"
        b"            <desttype>hangup</desttype>\n"
        b"            <dest></dest>\n"
        b"        </item>\n"
        b"    </inroutes>\n"
        b"</xml>\n"
    )
    assert await ask(cfg_api, "v0.0.1", "inroute/query", b"<xml><name>x</name></xml>",
                     "xml") == OK_XML + b"    <inroutes></inroutes>\n</xml>\n"


@pytest.mark.parametrize("endpoint", [
    "extensionlist/query", "extension/query", "trunklist/query", "siptrunk/query",
    "outroute/query", "inroute/query",
])
async def test_config_queries_need_a_token(cfg_api: ApiHarness, endpoint: str) -> None:
    for version in VERSIONS:
        response = await cfg_api.post(f"/api/{version}/{endpoint}", json={"name": "all"})
        assert response.json() == {"status": "Failed", "errno": "20005"}


# -- a whole ippbx: a sipp phone registers and calls out --------------------------------------
async def test_live_status_of_a_real_phone(tmp_path: Path, sipp: SippFactory) -> None:
    carrier_port = free_port()
    pbx = await PbxHarness.start(tmp_path, trunks=[TrunkSpec("carrier", carrier_port)])
    try:
        async def ext(number: str) -> dict[str, Any]:
            answer = (await pbx.post("extension/query", {"extid": number})).json()
            assert answer["status"] == "Success", answer
            return dict(answer["extinfos"][0])

        assert (await ext("1001"))["status"] == "Unavailable"
        carrier = await sipp("uas.xml", port=carrier_port, calls=1).astart()
        phone = await sipp("uac_auth.xml", remote=pbx.sip_address, calls=1, duration_ms=1500,
                           auth=("1001", ext_password("1001")), keys={"user": "1001"},
                           service="95551234", recv_timeout_ms=5000, sipp_timeout_s=15).astart()

        async def busy() -> dict[str, Any] | None:
            info = await ext("1001")
            return info if info["status"] == "Busy" else None

        info = await pbx.wait_for(busy, 5, "1001 to be busy")
        [outbound] = await pbx.outbound()
        assert info["outbound"] == {"outboundid": outbound["outboundid"], "from": "1001",
                                    "to": "5551234", "trunk": "carrier"}
        listed = (await pbx.post("extensionlist/query")).json()["extlist"]
        assert [(e["extnumber"], e["status"]) for e in listed][:2] == [
            ("1001", "Busy"), ("1002", "Unavailable")
        ]
        xml = (await pbx.post("extension/query", "<xml><extid>1001</extid></xml>", "xml")).text
        assert "<status>Busy</status>" in xml and "<trunk>carrier</trunk>" in xml
        trunks = (await pbx.post("trunklist/query")).json()
        assert trunks == {"status": "Success", "trunkname": [
            {"trunkname": "carrier", "status": "Unknown", "type": "SIP"}]}

        (await phone.await_result(15)).assert_ok(calls=1)
        (await carrier.await_result(10)).assert_ok(calls=1)

        async def registered() -> dict[str, Any] | None:
            info = await ext("1001")
            return info if info["status"] == "Registered" else None

        info = await pbx.wait_for(registered, 5, "1001 to be idle again")
        assert "outbound" not in info
    finally:
        await pbx.stop()
