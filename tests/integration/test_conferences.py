"""Conference rooms on a real mixer: ippbx's own rtpengine and its own Janus AudioBridge.

Every member is an `AudioPhone` (ippbx's UA and a real RTP endpoint) sending a tone of
its own; what each one receives is checked with numpy's FFT: it hears the others' tones
and never its own. The rooms, members and states are read through the vendor API
(`conference/query_in_session`), the actions (mute, kick, invite) go through it too, and
the keys (PIN, `*` menu) are RFC 4733 events the phones send. After each test no call is
left in the registry, in rtpengine or in Janus.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path
from typing import Any

import numpy as np
from audio_phone import AudioPhone
from pbx_harness import PbxHarness, Start, TrunkSpec
from prometheus_client.parser import text_string_to_metric_families
from reports_harness import Receiver
from rtp_audio import read_wav, tone_power_ratio, write_tone_wav
from sipp_harness import free_port, free_port_block

TONES = {"1001": 500.0, "1002": 900.0, "1003": 1400.0}
CARRIER_TONE = 1800.0
MOH_TONE = 440.0
LISTEN = 1.0
HEARD = 0.12  # a tone's share of the power in what a member hears (two tones mixed)
UNHEARD = 0.03

ROOMS = """
[[conferences]]
number = "6600"
name = "everyone"

[[conferences]]
number = "6601"
name = "weekly"
pin = "1234"
moderator_pin = "4321"
wait_for_moderator = true

[[conferences]]
number = "6602"
name = "recorded"
record = true
"""


async def start_conference_pbx(start_pbx: Start, tmp_path: Path,
                               trunks: list[TrunkSpec] | None = None,
                               **kwargs: Any) -> PbxHarness:
    low, mixer_low = free_port_block(40), free_port_block(40)
    moh = write_tone_wav(tmp_path / "moh.wav", MOH_TONE, 2.0)
    media = {"engine": "rtpengine", "port_min": low, "port_max": low + 39, "moh": str(moh),
             "janus_port_min": mixer_low, "janus_port_max": mixer_low + 39}
    pbx = await start_pbx(trunks or [], media=media, extra=ROOMS, **kwargs)
    assert pbx.app.media.mixer() is not None, "janus did not start"
    return pbx


async def in_session(pbx: PbxHarness, number: str = "all") -> dict[str, list[dict[str, str]]]:
    answer = (await pbx.post("conference/query_in_session", {"number": number})).json()
    assert answer["status"] == "Success", answer
    return {room["conferencenumber"]: room["member"] for room in answer["conference"]}


async def members_are(pbx: PbxHarness, room: str, wanted: dict[str, str],
                      timeout: float = 10.0) -> None:
    """Until room `room`'s members are exactly `wanted` (number → Up / HOLD)."""
    async def check() -> bool:
        live = await in_session(pbx)
        return {m["number"]: m["memberstatus"] for m in live.get(room, [])} == wanted

    await pbx.wait_for(check, timeout, f"room {room} to hold {wanted}")


def share(samples: np.ndarray, tone: float) -> float:
    return float(tone_power_ratio(samples, tone)) if samples.size else 0.0


