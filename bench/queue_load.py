"""Call queues under load: one queue, 50 agents, ~200 callers waiting, served steadily.

    .venv/bin/python bench/queue_load.py                         # talk 4, 2, 1 s: ~5 min
    .venv/bin/python bench/queue_load.py --talk-seconds 4 --seconds 20      # quick
    .venv/bin/python bench/queue_load.py --talk-seconds 4 --announce        # place in line
    .venv/bin/python bench/queue_load.py --strategy ringall --talk-seconds 4
    .venv/bin/python bench/queue_load.py --talk-seconds 1 --engine-cpu 1   # rtpengine: core 1

Setup (ippbx pinned to core 0 with its rtpengine, sipp on core 1, 127.0.0.1 only): ippbx
with `[media] engine = "rtpengine"` and one queue (number 6000, --strategy, `wrapup_seconds`
--wrapup, `announce_position` off unless --announce, the built-in hold music, `max_wait`
600 s, `retry_seconds` 1) whose static agents are --agents extensions (2001…). The script
registers every agent (its own REGISTERs with digest, `peers.register_many`) with Contact
port P, sent from P, where one sipp UAS then answers for all of them
(bench/scenarios/queue_agent.xml): 180, --answer-ms of ringing, 200 with PCMU SDP,
--talk-seconds of talk, then the agent hangs up (BYE); a CANCEL (ringall) or ippbx's BYE
is answered. The callers are a sipp UAC acting as a trunk (an inbound route sends DID
6000 to the queue; bench/scenarios/queue_caller.xml): INVITE with PCMU SDP, answered at
once by the queue (rtpengine's SDP; music on hold), ACK, then the caller waits for the
agent's hang-up (ippbx's BYE). The caller's sipp keeps --agents + --waiting calls up (sipp
-l): it fills the line at --fill-rate calls/s, then (its rate raised to --loop-rate over
its control socket) places a new call whenever one ends, so about --waiting callers wait
while every agent talks: a closed loop whose call rate is what the agents and ippbx (and
its rtpengine) sustain. sipp sends no RTP; rtpengine sends the hold music to the callers.

One step per value of --talk-seconds, each on a fresh ippbx: the callers fill the line
at --fill-rate; after --settle-seconds more, a window of --seconds is measured; then the
UAC stops placing calls (SIGUSR1) and the line drains. Every --poll-seconds the script
samples ippbx's and rtpengine's CPU and RSS (/proc) and asks `queuestatus/query` (logging
in and out around each query, so no call reports are queued while calls run): callers
waiting, each agent's state, each waiting caller's time in line. Reported per step:
the calls served per second in the window (the callers' completed calls, from sipp's
statistics), callers waiting (mean, max), agents talking / ringing / idle (mean), time
in line of the callers that left it during the window (from the polls: mean, p50, p95,
max; ±1 poll) and sipp's mean ACK → BYE time minus the talk, ippbx's and rtpengine's CPU
% over the window (and ippbx's CPU ms per served call), their RSS before the load, at
peak, and after the drain; failed calls (sipp UAC and UAS), retransmissions, unexpected
messages; polls that saw an idle agent while more callers waited than agents rang, and
how many in a row at most (one: a caller about to ring it; more: a caller not woken);
after the drain, the callers still in line, agents not idle, calls in `inbound/query` and
`outbound/query`, calls rtpengine holds (goal: all 0), and ippbx's WARNING and worse lines.
A step is clean with no failed call, every caller served, nothing left and no ERROR line.
--engine-cpu 1 moves rtpengine to the load generators' core (as in sip_cps.py).

IPPBX_BENCH_REF and IPPBX_BENCH_COMMAND work as for the other scripts (bench/README.md);
IPPBX_BENCH_COMMAND with `python -m cProfile -o FILE -m ippbx.cli` profiles ippbx.
Exit 0 when every step ran and ended clean (no failed call, nothing left), 1 otherwise,
2 if sipp or rtpengine is missing, 3 on overrun (--max-minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import re
import shutil
import signal
import socket
import statistics
import sys
import time
import urllib.error
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchlib import (
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
from medialib import (
    DEFAULT_PORTS,
    NgProbe,
    find_engine,
    log_problems,
    parse_media_ports,
    pin_threads,
)
from peers import Ippbx, PbxConfig, Sipp, SippResult, ext_password, register_many

QUEUE = "6000"
FIRST_AGENT = 2001
CALLER_PREFIX = "77"  # the callers' From users: 771, 772, …
IDLE, IN_USE, RINGING, IN_USE_RINGING = "1", "2", "6", "7"  # queuestatus agent codes


# -- scenarios -------------------------------------------------------------------------------


def set_timeout(scenario: Path, marker: str, ms: int) -> None:
    """Rewrite the one `timeout="N"` that precedes `marker` in a scenario copy."""
    text = scenario.read_text()
    pattern = re.compile(r'timeout="\d+"(' + re.escape(marker) + ")")
    if len(pattern.findall(text)) != 1:
        raise ValueError(f"{scenario.name}: want one timeout before {marker!r}")
    scenario.write_text(pattern.sub(f'timeout="{ms}"\\1', text))


def config(sip_port: int, api_port: int, wd: Path, caller_port: int,
           agents: Sequence[str], args: argparse.Namespace) -> PbxConfig:
    ports = parse_media_ports(args.media_ports)
    extra: list[str] = []
    for ext in agents:
        extra += ["[[extensions]]", f'number = "{ext}"', f'password = "{ext_password(ext)}"']
    names = ", ".join(f'"{a}"' for a in agents)
    extra += ["[[queues]]", f'number = "{QUEUE}"', 'name = "bench"',
              f'strategy = "{args.strategy}"', f"agents = [{names}]", "max_wait = 600",
              f"wrapup_seconds = {args.wrapup}", "ring_seconds = 15", "retry_seconds = 1",
              f"announce_position = {'true' if args.announce else 'false'}",
              "[[inbound_routes]]", 'name = "queue"', 'trunk = "callers"',
              f'did = "{QUEUE}"', f'destination = "queue:{QUEUE}"']
    return PbxConfig(sip_port, api_port, wd / "ippbx.sqlite3",
                     trunks=[("callers", caller_port)],
                     media={"engine": "rtpengine", "port_min": ports[0],
                            "port_max": ports[1]},
                     extra_toml=extra)


# -- the queue seen over the API -------------------------------------------------------------


@dataclass
class Poll:
    t: float  # monotonic
    waiting: int
    agents: dict[str, int]  # agent status code → how many
    callers: dict[str, int]  # callid → seconds in line


def poll_queue(pbx: Ippbx) -> Poll:
    """`queuestatus/query` in a session of its own (logged out at once: no reports)."""
    try:
        answer = pbx.post("queuestatus/query", {"queueid": QUEUE}, timeout=10)
    finally:
        pbx.logout()
    if answer.get("status") != "Success":
        raise RuntimeError(f"queuestatus/query failed: {answer}")
    status = answer["queue"]["queuestatus"]
    codes: dict[str, int] = {}
    for member in status.get("members", []):
        codes[member["agentstatus"]] = codes.get(member["agentstatus"], 0) + 1
    callers = {c["callid"]: int(c["waittime"]) for c in status.get("callers", [])}
    return Poll(time.monotonic(), int(status["callercount"]), codes, callers)


def in_line_times(polls: Sequence[Poll], t0: float, t1: float) -> list[int]:
    """Seconds in line of each caller whose last sighting fell within [t0, t1) and who
    was gone at the next poll: the longest time any poll showed for it."""
    longest: dict[str, int] = {}
    last_seen: dict[str, int] = {}
    for i, p in enumerate(polls):
        for callid, waited in p.callers.items():
            longest[callid] = max(longest.get(callid, 0), waited)
            last_seen[callid] = i
    return [longest[c] for c, i in last_seen.items()
            if i + 1 < len(polls) and t0 <= polls[i].t < t1]


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- one step ---------------------------------------------------------------------------------


@dataclass
class Step:
    talk_s: float
    agents: int
    waiting_target: int
    strategy: str
    window_s: float = 0.0
    served_per_s: float = math.nan  # callers' calls completed per second in the window
    served_total: int = 0
    placed: int = 0
    failed_callers: int = 0
    failed_agents: int = 0
    retransmissions: int = 0
    unexpected: int = 0
    answer_ms: float = math.nan  # the queue's answer to a caller (INVITE → 200), mean
    waiting_mean: float = math.nan
    waiting_max: int = 0
    talking_mean: float = math.nan
    ringing_mean: float = math.nan
    idle_mean: float = math.nan
    polls: int = 0
    polls_idle_while_waiting: int = 0  # an agent idle while more callers wait than agents
    # ring (a caller being offered stays in line until answered: with one agent rung per
    # offer, callers - ringing agents is how many are not offered, at least)
    idle_while_waiting_streak: int = 0  # … in this many polls in a row at most (over a
    # poll: a caller left beside an idle agent, a wake-up lost)
    wait_mean_s: float = math.nan
    wait_p50_s: float = math.nan
    wait_p95_s: float = math.nan
    wait_max_s: float = math.nan
    wait_sipp_s: float = math.nan  # sipp's mean ACK → BYE minus answer delay and talk
    cpu: float = math.nan
    cpu_ms_per_call: float = math.nan
    rss_before_kb: int = 0
    rss_max_kb: int = 0
    rss_after_kb: int = 0
    engine_cpu: float = math.nan
    engine_rss_before_kb: int = 0
    engine_rss_max_kb: int = 0
    engine_rss_after_kb: int = 0
    drain_s: float = math.nan
    left_in_line: int = -1
    agents_not_idle: int = -1
    left_inbound: int = -1
    left_outbound: int = -1
    left_engine: int = -1
    log_problems: dict[str, int] = field(default_factory=dict)
    why: str = ""

    @property
    def clean(self) -> bool:
        return not self.why

    def lines(self) -> list[str]:
        return [
            f"talk {self.talk_s:g} s: served {self.served_per_s:.1f} calls/s over "
            f"{self.window_s:.0f} s ({self.served_total} calls served in all, "
            f"{self.placed} placed); failed callers {self.failed_callers}, agents "
            f"{self.failed_agents}, retrans {self.retransmissions}, unexpected "
            f"{self.unexpected}; queue answers in {self.answer_ms:.1f} ms",
            f"  waiting mean {self.waiting_mean:.1f}, max {self.waiting_max}; agents "
            f"talking {self.talking_mean:.1f}, ringing {self.ringing_mean:.1f}, idle "
            f"{self.idle_mean:.1f} (mean of {self.polls} polls; "
            f"{self.polls_idle_while_waiting} saw an idle agent while a caller not offered "
            f"waited, at most {self.idle_while_waiting_streak} in a row)",
            f"  time in line: mean {self.wait_mean_s:.1f} s, p50 {self.wait_p50_s:.0f}, p95 "
            f"{self.wait_p95_s:.0f}, max {self.wait_max_s:.0f} (sipp: {self.wait_sipp_s:.1f})",
            f"  ippbx cpu {self.cpu:.1f} % ({self.cpu_ms_per_call:.2f} ms/call), rss "
            f"{self.rss_before_kb / 1024:.1f} → max {self.rss_max_kb / 1024:.1f} → after "
            f"{self.rss_after_kb / 1024:.1f} MiB; rtpengine cpu {self.engine_cpu:.1f} %, "
            f"rss {self.engine_rss_before_kb / 1024:.1f} → max "
            f"{self.engine_rss_max_kb / 1024:.1f} → after "
            f"{self.engine_rss_after_kb / 1024:.1f} MiB",
            f"  after the drain ({self.drain_s:.0f} s): in line {self.left_in_line}, agents "
            f"not idle {self.agents_not_idle}, inbound/query {self.left_inbound}, "
            f"outbound/query {self.left_outbound}, rtpengine calls {self.left_engine}"
            + (f"; NOT clean: {self.why}" if self.why else "; clean"),
        ]


def row_at(rows: Sequence[dict[str, str]], epoch: float) -> dict[str, str]:
    """The sipp statistics row written nearest to `epoch` (wall clock)."""
    def when(row: dict[str, str]) -> float:
        return float(row["CurrentTime"].split("\t")[-1])
    timed = [r for r in rows if r.get("CurrentTime")]
    return min(timed, key=lambda r: abs(when(r) - epoch)) if timed else {}


def rt_seconds(value: str) -> float:
    """sipp's "HH:MM:SS:usec" → seconds."""
    parts = value.split(":")
    if len(parts) != 4:
        return math.nan
    h, m, s, us = (int(p) for p in parts)
    return (h * 60 + m) * 60 + s + us / 1e6


