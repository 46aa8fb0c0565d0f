"""Calls with their audio anchored on ippbx's own rtpengine, checked by listening.

Each phone (`AudioPhone`: ippbx's UA plus a real RTP endpoint) sends a tone of its own
and records what it receives; numpy's FFT says whose tone arrived. The SDP each phone
sees names rtpengine's address and a port of `[media] port_min..port_max`, never the
other phone's. On top: music on hold (a held party hears `[media] moh`, here a known
tone), mute through the API, a phone behind NAT (its SDP names an address nothing can
reach), click-to-call, and rtpengine killed mid-call (the call is hung up, the next one
has audio again). After each call, rtpengine holds no call of ippbx's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from audio_phone import AudioPhone
from pbx_harness import PbxHarness, Start, TrunkSpec
from reports_harness import Receiver
from rtp_audio import Media, dominant_frequency, read_wav, tone_power_ratio, write_tone_wav
from sipp_harness import free_port, free_port_block

from ippbx.config import Config

TONE_A = 700.0  # the first phone's
TONE_B = 1300.0  # the second phone's (or the carrier's)
MOH_TONE = 440.0  # the music on hold of these tests
TOLERANCE = 20.0
LISTEN = 0.5
SETTLE = 0.25  # a media change through the engine (an ng command, a re-INVITE)


async def start_media_pbx(start_pbx: Start, tmp_path: Path,
                          trunks: list[TrunkSpec] | None = None, prompts: str = "",
                          **kwargs: Any) -> PbxHarness:
    low = free_port_block(40)
    moh = write_tone_wav(tmp_path / "moh.wav", MOH_TONE, 2.0)
    media = {"engine": "rtpengine", "port_min": low, "port_max": low + 39, "moh": str(moh)}
    if prompts:
        media["prompts"] = prompts
    return await start_pbx(trunks or [], media=media, **kwargs)


def assert_anchored(pbx: PbxHarness, seen: Media | None, other: AudioPhone) -> None:
    """The SDP a phone got names rtpengine (its interface, a port of the range), not the
    `other` phone's media."""
    assert seen is not None
    media = pbx.app.config.media
    assert seen.ip == "127.0.0.1"
    assert media.port_min <= seen.port <= media.port_max, seen
    assert (seen.ip, seen.port) != other.rtp.address


def hears(samples: np.ndarray, wanted: float, who: str) -> None:
    assert samples.size >= 0.7 * LISTEN * 8000, f"{who} heard only {samples.size} samples"
    found = dominant_frequency(samples)
    assert abs(found - wanted) <= TOLERANCE, f"{who} heard {found:.1f} Hz, not {wanted}"
    assert tone_power_ratio(samples, wanted) > 0.8, f"{who}: {wanted} Hz does not dominate"


def silent_of(samples: np.ndarray, tone: float, who: str) -> None:
    """`tone` does not reach `who` (silence, nothing, or something else)."""
    if samples.size:
        assert tone_power_ratio(samples, tone) < 0.05, f"{who} still hears {tone} Hz"


async def until(pbx: PbxHarness, condition: object, what: str) -> None:
    async def check() -> bool:
        return bool(condition())  # type: ignore[operator]

    await pbx.wait_for(check, timeout=5, what=what)


async def listen(*phones: AudioPhone) -> list[np.ndarray]:
    await asyncio.sleep(SETTLE)
    return list(await asyncio.gather(*(p.rtp.record(LISTEN) for p in phones)))


async def hear_each_other(a: AudioPhone, tone_a: float, b: AudioPhone, tone_b: float,
                          when: str = "") -> None:
    """a hears b's tone and b hears a's, over the next LISTEN seconds."""
    heard_a, heard_b = await listen(a, b)
    hears(heard_a, tone_b, f"{a.name} {when}".strip())
    hears(heard_b, tone_a, f"{b.name} {when}".strip())


