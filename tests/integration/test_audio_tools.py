"""The audio test tools (rtp_audio.py, audio_phone.py) proven before anything relies on them.

Unit checks of G.711 µ-law (known codes, the round-trip error bound, every code back to
itself), of the tone analysis (a tone, a tone with a weaker one, noise, silence), the
WAV writer, the SDP helpers and the RTP header; two `RtpEndpoint`s talking directly (a
700 Hz tone one way, 1300 Hz the other, DTMF, packets that are not audio, symmetric
RTP); and real calls through a real ippbx (`PbxHarness`) between `AudioPhone`s:
extension 1001 calls 1002 (each hears the other's tone and not its own, then 1001 holds
and unholds with re-INVITEs, DTMF, BYE), and 1001 calls out through a peer trunk to a
carrier (which hangs up). Today ippbx relays SDP untouched, so each side's SDP points at
the other phone's RTP socket; `expect_media` is where that changes when the PBX anchors
media.
"""

from __future__ import annotations

import asyncio
import math
import socket
import wave
from pathlib import Path

import numpy as np
import pytest
from audio_phone import AudioPhone, user_of
from pbx_harness import PbxHarness, Start, TrunkSpec
from rtp_audio import (
    PCMU,
    RATE,
    TELEPHONE_EVENT,
    Media,
    RtpEndpoint,
    RtpPacket,
    dominant_frequency,
    has_tone,
    is_silent,
    parse_media,
    read_wav,
    rms_dbfs,
    sdp_answer,
    sdp_offer,
    tone,
    tone_power_ratio,
    ulaw_decode,
    ulaw_encode,
    write_tone_wav,
)
from sipp_harness import free_port

TONE_A = 700.0  # what the caller sends
TONE_B = 1300.0  # what the callee sends
TOLERANCE = 20.0  # Hz
LISTEN = 0.5  # seconds of audio per check (2 Hz bins)
SETTLE = 0.15  # seconds for a media change to take effect before listening
pytestmark = pytest.mark.timeout(30)


# -- µ-law -----------------------------------------------------------------------------------


def test_ulaw_known_values() -> None:
    decoded = ulaw_decode(bytes([0xFF, 0x7F, 0x80, 0x00, 0xF0, 0xEF, 0xFE, 0x7E]))
    assert decoded.tolist() == [0, 0, 32124, -32124, 120, 132, 8, -8]
    # the codes of the ITU reference (Sun's g711.c): 14-bit input, so -1 is not 0
    samples = [0, -1, 1, 100, -100, 1000, -1000, 32767, -32768, 40000, -40000]
    assert ulaw_encode(samples) == bytes.fromhex("ff7efff272ce4e80008000")
    assert ulaw_encode(np.zeros(160, dtype=np.int16)) == b"\xff" * 160


def test_ulaw_round_trip_error_bounds() -> None:
    x = np.arange(-32768, 32768, dtype=np.int64)
    codes = np.frombuffer(ulaw_encode(x), dtype=np.uint8)
    y = ulaw_decode(codes.tobytes()).astype(np.int64)
    segment = ((~codes & 0xFF) >> 4) & 0x07
    half_step = 4 << segment.astype(np.int64)  # the intervals are 8 << segment wide
    inside = np.abs(x) <= 32124  # the largest value a code stands for
    error = np.abs(y - x)
    # the middle of the interval, ±3 for the 16 → 14 bit truncation of negative values
    assert (error[inside] <= half_step[inside] + 3).all(), int(error[inside].max())
    assert (np.abs(y[~inside]) == 32124).all()  # beyond: clipped to the extreme code
    assert (np.sign(y) * np.sign(x) >= 0).all()  # never the wrong sign
    assert (np.diff(y) >= 0).all()  # monotonic
    # relative error: at most about 1/16 (4 mantissa bits) above the smallest segment
    big = np.abs(x) > 256
    assert (error[big & inside] / np.abs(x[big & inside]) < 0.07).all()
    # every code decodes to a value that encodes back to it (0x7F is "-0" → 0xFF)
    all_codes = bytes(range(256))
    back = ulaw_encode(ulaw_decode(all_codes))
    assert [c for c in range(256) if back[c] != c] == [0x7F] and back[0x7F] == 0xFF


# -- tone analysis ---------------------------------------------------------------------------


