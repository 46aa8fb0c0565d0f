"""Where a held call's memory goes: tracemalloc and GC object counts inside ippbx.

    .venv/bin/python bench/held_profile.py                  # 2,000 calls held
    .venv/bin/python bench/held_profile.py --calls 5000 --top 30
    .venv/bin/python bench/held_profile.py --media          # calls anchored on rtpengine

RSS (held_calls.py) is a high-water mark: a ramp ends with ~32 s of setup transactions
alive, and CPython keeps the memory they free. This script counts what a held call keeps
in steady state instead. It holds N calls as held_calls.py does (scenario (a): a
digest-authenticated extension → trunk, a sipp UAS as carrier) on an ippbx started with
tracemalloc on (`PYTHONTRACEMALLOC=1`) and a `sitecustomize.py` that this script puts first
on ippbx's PYTHONPATH: on SIGUSR1 it writes a tracemalloc snapshot and the GC-tracked
objects counted by type (the product has no such hook). One dump is taken after a warm-up,
one once the N calls are up and --settle-seconds have passed (their setup transactions
gone). The report: traced bytes and GC objects per held call, the allocation sites that
grew most (file:line) and the object types that grew most, per call.

With --media, ippbx runs with `[media] engine = "rtpengine"` (else "none"), so what a held
call keeps includes its media anchoring (the engine's own memory is held_calls.py
--media's). tracemalloc slows ippbx down about 2x: the ramp rate is low (--rate). Exit 0 when both
dumps were taken and every call was up, 1 otherwise, 2 if sipp is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import tracemalloc
from pathlib import Path

from benchlib import (
    Procs,
    bench_main,
    log,
    machine_info,
    print_machine,
    require_tools,
    save_json,
    table,
    workdir,
)
from heldlib import OutboundBench
from medialib import DEFAULT_PORTS, parse_media_ports

SITECUSTOMIZE = '''\
"""Installed by bench/held_profile.py: SIGUSR1 dumps a tracemalloc snapshot and GC counts."""
import collections, gc, json, os, signal, tracemalloc

def _dump(signum, frame):
    base = os.environ["IPPBX_HEAP_DUMP"]
    gc.collect()
    tracemalloc.take_snapshot().dump(base + ".snapshot")
    counts = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    with open(base + ".gc.tmp", "w") as out:
        json.dump(counts, out)
    os.replace(base + ".gc.tmp", base + ".gc.json")

if os.environ.get("IPPBX_HEAP_DUMP"):
    signal.signal(signal.SIGUSR1, _dump)
'''


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--rate", type=float, default=100.0, help="ramp rate, calls/s")
    p.add_argument("--settle-seconds", type=float, default=35.0)
    p.add_argument("--top", type=int, default=20, help="rows in each table")
    p.add_argument("--media", action="store_true",
                   help="anchor every call on ippbx's own rtpengine")
    p.add_argument("--media-ports", default=DEFAULT_PORTS, metavar="MIN-MAX",
                   help="rtpengine's RTP ports with --media (4 per call)")
    p.add_argument("--max-minutes", type=float, default=9.5, help="hard wall-clock limit")
    p.add_argument("--json", help="write the results to this JSON file")
    return p.parse_args()


def dump(pid: int, base: Path, timeout: float = 120.0) -> tuple[tracemalloc.Snapshot,
                                                                 dict[str, int]]:
    """Ask ippbx for a dump (SIGUSR1) and load it."""
    gc_file = Path(f"{base}.gc.json")
    gc_file.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while not gc_file.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no heap dump from ippbx within {timeout:g} s")
        time.sleep(0.2)
    counts: dict[str, int] = json.loads(gc_file.read_text())
    return tracemalloc.Snapshot.load(f"{base}.snapshot"), counts


def main(procs: Procs) -> int:
    args = parse_args()
    info = machine_info()
    print_machine(info, "bench/held_profile.py " + " ".join(sys.argv[1:]))
    wd = workdir("heldprof")
    log(f"work directory: {wd}")
    hook = wd / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    heap = wd / "heap"
    env = {"PYTHONPATH": str(hook), "PYTHONTRACEMALLOC": "1", "IPPBX_HEAP_DUMP": str(heap)}
    media: dict[str, str | int] | None = None
    if args.media:
        low, high = parse_media_ports(args.media_ports)
        media = {"engine": "rtpengine", "port_min": low, "port_max": high}
    bench = OutboundBench(procs, wd, env=env, media=media)
    n = args.calls
    try:
        bench.start()
        bench.warm_up(calls=100, rate=50)
        time.sleep(args.settle_seconds)  # the warm-up's transactions gone too
        before, gc_before = dump(bench.pbx.pid, heap)
        hold_ms = int((n / args.rate + args.settle_seconds + 180) * 1000)
        ramp = bench.hold(n, args.rate, hold_ms, timeout=n / args.rate * 3 + 60)
        log(f"ramp: {ramp.describe()} -> {'clean' if ramp.clean else 'NOT clean'}")
        time.sleep(args.settle_seconds)
        after, gc_after = dump(bench.pbx.pid, heap)
        live = sum(1 for c in bench.pbx.outbound(timeout=60) if c["status"] == "Talking")
    except RuntimeError as exc:
        log(f"could not be measured: {exc}")
        return 1
    finally:
        bench.close()

    stats = after.compare_to(before, "lineno")
    grown = sum(s.size_diff for s in stats)
    blocks = sum(s.count_diff for s in stats)
    objects = sum(gc_after.values()) - sum(gc_before.values())
    asked = n
    if live != asked:
        log(f"{live} of {asked} calls are up: per-call figures are per call up")
    n = max(live, 1)  # (what the dump holds is the calls that are up)
    log(f"{live} calls held: traced memory +{grown:,} B = {grown / n:,.0f} B per call "
        f"({blocks / n:.0f} allocations), GC-tracked objects +{objects:,} = "
        f"{objects / n:.1f} per call")
    top = sorted(stats, key=lambda s: s.size_diff, reverse=True)[:args.top]
    site_rows = [[str(s.traceback[0]).replace(str(Path.cwd()) + "/", ""),
                  f"{s.size_diff / n:,.0f}", f"{s.count_diff / n:.1f}"] for s in top]
    log(table(["allocation site", "bytes per call", "blocks per call"], site_rows))
    types = sorted(gc_after, key=lambda k: gc_after[k] - gc_before.get(k, 0), reverse=True)
    type_rows = [[k, f"{(gc_after[k] - gc_before.get(k, 0)) / n:.2f}"] for k in types[:args.top]]
    log(table(["GC-tracked type", "objects per call"], type_rows))
    save_json(args.json, {
        "machine": info, "args": vars(args), "live": live, "ramp": vars(ramp),
        "bytes_per_call": grown / n, "objects_per_call": objects / n,
        "sites": site_rows, "types": type_rows,
    })
    return 0 if live == asked else 1


if __name__ == "__main__":
    require_tools("sipp")
    bench_main(main, parse_args().max_minutes * 60)
