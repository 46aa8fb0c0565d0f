"""wrk (Debian `wrk`) runs for api_query.py: a POST Lua script, the run, its parsed output."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from benchlib import LOAD_CPU, Procs, log, pinned

# -- wrk -----------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: str
    non_2xx: int
    output: str


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return float(m.group(1)) * _UNITS_MS[m.group(2)] if m else float("nan")


def parse_wrk(output: str) -> WrkResult:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    total = re.search(r"(\d+) requests in", output)
    errors = re.search(r"Socket errors:.*", output)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return WrkResult(
        rps=float(rps.group(1)) if rps else 0.0,
        p50_ms=_ms(p50.group(1)) if p50 else float("nan"),
        p99_ms=_ms(p99.group(1)) if p99 else float("nan"),
        requests=int(total.group(1)) if total else 0,
        errors=errors.group(0) if errors else "",
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        output=output,
    )


def run_wrk(procs: Procs, wd: Path, name: str, url: str, body: str, seconds: int = 10,
            threads: int = 2, connections: int = 64) -> WrkResult:
    """`wrk -tT -cC -dS -s post.lua --latency URL`, POSTing `body` as JSON, on LOAD_CPU."""
    run_dir = wd / name
    run_dir.mkdir(parents=True, exist_ok=True)
    lua = run_dir / "post.lua"
    lua.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", str(lua),
            "--latency", url]
    proc = procs.spawn(pinned(LOAD_CPU, argv), run_dir, "wrk")
    try:
        proc.wait(seconds + 30)
    except subprocess.TimeoutExpired:
        log(f"  wrk {name} overran: killed")
    procs.stop(proc, signal.SIGKILL, 5)
    return parse_wrk((run_dir / "wrk.stdout").read_text(errors="replace"))


