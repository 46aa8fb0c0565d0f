"""IVRs, voicemail, ring groups and the extension features, with real SIP and audio.

The phones are `AudioPhone`s (ippbx's UA plus an RTP endpoint sending a tone of its
own); the PBX runs its own rtpengine. A call to an IVR hears the prompt (energy in what
it receives), keys DTMF as RFC 4733 events (or SIP INFO) and ends up talking to the
extension it chose; an unanswered extension takes a message that the API lists and
serves as a WAV holding the caller's tone, its phone is told (message waiting) and `*97`
plays it back; ring groups ring their members at once or in turn and fail over; DND and
forwarding set from the phone decide where the next call goes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audio_phone import AudioPhone
from pbx_harness import Start, TrunkSpec
from reports_harness import Receiver
from rtp_audio import dominant_frequency, read_wav, rms_dbfs
from sipp_harness import free_port
from test_media_calls import (
    TONE_A,
    TONE_B,
    hear_each_other,
    no_engine_calls,
    start_media_pbx,
    starts_hearing,
)

from ippbx.config import Config

TONE_C = 1000.0 + 170.0  # the third phone's (not the beep's 1000 Hz)
BEEP = 1000.0  # the built-in beep before a recording
RINGBACK = 425.0  # what a caller put through from a menu hears while the party rings


def configure(ivrs: list[dict[str, Any]] | None = None,
              groups: list[dict[str, Any]] | None = None,
              extensions: dict[str, dict[str, Any]] | None = None,
              inbound: str = "") -> Callable[[Config], Config]:
    """A harness `adjust`: IVRs, ring groups, extension settings, the DID's destination."""
    def adjust(config: Config) -> Config:
        data = config.model_dump()
        data["ivrs"] = ivrs or []
        data["ring_groups"] = groups or []
        for ext in data["extensions"]:
            ext.update((extensions or {}).get(ext["number"], {}))
        if inbound:
            for route in data["inbound_routes"]:
                route["destination"] = inbound
        return Config.model_validate(data)
    return adjust


