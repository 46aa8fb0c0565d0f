"""Shared pieces of the ippbx benchmarks: processes, ports, /proc readings, machine info.

The peers live beside it: `peers.py` (ippbx and sipp processes), `heldlib.py` (many held
calls), `wrklib.py` (wrk). Nothing here imports `tests/` or `ippbx`: ippbx runs as its own process
(`.venv/bin/python -m ippbx.cli serve --config FILE --log-level warning`, which is
`.venv/bin/ippbx serve …`), pinned to core 0 with
`taskset`, and the load generators (sipp, wrk) run on core 1, so "ippbx on one core" holds
on a 2-core machine. Every process is started through `Procs`, which stops each one by
its pid (SIGTERM, then SIGKILL) when the script ends, fails, or is interrupted; children
also get PR_SET_PDEATHSIG so they die if the script is killed outright. `bench_main`
wraps a script's `main` with that cleanup and a hard wall-clock limit (SIGALRM).

IPPBX_BENCH_REF=REF runs the code of one commit (see `ippbx_source`), with its SIP stack
compiled as `make native` does (IPPBX_PURE=1: as Python; a commit from before the compiled
stack runs as Python anyway); IPPBX_BENCH_COMMAND replaces `.venv/bin/python -m ippbx.cli`
(e.g. with a wrapper script for a diagnosis); its `serve --config FILE --log-level warning`
arguments stay.

Measurement facts (sipp options, what a clean step is) are in docs/testing.md.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import datetime
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SCENARIOS = BENCH / "scenarios"
VENV_BIN = ROOT / ".venv" / "bin"
BUFF_SIZE = 4194304  # docs/testing.md: without it sipp itself drops UDP packets under load
IPPBX_CPU = "0"  # ippbx (and the baselines) run here
LOAD_CPU = "1"  # sipp, wrk, py-spy run here
API_PASSWORD = "benchpass"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def shown_args(argv: list[str]) -> str:
    """The command line as a figure shows it: without the output files (--plot, --json)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if not skip and arg.split("=", 1)[0] not in ("--plot", "--json"):
            out.append(arg)
        skip = arg in ("--plot", "--json")
    return " ".join(out)


def log(*parts: object) -> None:
    print(*parts, flush=True)


# -- tools ------------------------------------------------------------------------------------


def require_tools(*names: str) -> None:
    """Exit 2 with a hint unless every command in `names` is on PATH."""
    hints = {"sipp": "apt-get install sip-tester", "wrk": "apt-get install wrk"}
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        for name in missing:
            log(f"error: {name} not found ({hints.get(name, 'install it')})")
        sys.exit(2)


def pinned(cpu: str, argv: Sequence[str]) -> list[str]:
    """`argv` under `taskset -c cpu` when taskset exists and there are 2+ cores."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", cpu, *argv]
    return list(argv)


# -- processes ----------------------------------------------------------------------------------


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Procs:
    """Every process a benchmark starts; `stop_all()` ends each one by pid."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(
        self, argv: Sequence[str], cwd: Path, name: str, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        out = (cwd / f"{name}.stdout").open("wb")
        err = (cwd / f"{name}.stderr").open("wb")
        try:
            proc = subprocess.Popen(
                list(argv), cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                env={**os.environ, **(env or {})}, preexec_fn=_die_with_parent,
            )
        finally:
            out.close()
            err.close()
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
             timeout: float = 10.0) -> int:
        """Send `sig`, wait up to `timeout` s, then SIGKILL; returns the exit code."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
        if proc in self.procs:
            self.procs.remove(proc)
        return proc.returncode if proc.returncode is not None else -9

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc, signal.SIGTERM, 5)


class BenchTimeout(Exception):
    """The script ran past its wall-clock limit."""


def bench_main(main: Callable[[Procs], int], max_seconds: float) -> None:
    """Run `main(procs)` with cleanup on any exit and a hard limit of `max_seconds`."""
    procs = Procs()

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    def on_alarm(_signum: int, _frame: object) -> None:
        raise BenchTimeout(f"wall-clock limit of {max_seconds:.0f} s reached")

    signal.signal(signal.SIGINT, on_term)  # also when started with SIGINT ignored (`cmd &`)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(max(1, int(max_seconds)))
    code = 1
    try:
        code = main(procs)
    except KeyboardInterrupt as exc:
        log(f"interrupted ({exc or 'Ctrl-C'}): stopping every process started")
        code = 130
    except BenchTimeout as exc:
        log(f"error: {exc}: stopping every process started")
        code = 3
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        procs.stop_all()
    sys.exit(code)


def workdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"ippbx-bench-{prefix}-"))


# -- ports and /proc ------------------------------------------------------------------------------

_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port free for UDP and TCP, never handed out twice by this process."""
    for _ in range(500):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            if port in _handed_out:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port")


