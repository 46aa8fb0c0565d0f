"""ippbx.media against the real rtpengine (Debian `rtpengine-daemon` 10.5): the engine
process and its supervision, the ng client, media through the engine, DTMF events.

Phones are plain UDP sockets on loopback sending hand-made RTP; each test gets its own
ng port and a small RTP port range of its own (`media_ports`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import signal
import socket
import struct
import time
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sipp_harness import free_port_block

from ippbx.media.engine import DtmfEvent, DtmfListener, MediaEngine
from ippbx.media.rtpengine import REPEAT_FOREVER, MediaError, NgClient

# (`make test` installs Debian's rtpengine-daemon: without it these fail, never skip)

RANGE = 24  # RTP ports per engine


def media_ports() -> tuple[int, int]:
    """A small port range of our own, none of it bound now."""
    low = free_port_block(RANGE)
    return low, low + RANGE - 1


def sdp(host: str, port: int, session: str = "phone") -> bytes:
    return (f"v=0\r\no={session} 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            f"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
            ).encode()


ICE_SDP = (b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\n"
           b"c=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\n"
           b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
           b"a=rtpmap:101 telephone-event/8000\r\na=ice-ufrag:abcd\r\n"
           b"a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
           b"a=candidate:1 1 UDP 2130706431 192.0.2.10 49170 typ host\r\na=sendrecv\r\n")


def media_address(body: bytes) -> tuple[str, int]:
    text = body.decode()
    conn = re.search(r"^c=IN IP4 (\S+)\r$", text, re.M)
    media = re.search(r"^m=audio (\d+) ", text, re.M)
    assert conn and media, text
    return conn.group(1), int(media.group(1))


class Phone:
    """A UDP socket playing a phone's RTP side."""

    def __init__(self, ssrc: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.ssrc = ssrc
        self.seq = 0
        self.to: tuple[str, int] | None = None

    def rtp(self, payload_type: int = 0, payload: bytes = b"\xff" * 160,
            marker: bool = False, timestamp: int | None = None) -> None:
        assert self.to is not None
        self.seq += 1
        ts = self.seq * 160 if timestamp is None else timestamp
        header = struct.pack("!BBHII", 0x80, payload_type | (0x80 if marker else 0),
                             self.seq & 0xFFFF, ts & 0xFFFFFFFF, self.ssrc)
        self.sock.sendto(header + payload, self.to)

    def drain(self) -> list[bytes]:
        packets = []
        while True:
            try:
                packets.append(self.sock.recv(4096))
            except BlockingIOError:
                return packets

    def close(self) -> None:
        self.sock.close()


async def talk(a: Phone, b: Phone, packets: int) -> tuple[int, int]:
    """Both phones send `packets` packets 20 ms apart; (packets A got, packets B got),
    counting what arrives up to 0.3 s after the last."""
    got_a = got_b = 0
    for _ in range(packets):
        a.rtp()
        b.rtp()
        await asyncio.sleep(0.02)
        got_a += len(a.drain())
        got_b += len(b.drain())
    await asyncio.sleep(0.3)
    return got_a + len(a.drain()), got_b + len(b.drain())


async def listen(phone: Phone, seconds: float) -> int:
    count = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await asyncio.sleep(0.02)
        count += len(phone.drain())
    return count


async def until(predicate: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


def pid_gone(pid: int) -> bool:
    """No process `pid`, not even a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


class Events:
    def __init__(self) -> None:
        self.dtmf: list[DtmfEvent] = []
        self.restarts: list[list[str]] = []


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
async def engine(tmp_path: Path, events: Events) -> AsyncIterator[MediaEngine]:
    low, high = media_ports()
    media = MediaEngine(port_min=low, port_max=high, recording_dir=tmp_path / "recordings",
                        on_dtmf=events.dtmf.append, on_restart=events.restarts.append)
    await media.start()
    try:
        yield media
    finally:
        await media.stop()


def client_of(media: MediaEngine) -> NgClient:
    assert media.client is not None
    return media.client


async def call(client: NgClient, call_id: str, a: Phone, b: Phone,
               a_host: str = "127.0.0.1") -> None:
    """An anchored call from A to B; points each phone at its media port."""
    offer = await client.offer(call_id, "A", sdp(a_host, a.port))
    b.to = media_address(offer)
    answer = await client.answer(call_id, "A", "B", sdp("127.0.0.1", b.port))
    a.to = media_address(answer)


# -- the process ----------------------------------------------------------------------------


async def test_engine_starts_and_answers_ping(engine: MediaEngine) -> None:
    pid = engine.pid
    assert pid is not None and not pid_gone(pid)
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"rtpengine")
    [address] = engine.ng_addresses
    assert address.startswith("127.0.0.1:")
    assert await client_of(engine).ping()
    assert await client_of(engine).list_calls() == []
    # its own config only: no CLI/HTTP ports from /etc/rtpengine/rtpengine.conf
    assert "--config-file=none" in Path(f"/proc/{pid}/cmdline").read_text()


async def test_stop_ends_the_process(tmp_path: Path) -> None:
    low, high = media_ports()
    media = MediaEngine(port_min=low, port_max=high, recording_dir=tmp_path)
    await media.start()
    pid = media.pid
    assert pid is not None
    await media.stop()
    assert pid_gone(pid)  # ended and reaped
    assert media.pid is None and media.client is None
    await media.stop()  # twice is fine


async def test_restart_after_sigkill(engine: MediaEngine, events: Events,
                                     caplog: pytest.LogCaptureFixture) -> None:
    client = client_of(engine)
    a, b = Phone(1), Phone(2)
    try:
        await call(client, "doomed", a, b)
    finally:
        a.close()
        b.close()
    old = engine.pid
    assert old is not None
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="ippbx.media"):
        os.kill(old, signal.SIGKILL)
        assert await until(lambda: bool(events.restarts), 5.0), "on_restart never called"
    assert time.monotonic() - started < 5.0
    assert events.restarts == [["doomed"]]  # the calls it held are reported lost
    assert engine.restarts == 1 and engine.pid not in (None, old)
    assert pid_gone(old)
    assert await client.ping()
    assert await client.list_calls() == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"rtpengine (pid {old}) exited with signal SIGKILL" in w for w in warnings)
    # the new one works
    a, b = Phone(3), Phone(4)
    try:
        await call(client, "after", a, b)
        assert await client.list_calls() == ["after"]
    finally:
        a.close()
        b.close()


async def test_restart_on_another_port_when_its_own_was_taken(engine: MediaEngine,
                                                             events: Events) -> None:
    client = client_of(engine)
    [old_address] = engine.ng_addresses
    old_pid = engine.pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    assert await until(lambda: pid_gone(old_pid), 2.0)
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("127.0.0.1", int(old_address.rsplit(":", 1)[1])))
    try:
        assert await until(lambda: bool(events.restarts), 5.0)
        [new_address] = engine.ng_addresses
        assert new_address != old_address and client.engines == [new_address]
        assert await client.ping()
    finally:
        squatter.close()


async def test_start_fails_clearly_when_rtpengine_exits(tmp_path: Path) -> None:
    script = tmp_path / "fake-rtpengine"
    script.write_text("#!/bin/sh\necho 'CRIT: [core] Fatal error: it broke' >&2\nexit 3\n")
    script.chmod(0o755)
    media = MediaEngine(binary=str(script), recording_dir=tmp_path, start_timeout=5)
    with pytest.raises(MediaError, match="exited with status 3 at start.*it broke"):
        await media.start()
    assert media.pid is None and media.client is None


async def test_start_fails_clearly_when_rtpengine_never_answers(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    script = tmp_path / "mute-rtpengine"
    script.write_text("#!/bin/sh\ntrap '' TERM\nexec sleep 60\n")  # deaf to SIGTERM too
    script.chmod(0o755)
    got: list[DtmfEvent] = []
    media = MediaEngine(binary=str(script), recording_dir=tmp_path, start_timeout=1.0,
                        stop_timeout=0.5, on_dtmf=got.append)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="ippbx.media"), \
            pytest.raises(MediaError, match=r"did not answer ping within 1\.0 s"):
        await media.start()
    assert time.monotonic() - started < 4.0
    assert media.pid is None and media.dtmf is None and media.dtmf_log_dest is None
    proc = media._proc
    assert proc is not None and proc.returncode == -signal.SIGKILL and pid_gone(proc.pid)
    assert any("ignored SIGTERM for 0.5 s; killing it" in r.getMessage()
               for r in caplog.records)


async def test_stderr_goes_to_logging(engine: MediaEngine,
                                      caplog: pytest.LogCaptureFixture) -> None:
    a, b = Phone(1), Phone(2)
    try:
        with caplog.at_level(logging.WARNING, logger="ippbx.media"):
            await client_of(engine).offer("c1", "A", sdp("127.0.0.1", a.port),
                                          flags={"flags": ["no-such-flag"]})
            assert await until(lambda: any("no-such-flag" in r.getMessage()
                                           for r in caplog.records), 3.0)
    finally:
        a.close()
        b.close()
    line = next(r.getMessage() for r in caplog.records if "no-such-flag" in r.getMessage())
    assert line.startswith(f"rtpengine[{engine.pid}]: WARNING")


async def test_external_engines_are_only_pinged(engine: MediaEngine, tmp_path: Path) -> None:
    external = MediaEngine(ng=engine.ng_addresses, start_timeout=2)
    await external.start()
    try:
        assert external.pid is None
        assert await client_of(external).ping()
        offer = await client_of(external).offer("ext", "A", sdp("127.0.0.1", 4000))
        assert media_address(offer)[0] == "127.0.0.1"
        assert await client_of(engine).list_calls() == ["ext"]
    finally:
        await external.stop()
    assert engine.pid is not None and await client_of(engine).ping()  # left running

    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        nobody = MediaEngine(ng=f"127.0.0.1:{silent.getsockname()[1]}", start_timeout=1,
                             timeout=0.2)
        with pytest.raises(MediaError, match="does not answer ping"):
            await nobody.start()
    finally:
        silent.close()


async def test_calls_spread_over_engines_and_stay_there(engine: MediaEngine,
                                                        tmp_path: Path) -> None:
    low, high = media_ports()
    second = MediaEngine(port_min=low, port_max=high, recording_dir=tmp_path / "second")
    await second.start()
    try:
        client = await NgClient.open(engine.ng_addresses + second.ng_addresses)
        try:
            for i in range(4):
                await client.offer(f"call{i}", "A", sdp("127.0.0.1", 4000 + 2 * i))
            assert sorted(await client_of(engine).list_calls()) == ["call0", "call2"]
            assert sorted(await client_of(second).list_calls()) == ["call1", "call3"]
            assert sorted(await client.list_calls()) == ["call0", "call1", "call2", "call3"]
            # later commands of a call go to its engine
            answer = await client.answer("call1", "A", "B", sdp("127.0.0.1", 5000))
            assert low <= media_address(answer)[1] <= high
            await client.delete("call1")
            assert sorted(await client_of(second).list_calls()) == ["call3"]
        finally:
            client.close()
    finally:
        await second.stop()


# -- the ng client --------------------------------------------------------------------------


async def test_offer_answer_rewrite_sdp_to_the_engine(engine: MediaEngine) -> None:
    client = client_of(engine)
    low, high = engine.port_min, engine.port_max
    offer = await client.offer("oa1", "A", ICE_SDP)
    host, port = media_address(offer)
    assert host == "127.0.0.1" and low <= port <= high
    text = offer.decode()
    assert "o=alice 2890844526 2890844526 IN IP4 127.0.0.1\r\n" in text  # replace origin
    assert "192.0.2.10" not in text
    assert "a=ice-" not in text and "a=candidate" not in text  # ICE removed
    answer = await client.answer("oa1", "A", "B", sdp("198.51.100.7", 50000, "bob"))
    host, answer_port = media_address(answer)
    assert host == "127.0.0.1" and low <= answer_port <= high and answer_port != port
    assert "198.51.100.7" not in answer.decode()
    assert await client.list_calls() == ["oa1"]
    # a re-INVITE from the callee that moves its port keeps the engine's ports on both
    # sides (port-latching; without it 10.5.3 gives the caller a new port)
    reoffer = await client.offer("oa1", "B", sdp("198.51.100.7", 50002, "bob"), to_tag="A")
    assert media_address(reoffer)[1] == answer_port
    reanswer = await client.answer("oa1", "B", "A", ICE_SDP)
    assert media_address(reanswer)[1] == port
    await client.delete("oa1")
    assert await client.list_calls() == []
    await client.delete("oa1")  # again: unknown now, still fine
    await client.delete("never-seen", from_tag="X")


async def test_errors_come_back_as_media_error(engine: MediaEngine) -> None:
    client = client_of(engine)
    with pytest.raises(MediaError) as info:
        await client.request("bogus", {})
    assert info.value.reason == "Unrecognized command"
    with pytest.raises(MediaError, match="Unknown call-ID") as info:
        await client.play_media("no-such-call", "A", "/nonexistent.wav")
    with pytest.raises(MediaError):
        await client.answer("no-such-call", "A", "B", b"v=0\r\n")
    with pytest.raises(MediaError) as info:
        await client.offer("bad-sdp", "A", b"this is not SDP")
    assert info.value.reason
    with pytest.raises(ValueError):
        await client.play_media("x", "A", "/x.wav", repeat_times=2**31)


async def test_no_answer_is_a_bounded_media_error() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # drops everything
    silent.bind(("127.0.0.1", 0))
    silent.setblocking(False)
    try:
        client = await NgClient.open(f"127.0.0.1:{silent.getsockname()[1]}")
        try:
            started = time.monotonic()
            with pytest.raises(MediaError, match=r"no answer .* in 3\.5 s \(3 tries\)"):
                await client.request("ping", {})
            elapsed = time.monotonic() - started
            assert 3.4 <= elapsed < 4.5, elapsed
            # it did retransmit, with the same cookie each time
            datagrams = []
            while True:
                try:
                    datagrams.append(silent.recv(4096))
                except BlockingIOError:
                    break
            assert len(datagrams) == 3 and len(set(datagrams)) == 1
            assert await client.ping_engine(client.engines[0], timeout=0.1) is False
        finally:
            client.close()
        with pytest.raises(MediaError, match="client closed"):
            await client.request("ping", {})
    finally:
        silent.close()


async def test_a_garbled_answer_fails_its_request_at_once() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.setblocking(False)
    loop = asyncio.get_running_loop()

    async def garble() -> None:
        data, peer = await loop.sock_recvfrom(server, 4096)
        cookie = data.split(b" ", 1)[0]
        await loop.sock_sendto(server, b"wrong-cookie d6:result4:ponge", peer)
        await loop.sock_sendto(server, cookie + b" d6:result", peer)

    try:
        client = await NgClient.open(f"127.0.0.1:{server.getsockname()[1]}", timeout=2)
        try:
            task = asyncio.create_task(garble())
            started = time.monotonic()
            with pytest.raises(MediaError, match="malformed answer"):
                await client.request("ping", {})
            assert time.monotonic() - started < 1.0
            await task
        finally:
            client.close()
    finally:
        server.close()


# -- media through the engine ---------------------------------------------------------------


async def test_media_flows_and_a_phone_behind_nat_is_reached(engine: MediaEngine) -> None:
    client = client_of(engine)
    a, b = Phone(0xA), Phone(0xB)
    try:
        # A's SDP names a private address nobody can reach (a phone behind NAT); the
        # engine learns where A's packets really come from (symmetric RTP)
        await call(client, "nat", a, b, a_host="10.255.0.99")
        got_a, got_b = await talk(a, b, 40)
        assert got_a >= 36 and got_b >= 36, (got_a, got_b)
        # block media from A: B hears nothing, A still hears B
        await client.block_media("nat", "A")
        await asyncio.sleep(0.1)
        a.drain()
        b.drain()
        got_a, got_b = await talk(a, b, 30)
        assert got_b <= 2 and got_a >= 27, (got_a, got_b)
        await client.unblock_media("nat", "A")
        got_a, got_b = await talk(a, b, 30)
        assert got_b >= 27, got_b
    finally:
        a.close()
        b.close()
        await client.delete("nat")


async def test_dtmf_events_reach_the_listener(engine: MediaEngine, events: Events) -> None:
    client = client_of(engine)
    a, b = Phone(0xA), Phone(0xB)
    try:
        await call(client, "dtmf", a, b)
        await talk(a, b, 10)
        for digit, timestamp in ((5, 16000), (10, 32000), (11, 48000)):
            for i in range(6):  # RFC 4733: start, continuation, three end packets
                end = 0x80 if i >= 3 else 0
                a.rtp(101, struct.pack("!BBH", digit, end | 10, 160 * (i + 1)),
                      marker=(i == 0), timestamp=timestamp)
                await asyncio.sleep(0.02)
        assert await until(lambda: len(events.dtmf) >= 3, 3.0), events.dtmf
    finally:
        a.close()
        b.close()
        await client.delete("dtmf")
    assert [e.digit for e in events.dtmf] == ["5", "*", "#"]
    first = events.dtmf[0]
    assert (first.call_id, first.source_tag, first.tags) == ("dtmf", "A", ("A", "B"))
    assert first.source_ip == "127.0.0.1" and first.duration > 0
    assert engine.dtmf is not None and engine.dtmf.events == 3 and engine.dtmf.ignored == 0


async def test_dtmf_listener_ignores_and_counts_junk() -> None:
    got: list[DtmfEvent] = []
    listener = DtmfListener(got.append)
    host, port = await listener.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for junk in (b"junk", b"{}", b'{"type":"DTMF","callid":"c","event":"x"}'):
                sock.sendto(junk, (host, port))
            sock.sendto(b'{"type":"DTMF","callid":"c","event":11,"source_tag":"A"}',
                        (host, port))
        assert await until(lambda: bool(got), 2.0)
    finally:
        listener.close()
    assert got[0].digit == "#" and listener.ignored == 3 and listener.events == 1


def write_tone(path: Path, seconds: float) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        samples = int(8000 * seconds)
        out.writeframes(b"".join(
            struct.pack("<h", int(6000 * math.sin(2 * math.pi * 440 * i / 8000)))
            for i in range(samples)))


async def test_play_media_once_in_a_loop_and_stopped(engine: MediaEngine,
                                                     tmp_path: Path) -> None:
    client = client_of(engine)
    tone = tmp_path / "tone.wav"
    write_tone(tone, 0.4)
    a, b = Phone(0xA), Phone(0xB)
    try:
        await call(client, "moh", a, b)
        # once: 0.4 s = 20 packets to A (the party named by from_tag), none to B
        assert await client.play_media("moh", "A", str(tone)) == 400
        heard_a, heard_b = await listen(a, 1.0), await listen(b, 0.05)
        assert 15 <= heard_a <= 25 and heard_b == 0, (heard_a, heard_b)
        # repeat_times=3: three times as long
        await client.play_media("moh", "A", str(tone), repeat_times=3)
        assert 50 <= await listen(a, 1.8) <= 70
        # "until stopped": still playing after many plays' worth, silent once stopped
        await client.play_media("moh", "A", str(tone), repeat_times=REPEAT_FOREVER)
        assert await listen(a, 1.5) >= 60
        await client.stop_media("moh", "A")
        await asyncio.sleep(0.3)
        a.drain()
        assert await listen(a, 0.6) <= 2
    finally:
        a.close()
        b.close()
        await client.delete("moh")


async def test_recording_and_subscription(engine: MediaEngine) -> None:
    client = client_of(engine)
    a, b, spy = Phone(0xA), Phone(0xB), Phone(0xC)
    try:
        await call(client, "rec", a, b)
        await client.start_recording("rec")
        await talk(a, b, 20)
        await client.stop_recording("rec")
        pcaps = list((engine.recording_dir / "pcaps").glob("rec-*.pcap"))
        assert pcaps and pcaps[0].stat().st_size > 0
        # a listener subscribes to what A sends
        sub = await client.subscribe_request("rec", "A")
        assert b"a=sendonly" in sub["sdp"] and sub["from-tags"] == ["A"] and sub["to-tag"]
        spy_port = media_address(sub["sdp"])
        await client.subscribe_answer("rec", sub["to-tag"],
                                      sdp("127.0.0.1", spy.port).replace(b"sendrecv",
                                                                         b"recvonly"))
        assert spy_port[0] == "127.0.0.1"
        await talk(a, b, 30)
        assert len(spy.drain()) >= 27
        await client.unsubscribe("rec", sub["to-tag"])
        query: dict[str, Any] = await client.query("rec")
        assert set(query["tags"]) >= {"A", "B"}
    finally:
        for phone in (a, b, spy):
            phone.close()
        await client.delete("rec")


def test_runs_on_uvloop(tmp_path: Path) -> None:
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        low, high = media_ports()
        restarted: list[list[str]] = []
        media = MediaEngine(port_min=low, port_max=high, recording_dir=tmp_path,
                            on_restart=restarted.append)
        await media.start()
        try:
            assert await client_of(media).ping()
            pid = media.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            assert await until(lambda: bool(restarted), 5.0)
            assert await client_of(media).ping()
        finally:
            await media.stop()
        assert pid_gone(pid)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(scenario(), 30))