def run_step(procs: Procs, base: Path, talk_s: float, args: argparse.Namespace) -> Step:
    wd = base / f"talk-{talk_s:g}"
    wd.mkdir(parents=True)
    step = Step(talk_s, args.agents, args.waiting, args.strategy)
    agents = [str(FIRST_AGENT + i) for i in range(args.agents)]
    sip_port, api_port, agent_port, caller_port = (free_port() for _ in range(4))
    pbx = Ippbx(procs, wd, config(sip_port, api_port, wd, caller_port, agents, args))
    agent_uas: Sipp | None = None
    callers: Sipp | None = None
    try:
        pbx.start()
        engine = find_engine(pbx.pid)
        if args.engine_cpu is not None:
            pin_threads(engine.pid, {args.engine_cpu})
        probe = NgProbe(engine.ng_port)
        register_many(pbx, agents, agent_port)
        agent_uas = Sipp(procs, wd, "agents", "queue_agent.xml", port=agent_port,
                         recv_timeout_ms=None)
        set_timeout(agent_uas.wd / "queue_agent.xml", ' ontimeout="answer"', args.answer_ms)
        set_timeout(agent_uas.wd / "queue_agent.xml", ' ontimeout="hangup"',
                    int(talk_s * 1000))
        # ringall: a CANCEL can meet an agent's answer timer (the jump to the 200 taken,
        # the 200 not sent yet): sipp would abort that call and never answer the INVITE
        # (ippbx's branch then rings until its timer B); go on instead: the 200 (built
        # from the INVITE's headers) crosses the CANCEL, ippbx ACKs it and hangs up
        agent_uas.argv += ["-default_behaviors", "all,-abortunexp"]
        agent_uas.start(uas=True)
        first = poll_queue(pbx)
        if first.agents.get(IDLE, 0) != args.agents:
            raise RuntimeError(f"agents not all idle before the load: {first.agents}")
        ippbx_s, engine_s = ProcSampler(pbx.pid), ProcSampler(engine.pid)
        time.sleep(2.0)
        step.rss_before_kb, step.engine_rss_before_kb = rss_kb(pbx.pid), rss_kb(engine.pid)

        in_system = args.agents + args.waiting
        callers = Sipp(procs, wd, "callers", "queue_caller.xml", remote=pbx.sip_address,
                       port=caller_port, rate=args.fill_rate, limit=in_system,
                       service=QUEUE, keys={"caller": CALLER_PREFIX},
                       timeout_s=args.max_minutes * 60)
        control = free_port()
        callers.argv += ["-cp", str(control)]
        set_timeout(callers.wd / "queue_caller.xml", ' rtd="2"', int(args.max_stay * 1000))
        polls: list[Poll] = []

        def tick() -> None:
            with contextlib.suppress(OSError):
                ippbx_s.sample()
                engine_s.sample()
            try:
                polls.append(poll_queue(pbx))
            except (OSError, urllib.error.URLError, RuntimeError, ValueError) as exc:
                log(f"  poll failed: {exc}")

        tick()
        t0 = time.monotonic()
        callers.start()
        filled = t0 + in_system / args.fill_rate
        w0 = filled + args.settle_seconds
        w1 = w0 + args.seconds
        epoch = {"w0": 0.0, "w1": 0.0}
        next_log = t0 + 10
        loop_closed = False
        while time.monotonic() < w1 and callers.running:
            tick()
            now = time.monotonic()
            if not loop_closed and now >= filled:
                # the line is full: from now on only sipp's -l bounds the callers, so
                # each one that leaves is replaced at once (sipp's remote control)
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.sendto(f"cset rate {args.loop_rate:g}".encode(),
                                ("127.0.0.1", control))
                loop_closed = True
            if not epoch["w0"] and now >= w0:
                epoch["w0"] = time.time()
            if now >= next_log:
                p = polls[-1] if polls else None
                res = callers.result()
                log(f"  t={now - t0:4.0f} s: waiting {p.waiting if p else '?'}, agents "
                    f"{p.agents if p else '?'}; callers served {res.successful}, failed "
                    f"{res.failed}")
                next_log += 10
            time.sleep(max(0.0, args.poll_seconds - (time.monotonic() - now)))
        epoch["w1"] = time.time()
        if not callers.running:
            raise RuntimeError("the callers' sipp ended early: "
                               + callers.result().errors[-500:])
        # drain: no new callers; the ones in line are served (bounded by --max-stay)
        assert callers.proc is not None
        callers.proc.send_signal(signal.SIGUSR1)  # sipp places no more calls, ends the rest
        d0 = time.monotonic()
        while callers.running and time.monotonic() < d0 + args.max_stay + 30:
            tick()
            time.sleep(args.poll_seconds)
        step.drain_s = time.monotonic() - d0
        res = callers.stop() if callers.running else callers.result()
        time.sleep(1.0)  # (the timewait of the last calls)
        uas_res = agent_uas.stop()
        tick()
        fill(step, res, uas_res, polls, ippbx_s, engine_s, w0, w1, epoch, args)

        # after: nothing left anywhere
        time.sleep(2.0)
        step.rss_after_kb, step.engine_rss_after_kb = rss_kb(pbx.pid), rss_kb(engine.pid)
        last = poll_queue(pbx)
        step.left_in_line = last.waiting
        step.agents_not_idle = args.agents - last.agents.get(IDLE, 0)
        step.left_inbound = len(pbx.wait_empty(pbx.inbound, 10))
        step.left_outbound = len(pbx.wait_empty(pbx.outbound, 5))
        pbx.logout()
        step.left_engine = probe.wait_empty(10)
    except (RuntimeError, ValueError, OSError) as exc:
        step.why = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        log(f"  step failed to run: {exc}")
    finally:
        for sipp in (callers, agent_uas):
            if sipp is not None and sipp.running:
                sipp.kill()
        pbx.stop()
        step.log_problems = dict(log_problems(wd / "ippbx.stderr"))
    if not step.why:
        step.why = verdict(step)
    return step