def test_dominant_frequency_of_tones() -> None:
    samples = tone(700, 4000)
    assert abs(dominant_frequency(samples) - 700) < 1
    assert abs(dominant_frequency(tone(733.3, 4000)) - 733.3) < 1  # between bins
    assert abs(dominant_frequency(tone(1300, 800)) - 1300) < 5  # 0.1 s: 10 Hz bins
    assert abs(dominant_frequency(ulaw_decode(ulaw_encode(samples))) - 700) < 1
    # the window keeps a tone between bins in its main lobe (no window: 95 %)
    assert tone_power_ratio(tone(733.3, 4000), 733.3, band=5) > 0.999
    assert tone_power_ratio(samples, 700) > 0.99
    assert tone_power_ratio(samples, 1300) < 0.001
    assert has_tone(samples, 700) and not has_tone(samples, 1300)
    assert abs(rms_dbfs(samples) - 20 * math.log10(0.4 / math.sqrt(2))) < 0.1


def test_weaker_tone_in_a_mix() -> None:
    mix = tone(700, 4000, amplitude=0.4) + tone(1300, 4000, amplitude=0.1)
    assert abs(dominant_frequency(mix) - 700) < 1
    # power goes with the square of the amplitude: 16 to 1
    assert abs(tone_power_ratio(mix, 700) - 16 / 17) < 0.01
    assert abs(tone_power_ratio(mix, 1300) - 1 / 17) < 0.01
    assert has_tone(mix, 700) and not has_tone(mix, 1300)
    assert has_tone(mix, 1300, min_ratio=0.05)
    louder = tone(700, 4000, amplitude=0.1) + tone(1300, 4000, amplitude=0.4)
    assert abs(dominant_frequency(louder) - 1300) < 1


def test_noise_and_silence() -> None:
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 3000, 4000).astype(np.int16)
    assert not has_tone(noise, 700) and tone_power_ratio(noise, 700) < 0.05
    assert not is_silent(noise)
    assert is_silent(np.zeros(4000, dtype=np.int16))
    assert is_silent(ulaw_decode(b"\xff" * 4000))
    assert is_silent(np.array([], dtype=np.int16))
    assert is_silent(rng.normal(0, 20, 4000).astype(np.int16))  # about -64 dBFS
    assert not is_silent(tone(700, 4000, amplitude=0.01))  # -43 dBFS
    assert not has_tone(np.zeros(4000, dtype=np.int16), 700)
    with pytest.raises(ValueError):
        dominant_frequency(np.zeros(4, dtype=np.int16))