async def hears_sound(phone: AudioPhone, seconds: float = 3.0) -> None:
    """Something audible (a prompt) reaches `phone` within `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        window = await phone.rtp.record(0.2)
        if window.size and rms_dbfs(window) > -40:
            return
    raise AssertionError(f"{phone.name} heard no prompt")


async def rings(phone: AudioPhone, count: int = 1, timeout: float = 5.0) -> None:
    async def wait() -> None:
        while len(phone.incoming) < count:
            await asyncio.sleep(0.02)
    await asyncio.wait_for(wait(), timeout)


async def until(condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.05)
    try:
        await asyncio.wait_for(wait(), timeout)
    except TimeoutError:
        raise AssertionError(f"waited {timeout} s for {what}") from None


IVR = {"number": "6000", "name": "main", "prompt": "welcome", "timeout": 2, "repeat": 1,
       "options": {"1": "extension:1002"}, "default": "extension:1003"}


async def test_ivr_call_from_a_trunk_keys_1_and_talks_to_1002(start_pbx: Start,
                                                              tmp_path: Path) -> None:
    carrier_port = free_port()
    pbx = await start_media_pbx(start_pbx, tmp_path, [TrunkSpec("carrier", carrier_port)],
                                adjust=configure([IVR], inbound="ivr:6000"))
    receiver = await Receiver().start()
    await pbx.login(report_port=receiver.port)
    carrier = await AudioPhone.carrier(pbx.sip_address, carrier_port, tone=TONE_A)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B)
    try:
        assert (await carrier.call("5550100")).status == 200  # answered by the IVR
        await hears_sound(carrier)  # the welcome prompt
        [waiting] = await pbx.inbound()
        assert waiting["callee"] == {"ivrid": "6000"} and waiting["status"] == "Wait", waiting
        await carrier.send_dtmf("1")
        await b.wait_established()
        await hear_each_other(carrier, TONE_A, b, TONE_B)
        inbound = await pbx.inbound()
        assert len(inbound) == 1 and inbound[0]["callee"] == {"extid": "1002"}, inbound
        assert inbound[0]["status"] == "Talking", inbound
        assert (await carrier.hangup()).status == 200
        await b.wait_ended()
        # the reports: the key (DTMF, the inbound party), 1002's answer, an answered CDR
        await until(lambda: reports(receiver, "NewCdr"), "the NewCdr")
        [key] = reports(receiver, "DTMF")
        assert key["info"] == "1" and key["inbound"]["from"] == carrier.user, key
        answers = reports(receiver, "ANSWER")  # (callee side, then caller side)
        assert answers and {r["ext"]["extid"] for r in answers} == {"1002"}, answers
        assert reports(receiver, "CallFailed") == []
        [record] = reports(receiver, "NewCdr")
        assert record["status"] == "ANSWERED" and record["type"] == "Inbound", record
        await no_engine_calls(pbx)
        await pbx.stop()
    finally:
        await carrier.stop()
        await b.stop()
        await receiver.stop()


async def test_ivr_without_a_key_goes_to_its_default_and_info_keys_work(
        start_pbx: Start, tmp_path: Path) -> None:
    pbx = await start_media_pbx(start_pbx, tmp_path, adjust=configure([IVR]))
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B)
    c = await AudioPhone.extension(pbx.sip_address, "1003", tone=TONE_C)
    try:
        # no key: after the prompt and 2 s, the default (1003)
        assert (await a.call("6000")).status == 200
        await c.wait_established(timeout=20)
        assert b.incoming == []
        await hear_each_other(a, TONE_A, c, TONE_C)
        assert (await c.hangup()).status == 200
        await a.wait_ended()
        # a phone that sends its keys as SIP INFO
        assert (await a.call("6000")).status == 200
        await hears_sound(a)
        assert (await a.send_info("1")).status == 200
        await b.wait_established()
        await hear_each_other(a, TONE_A, b, TONE_B)
        assert (await a.hangup()).status == 200
        await b.wait_ended()
        await no_engine_calls(pbx)
        await pbx.stop()
    finally:
        for phone in (a, b, c):
            await phone.stop()


async def test_unanswered_call_leaves_a_message_that_the_mailbox_plays_back(
        start_pbx: Start, tmp_path: Path) -> None:
    vm = {"voicemail": True, "vm_pin": "1234", "ring_timeout": 2}
    pbx = await start_media_pbx(start_pbx, tmp_path,
                                adjust=configure(extensions={"1002": vm}))
    receiver = await Receiver().start()
    await pbx.login(report_port=receiver.port)
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B, answer_delay=60)
    try:
        assert (await a.call("1002")).status == 200  # (rang 2 s, then the mailbox)
        assert b.cancelled == 1
        await hears_sound(a)  # the greeting
        await a.send_dtmf("#")  # (skips it)
        await starts_hearing(a, BEEP, timeout=5)
        await asyncio.sleep(2.0)  # 2 s of the caller's tone
        await a.send_dtmf("#")
        await a.wait_ended(timeout=10)  # goodbye, hung up

        answer: dict[str, Any] = {}

        async def listed() -> bool:
            nonlocal answer
            answer = (await pbx.post("voicemail/query", {"extid": "1002"})).json()
            return "voicemails" in answer
        await pbx.wait_for(listed, timeout=10, what="the message to be listed")
        [box] = answer["voicemails"]
        [message] = box["voicemail"]
        assert box["extid"] == "1002" and message["messagefrom"] == "1001"
        assert 1 <= int(message["voicemaillength"]) <= 4, message
        await until(lambda: any(b"Messages-Waiting: yes" in n.body for n in b.notifies),
                    "message waiting NOTIFY to 1002")
        # a call that reached the mailbox did not fail: its CDR says VOICEMAIL
        await until(lambda: reports(receiver, "NewCdr"), "the NewCdr")
        assert reports(receiver, "CallFailed") == []
        assert reports(receiver, "NewCdr")[0]["status"] == "VOICEMAIL"

        key = (await pbx.post("voicemail/get_random", {
            "extid": "1002", "voicemailfile": message["voicemailfile"]})).json()
        wav = await pbx.client.get(
            f"{pbx.api_url}/voicemail/download?extid=1002&token={pbx.token}"
            f"&voicemailfile={message['voicemailfile']}&random={key['random']}")
        assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
        (tmp_path / "message.wav").write_bytes(wav.content)
        samples = read_wav(tmp_path / "message.wav")
        assert abs(dominant_frequency(samples) - TONE_A) < 20

        # *97 and the PIN: 1002 hears its message (the caller's tone)
        b.answer_delay = 0
        b.rtp.play_tone(TONE_C)
        assert (await b.call("*97")).status == 200
        await hears_sound(b)
        await b.send_keys("1234#")
        await starts_hearing(b, TONE_A, timeout=15)
        assert (await b.hangup()).status == 200
        await no_engine_calls(pbx)
        await pbx.stop()
    finally:
        await a.stop()
        await b.stop()
        await receiver.stop()


def reports(receiver: Receiver, action: str) -> list[dict[str, Any]]:
    return [g.body for g in receiver.got if g.body.get("action") == action]


def group(strategy: str, **more: Any) -> dict[str, Any]:
    return {"number": "6300", "name": "sales", "strategy": strategy,
            "members": ["1002", "1003"], "ring_seconds": 6, "member_seconds": 2, **more}


async def test_ringall_rings_both_the_first_to_answer_takes_it(start_pbx: Start,
                                                              tmp_path: Path) -> None:
    pbx = await start_media_pbx(start_pbx, tmp_path,
                                adjust=configure(groups=[group("ringall")]))
    receiver = await Receiver().start()
    await pbx.login(report_port=receiver.port)
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B, answer_delay=1.0)
    c = await AudioPhone.extension(pbx.sip_address, "1003", tone=TONE_C, answer_delay=30)
    try:
        assert (await a.call("6300")).status == 200
        assert len(b.incoming) == 1 and len(c.incoming) == 1  # both rang
        await until(lambda: c.cancelled == 1, "1003's CANCEL")
        await hear_each_other(a, TONE_A, b, TONE_B)
        [call] = pbx.app.registry.calls()
        assert call.callee is not None and call.callee.extension == "1002"
        assert (await a.hangup()).status == 200
        await b.wait_ended()
        # both members' phones rang (RING), the one that answered is named (ANSWER)
        await until(lambda: reports(receiver, "NewCdr"), "the NewCdr")
        rang = {r["ext"]["extid"][0] for r in reports(receiver, "RING")}
        assert rang == {"1002", "1003"}, reports(receiver, "RING")
        assert {tuple(r["ext"]["extid"]) for r in reports(receiver, "ANSWER")} \
            == {("1002", "1001"), ("1001", "1002")}
        [record] = reports(receiver, "NewCdr")
        assert record["status"] == "ANSWERED" and record["callto"] == "6300", record
        await no_engine_calls(pbx)
        await pbx.stop()
    finally:
        for phone in (a, b, c):
            await phone.stop()
        await receiver.stop()


async def test_sequential_rings_in_turn_and_fails_over_to_voicemail(
        start_pbx: Start, tmp_path: Path) -> None:
    groups = [group("sequential"),
              group("ringall", number="6301", ring_seconds=2, failover="voicemail:1002")]
    pbx = await start_media_pbx(start_pbx, tmp_path, adjust=configure(
        groups=groups, extensions={"1002": {"voicemail": True}}))
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B, answer_delay=30)
    c = await AudioPhone.extension(pbx.sip_address, "1003", tone=TONE_C, answer_delay=0.5)
    try:
        assert (await a.call("6300")).status == 200
        assert b.cancelled == 1 and len(c.incoming) == 1  # 1002 for 2 s, then 1003
        await hear_each_other(a, TONE_A, c, TONE_C)
        assert (await a.hangup()).status == 200
        await c.wait_ended()

        c.answer_delay = 30
        assert (await a.call("6301")).status == 200  # nobody: 1002's mailbox answers
        assert b.cancelled == 2 and c.cancelled == 1
        await hears_sound(a)
        assert (await a.hangup()).status == 200
        await no_engine_calls(pbx)
        await pbx.stop()
    finally:
        for phone in (a, b, c):
            await phone.stop()


async def test_dnd_and_forwarding_from_the_phone(start_pbx: Start, tmp_path: Path) -> None:
    pbx = await start_media_pbx(start_pbx, tmp_path)
    await pbx.login()
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B)
    c = await AudioPhone.extension(pbx.sip_address, "1003", tone=TONE_C)
    try:
        async def feature(code: str) -> None:
            assert (await b.call(code)).status == 200
            await hears_sound(b)  # the confirmation
            await b.wait_ended(timeout=10)  # ippbx hangs up after it

        await feature("*78")  # do not disturb
        assert (await a.call("1002")).status == 486
        shown = (await pbx.post("extension/query", {"extid": "1002"})).json()
        assert shown["extinfos"][0]["dnd"] == "on", shown
        await feature("*79")
        await feature("*211003")  # forward everything to 1003
        assert (await a.call("1002")).status == 200
        await c.wait_established()
        assert len(b.incoming) == 0
        await hear_each_other(a, TONE_A, c, TONE_C)
        assert (await a.hangup()).status == 200
        await c.wait_ended()
        await feature("*22")
        assert pbx.app.pbx.features.forward_always("1002") == ""
        await no_engine_calls(pbx)
        await pbx.stop()
    finally:
        for phone in (a, b, c):
            await phone.stop()


async def test_an_extension_with_two_phones_rings_both(start_pbx: Start,
                                                       tmp_path: Path) -> None:
    pbx = await start_media_pbx(start_pbx, tmp_path,
                                adjust=configure(extensions={"1002": {"max_contacts": 2}}))
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    desk = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B, answer_delay=30)
    soft = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_C,
                                      answer_delay=0.5, name="1002-soft")
    try:
        assert (await a.call("1002")).status == 200
        assert len(desk.incoming) == 1 and len(soft.incoming) == 1
        await until(lambda: desk.cancelled == 1, "the desk phone's CANCEL")
        await hear_each_other(a, TONE_A, soft, TONE_C)
        assert (await a.hangup()).status == 200
        await soft.wait_ended()
        await no_engine_calls(pbx)
        await pbx.stop()
    finally:
        for phone in (a, desk, soft):
            await phone.stop()



async def test_calls_into_an_ivr_and_a_ring_group_from_the_api(start_pbx: Start,
                                                               tmp_path: Path) -> None:
    carrier_port = free_port()
    ivr = {**IVR, "options": {"3": "extension:1003"}}
    pbx = await start_media_pbx(start_pbx, tmp_path, [TrunkSpec("carrier", carrier_port)],
                                adjust=configure([ivr], groups=[group("ringall")]))
    await pbx.login()
    carrier = await AudioPhone.carrier(pbx.sip_address, carrier_port, tone=TONE_A)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B)
    c = await AudioPhone.extension(pbx.sip_address, "1003", tone=TONE_C, answer_delay=30)
    try:
        # ivr/dial_extension: 1002 answers into the menu, keys 3, hears ringback while
        # 1003 rings, then talks to it
        c.answer_delay = 3.0
        answer = (await pbx.post("ivr/dial_extension", {"extid": "1002", "ivrid": "6000"}))
        assert answer.json()["status"] == "Success", answer.text
        await b.wait_established()
        await hears_sound(b)
        await b.send_dtmf("3")
        await rings(c)
        await starts_hearing(b, RINGBACK, timeout=2)
        await c.wait_established()
        await hear_each_other(b, TONE_B, c, TONE_C)
        assert (await b.hangup()).status == 200
        await c.wait_ended()

        # ringgroup/dial_outbound: the carrier's party answers, the group rings, 1002
        # (the first to answer) talks to it
        c.answer_delay = 30
        answer = await pbx.post("ringgroup/dial_outbound",
                                {"ringgroupid": "6300", "outto": "95550123"})
        assert answer.json()["status"] == "Success", answer.text
        await b.wait_established()
        await until(lambda: c.cancelled == 1, "1003's CANCEL")
        await hear_each_other(carrier, TONE_A, b, TONE_B)
        [outbound] = await pbx.outbound()
        assert outbound["to"] == "5550123", outbound  # (the route prefix stripped)
        assert (await b.hangup()).status == 200
        await carrier.wait_ended()

        # ivr/dial_outbound: the party hears the menu
        answer = await pbx.post("ivr/dial_outbound", {"ivrid": "6000", "outto": "95550123"})
        assert answer.json()["status"] == "Success", answer.text
        await carrier.wait_established()
        await hears_sound(carrier)
        assert (await carrier.hangup()).status == 200

        # what does not exist, in both dialects
        for body, errno in (({"extid": "1002", "ivrid": "6999"}, "10012"),
                            ({"extid": "1009", "ivrid": "6000"}, "10006")):
            failed = (await pbx.post("ivr/dial_extension", body)).json()
            assert failed == {"status": "Failed", "errno": errno}, failed
        xml = await pbx.post("ringgroup/dial_outbound",
                             "<xml><ringgroupid>6399</ringgroupid><outto>95550123</outto>"
                             "</xml>", type="xml")
        assert "<errno>10014</errno>" in xml.text, xml.text
        await no_engine_calls(pbx)
        await pbx.stop()
    finally:
        for phone in (carrier, b, c):
            await phone.stop()


async def test_busy_and_unregistered_extensions_go_to_voicemail_and_the_greeting_is_theirs(
        start_pbx: Start, tmp_path: Path) -> None:
    vm = {"voicemail": True, "vm_pin": "", "dnd": True}
    pbx = await start_media_pbx(start_pbx, tmp_path, adjust=configure(
        extensions={"1002": vm, "1003": {"voicemail": True}}))
    await pbx.login()
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B)
    try:
        # 1003 has no phone registered: its mailbox answers at once
        assert (await a.call("1003")).status == 200
        await hears_sound(a)
        assert (await a.hangup()).status == 200  # (before the beep: no message)
        # 1002 is on DND (busy): its mailbox answers, its phone never rings
        assert (await a.call("1002")).status == 200
        assert b.incoming == []
        assert (await a.hangup()).status == 200

        # 1002 records its greeting (its tone) from the mailbox menu: no PIN, no
        # messages, 5 for the greeting, # to end it
        assert (await b.call("*97")).status == 200
        await hears_sound(b)  # "no messages"
        await b.send_dtmf("5")
        await starts_hearing(b, BEEP, timeout=10)  # "record your greeting…", the beep
        await asyncio.sleep(2.0)  # its tone, recorded
        await b.send_dtmf("#")
        await b.wait_ended(timeout=15)
        greeting = tmp_path / "pbx0" / "voicemail" / "1002" / "greeting.wav"
        await until(greeting.exists, "the greeting to be saved")

        # the next caller hears 1002's greeting: its tone
        assert (await a.call("1002")).status == 200
        await starts_hearing(a, TONE_B, timeout=5)
        assert (await a.hangup()).status == 200
        await no_engine_calls(pbx)
        await pbx.stop()
    finally:
        await a.stop()
        await b.stop()


async def test_the_mailbox_menu_deletes_a_message(start_pbx: Start, tmp_path: Path) -> None:
    vm = {"voicemail": True, "vm_pin": "42", "ring_timeout": 1}
    pbx = await start_media_pbx(start_pbx, tmp_path,
                                adjust=configure(extensions={"1002": vm}))
    await pbx.login()
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B, register=False)
    try:
        assert (await a.call("1002")).status == 200
        await a.send_dtmf("#")  # (skips the greeting)
        await starts_hearing(a, BEEP, timeout=5)
        await asyncio.sleep(2.0)
        assert (await a.hangup()).status == 200  # hanging up ends the message too

        async def messages() -> list[Any]:
            answer = (await pbx.post("voicemail/query", {"extid": "1002"})).json()
            return [m for box in answer.get("voicemails", []) for m in box["voicemail"]]

        async def one() -> bool:
            return len(await messages()) == 1
        await pbx.wait_for(one, timeout=10, what="the message")
        # 1002's phone registers: it is told at once that a message waits
        assert (await b.register()).status == 200
        await until(lambda: any(b"Messages-Waiting: yes" in n.body for n in b.notifies),
                    "message waiting NOTIFY at registration")
        # *98: which mailbox, its PIN, the message, 7 deletes it
        assert (await b.call("*98")).status == 200
        await hears_sound(b)
        await b.send_keys("1002#42#")  # (the PIN's keys wait for its prompt)
        await starts_hearing(b, TONE_A, timeout=15)  # the message
        await b.send_dtmf("7")
        await b.wait_ended(timeout=15)  # "deleted", no more, goodbye

        async def none() -> bool:
            return await messages() == []
        await pbx.wait_for(none, timeout=5, what="the message deleted")
        await until(lambda: b"Messages-Waiting: no" in b.notifies[-1].body,
                    "the light off once the message is deleted")
        await no_engine_calls(pbx)
        await pbx.stop()
    finally:
        await a.stop()
        await b.stop()


async def test_the_mobile_rings_with_the_extension(start_pbx: Start, tmp_path: Path) -> None:
    carrier_port = free_port()
    mobile = {"mobile": "5550177", "mobile_prefix": "9", "ring_mobile": True}
    pbx = await start_media_pbx(start_pbx, tmp_path, [TrunkSpec("carrier", carrier_port)],
                                adjust=configure(extensions={"1002": mobile}))
    await pbx.login()
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B, answer_delay=30)
    carrier = await AudioPhone.carrier(pbx.sip_address, carrier_port, tone=TONE_C,
                                       answer_delay=0.5)
    try:
        assert (await a.call("1002")).status == 200
        assert len(b.incoming) == 1 and len(carrier.incoming) == 1
        assert carrier.incoming[0].uri.startswith("sip:5550177@")
        await until(lambda: b.cancelled == 1, "the desk phone's CANCEL")
        await hear_each_other(a, TONE_A, carrier, TONE_C)
        [outbound] = await pbx.outbound()
        assert outbound["from"] == "1002" and outbound["to"] == "5550177", outbound
        assert (await a.hangup()).status == 200
        await carrier.wait_ended()
        await no_engine_calls(pbx)
        await pbx.stop()
    finally:
        for phone in (a, b, carrier):
            await phone.stop()
