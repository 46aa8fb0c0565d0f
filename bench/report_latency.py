"""Report delivery latency: from a call's answer to its ANSWER report at the application.

An ippbx process (pinned to core 0) with one API session whose report destination is a
small HTTP receiver in this script; sipp (core 1) places authenticated extension → carrier
calls at a steady rate. For each call, latency = the time the receiver got the call's
first ANSWER report − the answer time ippbx wrote in the call's CDR (both read from this
machine's clock; the CDR is read from ippbx's SQLite file after the run).

Baseline in the same run: the same receiver taking the same number of POSTs from a plain
httpx client with `Connection: close`, one at a time (the floor for one report on a new
TCP connection). Goal (issue 5): p99 < 10 ms on loopback.

    .venv/bin/python bench/report_latency.py [--calls 400] [--rate 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sqlite3
import sys
import threading
import time

import httpx
from benchlib import (
    Procs,
    bench_main,
    free_port,
    log,
    machine_info,
    print_machine,
    require_tools,
    save_json,
    table,
    wait_for,
    workdir,
)
from peers import API_PASSWORD, Ippbx, PbxConfig, Sipp, ext_password


class Receiver:
    """An HTTP/1.1 server on its own thread and loop that records when each POST arrived."""

    def __init__(self) -> None:
        self.port = free_port()
        self.got: list[tuple[float, dict[str, object]]] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Receiver:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("receiver did not start")
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await asyncio.wait_for(reader.readexactly(length), 10)
            arrived = time.time()
            try:
                self.got.append((arrived, json.loads(body)))
            except ValueError:
                self.got.append((arrived, {}))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    def count(self, action: str) -> int:
        return sum(1 for _, body in self.got if body.get("action") == action)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def baseline(receiver: Receiver, count: int) -> list[float]:
    """Seconds per POST of a small JSON body, a new connection each (what a report costs)."""
    body = {"action": "ANSWER", "callid": "1.1", "ext": {"extid": "1001"}, "sn": "x"}
    out: list[float] = []
    with httpx.Client(headers={"Connection": "close"}) as client:
        for _ in range(count):
            t0 = time.time()
            client.post(f"http://127.0.0.1:{receiver.port}/base", json=body, timeout=5)
            out.append(time.time() - t0)
    return out


def main(procs: Procs) -> int:
    args = parse_args()
    require_tools("sipp")
    os.sched_setaffinity(0, {1})  # this script (the receiver) runs beside sipp, not ippbx
    info = machine_info()
    print_machine(info, "bench/report_latency.py " + " ".join(sys.argv[1:]))
    wd = workdir("reports")
    receiver = Receiver().start()
    carrier_port = free_port()
    store = wd / "ippbx.sqlite3"
    config = PbxConfig(sip_port=free_port(), api_port=free_port(), store=store,
                       trunks=[("carrier", carrier_port)], outbound_trunks=["carrier"])
    pbx = Ippbx(procs, wd, config).start()
    login = {"username": "api", "password": hashlib.md5(API_PASSWORD.encode()).hexdigest(),
             "port": str(receiver.port), "url": "reports", "urltag": "0"}
    answer = pbx._post(f"{pbx.api_base}/login?type=json", login, 10)
    if answer.get("status") != "Success":
        raise RuntimeError(f"login failed: {answer}")
    Sipp(procs, wd, "carrier", "uas.xml", port=carrier_port).start(uas=True)
    calls = Sipp(procs, wd, "calls", "ext_uac_auth.xml", remote=pbx.sip_address,
                 calls=args.calls, rate=args.rate, limit=max(10, int(args.rate * 3)),
                 hold_ms=args.hold_ms, auth=("1001", ext_password("1001")),
                 keys={"user": "1001"}, service="95551234",
                 timeout_s=args.calls / args.rate + 60).start()
    log(f"placing {args.calls} calls at {args.rate:g}/s, held {args.hold_ms} ms")
    result = calls.wait(args.calls / args.rate + 90)
    wait_for(lambda: receiver.count("NewCdr") >= result.successful, 30)
    pbx.stop()
    with sqlite3.connect(store) as db:
        answered = dict(db.execute("SELECT callid, answered FROM cdr WHERE answered IS NOT NULL"))
    first: dict[str, float] = {}
    for arrived, body in receiver.got:
        callid = str(body.get("callid", ""))
        if body.get("action") == "ANSWER" and callid in answered and callid not in first:
            first[callid] = arrived
    latencies = [first[c] - answered[c] for c in first]
    base = baseline(receiver, max(100, len(latencies)))
    receiver.stop()
    if not latencies:
        log(f"no ANSWER report matched a CDR (sipp: {result.successful} ok, "
            f"{result.failed} failed): {result.errors}")
        return 1
    rows = []
    for name, values in (("ippbx answer → receiver", latencies), ("raw httpx POST", base)):
        rows.append([name, len(values), f"{percentile(values, 0.5) * 1000:.2f}",
                     f"{percentile(values, 0.9) * 1000:.2f}",
                     f"{percentile(values, 0.99) * 1000:.2f}", f"{max(values) * 1000:.2f}"])
    ratio = percentile(latencies, 0.99) / percentile(base, 0.99)
    print(table(["what", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"], rows))
    p99 = percentile(latencies, 0.99) * 1000
    print(f"p99 ratio ippbx / raw POST: {ratio:.2f}; goal p99 < 10 ms: "
          f"{'met' if p99 < 10 else 'NOT met'} ({p99:.2f} ms); sipp {result.successful} ok, "
          f"{result.failed} failed")
    save_json(args.json, {"machine": info, "args": vars(args), "calls_ok": result.successful,
                          "calls_failed": result.failed,
                          "ippbx_ms": [round(v * 1000, 3) for v in sorted(latencies)],
                          "baseline_ms": [round(v * 1000, 3) for v in sorted(base)],
                          "p99_ratio": ratio})
    return 0 if result.failed == 0 else 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--hold-ms", type=int, default=500)
    parser.add_argument("--json", default=None)
    return parser.parse_args()


if __name__ == "__main__":
    bench_main(main, max_seconds=600)