def test_tone_wav(tmp_path: Path) -> None:
    path = write_tone_wav(tmp_path / "moh.wav", 440, 0.5)
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.getnframes() == 4000
    samples = read_wav(path)
    assert samples.size == 4000 and abs(dominant_frequency(samples) - 440) < 1
    with wave.open(str(tmp_path / "stereo.wav"), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\0" * 16)
    with pytest.raises(ValueError):
        read_wav(tmp_path / "stereo.wav")


# -- SDP and RTP packets ---------------------------------------------------------------------


def test_sdp_offer_answer_and_parse() -> None:
    offer = sdp_offer("127.0.0.1", 40000, 3, "sendonly")
    text = offer.decode()
    assert text.endswith("\r\n") and "o=- 1 3 IN IP4 127.0.0.1\r\n" in text
    assert "m=audio 40000 RTP/AVP 0 101\r\n" in text
    assert "a=rtpmap:0 PCMU/8000\r\n" in text and "a=rtpmap:101 telephone-event/8000" in text
    assert parse_media(offer) == Media("127.0.0.1", 40000, "sendonly", (0, 101))
    answer = sdp_answer(offer, "127.0.0.2", 40002, 1)
    assert parse_media(answer) == Media("127.0.0.2", 40002, "recvonly", (0, 101))
    assert parse_media(sdp_answer(sdp_offer("h", 1, 1, "inactive"), "h", 2, 1)).direction \
        == "inactive"
    # media-level c= and direction override the session's; only the first audio stream
    other = (b"v=0\no=x 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\na=sendonly\n"
             b"m=video 5000 RTP/AVP 96\nc=IN IP4 10.9.9.9\n"
             b"m=audio 6000 RTP/AVP 8 0\nc=IN IP4 10.0.0.2/127\na=inactive\n"
             b"m=audio 7000 RTP/AVP 0\n")
    assert parse_media(other) == Media("10.0.0.2", 6000, "inactive", (8, 0))
    session_level = other.replace(b"c=IN IP4 10.0.0.2/127\na=inactive\n", b"")
    assert parse_media(session_level) == Media("10.0.0.1", 6000, "sendonly", (8, 0))
    assert parse_media(sdp_answer(other, "h", 2, 1)).payload_types == (0,)
    with pytest.raises(ValueError):
        parse_media(b"v=0\r\nm=video 5000 RTP/AVP 96\r\n")


def test_rtp_packet_format() -> None:
    packet = RtpPacket(PCMU, 65535, 0xFFFFFFFF, 0x12345678, b"\xff" * 160, marker=True)
    data = packet.to_bytes()
    assert len(data) == 172
    assert data[:12] == bytes.fromhex("8080ffffffffffff12345678")
    assert RtpPacket.parse(data) == packet
    assert RtpPacket.parse(b"\x40" + data[1:]) is None  # version 1
    assert RtpPacket.parse(data[:11]) is None
    # a CSRC, an extension and padding are skipped
    padded = (bytes([0xB1, 101]) + data[2:12] + b"CSRC" + b"\xbe\xde\x00\x01" + b"EXTN"
              + b"\x05\x80\x00\xa0" + b"\x00\x00\x03")
    parsed = RtpPacket.parse(padded)
    assert parsed is not None and parsed.payload == b"\x05\x80\x00\xa0"
    assert parsed.payload_type == TELEPHONE_EVENT and not parsed.marker


# -- two endpoints, directly -----------------------------------------------------------------


async def test_two_endpoints_hear_each_other() -> None:
    a, b = RtpEndpoint(), RtpEndpoint()
    await a.start()
    await b.start()
    try:
        assert a.address[0] == "127.0.0.1" and a.port != b.port
        a.set_remote(*b.address)
        b.set_remote(*a.address)
        a.play_tone(TONE_A)
        b.play_tone(TONE_B)
        heard_by_a, heard_by_b = await asyncio.gather(a.wait_audio(LISTEN),
                                                      b.wait_audio(LISTEN))
        assert_hears(heard_by_a, TONE_B, TONE_A, "a")
        assert_hears(heard_by_b, TONE_A, TONE_B, "b")
        # the RTP headers: one SSRC, consecutive sequence numbers, timestamps 160 apart
        packets = b.received[-20:]
        assert {p.ssrc for p in packets} == {a.ssrc} and {p.source for p in packets} \
            == {a.address}
        assert all(len(p.payload) == 160 for p in packets)
        pairs = list(zip(packets, packets[1:], strict=False))
        assert all((q.seq - p.seq) & 0xFFFF == 1 for p, q in pairs)
        assert all((q.timestamp - p.timestamp) & 0xFFFFFFFF == 160 for p, q in pairs)
        # about 50 packets a second
        gaps = np.diff([p.time for p in packets])
        assert 0.015 < float(np.mean(gaps)) < 0.03, gaps

        a.play_silence()
        await asyncio.sleep(SETTLE)
        quiet = await b.record(0.3)
        assert quiet.size > 0 and is_silent(quiet)
        a.play_nothing()
        await asyncio.sleep(SETTLE)
        assert (await b.record(0.3)).size == 0
        b.clear()
        assert b.received == [] and b.samples().size == 0
    finally:
        await a.stop()
        await b.stop()


async def test_dtmf_and_other_packets() -> None:
    a, b = RtpEndpoint(), RtpEndpoint()
    await a.start()
    await b.start()
    try:
        a.set_remote(*b.address)
        a.play_tone(TONE_A)
        await a.send_dtmf("5", duration_ms=100)
        await a.send_dtmf("#", duration_ms=60)
        await asyncio.sleep(0.1)
        assert b.dtmf_digits() == "5#"
        five = [p for p in b.dtmf if p.digit == "5"]
        assert len(five) == 5 + 3  # one per 20 ms, then the 3 end packets
        assert [p.marker for p in five] == [True] + [False] * 7
        assert [p.end for p in five] == [False] * 5 + [True] * 3
        assert [p.duration for p in five] == [160, 320, 480, 640, 800] + [800] * 3
        assert len({p.timestamp for p in five}) == 1 and five[0].volume == 10
        # the audio resumes after the event, its timestamp moved on by the event's length
        assert b.received[-1].timestamp != five[0].timestamp
        assert has_tone(b.samples(), TONE_A)
        # neither PCMU nor telephone-event, or not RTP at all: counted, not kept
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.sendto(RtpPacket(8, 1, 1, 1, b"\xd5" * 160).to_bytes(), b.address)
            raw.sendto(b"not rtp", b.address)
        await asyncio.sleep(0.1)
        assert b.ignored[8] == 1 and b.ignored[-1] == 1
        assert all(p.ssrc == a.ssrc for p in b.received)
    finally:
        await a.stop()
        await b.stop()


async def test_playing_a_wav_prompt(tmp_path: Path) -> None:
    a, b = RtpEndpoint(), RtpEndpoint()
    await a.start()
    await b.start()
    try:
        a.set_remote(*b.address)
        a.play_samples(read_wav(write_tone_wav(tmp_path / "moh.wav", 440, 0.3)))  # looped
        heard = await b.wait_audio(LISTEN)
        assert abs(dominant_frequency(heard) - 440) <= TOLERANCE and has_tone(heard, 440)
        a.play_samples(read_wav(write_tone_wav(tmp_path / "beep.wav", 1000, 0.1)),
                       loop=False)  # once, then silence
        heard = await b.wait_audio(0.4)
        assert has_tone(heard[160:800], 1000) and is_silent(heard[-1600:])
    finally:
        await a.stop()
        await b.stop()


async def test_symmetric_rtp_and_repointing() -> None:
    a, b, c = RtpEndpoint(), RtpEndpoint(), RtpEndpoint(symmetric=True)
    for endpoint in (a, b, c):
        await endpoint.start()
    try:
        c.play_tone(TONE_B)  # no remote: sends nothing until it hears someone
        await asyncio.sleep(SETTLE)
        assert c.sent == 0
        a.set_remote(*c.address)
        a.play_tone(TONE_A)
        heard = await a.wait_audio(LISTEN)
        assert_hears(heard, TONE_B, TONE_A, "a")
        assert c.remote == a.address
        a.set_remote(*b.address)  # a moves to b at once
        await asyncio.sleep(SETTLE)
        t = b.now()
        await asyncio.sleep(LISTEN)
        assert_hears(b.received_since(t), TONE_A, TONE_B, "b")
        assert c.packets_since(t) == []
    finally:
        for endpoint in (a, b, c):
            await endpoint.stop()


def assert_hears(samples: np.ndarray, wanted: float, own: float, who: str) -> None:
    """`samples` carry the `wanted` tone (within TOLERANCE) and not the `own` one."""
    assert samples.size >= 0.8 * LISTEN * RATE, f"{who} heard only {samples.size} samples"
    found = dominant_frequency(samples)
    assert abs(found - wanted) <= TOLERANCE, f"{who} heard {found:.1f} Hz, not {wanted}"
    assert tone_power_ratio(samples, wanted) > 0.9, f"{who}: {wanted} Hz does not dominate"
    assert tone_power_ratio(samples, own) < 0.01, f"{who} heard its own {own} Hz"


# -- through ippbx ---------------------------------------------------------------------------


def expect_media(sdp_seen: Media | None, sender: AudioPhone) -> None:
    """The SDP a phone got points where `sender`'s media is: today (SDP relayed
    untouched) `sender`'s own RTP socket."""
    assert sdp_seen is not None
    assert (sdp_seen.ip, sdp_seen.port) == sender.rtp.address, (sdp_seen, sender.rtp.address)


async def listen_both(a: AudioPhone, b: AudioPhone) -> tuple[np.ndarray, np.ndarray]:
    """What a and b each receive over the next LISTEN seconds (after SETTLE)."""
    await asyncio.sleep(SETTLE)
    heard_a, heard_b = await asyncio.gather(a.rtp.record(LISTEN), b.rtp.record(LISTEN))
    return heard_a, heard_b


async def test_call_between_extensions_hold_and_unhold(start_pbx: Start) -> None:
    pbx = await start_pbx([])
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B)
    try:
        answer = await a.call("1002")
        assert answer.status == 200, answer
        await b.wait_established()
        assert [r.status for r in a.provisional if r.status > 100] == [180]
        [invite] = b.incoming
        assert user_of(invite.get("From") or "") == "1001"
        # each side's SDP points where the other's media is
        assert len(a.remote_sdps) == len(b.remote_sdps) == 1
        expect_media(a.remote_media, b)
        expect_media(b.remote_media, a)
        heard_a, heard_b = await listen_both(a, b)
        assert_hears(heard_a, TONE_B, TONE_A, "1001")
        assert_hears(heard_b, TONE_A, TONE_B, "1002")

        # 1001 holds: the PBX relays the sendonly offer, 1002 answers recvonly and stops
        hold = await a.hold()
        assert hold.status == 200, hold
        assert len(b.remote_sdps) == 2 and len(a.remote_sdps) == 2
        [reinvite] = [r for r in b.requests if r.method == "INVITE"]
        assert b.remote_media is not None and b.remote_media.direction == "sendonly"
        expect_media(b.remote_media, a)
        assert a.remote_media is not None and a.remote_media.direction == "recvonly"
        expect_media(a.remote_media, b)
        assert not b.rtp.sending and a.rtp.sending
        held_a, held_b = await listen_both(a, b)
        assert is_silent(held_a) and len(held_a) <= 2 * 160, "1001 still hears 1002"
        assert_hears(held_b, TONE_A, TONE_B, "1002 on hold")

        # 1001's media moves to a new port (as a relay's might) and its unhold offer says
        # so: 1002 must follow the re-INVITE to keep hearing it
        old_address = a.rtp.address
        assert await a.rtp.rebind() != old_address
        unhold = await a.unhold()
        assert unhold.status == 200, unhold
        assert b.rtp.remote == a.rtp.address
        assert b.remote_media is not None and b.remote_media.direction == "sendrecv"
        assert a.remote_media is not None and a.remote_media.direction == "sendrecv"
        expect_media(b.remote_media, a)
        expect_media(a.remote_media, b)
        heard_a, heard_b = await listen_both(a, b)
        assert_hears(heard_a, TONE_B, TONE_A, "1001 after unhold")
        assert_hears(heard_b, TONE_A, TONE_B, "1002 after unhold")

        await a.send_dtmf("7")  # RFC 4733 in the media, end to end
        await asyncio.sleep(0.1)
        assert b.rtp.dtmf_digits() == "7"

        bye = await a.hangup()
        assert bye.status == 200, bye
        await b.wait_ended()
        assert [r.method for r in b.requests] == ["INVITE", "INVITE", "BYE"]
        assert b"a=sendonly" in reinvite.body
        assert not a.in_call and not b.in_call
        await asyncio.sleep(SETTLE)
        assert (await b.rtp.record(0.2)).size == 0  # no more media either way
        await pbx.stop()
    finally:
        await a.stop()
        await b.stop()
    assert a.ua.counts()["dialogs"] == 0 and b.ua.counts()["dialogs"] == 0


