"""Calls the API places towards outside numbers, with real SIP and audio: the callback
(`outbound/dial_outbound`: ippbx calls an outside number first, then connects it to an
extension, an IVR, a ring group or another outside number), `queue/dial_outbound`, and
click-to-call towards every kind of local number.

The outside parties are `AudioPhone` carriers on the trunks' ports (route 9 → trunk
"carrier", route 8 → trunk "second"), the extensions `AudioPhone`s; the PBX runs its own
rtpengine, so the outside party ippbx called is answered at once and hears ringback
while the other party rings. What a user notices is checked: who rings first, what each
one hears, what `outbound/query` lists, the reports and the CDR.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from audio_phone import AudioPhone, user_of
from pbx_harness import PbxHarness, Start, TrunkSpec
from reports_harness import Receiver
from sipp_harness import SippFactory, free_port
from test_applications import IVR, RINGBACK, TONE_C, hears_sound, reports, rings, until
from test_media_calls import (
    TONE_A,
    TONE_B,
    hear_each_other,
    no_engine_calls,
    start_media_pbx,
    starts_hearing,
)

from ippbx.config import Config

SECOND_ROUTE = """
[[outbound_routes]]
name = "second"
prefix = "8"
match = "X."
trunks = ["second"]
"""
ONLY_1002_ROUTE = """
[[outbound_routes]]
name = "only1002"
prefix = "7"
match = "X."
trunks = ["carrier"]
extensions = ["1002"]
"""
GROUP = {"number": "6300", "name": "sales", "strategy": "ringall",
         "members": ["1003", "1004"], "ring_seconds": 10}
QUEUE = {"number": "6800", "name": "support", "agents": ["1003"]}
PAGING = {"number": "6900", "name": "hall", "members": ["1004"]}


def local_numbers(config: Config) -> Config:
    """A harness `adjust`: IVR 6000 (1 → 1002), ring group 6300 (1003, 1004), queue 6800,
    paging group 6900."""
    data = config.model_dump()
    data.update(ivrs=[IVR], ring_groups=[GROUP], queues=[QUEUE], paging_groups=[PAGING])
    return Config.model_validate(data)


async def ok(pbx: PbxHarness, endpoint: str, body: Any) -> dict[str, Any]:
    answer = (await pbx.post(endpoint, body)).json()
    assert answer["status"] == "Success" and answer["callid"], (endpoint, body, answer)
    return answer  # type: ignore[no-any-return]


async def fails(pbx: PbxHarness, endpoint: str, body: Any, errno: int) -> None:
    answer = (await pbx.post(endpoint, body)).json()
    assert answer == {"status": "Failed", "errno": str(errno)}, (endpoint, body, answer)


def first(receiver: Receiver, action: str,
          where: Callable[[dict[str, Any]], bool] = lambda _: True) -> dict[str, Any]:
    found = [r for r in reports(receiver, action) if where(r)]
    assert found, (action, [g.body for g in receiver.got])
    return found[0]


async def test_callback_rings_the_outside_number_first_then_the_extension(
        start_pbx: Start, tmp_path: Path) -> None:
    carrier_port = free_port()
    pbx = await start_media_pbx(start_pbx, tmp_path, [TrunkSpec("carrier", carrier_port)])
    receiver = await Receiver().start()
    await pbx.login(report_port=receiver.port)
    carrier = await AudioPhone.carrier(pbx.sip_address, carrier_port, tone=TONE_A,
                                       answer_delay=1.0)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B, answer_delay=1.5)
    try:
        answer = await ok(pbx, "outbound/dial_outbound",
                          {"caller": "95550001111", "outto": "1002"})
        await rings(carrier)
        assert user_of(carrier.incoming[0].uri) == "5550001111"  # (the prefix stripped)
        assert b.incoming == []  # the extension waits until the outside party answers
        await carrier.wait_established()
        await rings(b)
        await starts_hearing(carrier, RINGBACK, timeout=2)  # while 1002 rings
        await b.wait_established()
        await hear_each_other(carrier, TONE_A, b, TONE_B)
        [leg] = await pbx.outbound()
        assert (leg["to"], leg["trunk"], leg["status"]) == ("5550001111", "carrier",
                                                            "Talking"), leg
        call = pbx.app.registry.by_outboundid(leg["outboundid"])
        assert call is not None and call.callid == answer["callid"]
        assert (await b.hangup()).status == 200
        await carrier.wait_ended()

        await until(lambda: reports(receiver, "NewCdr"), "the NewCdr")
        # 1002's answer is reported with the outside party as the caller side
        answered = first(receiver, "ANSWER")
        assert answered["callid"] == answer["callid"], answered
        assert answered["ext"] == {"extid": "1002"}, answered
        assert answered["outbound"]["outboundid"] == leg["outboundid"], answered
        assert first(receiver, "RING")["ext"] == {"extid": "1002"}
        assert reports(receiver, "CallFailed") == []
        [record] = reports(receiver, "NewCdr")
        assert (record["status"], record["type"], record["callto"], record["desttrunkname"]) \
            == ("ANSWERED", "Outbound", "1002", "carrier"), record
        await no_engine_calls(pbx)
        await pbx.stop()
    finally:
        await carrier.stop()
        await b.stop()
        await receiver.stop()


async def test_callback_between_two_outside_numbers(start_pbx: Start, tmp_path: Path) -> None:
    first_port, second_port = free_port(), free_port()
    pbx = await start_media_pbx(
        start_pbx, tmp_path, [TrunkSpec("carrier", first_port), TrunkSpec("second", second_port)],
        route_trunks=["carrier"], extra=SECOND_ROUTE)
    receiver = await Receiver().start()
    await pbx.login(report_port=receiver.port)
    near = await AudioPhone.carrier(pbx.sip_address, first_port, tone=TONE_A, name="near")
    far = await AudioPhone.carrier(pbx.sip_address, second_port, tone=TONE_B, name="far",
                                   answer_delay=1.0)
    try:
        answer = await ok(pbx, "outbound/dial_outbound",
                          {"caller": "95550001111", "outto": "85550002222"})
        await near.wait_established()
        await rings(far)
        assert user_of(far.incoming[0].uri) == "5550002222"
        await starts_hearing(near, RINGBACK, timeout=2)
        await far.wait_established()
        await hear_each_other(near, TONE_A, far, TONE_B)
        # both legs are outbound calls of ippbx's, Talking
        legs = {leg["to"]: leg for leg in await pbx.outbound()}
        assert {to: (leg["trunk"], leg["status"]) for to, leg in legs.items()} == {
            "5550001111": ("carrier", "Talking"), "5550002222": ("second", "Talking")}, legs
        assert (await pbx.post("outbound/hangup", {
            "outboundid": legs["5550002222"]["outboundid"]})).json() == {"status": "Success"}
        await near.wait_ended()
        await far.wait_ended()

        await until(lambda: reports(receiver, "NewCdr"), "the NewCdr")
        answered = first(receiver, "ANSWER")
        assert answered["callid"] == answer["callid"], answered
        assert answered["outbound"]["outboundid"] == legs["5550002222"]["outboundid"]
        [record] = reports(receiver, "NewCdr")
        assert (record["status"], record["type"], record["callto"], record["desttrunkname"]) \
            == ("ANSWERED", "Outbound", "85550002222", "second"), record
        await no_engine_calls(pbx)
        await pbx.stop()
    finally:
        for phone in (near, far):
            await phone.stop()
        await receiver.stop()


async def test_callback_into_an_ivr_a_ring_group_and_click_to_call_a_ring_group(
        start_pbx: Start, tmp_path: Path) -> None:
    carrier_port = free_port()
    pbx = await start_media_pbx(start_pbx, tmp_path, [TrunkSpec("carrier", carrier_port)],
                                adjust=local_numbers)
    carrier = await AudioPhone.carrier(pbx.sip_address, carrier_port, tone=TONE_A)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B)
    c = await AudioPhone.extension(pbx.sip_address, "1003", tone=TONE_C, answer_delay=0.5)
    d = await AudioPhone.extension(pbx.sip_address, "1004", answer_delay=30)
    try:
        # into the IVR: the outside party hears the menu and keys 1 for 1002
        await ok(pbx, "outbound/dial_outbound", {"caller": "95550001111", "outto": "6000"})
        await carrier.wait_established()
        await hears_sound(carrier)
        await carrier.send_dtmf("1")
        await b.wait_established()
        await hear_each_other(carrier, TONE_A, b, TONE_B)
        assert (await carrier.hangup()).status == 200
        await b.wait_ended()

        # into the ring group: both members ring, 1003 answers first
        await ok(pbx, "outbound/dial_outbound", {"caller": "95550001111", "outto": "6300"})
        await c.wait_established()
        await until(lambda: d.cancelled == 1, "1004's CANCEL")
        await hear_each_other(carrier, TONE_A, c, TONE_C)
        assert (await c.hangup()).status == 200
        await carrier.wait_ended()

        # click-to-call from 1002 to the ring group (a local number, not an extension)
        await ok(pbx, "extension/dial_extension", {"caller": "1002", "callee": "6300"})
        await c.wait_established()
        await until(lambda: d.cancelled == 2, "1004's CANCEL")
        await hear_each_other(b, TONE_B, c, TONE_C)
        assert (await b.hangup()).status == 200
        await c.wait_ended()
        await no_engine_calls(pbx)
        await pbx.stop()
    finally:
        for phone in (carrier, b, c, d):
            await phone.stop()


async def test_callback_and_queue_dial_errors_and_every_local_number_is_dialled(
        start_pbx: Start, tmp_path: Path) -> None:
    """Without a media engine: what the API refuses, and that a queue's or a paging
    group's number is taken by the dial endpoints (the outside party or the extension
    rings; hung up before it answers)."""
    carrier_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", carrier_port)], extra=ONLY_1002_ROUTE,
                          adjust=local_numbers)
    carrier = await AudioPhone.carrier(pbx.sip_address, carrier_port, answer_delay=30)
    b = await AudioPhone.extension(pbx.sip_address, "1002", answer_delay=30)
    try:
        callback = "outbound/dial_outbound"
        for body in ({"outto": "1002"}, {"caller": "95550001111"}, {"caller": "",
                                                                     "outto": "1002"}):
            await fails(pbx, callback, body, 10004)
        await fails(pbx, callback, {"caller": "0123", "outto": "1002"}, 10011)
        await fails(pbx, callback, {"caller": "95550001111", "outto": "0123"}, 10011)
        # route 7 is 1002's alone: not for the routes open to all, nor for 1003
        await fails(pbx, callback, {"caller": "75550001111", "outto": "1002"}, 10024)
        await fails(pbx, callback, {"caller": "95550001111", "outto": "75550002222"}, 10024)
        await fails(pbx, callback, {"caller": "75550001111", "outto": "1002",
                                    "fromext": "1003"}, 10024)
        await fails(pbx, callback, {"caller": "95550001111", "outto": "1002",
                                    "fromext": "1999"}, 10006)
        await fails(pbx, callback, {"caller": "95550001111", "outto": "1005"}, 10006)

        queue = "queue/dial_outbound"
        await fails(pbx, queue, {"outto": "95550001111"}, 10004)
        await fails(pbx, queue, {"queueid": "6800"}, 10004)
        for number in ("6801", "6000", "6300", "1002"):  # no queue by those numbers
            await fails(pbx, queue, {"queueid": number, "outto": "95550001111"}, 10013)
        await fails(pbx, queue, {"queueid": "6800", "outto": "0123"}, 10011)
        await fails(pbx, queue, {"queueid": "6800", "outto": "75550001111"}, 10024)
        xml = await pbx.post(queue, "<xml><queueid>6801</queueid><outto>95550001111</outto>"
                                    "</xml>", type="xml")
        assert "<errno>10013</errno>" in xml.text, xml.text
        assert len(pbx.app.registry) == 0 and carrier.incoming == [] and b.incoming == []

        # queue/dial_outbound rings the outside number first (with `fromext` 1002, route 7)
        answer = await ok(pbx, queue, {"queueid": "6800", "outto": "75550003333",
                                       "fromext": "1002"})
        await rings(carrier)
        assert user_of(carrier.incoming[0].uri) == "5550003333"
        [leg] = await pbx.outbound()
        assert (leg["to"], leg["status"]) == ("5550003333", "Progress"), leg
        assert pbx.app.registry.by_outboundid(leg["outboundid"]).callid == answer["callid"]
        assert (await pbx.post("outbound/hangup", {"outboundid": leg["outboundid"]})).json() \
            == {"status": "Success"}
        await until(lambda: carrier.cancelled == 1, "the carrier's CANCEL")

        # a queue's and a paging group's number, dialled for an extension: it rings first
        for n, (endpoint, body) in enumerate((
                ("extension/dial_outbound", {"extid": "1002", "outto": "6800"}),
                ("extension/dial_extension", {"caller": "1002", "callee": "6900"}),
                ("extension/dial_extension", {"caller": "1002", "callee": "6800"}))):
            await ok(pbx, endpoint, body)
            await rings(b, n + 1)
            shown = body.get("outto") or body["callee"]
            assert user_of(b.incoming[n].from_.uri) == shown  # (the number it will call)
            assert (await pbx.post("extension/hangup", {"extid": "1002"})).json() \
                == {"status": "Success"}
            await until(lambda: b.cancelled == n + 1, "1002's CANCEL")  # noqa: B023
        await fails(pbx, "extension/dial_extension", {"caller": "1002", "callee": "6999"},
                    10006)
        await pbx.wait_idle()
        await pbx.stop()
    finally:
        await carrier.stop()
        await b.stop()


async def test_callback_to_a_sipp_carrier_then_the_extension(
        start_pbx: Start, sipp: SippFactory, tmp_path: Path) -> None:
    """The outside party is sipp's UAS (another SIP stack than ours): it is called first,
    answers, and only then 1002 rings; both legs show in `outbound/query` and the reports
    while they talk; 1002 hanging up sends the carrier its BYE."""
    carrier_port = free_port()
    pbx = await start_media_pbx(start_pbx, tmp_path, [TrunkSpec("carrier", carrier_port)])
    receiver = await Receiver().start()
    await pbx.login(report_port=receiver.port)
    far = await sipp("uas.xml", port=carrier_port, calls=1, sipp_timeout_s=30).astart()
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B, answer_delay=0.5)
    try:
        answer = await ok(pbx, "outbound/dial_outbound",
                          {"caller": "95550001111", "outto": "1002"})
        await b.wait_established(timeout=10)
        [leg] = await pbx.outbound()
        assert (leg["from"], leg["to"], leg["trunk"], leg["status"]) == \
            ("66666", "5550001111", "carrier", "Talking"), leg
        assert pbx.app.registry.by_outboundid(leg["outboundid"]).callid == \
            answer["callid"]  # type: ignore[union-attr]
        assert (await b.hangup()).status == 200
        (await far.await_result(20)).assert_ok(calls=1)  # (its INVITE, ACK, then our BYE)
        await until(lambda: reports(receiver, "NewCdr"), "the NewCdr")
        answered = first(receiver, "ANSWER")
        assert answered["ext"] == {"extid": "1002"}, answered
        assert answered["outbound"]["outboundid"] == leg["outboundid"], answered
        [record] = reports(receiver, "NewCdr")
        assert (record["status"], record["type"]) == ("ANSWERED", "Outbound"), record
        await no_engine_calls(pbx)
        await pbx.stop()
    finally:
        await b.stop()
        await receiver.stop()
