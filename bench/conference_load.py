"""Conference rooms under load: rooms × members, every member sending RTP, mixed by Janus.

    .venv/bin/python bench/conference_load.py                      # 6 steps: ~5.5 min
    .venv/bin/python bench/conference_load.py --steps 1x10,10x4 --seconds 10   # quick
    .venv/bin/python bench/conference_load.py --steps 1x50 --join-rate 5

Setup (127.0.0.1 only): ippbx with `[media] engine = "rtpengine"` (RTP ports
--media-ports) and one `[[conferences]]` room per room of the step (numbers 6600, 6601,
…; no PIN, `max_members` = the step's members), so ippbx runs its own rtpengine and
its own janus (Janus AudioBridge, RTP ports --janus-ports), both its children: they
inherit its `taskset` core 0. The members are a sipp UAC acting as a trunk (one inbound
route per room number sends that DID to the room; bench/scenarios/conference_member.xml)
on core 1: INVITE with PCMU SDP to the room (`-inf`: the members are spread round-robin
over the rooms), answered by ippbx with rtpengine's SDP, ACK, then the member sends RTP
(sipp `play_pcap_audio` of a PCMU pcap the script writes: a 400 Hz tone, 20 ms packets,
50 packets/s, as long as the call) for the hold time, and hangs up (BYE). Janus sends a
plain-RTP participant the mix only once it has received RTP from it, so the mixer works
for real: per member, rtpengine relays the phone's RTP to Janus and Janus's mix back
(each way 50 packets/s); what rtpengine sends to sipp is not read (sipp without
-rtp_echo).

One step per ROOMSxMEMBERS of --steps, each on a fresh ippbx: the members join at
--join-rate calls/s; --settle-seconds after the last join is due, a window of --seconds
is measured, then the members hang up in the order they joined (each holds the same
time: the join time + settle + window + 8 s). /proc is sampled every --poll-seconds for
ippbx, its rtpengine and its janus (CPU, RSS, janus's threads); the API
(`conference/query_in_session`, logged in and out around it) and janus's REST API (a
session of the script's own: AudioBridge `list`) are asked just before the window and
just after it, never during it. Reported per step: members joined (sipp's completed
calls; members `Up` in the API and participants in janus at the window's start and end),
failed calls, retransmissions; the CPU % of one core of ippbx, rtpengine and janus over
the window (and idle before, while members joined, while they hung up: each join and
each leave plays a tone to every other member of the room), RTP packets rtpengine relayed
per second in the window (its `statistics`), their RSS before the load, at peak, and
after the hang-up; then after the hang-up: members still in `conference/query_in_session`,
calls in `inbound/query` and `outbound/query`, calls rtpengine holds, rooms janus holds
(goal: all 0), and ippbx's WARNING and worse lines (janus's own warnings are among them).
A step is clean with every member joined and in the room for the whole window, no failed
call, nothing left after and no ERROR line.

By default ippbx runs from a copy of this working tree's src/ made when the script
starts (so a change in src/ during the run does not reach later steps; its sha256 is
printed); IPPBX_BENCH_REF and IPPBX_BENCH_COMMAND work as for the other scripts
(bench/README.md). Exit 0 when every step ran and ended clean, 1 otherwise, 2 if sipp,
rtpengine or janus is missing, 3 on overrun (--max-minutes).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import socket
import struct
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchlib import (
    ROOT,
    Procs,
    ProcSampler,
    bench_main,
    free_port,
    leftovers,
    log,
    machine_info,
    print_machine,
    require_tools,
    rss_kb,
    save_json,
    table,
    workdir,
)
from medialib import NgProbe, _children, find_engine, log_problems, parse_media_ports
from peers import Ippbx, PbxConfig, Sipp, SippResult

FIRST_ROOM = 6600
TRUNK = "members"
DEFAULT_STEPS = "1x10,1x25,1x50,10x4,25x4,50x4"
PACKET_MS = 20  # G.711 PCMU, 160 bytes a packet
HOLD_MARGIN_S = 8.0  # a member holds this much beyond the window's planned end


# -- RTP: a PCMU pcap of the bench's own ------------------------------------------------------


def ulaw(sample: int) -> int:
    """One 16-bit linear sample → G.711 µ-law (ITU-T G.711, with the usual bias)."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), 32635) + 0x84
    exponent, mask = 7, 0x4000
    while exponent > 0 and not magnitude & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def write_pcmu_pcap(path: Path, seconds: float) -> int:
    """A pcap (Ethernet, IPv4, UDP) of `seconds` of PCMU RTP, 20 ms packets of a 400 Hz
    tone (8 periods a packet: every payload the same); sipp rewrites the addresses and
    the UDP checksum. How many packets."""
    samples = 8000 * PACKET_MS // 1000
    payload = bytes(ulaw(int(8000 * math.sin(2 * math.pi * 400 * n / 8000)))
                    for n in range(samples))
    count = int(seconds * 1000 / PACKET_MS) + 1
    ssrc = secrets.randbits(32)
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i in range(count):
        rtp = struct.pack("!BBHII", 0x80, (0x80 if i == 0 else 0) | 0, i & 0xFFFF,
                          (i * samples) & 0xFFFFFFFF, ssrc) + payload
        udp = struct.pack("!HHHH", 40000, 40000, 8 + len(rtp), 0) + rtp
        ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF,
                                   0x4000, 64, 17, 0, bytes([127, 0, 0, 1]),
                                   bytes([127, 0, 0, 1])))
        ip[10:12] = struct.pack("!H", _ip_checksum(bytes(ip)))
        frame = b"\x00" * 12 + b"\x08\x00" + bytes(ip) + udp
        usec = i * PACKET_MS * 1000
        out.append(struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(frame),
                               len(frame)) + frame)
    path.write_bytes(b"".join(out))
    return count