def fill(step: Step, res: SippResult, uas_res: SippResult, polls: Sequence[Poll],
         ippbx_s: ProcSampler, engine_s: ProcSampler, w0: float, w1: float,
         epoch: dict[str, float], args: argparse.Namespace) -> None:
    """The step's figures from sipp's statistics, the polls and the /proc samples."""
    step.window_s = w1 - w0
    a, b = row_at(res.rows, epoch["w0"]), row_at(res.rows, epoch["w1"])
    if a and b:
        span = float(b["CurrentTime"].split("\t")[-1]) - float(a["CurrentTime"].split("\t")[-1])
        served = res.counter("SuccessfulCall(C)", b) - res.counter("SuccessfulCall(C)", a)
        step.served_per_s = served / span if span > 0 else math.nan
        step.window_s = span
    step.served_total = res.successful
    step.placed = res.created
    step.failed_callers = res.failed
    step.failed_agents = uas_res.failed
    step.retransmissions = res.retransmissions + uas_res.retransmissions
    step.unexpected = res.unexpected + uas_res.unexpected
    step.answer_ms = res.response_time_ms()
    in_line = rt_seconds(res.last.get("ResponseTime2(C)", ""))
    step.wait_sipp_s = in_line - args.answer_ms / 1000 - step.talk_s
    window = [p for p in polls if w0 <= p.t < w1]
    if window:
        step.polls = len(window)
        step.waiting_mean = statistics.fmean(p.waiting for p in window)
        step.waiting_max = max(p.waiting for p in window)
        step.talking_mean = statistics.fmean(p.agents.get(IN_USE, 0) for p in window)
        step.ringing_mean = statistics.fmean(p.agents.get(RINGING, 0) for p in window)
        step.idle_mean = statistics.fmean(p.agents.get(IDLE, 0) for p in window)
        streak = 0
        for p in window:
            ringing = p.agents.get(RINGING, 0) + p.agents.get(IN_USE_RINGING, 0)
            if p.waiting > ringing and p.agents.get(IDLE, 0):
                step.polls_idle_while_waiting += 1
                streak += 1
                step.idle_while_waiting_streak = max(step.idle_while_waiting_streak, streak)
            else:
                streak = 0
    waits = in_line_times(polls, w0, w1)
    if waits:
        step.wait_mean_s = statistics.fmean(waits)
        step.wait_p50_s = percentile(waits, 0.5)
        step.wait_p95_s = percentile(waits, 0.95)
        step.wait_max_s = max(waits)
    step.cpu = ippbx_s.cpu_percent(w0, w1)
    step.engine_cpu = engine_s.cpu_percent(w0, w1)
    step.rss_max_kb, step.engine_rss_max_kb = ippbx_s.max_rss, engine_s.max_rss
    if step.served_per_s > 0:
        step.cpu_ms_per_call = step.cpu * 10 / step.served_per_s


