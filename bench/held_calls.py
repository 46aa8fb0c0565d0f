"""Memory and idle CPU per held call: hold N long calls, measure ippbx's RSS growth and CPU.

    .venv/bin/python bench/held_calls.py                    # N = 1000, 10000, 50000
    .venv/bin/python bench/held_calls.py --calls 1000 --settle-seconds 5   # quick

For each N, on a fresh ippbx (core 0; sipp on core 1; 127.0.0.1 only): extension 1001
registers, 200 short warm-up calls run, then ippbx's idle RSS and CPU are read. N calls of
scenario (a) of sip_cps.py (digest-authenticated extension → trunk, a sipp UAS as
carrier) are placed at --rate calls/s (a rate ippbx carries cleanly, see BENCHMARKS.md)
with a pause longer than the measurement (sipp -l N). Once outbound/query lists N calls
Talking, the script waits --settle-seconds (the setup transactions expire after 32 s,
RFC 3261 timers), then samples /proc for --idle-seconds: RSS growth per call =
(RSS with N held - RSS idle) / N, and the CPU % ippbx burns with N calls held and no
traffic. The calls are then dropped by killing sipp, and ippbx is stopped.

Goal (BENCHMARKS.md): 50k held calls with RSS growth <= 10 KB (10,000 bytes) per call and
idle CPU < 5 %. Exit 0 when every N was measured, 1 otherwise, 2 if sipp is missing.
"""

from __future__ import annotations

import argparse
import sys
import time

from benchlib import (
    Procs,
    bench_main,
    log,
    machine_info,
    measure_idle,
    print_machine,
    require_tools,
    rss_kb,
    save_json,
    table,
    workdir,
)
from heldlib import OutboundBench

GOAL_BYTES_PER_CALL = 10_000
GOAL_IDLE_CPU = 5.0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", default="1000,10000,50000", help="comma list of N")
    p.add_argument("--rate", type=float, default=300.0, help="ramp rate, calls/s")
    p.add_argument("--idle-seconds", type=float, default=10.0)
    p.add_argument("--settle-seconds", type=float, default=35.0)
    p.add_argument("--max-minutes", type=float, default=9.5, help="hard wall-clock limit")
    p.add_argument("--json", help="write the results to this JSON file")
    return p.parse_args()


def main(procs: Procs) -> int:
    args = parse_args()
    info = machine_info()
    print_machine(info, "bench/held_calls.py " + " ".join(sys.argv[1:]))
    base = workdir("held")
    log(f"work directory: {base}")
    counts = [int(n) for n in args.calls.split(",") if n.strip()]
    rows, results, ok = [], [], True
    for n in counts:
        wd = base / f"n{n}"
        wd.mkdir()
        bench = OutboundBench(procs, wd)
        try:
            bench.start()
            bench.warm_up()
            time.sleep(2.0)
            idle_cpu, idle_rss = measure_idle(bench.pbx.pid, args.idle_seconds)
            log(f"N={n}: idle before: cpu {idle_cpu:.2f} %, rss {idle_rss / 1024:.1f} MiB")
            hold_ms = int((n / args.rate + args.settle_seconds + args.idle_seconds + 120) * 1000)
            ramp = bench.hold(n, args.rate, hold_ms, timeout=n / args.rate * 2 + 60)
            log(f"N={n}: ramp: {ramp.describe()} -> {'clean' if ramp.clean else 'NOT clean'}")
            rss_after_ramp = rss_kb(bench.pbx.pid)
            time.sleep(args.settle_seconds)
            held_cpu, held_rss = measure_idle(bench.pbx.pid, args.idle_seconds)
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
    log("")
    log(table(["N held", "live (API)", "ramp", "RSS idle MiB", "RSS after ramp MiB",
               "RSS held (settled) MiB", "growth bytes/call", "CPU % idle, 0 calls",
               "CPU % idle, N held"], rows))
    big = [r for r in results if r["calls"] >= 50_000]
    if big:
        r = big[-1]
        mem_ok = r["bytes_per_call"] <= GOAL_BYTES_PER_CALL
        cpu_ok = r["held_cpu"] < GOAL_IDLE_CPU
        log(f"goal 50k held: RSS growth <= 10 KB/call {'MET' if mem_ok else 'NOT MET'} "
            f"({r['bytes_per_call']:,.0f} B); idle CPU < 5 % {'MET' if cpu_ok else 'NOT MET'} "
            f"({r['held_cpu']:.2f} %)")
    save_json(args.json, {"machine": info, "args": vars(args), "results": results})
    return 0 if ok else 1


if __name__ == "__main__":
    require_tools("sipp")
    bench_main(main, parse_args().max_minutes * 60)
