"""SIP call rate: the highest rate ippbx carries cleanly (RFC 7501/7502 style), and more.

Run from the repository root with the project's virtualenv:

    .venv/bin/python bench/sip_cps.py --scenario a          # (a), 30 s steps, ~5-8 min
    .venv/bin/python bench/sip_cps.py --scenario b          # (b) and its sippy baseline
    .venv/bin/python bench/sip_cps.py --scenario a --step-seconds 5     # quick, development
    .venv/bin/python bench/sip_cps.py --fixed-rate 100 --step-seconds 30  # the issue 4 check
    .venv/bin/python bench/sip_cps.py --profile 300        # py-spy profile of (a) at 300/s
    .venv/bin/python bench/sip_cps.py --with-session --max-minutes 16   # reports' cost
    .venv/bin/python bench/sip_cps.py --fixed-rate 200 --step-seconds 10 --with-session
    .venv/bin/python bench/sip_cps.py --profile 300 --with-session  # ... where reports go
    .venv/bin/python bench/sip_cps.py --media                       # media anchored: cost
    .venv/bin/python bench/sip_cps.py --fixed-rate 300 --step-seconds 20 --media
    .venv/bin/python bench/sip_cps.py --profile 300 --media         # ... what media costs
    .venv/bin/python bench/sip_cps.py --step-seconds 10 --plot cps.png  # + a figure

Scenarios (ippbx pinned to core 0, sipp on core 1, everything on 127.0.0.1):
  (a) an authenticated extension calls out through a trunk: 1001 REGISTERs once (a short
      separate sipp run), then every call is INVITE, 407, ACK, INVITE with
      Proxy-Authorization, 200, ACK, hold, BYE (bench/scenarios/ext_uac_auth.xml) to a sipp
      UAS acting as the carrier.
  (b) a carrier calls in: ippbx's dial plan has no trunk → trunk routing (an inbound route's
      destination is an extension or "hangup"), so (b) measures trunk → extension instead:
      a sipp UAC as the trunk, a sipp UAS registered as extension 1002. Baseline in the same
      run: PyPI `sippy`'s b2bua_simple (one receive thread, logging off; virtualenv
      bench/.venv-sippy created on first use) carrying the same sipp UAC → UAS calls.

Overload (scenario (a), after its search, unless --no-overload; or alone with
--overload-from RATE): one step offered at --overload-factor (2) x the clean rate found
in the same run, reporting goodput (calls completed per second of the step) as a share
of that clean rate, the failed calls by the status the UAC received (503 is ippbx's
overload control refusing new calls), and how many calls were still in the registry
(`outbound/query`) --settle-seconds (240) after the load stopped (0 is the goal: no
ghost calls).

With an application logged in (--with-session; scenario (a)): every step "a+app" runs a
report receiver (bench/report_sink.py, its own process on core 1: answers 200 with
Content-Length: 0, counts reports by action; with --receiver keep-alive, the default, it
keeps each connection open for the next report as an HTTP/1.1 server does, with
--receiver close it closes after each answer, as the vendors ask of a receiver; ippbx
reuses a connection a receiver keeps open) and logs in to ippbx's API with
that receiver as the report `port` before placing calls (ippbx's report courier, the
process that POSTs them with `[reports] own_process`, is moved to --courier-cpu, core 1,
and its CPU reported beside ippbx's), so ippbx POSTs ~7 reports per
call (ALERT, RING, ANSWER x2, BYE x2, NewCdr; ExtensionStatus on top) while carrying
them. After (a)'s search: if --max-minutes leaves room, a search for the clean rate with
the session, starting at (a)'s clean rate, so its first step is at the same offered rate
as (a)'s clean steps without a session (else just that one step). With --fixed-rate
RATE: one step without and one with the session at RATE. Reported: the rates with and
without and their ratio (goal: clean rate with >= 0.90 x without), ippbx's CPU in each,
reports received vs expected (7 per completed call), and the reports still in ippbx's
SQLite outbox when it stopped (up to --drain-seconds after the calls ended for deliveries
to catch up).

With media anchored (--media; scenario (a)): every step "a+media" runs ippbx with
`[media] engine = "rtpengine"` (RTP ports --media-ports), so each call's SDP goes through
ippbx's own rtpengine (ng offer on the INVITE, answer on the 200, delete at the end); the
other steps run with `engine = "none"` (SDP untouched), as every step does without
--media. rtpengine is ippbx's child and inherits its core (0): the two share one core
(--engine-cpu 1 moves rtpengine's threads to the load generators' core instead).
After (a)'s search, the same as with a session: a search with media from (a)'s clean rate
if --max-minutes leaves room (else one step at that rate); with --fixed-rate RATE one
step each at RATE. Reported: both rates and their ratio, ippbx's CPU, rtpengine's CPU
(% of one core over the step) and peak RSS, the calls it managed (ended) during the step,
those it ended by its own RTP timeout, the RTP packets it relayed, and the calls it still
holds (ng `list`) once ippbx's registry is empty and up to 10 s more (goal: 0). sipp sends
no RTP unless --rtp: then the caller plays sipp's g711a.pcap (7 s of PCMA, 33 packets/s)
from its answer on and the callee echoes it (sipp -rtp_echo), in every step (also without
media, end to end); call setup is what is measured either way (the calling sipp does not
read the echo: RcvbufErrors count it). Any WARNING or worse line in ippbx's log is counted
and shown under the step.

--fixed-rate RATE runs one step of (a) at RATE, or of (b) with --scenario b (ippbx only,
no sippy run: for a profile or an alternated CPU pair of the transit path).

Plot (--plot FILE.png; matplotlib, the `bench` extra, imported only then): three panels
drawn from this run's own steps of (a) (probes, full steps and the overload step):
ippbx's CPU % of one core and its peak RSS against the offered call rate, and goodput
(completed calls per second of the step) against offered load beside the y = x line;
clean steps filled, the others hollow.

Method: a step holds an offered rate for --step-seconds. A step is clean with 0 failed
calls, 0 retransmissions, 0 out-of-call / dead-call messages (UAC and UAS counted) and an
achieved rate >= 0.95 x offered (sipp -trace_stat, read by column name). Probe steps
(--probe-seconds, by default as long as a full step) double the rate until a step is not
clean and bisect until the clean and not-clean rates are within --tolerance (15 %). With
full-length probes the best clean probe is the first full step; with shorter probes full
steps start at the best probe rate and back off (x --backoff) until one is clean, then
bisect once towards the failed rate. The final rate is run --repeats times in all (clean
in no more than half of them, it backs off and repeats again, --max-backoffs times); the
median achieved rate is reported with ippbx's CPU % (of one core, over the step), its
peak RSS and the host's UDP RcvbufErrors during the step. Each step runs on a fresh ippbx
(or sippy) and fresh ports. Exit 0 when every measurement completed (goals are reported,
not enforced), 1 if one could not be made, 2 if sipp is missing, 3 on overrun.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import re
import sqlite3
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchlib import (
    BENCH,
    IPPBX_CPU,
    LOAD_CPU,
    VENV_BIN,
    Procs,
    ProcSampler,
    bench_main,
    free_port,
    log,
    machine_info,
    median,
    pinned,
    print_machine,
    rcvbuf_errors,
    save_json,
    shown_args,
    table,
    wait_bound,
    workdir,
)
from medialib import (
    DEFAULT_PORTS,
    NgProbe,
    find_courier,
    find_engine,
    log_problems,
    parse_media_ports,
    pin_threads,
)
from peers import Ippbx, PbxConfig, Sipp, achieved_rate, ext_password, register, row_elapsed

SIPPY_VENV = BENCH / ".venv-sippy"
GOAL_A = 1000.0  # calls/s clean, scenario (a)
GOAL_B_RATIO = 6.7  # x sippy, scenario (b)
STEP_OVERHEAD_S = 8.0  # start ippbx, register, UAS, drain, stop
SESSION = "a+app"  # scenario (a) with an API application logged in, its receiver answering
SESSION_OVERHEAD_S = 5.0  # the report sink; (plus up to --drain-seconds)
GOAL_SESSION_RATIO = 0.9  # clean rate with a session / without
MEDIA = "a+media"  # scenario (a) with every call's media anchored on ippbx's rtpengine
MEDIA_OVERHEAD_S = 15.0  # the engine's start, its calls deleted
RTP_PCAP = Path("/usr/share/sip-tester/g711a.pcap")  # sipp's own (Debian sip-tester)
CALL_REPORTS = {"ALERT": 1, "RING": 1, "ANSWER": 2, "BYE": 2, "NewCdr": 1}  # per call of
# (a), OpenVox form (the caller side's ANSWERED is an ANSWER there)


@dataclass
class Step:
    setup: str
    offered: float
    seconds: float
    achieved: float = 0.0
    successful: int = 0
    failed: int = 0
    retransmissions: int = 0
    unexpected: int = 0
    cpu_percent: float = float("nan")
    rss_kb: int = 0
    rcvbuf_errors: int = 0
    setup_ms: float = float("nan")
    leftover_calls: int = -1  # live calls the API still lists after the run (-1: not asked)
    empty_after_s: float = float("nan")  # seconds after the run until that list was empty
    failures: dict[str, int] | None = None  # failed UAC calls by what ended them
    elapsed_s: float = float("nan")  # the UAC's run, first call to the last one's end
    clean: bool = False
    why: str = ""
    # with a session (SESSION steps): reports the receiver got, by action; expected (for
    # the completed calls); left in the outbox when ippbx stopped; seconds after the
    # calls until the receiver had them all (nan: not within --drain-seconds)
    reports: dict[str, int] | None = None
    reports_received: int = -1
    reports_expected: int = -1
    outbox_left: int = -1
    reports_done_after_s: float = float("nan")
    # with media (MEDIA steps): rtpengine's CPU % (one core) over the step and peak RSS;
    # what its statistics say after the step: calls managed (ended), ended by its RTP
    # timeout, RTP packets relayed; the calls its ng `list` still had at the end
    engine_cpu_percent: float = float("nan")
    engine_rss_kb: int = 0
    engine_managed: int = -1
    engine_timeouts: int = -1
    rtp_packets: int = -1
    engine_calls_left: int = -1
    log_problems: dict[str, int] | None = None  # ippbx's WARNING+ lines, by kind
    courier_cpu_percent: float = float("nan")  # ippbx's report courier, % of one core

    def line(self) -> str:
        verdict = "clean" if self.clean else f"NOT clean ({self.why})"
        text = (f"  {self.setup:6} {self.offered:7.0f}/s x {self.seconds:.0f}s: achieved "
                f"{self.achieved:7.1f}/s, ok {self.successful}, failed {self.failed}, "
                f"retrans {self.retransmissions}, unexpected {self.unexpected}, "
                f"cpu {self.cpu_percent:5.1f}%, rss {self.rss_kb / 1024:.1f} MiB, "
                f"rcvbuf {self.rcvbuf_errors}, setup {self.setup_ms:.1f} ms -> {verdict}")
        if not math.isnan(self.courier_cpu_percent):
            text += f"\n         report courier cpu {self.courier_cpu_percent:.1f}%"
        if self.reports is not None:
            text += (f"\n         reports received {self.reports_received} (expected >= "
                     f"{self.reports_expected}), outbox left {self.outbox_left}, by action "
                     f"{json.dumps(self.reports, sort_keys=True)}")
        if self.engine_managed >= 0 or self.engine_rss_kb:
            text += (f"\n         rtpengine cpu {self.engine_cpu_percent:.1f}%, rss "
                     f"{self.engine_rss_kb / 1024:.1f} MiB, calls managed "
                     f"{self.engine_managed}, RTP timeouts {self.engine_timeouts}, RTP "
                     f"packets relayed {self.rtp_packets}, calls left (ng list) "
                     f"{self.engine_calls_left}")
        if self.log_problems:
            text += "\n         ippbx log: " + "; ".join(
                f"{n} x {k}" for k, n in sorted(self.log_problems.items(), key=lambda kv: -kv[1]))
        return text


# -- the report receiver (SESSION steps) -------------------------------------------------------


class Sink:
    """bench/report_sink.py as its own process on LOAD_CPU."""

    def __init__(self, procs: Procs, wd: Path, keep_alive: bool) -> None:
        self.procs, self.wd = procs, wd
        self.port = free_port()
        argv = [str(VENV_BIN / "python"), str(BENCH / "report_sink.py"), "--port",
                str(self.port), "--counts", str(wd / "sink.json")]
        if keep_alive:
            argv.append("--keep-alive")
        self.proc = procs.spawn(pinned(LOAD_CPU, argv), wd, "sink")
        if not wait_bound(self.port, "tcp", 15, self.proc):
            raise RuntimeError("report_sink.py did not start: "
                               + (wd / "sink.stderr").read_text(errors="replace")[-2000:])

    def counts(self) -> dict[str, int]:
        """Reports received so far by action (and "total")."""
        url = f"http://127.0.0.1:{self.port}/counts"
        with urllib.request.urlopen(url, timeout=5) as resp:
            data = json.loads(resp.read())
        return {"total": int(data["total"]), **data["actions"]}

    def stop(self) -> dict[str, int]:
        self.procs.stop(self.proc)
        try:
            data = json.loads((self.wd / "sink.json").read_text())
        except (OSError, ValueError):
            return {}
        return {"total": int(data["total"]), **data["actions"]}


def outbox_count(db: Path) -> int:
    """Rows in ippbx's report outbox (-1 if it cannot be read)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    except sqlite3.Error:
        return -1