def verdict(step: Step) -> str:
    why = []
    if step.failed_callers or step.failed_agents:
        why.append(f"{step.failed_callers} callers and {step.failed_agents} agent calls "
                   "failed")
    if step.served_total != step.placed:
        why.append(f"{step.served_total}/{step.placed} callers served")
    why += leftovers((("in line", step.left_in_line), ("agents not idle", step.agents_not_idle),
                      ("in inbound/query", step.left_inbound),
                      ("in outbound/query", step.left_outbound),
                      ("in rtpengine", step.left_engine)), "the drain", step.log_problems)
    return ", ".join(why)


# -- main ---------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=50)
    p.add_argument("--waiting", type=int, default=200,
                   help="callers kept waiting: sipp keeps agents + waiting calls up")
    p.add_argument("--talk-seconds", default="4,2,1",
                   help="comma list: one step each (an agent talks this long, then hangs up)")
    p.add_argument("--answer-ms", type=int, default=300, help="an agent's ringing time")
    p.add_argument("--strategy", default="leastrecent",
                   choices=["ringall", "roundrobin", "leastrecent", "fewestcalls", "random",
                            "linear"])
    p.add_argument("--wrapup", type=int, default=0, help="the queue's wrapup_seconds")
    p.add_argument("--announce", action="store_true",
                   help="announce_position on (each caller hears its place on joining and "
                        "every 30 s); off by default: hold music only")
    p.add_argument("--fill-rate", type=float, default=25.0,
                   help="calls/s while the line fills (each join starts a hold music)")
    p.add_argument("--loop-rate", type=float, default=200.0,
                   help="calls/s at most once the line is full: callers who leave are "
                        "replaced at once (sipp's -l bounds them)")
    p.add_argument("--settle-seconds", type=float, default=10.0,
                   help="after the line filled, before the window")
    p.add_argument("--seconds", type=float, default=40.0, help="the measured window")
    p.add_argument("--poll-seconds", type=float, default=1.0)
    p.add_argument("--max-stay", type=float, default=180.0,
                   help="a caller not hung up on after this long (in line + talk) fails")
    p.add_argument("--media-ports", default=DEFAULT_PORTS, metavar="MIN-MAX")
    p.add_argument("--engine-cpu", type=int, metavar="CPU",
                   help="move rtpengine's threads to this core (default: ippbx's, 0)")
    p.add_argument("--max-minutes", type=float, default=9.5, help="hard wall-clock limit")
    p.add_argument("--json", help="write the results to this JSON file")
    return p.parse_args()