def free_media_port() -> int:
    """An even loopback UDP port with the next three free too (sipp binds its media port
    and the one 2 above, for video), outside the ports `free_port` handed out."""
    for _ in range(200):
        base = free_port() & ~1
        socks = []
        try:
            for p in range(base, base + 4):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base
    raise RuntimeError("no free media port block")


# -- the source that runs -------------------------------------------------------------------


def snapshot_source() -> tuple[dict[str, str], str]:
    """Without IPPBX_BENCH_REF: a copy of the working tree's src/ (the environment that
    puts it first on ippbx's PYTHONPATH, and a label with its sha256), so every step
    runs the code there was when the script started. With it: nothing to add."""
    if os.environ.get("IPPBX_BENCH_REF"):
        return {}, ""
    dest = Path(tempfile.mkdtemp(prefix="ippbx-bench-src-snapshot-"))
    shutil.copytree(ROOT / "src", dest / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    digest = hashlib.sha256()
    for path in sorted((dest / "src").rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(dest)).encode() + b"\0" + path.read_bytes())
    atexit.register(shutil.rmtree, dest, True)
    return {"PYTHONPATH": str(dest / "src")}, digest.hexdigest()[:12]


# -- ippbx's janus ----------------------------------------------------------------------------


@dataclass
class Janus:
    pid: int
    http_port: int


_JANUS_PORT = re.compile(r"^\s*port\s*=\s*(\d+)", re.M)


