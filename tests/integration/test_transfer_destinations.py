"""Blind transfers to what ippbx answers or rings itself (IVRs, ring groups, and through
an IVR a mailbox), by the API (`calltransfer`) and by a phone (REFER), with real SIP and
audio through ippbx's own rtpengine.

The party that stays is re-INVITEd and answered by ippbx: it hears the IVR's prompt (or
ringback while a ring group rings), its keys work the menu, and whoever it reaches talks
to it. Whichever side stays (the call's caller or its callee) is served the same way. The
transferor is released (BYE; a REFER's gets its NOTIFY first). A caller on a trunk still
cannot send its call out through a trunk, and without the media engine such a transfer is
refused with the call left as it was.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from audio_phone import AudioPhone
from pbx_harness import PbxHarness, Start, TrunkSpec
from reports_harness import Receiver
from sipp_harness import free_port
from test_applications import BEEP, RINGBACK, TONE_C, hears_sound, reports, rings, until
from test_media_calls import (
    TONE_A,
    TONE_B,
    hear_each_other,
    no_engine_calls,
    start_media_pbx,
    starts_hearing,
)

from ippbx.config import Config

DID = "5550100"  # the harness's inbound route: DID 5550100 on the first trunk → 1002
MENU = {"number": "6000", "name": "main", "prompt": "welcome", "timeout": 3, "repeat": 1,
        "options": {"1": "extension:1003", "0": "voicemail:1003"}, "default": "hangup"}
GROUP = {"number": "6300", "name": "sales", "strategy": "ringall",
         "members": ["1003", "1004"], "ring_seconds": 10}


def local_numbers(config: Config) -> Config:
    """A harness `adjust`: IVR 6000 (1 → 1003, 0 → 1003's mailbox), ring group 6300
    (1003, 1004), 1003's mailbox on."""
    data = config.model_dump()
    data.update(ivrs=[MENU], ring_groups=[GROUP])
    for ext in data["extensions"]:
        if ext["number"] == "1003":
            ext["voicemail"] = True
    return Config.model_validate(data)


async def transfer(pbx: PbxHarness, callid: str, transferor: str, target: str) -> Any:
    return (await pbx.post("calltransfer", {"callid": callid, "transferor": transferor,
                                            "transferto": target})).json()


async def test_an_inbound_call_transferred_to_an_ivr_reaches_the_menu(
        start_pbx: Start, tmp_path: Path) -> None:
    carrier_port = free_port()
    pbx = await start_media_pbx(start_pbx, tmp_path, [TrunkSpec("carrier", carrier_port)],
                                adjust=local_numbers)
    receiver = await Receiver().start()
    await pbx.login(report_port=receiver.port)
    carrier = await AudioPhone.carrier(pbx.sip_address, carrier_port, tone=TONE_A)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B)
    c = await AudioPhone.extension(pbx.sip_address, "1003", tone=TONE_C, answer_delay=1.0)
    try:
        assert (await carrier.call(DID)).status == 200
        await hear_each_other(carrier, TONE_A, b, TONE_B)
        [call] = await pbx.inbound()
        # the caller on the trunk may not send the call out, may reach the menu
        assert await transfer(pbx, call["inboundid"], carrier.user, "95559999") == {
            "status": "Failed", "errno": "10024"}
        assert await transfer(pbx, call["inboundid"], "1002", "6000") == {
            "status": "Success"}
        await b.wait_ended()  # 1002 leaves at once
        await hears_sound(carrier)  # the menu's prompt
        [waiting] = await pbx.inbound()
        assert waiting["inboundid"] == call["inboundid"], waiting
        assert (waiting["callee"], waiting["status"]) == ({"ivrid": "6000"}, "Wait"), waiting
        await carrier.send_dtmf("1")
        await rings(c)
        await starts_hearing(carrier, RINGBACK, timeout=2)
        await c.wait_established()
        await hear_each_other(carrier, TONE_A, c, TONE_C)
        [talking] = await pbx.inbound()
        assert (talking["callee"], talking["status"]) == ({"extid": "1003"}, "Talking")
        assert (await carrier.hangup()).status == 200
        await c.wait_ended()

        await until(lambda: reports(receiver, "NewCdr"), "the NewCdr")
        byes = [r["ext"]["extid"] for r in reports(receiver, "BYE")]
        assert byes == ["1002", "1003", "1003"], byes  # 1002 as it left; then the end
        [key] = reports(receiver, "DTMF")
        assert key["info"] == "1" and key["inbound"]["inboundid"] == call["inboundid"], key
        [record] = reports(receiver, "NewCdr")
        assert (record["status"], record["type"]) == ("ANSWERED", "Inbound"), record
        await no_engine_calls(pbx)
        await pbx.stop()
    finally:
        for phone in (carrier, b, c):
            await phone.stop()
        await receiver.stop()