def expected_reports(successful: int) -> int:
    return successful * sum(CALL_REPORTS.values())


# -- the sippy baseline -------------------------------------------------------------------------


def ensure_sippy() -> Path:
    """bench/.venv-sippy with PyPI `sippy` in it (created on first use); its python."""
    python = SIPPY_VENV / "bin" / "python"
    check = [str(python), "-c", "import sippy.b2bua_simple"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    log(f"creating {SIPPY_VENV} with PyPI sippy (the scenario (b) baseline)")
    subprocess.run([sys.executable, "-m", "venv", str(SIPPY_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "sippy"], check=True)
    subprocess.run(check, check=True)
    return python


# -- one step ---------------------------------------------------------------------------------


class Runner:
    def __init__(self, procs: Procs, base: Path, hold_ms: int, deadline: float,
                 sippy_python: Path | None = None, sip_extra: list[str] | None = None,
                 drain_s: float = 30.0, media_ports: tuple[int, int] = (10000, 32000),
                 rtp: bool = False, engine_cpu: int | None = None,
                 receiver: str = "keep-alive", courier_cpu: int = int(LOAD_CPU)) -> None:
        self.procs, self.base, self.hold_ms = procs, base, hold_ms
        self.courier_cpu = courier_cpu  # where ippbx's report courier runs
        self.receiver = receiver  # the report sink: "keep-alive" or "close"
        self.engine_cpu = engine_cpu  # None: rtpengine stays on ippbx's core
        self.media_ports = media_ports
        self.rtp_pcap = RTP_PCAP if rtp else None
        self.drain_s = drain_s
        self.sip_extra = sip_extra or []
        self.deadline = deadline
        self.sippy_python = sippy_python
        self.count = collections.Counter[str]()
        self.steps: list[Step] = []

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def fits(self, seconds: float, setup: str = "a") -> bool:
        extra = SESSION_OVERHEAD_S + self.drain_s if setup == SESSION else \
            MEDIA_OVERHEAD_S if setup == MEDIA else 0.0
        return self.time_left() > seconds + self.hold_ms / 1000 + STEP_OVERHEAD_S + 5 + extra

    def step(self, setup: str, rate: float, seconds: float,
             profile: Path | None = None, settle: float = 10.0) -> Step:
        self.count[setup] += 1
        wd = self.base / f"{setup}-{self.count[setup]:02d}-{rate:g}"
        wd.mkdir(parents=True)
        result = Step(setup, rate, seconds)
        uac_port, uas_port, sip_port, api_port = (free_port() for _ in range(4))
        calls = max(1, round(rate * seconds))
        hold_s = self.hold_ms / 1000
        pbx: Ippbx | None = None
        target = None
        uas: Sipp | None = None
        sink: Sink | None = None
        engine_sampler: ProcSampler | None = None
        courier_sampler: ProcSampler | None = None
        probe: NgProbe | None = None
        try:
            common = dict(remote=f"127.0.0.1:{sip_port}", port=uac_port, calls=calls,
                          rate=rate, limit=int(rate * (hold_s + 3)) + 20,
                          hold_ms=self.hold_ms, timeout_s=seconds + hold_s + 60)
            if setup in ("a", SESSION, MEDIA):
                cfg = PbxConfig(sip_port, api_port, wd / "ippbx.sqlite3",
                                trunks=[("carrier", uas_port)], outbound_trunks=["carrier"],
                                sip_extra=self.sip_extra)
                if setup == MEDIA:
                    cfg.media = {"engine": "rtpengine", "port_min": self.media_ports[0],
                                 "port_max": self.media_ports[1]}
                if setup == SESSION:
                    sink = Sink(self.procs, wd, keep_alive=self.receiver == "keep-alive")
                pbx = Ippbx(self.procs, wd, cfg).start()
                target = pbx.proc
                if setup == MEDIA:
                    engine = find_engine(pbx.pid)
                    if self.engine_cpu is not None:
                        pin_threads(engine.pid, {self.engine_cpu})
                    engine_sampler = ProcSampler(engine.pid)
                    probe = NgProbe(engine.ng_port)
                courier = find_courier(pbx.pid)  # ([reports] own_process: on the load's core)
                if courier is not None:
                    pin_threads(courier, {self.courier_cpu})
                    courier_sampler = ProcSampler(courier)
                if sink is not None:  # reports to http://127.0.0.1:<sink>/ from now on
                    pbx.login(port=str(sink.port))
                rtp = self.rtp_pcap is not None
                uas = Sipp(self.procs, wd, "uas", "uas.xml", port=uas_port, pcma=rtp,
                           rtp_echo=rtp).start(uas=True)
                register(self.procs, wd, pbx, "1001", uac_port)
                uac = Sipp(self.procs, wd, "uac", "ext_uac_auth.xml",
                           auth=("1001", ext_password("1001")), keys={"user": "1001"},
                           service="95551234", rtp_pcap=self.rtp_pcap, pcma=rtp,
                           **common)  # type: ignore[arg-type]
            elif setup == "b":
                cfg = PbxConfig(sip_port, api_port, wd / "ippbx.sqlite3",
                                trunks=[("carrier", uac_port)],
                                inbound=[("carrier", "5550100", "1002")],
                                sip_extra=self.sip_extra)
                pbx = Ippbx(self.procs, wd, cfg).start()
                target = pbx.proc
                register(self.procs, wd, pbx, "1002", uas_port)
                uas = Sipp(self.procs, wd, "uas", "uas.xml", port=uas_port).start(uas=True)
                uac = Sipp(self.procs, wd, "uac", "trunk_uac.xml", service="5550100",
                           keys={"caller": "5551234"}, **common)  # type: ignore[arg-type]
            elif setup == "sippy":
                assert self.sippy_python is not None
                argv = [str(self.sippy_python), str(BENCH / "sippy_b2bua.py"), "-f",
                        "-l", "127.0.0.1", "-p", str(sip_port), "-n", f"127.0.0.1:{uas_port}"]
                target = self.procs.spawn(pinned(IPPBX_CPU, argv), wd, "sippy",
                                          env={"SIPLOG_BEND": "none"})
                if not wait_bound(sip_port, "udp", 20, target):
                    raise RuntimeError("sippy b2bua_simple did not start: "
                                       + (wd / "sippy.stderr").read_text()[-2000:])
                uas = Sipp(self.procs, wd, "uas", "uas.xml", port=uas_port).start(uas=True)
                uac = Sipp(self.procs, wd, "uac", "trunk_uac.xml", service="5550100",
                           keys={"caller": "5551234"}, **common)  # type: ignore[arg-type]
            else:
                raise ValueError(setup)
            assert target is not None
            spy = None
            if profile is not None:
                spy_argv = [str(VENV_BIN / "py-spy"), "record", "--pid", str(target.pid),
                            "--duration", str(int(seconds)), "--rate", "100",
                            "--format", "raw", "--function", "--nonblocking",
                            "-o", str(profile)]
                spy = self.procs.spawn(pinned(LOAD_CPU, spy_argv), wd, "py-spy")
                time.sleep(1.0)  # let py-spy attach before the load starts
            sampler = ProcSampler(target.pid)
            snmp0 = rcvbuf_errors()
            sampler.sample()
            for other in (engine_sampler, courier_sampler):
                if other is not None:
                    other.sample()
            t0 = time.monotonic()
            uac.start()

            def tick() -> None:
                if target.poll() is None:
                    sampler.sample()
                    for other in (engine_sampler, courier_sampler):
                        if other is not None:
                            with contextlib.suppress(OSError):
                                other.sample()

            res = uac.wait(seconds + hold_s + 70, on_tick=tick)
            tick()
            time.sleep(0.7)  # the UAS keeps each call 0.5 s after BYE
            uas_res = uas.stop()
            result.rcvbuf_errors = rcvbuf_errors() - snmp0
            result.cpu_percent = sampler.cpu_percent(t0, t0 + seconds)
            if courier_sampler is not None:
                result.courier_cpu_percent = courier_sampler.cpu_percent(t0, t0 + seconds)
            result.rss_kb = sampler.max_rss
            result.achieved = achieved_rate(res, calls)
            result.successful = res.successful
            result.failed = res.failed + uas_res.failed
            result.retransmissions = res.retransmissions + uas_res.retransmissions
            result.unexpected = res.unexpected + uas_res.unexpected
            result.setup_ms = res.response_time_ms()
            if spy is not None:
                self.procs.stop(spy, 2, 30)  # SIGINT: py-spy writes what it has
            result.failures = failure_causes(wd / "uac" / "errors.log")
            timed = [r for r in res.rows if r.get("CurrentTime") and r.get("StartTime")]
            if timed:
                result.elapsed_s = row_elapsed(timed[-1])
            if pbx is not None:
                query = pbx.inbound if setup == "b" else pbx.outbound
                settled = time.monotonic()
                result.leftover_calls = len(pbx.wait_empty(query, settle))
                result.empty_after_s = (time.monotonic() - settled
                                        if result.leftover_calls == 0 else math.nan)
            if engine_sampler is not None and probe is not None:
                result.engine_cpu_percent = engine_sampler.cpu_percent(t0, t0 + seconds)
                result.engine_rss_kb = engine_sampler.max_rss
                probe.wait_empty(10.0)  # ippbx deletes a call's engine call once it ended
                result.engine_calls_left = len(probe.list_calls())
                stats = probe.statistics()
                result.engine_managed = stats["managed"]
                result.engine_timeouts = stats["timeouts"] + stats["silent_timeouts"]
                result.rtp_packets = stats["relayed_packets"]
            why = []
            if target.poll() is not None:
                why.append(f"{setup} exited ({target.returncode})")
            if res.returncode != 0:
                why.append(f"sipp exit {res.returncode}")
            if result.failed:
                why.append(f"{result.failed} failed")
            if result.successful != calls:
                why.append(f"{result.successful}/{calls} ok")
            if result.retransmissions:
                why.append(f"{result.retransmissions} retrans")
            if result.unexpected:
                why.append(f"{result.unexpected} unexpected msgs")
            if result.achieved < 0.95 * rate:
                why.append(f"achieved {result.achieved:.0f} < 0.95 x {rate:g}")
            if result.leftover_calls > 0:
                why.append(f"{result.leftover_calls} calls left in the registry")
            if result.engine_calls_left > 0:
                why.append(f"{result.engine_calls_left} calls left in rtpengine")
            result.clean, result.why = not why, ", ".join(why)
            if res.errors and not result.clean:
                (wd / "why.txt").write_text(res.errors)
            if sink is not None and pbx is not None:
                self._drain(result, sink, t0 + res_elapsed(result, seconds, hold_s))
                pbx.stop()  # (its outbox: what it had not delivered)
                counts = sink.stop()
                result.reports_received = counts.pop("total", -1)
                result.reports = counts
                result.outbox_left = outbox_count(wd / "ippbx.sqlite3")
        except RuntimeError as exc:
            result.why = str(exc).splitlines()[0][:200]
            log(f"  step failed to run: {exc}")
        finally:
            if uas is not None and uas.running:
                uas.kill()
            if pbx is not None:
                pbx.stop()
                result.log_problems = dict(log_problems(wd / "ippbx.stderr"))
            elif target is not None:
                self.procs.stop(target)
            if sink is not None:
                sink.stop()
        log(result.line())
        self.steps.append(result)
        return result


    def _drain(self, result: Step, sink: Sink, calls_ended: float) -> None:
        """Wait (up to --drain-seconds) until the sink has the reports of every completed
        call, or its count stops growing for 3 s."""
        result.reports_expected = expected_reports(result.successful)
        deadline = time.monotonic() + self.drain_s
        last, still_since = -1, time.monotonic()
        while True:
            try:
                got = sink.counts()
            except (OSError, ValueError):
                return
            calls_done = sum(got.get(a, 0) for a in CALL_REPORTS)
            now = time.monotonic()
            if calls_done >= result.reports_expected:
                result.reports_done_after_s = max(0.0, now - calls_ended)
                return
            if got["total"] != last:
                last, still_since = got["total"], now
            if now > deadline or now - still_since > 3.0:
                return
            time.sleep(0.25)


def res_elapsed(result: Step, seconds: float, hold_s: float) -> float:
    """Seconds from the start of the load to the end of its last call (about)."""
    return result.elapsed_s if not math.isnan(result.elapsed_s) else seconds + hold_s


_RECEIVED = re.compile(r"received '?SIP/2\.0 (\d{3})")


def failure_causes(errors_log: Path) -> dict[str, int]:
    """sipp's error log, counted by cause: the status of an unexpected final response
    ("503"), or "timeout" / "other"."""
    causes = collections.Counter[str]()
    try:
        text = errors_log.read_text(errors="replace")
    except OSError:
        return {}
    for line in text.splitlines():
        if "Aborting call" not in line and "timed out" not in line.lower() \
                and "timeout" not in line.lower():
            continue
        if (m := _RECEIVED.search(line)) is not None:
            causes[m.group(1)] += 1
        elif "timeout" in line.lower() or "timed out" in line.lower():
            causes["timeout"] += 1
        else:
            causes["other"] += 1
    return dict(causes)


def overload_step(runner: Runner, clean_rate: float, args: argparse.Namespace) -> Step:
    """(a) at args.overload_factor x `clean_rate`; the result line says goodput and more."""
    offered = clean_rate * args.overload_factor
    log(f"overload: (a) at {args.overload_factor:g} x the clean rate {clean_rate:.0f}/s "
        f"= {offered:.0f}/s for {args.step_seconds:g} s, then up to {args.settle_seconds:g} s "
        "for the registry to empty")
    step = runner.step("a", offered, args.step_seconds, settle=args.settle_seconds)
    span = goodput_span(step, args.hold_ms)
    goodput = step.successful / span
    failures = ", ".join(f"{k}: {v}" for k, v in sorted((step.failures or {}).items()))
    left = ("empty " + (f"{step.empty_after_s:.0f} s after" if not math.isnan(step.empty_after_s)
                        else "")) if step.leftover_calls == 0 else \
        f"{step.leftover_calls} calls left after {args.settle_seconds:g} s"
    log(f"overload: goodput {goodput:.0f}/s over {span:.0f} s = "
        f"{goodput / clean_rate:.2f} x clean "
        f"(goal >= 0.90); failed calls by cause: {failures or 'none'}; retransmissions "
        f"{step.retransmissions}; registry {left}; ippbx cpu {step.cpu_percent:.0f} %")
    return step


def session_report(without: Step, with_app: Step, found: Found | None = None,
                   found_app: Found | None = None) -> dict[str, object]:
    """Log the comparison of (a) without and with an application logged in; its figures."""
    ratio = with_app.achieved / without.achieved if without.achieved else math.nan
    log(f"session: at {without.offered:g}/s offered: without achieved "
        f"{without.achieved:.1f}/s ({'clean' if without.clean else 'NOT clean'}), ippbx cpu "
        f"{without.cpu_percent:.0f} %; with the application achieved {with_app.achieved:.1f}/s "
        f"({'clean' if with_app.clean else 'NOT clean'}), ippbx cpu "
        f"{with_app.cpu_percent:.0f} %; ratio {ratio:.2f}")
    done = (f"all in {with_app.reports_done_after_s:.1f} s after the calls"
            if not math.isnan(with_app.reports_done_after_s) else "NOT all arrived")
    log(f"session: reports received {with_app.reports_received}, expected >= "
        f"{with_app.reports_expected} ({sum(CALL_REPORTS.values())} per completed call, "
        f"ExtensionStatus on top; {done}); left in ippbx's outbox at its stop: "
        f"{with_app.outbox_left}")
    out: dict[str, object] = {"same_rate": {"without": asdict(without),
                                            "with": asdict(with_app), "ratio": ratio}}
    if found is not None and found_app is not None:
        clean_ratio = (found_app.median_achieved / found.median_achieved
                       if found.median_achieved else math.nan)
        met = clean_ratio >= GOAL_SESSION_RATIO and found_app.clean_runs == found_app.runs
        log(f"session: clean rate with the application {found_app.median_achieved:.0f}/s vs "
            f"{found.median_achieved:.0f}/s without = {clean_ratio:.2f} x; goal >= "
            f"{GOAL_SESSION_RATIO:.2f}: {'MET' if met else 'NOT MET'}")
        out["clean_ratio"] = clean_ratio
    return out


# -- the search -------------------------------------------------------------------------------


def _round_rate(rate: float) -> float:
    if rate < 50:
        return max(1.0, round(rate))
    return float(round(rate / 5) * 5)


@dataclass
class Found:
    setup: str
    rate: float = 0.0  # the offered rate whose full steps were clean
    median_achieved: float = 0.0
    clean_runs: int = 0
    runs: int = 0
    cpu_percent: float = float("nan")
    rss_kb: int = 0
    rcvbuf_errors: int = 0
    setup_ms: float = float("nan")
    engine_cpu_percent: float = float("nan")  # MEDIA: rtpengine's, median of the steps
    engine_rss_kb: int = 0
    note: str = ""


def search(runner: Runner, setup: str, args: argparse.Namespace, start: float) -> Found:
    found = Found(setup)
    log(f"[{setup}] probing with {args.probe_seconds:g} s steps from {start:g}/s")
    lo: float | None = None
    hi: float | None = None
    lo_step: Step | None = None
    rate = start
    for _ in range(args.max_probes):
        if not runner.fits(args.probe_seconds, setup):
            break
        step = runner.step(setup, rate, args.probe_seconds)
        if step.clean:
            lo, lo_step = rate, step
        else:
            hi = rate
        if lo is not None and hi is not None and hi - lo <= max(args.tolerance * lo, 5):
            break
        if hi is None:
            nxt = rate * 2
            if nxt > args.max_rate:
                break
        elif lo is None:
            nxt = rate / 2
            if nxt < 1:
                break
        else:
            nxt = (lo + hi) / 2
        rate = _round_rate(nxt)
        if rate in (lo, hi):
            break
    if lo is None:
        found.note = "no probe step was clean"
        return found
    rate = lo
    full: list[Step] = []
    full_hi: float | None = None  # the lowest rate whose full step was not clean
    if lo_step is not None and args.probe_seconds >= args.step_seconds:
        full.append(lo_step)  # a full-length clean probe is the first full step
    else:
        log(f"[{setup}] full {args.step_seconds:g} s steps from {rate:g}/s")
    for _ in range(0 if full else args.max_backoffs + 1):
        if not runner.fits(args.step_seconds, setup):
            found.note = "out of time before a full step"
            return found
        step = runner.step(setup, rate, args.step_seconds)
        if step.clean:
            full.append(step)
            break
        full_hi = rate
        rate = _round_rate(rate * args.backoff)
    if not full:
        found.note = "no full step was clean"
        return found
    # one bisection between the clean full rate and the failed one, if they are far apart
    if full_hi is not None and full_hi > rate * 1.15 and runner.fits(args.step_seconds, setup):
        mid = _round_rate((rate + full_hi) / 2)
        step = runner.step(setup, mid, args.step_seconds)
        if step.clean:
            rate, full = mid, [step]
    while len(full) < args.repeats and runner.fits(args.step_seconds, setup):
        full.append(runner.step(setup, rate, args.step_seconds))
    # a rate clean in no more than half of its repeats is no clean rate: back off again
    # (a rate that holds once in three at the edge flatters the system)
    for _ in range(args.max_backoffs):
        if sum(s.clean for s in full) * 2 > len(full) or len(full) < args.repeats:
            break
        backed = _round_rate(rate * args.backoff)
        log(f"[{setup}] {rate:g}/s clean in {sum(s.clean for s in full)} of {len(full)} "
            f"repeats: again at {backed:g}/s")
        retry: list[Step] = []
        while len(retry) < args.repeats and runner.fits(args.step_seconds, setup):
            retry.append(runner.step(setup, backed, args.step_seconds))
        if len(retry) < args.repeats:
            break
        rate, full = backed, retry
    if len(full) < args.repeats:
        found.note = f"only {len(full)} of {args.repeats} repeats fitted in the time limit"
    found.rate = rate
    found.runs = len(full)
    found.clean_runs = sum(s.clean for s in full)
    found.median_achieved = median([s.achieved for s in full])
    found.cpu_percent = median([s.cpu_percent for s in full])
    found.rss_kb = max(s.rss_kb for s in full)
    found.rcvbuf_errors = sum(s.rcvbuf_errors for s in full)
    found.setup_ms = median([s.setup_ms for s in full])
    found.engine_cpu_percent = median([s.engine_cpu_percent for s in full])
    found.engine_rss_kb = max(s.engine_rss_kb for s in full)
    return found


def calls_per_cpu_second(steps: list[Step], setup: str) -> float:
    """Calls completed per second of one core over the clean steps of `setup`: the CPU a
    call costs, which the clean rate hides when a system stops being clean before its
    core is full (sippy's one receive thread)."""
    clean = [s for s in steps if s.setup == setup and s.clean]
    cpu_seconds = sum(s.cpu_percent / 100 * s.seconds for s in clean)
    return sum(s.successful for s in clean) / cpu_seconds if cpu_seconds else math.nan


def found_row(f: Found, label: str) -> list[object]:
    return [label, f"{f.rate:g}", f"{f.median_achieved:.0f}", f"{f.clean_runs}/{f.runs}",
            f"{f.cpu_percent:.0f}", f"{f.rss_kb / 1024:.1f}", f.rcvbuf_errors,
            f"{f.setup_ms:.1f}", f.note]


FOUND_HEADERS = ["system", "clean rate (offered/s)", "median achieved/s", "clean runs",
                 "CPU % (1 core)", "peak RSS MiB", "RcvbufErrors", "INVITE→200 ms", "note"]


# -- profile ------------------------------------------------------------------------------------


def top_self(profile: Path, limit: int = 15) -> tuple[list[tuple[str, int]], int]:
    """py-spy raw (collapsed) stacks → the `limit` frames with most self samples."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in profile.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        counts[leaf] += int(n)
        total += int(n)
    return counts.most_common(limit), total


def shorten(frame: str) -> str:
    """"func (/long/path/ippbx/sip/ua.py:12)" → "func (ippbx/sip/ua.py:12)"."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("/site-packages/", "/src/", "/lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})"


