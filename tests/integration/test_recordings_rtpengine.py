"""A call recorded by a real rtpengine (`--recording-method=pcap`), then converted: the
pcap's link type and file names are the ones ippbx.media.recordings expects, and the WAV
holds both parties.

rtpengine is ippbx's own (`MediaEngine`), driven by its ng client: `offer` with
`"record call": "yes"`, `answer`, `delete`.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from rtp_audio import RtpEndpoint, parse_media, read_wav, sdp_offer, tone_power_ratio
from sipp_harness import free_port_block

from ippbx.media.engine import MediaEngine
from ippbx.media.recordings import (
    Recordings,
    metadata_files,
    pcap_to_wav,
    recording_name,
    rtpengine_stem,
)
from ippbx.media.rtpengine import NgClient


@pytest.fixture
async def rtpengine(tmp_path: Path) -> AsyncIterator[tuple[NgClient, Path]]:
    """ippbx's own recording rtpengine on loopback: (its ng client, its spool directory)."""
    spool = tmp_path / "spool"
    low = free_port_block(40)
    engine = MediaEngine(port_min=low, port_max=low + 39, recording_dir=spool)
    await engine.start()
    try:
        assert engine.client is not None
        yield engine.client, spool
    finally:
        await engine.stop()


async def test_a_recorded_call_becomes_a_wav_with_both_parties(
    rtpengine: tuple[NgClient, Path], tmp_path: Path
) -> None:
    client, spool = rtpengine
    caller, callee = RtpEndpoint(), RtpEndpoint()
    await caller.start()
    await callee.start()
    call_id = f"rec-{secrets.token_hex(4)}@127.0.0.1"
    try:
        offer = await client.offer(call_id, "caller", sdp_offer(*caller.address, 1),
                                   flags={"record call": "yes"})
        to_callee = parse_media(offer)
        answer = await client.answer(call_id, "caller", "callee",
                                     sdp_offer(*callee.address, 1))
        to_caller = parse_media(answer)
        callee.set_remote(to_callee.ip, to_callee.port)
        caller.set_remote(to_caller.ip, to_caller.port)
        caller.play_tone(700)
        callee.play_tone(1300)
        await asyncio.sleep(1.0)
        assert tone_power_ratio(await callee.wait_audio(0.2), 700) > 0.8  # through rtpengine
        await client.delete(call_id)  # (at once: no delete delay)
    finally:
        await caller.stop()
        await callee.stop()

    recordings = Recordings(tmp_path / "recordings", spool)
    pcaps = recordings.pcaps_for(call_id)
    assert len(pcaps) == 1, sorted(p.name for p in spool.rglob("*"))
    pcap = pcaps[0]
    assert re.fullmatch(re.escape(rtpengine_stem(call_id)) + r"-[0-9a-f]{16}\.pcap", pcap.name)
    assert "%40" in pcap.name  # the call-id's @, percent-encoded
    for _ in range(100):  # the metadata moves to metadata/ when the call is gone
        if recordings.is_closed(pcap):
            break
        await asyncio.sleep(0.05)
    assert recordings.is_closed(pcap)
    magic, _, _, _, _, _, link = struct.unpack("<IHHiIII", pcap.read_bytes()[:24])
    assert (magic, link) == (0xA1B2C3D4, 101)  # little-endian, µs, raw IP

    result = pcap_to_wav(pcap, tmp_path / "check.wav")
    assert result.streams == 2 and result.skipped == 0
    assert 0.8 <= result.seconds <= 1.6

    name = recording_name("2101", "2103", 1709288100, "1709288100.601")
    wav = recordings.finish(pcap, name)
    assert wav == recordings.path_of(name)
    assert not pcap.exists() and not any(p.exists() for p in metadata_files(pcap))
    samples = read_wav(wav)
    middle = samples[len(samples) // 5 : len(samples) * 4 // 5]
    low, high = tone_power_ratio(middle, 700), tone_power_ratio(middle, 1300)
    assert low > 0.3 and high > 0.3 and low + high > 0.9, (low, high)