async def test_the_caller_transfers_the_callee_to_a_ring_group(start_pbx: Start,
                                                               tmp_path: Path) -> None:
    """1001 called 1002 and hands it to ring group 6300: 1002 (the call's callee) hears
    ringback while 1003 and 1004 ring, and talks to 1003, which answered first."""
    pbx = await start_media_pbx(start_pbx, tmp_path, adjust=local_numbers)
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B)
    c = await AudioPhone.extension(pbx.sip_address, "1003", tone=TONE_C, answer_delay=1.5)
    d = await AudioPhone.extension(pbx.sip_address, "1004", answer_delay=30)
    try:
        assert (await a.call("1002")).status == 200
        await hear_each_other(a, TONE_A, b, TONE_B)
        [call] = pbx.app.registry.calls()
        assert await transfer(pbx, call.callid, "1001", "6300") == {"status": "Success"}
        await a.wait_ended()
        await rings(c)
        await rings(d)
        await starts_hearing(b, RINGBACK, timeout=2)
        await c.wait_established()
        await until(lambda: d.cancelled == 1, "1004's CANCEL")
        await hear_each_other(b, TONE_B, c, TONE_C)
        # the call and its id go on, 1002 and 1003 its parties
        assert pbx.app.registry.calls() == [call]
        assert {leg.extension for leg in call.legs() if leg.live} == {"1002", "1003"}
        assert (await b.hangup()).status == 200
        await c.wait_ended()
        [record] = [r for r in pbx.app.store.cdrs() if r.callid == call.callid]
        assert record.status == "ANSWERED" and set(record.extensions) >= {"1001", "1002",
                                                                            "1003"}
        await no_engine_calls(pbx)
        await pbx.stop()
    finally:
        for phone in (a, b, c, d):
            await phone.stop()


async def test_a_phone_transfers_to_an_ivr_number_and_the_caller_leaves_a_message(
        start_pbx: Start, tmp_path: Path) -> None:
    """1002 REFERs its caller 1001 to IVR 6000: 202, a NOTIFY saying 200, a BYE; 1001
    hears the menu and keys 0 for 1003's mailbox, whose message holds 1001's voice."""
    pbx = await start_media_pbx(start_pbx, tmp_path, adjust=local_numbers)
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B)
    try:
        assert (await a.call("1002")).status == 200
        await hear_each_other(a, TONE_A, b, TONE_B)
        assert (await b.refer("6000")).status == 202
        await b.wait_ended()
        frags = [r.body for r in b.requests if r.method == "NOTIFY"]
        assert frags and frags[-1].startswith(b"SIP/2.0 200"), frags
        await hears_sound(a)
        await a.send_dtmf("0")
        await hears_sound(a)  # the greeting
        await a.send_dtmf("#")  # (skips it)
        await starts_hearing(a, BEEP, timeout=5)
        await asyncio.sleep(2.0)  # 2 s of 1001's tone, recorded
        await a.send_dtmf("#")
        await a.wait_ended(timeout=10)  # goodbye, hung up

        answer: dict[str, Any] = {}

        async def listed() -> bool:
            nonlocal answer
            answer = (await pbx.post("voicemail/query", {"extid": "1003"})).json()
            return "voicemails" in answer
        await pbx.wait_for(listed, timeout=10, what="the message to be listed")
        [box] = answer["voicemails"]
        [message] = box["voicemail"]
        assert message["messagefrom"] == "1001", message
        assert 1 <= int(message["voicemaillength"]) <= 4, message
        await no_engine_calls(pbx)
        await pbx.stop()
    finally:
        await a.stop()
        await b.stop()


async def test_without_the_media_engine_such_a_transfer_is_refused(start_pbx: Start) -> None:
    """No engine, so nothing ippbx could answer the party with: `calltransfer` to an IVR
    fails 30001, a REFER gets 488, and the two parties stay in their call."""
    pbx = await start_pbx([], adjust=local_numbers)
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B)
    try:
        assert (await a.call("1002")).status == 200
        await b.wait_established()
        [call] = pbx.app.registry.calls()
        for target in ("6000", "6300"):
            assert await transfer(pbx, call.callid, "1002", target) == {
                "status": "Failed", "errno": "30001"}
        assert (await b.refer("6000")).status == 488
        assert (await a.refer("6300")).status == 488
        await hear_each_other(a, TONE_A, b, TONE_B)  # (end to end, still)
        assert a.in_call and b.in_call and a.requests == []
        assert (await a.hangup()).status == 200
        await b.wait_ended()
        await pbx.stop()
    finally:
        await a.stop()
        await b.stop()