# -- plot ---------------------------------------------------------------------------------------


def goodput_span(step: Step, hold_ms: int) -> float:
    """The seconds a step's goodput (completed calls per second) is counted over: from the
    first call to the last one's end, less one hold time (a call placed at the end of the
    step ends that much later), and at least the step."""
    span = step.seconds
    if not math.isnan(step.elapsed_s):
        span = max(span, step.elapsed_s - hold_ms / 1000)
    return span


def plot_steps(steps: list[Step], args: argparse.Namespace, info: dict[str, str]) -> None:
    """--plot: ippbx's CPU % and peak RSS vs offered rate, goodput vs offered load, from
    the steps of (a) in this run (clean steps filled, the others hollow)."""
    points = sorted((s for s in steps if s.setup == "a" and s.successful + s.failed > 0),
                    key=lambda s: s.offered)
    if not points:
        log("plot: no step of (a) to draw")
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cpu_ax, rss_ax, right) = plt.subplots(1, 3, figsize=(15, 4.6))
    offered = [s.offered for s in points]
    clean = [s.clean for s in points]

    def scatter(ax: Any, ys: list[float], color: str, marker: str, label: str) -> None:
        ax.scatter([x for x, c in zip(offered, clean, strict=True) if c],
                   [y for y, c in zip(ys, clean, strict=True) if c],
                   color=color, marker=marker, label=f"{label}, clean step", zorder=3)
        ax.scatter([x for x, c in zip(offered, clean, strict=True) if not c],
                   [y for y, c in zip(ys, clean, strict=True) if not c],
                   facecolors="none", edgecolors=color, marker=marker, zorder=3,
                   label=f"{label}, step not clean")

    cpu = [s.cpu_percent for s in points]
    measured = [c for c in cpu if not math.isnan(c)]
    scatter(cpu_ax, cpu, "tab:blue", "o", "CPU")
    cpu_ax.axhline(100, color="grey", linewidth=0.8, linestyle=":")
    cpu_ax.set_ylim(0, max([110.0] + [c * 1.1 for c in measured]))
    cpu_ax.set_ylabel("ippbx CPU (% of one core, over the step)")
    cpu_ax.set_title("CPU vs offered call rate")

    rss = [s.rss_kb / 1024 for s in points]
    scatter(rss_ax, rss, "tab:red", "s", "RSS")
    rss_ax.set_ylim(0, max(rss) * 1.2)
    rss_ax.set_ylabel("ippbx peak RSS during the step (MiB)")
    rss_ax.set_title("RSS vs offered call rate")
    for ax in (cpu_ax, rss_ax):
        ax.set_xlim(0, max(offered) * 1.05)
        ax.set_xlabel("offered call rate (calls/s)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize="small")

    good = [s.successful / goodput_span(s, args.hold_ms) for s in points]
    top = max(max(offered), max(good)) * 1.05
    right.plot([0, top], [0, top], color="grey", linestyle="--", label="y = x")
    scatter(right, good, "tab:green", "o", "goodput")
    right.set_xlim(0, top)
    right.set_ylim(0, top)
    right.set_xlabel("offered load (calls/s)")
    right.set_ylabel("goodput: completed calls/s")
    right.grid(True, alpha=0.3)
    right.legend(loc="lower right", fontsize="small")
    right.set_title("Goodput vs offered load")

    fig.suptitle("bench/sip_cps.py " + shown_args(sys.argv[1:])
                 + f" (extension → trunk with digest, hold {args.hold_ms} ms)\n"
                 f"{info['cpu']}, {info['cores']} cores, load {info['loadavg_at_start']} at "
                 f"start, {info['date'][:10]}, ippbx {info['commit']}", fontsize="medium")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=100)
    plt.close(fig)
    log(f"plot written to {args.plot} ({len(points)} steps)")