async def starts_hearing(phone: AudioPhone, tone: float, timeout: float = 4.0) -> None:
    """Until `tone` dominates what `phone` receives (0.1 s windows), at most `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        window = await phone.rtp.record(0.1)
        if window.size and tone_power_ratio(window, tone) > 0.8:
            return
    raise AssertionError(f"{phone.name} never heard {tone} Hz")


async def hang_up(pbx: PbxHarness, by: AudioPhone, other: AudioPhone) -> None:
    """`by` hangs up, `other` gets the BYE, the engine keeps no call, the PBX stops
    with nothing left."""
    assert (await by.hangup()).status == 200
    await other.wait_ended()
    await no_engine_calls(pbx)
    await pbx.stop()


async def engine_calls(pbx: PbxHarness) -> list[str]:
    engine = pbx.app.media.engine
    assert engine is not None and engine.client is not None
    return await engine.client.list_calls()


async def no_engine_calls(pbx: PbxHarness) -> None:
    async def none_left() -> bool:
        return await engine_calls(pbx) == []

    await pbx.wait_for(none_left, timeout=5, what="rtpengine to hold no call")


async def test_audio_is_anchored_and_hold_plays_music(start_pbx: Start, tmp_path: Path) -> None:
    pbx = await start_media_pbx(start_pbx, tmp_path)
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B)
    try:
        assert (await a.call("1002")).status == 200
        await b.wait_established()
        assert_anchored(pbx, a.remote_media, b)
        assert_anchored(pbx, b.remote_media, a)
        assert len(await engine_calls(pbx)) == 1
        await hear_each_other(a, TONE_A, b, TONE_B)

        # 1001 holds from its phone: 1002 is offered sendonly through the engine and
        # hears the music on hold instead of 1001
        assert (await a.hold()).status == 200
        assert b.remote_media is not None and b.remote_media.direction == "sendonly"
        assert_anchored(pbx, b.remote_media, a)
        (held_b,) = await listen(b)
        hears(held_b, MOH_TONE, "1002 on hold")
        assert (await a.unhold()).status == 200
        await hear_each_other(a, TONE_A, b, TONE_B)

        await hang_up(pbx, b, a)
    finally:
        await a.stop()
        await b.stop()


async def test_api_hold_plays_music_and_mute_silences(start_pbx: Start, tmp_path: Path) -> None:
    pbx = await start_media_pbx(start_pbx, tmp_path)
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B)
    try:
        assert (await a.call("1002")).status == 200
        await b.wait_established()

        async def ok(endpoint: str, extid: str) -> None:
            answer = (await pbx.post(endpoint, {"extid": extid})).json()
            assert answer["status"] == "Success", (endpoint, answer)

        # mute 1001: 1002 stops hearing it, 1001 still hears 1002
        await ok("extension/mute", "1001")
        heard_a, heard_b = await listen(a, b)
        hears(heard_a, TONE_B, "1001 muted")
        silent_of(heard_b, TONE_A, "1002 (1001 muted)")
        await ok("extension/unmute", "1001")
        heard_a, heard_b = await listen(a, b)
        hears(heard_b, TONE_A, "1002 after unmute")

        # the application holds 1002's party (1001) for extension 1002: music for 1001
        await ok("extension/hold", "1002")
        await until(pbx, lambda: a.remote_media is not None
                    and a.remote_media.direction == "sendonly", "the hold re-INVITE")
        (held_a,) = await listen(a)
        hears(held_a, MOH_TONE, "1001 held by the API")
        await ok("extension/unhold", "1002")
        await until(pbx, lambda: a.remote_media is not None
                    and a.remote_media.direction == "sendrecv", "the unhold re-INVITE")
        await hear_each_other(a, TONE_A, b, TONE_B)

        assert (await a.hangup()).status == 200
        await b.wait_ended()
        await no_engine_calls(pbx)
        # no call: mute has nothing to act on
        answer = (await pbx.post("extension/mute", {"extid": "1001"})).json()
        assert answer["status"] == "Failed" and answer["errno"] == "10007", answer
        await pbx.stop()
    finally:
        await a.stop()
        await b.stop()


async def test_a_phone_behind_nat_gets_audio(start_pbx: Start, tmp_path: Path) -> None:
    """Its SDP names a private address nothing can reach (as a phone behind NAT does):
    the engine answers to where its packets come from (symmetric RTP)."""
    port = free_port()
    pbx = await start_media_pbx(start_pbx, tmp_path, [TrunkSpec("carrier", port)])
    carrier = await AudioPhone.carrier(pbx.sip_address, port, tone=TONE_B)
    a = AudioPhone(pbx.sip_address, "1001", tone=TONE_A)
    a.advertise = ("10.255.255.1", 4000)
    await a.start()
    try:
        assert (await a.register()).status == 200
        assert (await a.call("95551234")).status == 200
        await carrier.wait_established()
        assert_anchored(pbx, carrier.remote_media, a)
        await hear_each_other(a, TONE_A, carrier, TONE_B)
        await hang_up(pbx, a, carrier)
    finally:
        await a.stop()
        await carrier.stop()


async def test_click_to_call_is_anchored(start_pbx: Start, tmp_path: Path) -> None:
    port = free_port()
    pbx = await start_media_pbx(start_pbx, tmp_path, [TrunkSpec("carrier", port)])
    carrier = await AudioPhone.carrier(pbx.sip_address, port, tone=TONE_B)
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    try:
        answer = (await pbx.post("extension/dial_outbound",
                                 {"extid": "1001", "outto": "95551234"})).json()
        assert answer["status"] == "Success", answer
        await a.wait_established()
        await carrier.wait_established()
        await until(pbx, lambda: len(a.remote_sdps) == 1, "1001's ACK with the answer")
        assert_anchored(pbx, a.remote_media, carrier)
        assert_anchored(pbx, carrier.remote_media, a)
        await hear_each_other(a, TONE_A, carrier, TONE_B)
        await hang_up(pbx, carrier, a)
    finally:
        await a.stop()
        await carrier.stop()


async def test_rtpengine_killed_mid_call(start_pbx: Start, tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    """The engine dies: ippbx says so, starts it again and hangs up the calls it carried
    (their audio is gone); the next call has audio again."""
    caplog.set_level(logging.INFO)
    pbx = await start_media_pbx(start_pbx, tmp_path)
    engine = pbx.app.media.engine
    assert engine is not None
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B)
    try:
        assert (await a.call("1002")).status == 200
        await b.wait_established()
        pid = engine.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await a.wait_ended(timeout=10)
        await b.wait_ended(timeout=10)
        await pbx.wait_idle()
        assert engine.restarts == 1 and engine.pid not in (None, pid)
        said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any(f"rtpengine (pid {pid}) exited" in m for m in said), said
        assert any("hanging up 1 call(s)" in m for m in said), said

        assert (await a.call("1002")).status == 200
        await b.wait_established()
        assert_anchored(pbx, a.remote_media, b)
        await hear_each_other(a, TONE_A, b, TONE_B)
        await hang_up(pbx, a, b)
    finally:
        await a.stop()
        await b.stop()


def recording(*numbers: str) -> Any:
    """An `adjust` for the harness: these extensions have `record = true`."""
    def adjust(config: Config) -> Config:
        extensions = [e.model_copy(update={"record": e.number in numbers})
                      for e in config.extensions]
        return config.model_copy(update={"extensions": extensions})
    return adjust


async def test_a_recorded_call_is_a_wav_named_in_its_new_cdr(
    start_pbx: Start, tmp_path: Path
) -> None:
    receiver = await Receiver().start()
    pbx = await start_media_pbx(start_pbx, tmp_path, adjust=recording("1001"))
    await pbx.login(report_port=receiver.port)
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B)
    c = await AudioPhone.extension(pbx.sip_address, "1003", tone=TONE_B)

    def new_cdrs() -> list[dict[str, Any]]:
        return [g.body for g in receiver.got if g.body.get("action") == "NewCdr"]

    try:
        assert (await a.call("1002")).status == 200  # 1001 records its calls
        await b.wait_established()
        for _ in range(2):  # (1.5 s of talk, both ways: what the recording must hold)
            await hear_each_other(a, TONE_A, b, TONE_B)
        assert (await a.hangup()).status == 200
        await until(pbx, lambda: len(new_cdrs()) == 1, "the NewCdr")
        name = new_cdrs()[0]["recording"]
        assert re.fullmatch(r"exten-1001-1002-\d{8}-\d{6}-.+\.wav", name), name
        await until(pbx, lambda: pbx.app.media.converted == 1, "the WAV")

        answer = (await pbx.post("recording/get_random", {"recording": name})).json()
        assert answer["status"] == "Success", answer
        got = await pbx.client.get(f"{pbx.api_url}/recording/download", params={
            "recording": name, "random": answer["random"], "token": pbx.token})
        assert got.status_code == 200 and got.content[:4] == b"RIFF", got
        wav = tmp_path / "downloaded.wav"
        wav.write_bytes(got.content)
        samples = read_wav(wav)
        assert samples.size >= 1.0 * 8000  # the whole talk, both parties in one mix
        assert tone_power_ratio(samples, TONE_A) > 0.2, "1001 is not in the recording"
        assert tone_power_ratio(samples, TONE_B) > 0.2, "1002 is not in the recording"

        # a call none of whose parties records: no recording, none in its NewCdr
        assert (await b.call("1003")).status == 200
        await c.wait_established()
        assert (await c.hangup()).status == 200
        await until(pbx, lambda: len(new_cdrs()) == 2, "the second NewCdr")
        assert "recording" not in new_cdrs()[1]
        assert sorted(p.name for p in (tmp_path / "pbx0" / "recordings").glob("*.wav")) \
            == [name]
        await no_engine_calls(pbx)
        await pbx.stop()
    finally:
        for phone in (a, b, c):
            await phone.stop()
        await receiver.stop()


async def test_playprompt_calls_play_and_report(start_pbx: Start, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    write_tone_wav(prompts / "greet1.wav", 500.0, 1.5)
    write_tone_wav(prompts / "menu2.wav", 900.0, 1.5)
    receiver = await Receiver().start()
    port = free_port()
    pbx = await start_media_pbx(start_pbx, tmp_path, [TrunkSpec("carrier", port)],
                                prompts=str(prompts))
    await pbx.login(report_port=receiver.port)
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    carrier = await AudioPhone.carrier(pbx.sip_address, port, tone=TONE_B)

    def reports(action: str) -> list[dict[str, Any]]:
        return [g.body for g in receiver.got if g.body.get("action") == action]

    try:
        answer = (await pbx.post("extension/playprompt", {
            "extid": "1001", "prompt": "greet1+menu2", "autoanswer": "yes"})).json()
        assert answer["status"] == "Success", answer
        callid = answer["callid"]
        await a.wait_established()
        [invite] = a.incoming
        assert "answer-after=0" in (invite.get("Call-Info") or "")
        assert_anchored(pbx, a.remote_media, a)
        (first,) = await listen(a)
        hears(first, 500.0, "1001 (first prompt)")
        await a.send_dtmf("5")  # a key pressed while it plays: the DTMF report
        await starts_hearing(a, 900.0)  # the second prompt
        (second,) = await listen(a)
        hears(second, 900.0, "1001 (second prompt)")
        await a.wait_ended(timeout=5)  # ippbx hangs up after the last prompt
        await until(pbx, lambda: reports("PlayPromptEnd"), "PlayPromptEnd")
        [end] = reports("PlayPromptEnd")
        assert end["callid"] == callid and end["prompt"] == "greet1+menu2", end
        assert end["ext"] == {"extid": "1001"}, end
        [dtmf] = reports("DTMF")
        assert dtmf["callid"] == callid and dtmf["info"] == "5", dtmf
        await until(pbx, lambda: reports("NewCdr"), "the NewCdr")
        assert reports("NewCdr")[0]["status"] == "ANSWERED"

        # out through a trunk, route prefix included
        answer = (await pbx.post("outbound/playprompt",
                                 {"outto": "95550009999", "prompt": "menu2"})).json()
        assert answer["status"] == "Success", answer
        await carrier.wait_established()
        assert user_of_uri(carrier.incoming[0].uri) == "5550009999"
        (heard,) = await listen(carrier)
        hears(heard, 900.0, "the carrier")
        await carrier.wait_ended(timeout=5)

        # a prompt the engine cannot play (not a WAV): the call ends, no PlayPromptEnd
        (prompts / "broken.wav").write_bytes(b"not a wav file at all")
        answer = (await pbx.post("extension/playprompt",
                                 {"extid": "1001", "prompt": "broken"})).json()
        assert answer["status"] == "Success", answer
        await a.wait_established()
        await a.wait_ended(timeout=5)
        await until(pbx, lambda: len(reports("NewCdr")) == 3, "the third NewCdr")
        assert [r["prompt"] for r in reports("PlayPromptEnd")] == ["greet1+menu2", "menu2"]

        for fields, errno in (
            ({"extid": "1001", "prompt": "nosuch"}, "10023"),
            ({"extid": "1001", "prompt": "../prompts/greet1"}, "10023"),
            ({"extid": "1001", "prompt": "123"}, "10023"),  # (no letter)
            ({"extid": "1004", "prompt": "greet1"}, "10006"),  # not registered
            ({"extid": "1001"}, "10004"),
        ):
            answer = (await pbx.post("extension/playprompt", fields)).json()
            assert answer == {"status": "Failed", "errno": errno}, (fields, answer)
        answer = (await pbx.post("outbound/playprompt",
                                 {"outto": "12345", "prompt": "greet1"})).json()
        assert answer == {"status": "Failed", "errno": "10011"}, answer
        await no_engine_calls(pbx)
        await pbx.stop()
    finally:
        await a.stop()
        await carrier.stop()
        await receiver.stop()


def user_of_uri(uri: str) -> str:
    return uri.partition(":")[2].partition("@")[0]


async def test_a_supervisor_listens_unheard(start_pbx: Start, tmp_path: Path) -> None:
    """1003 listens to 1001's call with 1002: it hears 1002 (the monitored extension's
    far end; the docs say why not both), and neither party hears 1003."""
    pbx = await start_media_pbx(start_pbx, tmp_path)
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B)
    listener = await AudioPhone.extension(pbx.sip_address, "1003", tone=MOH_TONE)
    try:
        assert (await a.call("1002")).status == 200
        await b.wait_established()
        answer = (await pbx.post("extension/listen",
                                 {"listener": "1003", "listenedext": "1001"})).json()
        assert answer["status"] == "Success", answer
        await listener.wait_established()
        [invite] = listener.incoming
        assert "answer-after=0" in (invite.get("Call-Info") or "")
        assert_anchored(pbx, listener.remote_media, a)
        assert listener.remote_media is not None
        assert listener.remote_media.direction == "sendonly"
        heard_l, heard_a, heard_b = await listen(listener, a, b)
        hears(heard_l, TONE_B, "the listener")
        hears(heard_a, TONE_B, "1001 (monitored)")  # the call goes on as before
        hears(heard_b, TONE_A, "1002")
        silent_of(heard_a, MOH_TONE, "1001")  # nobody hears the listener
        silent_of(heard_b, MOH_TONE, "1002")

        # a second listener for the same call, a busy listener, no call to listen to
        for fields, errno in (({"listener": "1004", "listenedext": "1001"}, "10006"),
                              ({"listener": "1003", "listenedext": "1002"}, "10008"),
                              ({"listener": "1005", "listenedext": "1004"}, "10006")):
            answer = (await pbx.post("extension/listen", fields)).json()
            assert answer == {"status": "Failed", "errno": errno}, (fields, answer)

        # the monitored call ends: so does the listening
        assert (await b.hangup()).status == 200
        await a.wait_ended()
        await listener.wait_ended(timeout=5)
        await no_engine_calls(pbx)
        await pbx.wait_idle()
        answer = (await pbx.post("extension/listen",
                                 {"listener": "1003", "listenedext": "1001"})).json()
        assert answer == {"status": "Failed", "errno": "10007"}, answer  # no call now
        await pbx.stop()
    finally:
        for phone in (a, b, listener):
            await phone.stop()


async def test_a_transferred_call_keeps_its_audio(start_pbx: Start, tmp_path: Path) -> None:
    """1001 calls 1002, the application transfers 1002's side to 1003: 1001 and 1003
    hear each other through the same engine call, and 1001's media address is the
    engine's throughout."""
    pbx = await start_media_pbx(start_pbx, tmp_path)
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B)
    c = await AudioPhone.extension(pbx.sip_address, "1003", tone=MOH_TONE * 2)
    try:
        assert (await a.call("1002")).status == 200
        await b.wait_established()
        [call] = pbx.app.registry.by_extension("1001")
        answer = (await pbx.post("calltransfer", {"callid": call.callid, "transferor": "1002",
                                                  "transferto": "1003"})).json()
        assert answer["status"] == "Success", answer
        await b.wait_ended()
        await c.wait_established()
        await until(pbx, lambda: len(a.remote_sdps) >= 2, "1001 re-INVITEd with 1003's media")
        assert_anchored(pbx, c.remote_media, a)
        assert_anchored(pbx, a.remote_media, c)
        await hear_each_other(a, TONE_A, c, MOH_TONE * 2)
        assert await engine_calls(pbx) == [call.callid]
        await hang_up(pbx, c, a)
    finally:
        for phone in (a, b, c):
            await phone.stop()
