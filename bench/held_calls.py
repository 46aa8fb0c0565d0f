"""Memory and idle CPU per held call: hold N long calls, measure ippbx's RSS growth and CPU.

    .venv/bin/python bench/held_calls.py                    # N = 1000, 10000, 50000
    .venv/bin/python bench/held_calls.py --calls 1000 --settle-seconds 5   # quick
    .venv/bin/python bench/held_calls.py --media --calls 1000,4900         # media anchored
    .venv/bin/python bench/held_calls.py --media --calls 1000 --timeout-check  # RTP timeout
    .venv/bin/python bench/held_calls.py --calls 1000,5000,10000 --plot held.png  # + figure

For each N, on a fresh ippbx (core 0; sipp on core 1; 127.0.0.1 only): extension 1001
registers, 200 short warm-up calls run, then ippbx's idle RSS and CPU are read. N calls of
scenario (a) of sip_cps.py (digest-authenticated extension → trunk, a sipp UAS as
carrier) are placed at --rate calls/s (a rate ippbx carries cleanly, see BENCHMARKS.md)
with a pause longer than the measurement (sipp -l N). Once outbound/query lists N calls
Talking, the script waits --settle-seconds (the setup transactions expire after 32 s,
RFC 3261 timers), then samples /proc for --idle-seconds: RSS growth per call =
(RSS with N held - RSS idle) / N, and the CPU % ippbx burns with N calls held and no
traffic. The calls are then dropped by killing sipp, and ippbx is stopped; with --stop,
ippbx is stopped first, with the calls up (it hangs them all up: the stop's time, its
exit code, the CDRs and the journal's leftover dialogs are printed).

With --media, ippbx runs with `[media] engine = "rtpengine"` (else "none"): every call is
anchored on ippbx's own rtpengine (its child, on ippbx's core), which the script finds
among ippbx's children and asks over ng. Measured on top, at the same moments: rtpengine's
RSS idle and with N held (growth per call), its CPU with N calls held and no traffic (sipp
sends no RTP), and the calls it holds (ng `statistics`) after the ramp and after the
measurement. Each call takes 4 of rtpengine's ports (RTP and RTCP on each leg) and 4 of
its open files, so the calls that fit are min(ports / 4, open-file limit / 4): printed
first; an offer beyond that fails and ippbx lets that call's SDP pass untouched (a
WARNING in its log). rtpengine ends a call that carried no RTP for its `--timeout` (60 s)
and tells no one; --timeout-check waits until that time (at most 60 s, its default)
+ 15 s has passed since the last call was placed, then counts the calls rtpengine still
holds and those its timeout ended, and the calls ippbx still lists as Talking. The WARNING
lines of ippbx's log are counted for every N.
--rtpengine-timeout N gives rtpengine `--timeout=N --silent-timeout=N` (ippbx's
configuration has no such key: a `rtpengine` script that adds them is put first on
ippbx's PATH, and ippbx runs that).

--plot FILE.png (matplotlib, the `bench` extra, imported only then) draws ippbx's RSS
against the number of calls held, from this run's measurements: idle (0 calls) and
settled with N held, with the line of the goal's 10 KB per call from the idle RSS (and
rtpengine's RSS with --media).

Goal (BENCHMARKS.md): 50k held calls with RSS growth <= 10 KB (10,000 bytes) per call and
idle CPU < 5 %. Exit 0 when every N was measured, 1 otherwise, 2 if sipp is missing.
"""

from __future__ import annotations

import argparse
import resource
import sqlite3
import sys
import time
from typing import Any

from benchlib import (
    Procs,
    bench_main,
    cpu_seconds,
    log,
    machine_info,
    print_machine,
    require_tools,
    rss_kb,
    save_json,
    shown_args,
    table,
    workdir,
)
from heldlib import OutboundBench
from medialib import (
    DEFAULT_PORTS,
    NgProbe,
    find_engine,
    log_problems,
    parse_media_ports,
    timeout_wrapper,
)

