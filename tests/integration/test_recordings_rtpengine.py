"""A call recorded by a real rtpengine (`--recording-method=pcap`), then converted: the
pcap's link type and file names are the ones ippbx.media.recordings expects, and the WAV
holds both parties.

rtpengine is driven here over its ng protocol (bencode over UDP) by a helper small
enough to live in this file: `offer` with `"record call": "yes"`, `answer`, `delete`.
"""

from __future__ import annotations

import asyncio
import random
import re
import secrets
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rtp_audio import RtpEndpoint, parse_media, read_wav, sdp_offer, tone_power_ratio
from sipp_harness import free_port

from ippbx.media.recordings import (
    Recordings,
    metadata_files,
    pcap_to_wav,
    recording_name,
    rtpengine_stem,
)

# (`make test` installs Debian's rtpengine-daemon: without it this fails, never skips)
RTPENGINE = shutil.which("rtpengine") or "/usr/bin/rtpengine"


# -- ng protocol: bencode over UDP ----------------------------------------------------------


def bencode(value: Any) -> bytes:
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        return b"d" + b"".join(bencode(k) + bencode(value[k]) for k in sorted(value)) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes, at: int = 0) -> tuple[Any, int]:
    kind = data[at : at + 1]
    if kind == b"i":
        end = data.index(b"e", at)
        return int(data[at + 1 : end]), end + 1
    if kind in (b"l", b"d"):
        items, at = [], at + 1
        while data[at : at + 1] != b"e":
            item, at = bdecode(data, at)
            items.append(item)
        if kind == b"l":
            return items, at + 1
        return {k.decode(): v for k, v in zip(items[::2], items[1::2], strict=True)}, at + 1
    colon = data.index(b":", at)
    start = colon + 1
    end = start + int(data[at:colon])
    return data[start:end], end


def ng(port: int, command: dict[str, Any], timeout: float = 1.0) -> dict[str, Any]:
    """One ng command to rtpengine on 127.0.0.1:`port` and its (decoded) answer."""
    cookie = secrets.token_hex(6).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(cookie + b" " + bencode(command), ("127.0.0.1", port))
        while True:
            reply = sock.recv(65535)
            got, _, body = reply.partition(b" ")
            if got == cookie:
                answer, _ = bdecode(body)
                assert isinstance(answer, dict)
                return answer


def test_bencode_round_trip() -> None:
    value = {"command": "offer", "flags": ["a", "b"], "n": -3, "sdp": b"v=0\r\n"}
    decoded, end = bdecode(bencode(value))
    assert end == len(bencode(value))
    assert decoded == {"command": b"offer", "flags": [b"a", b"b"], "n": -3, "sdp": b"v=0\r\n"}


# -- rtpengine ------------------------------------------------------------------------------


def free_udp_block(size: int) -> int:
    """The first of `size` consecutive UDP ports free on 127.0.0.1 now."""
    for _ in range(200):
        base = random.randrange(20000, 32000 - size, 2)
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + size):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free block of UDP ports")


@pytest.fixture
def rtpengine(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A recording rtpengine on loopback: (its ng port, its recording directory)."""
    spool = tmp_path / "spool"
    spool.mkdir()
    port = free_port()
    low = free_udp_block(40)
    log = (tmp_path / "rtpengine.log").open("wb")
    proc = subprocess.Popen(
        [RTPENGINE, "--table=-1", "--interface=127.0.0.1", f"--listen-ng=127.0.0.1:{port}",
         "--foreground", "--log-stderr", f"--port-min={low}", f"--port-max={low + 39}",
         f"--recording-dir={spool}", "--recording-method=pcap"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        for _ in range(50):
            assert proc.poll() is None, (tmp_path / "rtpengine.log").read_text()
            try:
                if ng(port, {"command": "ping"}, timeout=0.1).get("result") == b"pong":
                    break
            except (TimeoutError, ConnectionRefusedError):
                continue
        else:
            pytest.fail("rtpengine did not answer ping")
        yield port, spool
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def test_a_recorded_call_becomes_a_wav_with_both_parties(
    rtpengine: tuple[int, Path], tmp_path: Path
) -> None:
    port, spool = rtpengine
    caller, callee = RtpEndpoint(), RtpEndpoint()
    await caller.start()
    await callee.start()
    call_id = f"rec-{secrets.token_hex(4)}@127.0.0.1"
    try:
        offer = ng(port, {"command": "offer", "call-id": call_id, "from-tag": "caller",
                          "sdp": sdp_offer(*caller.address, 1), "record call": "yes"})
        assert offer["result"] == b"ok", offer
        to_callee = parse_media(offer["sdp"])
        answer = ng(port, {"command": "answer", "call-id": call_id, "from-tag": "caller",
                           "to-tag": "callee", "sdp": sdp_offer(*callee.address, 1)})
        assert answer["result"] == b"ok", answer
        to_caller = parse_media(answer["sdp"])
        callee.set_remote(to_callee.ip, to_callee.port)
        caller.set_remote(to_caller.ip, to_caller.port)
        caller.play_tone(700)
        callee.play_tone(1300)
        await asyncio.sleep(1.0)
        assert tone_power_ratio(await callee.wait_audio(0.2), 700) > 0.8  # through rtpengine
        deleted = ng(port, {"command": "delete", "call-id": call_id, "delete delay": 0})
        assert deleted["result"] == b"ok", deleted
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
