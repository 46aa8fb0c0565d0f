"""ippbx.media.janus against the real Janus (Debian `janus` 1.1.2): the configuration it
is given, the process and its supervision, the REST client, and audio mixed by the
AudioBridge between plain-RTP parties on loopback.

(`make test` installs Debian's janus: without it these fail, never skip.)
Each test gets a small RTP port range of its own (`rtp_ports`) and a janus of its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from rtp_audio import RATE, RtpEndpoint, Samples, is_silent, tone_power_ratio, ulaw_decode
from sipp_harness import free_port, free_port_block

from ippbx.media.janus import (
    AUDIOBRIDGE_SO,
    HTTP_SO,
    JanusClient,
    JanusEngine,
    JanusError,
    Participant,
    RtpAddress,
    find_janus,
    find_janus_libdir,
    janus_config,
    link_modules,
)

pytestmark = pytest.mark.timeout(30)

RANGE = 40  # RTP ports per janus
TONES = (500.0, 900.0, 1400.0)
HEARD = 0.2  # a tone that is in the mix has at least this share of the power
ABSENT = 0.01  # one that is not, at most this
ALONE = 0.7  # the only tone in the mix has at least this share


def rtp_ports() -> tuple[int, int]:
    """A small port range of our own, none of it bound now."""
    low = free_port_block(RANGE)
    return low, low + RANGE - 1


def pid_gone(pid: int) -> bool:
    """No process `pid`, not even a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def janus_processes(marker: str) -> list[int]:
    """The pids of processes whose command line mentions `marker` (our config folder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            pids.append(int(entry.name))
    return pids


def client_of(engine: JanusEngine) -> JanusClient:
    assert engine.client is not None
    return engine.client


async def listed_ids(client: JanusClient, room: int, want: set[int]) -> set[int]:
    """The ids janus lists in `room`, asked again (2 s at most) until they are `want`:
    janus answers a detach before its plugin has taken the party out of the room, so a
    listing right after a leave may still show it for a moment."""
    deadline = time.monotonic() + 2.0
    while True:
        ids = {p["id"] for p in await client.participants(room)}
        if ids == want or time.monotonic() > deadline:
            return ids
        await asyncio.sleep(0.02)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[JanusEngine]:
    low, high = rtp_ports()
    janus = JanusEngine(rtp_port_min=low, rtp_port_max=high, workdir=tmp_path / "janus")
    await janus.start()
    try:
        yield janus
    finally:
        await janus.stop()


@pytest.fixture
async def endpoints() -> AsyncIterator[list[RtpEndpoint]]:
    eps = [await RtpEndpoint().start() for _ in TONES]
    try:
        yield eps
    finally:
        for ep in eps:
            await ep.stop()


async def join_all(client: JanusClient, room: int,
                   eps: list[RtpEndpoint]) -> list[Participant]:
    """Join each endpoint to `room`, point it at janus and play its tone."""
    parties = []
    for n, (ep, freq) in enumerate(zip(eps, TONES, strict=False)):
        party = await client.join(room, RtpAddress(*ep.address), display=f"party{n}")
        ep.set_remote(party.janus_rtp.ip, party.janus_rtp.port)
        ep.play_tone(freq)
        parties.append(party)
    return parties


async def listen(eps: list[RtpEndpoint], parties: list[Participant],
                 seconds: float = 1.0) -> list[Samples]:
    """What each endpoint receives from janus (its party's janus address: anything else,
    e.g. strays from other tests' media reaching a reused ephemeral port, is ignored)
    over the next `seconds`; at least 80 % of that must arrive."""
    since = eps[0].now()
    await asyncio.sleep(seconds)
    heard = [from_janus(ep, party, since) for ep, party in zip(eps, parties, strict=True)]
    for n, samples in enumerate(heard):
        assert samples.size >= 0.8 * seconds * RATE, (n, samples.size)
    return heard


def from_janus(ep: RtpEndpoint, party: Participant, since: float) -> Samples:
    source = (party.janus_rtp.ip, party.janus_rtp.port)
    return ulaw_decode(b"".join(r.payload for r in ep.packets_since(since)
                                if r.source == source))


def ratios(samples: Samples) -> list[float]:
    return [round(tone_power_ratio(samples, freq), 3) for freq in TONES]


# -- the configuration (no janus needed) ------------------------------------------------------


def test_config_files(tmp_path: Path) -> None:
    files = janus_config(confdir=tmp_path, http_port=18123, interface="192.0.2.7",
                         rtp_port_min=40000, rtp_port_max=44999, debug_level=3)
    assert set(files) == {"janus.jcfg", "janus.plugin.audiobridge.jcfg",
                          "janus.transport.http.jcfg"}
    core = files["janus.jcfg"]
    for line in (f'plugins_folder = "{tmp_path}/plugins"',
                 f'transports_folder = "{tmp_path}/transports"',
                 f'configs_folder = "{tmp_path}"', "session_timeout = 0", "debug_level = 3",
                 "debug_colors = false", 'interface = "192.0.2.7"',
                 'rtp_port_range = "40000-44999"', "broadcast = false",
                 "exit_on_dl_error = true"):
        assert line in core, line
    assert "admin_secret" not in core and "token_auth" not in core
    bridge = files["janus.plugin.audiobridge.jcfg"]
    assert 'local_ip = "192.0.2.7"' in bridge and 'rtp_port_range = "40000-44999"' in bridge
    http = files["janus.transport.http.jcfg"]
    for line in ("port = 18123", 'ip = "127.0.0.1"', "http = true", "https = false",
                 "admin_http = false", "admin_https = false", 'base_path = "/janus"'):
        assert line in http, line
    assert "8088" not in http


def test_config_quotes_strings(tmp_path: Path) -> None:
    odd = tmp_path / 'a "b" \\c'
    core = janus_config(confdir=odd, http_port=1, interface="127.0.0.1", rtp_port_min=2,
                        rtp_port_max=3)["janus.jcfg"]
    assert f'configs_folder = "{tmp_path}/a \\"b\\" \\\\c"' in core


def test_link_modules_only_audiobridge_and_http(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    for sub, names in {"plugins": [AUDIOBRIDGE_SO, "libjanus_sip.so", "libjanus_lua.so"],
                       "transports": [HTTP_SO, "libjanus_websockets.so"],
                       "loggers": ["libjanus_jsonlog.so"], "events": ["libjanus_wsevh.so"]
                       }.items():
        (lib / sub).mkdir(parents=True)
        for name in names:
            (lib / sub / name).write_bytes(b"")
    conf = tmp_path / "conf"
    (conf / "plugins").mkdir(parents=True)
    (conf / "plugins" / "libjanus_sip.so").write_bytes(b"")  # left from an older layout
    for _ in range(2):  # a second run (a restart) finds its own links
        link_modules(conf, lib)
        assert [p.name for p in (conf / "plugins").iterdir()] == [AUDIOBRIDGE_SO]
        assert (conf / "plugins" / AUDIOBRIDGE_SO).resolve() == lib / "plugins" / AUDIOBRIDGE_SO
        assert [p.name for p in (conf / "transports").iterdir()] == [HTTP_SO]
        assert list((conf / "loggers").iterdir()) == []
        assert list((conf / "events").iterdir()) == []


def test_janus_is_installed() -> None:
    binary = find_janus()
    assert binary, "janus is not installed (Debian package janus; `make debs`)"
    libdir = find_janus_libdir(binary)
    assert libdir is not None and (libdir / "plugins" / AUDIOBRIDGE_SO).is_file()


def test_bad_port_range() -> None:
    with pytest.raises(ValueError):
        JanusEngine(rtp_port_min=5000, rtp_port_max=5000)


# -- the process ----------------------------------------------------------------------------


async def test_engine_starts_with_only_the_audiobridge(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ippbx.media.janus")
    low, high = rtp_ports()
    janus = JanusEngine(rtp_port_min=low, rtp_port_max=high, workdir=tmp_path / "j")
    began = time.monotonic()
    await janus.start()
    started = time.monotonic() - began
    try:
        pid = janus.pid
        assert pid is not None and janus.ready and started < 5
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[0].endswith(b"janus")
        assert janus.url.startswith("http://127.0.0.1:") and ":8088/" not in janus.url
        client = client_of(janus)
        assert client.alive and await client.ping()
        async with httpx.AsyncClient(trust_env=False) as http:
            info = (await http.get(f"{janus.url}/info")).json()
        assert list(info["plugins"]) == ["janus.plugin.audiobridge"]
        assert list(info["transports"]) == ["janus.transport.http"]
        assert info["session-timeout"] == 0 and info["local-ip"] == "127.0.0.1"
        assert info["events"] == {} and info["loggers"] == {}
        assert await client.rooms() == []
    finally:
        await janus.stop()
    assert pid_gone(pid)
    assert janus.pid is None and janus.client is None and not janus.ready
    assert janus_processes(str(tmp_path / "j")) == []
    await janus.stop()  # twice is fine
    # its output went to logging, none of it as a warning
    assert any(r.getMessage().startswith(f"janus[{pid}]: ") for r in caplog.records)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_engine_without_workdir_uses_a_temporary_one() -> None:
    low, high = rtp_ports()
    janus = JanusEngine(rtp_port_min=low, rtp_port_max=high)
    await janus.start()
    confdir = janus._confdir
    assert confdir is not None and (confdir / "janus.jcfg").is_file()
    await janus.stop()
    assert not confdir.exists()


async def test_start_fails_when_janus_exits(tmp_path: Path) -> None:
    janus = JanusEngine(binary="/bin/false", workdir=tmp_path, start_timeout=5)
    began = time.monotonic()
    with pytest.raises(JanusError, match="exited with status 1"):
        await janus.start()
    assert time.monotonic() - began < 3
    assert janus.pid is None and janus.client is None
    missing = JanusEngine(binary=str(tmp_path / "no-janus"), workdir=tmp_path)
    with pytest.raises(JanusError):
        await missing.start()


async def test_restart_after_sigkill(engine: JanusEngine, endpoints: list[RtpEndpoint],
                                     caplog: pytest.LogCaptureFixture) -> None:
    restarted = asyncio.Event()
    seen: list[JanusClient | None] = []

    def on_restart() -> None:
        seen.append(engine.client)
        restarted.set()

    engine.on_restart = on_restart
    old_pid, old_client, url = engine.pid, client_of(engine), engine.url
    assert old_pid is not None
    await old_client.create_room(7)
    party = await old_client.join(7, RtpAddress(*endpoints[0].address))
    began = time.monotonic()
    os.kill(old_pid, signal.SIGKILL)
    await asyncio.wait_for(restarted.wait(), 10)
    took = time.monotonic() - began
    assert took < 5
    assert engine.restarts == 1 and engine.ready
    new_pid = engine.pid
    assert new_pid is not None and new_pid != old_pid and pid_gone(old_pid)
    assert engine.url == url  # the same port again
    client = client_of(engine)
    assert seen == [client] and client is not old_client and client.alive
    assert any(f"janus (pid {old_pid}) exited with signal SIGKILL" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)
    # the old session is closed: its requests fail, leave() of its party is a no-op
    with pytest.raises(JanusError):
        await old_client.rooms()
    await old_client.leave(party)
    # the rooms went with the old janus; new ones work, audio included
    assert await client.rooms() == []
    await client.create_room(7)
    a, b = endpoints[0], endpoints[1]
    pa = await client.join(7, RtpAddress(*a.address))
    pb = await client.join(7, RtpAddress(*b.address))
    a.set_remote(pa.janus_rtp.ip, pa.janus_rtp.port)
    b.set_remote(pb.janus_rtp.ip, pb.janus_rtp.port)
    a.play_tone(TONES[0])
    b.play_tone(TONES[1])
    heard_a, heard_b = await listen([a, b], [pa, pb])
    assert tone_power_ratio(heard_a, TONES[1]) > ALONE, ratios(heard_a)
    assert tone_power_ratio(heard_b, TONES[0]) > ALONE, ratios(heard_b)


async def test_external_janus_is_pinged_and_rebuilt_after_its_restart(
        engine: JanusEngine) -> None:
    restarted = asyncio.Event()
    external = JanusEngine(url=engine.url, on_restart=restarted.set, health_interval=0.2)
    await external.start()
    try:
        assert external.ready and external.pid is None and external.url == engine.url
        first = client_of(external)
        await first.create_room(55)
        assert 55 in await client_of(engine).rooms()  # one janus, two sessions
        await asyncio.sleep(0.5)  # health checks that find it well change nothing
        assert not restarted.is_set() and external.client is first
        pid = engine.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # our engine restarts it on the same port
        await asyncio.wait_for(restarted.wait(), 10)
        assert external.restarts == 1 and external.ready
        second = client_of(external)
        assert second is not first and second.alive
        assert await second.rooms() == []
        await second.create_room(56)
    finally:
        await external.stop()
    assert engine.pid is not None  # left running; its own session is rebuilt in a moment
    async with asyncio.timeout(10):  # (its health check finds the restart by itself)
        while not await client_of(engine).ping(timeout=1.0):
            await asyncio.sleep(0.05)


async def test_external_janus_that_does_not_answer() -> None:
    janus = JanusEngine(url=f"http://127.0.0.1:{free_port()}/janus", start_timeout=0.5)
    with pytest.raises(JanusError, match="does not answer"):
        await janus.start()
    assert janus.client is None


# -- rooms and parties ----------------------------------------------------------------------


async def test_three_parties_hear_each_other(engine: JanusEngine,
                                             endpoints: list[RtpEndpoint]) -> None:
    client = client_of(engine)
    await client.create_room(1001, description="conference 1001")
    await client.create_room(1001)  # exists already: fine
    assert await client.rooms() == [1001]
    began = time.monotonic()
    parties = await join_all(client, 1001, endpoints)
    join_time = (time.monotonic() - began) / len(parties)
    assert join_time < 0.5
    low, high = engine.rtp_port_min, engine.rtp_port_max
    ports = [p.janus_rtp.port for p in parties]
    assert len(set(ports)) == 3 and all(low <= port <= high for port in ports), ports
    assert all(p.janus_rtp.ip == "127.0.0.1" and p.janus_rtp.payload_type == 0
               for p in parties)
    assert len({p.id for p in parties}) == 3 and len({p.handle for p in parties}) == 3
    listed = await client.participants(1001)
    assert {p["id"] for p in listed} == {p.id for p in parties}
    assert {p["display"] for p in listed} == {"party0", "party1", "party2"}

    # each hears the other two, not itself
    await asyncio.sleep(0.3)
    heard = await listen(endpoints, parties)
    for n, samples in enumerate(heard):
        shares = ratios(samples)
        for m, share in enumerate(shares):
            if m == n:
                assert share < ABSENT, (n, shares)
            else:
                assert share > HEARD, (n, shares)

    # muted for the room: the others stop hearing party 0
    await client.mute(1001, parties[0].id, True)
    await client.mute(1001, parties[0].id, True)  # again: fine
    muted = {p["id"]: p["muted"] for p in await client.participants(1001)}
    assert muted == {parties[0].id: True, parties[1].id: False, parties[2].id: False}
    await asyncio.sleep(0.3)
    heard = await listen(endpoints, parties)
    assert ratios(heard[0])[1] > HEARD and ratios(heard[0])[2] > HEARD
    for n in (1, 2):
        shares = ratios(heard[n])
        assert shares[0] < ABSENT and shares[3 - n] > ALONE, (n, shares)
    await client.mute(1001, parties[0].id, False)
    await asyncio.sleep(0.3)
    heard = await listen(endpoints[1:], parties[1:])
    assert all(ratios(samples)[0] > HEARD for samples in heard)

    # party 2 leaves: gone from the room, from the mix, and gets nothing more
    await client.leave(parties[2])
    await client.leave(parties[2])  # twice is fine
    want = {parties[0].id, parties[1].id}
    assert await listed_ids(client, 1001, want) == want
    assert parties[2].handle not in client.handles
    await asyncio.sleep(0.3)
    gone = endpoints[2].now()
    heard = await listen(endpoints[:2], parties[:2])
    assert ratios(heard[0])[2] < ABSENT and ratios(heard[0])[1] > ALONE
    assert ratios(heard[1])[2] < ABSENT and ratios(heard[1])[0] > ALONE
    assert from_janus(endpoints[2], parties[2], gone).size == 0

    # destroyed: no room, our handles detached, no more audio
    await client.destroy_room(1001)
    await client.destroy_room(1001)  # unknown: fine
    assert await client.rooms() == []
    assert client.handles == {}
    await asyncio.sleep(0.3)
    quiet = endpoints[0].now()
    await asyncio.sleep(0.5)
    assert from_janus(endpoints[0], parties[0], quiet).size == 0
    await client.leave(parties[0])  # after the room: fine


async def test_a_silent_party_gets_the_mix_once_it_sends(
        engine: JanusEngine, endpoints: list[RtpEndpoint]) -> None:
    client = client_of(engine)
    await client.create_room(3)
    a, b = endpoints[0], endpoints[1]
    pa = await client.join(3, RtpAddress(*a.address))
    pb = await client.join(3, RtpAddress(*b.address))
    a.set_remote(pa.janus_rtp.ip, pa.janus_rtp.port)
    b.set_remote(pb.janus_rtp.ip, pb.janus_rtp.port)
    b.play_tone(TONES[1])
    await asyncio.sleep(0.6)
    assert from_janus(a, pa, 0).size == 0  # nothing before janus heard from the party
    a.play_silence()
    await asyncio.sleep(0.3)
    heard_a, heard_b = await listen([a, b], [pa, pb], 0.5)
    assert tone_power_ratio(heard_a, TONES[1]) > ALONE
    assert is_silent(heard_b)  # a's silence


async def test_request_errors(engine: JanusEngine, endpoints: list[RtpEndpoint]) -> None:
    client = client_of(engine)
    with pytest.raises(JanusError) as info:
        await client.join(404, RtpAddress(*endpoints[0].address))
    assert info.value.code == 485
    assert client.handles == {}
    with pytest.raises(JanusError) as info:
        await client.participants(404)
    assert info.value.code == 485
    await client.create_room(9)
    with pytest.raises(JanusError) as info:
        await client.mute(9, 12345, True)
    assert info.value.code == 492
    with pytest.raises(ValueError):
        await client.join(9, RtpAddress("127.0.0.1", 4000, payload_type=18))
    # a-law works too
    party = await client.join(9, RtpAddress(*endpoints[0].address, payload_type=8))
    assert party.janus_rtp.payload_type == 8
    await client.leave(party)
    assert await listed_ids(client, 9, set()) == set()


async def test_client_close_and_session_loss(engine: JanusEngine,
                                             endpoints: list[RtpEndpoint]) -> None:
    client = JanusClient(engine.url, timeout=2.0)
    await client.start()
    assert client.alive and await client.keepalive()
    await client.create_room(21)
    await client.join(21, RtpAddress(*endpoints[0].address))
    assert len(await client.participants(21)) == 1
    await client.close()  # destroys the session: its parties leave
    assert not client.alive and not await client.ping()
    with pytest.raises(JanusError):
        await client.rooms()
    assert await listed_ids(client_of(engine), 21, set()) == set()
    await client.close()  # twice is fine

    # a session janus forgot (destroyed behind our back; janus does not end the long
    # poll waiting on it before its 30 s are up): a keepalive finds out
    other = JanusClient(engine.url, timeout=2.0)
    await other.start()
    async with httpx.AsyncClient(trust_env=False) as http:
        await http.post(f"{engine.url}/{other.session_id}",
                        json={"janus": "destroy", "transaction": "x"})
    assert other.alive
    assert not await other.keepalive()
    assert not other.alive
    with pytest.raises(JanusError) as info:
        await other.rooms()
    assert info.value.code == 458
    await other.close()


async def test_ports_come_from_the_range_round_robin(tmp_path: Path) -> None:
    """One even port per party, from min up to below max, round robin; the party after
    the last free port is refused."""
    low = free_port_block(8)
    janus = JanusEngine(rtp_port_min=low, rtp_port_max=low + 7, workdir=tmp_path)
    await janus.start()
    eps = [await RtpEndpoint().start() for _ in range(5)]
    try:
        client = client_of(janus)
        await client.create_room(1)
        parties = [await client.join(1, RtpAddress(*ep.address)) for ep in eps[:4]]
        assert [p.janus_rtp.port for p in parties] == [low, low + 2, low + 4, low + 6]
        # (janus logs "No ports available" and joins it without RTP: we take it out)
        with pytest.raises(JanusError, match="no RTP address"):
            await client.join(1, RtpAddress(*eps[4].address))
        assert len(client.handles) == 4
        assert {p["id"] for p in await client.participants(1)} == {p.id for p in parties}
        # a party's port is free again once janus closed its socket, about 1 s after it
        # left (the plugin's RTP thread polls with a 1 s timeout)
        await client.leave(parties[1])
        left = time.monotonic()
        while True:
            try:
                again = await client.join(1, RtpAddress(*eps[4].address))
                break
            except JanusError:
                assert time.monotonic() - left < 3, "the port was not freed"
                await asyncio.sleep(0.1)
        assert again.janus_rtp.port == low + 2
    finally:
        for ep in eps:
            await ep.stop()
        await janus.stop()


async def test_room_recording(engine: JanusEngine, endpoints: list[RtpEndpoint],
                              tmp_path: Path) -> None:
    client = client_of(engine)
    target = tmp_path / "room 5.wav"
    await client.create_room(5, record_file=str(target))
    parties = await join_all(client, 5, endpoints[:2])
    await listen(endpoints[:2], parties)
    await client.destroy_room(5)  # closes the file
    with wave.open(str(target), "rb") as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (1, 8000, 2)
        frames = wav.readframes(wav.getnframes())
    mix = np.frombuffer(frames, dtype="<i2")[-8000:]  # the last second: both tones
    assert tone_power_ratio(mix, TONES[0]) > HEARD and tone_power_ratio(mix, TONES[1]) > HEARD