def main(procs: Procs) -> int:
    args = parse_args()
    if shutil.which("rtpengine") is None:
        log("error: rtpengine not found (apt-get install rtpengine-daemon)")
        return 2
    info = machine_info()
    print_machine(info, "bench/queue_load.py " + " ".join(sys.argv[1:]))
    base = workdir("queue")
    log(f"work directory: {base}")
    talks = [float(t) for t in args.talk_seconds.split(",") if t.strip()]
    log(f"queue {QUEUE}: {args.agents} agents ({args.strategy}, wrap-up {args.wrapup} s, "
        f"announce {'on' if args.announce else 'off'}), {args.waiting} callers waiting, "
        f"answer after {args.answer_ms} ms, window {args.seconds:g} s")
    steps = []
    for talk in talks:
        log(f"step: talk {talk:g} s")
        step = run_step(procs, base, talk, args)
        for line in step.lines():
            log(line)
        if step.log_problems:
            log("  ippbx log: " + "; ".join(f"{c} x {k}" for k, c in
                                            sorted(step.log_problems.items())[:8]))
        steps.append(step)
    log("")
    log(table(
        ["talk s", "served calls/s", "waiting mean (max)", "agents talking (mean)",
         "time in line mean / p95 s", "ippbx CPU %", "ms CPU/call", "ippbx RSS MiB "
         "before → max → after", "rtpengine CPU %", "rtpengine RSS MiB before → max → after",
         "failed", "left after"],
        [[f"{s.talk_s:g}", f"{s.served_per_s:.1f}", f"{s.waiting_mean:.0f} ({s.waiting_max})",
          f"{s.talking_mean:.1f}", f"{s.wait_mean_s:.1f} / {s.wait_p95_s:.0f}",
          f"{s.cpu:.1f}", f"{s.cpu_ms_per_call:.2f}",
          f"{s.rss_before_kb / 1024:.0f} → {s.rss_max_kb / 1024:.0f} → "
          f"{s.rss_after_kb / 1024:.0f}", f"{s.engine_cpu:.1f}",
          f"{s.engine_rss_before_kb / 1024:.0f} → {s.engine_rss_max_kb / 1024:.0f} → "
          f"{s.engine_rss_after_kb / 1024:.0f}",
          f"{s.failed_callers + s.failed_agents}",
          "0" if s.clean else s.why] for s in steps]))
    save_json(args.json, {"machine": info, "args": vars(args),
                          "steps": [asdict(s) | {"clean": s.clean} for s in steps]})
    return 0 if steps and all(s.clean for s in steps) else 1


if __name__ == "__main__":
    require_tools("sipp")
    bench_main(main, parse_args().max_minutes * 60)
