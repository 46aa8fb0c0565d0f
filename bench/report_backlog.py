"""What a report receiver that is down costs ippbx's memory while calls go on.

    .venv/bin/python bench/report_backlog.py [--calls 20000] [--rate 2000] [--json FILE]

An application logged in, its receiver gone (a closed loopback port: every POST is
refused, the destination backs off and probes), and calls keep coming: each call's
reports wait in the outbox for up to `[reports] retry_minutes` (30). A worker process
plays `--calls` calls on a real `CallRegistry` (an extension calls out through a trunk:
start, 180, 200, both BYEs, the end) with ippbx's `ReportService` on it, the outbox in a
real SQLite file, the real delivery and HTTP client. Once the last held report has been
written to the file (`outbox.HOLD`) it reports the memory the waiting reports take
(tracemalloc, after a full GC) per call and per report.

It runs the worker twice: with ippbx's `MEMORY_ROWS` (the bodies of that many reports per
destination kept in memory, the others read back from the file in their turn) and with
no such bound (every body in memory, as before that bound existed), and prints both.
IPPBX_BENCH_REF=REF runs one commit's code (bench/benchlib.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
import time
from pathlib import Path

from benchlib import (
    Procs,
    bench_main,
    ippbx_source,
    log,
    machine_info,
    print_machine,
    run_worker,
    save_json,
    shown_args,
    table,
)

REPORTS_PER_CALL = 7  # ALERT, RING, ANSWER, ANSWER(ED), BYE, BYE, NewCdr


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def play(calls: int, rate: float, port: int, unbounded: bool) -> dict:
    """(worker) `calls` calls at `rate`/s to a dead receiver; the memory they leave."""
    import gc
    import hashlib
    import tracemalloc

    from ippbx.api.reports import ReportService
    from ippbx.api.sessions import SessionManager
    from ippbx.config import load_config
    from ippbx.pbx.calls import CallRegistry, Leg, LegKind, LegStatus
    from ippbx.pbx.cdr import CdrRecorder
    from ippbx.store import outbox
    from ippbx.store.sqlite import Store

    config = load_config(None)
    with tempfile.TemporaryDirectory(prefix="ippbx-bench-backlog-") as tmp:
        store = Store(Path(tmp) / "db.sqlite3")
        registry = CallRegistry()
        registry.subscribe(CdrRecorder(store))
        sessions = SessionManager(config.api)
        service = ReportService(config, registry, sessions, store)
        bound = getattr(service.delivery, "memory_rows", None)
        if unbounded:
            service.delivery.memory_rows = 1 << 62  # (no bound: every body in memory)
        md5 = hashlib.md5(config.api.password.encode()).hexdigest()
        sessions.login(config.api.username, md5, "127.0.0.1", "openvox", port=str(port))
        await service.start()
        ext = config.extensions[0].number
        await asyncio.sleep(0.5)
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        t0 = time.monotonic()
        for n in range(calls):
            delay = t0 + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            caller = Leg(LegKind.EXTENSION, ext, "95551234", extension=ext)
            call = registry.start_call(caller, "95551234")
            out = Leg(LegKind.TRUNK, "66666", "5551234", trunk="carrier")
            registry.add_callee(call, out)
            registry.ringing(out.id)
            registry.set_status(out.id, LegStatus.TALKING)
            registry.set_status(caller.id, LegStatus.TALKING)
            registry.end_leg(out.id, 200)
            registry.end_leg(caller.id, 200)
        await asyncio.sleep(outbox.HOLD + 1.0)  # every held row written to the file
        await store.flushed()
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        pending = service.delivery.pending()
        delivered = service.delivery.delivered
        await service.stop()
        store.close()
    return {"bytes": used, "pending": pending, "delivered": delivered,
            "memory_rows": None if unbounded else bound}


def worker(args: argparse.Namespace) -> int:
    result = asyncio.run(play(args.calls, args.rate, args.port, args.unbounded))
    print(json.dumps(result))
    return 0


def backlog_worker(source: Path, args: argparse.Namespace, port: int,
                   unbounded: bool) -> dict:
    argv = ["--calls", str(args.calls), "--rate", str(args.rate), "--port", str(port)]
    if unbounded:
        argv.append("--unbounded")
    return run_worker("report_backlog.py", argv, source, args.calls / args.rate * 3 + 120)


def main(procs: Procs, args: argparse.Namespace) -> int:
    info = machine_info()
    print_machine(info, "bench/report_backlog.py " + shown_args(sys.argv[1:]))
    source, label = ippbx_source()
    log(f"ippbx code: {label}")
    rows, results = [], {}
    for name, unbounded in (("bounded", False), ("unbounded", True)):
        result = backlog_worker(source, args, closed_port(), unbounded)
        results[name] = result
        reports = result["pending"] or 1
        rows.append([name, str(result["memory_rows"] or "none"), f"{result['pending']:,}",
                     f"{result['bytes'] / 1e6:,.1f} MB", f"{result['bytes'] / args.calls:,.0f}",
                     f"{result['bytes'] / reports:,.0f}"])
    log(table(["run", "memory_rows", "reports waiting", "memory they take", "B per call",
               "B per report"], rows))
    save_json(args.json, {"machine": info, "args": vars(args), "results": results})
    ok = all(r["delivered"] == 0 and r["pending"] >= args.calls * (REPORTS_PER_CALL - 1)
             for r in results.values())
    if not ok:
        log("unexpected: reports were delivered or are missing (is something listening?)")
    return 0 if ok else 1


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=2_000.0)
    parser.add_argument("--json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--unbounded", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    ARGS = parse()
    if ARGS.worker:
        sys.exit(worker(ARGS))
    bench_main(lambda procs: main(procs, ARGS), 15 * 60)
