"""ippbx.media.recordings: pcap → WAV (placement by RTP timestamp, G.711 both laws, the
mix, link types, broken files), recording names, the recordings directory."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pytest
from pcap_build import (
    _ALAW,
    LINK_ETHERNET,
    LINK_LINUX_SLL,
    PCMA,
    PCMU,
    Frame,
    alaw_encode,
    frames_pcap,
    pcap_bytes,
    rtp,
    tone_stream,
    udp_ip,
)
from rtp_audio import has_tone, read_wav, tone_power_ratio, ulaw_decode, ulaw_encode

from ippbx.media.recordings import (
    MAX_SKEW,
    MAX_STREAMS,
    Conversion,
    RecordingError,
    Recordings,
    decode_g711,
    is_recording_name,
    metadata_files,
    mix_lanes,
    pcap_to_wav,
    recording_name,
    rtpengine_stem,
)

T0 = 1_700_000_000.0
RATE = 8000
A_FIRST_TS = 0xFFFFFFFF - 160 * 30 + 1  # the 700 Hz stream's timestamps wrap at packet 30
Samples = npt.NDArray[np.int16]


def alaw_decode(data: bytes) -> Samples:
    return np.frombuffer(decode_g711(data, PCMA), dtype="<i2").astype(np.int16)


def convert(tmp_path: Path, data: bytes, **kwargs: float) -> tuple[Conversion, Samples]:
    pcap = tmp_path / "call.pcap"
    pcap.write_bytes(data)
    wav = tmp_path / "call.wav"
    result = pcap_to_wav(pcap, wav, **kwargs)
    return result, read_wav(wav)


def expected_mix(length: int, *placed: tuple[int, Samples]) -> Samples:
    out = np.zeros(length, dtype=np.int64)
    for position, samples in placed:
        out[position : position + samples.size] += samples
    return np.clip(out, -32768, 32767).astype(np.int16)


def seconds(samples: Samples, start: float, end: float) -> Samples:
    return samples[round(start * RATE) : round(end * RATE)]


# -- G.711 ------------------------------------------------------------------------------------


def test_g711_decoding_tables() -> None:
    codes = bytes(range(256))
    mu = np.frombuffer(decode_g711(codes, PCMU), dtype="<i2")
    assert np.array_equal(mu, ulaw_decode(codes))  # rtp_audio's table, built independently
    a = alaw_decode(codes)
    values = np.arange(-32768, 32768)
    for code in range(256):  # each A-law code decodes to the middle of what encodes to it
        encoded = values[_ALAW == code]
        assert abs(a[code] - (encoded.min() + encoded.max()) / 2) <= 1, code
    with pytest.raises(ValueError):
        decode_g711(b"\x00", 9)


def test_mix_is_a_saturated_sum() -> None:
    rng = np.random.default_rng(5)
    for n in (1, 2, 3, 4, 7, MAX_STREAMS, 127):
        width = 500
        streams = rng.integers(-32768, 32768, size=(n, width))
        streams[:, :10] = 32767  # certainly clipping high
        streams[:, 10:20] = -32768  # and low
        lanes = [bytearray((s + 32768).astype("<u4").tobytes()) for s in streams]
        mixed = np.frombuffer(mix_lanes(lanes, width), dtype="<i2")
        assert np.array_equal(mixed, np.clip(streams.sum(axis=0), -32768, 32767)), n
    assert mix_lanes([], 3) == bytes(6)
    with pytest.raises(ValueError):
        mix_lanes([bytearray(4)] * 128, 1)


# -- the call ---------------------------------------------------------------------------------


def call_frames(jitter: bool = True) -> tuple[list[Frame], Samples, int]:
    """Two parties: 700 Hz µ-law from 0 s to 2 s (timestamps wrapping, packet 20 lost,
    packets 30 and 31 captured in the wrong order, nothing sent from 1.0 s to 1.4 s, a
    telephone-event packet at 0.81 s) and 1300 Hz A-law from 0.5 s to 3.0 s; captures
    late by up to 8 ms (but each stream's first). Returns the frames in capture order,
    the WAV expected and the number of audio packets."""
    rng = random.Random(7)
    a = tone_stream(700, T0, 2.0, ulaw_encode, ssrc=0xA, first_timestamp=A_FIRST_TS,
                    first_seq=65500)
    b = tone_stream(1300, T0 + 0.5, 2.5, alaw_encode, payload_type=PCMA, ssrc=0xB,
                    first_timestamp=123456, src=("10.0.0.2", 5000), dst=("10.0.0.9", 30002))
    if jitter:
        a = [f.moved(time=f.time + rng.uniform(0, 0.008)) if i else f for i, f in enumerate(a)]
        b = [f.moved(time=f.time + rng.uniform(0, 0.008)) if i else f for i, f in enumerate(b)]
    a[30], a[31] = a[30].moved(time=a[31].time), a[31].moved(time=a[30].time)
    kept = [i for i in range(len(a)) if i != 20 and not 50 <= i < 70]
    event = Frame(T0 + 0.81, 101, 7, a[40].timestamp, 0xA, bytes([5, 0x0A, 0, 160]),
                  a[0].src, a[0].dst, marker=True)
    frames = sorted([a[i] for i in kept] + b + [event], key=lambda f: f.time)
    assert frames.index(a[31]) < frames.index(a[30])
    expected = expected_mix(
        3 * RATE,
        *[(160 * i, ulaw_decode(a[i].payload)) for i in kept],
        *[(4000 + 160 * i, alaw_decode(f.payload)) for i, f in enumerate(b)],
    )
    return frames, expected, len(kept) + len(b)


def test_both_parties_at_the_right_times(tmp_path: Path) -> None:
    frames, expected, packets = call_frames()
    result, wav = convert(tmp_path, frames_pcap(frames))
    assert result == Conversion(samples=3 * RATE, streams=2, packets=packets, skipped=1)
    assert result.seconds == 3.0
    assert np.array_equal(wav, expected)  # every packet in its slot, sample for sample
    only_a = seconds(wav, 0.05, 0.35)
    assert has_tone(only_a, 700) and not has_tone(only_a, 1300)
    assert not seconds(wav, 0.40, 0.42).any()  # the lost packet: silence
    both = seconds(wav, 0.6, 0.95)
    assert tone_power_ratio(both, 700) > 0.35 and tone_power_ratio(both, 1300) > 0.35
    assert has_tone(seconds(wav, 1.05, 1.35), 1300)  # the 700 Hz side sent nothing
    assert has_tone(seconds(wav, 2.05, 2.95), 1300)
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("variant", ["ethernet-vlan", "linux-cooked", "ipv6", "ns-big-endian"])
def test_other_captures_give_the_same_wav(tmp_path: Path, variant: str) -> None:
    frames, expected, _ = call_frames(jitter=False)
    if variant == "ethernet-vlan":
        data = frames_pcap(frames, LINK_ETHERNET)
    elif variant == "linux-cooked":
        data = frames_pcap(frames, LINK_LINUX_SLL)
    elif variant == "ipv6":
        v6 = {"10.0.0.1": "fd00::1", "10.0.0.2": "fd00::2", "10.0.0.9": "fd00::9"}
        data = frames_pcap([f.moved(src=(v6[f.src[0]], f.src[1]), dst=(v6[f.dst[0]], f.dst[1]))
                            for f in frames])
    else:
        data = frames_pcap(frames, nanoseconds=True, big_endian=True)
    _, wav = convert(tmp_path, data)
    assert np.array_equal(wav, expected)


def test_rtp_header_extras_are_skipped(tmp_path: Path) -> None:
    payloads = [ulaw_encode(np.full(160, 1000 * (i + 1))) for i in range(3)]
    packets = [
        rtp(PCMU, 1, 1000, 9, payloads[0], csrcs=2),
        rtp(PCMU, 2, 1160, 9, payloads[1], extension=bytes(8)),
        rtp(PCMU, 3, 1320, 9, payloads[2], padding=4),
        rtp(13, 4, 1480, 9, b"\x40"),  # comfort noise: not audio we decode
        b"\x00" * 40,  # not RTP
    ]
    records = [(T0 + 0.02 * i, udp_ip("10.0.0.1", 4000, "10.0.0.9", 30000, p))
               for i, p in enumerate(packets)]
    result, wav = convert(tmp_path, pcap_bytes(records))
    assert result.samples == 480 and result.skipped == 1
    assert np.array_equal(wav, ulaw_decode(b"".join(payloads)))


def test_loud_parties_clip_instead_of_wrapping(tmp_path: Path) -> None:
    loud = np.full(160, 30000)
    a = [Frame(T0 + 0.02 * i, PCMU, i, 160 * i, 1, ulaw_encode(loud), ("10.0.0.1", 1),
               ("10.0.0.9", 2)) for i in range(5)]
    b = [f.moved(payload_type=PCMA, ssrc=2, payload=alaw_encode(loud)) for f in a]
    _, wav = convert(tmp_path, frames_pcap(sorted(a + b, key=lambda f: f.time)))
    assert wav.size == 800 and (wav == 32767).all()


# -- timestamps that lie ------------------------------------------------------------------------


def one_second() -> list[Frame]:
    return tone_stream(700, T0, 1.0, ulaw_encode, ssrc=3, first_timestamp=5000)


def test_a_garbage_timestamp_moves_nothing_else(tmp_path: Path) -> None:
    """One packet with a wild timestamp (captured 5 ms late) lands where it was captured;
    the packets around it keep their slots despite the capture jitter."""
    rng = random.Random(1)
    frames = [f.moved(time=f.time + rng.uniform(0, 0.003)) if i else f
              for i, f in enumerate(one_second())]
    _, clean = convert(tmp_path, frames_pcap(frames))
    wild = frames[25]
    frames[25] = wild.moved(timestamp=wild.timestamp + 0x40000000, time=T0 + 0.505)
    result, wav = convert(tmp_path, frames_pcap(frames))
    assert result.samples == RATE
    assert np.array_equal(wav[:4000], clean[:4000]) and np.array_equal(wav[4160:], clean[4160:])
    assert not wav[4000:4040].any() and np.array_equal(wav[4040:4160], clean[4000:4120])


def test_a_restarted_clock_follows_the_capture_time(tmp_path: Path) -> None:
    frames = one_second()
    _, clean = convert(tmp_path, frames_pcap(frames))
    frames[25:] = [f.moved(timestamp=777 + 160 * i) for i, f in enumerate(frames[25:])]
    result, wav = convert(tmp_path, frames_pcap(frames))
    assert result.samples == RATE and np.array_equal(wav, clean)


def test_random_timestamps_cannot_grow_the_file(tmp_path: Path) -> None:
    rng = random.Random(3)
    frames = [f.moved(timestamp=rng.getrandbits(32)) for f in one_second()]
    result, _ = convert(tmp_path, frames_pcap(frames))
    assert result.samples <= RATE + MAX_SKEW


def test_the_length_is_bounded(tmp_path: Path) -> None:
    frames = one_second()
    late = frames[-1].moved(time=T0 + 10 * 86400, seq=60, timestamp=frames[-1].timestamp + 160)
    result, _ = convert(tmp_path, frames_pcap([*frames, late]), max_seconds=60)
    assert result.samples == RATE and result.skipped == 1
    later = late.moved(time=T0 + 30)
    result, wav = convert(tmp_path, frames_pcap([*frames, later]), max_seconds=60)
    assert result.samples == 30 * RATE + 160 and not seconds(wav, 1.0, 30.0).any()


def test_a_flood_of_ssrcs_is_bounded(tmp_path: Path) -> None:
    frames = [f.moved(ssrc=i) for i, f in enumerate(tone_stream(700, T0, 4.0, ulaw_encode))]
    result, _ = convert(tmp_path, frames_pcap(frames))
    assert result.streams == MAX_STREAMS and result.skipped == len(frames) - MAX_STREAMS


def test_no_audio_gives_an_empty_wav(tmp_path: Path) -> None:
    event = Frame(T0, 101, 1, 0, 1, bytes(4), ("10.0.0.1", 1), ("10.0.0.9", 2))
    result, wav = convert(tmp_path, frames_pcap([event]))
    assert result == Conversion(0, 0, 0, 1) and wav.size == 0
    result, wav = convert(tmp_path, pcap_bytes([]))
    assert result.samples == 0 and wav.size == 0


# -- files that are not pcaps, or not whole ------------------------------------------------------


@pytest.mark.parametrize("data", [
    b"", b"\xd4\xc3\xb2", b"hello, this is not a capture file at all",
    bytes(range(256)) * 4,
    b"\x0a\x0d\x0d\x0a" + bytes(60),  # pcapng
    pcap_bytes([], link=147),  # a link type nobody records RTP with
], ids=["empty", "short", "text", "binary", "pcapng", "linktype"])
def test_not_a_pcap(tmp_path: Path, data: bytes) -> None:
    wav = tmp_path / "call.wav"
    wav.write_bytes(b"the previous recording")
    with pytest.raises(RecordingError, match="call.pcap"):
        convert(tmp_path, data)
    assert wav.read_bytes() == b"the previous recording"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["call.pcap", "call.wav"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RecordingError):
        pcap_to_wav(tmp_path / "none.pcap", tmp_path / "x.wav")


def test_truncated_files_give_what_is_there(tmp_path: Path) -> None:
    data = frames_pcap(tone_stream(700, T0, 0.3, ulaw_encode))
    previous = 0
    for cut in range(len(data) + 1):
        if cut < 24:
            with pytest.raises(RecordingError):
                convert(tmp_path, data[:cut])
            continue
        result, wav = convert(tmp_path, data[:cut])
        assert previous <= result.samples == wav.size
        previous = result.samples
    assert previous == 0.3 * RATE


def test_corrupted_files_never_crash(tmp_path: Path) -> None:
    frames, _, _ = call_frames()
    data = frames_pcap(frames[:40])
    rng = random.Random(11)
    for _ in range(300):
        broken = bytearray(data)
        for _ in range(rng.randint(1, 20)):
            broken[rng.randrange(len(broken))] = rng.getrandbits(8)
        try:
            result, _ = convert(tmp_path, bytes(broken))
        except RecordingError:
            continue
        assert result.samples <= 86400 * RATE


# -- names ------------------------------------------------------------------------------------


def test_recording_name_as_the_vendors() -> None:
    moscow = ZoneInfo("Europe/Moscow")
    assert (recording_name("101", "106", 1588641695.2, "1588641695.1772", moscow)
            == "exten-101-106-20200505-042135-1588641695.1772.wav")  # OpenVox's example
    utc = ZoneInfo("UTC")
    assert (recording_name("2101", "2103", 1709288100, "1709288100.601", utc)
            == "exten-2101-2103-20240301-101500-1709288100.601.wav")
    local = time.strftime("%Y%m%d-%H%M%S", time.localtime(1709288100))
    assert recording_name("1", "2", 1709288100, "u") == f"exten-1-2-{local}-u.wav"
    odd = recording_name("sip:+1 555/../x", "*97#", 0, "a/../../b", utc)
    assert odd == "exten-sip_+1_555_._x-*97#-19700101-000000-a_._._b.wav"
    assert is_recording_name(odd)
    assert recording_name("", "", 0, "", utc) == "exten-unknown-unknown-19700101-000000-unknown.wav"
    assert is_recording_name(recording_name("9" * 500, "1", 0, "2" * 500, utc))


def test_rtpengine_file_names() -> None:
    assert rtpengine_stem("abc-123@host") == "abc-123%40host"
    assert rtpengine_stem("a~b_c.d/é") == "a~b_c.d%2F%C3%A9"
    tmp, done = metadata_files(Path("/spool/pcaps/abc%40h-0123456789abcdef.pcap"))
    assert tmp == Path("/spool/tmp/rtpengine-meta-abc%40h-0123456789abcdef.tmp")
    assert done == Path("/spool/metadata/rtpengine-meta-abc%40h-0123456789abcdef.txt")


# -- the recordings directory -----------------------------------------------------------------


def test_path_of_gives_only_plain_files_inside(tmp_path: Path) -> None:
    directory = tmp_path / "recordings"
    directory.mkdir()
    (directory / "exten-1-2-20240301-101500-1.1.wav").write_bytes(b"RIFF")
    (tmp_path / "secret.wav").write_bytes(b"outside")
    (directory / "link.wav").symlink_to(tmp_path / "secret.wav")
    (directory / "folder.wav").mkdir()
    (directory / ".hidden.wav").write_bytes(b"RIFF")
    (directory / "notes.txt").write_text("x")
    recordings = Recordings(directory)
    assert recordings.path_of("exten-1-2-20240301-101500-1.1.wav") == (
        directory / "exten-1-2-20240301-101500-1.1.wav")
    for name in ["exten-9-9-20240301-101500-1.1.wav", "../secret.wav", "..", ".", "",
                 "/etc/passwd", "..%2Fsecret.wav", "a/../secret.wav", "link.wav",
                 "folder.wav", ".hidden.wav", "notes.txt", "x\x00.wav", "..\\secret.wav",
                 str(tmp_path / "secret.wav"), "x..wav", "a" * 300 + ".wav"]:
        assert recordings.path_of(name) is None, name
    assert Recordings(tmp_path / "absent").path_of("x.wav") is None


def test_finish_converts_and_cleans_the_spool(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    for sub in ("pcaps", "metadata", "tmp"):
        (spool / sub).mkdir(parents=True)
    stem = f"{rtpengine_stem('call-1@pbx')}-0123456789abcdef"
    pcap = spool / "pcaps" / f"{stem}.pcap"
    pcap.write_bytes(frames_pcap(tone_stream(700, T0, 0.5, ulaw_encode)))
    for meta in metadata_files(pcap):
        meta.write_text(f"{pcap}\n")
    recordings = Recordings(tmp_path / "recordings", spool)
    assert recordings.pcaps_for("call-1@pbx") == [pcap]
    assert recordings.is_closed(pcap)
    name = recording_name("101", "106", T0, "1700000000.1")
    wav = recordings.finish(pcap, name)
    assert wav == recordings.path_of(name) and has_tone(read_wav(wav), 700)
    assert not any(p.is_file() for p in spool.rglob("*"))
    with pytest.raises(ValueError):
        recordings.finish(pcap, "../x.wav")
    broken = spool / "pcaps" / f"{stem}.pcap"
    broken.write_bytes(b"garbage")
    with pytest.raises(RecordingError):
        recordings.finish(broken, "exten-1-2-3-4-5.wav")
    assert broken.exists() and recordings.path_of("exten-1-2-3-4-5.wav") is None


def test_pcaps_for_a_call(tmp_path: Path) -> None:
    pcaps = tmp_path / "spool" / "pcaps"
    pcaps.mkdir(parents=True)
    names = ["abc-4645113cd557f57d.pcap", "abc-0000000000000001.pcap",
             "abc-123%40host-4645113cd557f57d.pcap", "abc-xyz.pcap", "abcd-4645113cd557f57d.pcap"]
    for i, name in enumerate(names):
        (pcaps / name).write_bytes(b"")
        os.utime(pcaps / name, (T0 + i, T0 + i))
    recordings = Recordings(tmp_path / "rec", tmp_path / "spool")
    assert [p.name for p in recordings.pcaps_for("abc")] == names[:2]
    assert [p.name for p in recordings.pcaps_for("abc-123@host")] == [names[2]]
    assert recordings.pcaps_for("nobody") == []
    assert Recordings(tmp_path / "rec").pcaps_for("abc") == []


def test_prune(tmp_path: Path) -> None:
    now = T0
    recordings = Recordings(tmp_path)
    ages = {"exten-1-2-20231101-000000-1.wav": 40, "exten-1-2-20231201-000000-2.wav": 8,
            "exten-1-2-20231208-000000-3.wav": 6, "notes.txt": 400,
            ".exten-1.wav.abc.tmp": 2, ".exten-2.wav.abc.tmp": 0.5}
    for name, days in ages.items():
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (now - days * 86400, now - days * 86400))
    assert recordings.prune(0, now) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        n for n in ages if n != ".exten-1.wav.abc.tmp")
    assert recordings.prune(7, now) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".exten-2.wav.abc.tmp", "exten-1-2-20231208-000000-3.wav", "notes.txt"]
    assert Recordings(tmp_path / "absent").prune(7) == 0