GOAL_BYTES_PER_CALL = 10_000
GOAL_IDLE_CPU = 5.0
PORTS_PER_CALL = 4  # rtpengine: an RTP and an RTCP port on each of a call's two legs
RTPENGINE_TIMEOUT = 60  # rtpengine's default --timeout (s without RTP before it ends a call)


def measure_idle_pair(pids: list[int], seconds: float) -> list[tuple[float, int]]:
    """(CPU % of one core, RSS KiB at the end) of each pid over the same `seconds`."""
    c0, t0 = [cpu_seconds(pid) for pid in pids], time.monotonic()
    time.sleep(seconds)
    c1, t1 = [cpu_seconds(pid) for pid in pids], time.monotonic()
    return [(100.0 * (b - a) / (t1 - t0), rss_kb(pid)) for a, b, pid in zip(c0, c1, pids,
                                                                          strict=True)]


def media_capacity(ports: tuple[int, int]) -> tuple[int, str]:
    """How many calls ippbx's rtpengine can anchor here, and why that many."""
    by_ports = (ports[1] - ports[0] + 1) // PORTS_PER_CALL
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]  # rtpengine inherits it
    by_files = (nofile - 8) // PORTS_PER_CALL  # (8 for its own: measured, 4,998 at 20,000)
    why = (f"ports {ports[0]}-{ports[1]}: {by_ports:,} calls; open files {nofile:,}: "
           f"{by_files:,} calls")
    return min(by_ports, by_files), why


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", default="1000,10000,50000", help="comma list of N")
    p.add_argument("--rate", type=float, default=300.0, help="ramp rate, calls/s")
    p.add_argument("--idle-seconds", type=float, default=10.0)
    p.add_argument("--settle-seconds", type=float, default=35.0)
    p.add_argument("--media", action="store_true",
                   help="anchor every call on ippbx's own rtpengine; also measure it")
    p.add_argument("--media-ports", default=DEFAULT_PORTS, metavar="MIN-MAX",
                   help="rtpengine's RTP ports with --media (4 per call)")
    p.add_argument("--rtpengine-timeout", type=int, metavar="SECONDS",
                   help="with --media: rtpengine's --timeout and --silent-timeout (default: "
                        f"its own, {RTPENGINE_TIMEOUT} s), through a wrapper on ippbx's PATH")
    p.add_argument("--timeout-check", action="store_true",
                   help="with --media: after the measurement, wait until rtpengine's RTP "
                        "timeout (at most its default, 60 s) + 15 s has passed for the last "
                        "call, then count the calls it still holds and what ippbx says")
    p.add_argument("--stop", action="store_true",
                   help="after the measurement, stop ippbx (SIGTERM) with the N calls up and "
                        "report how long the stop took, the CDRs it wrote and the dialogs "
                        "it left in its journal (BYEs it did not see answered)")
    p.add_argument("--max-minutes", type=float, default=9.5, help="hard wall-clock limit")
    p.add_argument("--json", help="write the results to this JSON file")
    p.add_argument("--plot", metavar="FILE.png",
                   help="draw RSS vs held calls from this run to this PNG (needs matplotlib)")
    return p.parse_args()