# -- main ---------------------------------------------------------------------------------------


WHAT = {SESSION: ("session", "an application logged in"),
        MEDIA: ("media", "media anchored on rtpengine")}


def paired_steps(runner: Runner, results: dict[str, Found], args: argparse.Namespace,
                 setup: str) -> tuple[Step, Step, Found, Found | None] | None:
    """After (a)'s search: a search of `setup` (SESSION or MEDIA) from (a)'s clean rate
    if it fits (its first step is at that rate), else one `setup` step at that rate; adds
    the search to `results`. (a)'s step and `setup`'s at the same rate, and both searches;
    None when there was no time or no clean rate."""
    tag, what = WHAT[setup]
    found = results["a"]
    if not found.runs or not runner.fits(args.step_seconds, setup):
        log(f"{tag} steps skipped: no clean rate of (a), or not enough time left (raise "
            "--max-minutes)")
        return None

    def at_rate(name: str) -> list[Step]:
        return [s for s in runner.steps if s.setup == name and s.offered == found.rate
                and s.seconds == args.step_seconds]

    found_with = None
    if runner.fits(3 * args.step_seconds, setup):
        log(f"{tag}: searching (a) with {what}, from (a)'s clean rate {found.rate:g}/s")
        found_with = results[setup] = search(runner, setup, args, found.rate)
    else:
        log(f"{tag}: no time for a search with {what} (raise --max-minutes)")
    for name in ("a", setup):
        if not at_rate(name) and runner.fits(args.step_seconds, name):
            log(f"{tag}: (a) at {found.rate:g}/s, {name}")
            runner.step(name, found.rate, args.step_seconds)
    without, with_it = at_rate("a"), at_rate(setup)
    if not without or not with_it:
        log(f"{tag}: no time left for the steps at the same rate (raise --max-minutes)")
        return None
    return without[-1], with_it[0], found, found_with