def find_janus(ippbx_pid: int, timeout: float = 15.0) -> Janus:
    """ippbx's janus child and its REST port (from the configuration folder ippbx wrote:
    `janus -C DIR/janus.jcfg`, DIR/janus.transport.http.jcfg); RuntimeError if none."""
    deadline = time.monotonic() + timeout
    while True:
        for child in _children(ippbx_pid):
            try:
                comm = Path(f"/proc/{child}/comm").read_text().strip()
                argv = [a.decode(errors="replace") for a in
                        Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")]
            except OSError:
                continue
            if comm != "janus" or "-C" not in argv:
                continue
            folder = Path(argv[argv.index("-C") + 1]).parent
            with contextlib.suppress(OSError):
                text = (folder / "janus.transport.http.jcfg").read_text()
                if (m := _JANUS_PORT.search(text)) is not None:
                    return Janus(child, int(m.group(1)))
        if time.monotonic() > deadline:
            raise RuntimeError(f"no janus child of ippbx (pid {ippbx_pid}) within "
                               f"{timeout:g} s")
        time.sleep(0.2)


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _janus_post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    data = json.dumps({**body, "transaction": secrets.token_hex(6)}).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    with _NO_PROXY.open(req, timeout=10) as resp:
        answer = json.loads(resp.read())
    if answer.get("janus") == "error":
        raise RuntimeError(f"janus {body.get('janus')}: {answer.get('error')}")
    return answer


def janus_rooms(janus: Janus) -> dict[int, int]:
    """The AudioBridge rooms janus holds: room id → participants (a REST session of the
    script's own, destroyed after the `list`)."""
    base = f"http://127.0.0.1:{janus.http_port}/janus"
    session = _janus_post(base, {"janus": "create"})["data"]["id"]
    try:
        handle = _janus_post(f"{base}/{session}", {"janus": "attach",
                                                   "plugin": "janus.plugin.audiobridge"}
                             )["data"]["id"]
        answer = _janus_post(f"{base}/{session}/{handle}",
                             {"janus": "message", "body": {"request": "list"}})
        rooms = answer["plugindata"]["data"].get("list", [])
        return {int(r["room"]): int(r.get("num_participants", 0)) for r in rooms}
    finally:
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            _janus_post(f"{base}/{session}", {"janus": "destroy"})


def user_sys(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of `pid` (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tck, int(fields[12]) / tck


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def cpus_allowed(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    return "?"


# -- ippbx's configuration and its rooms seen over the API --------------------------------------


def config(sip_port: int, api_port: int, wd: Path, trunk_port: int, rooms: Sequence[str],
           members: int, args: argparse.Namespace) -> PbxConfig:
    ports = parse_media_ports(args.media_ports)
    janus_ports = parse_media_ports(args.janus_ports)
    if ports[0] <= janus_ports[1] and janus_ports[0] <= ports[1]:
        raise SystemExit(f"--media-ports {args.media_ports} and --janus-ports "
                         f"{args.janus_ports} overlap")
    extra: list[str] = []
    for room in rooms:
        extra += ["[[conferences]]", f'number = "{room}"', f'name = "bench {room}"',
                  f"max_members = {max(2, members)}"]
    for room in rooms:
        extra += ["[[inbound_routes]]", f'name = "room{room}"', f'trunk = "{TRUNK}"',
                  f'did = "{room}"', f'destination = "conference:{room}"']
    return PbxConfig(sip_port, api_port, wd / "ippbx.sqlite3", trunks=[(TRUNK, trunk_port)],
                     media={"engine": "rtpengine", "port_min": ports[0],
                            "port_max": ports[1], "janus_port_min": janus_ports[0],
                            "janus_port_max": janus_ports[1]},
                     extra_toml=extra)


def in_session(pbx: Ippbx) -> dict[str, int]:
    """`conference/query_in_session` (all rooms) in a session of its own, logged out at
    once: room → members `Up`."""
    try:
        answer = pbx.post("conference/query_in_session", {"number": "all"}, timeout=10)
    finally:
        pbx.logout()
    if answer.get("status") != "Success":
        raise RuntimeError(f"conference/query_in_session failed: {answer}")
    return {r["conferencenumber"]: sum(1 for m in r.get("member", [])
                                       if m.get("memberstatus") == "Up")
            for r in answer.get("conference", [])}


# -- one step ---------------------------------------------------------------------------------


@dataclass
class Step:
    rooms: int
    members: int  # per room
    join_rate: float
    window_s: float = 0.0
    total: int = 0  # rooms × members
    completed: int = 0  # sipp: calls that ended with the member's BYE answered
    failed: int = 0
    retransmissions: int = 0
    unexpected: int = 0
    answer_ms: float = math.nan  # INVITE → 200 (the room answers), mean
    api_up_start: int = -1  # members `Up` in conference/query_in_session at the window
    api_up_end: int = -1
    api_rooms_start: int = -1
    janus_rooms_start: int = -1
    janus_participants_start: int = -1
    janus_participants_end: int = -1
    janus_threads_idle: int = 0
    janus_threads_max: int = 0
    relayed_pps: float = math.nan  # rtpengine's RTP packets relayed per s in the window
    cpu_idle: float = math.nan  # ippbx, before the load
    cpu_join: float = math.nan  # … while the members joined
    cpu: float = math.nan  # … in the window
    engine_cpu_idle: float = math.nan
    engine_cpu_join: float = math.nan
    engine_cpu: float = math.nan
    janus_cpu_idle: float = math.nan
    janus_cpu_join: float = math.nan
    janus_cpu: float = math.nan
    cpu_leave: float = math.nan  # ippbx, … while the members hung up (leave tones)
    engine_cpu_leave: float = math.nan
    janus_cpu_leave: float = math.nan
    sys_share: dict[str, float] = field(default_factory=dict)  # % of each one's CPU in
    # the window spent in the kernel (loopback UDP's send and receive paths)
    rss_before_kb: int = 0
    rss_max_kb: int = 0
    rss_after_kb: int = 0
    engine_rss_before_kb: int = 0
    engine_rss_max_kb: int = 0
    engine_rss_after_kb: int = 0
    janus_rss_before_kb: int = 0
    janus_rss_max_kb: int = 0
    janus_rss_after_kb: int = 0
    leave_s: float = math.nan  # window end → sipp done
    left_members: int = -1  # conference/query_in_session after the hang-up
    left_inbound: int = -1
    left_outbound: int = -1
    left_engine: int = -1
    left_janus_rooms: int = -1
    load: tuple[str, str] = ("", "")  # /proc/loadavg's 1-min figure at the step's start,
    # at the window's end (janus's and sipp's threads count in it)
    window_epoch: tuple[float, float] = (0.0, 0.0)  # wall clock (to read the logs by)
    janus_events: dict[str, int] = field(default_factory=dict)  # janus [WARN]/[ERR]
    # lines by kind, the ones ippbx's rate limit suppressed included
    affinity: dict[str, str] = field(default_factory=dict)
    log_problems: dict[str, int] = field(default_factory=dict)
    why: str = ""

    @property
    def label(self) -> str:
        return f"{self.rooms}x{self.members}"

    @property
    def clean(self) -> bool:
        return not self.why

    def lines(self) -> list[str]:
        def mib(kb: int) -> str:
            return f"{kb / 1024:.1f}"
        return [
            f"{self.label} ({self.total} members): completed {self.completed}, failed "
            f"{self.failed}, retrans {self.retransmissions}, unexpected {self.unexpected}; "
            f"the room answers in {self.answer_ms:.1f} ms (mean)",
            f"  in the window ({self.window_s:.0f} s): API members Up {self.api_up_start} → "
            f"{self.api_up_end} in {self.api_rooms_start} rooms; janus participants "
            f"{self.janus_participants_start} → {self.janus_participants_end} in "
            f"{self.janus_rooms_start} rooms; rtpengine relays {self.relayed_pps:.0f} "
            f"packets/s; load average {self.load[0]} at the start, {self.load[1]} at the "
            f"window's end",
            f"  cpu % idle / join / window / hang-up: ippbx {self.cpu_idle:.1f} / "
            f"{self.cpu_join:.1f} / {self.cpu:.1f} / {self.cpu_leave:.1f}; rtpengine "
            f"{self.engine_cpu_idle:.1f} / {self.engine_cpu_join:.1f} / {self.engine_cpu:.1f} "
            f"/ {self.engine_cpu_leave:.1f}; janus {self.janus_cpu_idle:.1f} / "
            f"{self.janus_cpu_join:.1f} / {self.janus_cpu:.1f} / {self.janus_cpu_leave:.1f} "
            f"(threads {self.janus_threads_idle} → max {self.janus_threads_max}); in the "
            f"kernel: " + ", ".join(f"{k} {v:.0f} %" for k, v in self.sys_share.items()),
            f"  rss MiB before → max → after: ippbx {mib(self.rss_before_kb)} → "
            f"{mib(self.rss_max_kb)} → {mib(self.rss_after_kb)}; rtpengine "
            f"{mib(self.engine_rss_before_kb)} → {mib(self.engine_rss_max_kb)} → "
            f"{mib(self.engine_rss_after_kb)}; janus {mib(self.janus_rss_before_kb)} → "
            f"{mib(self.janus_rss_max_kb)} → {mib(self.janus_rss_after_kb)}",
            f"  after the hang-up ({self.leave_s:.0f} s): members in session "
            f"{self.left_members}, inbound/query {self.left_inbound}, outbound/query "
            f"{self.left_outbound}, rtpengine calls {self.left_engine}, janus rooms "
            f"{self.left_janus_rooms}" + (f"; NOT clean: {self.why}" if self.why else
                                          "; clean"),
        ]


def parse_steps(text: str) -> list[tuple[int, int]]:
    steps = []
    for item in text.split(","):
        if not item.strip():
            continue
        m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", item)
        if m is None or int(m.group(1)) < 1 or int(m.group(2)) < 1:
            raise SystemExit(f"--steps: {item!r} is not ROOMSxMEMBERS (e.g. 10x4)")
        rooms, members = int(m.group(1)), int(m.group(2))
        if members > 200 or rooms * members > 1000:
            raise SystemExit(f"--steps: {item}: at most 200 members a room, 1000 in all")
        steps.append((rooms, members))
    if not steps:
        raise SystemExit("--steps: none given")
    return steps


def run_step(procs: Procs, base: Path, rooms_n: int, members: int,
             args: argparse.Namespace, env: dict[str, str]) -> Step:
    step = Step(rooms_n, members, args.join_rate, total=rooms_n * members)
    step.load = (loadavg(), "")
    wd = base / f"step-{step.label}"
    wd.mkdir(parents=True)
    rooms = [str(FIRST_ROOM + i) for i in range(rooms_n)]
    sip_port, api_port, trunk_port = (free_port() for _ in range(3))
    media_port = free_media_port()
    pbx = Ippbx(procs, wd, config(sip_port, api_port, wd, trunk_port, rooms, members, args),
                env=env)
    uac: Sipp | None = None
    try:
        pbx.start()
        engine = find_engine(pbx.pid)
        janus = find_janus(pbx.pid)
        probe = NgProbe(engine.ng_port)
        step.affinity = {"ippbx": cpus_allowed(pbx.pid), "rtpengine": cpus_allowed(engine.pid),
                         "janus": cpus_allowed(janus.pid)}
        if janus_rooms(janus):
            raise RuntimeError("janus holds rooms before the load")
        samplers = {"ippbx": ProcSampler(pbx.pid), "engine": ProcSampler(engine.pid),
                    "janus": ProcSampler(janus.pid)}
        janus_threads: list[int] = []

        def tick() -> None:
            with contextlib.suppress(OSError):
                for s in samplers.values():
                    s.sample()
                janus_threads.append(threads(janus.pid))

        # idle: the three processes before any call
        tick()
        i0 = time.monotonic()
        time.sleep(args.idle_seconds)
        tick()
        i1 = time.monotonic()
        step.rss_before_kb = rss_kb(pbx.pid)
        step.engine_rss_before_kb = rss_kb(engine.pid)
        step.janus_rss_before_kb = rss_kb(janus.pid)
        step.janus_threads_idle = janus_threads[-1]

        # the members: round-robin over the rooms, one line each (sipp reads them in order)
        total = step.total
        inf = wd / "members.csv"
        inf.write_text("SEQUENTIAL\n" + "".join(
            f"{rooms[i % rooms_n]};5{i:05d};\n" for i in range(total)))
        join_plan = total / args.join_rate
        hold_s = join_plan + args.settle_seconds + args.seconds + HOLD_MARGIN_S
        pcap = wd / "member.pcap"
        write_pcmu_pcap(pcap, hold_s + 2.0)
        uac = Sipp(procs, wd, "members", "conference_member.xml", remote=pbx.sip_address,
                   port=trunk_port, calls=total, rate=args.join_rate, limit=total,
                   hold_ms=int(hold_s * 1000),
                   timeout_s=min(args.max_minutes * 60, 2 * (join_plan + hold_s) + 60))
        scenario = uac.wd / "conference_member.xml"
        scenario.write_text(scenario.read_text().replace("RTP_PCAP", str(pcap)))
        uac.argv += ["-inf", str(inf), "-mp", str(media_port)]
        t0 = time.monotonic()
        uac.start()
        w0 = t0 + join_plan + args.settle_seconds
        w1 = w0 + args.seconds
        next_log = t0 + 10
        while time.monotonic() < w0 - 1.5 and uac.running:
            tick()
            if time.monotonic() >= next_log:
                res = uac.result()
                log(f"  t={time.monotonic() - t0:4.0f} s: members placed {res.created}, "
                    f"up {res.counter('CurrentCall')}, failed {res.failed}")
                next_log += 10
            time.sleep(args.poll_seconds)
        if not uac.running:
            raise RuntimeError("the members' sipp ended early: " + uac.result().errors[-500:])
        # just before the window: who is in (the API, janus), rtpengine's packet counter
        live = in_session(pbx)
        step.api_up_start, step.api_rooms_start = sum(live.values()), len(live)
        jr = janus_rooms(janus)
        step.janus_rooms_start, step.janus_participants_start = len(jr), sum(jr.values())
        while time.monotonic() < w0:
            time.sleep(0.05)
        relayed0 = probe.statistics()["relayed_packets"]
        pids = {"ippbx": pbx.pid, "rtpengine": engine.pid, "janus": janus.pid}
        split0 = {k: user_sys(p) for k, p in pids.items()}
        tick()
        r0 = time.monotonic()
        e0 = time.time()
        if r0 > w0 + 0.5:  # the queries were slow (an overloaded core): the window starts
            # now, and ends before the first member's hang-up
            log(f"  the window starts {r0 - w0:.1f} s late")
            w0, w1 = r0, min(r0 + args.seconds, t0 + hold_s - 0.5)
        while time.monotonic() < w1 and uac.running:
            time.sleep(max(0.0, min(args.poll_seconds, w1 - time.monotonic())))
            tick()
        relayed1 = probe.statistics()["relayed_packets"]
        r1 = time.monotonic()
        step.window_epoch = (e0, time.time())
        for k, p in pids.items():
            (u0, s0), (u1, s1) = split0[k], user_sys(p)
            if u1 + s1 > u0 + s0:
                step.sys_share[k] = 100.0 * (s1 - s0) / (u1 + s1 - u0 - s0)
        step.load = (step.load[0], loadavg())
        if relayed0 >= 0 and relayed1 >= 0:
            step.relayed_pps = (relayed1 - relayed0) / (r1 - r0)
        if not uac.running:
            raise RuntimeError("the members' sipp ended during the window: "
                               + uac.result().errors[-500:])
        live = in_session(pbx)
        step.api_up_end = sum(live.values())
        step.janus_participants_end = sum(janus_rooms(janus).values())
        step.window_s = r1 - r0

        # the hang-up: each member leaves hold_s after its answer
        d0 = time.monotonic()
        while uac.running and time.monotonic() < d0 + join_plan + HOLD_MARGIN_S + 60:
            tick()
            time.sleep(args.poll_seconds)
        tick()
        d1 = time.monotonic()
        step.leave_s = d1 - d0
        res = uac.wait(5) if uac.running else uac.result()
        # (the hang-ups: from the first one due to the last one's end)
        fill(step, res, samplers, janus_threads, (i0, i1), (t0, w0), (w0, w1),
             (min(max(d0, t0 + hold_s), d1), d1))

        # after: nothing left anywhere
        time.sleep(2.0)
        step.rss_after_kb = rss_kb(pbx.pid)
        step.engine_rss_after_kb = rss_kb(engine.pid)
        step.janus_rss_after_kb = rss_kb(janus.pid)
        deadline = time.monotonic() + 10
        while True:
            left = in_session(pbx)
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        step.left_members = sum(left.values())
        step.left_inbound = len(pbx.wait_empty(pbx.inbound, 10))
        step.left_outbound = len(pbx.wait_empty(pbx.outbound, 5))
        pbx.logout()
        step.left_engine = probe.wait_empty(10)
        deadline = time.monotonic() + 5
        while (jr := janus_rooms(janus)) and time.monotonic() < deadline:
            time.sleep(0.5)
        step.left_janus_rooms = len(jr)
    except (RuntimeError, ValueError, OSError, KeyError, urllib.error.URLError) as exc:
        step.why = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        log(f"  step failed to run: {exc}")
    finally:
        if uac is not None and uac.running:
            uac.kill()
        pbx.stop()
        step.log_problems = dict(log_problems(wd / "ippbx.stderr"))
        step.janus_events = janus_events(wd / "ippbx.stderr")
    if not step.why:
        step.why = verdict(step)
    return step


_JANUS_LINE = re.compile(r"janus\[\d+\]: \[(?:WARN|ERR|FATAL)\] (.*?)"
                         r"(?: \((\d+) more suppressed\))?$")


def janus_events(stderr: Path) -> dict[str, int]:
    """janus's [WARN]/[ERR] lines in ippbx's log by kind (first words, numbers as N),
    each line counting itself and the lines ippbx's rate limit left out before it (one
    budget for all of janus's output: those are counted under the kind of the line that
    reports them, usually the same)."""
    counts: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in stderr.read_text(errors="replace").splitlines():
            if (m := _JANUS_LINE.search(line)) is not None:
                kind = re.sub(r"\d+", "N", m.group(1))[:40].strip()
                counts[kind] = counts.get(kind, 0) + 1 + int(m.group(2) or 0)
    return counts


def fill(step: Step, res: SippResult, samplers: dict[str, ProcSampler],
         janus_threads: Sequence[int], idle: tuple[float, float], join: tuple[float, float],
         window: tuple[float, float], leave: tuple[float, float]) -> None:
    """The step's figures from sipp's statistics and the /proc samples."""
    step.completed = res.successful
    step.failed = res.failed
    step.retransmissions = res.retransmissions
    step.unexpected = res.unexpected
    step.answer_ms = res.response_time_ms()
    ippbx, engine, janus = samplers["ippbx"], samplers["engine"], samplers["janus"]
    step.cpu_idle, step.cpu_join, step.cpu = (ippbx.cpu_percent(*idle),
                                              ippbx.cpu_percent(*join),
                                              ippbx.cpu_percent(*window))
    step.engine_cpu_idle, step.engine_cpu_join, step.engine_cpu = (
        engine.cpu_percent(*idle), engine.cpu_percent(*join), engine.cpu_percent(*window))
    step.janus_cpu_idle, step.janus_cpu_join, step.janus_cpu = (
        janus.cpu_percent(*idle), janus.cpu_percent(*join), janus.cpu_percent(*window))
    step.cpu_leave, step.engine_cpu_leave, step.janus_cpu_leave = (
        ippbx.cpu_percent(*leave), engine.cpu_percent(*leave), janus.cpu_percent(*leave))
    step.rss_max_kb, step.engine_rss_max_kb, step.janus_rss_max_kb = (
        ippbx.max_rss, engine.max_rss, janus.max_rss)
    step.janus_threads_max = max(janus_threads, default=0)


def verdict(step: Step) -> str:
    why = []
    if step.failed:
        why.append(f"{step.failed} of {step.total} members failed")
    if step.completed != step.total:
        why.append(f"{step.completed}/{step.total} members completed")
    if step.api_up_start != step.total or step.api_up_end != step.total:
        why.append(f"members Up {step.api_up_start} → {step.api_up_end} of {step.total} "
                   "in the window")
    if step.janus_participants_start != step.total or step.janus_participants_end \
            != step.total:
        why.append(f"janus participants {step.janus_participants_start} → "
                   f"{step.janus_participants_end} of {step.total}")
    why += leftovers((("members in session", step.left_members),
                      ("in inbound/query", step.left_inbound),
                      ("in outbound/query", step.left_outbound),
                      ("calls in rtpengine", step.left_engine),
                      ("rooms in janus", step.left_janus_rooms)), "the hang-up", step.log_problems)
    return ", ".join(why)


# -- main ---------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", default=DEFAULT_STEPS,
                   help="comma list of ROOMSxMEMBERS, one step each")
    p.add_argument("--join-rate", type=float, default=10.0,
                   help="members joining per second (sipp -r)")
    p.add_argument("--settle-seconds", type=float, default=5.0,
                   help="after the last join is due, before the window")
    p.add_argument("--seconds", type=float, default=20.0, help="the measured window")
    p.add_argument("--idle-seconds", type=float, default=2.0,
                   help="CPU of the three processes before any call")
    p.add_argument("--poll-seconds", type=float, default=0.5, help="/proc samples")
    p.add_argument("--media-ports", default="10000-25999", metavar="MIN-MAX",
                   help="rtpengine's RTP ports (4 per member)")
    p.add_argument("--janus-ports", default="26000-31999", metavar="MIN-MAX",
                   help="janus's RTP ports (1 per member); both ranges must stay clear of "
                        "the ephemeral ports the bench's SIP sockets use")
    p.add_argument("--max-minutes", type=float, default=9.5, help="hard wall-clock limit")
    p.add_argument("--json", help="write the results to this JSON file")
    return p.parse_args()


def main(procs: Procs) -> int:
    args = parse_args()
    steps_spec = parse_steps(args.steps)
    for tool, package in (("rtpengine", "rtpengine-daemon"), ("janus", "janus")):
        if shutil.which(tool) is None:
            log(f"error: {tool} not found (apt-get install {package})")
            return 2
    env, digest = snapshot_source()
    info = machine_info()
    if digest:
        info["commit"] += f" (src/ copied at start, sha256 {digest})"
    print_machine(info, "bench/conference_load.py " + " ".join(sys.argv[1:]))
    base = workdir("conference")
    log(f"work directory: {base}")
    log(f"steps {args.steps}: members join at {args.join_rate:g}/s, settle "
        f"{args.settle_seconds:g} s, window {args.seconds:g} s; each sends PCMU RTP "
        f"(20 ms packets)")
    steps = []
    for rooms, members in steps_spec:
        log(f"step: {rooms} room(s) x {members} members")
        step = run_step(procs, base, rooms, members, args, env)
        for line in step.lines():
            log(line)
        if step.affinity:
            log("  cores: " + ", ".join(f"{k} {v}" for k, v in step.affinity.items()))
        if step.janus_events:
            log("  janus warnings (suppressed ones counted): " + "; ".join(
                f"{c} x {k}" for k, c in sorted(step.janus_events.items())))
        if step.log_problems:
            log("  ippbx log: " + "; ".join(f"{c} x {k}" for k, c in
                                            sorted(step.log_problems.items())[:10]))
        steps.append(step)
    log("")

    def mib(kb: int) -> str:
        return f"{kb / 1024:.0f}"
    log(table(
        ["rooms × members", "joined (in the window)", "failed", "ippbx CPU %",
         "rtpengine CPU %", "janus CPU %", "core 0 %", "relayed pkt/s",
         "ippbx RSS MiB before → max → after", "rtpengine RSS MiB", "janus RSS MiB",
         "janus threads", "janus late packets",
         "CPU % while joining (ippbx / rtpengine / janus)", "… while hanging up",
         "left after"],
        [[f"{s.rooms} × {s.members}", f"{s.completed}/{s.total} ({s.api_up_start} → "
          f"{s.api_up_end})", f"{s.failed}", f"{s.cpu:.1f}", f"{s.engine_cpu:.1f}",
          f"{s.janus_cpu:.1f}", f"{s.cpu + s.engine_cpu + s.janus_cpu:.1f}",
          f"{s.relayed_pps:.0f}",
          f"{mib(s.rss_before_kb)} → {mib(s.rss_max_kb)} → {mib(s.rss_after_kb)}",
          f"{mib(s.engine_rss_before_kb)} → {mib(s.engine_rss_max_kb)} → "
          f"{mib(s.engine_rss_after_kb)}",
          f"{mib(s.janus_rss_before_kb)} → {mib(s.janus_rss_max_kb)} → "
          f"{mib(s.janus_rss_after_kb)}",
          f"{s.janus_threads_idle} → {s.janus_threads_max}",
          f"{sum(n for k, n in s.janus_events.items() if k.startswith('IN LATE'))}",
          f"{s.cpu_join:.1f} / {s.engine_cpu_join:.1f} / {s.janus_cpu_join:.1f}",
          f"{s.cpu_leave:.1f} / {s.engine_cpu_leave:.1f} / {s.janus_cpu_leave:.1f}",
          "nothing" if s.clean else s.why] for s in steps]))
    save_json(args.json, {"machine": info, "args": vars(args),
                          "steps": [asdict(s) | {"clean": s.clean} for s in steps]})
    return 0 if steps and all(s.clean for s in steps) else 1


if __name__ == "__main__":
    require_tools("sipp")
    bench_main(main, parse_args().max_minutes * 60)