def main(procs: Procs) -> int:
    args = parse_args()
    info = machine_info()
    print_machine(info, "bench/held_calls.py " + " ".join(sys.argv[1:]))
    base = workdir("held")
    log(f"work directory: {base}")
    counts = [int(n) for n in args.calls.split(",") if n.strip()]
    media: dict[str, str | int] | None = None
    env: dict[str, str] = {}
    timeout = args.rtpengine_timeout or RTPENGINE_TIMEOUT
    if args.media:
        ports = parse_media_ports(args.media_ports)
        media = {"engine": "rtpengine", "port_min": ports[0], "port_max": ports[1]}
        capacity, why = media_capacity(ports)
        log(f"media: rtpengine can anchor at most {capacity:,} calls here ({why})")
        if args.rtpengine_timeout:
            env = timeout_wrapper(base / "bin", args.rtpengine_timeout)
            log(f"media: rtpengine runs with --timeout={args.rtpengine_timeout} "
                f"(wrapper {base / 'bin' / 'rtpengine'} first on ippbx's PATH)")
    rows, media_rows, results, ok = [], [], [], True
    stops: list[list[str]] = []
    for n in counts:
        wd = base / f"n{n}"
        wd.mkdir()
        bench = OutboundBench(procs, wd, env=env, media=media)
        try:
            bench.start()
            probe = engine = None
            pids = [bench.pbx.pid]
            if args.media:
                engine = find_engine(bench.pbx.pid)
                probe = NgProbe(engine.ng_port)
                pids.append(engine.pid)
            bench.warm_up()
            time.sleep(2.0)
            idle = measure_idle_pair(pids, args.idle_seconds)
            idle_cpu, idle_rss = idle[0]
            log(f"N={n}: idle before: cpu {idle_cpu:.2f} %, rss {idle_rss / 1024:.1f} MiB"
                + (f"; rtpengine cpu {idle[1][0]:.2f} %, rss {idle[1][1] / 1024:.1f} MiB"
                   if engine else ""))
            check = (min(timeout, RTPENGINE_TIMEOUT) + 45) if args.timeout_check else 0
            # the first call must outlive the slowest ramp allowed (a machine shared with
            # other work can take twice the nominal time) and the measurement after it
            ramp_limit = n / args.rate * 2 + 60
            hold_ms = int((ramp_limit + args.settle_seconds + args.idle_seconds + 120
                           + check) * 1000)
            ramp = bench.hold(n, args.rate, hold_ms, timeout=ramp_limit)
            ramp_end = time.monotonic()
            log(f"N={n}: ramp: {ramp.describe()} -> {'clean' if ramp.clean else 'NOT clean'}")
            rss_after_ramp = rss_kb(bench.pbx.pid)
            after_ramp = probe.statistics() if probe else {}
            time.sleep(args.settle_seconds)
            held = measure_idle_pair(pids, args.idle_seconds)
            held_cpu, held_rss = held[0]
            still = sum(1 for c in bench.pbx.outbound(timeout=60) if c["status"] == "Talking")
            growth = (held_rss - idle_rss) * 1024 / n
            log(f"N={n}: held {still}: cpu {held_cpu:.2f} %, rss {held_rss / 1024:.1f} MiB "
                f"(right after the ramp {rss_after_ramp / 1024:.1f} MiB), "
                f"growth {growth:.0f} bytes/call")
            result = {
                "calls": n, "live": still, "ramp": vars(ramp) | {"clean": ramp.clean},
                "idle_cpu": idle_cpu, "idle_rss_kb": idle_rss, "held_cpu": held_cpu,
                "held_rss_kb": held_rss, "rss_after_ramp_kb": rss_after_ramp,
                "bytes_per_call": growth,
            }
            if probe is not None:
                after_measure = probe.statistics()
                engine_growth = (held[1][1] - idle[1][1]) * 1024 / n
                log(f"N={n}: rtpengine: held cpu {held[1][0]:.2f} %, rss "
                    f"{held[1][1] / 1024:.1f} MiB, growth {engine_growth:,.0f} bytes/call; "
                    f"calls it holds: {after_ramp['sessions']:,} after the ramp, "
                    f"{after_measure['sessions']:,} after the measurement "
                    f"({time.monotonic() - ramp_end + ramp.seconds:.0f} s after the first "
                    f"call), ended by its RTP timeout so far {after_measure['timeouts']:,}")
                result["engine"] = {
                    "idle_cpu": idle[1][0], "idle_rss_kb": idle[1][1], "held_cpu": held[1][0],
                    "held_rss_kb": held[1][1], "bytes_per_call": engine_growth,
                    "after_ramp": after_ramp, "after_measurement": after_measure,
                }
                media_rows.append([
                    f"{n:,}", f"{after_ramp['sessions']:,}", f"{after_measure['sessions']:,}",
                    f"{idle[1][1] / 1024:.1f}", f"{held[1][1] / 1024:.1f}",
                    f"{engine_growth:,.0f}", f"{idle[1][0]:.2f}", f"{held[1][0]:.2f}",
                ])
                if args.timeout_check:
                    result["timeout_check"] = timeout_check(bench, probe, n, timeout,
                                                            ramp_end)
            if args.stop:
                result["stop"] = stop_with_calls(bench, n)
                stops.append([f"{n:,}", f"{result['stop']['seconds']:.2f}",
                              str(result["stop"]["exit"]), f"{result['stop']['cdrs']:,}",
                              f"{result['stop']['journal_left']:,}"])
            results.append(result)
            verdict = "clean" if ramp.clean else "NOT clean"
            rows.append([
                f"{n:,}", f"{still:,}", f"{ramp.seconds:.0f} s {verdict}",
                f"{idle_rss / 1024:.1f}", f"{rss_after_ramp / 1024:.1f}", f"{held_rss / 1024:.1f}",
                f"{growth:,.0f}", f"{idle_cpu:.2f}", f"{held_cpu:.2f}",
            ])
            if still != n:
                ok = False
        except RuntimeError as exc:
            log(f"N={n}: could not be measured: {exc}")
            ok = False
        finally:
            bench.close()
        problems = log_problems(wd / "ippbx.stderr")
        if problems:
            log(f"N={n}: ippbx log: " + "; ".join(f"{c} x {k}" for k, c in
                                                 problems.most_common(8)))
        if results and results[-1]["calls"] == n:
            results[-1]["log_problems"] = dict(problems)
    log("")
    log(table(["N held", "live (API)", "ramp", "RSS idle MiB", "RSS after ramp MiB",
               "RSS held (settled) MiB", "growth bytes/call", "CPU % idle, 0 calls",
               "CPU % idle, N held"], rows))
    if media_rows:
        log("")
        log(table(["N held", "rtpengine calls after ramp", "… after the measurement",
                   "rtpengine RSS idle MiB", "RSS held MiB", "growth bytes/call",
                   "CPU % idle, 0 calls", "CPU % idle, N held"], media_rows))
    if stops:
        log("")
        log(table(["N held", "stop (SIGTERM → exit) s", "exit code", "CDRs in the file",
                   "dialogs left in the journal"], stops))
    big = [r for r in results if r["calls"] >= 50_000]
    if big:
        r = big[-1]
        mem_ok = r["bytes_per_call"] <= GOAL_BYTES_PER_CALL
        cpu_ok = r["held_cpu"] < GOAL_IDLE_CPU
        log(f"goal 50k held: RSS growth <= 10 KB/call {'MET' if mem_ok else 'NOT MET'} "
            f"({r['bytes_per_call']:,.0f} B); idle CPU < 5 % {'MET' if cpu_ok else 'NOT MET'} "
            f"({r['held_cpu']:.2f} %)")
    save_json(args.json, {"machine": info, "args": vars(args), "results": results})
    if args.plot:
        plot_held(results, args, info)
    return 0 if ok else 1