async def test_call_out_through_a_trunk(start_pbx: Start) -> None:
    port = free_port()
    pbx: PbxHarness = await start_pbx([TrunkSpec("carrier", port)])
    carrier = await AudioPhone.carrier(pbx.sip_address, port, tone=TONE_B)
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    try:
        answer = await a.call("95551234")
        assert answer.status == 200, answer
        await carrier.wait_established()
        [invite] = carrier.incoming
        assert user_of(invite.uri) == "5551234"  # the route's prefix 9 stripped
        expect_media(a.remote_media, carrier)
        expect_media(carrier.remote_media, a)
        heard_a, heard_carrier = await listen_both(a, carrier)
        assert_hears(heard_a, TONE_B, TONE_A, "1001")
        assert_hears(heard_carrier, TONE_A, TONE_B, "carrier")

        bye = await carrier.hangup()  # the far end hangs up: 1001 gets the BYE
        assert bye.status == 200, bye
        await a.wait_ended()
        assert [r.method for r in a.requests] == ["BYE"]
        await pbx.stop()
    finally:
        await a.stop()
        await carrier.stop()


async def test_phone_refuses_and_moves_on(start_pbx: Start) -> None:
    """A callee that answers 486 fails the call (the caller's media never starts), and a
    wrong password gets no registration: the phone's failure paths report, not hang."""
    pbx = await start_pbx([])
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B, answer_status=486)
    wrong = await AudioPhone.extension(pbx.sip_address, "1003", register=False,
                                       password="wrong")
    try:
        busy = await a.call("1002")
        assert busy.status == 486, busy
        assert not a.in_call and a.ended.is_set() and a.remote_sdps == []
        assert (await wrong.register()).status == 403
        await pbx.stop()
    finally:
        for phone in (a, b, wrong):
            await phone.stop()