def bound_ports(kind: str) -> set[int]:
    """Local ports with a UDP socket ("udp") or a TCP listener ("tcp"), from /proc/net."""
    ports: set[int] = set()
    for name in (f"/proc/net/{kind}", f"/proc/net/{kind}6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 3 and (kind == "udp" or parts[3] == "0A"):
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def wait_bound(port: int, kind: str, timeout: float,
               proc: subprocess.Popen[bytes] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        if port in bound_ports(kind):
            return True
        time.sleep(0.05)
    return False


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` (all its threads), from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kb(pid: int) -> int:
    """Resident set size of `pid` in KiB (VmRSS in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def rcvbuf_errors() -> int:
    """The host-wide UDP RcvbufErrors counter from /proc/net/snmp."""
    lines = [ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines()
             if ln.startswith("Udp:")]
    header, values = lines[0], lines[1]
    return int(values[header.index("RcvbufErrors")])


@dataclass
class Sample:
    t: float
    cpu: float
    rss: int


class ProcSampler:
    """Samples a pid's CPU seconds and RSS; call `sample()` from a polling loop."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[Sample] = []

    def sample(self) -> Sample:
        s = Sample(time.monotonic(), cpu_seconds(self.pid), rss_kb(self.pid))
        self.samples.append(s)
        return s

    def cpu_percent(self, t0: float, t1: float) -> float:
        """% of one core used between the samples nearest to t0 and t1."""
        if len(self.samples) < 2:
            return float("nan")
        a = min(self.samples, key=lambda s: abs(s.t - t0))
        b = min(self.samples, key=lambda s: abs(s.t - t1))
        return 100.0 * (b.cpu - a.cpu) / (b.t - a.t) if b.t > a.t else float("nan")

    @property
    def max_rss(self) -> int:
        return max((s.rss for s in self.samples), default=0)


def measure_idle(pid: int, seconds: float) -> tuple[float, int]:
    """(CPU % of one core, RSS KiB at the end) of `pid` over `seconds` of wall time."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    c1, t1 = cpu_seconds(pid), time.monotonic()
    return 100.0 * (c1 - c0) / (t1 - t0), rss_kb(pid)


# -- machine --------------------------------------------------------------------------------------


_SOURCE: tuple[Path, str] | None = None


def ippbx_source() -> tuple[Path, str]:
    """Which ippbx code runs: (a src/ directory to put first on PYTHONPATH; the label for
    the reports).

    By default the src/ of the working tree this script is in, uncommitted changes
    included (also in a `git worktree` whose .venv is a link to another checkout's, where
    the editable install would run that checkout's code). With IPPBX_BENCH_REF=REF (e.g.
    HEAD), `git archive REF src tools` is unpacked in a temporary directory and run from
    there, so the figures belong to one commit even while others have uncommitted changes
    in the working tree. Either way the SIP stack is compiled first where the code has
    `tools/build_native.py` (`compile_native`).
    """
    global _SOURCE
    if _SOURCE is None:
        ref = os.environ.get("IPPBX_BENCH_REF", "")
        if ref:
            commit = subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT,
                                    capture_output=True, text=True, check=True).stdout.strip()
            dest = Path(tempfile.mkdtemp(prefix=f"ippbx-bench-src-{commit}-"))
            has_tools = subprocess.run(["git", "cat-file", "-e", f"{ref}:tools"], cwd=ROOT,
                                       capture_output=True).returncode == 0
            archive = subprocess.run(["git", "archive", ref, "src", *(["tools"] * has_tools)],
                                     cwd=ROOT,
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
            atexit.register(shutil.rmtree, dest, True)
            _SOURCE = (dest / "src", f"{commit} (clean export of {ref})")
        else:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                    capture_output=True, text=True).stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=ROOT,
                                   capture_output=True, text=True).stdout.strip()
            _SOURCE = (ROOT / "src", commit + (" + uncommitted changes in src/" if dirty else ""))
        _SOURCE = (_SOURCE[0], _SOURCE[1] + compile_native(_SOURCE[0]))
    return _SOURCE


def compile_native(src: Path) -> str:
    """Compile what `make native` compiles of `src` (the SIP stack; since 500e963 the
    PBX's call path too), with `src`'s own build script, unless IPPBX_PURE asks for
    Python or the code predates the compiled stack; what runs, for the label."""
    if os.environ.get("IPPBX_PURE", "") not in ("", "0"):
        return ", in Python (IPPBX_PURE)"
    build = src.parent / "tools" / "build_native.py"  # the commit's own build script
    if not build.exists():
        return ", SIP stack in Python (before ippbx.native)"
    done = subprocess.run([str(VENV_BIN / "python"), str(build), "--src", str(src),
                           "--if-stale"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:  # a bench must not measure Python while it says compiled
        sys.exit(f"compiling {src} (make native) failed:\n{done.stderr[-3000:]}")
    return ", compiled as its make native does"


def machine_info() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = Path("/proc/loadavg").read_text().split()[:3]
    return {
        "cpu": model, "cores": str(os.cpu_count()),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": ippbx_source()[1],
        "loadavg_at_start": " ".join(load),
        "python": sys.version.split()[0],
    }


def print_machine(info: Mapping[str, str], command: str) -> None:
    log(f"command: {command}")
    log(f"machine: {info['cpu']}, {info['cores']} cores, load {info['loadavg_at_start']}, "
        f"python {info['python']}")
    log(f"date {info['date']}, ippbx commit {info['commit']}")


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def save_json(path: str | None, data: object) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")
        log(f"results written to {path}")


def leftovers(counts: Iterable[tuple[str, int]], after: str,
              log_problems: Iterable[str] = ()) -> list[str]:
    """What makes a step not clean once it is over: "N <what> after <after>" for each
    count that is not 0, and errors in ippbx's log (`log_problems`' keys)."""
    why = [f"{n} {what} after {after}" for what, n in counts if n]
    if any(k.startswith(("ERROR", "CRITICAL")) for k in log_problems):
        why.append("errors in ippbx's log")
    return why


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def run_worker(script: str, argv: Sequence[str], source: Path, timeout: float) -> dict:
    """Run `bench/<script> --worker ARGV` (ippbx's code from `source`, see `ippbx_source`)
    and return the JSON object its last line prints."""
    command = [str(VENV_BIN / "python"), str(BENCH / script), "--worker", *argv]
    env = {**os.environ, "PYTHONPATH": f"{source}{os.pathsep}{BENCH}"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode:
        raise RuntimeError("worker failed: " + done.stderr[-2000:])
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))