async def hears(phone: AudioPhone, present: list[float], absent: list[float],
                timeout: float = 6.0) -> None:
    """Within `timeout`, one second of what `phone` receives has each of `present` and
    none of `absent` (the prompts and tones of joins may cover the mix for a while)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        samples = await phone.rtp.record(LISTEN)
        shares = {t: share(samples, t) for t in present + absent}
        if samples.size >= 0.7 * LISTEN * 8000 and all(shares[t] > HEARD for t in present) \
                and all(shares[t] < UNHEARD for t in absent):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{phone.name} hears {shares} ({samples.size} samples): "
                                 f"want {present}, not {absent}")


async def mixer_rooms(pbx: PbxHarness) -> list[int]:
    client = pbx.app.media.mixer()
    assert client is not None
    return await client.rooms()


async def all_gone(pbx: PbxHarness) -> None:
    await pbx.wait_idle()
    assert await in_session(pbx) == {}

    async def no_rooms() -> bool:
        return await mixer_rooms(pbx) == []

    await pbx.wait_for(no_rooms, 5, "janus to hold no room")


async def phones(pbx: PbxHarness, *numbers: str) -> list[AudioPhone]:
    return [await AudioPhone.extension(pbx.sip_address, n, tone=TONES[n]) for n in numbers]


async def test_three_members_hear_each_other_and_are_muted_and_kicked(
        start_pbx: Start, tmp_path: Path) -> None:
    pbx = await start_conference_pbx(start_pbx, tmp_path)
    a, b, c = await phones(pbx, "1001", "1002", "1003")
    try:
        for n, phone in enumerate((a, b, c)):
            assert (await phone.call("6600")).status == 200
            await members_are(pbx, "6600", {p.number: "Up" for p in (a, b, c)[:n + 1]})
        await hears(a, [TONES["1002"], TONES["1003"]], [TONES["1001"]])
        await hears(b, [TONES["1001"], TONES["1003"]], [TONES["1002"]])
        await hears(c, [TONES["1001"], TONES["1002"]], [TONES["1003"]])
        [room] = (await pbx.post("conference/query", {"number": "6600"})).json()["conferences"]
        assert room == {"number": "6600", "name": "everyone", "participantepassword": "",
                        "moderatorpassword": "", "waitformoderator": "no"}
        page = (await pbx.client.get(f"http://127.0.0.1:{pbx.app.api.port}/metrics")).text
        metrics = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(page) for s in family.samples}
        assert metrics[("ippbx_mixer_up", ())] == 1
        assert metrics[("ippbx_conference_rooms", ())] == 1
        assert metrics[("ippbx_conference_members", (("state", "up"),))] == 3

        # muted: the others stop hearing it; unmuted: they hear it again
        ok = {"status": "Success"}
        assert (await pbx.post("conference/mute_member",
                               {"number": "6600", "membernumber": "1003"})).json() == ok
        await hears(a, [TONES["1002"]], [TONES["1003"]])
        await hears(b, [TONES["1001"]], [TONES["1003"]])
        live = await in_session(pbx, "6600")
        assert [m["muted"] for m in live["6600"]] == ["no", "no", "yes"]
        assert (await pbx.post("conference/unmute_member",
                               {"number": "6600", "membernumber": "1003"})).json() == ok
        await hears(a, [TONES["1002"], TONES["1003"]], [])

        # kicked: its leg gets a BYE, the others go on
        assert (await pbx.post("conference/kick_member",
                               {"number": "6600", "membernumber": "1002"})).json() == ok
        await b.wait_ended()
        await members_are(pbx, "6600", {"1001": "Up", "1003": "Up"})
        await hears(a, [TONES["1003"]], [TONES["1002"]])
        bad = (await pbx.post("conference/kick_member",
                              {"number": "6600", "membernumber": "1002"})).json()
        assert bad["errno"] == "10011", bad
        assert (await a.hangup()).status == 200
        assert (await c.hangup()).status == 200
        await all_gone(pbx)
        await pbx.stop()
    finally:
        for phone in (a, b, c):
            await phone.stop()


async def test_pins_a_moderator_and_the_keys(start_pbx: Start, tmp_path: Path) -> None:
    """Room 6601: a participant waits on hold music for the moderator, a wrong PIN three
    times is hung up, `*1` mutes oneself, the moderator's `*2` mutes the others, `*3`
    unmutes them and `*9` removes the last participant."""
    pbx = await start_conference_pbx(start_pbx, tmp_path)
    a, b, c = await phones(pbx, "1001", "1002", "1003")
    try:
        assert (await a.call("6601")).status == 200
        await a.send_keys("1234#")
        await members_are(pbx, "6601", {"1001": "HOLD"})
        await hears(a, [MOH_TONE], [TONES["1002"]], timeout=10)

        assert (await c.call("6601")).status == 200
        await c.send_keys("0000#" * 3)  # (keys wait their turn while the prompts play)
        await c.wait_ended(timeout=15)
        await members_are(pbx, "6601", {"1001": "HOLD"})

        assert (await b.call("6601")).status == 200
        await b.send_keys("4321#")
        await members_are(pbx, "6601", {"1001": "Up", "1002": "Up"})
        live = await in_session(pbx, "6601")
        assert [m["moderator"] for m in live["6601"]] == ["no", "yes"]
        await hears(a, [TONES["1002"]], [MOH_TONE, TONES["1001"]])
        await hears(b, [TONES["1001"]], [TONES["1002"]])

        await a.send_keys("*1")  # muted by its own keys
        await hears(b, [], [TONES["1001"]])
        await a.send_keys("*1")
        await hears(b, [TONES["1001"]], [])
        await b.send_keys("*2")  # the moderator mutes the others
        await hears(b, [], [TONES["1001"]])
        assert [m["muted"] for m in (await in_session(pbx, "6601"))["6601"]] == ["yes", "no"]
        await b.send_keys("*3")
        await hears(b, [TONES["1001"]], [])
        await b.send_keys("*9")  # the moderator removes the participant who came last
        await a.wait_ended()
        await members_are(pbx, "6601", {"1002": "Up"})
        assert (await b.hangup()).status == 200
        await all_gone(pbx)
        await pbx.stop()
    finally:
        for phone in (a, b, c):
            await phone.stop()


async def test_add_member_calls_an_extension_and_an_outside_number(
        start_pbx: Start, tmp_path: Path) -> None:
    carrier_port = free_port()
    pbx = await start_conference_pbx(start_pbx, tmp_path, [TrunkSpec("carrier", carrier_port)])
    a, b = await phones(pbx, "1001", "1002")
    far = await AudioPhone.carrier(pbx.sip_address, carrier_port, tone=CARRIER_TONE)
    try:
        assert (await a.call("6600")).status == 200
        await members_are(pbx, "6600", {"1001": "Up"})
        answer = (await pbx.post("conference/add_member",
                                 {"number": "6600", "invitemember": "1002,95550001111"})).json()
        assert answer["status"] == "Success", answer
        assert len(answer["callid"].split(",")) == 2, answer
        await b.wait_established()
        await far.wait_established()
        await members_are(pbx, "6600", {"1001": "Up", "1002": "Up", "5550001111": "Up"})
        await hears(a, [TONES["1002"], CARRIER_TONE], [TONES["1001"]])
        await hears(far, [TONES["1001"], TONES["1002"]], [CARRIER_TONE])
        [leg] = await pbx.outbound()
        assert (leg["to"], leg["trunk"]) == ("5550001111", "carrier"), leg

        for body, errno in (({"number": "6699", "invitemember": "1003"}, "10011"),
                            ({"number": "6600", "invitemember": "1004"}, "10006"),
                            ({"number": "6600"}, "10004"),
                            ({"number": "6600",  # (more than the room's 20 members)
                              "invitemember": ",".join(str(n) for n in range(1000, 1021))},
                             "10004")):
            bad = (await pbx.post("conference/add_member", body)).json()
            assert bad["errno"] == errno, (body, bad)
        for phone in (far, b, a):
            assert (await phone.hangup()).status == 200
        await all_gone(pbx)
        await pbx.stop()
    finally:
        for phone in (a, b, far):
            await phone.stop()


async def test_janus_killed_mid_conference_is_restarted_and_the_room_rebuilt(
        start_pbx: Start, tmp_path: Path) -> None:
    pbx = await start_conference_pbx(start_pbx, tmp_path)
    a, b = await phones(pbx, "1001", "1002")
    try:
        for phone in (a, b):
            assert (await phone.call("6600")).status == 200
        await members_are(pbx, "6600", {"1001": "Up", "1002": "Up"})
        await hears(a, [TONES["1002"]], [TONES["1001"]])
        janus = pbx.app.media.janus
        assert janus is not None and janus.pid is not None
        old = janus.pid
        os.kill(old, signal.SIGKILL)

        async def back() -> bool:
            return janus.ready and janus.pid not in (None, old) and \
                await mixer_rooms(pbx) != []

        await pbx.wait_for(back, 15, "janus to be back with the room")
        await hears(a, [TONES["1002"]], [TONES["1001"]], timeout=8)
        await hears(b, [TONES["1001"]], [TONES["1002"]], timeout=8)
        await members_are(pbx, "6600", {"1001": "Up", "1002": "Up"})
        for phone in (a, b):
            assert (await phone.hangup()).status == 200
        await all_gone(pbx)
        await pbx.stop()
    finally:
        for phone in (a, b):
            await phone.stop()


async def test_rooms_without_a_mixer_and_their_settings(start_pbx: Start,
                                                         tmp_path: Path) -> None:
    """No media engine (so no mixer): a call to a room fails 480, add_member, whisper and
    barge 30001; the settings are still read and changed through the API."""
    pbx = await start_pbx([], extra=ROOMS)
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONES["1001"])
    try:
        assert pbx.app.media.mixer() is None
        assert (await a.call("6600")).status == 480
        bad = (await pbx.post("conference/add_member",
                              {"number": "6600", "invitemember": "1001"})).json()
        assert bad["errno"] == "30001", bad
        for endpoint, body in (("extension/whisper", {"whisperer": "1003",
                                                      "whisperedext": "1001"}),
                               ("extension/barge", {"bargein": "1003", "bargedext": "1001"})):
            bad = (await pbx.post(endpoint, body)).json()
            assert bad["errno"] == "30001", (endpoint, bad)
        rooms = (await pbx.post("conference/query", {"number": "all"})).json()["conferences"]
        assert [r["number"] for r in rooms] == ["6600", "6601", "6602"]
        assert rooms[1]["participantepassword"] == "1234"
        assert rooms[1]["waitformoderator"] == "yes"
        changed = (await pbx.post("conference/update", {
            "number": "6601", "participantepassword": "5555", "waitformoderator": "no",
            "name": "monthly"})).json()
        assert changed == {"status": "Success"}, changed
        [room] = (await pbx.post("conference/query", {"number": "6601"})).json()["conferences"]
        assert room == {"number": "6601", "name": "monthly", "participantepassword": "5555",
                        "moderatorpassword": "4321", "waitformoderator": "no"}
        assert pbx.app.conferences.config["6601"].pin == "5555"
        for body, errno in (({"number": "6601", "moderatorpassword": "5555"}, "10017"),
                            ({"number": "6601", "participantepassword": "12a"}, "10017"),
                            ({"number": "6699", "name": "x"}, "10011")):
            bad = (await pbx.post("conference/update", body)).json()
            assert bad["errno"] == errno, (body, bad)
        assert (await pbx.post("conference/query", {"number": "6699"})).json()["errno"] == \
            "10011"
        assert await in_session(pbx) == {}
        added = (await pbx.post("inroute/add", {"name": "rooms", "did": "5550600",
                                                "desttype": "conference", "dest": "6600"}))
        assert added.json() == {"status": "Success"}, added.json()
        [route] = (await pbx.post("inroute/query", {"name": "rooms"})).json()["inroutes"]
        assert (route["desttype"], route["dest"]) == ("conference", "6600"), route
        await pbx.stop()
    finally:
        await a.stop()


async def agent_call(pbx: PbxHarness, a: AudioPhone, c: AudioPhone) -> None:
    """1001 (the agent) talks with 1002 (the customer), each hearing the other."""
    assert (await a.call("1002")).status == 200
    await c.wait_established()
    await hears(a, [TONES["1002"]], [TONES["1001"]])
    await hears(c, [TONES["1001"]], [TONES["1002"]])


async def supervise(pbx: PbxHarness, endpoint: str, body: dict[str, str],
                    s: AudioPhone) -> None:
    answer = (await pbx.post(endpoint, body)).json()
    assert answer["status"] == "Success", answer
    await s.wait_established()


async def test_listen_whisper_and_barge_on_the_mixer(start_pbx: Start, tmp_path: Path) -> None:
    """1001 (agent) talks with 1002 (customer); 1003 supervises. Listen: 1003 hears both,
    neither hears 1003. Whisper: 1001 hears 1003, 1002 does not. Barge: everyone hears
    everyone. Each time 1003 hangs up, the two are back to a plain call; when the
    monitored call ends, the supervisor is hung up."""
    pbx = await start_conference_pbx(start_pbx, tmp_path)
    a, c, s = await phones(pbx, "1001", "1002", "1003")
    agent, customer, boss = TONES["1001"], TONES["1002"], TONES["1003"]
    try:
        await agent_call(pbx, a, c)

        await supervise(pbx, "extension/listen", {"listener": "1003", "listenedext": "1001"}, s)
        await hears(s, [agent, customer], [boss])
        await hears(a, [customer], [boss, agent])
        await hears(c, [agent], [boss, customer])
        busy = (await pbx.post("extension/barge", {"bargein": "1004", "bargedext": "1001"}))
        assert busy.json()["errno"] == "10006", busy.json()  # (1004 is not registered)
        again = await pbx.post("extension/whisper", {"whisperer": "1003", "whisperedext": "1001"})
        assert again.json()["errno"] == "10008", again.json()  # (1003 is in a call)
        assert (await s.hangup()).status == 200
        await hears(a, [customer], [boss])

        await supervise(pbx, "extension/whisper",
                        {"whisperer": "1003", "whisperedext": "1001"}, s)
        await hears(a, [customer, boss], [agent])
        await hears(c, [agent], [boss, customer])
        await hears(s, [agent, customer], [boss])
        assert (await s.hangup()).status == 200
        await hears(a, [customer], [boss, agent])  # (back: no mixer between them)
        await hears(c, [agent], [boss, customer])

        await supervise(pbx, "extension/barge", {"bargein": "1003", "bargedext": "1002"}, s)
        await hears(a, [customer, boss], [agent])
        await hears(c, [agent, boss], [customer])
        await hears(s, [agent, customer], [boss])
        assert (await a.hangup()).status == 200  # the monitored call ends: so does 1003's
        await s.wait_ended()
        await c.wait_ended()
        await all_gone(pbx)
        none = await pbx.post("extension/listen", {"listener": "1003", "listenedext": "1001"})
        assert none.json()["errno"] == "10007", none.json()
        await pbx.stop()
    finally:
        for phone in (a, c, s):
            await phone.stop()


async def test_a_recorded_room_gives_one_wav_its_members_cdrs_name(
        start_pbx: Start, tmp_path: Path) -> None:
    pbx = await start_conference_pbx(start_pbx, tmp_path)
    receiver = await Receiver().start()
    await pbx.login(report_port=receiver.port)
    a, b = await phones(pbx, "1001", "1002")

    def new_cdrs() -> list[dict[str, Any]]:
        return [g.body for g in receiver.got if g.body.get("action") == "NewCdr"]

    try:
        for phone in (a, b):
            assert (await phone.call("6602")).status == 200
        await members_are(pbx, "6602", {"1001": "Up", "1002": "Up"})
        await hears(a, [TONES["1002"]], [TONES["1001"]])
        await hears(b, [TONES["1001"]], [TONES["1002"]])
        for phone in (a, b):
            assert (await phone.hangup()).status == 200
        await all_gone(pbx)

        async def both_cdrs() -> bool:
            return len(new_cdrs()) == 2

        await pbx.wait_for(both_cdrs, 5, "the two NewCdr")
        names = {cdr["recording"] for cdr in new_cdrs()}
        assert len(names) == 1, new_cdrs()
        [name] = names
        assert re.fullmatch(r"conference-6602-\d{8}-\d{6}-\d+\.wav", name), name
        answer = (await pbx.post("recording/get_random", {"recording": name})).json()
        assert answer["status"] == "Success", answer
        got = await pbx.client.get(f"{pbx.api_url}/recording/download", params={
            "recording": name, "random": answer["random"], "token": pbx.token})
        assert got.status_code == 200 and got.content[:4] == b"RIFF", got
        wav = tmp_path / "room.wav"
        wav.write_bytes(got.content)
        samples = read_wav(wav)
        assert samples.size >= 1.5 * 8000, samples.size
        for tone in (TONES["1001"], TONES["1002"]):
            assert share(samples, tone) > 0.2, (tone, share(samples, tone))
        await pbx.stop()
    finally:
        for phone in (a, b):
            await phone.stop()
        await receiver.stop()