def stop_with_calls(bench: OutboundBench, n: int) -> dict[str, float | int]:
    """SIGTERM ippbx with its `n` calls up (and the sipp ends still running: they answer
    an unexpected BYE 200): how long until it exited, the CDRs in its file (`n` plus
    the warm-up's), and the dialogs left in its journal (BYEs it did not see answered;
    the next start sends them again)."""
    t0 = time.monotonic()
    code = bench.pbx.stop()
    seconds = time.monotonic() - t0
    with sqlite3.connect(bench.pbx.config.store) as con:
        cdrs = int(con.execute("SELECT COUNT(*) FROM cdr").fetchone()[0])
        left = int(con.execute("SELECT COUNT(*) FROM dialogs").fetchone()[0])
    log(f"N={n}: stop with the calls up: {seconds:.2f} s, exit {code}, {cdrs:,} CDRs in "
        f"the file, {left:,} dialogs left in the journal")
    return {"seconds": seconds, "exit": code, "cdrs": cdrs, "journal_left": left}


def plot_held(results: list[dict[str, Any]], args: argparse.Namespace,
              info: dict[str, str]) -> None:
    """--plot: ippbx's RSS (settled) against the calls held, one point per N measured plus
    the idle RSS at 0; the goal's 10 KB/call line from the mean idle RSS."""
    done = sorted((r for r in results if "held_rss_kb" in r), key=lambda r: r["calls"])
    if not done:
        log("plot: nothing measured to draw")
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mib = 1024.0
    fig, ax = plt.subplots(figsize=(8.5, 5.4))
    idle = sum(r["idle_rss_kb"] for r in done) / len(done) / mib
    xs = [0] + [r["calls"] for r in done]
    cpus = ", ".join(f"{r['held_cpu']:.1f}" for r in done)
    ax.plot(xs, [idle] + [r["held_rss_kb"] / mib for r in done], marker="o",
            color="tab:blue", label=f"ippbx RSS, settled (idle CPU with N held: {cpus} %)")
    for r in done:
        note = f"{r['bytes_per_call']:,.0f} B/call"
        if r["live"] != r["calls"] or not r["ramp"]["clean"]:  # (a point to distrust)
            ax.plot([r["calls"]], [r["held_rss_kb"] / mib], marker="o", markersize=11,
                    color="tab:orange", fillstyle="none", linestyle="none")
            note += f"\nonly {r['live']:,} Talking" if r["live"] != r["calls"] else \
                "\nramp not clean"
        ax.annotate(note, (r["calls"], r["held_rss_kb"] / mib), textcoords="offset points",
                    xytext=(8, -14), ha="left", va="top", fontsize="small", color="tab:blue")
    ax.plot([0, xs[-1]], [idle, idle + xs[-1] * GOAL_BYTES_PER_CALL / 1024 / mib],
            color="grey", linestyle="--", label="goal: idle RSS + 10 KB per call")
    engine = [r for r in done if "engine" in r]
    if engine:
        ax.plot([0] + [r["calls"] for r in engine],
                [engine[0]["engine"]["idle_rss_kb"] / mib]
                + [r["engine"]["held_rss_kb"] / mib for r in engine],
                marker="s", color="tab:red", label="rtpengine RSS")
    ax.set_xlim(0, xs[-1] * 1.2)
    ax.set_ylim(0, None)
    ax.set_xlabel("calls held (extension → trunk, Talking)")
    ax.set_ylabel("RSS (MiB)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    fig.suptitle("bench/held_calls.py " + shown_args(sys.argv[1:])
                 + f"\n{info['cpu']}, {info['cores']} cores, load {info['loadavg_at_start']} "
                 f"at start, {info['date'][:10]}\nippbx {info['commit']}", fontsize="medium")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=100)
    plt.close(fig)
    log(f"plot written to {args.plot} ({len(done)} measurements)")


def timeout_check(bench: OutboundBench, probe: NgProbe, n: int, timeout: int,
                  ramp_end: float) -> dict[str, object]:
    """Wait until rtpengine's RTP timeout (+15 s) has passed for the last call placed
    (its default timeout when `timeout` is longer); what rtpengine and ippbx say then."""
    after = min(timeout, RTPENGINE_TIMEOUT) + 15
    wait = ramp_end + after - time.monotonic()
    log(f"N={n}: timeout check: waiting {max(wait, 0):.0f} s ({after} s after the last call "
        f"was placed; rtpengine's RTP timeout is {timeout} s)")
    if wait > 0:
        time.sleep(wait)
    stats = probe.statistics()
    talking = sum(1 for c in bench.pbx.outbound(timeout=60) if c["status"] == "Talking")
    log(f"N={n}: timeout check: rtpengine holds {stats['sessions']:,} calls, its RTP "
        f"timeout ended {stats['timeouts']:,} (silent {stats['silent_timeouts']:,}); "
        f"ippbx lists {talking:,} calls Talking")
    return {"engine": stats, "ippbx_talking": talking}


if __name__ == "__main__":
    require_tools("sipp")
    bench_main(main, parse_args().max_minutes * 60)