def media_report(without: Step, with_media: Step, found: Found | None = None,
                 found_media: Found | None = None) -> dict[str, object]:
    """Log the comparison of (a) without and with media anchored; its figures."""
    ratio = with_media.achieved / without.achieved if without.achieved else math.nan
    done = with_media.successful / without.successful if without.successful else math.nan
    log(f"media: at {without.offered:g}/s offered: engine none achieved "
        f"{without.achieved:.1f}/s ({'clean' if without.clean else 'NOT clean'}), ippbx cpu "
        f"{without.cpu_percent:.0f} %; anchored on rtpengine achieved "
        f"{with_media.achieved:.1f}/s ({'clean' if with_media.clean else 'NOT clean'}), "
        f"ippbx cpu {with_media.cpu_percent:.0f} %, rtpengine cpu "
        f"{with_media.engine_cpu_percent:.0f} % and rss "
        f"{with_media.engine_rss_kb / 1024:.1f} MiB; ratio {ratio:.2f} (calls completed: "
        f"{with_media.successful} vs {without.successful} = {done:.2f})")
    log(f"media: rtpengine managed {with_media.engine_managed} calls ({with_media.successful} "
        f"completed), ended {with_media.engine_timeouts} by its RTP timeout, relayed "
        f"{with_media.rtp_packets} RTP packets; calls it still holds (ng list) after the "
        f"step: {with_media.engine_calls_left} "
        f"({'OK' if with_media.engine_calls_left == 0 else 'NOT 0'})")
    out: dict[str, object] = {"same_rate": {"without": asdict(without),
                                            "with": asdict(with_media), "ratio": ratio,
                                            "completed_ratio": done}}
    if found is not None and found_media is not None:
        clean_ratio = (found_media.median_achieved / found.median_achieved
                       if found.median_achieved else math.nan)
        log(f"media: clean rate with media anchored {found_media.median_achieved:.0f}/s "
            f"({found_media.clean_runs}/{found_media.runs} clean, rtpengine cpu "
            f"{found_media.engine_cpu_percent:.0f} %) vs {found.median_achieved:.0f}/s "
            f"with engine none = {clean_ratio:.2f} x")
        out["clean_ratio"] = clean_ratio
    return out


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", choices=["a", "b", "all"], default="a",
                   help="a: ext→trunk; b: trunk→ext and the sippy baseline (each ~5-9 min); "
                        "all: both (give --max-minutes 20)")
    p.add_argument("--step-seconds", type=float, default=30.0, help="full step length")
    p.add_argument("--probe-seconds", type=float,
                   help="search step length (default: --step-seconds; shorter probes "
                        "overestimate ippbx, whose GC pauses grow over the first 32 s)")
    p.add_argument("--hold-ms", type=int, default=1000, help="call hold time (sipp -d)")
    p.add_argument("--start-rate", type=float, default=150.0,
                   help="first ippbx probe rate (near the last result saves steps)")
    p.add_argument("--sippy-start-rate", type=float, default=150.0)
    p.add_argument("--max-rate", type=float, default=8000.0)
    p.add_argument("--max-probes", type=int, default=8)
    p.add_argument("--tolerance", type=float, default=0.15,
                   help="probing stops once clean and not-clean rates are this close")
    p.add_argument("--max-backoffs", type=int, default=4)
    p.add_argument("--backoff", type=float, default=0.8,
                   help="rate factor after a full step that was not clean")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--fixed-rate", type=float, help="one step of (a) at this rate (issue 4)")
    p.add_argument("--profile", type=float, metavar="RATE",
                   help="one step of (a) at RATE under py-spy; print the top 15 by self time")
    p.add_argument("--overload", action=argparse.BooleanOptionalAction, default=True,
                   help="after (a)'s search, one step at --overload-factor x its clean rate")
    p.add_argument("--overload-from", type=float, metavar="RATE",
                   help="only the overload step, taking RATE as the clean rate")
    p.add_argument("--overload-factor", type=float, default=2.0)
    p.add_argument("--overload-control", action=argparse.BooleanOptionalAction, default=True,
                   help="--no-overload-control: run ippbx with [sip] overload_control = false")
    p.add_argument("--sip-option", action="append", default=[], metavar="KEY=VALUE",
                   help="one more [sip] line for ippbx's configuration (repeatable), "
                        "e.g. overload_backlog_kib=1024")
    p.add_argument("--with-session", action="store_true",
                   help="(a) also with one API application logged in and its receiver "
                        "(bench/report_sink.py) answering: a step at the clean rate found "
                        "(or --fixed-rate), then a search with the session if time allows")
    p.add_argument("--receiver", choices=["keep-alive", "close"], default="keep-alive",
                   help="with --with-session: the report receiver keeps connections open "
                        "(an HTTP/1.1 server) or closes each after its answer (what the "
                        "vendors ask of a receiver)")
    p.add_argument("--media", action="store_true",
                   help="(a) also with every call's media anchored on ippbx's rtpengine "
                        "([media] engine = \"rtpengine\"): a step at the clean rate found "
                        "(or --fixed-rate), then a search with media if time allows")
    p.add_argument("--media-ports", default=DEFAULT_PORTS, metavar="MIN-MAX",
                   help="rtpengine's RTP ports with --media (4 per call: RTP and RTCP on "
                        "each leg; clear of the ephemeral ports, see bench/medialib.py)")
    p.add_argument("--courier-cpu", type=int, metavar="CPU", default=LOAD_CPU,
                   help="the core ippbx's report courier ([reports] own_process) is moved to "
                        f"(default {LOAD_CPU}: the load generators' and the receiver's)")
    p.add_argument("--engine-cpu", type=int, metavar="CPU",
                   help="with --media: move rtpengine's threads to this core (default: it "
                        f"shares ippbx's, {IPPBX_CPU}; the load generators run on {LOAD_CPU})")
    p.add_argument("--rtp", action="store_true",
                   help="the caller sends RTP from the answer on (sipp play_pcap_audio of "
                        f"{RTP_PCAP}, 7 s), in every step")
    p.add_argument("--drain-seconds", type=float, default=30.0,
                   help="with a session: wait up to this long after the calls for the "
                        "reports to arrive before stopping ippbx")
    p.add_argument("--settle-seconds", type=float, default=240.0,
                   help="after the overload step, wait up to this long for no call left")
    p.add_argument("--max-minutes", type=float, default=9.5, help="hard wall-clock limit")
    p.add_argument("--json", help="write the results to this JSON file")
    p.add_argument("--plot", metavar="FILE.png",
                   help="draw CPU and RSS vs offered rate, goodput vs offered load (the "
                        "steps of (a) in this run) to this PNG (needs matplotlib)")
    args = p.parse_args()
    if args.scenario == "b" and (args.with_session or args.media):
        p.error("--with-session and --media compare steps of scenario (a): "
                "not with --scenario b")
    return args


