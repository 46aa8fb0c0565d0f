"""outbound/query, inbound/query and deviceinfo/query over real HTTP, in JSON and XML.

Calls are put straight into the CallRegistry (the test-only path until SIP places them).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from ippbx.api.codec import decode_xml
from ippbx.pbx.calls import CallRegistry, Leg, LegKind, LegStatus

if TYPE_CHECKING:
    from conftest import ApiHarness

pytestmark = pytest.mark.asyncio(loop_scope="session")

DECL = b'<?xml version="1.0" encoding="UTF-8" ?>\n'


def outbound_call(
    registry: CallRegistry,
    *,
    leg_id: str,
    ext: str = "1001",
    to: str = "5551234",
    callerid: str = "66666",
    trunk: str = "carrier",
    status: LegStatus = LegStatus.TALKING,
) -> str:
    caller = Leg(kind=LegKind.EXTENSION, from_number=ext, to_number="9" + to, extension=ext)
    call = registry.start_call(caller, "9" + to)
    leg = Leg(kind=LegKind.TRUNK, from_number=callerid, to_number=to, trunk=trunk, id=leg_id)
    registry.add_callee(call, leg)
    if status is not LegStatus.PROGRESS:
        registry.set_status(leg.id, status)
    return leg.id


def inbound_call(
    registry: CallRegistry,
    *,
    leg_id: str,
    caller: str = "0123456",
    did: str = "5550100",
    ext: str | None = "1001",
    trunk: str = "carrier",
    status: LegStatus = LegStatus.TALKING,
) -> str:
    leg = Leg(kind=LegKind.TRUNK, from_number=caller, to_number=did, trunk=trunk, id=leg_id)
    call = registry.start_call(leg, did)
    if ext is not None:
        registry.add_callee(
            call, Leg(kind=LegKind.EXTENSION, from_number=caller, to_number=ext, extension=ext)
        )
    if status is not LegStatus.PROGRESS:
        registry.set_status(leg.id, status)
    return leg.id


async def query(
    api: ApiHarness, version: str, what: str, token: str, body: bytes | None = None,
    fmt: str | None = None,
) -> bytes:
    url = f"/api/{version}/{what}/query?token={token}" + (f"&type={fmt}" if fmt else "")
    response = await api.post(url, content=body)
    assert response.status_code == 200
    return response.content


# -- outbound ---------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["v0.0.1", "v1.1.0"])
@pytest.mark.parametrize(
    "body", [None, b"{}", b'{"outboundid":""}', b'{"outboundid":"all"}', b'{"outboundid":null}',
             b'{"outboundid":"1.1,2.2"}']
)
async def test_outbound_none_live(api: ApiHarness, version: str, body: bytes | None) -> None:
    token = await api.login(version)
    assert await query(api, version, "outbound", token, body) == (
        b'{"status":"Success","outbound":[]}'
    )


async def test_outbound_none_live_xml(api: ApiHarness) -> None:
    token = await api.login()
    for body in (None, b"<xml></xml>", b"<xml><outboundid>all</outboundid></xml>"):
        assert await query(api, "v0.0.1", "outbound", token, body, "xml") == (
            DECL + b"<xml>\n    <status>Success</status>\n</xml>\n"
        )


async def test_outbound_one_call_json_and_the_vendor_xml_example(api: ApiHarness) -> None:
    outbound_call(api.registry, leg_id="1589881535.982", to="103", trunk="to-18-16-2")
    token = await api.login()
    expected_json = (
        b'{"status":"Success","outbound":[{"outboundid":"1589881535.982","from":"66666",'
        b'"to":"103","trunk":"to-18-16-2","status":"Talking"}]}'
    )
    assert await query(api, "v0.0.1", "outbound", token) == expected_json
    assert await query(api, "v1.1.0", "outbound", token) == expected_json
    xml_request = (
        b'<?xml version="1.0" encoding="UTF-8" ?>\n<xml>\n'
        b"    <outboundid>1589881535.982</outboundid>\n</xml>"
    )
    assert await query(api, "v0.0.1", "outbound", token, xml_request, "xml") == (
        b'<?xml version="1.0" encoding="UTF-8" ?>\n'
        b"<xml>\n"
        b"    <status>Success</status>\n"
        b"    <outbound>\n"
        b"        <outboundid>1589881535.982</outboundid>\n"
        b"        <from>66666</from>\n"
        b"        <to>103</to>\n"
        b"        <trunk>to-18-16-2</trunk>\n"
        b"        <status>Talking</status>\n"
        b"    </outbound>\n"
        b"</xml>\n"
    )


async def test_outbound_three_calls(api: ApiHarness) -> None:
    a = outbound_call(api.registry, leg_id="1589881535.10", to="111", status=LegStatus.PROGRESS)
    b = outbound_call(api.registry, leg_id="1589881535.20", to="222", ext="1002")
    c = outbound_call(api.registry, leg_id="1589881535.30", to="333", status=LegStatus.WAIT)
    token = await api.login()
    everything = json.loads(await query(api, "v0.0.1", "outbound", token))["outbound"]
    assert [(o["outboundid"], o["to"], o["status"]) for o in everything] == [
        (a, "111", "Progress"), (b, "222", "Talking"), (c, "333", "Wait")
    ]
    assert list(everything[0]) == ["outboundid", "from", "to", "trunk", "status"]
    # a comma list: request order, whitespace trimmed, unknown and duplicate ids dropped
    body = json.dumps({"outboundid": f" {c} ,nope, {a},{c}"}).encode()
    picked = json.loads(await query(api, "v1.1.0", "outbound", token, body))["outbound"]
    assert [o["outboundid"] for o in picked] == [c, a]
    xml = await query(api, "v0.0.1", "outbound", token, None, "xml")
    assert xml.count(b"<outbound>") == 3 and xml.count(b"</outbound>") == 3
    assert xml.startswith(DECL + b"<xml>\n    <status>Success</status>\n    <outbound>\n")
    assert b"    </outbound>\n    <outbound>\n        <outboundid>1589881535.20</outboundid>" in xml
    # an ended call is no longer listed
    api.registry.end_leg(b)
    picked = json.loads(await query(api, "v0.0.1", "outbound", token))["outbound"]
    assert [o["outboundid"] for o in picked] == [a, c]


@pytest.mark.parametrize("version", ["v0.0.1", "v1.1.0"])
async def test_ids_with_trailing_zeros_stay_intact(api: ApiHarness, version: str) -> None:
    outbound_call(api.registry, leg_id="1589938378.1130")
    outbound_call(api.registry, leg_id="1589938378.113")
    token = await api.login(version)
    for body in (b'{"outboundid": 1589938378.1130}', b'{"outboundid":"1589938378.1130"}'):
        found = json.loads(await query(api, version, "outbound", token, body))["outbound"]
        assert [o["outboundid"] for o in found] == ["1589938378.1130"]
    found = json.loads(
        await query(api, version, "outbound", token, b'{"outboundid": 1589938378.113}')
    )["outbound"]
    assert [o["outboundid"] for o in found] == ["1589938378.113"]


async def test_trailing_zeros_in_xml(api: ApiHarness) -> None:
    outbound_call(api.registry, leg_id="1589938378.1130")
    token = await api.login()
    body = b"<xml><outboundid>1589938378.1130</outboundid></xml>"
    answer = decode_xml(await query(api, "v0.0.1", "outbound", token, body))
    assert answer["outbound"]["outboundid"] == "1589938378.1130"


# -- inbound ----------------------------------------------------------------------------------
async def test_inbound_none_live(api: ApiHarness) -> None:
    token = await api.login()
    for version in ("v0.0.1", "v1.1.0"):
        for body in (None, b"{}", b'{"inboundid":"all"}', b'{"inboundid":"9.9"}'):
            assert await query(api, version, "inbound", token, body) == (
                b'{"status":"Success","inbound":[]}'
            )
    assert await query(api, "v0.0.1", "inbound", token, None, "xml") == (
        DECL + b"<xml>\n    <status>Success</status>\n</xml>\n"
    )


async def test_inbound_one_call_callee_object_or_array(api: ApiHarness) -> None:
    inbound_call(api.registry, leg_id="1589881290.963", caller="103", did="101", ext="101",
                 trunk="to-18-16-2")
    token = await api.login()
    assert await query(api, "v0.0.1", "inbound", token) == (
        b'{"status":"Success","inbound":[{"inboundid":"1589881290.963","from":"103","to":"101",'
        b'"trunk":"to-18-16-2","callee":{"extid":"101"},"status":"Talking"}]}'
    )
    assert await query(api, "v1.1.0", "inbound", token) == (
        b'{"status":"Success","inbound":[{"inboundid":"1589881290.963","from":"103","to":"101",'
        b'"trunk":"to-18-16-2","callee":[{"extid":"101"}],"status":"Talking"}]}'
    )
    body = b"<xml><inboundid>1589881290.963</inboundid></xml>"
    assert await query(api, "v0.0.1", "inbound", token, body, "xml") == (
        DECL + b"<xml>\n"
        b"    <status>Success</status>\n"
        b"    <inbound>\n"
        b"        <inboundid>1589881290.963</inboundid>\n"
        b"        <from>103</from>\n"
        b"        <to>101</to>\n"
        b"        <trunk>to-18-16-2</trunk>\n"
        b"        <callee>\n"
        b"            <extid>101</extid>\n"
        b"        </callee>\n"
        b"        <status>Talking</status>\n"
        b"    </inbound>\n"
        b"</xml>\n"
    )


async def test_inbound_three_calls(api: ApiHarness) -> None:
    a = inbound_call(api.registry, leg_id="1589881290.100", ext="1001")
    b = inbound_call(api.registry, leg_id="1589881290.200", ext="1002", status=LegStatus.PROGRESS)
    c = inbound_call(api.registry, leg_id="1589881290.300", ext=None, status=LegStatus.PROGRESS)
    token = await api.login()
    found = json.loads(await query(api, "v0.0.1", "inbound", token))["inbound"]
    assert [(i["inboundid"], i["callee"], i["status"]) for i in found] == [
        (a, {"extid": "1001"}, "Talking"), (b, {"extid": "1002"}, "Progress"),
        (c, {"extid": ""}, "Progress"),
    ]
    assert list(found[0]) == ["inboundid", "from", "to", "trunk", "callee", "status"]
    body = json.dumps({"inboundid": f"{c},{a}, unknown"}).encode()
    found = json.loads(await query(api, "v1.1.0", "inbound", token, body))["inbound"]
    assert [(i["inboundid"], i["callee"]) for i in found] == [
        (c, [{"extid": ""}]), (a, [{"extid": "1001"}])
    ]
    xml = await query(api, "v0.0.1", "inbound", token, None, "xml")
    assert xml.count(b"<inbound>") == 3
    body = b"<xml><inboundid>1589881290.200,1589881290.100</inboundid></xml>"
    xml = await query(api, "v0.0.1", "inbound", token, body, "xml")
    assert xml.index(b"1589881290.200") < xml.index(b"1589881290.100")


async def test_inbound_query_takes_a_number(api: ApiHarness) -> None:
    inbound_call(api.registry, leg_id="1589881290.9630")
    token = await api.login()
    found = json.loads(
        await query(api, "v0.0.1", "inbound", token, b'{"inboundid":1589881290.9630}')
    )["inbound"]
    assert [i["inboundid"] for i in found] == ["1589881290.9630"]


# -- deviceinfo -------------------------------------------------------------------------------
async def test_deviceinfo_both_dialects(api: ApiHarness) -> None:
    outbound_call(api.registry, leg_id="1.1", ext="1001")
    inbound_call(api.registry, leg_id="1.2", ext="1002")
    token = await api.login()
    expected = (
        b'{"status":"Success","deviceinfo":{"devicename":"ippbx demo","sn":"ippbx0demo01",'
        b'"hardwarever":"1.0","firmwarever":"0.1.0","systemtime":"2020-05-19 04:06:07",'
        b'"uptime":"2020-Mar-23-08:33:22","extensionstatus":"2/5"}}'
    )
    assert await query(api, "v0.0.1", "deviceinfo", token) == expected
    assert await query(api, "v1.1.0", "deviceinfo", token) == expected
    xml = decode_xml(await query(api, "v0.0.1", "deviceinfo", token, None, "xml"))
    assert xml["deviceinfo"]["systemtime"] == "2020-05-19 04:06:07"
    assert xml["deviceinfo"]["extensionstatus"] == "2/5"


async def test_deviceinfo_uses_the_configured_time_zone(api: ApiHarness) -> None:
    config = api.ctx.config
    pbx = config.pbx.model_copy(update={"timezone": "Asia/Shanghai"})
    api.reset(config.model_copy(update={"pbx": pbx}), api.clock)
    token = await api.login()
    info = json.loads(await query(api, "v0.0.1", "deviceinfo", token))["deviceinfo"]
    assert (info["systemtime"], info["uptime"]) == ("2020-05-19 12:06:07", "2020-Mar-23-16:33:22")


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_a_large_answer_is_sent_whole_in_pieces(api: ApiHarness, fmt: str) -> None:
    """4,000 live calls answer with over 256 KiB, sent in pieces: the client gets every
    call, in creation order, with a Content-Length that matches; a second query while
    the calls changed shows the change."""
    ids = [outbound_call(api.registry, leg_id=f"1700000000.{i}", to=f"555{i:04d}",
                         status=LegStatus.PROGRESS) for i in range(4000)]
    token = await api.login()
    response = await api.post(f"/api/v0.0.1/outbound/query?token={token}&type={fmt}")
    assert len(response.content) > 256 * 1024
    assert int(response.headers["content-length"]) == len(response.content)
    if fmt == "json":
        calls = json.loads(response.content)["outbound"]
    else:
        calls = decode_xml(response.content)["outbound"]
    assert [c["outboundid"] for c in calls] == ids
    assert {c["status"] for c in calls} == {"Progress"}
    api.registry.set_status(ids[1234], LegStatus.TALKING)
    body = await query(api, "v0.0.1", "outbound", token, fmt="json")
    calls = json.loads(body)["outbound"]
    assert calls[1234]["status"] == "Talking" and calls[1233]["status"] == "Progress"