def main(procs: Procs) -> int:
    args = parse_args()
    if args.probe_seconds is None:
        args.probe_seconds = args.step_seconds
    info = machine_info()
    print_machine(info, "bench/sip_cps.py " + " ".join(sys.argv[1:]))
    if args.with_session:
        log(f"report receiver: {args.receiver} (bench/report_sink.py)")
    base = workdir("cps")
    log(f"work directory: {base}")
    deadline = time.monotonic() + args.max_minutes * 60 - 15
    out: dict[str, object] = {"machine": info, "args": vars(args)}

    media_ports = parse_media_ports(args.media_ports)
    if args.rtp and not RTP_PCAP.exists():
        log(f"error: --rtp needs {RTP_PCAP} (Debian sip-tester)")
        return 2
    plain = "b" if args.scenario == "b" else "a"  # the step of --fixed-rate and --profile
    if args.fixed_rate is not None:  # the issue 4 check (and the session's, media's cost)
        runner = Runner(procs, base, args.hold_ms, deadline, drain_s=args.drain_seconds,
                        media_ports=media_ports, rtp=args.rtp,
                        engine_cpu=args.engine_cpu, receiver=args.receiver,
                        courier_cpu=args.courier_cpu)
        passed = True
        steps = {}
        setups = [plain] + [SESSION] * args.with_session + [MEDIA] * args.media
        for setup in setups:
            step = steps[setup] = runner.step(setup, args.fixed_rate, args.step_seconds)
            ok = step.failed == 0 and \
                step.successful == round(args.fixed_rate * args.step_seconds)
            empty = step.leftover_calls == 0 and step.engine_calls_left <= 0
            left = f"{step.leftover_calls} calls left" if step.leftover_calls else "[]"
            if setup == MEDIA:
                left += f", rtpengine holds {step.engine_calls_left} calls"
            log(f"issue 4 check ({setup}): {step.successful} calls ok, {step.failed} failed; "
                f"outbound/query after the run: {left} -> "
                f"{'PASS' if ok and empty else 'FAIL'} (step clean: {step.clean})")
            passed = passed and ok and empty
        out["fixed"] = asdict(steps[plain])
        if args.with_session:
            out["session"] = session_report(steps[plain], steps[SESSION])
        if args.media:
            out["media"] = media_report(steps[plain], steps[MEDIA])
        save_json(args.json, out)
        if args.plot:
            plot_steps(runner.steps, args, info)
        return 0 if passed else 1

    sip_extra = [] if args.overload_control else ["overload_control = false"]
    sip_extra += [" = ".join(part.strip() for part in option.split("=", 1))
                  for option in args.sip_option]
    if args.overload_from is not None:
        runner = Runner(procs, base, args.hold_ms, deadline, sip_extra=sip_extra)
        step = overload_step(runner, args.overload_from, args)
        out["overload"] = {"clean_rate": args.overload_from, "step": asdict(step)}
        save_json(args.json, out)
        if args.plot:
            plot_steps(runner.steps, args, info)
        return 0

    if args.profile is not None:
        runner = Runner(procs, base, args.hold_ms, deadline, drain_s=args.drain_seconds,
                        media_ports=media_ports, rtp=args.rtp,
                        engine_cpu=args.engine_cpu, receiver=args.receiver,
                        courier_cpu=args.courier_cpu)
        profile = base / "py-spy.txt"
        setup = SESSION if args.with_session else MEDIA if args.media else plain
        step = runner.step(setup, args.profile, args.step_seconds, profile=profile)
        if not profile.exists():
            log("py-spy wrote no profile (see py-spy.stderr in the work directory)")
            return 1
        top, total = top_self(profile)
        wall = args.step_seconds * 100
        log(f"py-spy: {total} samples of ippbx while busy ({100 * total / wall:.0f} % of "
            f"{args.step_seconds:g} s at 100 Hz); top 15 by self time:")
        rows = [[i + 1, shorten(f), n, f"{100 * n / total:.1f}"] for i, (f, n) in enumerate(top)]
        log(table(["#", "function (file:line of def)", "self samples", "% of busy"], rows))
        out["profile"] = {"step": asdict(step), "top": rows, "total": total,
                          "raw": str(profile)}
        save_json(args.json, out)
        return 0

    sippy_python = ensure_sippy() if args.scenario in ("b", "all") else None
    runner = Runner(procs, base, args.hold_ms, deadline, sippy_python, sip_extra=sip_extra,
                    drain_s=args.drain_seconds, media_ports=media_ports, rtp=args.rtp,
                    engine_cpu=args.engine_cpu, receiver=args.receiver,
                    courier_cpu=args.courier_cpu)
    results: dict[str, Found] = {}
    if args.scenario in ("a", "all"):
        results["a"] = search(runner, "a", args, args.start_rate)
        clean = results["a"].median_achieved
        if args.with_session:
            pair = paired_steps(runner, results, args, SESSION)
            out["session"] = session_report(*pair) if pair else {}
        if args.media:
            pair = paired_steps(runner, results, args, MEDIA)
            out["media"] = media_report(*pair) if pair else {}
        needed = args.step_seconds + args.settle_seconds + STEP_OVERHEAD_S
        if args.overload and args.media:
            log("overload step skipped with --media (run it on its own: --overload-from)")
        elif args.overload and clean > 0 and runner.fits(needed):
            step = overload_step(runner, clean, args)
            out["overload"] = {"clean_rate": clean, "step": asdict(step)}
        elif args.overload:
            log("overload step skipped: no clean rate, or not enough time left "
                "(raise --max-minutes)")
    if args.scenario in ("b", "all"):
        results["b"] = search(runner, "b", args, args.start_rate)
        results["sippy"] = search(runner, "sippy", args, args.sippy_start_rate)

    log("")
    log("all steps:")
    for s in runner.steps:
        log(s.line())
    log("")
    rows = []
    if "a" in results:
        rows.append(found_row(results["a"], "(a) ippbx ext→trunk, digest"))
    if SESSION in results:
        rows.append(found_row(results[SESSION], "(a) with an application logged in"))
    if MEDIA in results:
        rows.append(found_row(results[MEDIA], "(a) with media anchored on rtpengine"))
    if "b" in results:
        rows.append(found_row(results["b"], "(b) ippbx trunk→ext (no trunk→trunk route)"))
        rows.append(found_row(results["sippy"], "(b) baseline sippy b2bua_simple"))
    log(table(FOUND_HEADERS, rows))
    complete = all(f.runs > 0 for f in results.values())
    if "a" in results:
        a = results["a"]
        log(f"goal (a) >= {GOAL_A:.0f} calls/s clean: "
            f"{'MET' if a.median_achieved >= GOAL_A and a.clean_runs == a.runs else 'NOT MET'}"
            f" ({a.median_achieved:.0f}/s)")
    if "b" in results:
        b, s = results["b"], results["sippy"]
        ratio = b.median_achieved / s.median_achieved if s.median_achieved else math.nan
        per_cpu = {name: calls_per_cpu_second(runner.steps, name) for name in ("b", "sippy")}
        cpu_ratio = (per_cpu["b"] / per_cpu["sippy"]) if per_cpu["sippy"] else math.nan
        log(f"goal (b) >= {GOAL_B_RATIO}x sippy: {'MET' if ratio >= GOAL_B_RATIO else 'NOT MET'}"
            f" (ratio {ratio:.2f}); per CPU-second of the clean steps: ippbx "
            f"{per_cpu['b']:.0f}, sippy {per_cpu['sippy']:.0f} calls = {cpu_ratio:.2f} x")
        out["ratio_b"] = ratio
        out["per_cpu_second_b"] = {**per_cpu, "ratio": cpu_ratio}
    out["found"] = {k: asdict(v) for k, v in results.items()}
    out["steps"] = [asdict(s) for s in runner.steps]
    save_json(args.json, out)
    if args.plot:
        plot_steps(runner.steps, args, info)
    return 0 if complete else 1


if __name__ == "__main__":
    from benchlib import require_tools

    require_tools("sipp")
    _args = parse_args()
    bench_main(main, _args.max_minutes * 60)
