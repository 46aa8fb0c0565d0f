"""Run sipp (Debian `sip-tester`) from tests: ports, processes, results.

Typical use (the `sipp` fixture of tests/integration/conftest.py is a `SippFactory`):

    uas_port = free_port()
    uas = sipp("uas.xml", port=uas_port, calls=20).start()          # waits until bound
    uac = sipp("uac.xml", remote=f"127.0.0.1:{uas_port}", calls=20, rate=10).start()
    uac.wait(timeout=30).assert_ok(calls=20, retransmissions=0)
    uas.wait(timeout=10).assert_ok(calls=20)

From an async test (an ippbx server running in the test's event loop) use
`await s.astart()` and `await s.await_result(timeout)` so the loop keeps serving.

Scenario names ending in `.xml` are files from tests/sipp/ (or a path); other names are
sipp's built-ins (`-sn uac`). Each run gets its own work directory (the scenario is
copied there, so sipp's own log files land there too), sipp stays our child process
(never `-bg`) and is killed when the factory is torn down, even if the test failed.
Facts about sipp this module relies on are in docs/testing.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import ctypes
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "SCENARIO_DIR", "SIPP", "Sipp", "SippError", "SippFactory", "SippResult", "free_port",
    "free_port_block",
    "sipp_available", "wait_bound", "await_bound", "parse_message_log", "LoggedMessage",
]

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "sipp"
SIPP = shutil.which("sipp") or "/usr/bin/sipp"
BUFF_SIZE = 4194304  # docs/testing.md: without it sipp itself drops UDP packets under load
EXIT_MEANING = {0: "all calls succeeded", 1: "at least one call failed", 99: "no call made"}


def sipp_available() -> bool:
    return os.access(SIPP, os.X_OK)


# -- ports ----------------------------------------------------------------------------------

_handed_out: set[int] = set()


def _below_ephemeral() -> range:
    """Ports the kernel never picks for an outgoing connection (below
    net.ipv4.ip_local_port_range), so a port a test picks now and binds later (a report
    receiver that is "down" first) cannot meanwhile become the local port of one of
    ippbx's own connections. Empty if the range cannot be read."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return range(0)
    return range(max(1024, low - 12000), low)


def free_port_block(size: int) -> int:
    """The first of `size` consecutive UDP ports free on 127.0.0.1 now, below the range
    `free_port` draws from (a media engine's RTP range: a SIP or report port a test picks
    later cannot fall inside it)."""
    for _ in range(200):
        base = random.randrange(10000, 20000 - size, 2)  # (below free_port's range)
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + size):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free block of UDP ports")


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on `host`, never the same twice in one session,
    and outside the ephemeral range (see `_below_ephemeral`) when it can be.

    Fresh ports per run matter: retransmissions left over from a previous run reach the
    next one on the same port (docs/testing.md).
    """
    candidates = _below_ephemeral()
    for _ in range(200):
        port = random.choice(candidates) if candidates else 0
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind((host, port))
            except OSError:
                continue
            port = udp.getsockname()[1]
            if port in _handed_out:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free UDP+TCP port found")


def _bound_ports(kind: str) -> set[int]:
    """Local ports with a UDP socket (kind "udp") or a TCP listener ("tcp"), from /proc."""
    ports: set[int] = set()
    for name in (f"/proc/net/{kind}", f"/proc/net/{kind}6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 4 or (kind == "tcp" and parts[3] != "0A"):  # 0A = LISTEN
                continue
            ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def wait_bound(port: int, kind: str = "udp", timeout: float = 5.0,
               proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Block until something listens on `port` (reads /proc; never binds the port).

    False after `timeout` s, or as soon as `proc` (the process expected to bind) exits.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (proc is None or proc.poll() is None):
        if port in _bound_ports(kind):
            return True
        time.sleep(0.02)
    return False


async def await_bound(port: int, kind: str = "udp", timeout: float = 5.0,
                      proc: subprocess.Popen[bytes] | None = None) -> bool:
    """`wait_bound` for async tests (yields to the event loop while polling)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline and (proc is None or proc.poll() is None):
        if port in _bound_ports(kind):
            return True
        await asyncio.sleep(0.02)
    return False


# -- results --------------------------------------------------------------------------------


class SippError(AssertionError):
    """A sipp run that did not go as the test expected (the message says why)."""


def _read_csv_rows(path: Path | None) -> list[dict[str, str]]:
    if path is None or not path.exists():
        return []
    with path.open(newline="", errors="replace") as f:
        return [row for row in csv.DictReader(f, delimiter=";") if row]


def _tail(path: Path | None, limit: int = 4000) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_text(errors="replace")
    return text if len(text) <= limit else "…" + text[-limit:]


@dataclass(frozen=True)
class LoggedMessage:
    """One entry of sipp's -trace_msg log."""

    time: float  # unix time
    direction: str  # "sent" | "received"
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    def header(self, name: str) -> str | None:
        m = re.search(rf"^{re.escape(name)}\s*:\s*(.*)$", self.text, re.I | re.M)
        return m.group(1).strip() if m else None


_ENTRY = re.compile(
    r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n"
    r"(?:UDP|TCP|TLS|SCTP)? ?message (sent|received)[^\n]*\n\n", re.M)


def parse_message_log(text: str) -> list[LoggedMessage]:
    """Split a -trace_msg log into messages (timestamps in local time, as sipp writes)."""
    text = text.replace("\r\n", "\n")
    out: list[LoggedMessage] = []
    matches = list(_ENTRY.finditer(text))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        stamp = time.mktime(time.strptime(m.group(1).split(".")[0], "%Y-%m-%d %H:%M:%S"))
        stamp += float("0." + m.group(1).split(".")[1])
        out.append(LoggedMessage(stamp, m.group(2), text[m.end():end].strip("\n")))
    return out


@dataclass
class SippResult:
    """What a finished sipp run left: exit code, stat counters, logs."""

    command: list[str]
    returncode: int
    stats: dict[str, str]  # the last row of the -trace_stat CSV (cumulative counters)
    counts: dict[str, str]  # the last row of -trace_counts (per scenario message)
    errors: str  # -trace_err log (tail)
    screen: str  # the final screen (-trace_screen) or stdout tail
    stderr: str
    workdir: Path
    messages_path: Path | None = None
    killed: bool = False

    def counter(self, name: str) -> int:
        """A cumulative counter of the stat CSV by header name, e.g. `FailedCall(C)`."""
        value = self.stats.get(name)
        if value is None:
            raise SippError(f"no column {name!r} in sipp stats\n{self.describe()}")
        try:
            return int(float(value))
        except ValueError as exc:
            raise SippError(f"column {name!r} = {value!r}\n{self.describe()}") from exc

    @property
    def successful(self) -> int:
        return self.counter("SuccessfulCall(C)")

    @property
    def failed(self) -> int:
        return self.counter("FailedCall(C)")

    @property
    def retransmissions(self) -> int:
        return self.counter("Retransmissions(C)")

    @property
    def out_of_call(self) -> int:
        return self.counter("OutOfCallMsgs(C)")

    @property
    def dead_call(self) -> int:
        return self.counter("DeadCallMsgs(C)")

    @property
    def current_calls(self) -> int:
        return self.counter("CurrentCall")

    def count(self, column: str) -> int:
        """A per-message counter from -trace_counts, e.g. `4_200_Recv`, `4_200_Retrans`."""
        value = self.counts.get(column)
        if value is None:
            raise SippError(f"no column {column!r} in counts {sorted(self.counts)}\n"
                            f"{self.describe()}")
        return int(value)

    def messages(self) -> list[LoggedMessage]:
        """The -trace_msg log (only when the run was made with trace_msg=True)."""
        if self.messages_path is None or not self.messages_path.exists():
            raise SippError("no message log: run sipp with trace_msg=True")
        return parse_message_log(self.messages_path.read_text(errors="replace"))

    def describe(self) -> str:
        keys = ("SuccessfulCall(C)", "FailedCall(C)", "Retransmissions(C)",
                "OutOfCallMsgs(C)", "DeadCallMsgs(C)", "CurrentCall", "TotalCallCreated")
        stats = ", ".join(f"{k}={self.stats.get(k)}" for k in keys) or "no stats"
        meaning = EXIT_MEANING.get(self.returncode, "sipp error")
        parts = [
            f"sipp exit {self.returncode} ({meaning}{', killed' if self.killed else ''})",
            "command: " + " ".join(self.command),
            f"workdir: {self.workdir}",
            "stats: " + stats,
        ]
        if self.errors.strip():
            parts.append("error log:\n" + self.errors)
        if self.stderr.strip():
            parts.append("stderr:\n" + self.stderr)
        if self.screen.strip():
            parts.append("screen:\n" + self.screen)
        return "\n".join(parts)

    def assert_ok(
        self,
        calls: int | None = None,
        *,
        retransmissions: int | None = 0,
        unexpected: bool = False,
    ) -> SippResult:
        """Exit 0, no failed call, `calls` successful (if given), no retransmission
        (unless `retransmissions=None`), no out-of-call/dead-call message (unless
        `unexpected=True`). Raises SippError showing the logs otherwise."""
        problems = []
        if self.returncode != 0:
            problems.append(f"exit code {self.returncode}")
        if not self.stats:
            problems.append("no statistics written")
        else:
            if self.failed:
                problems.append(f"{self.failed} failed calls")
            if calls is not None and self.successful != calls:
                problems.append(f"{self.successful} successful calls, expected {calls}")
            if retransmissions is not None and self.retransmissions != retransmissions:
                problems.append(f"{self.retransmissions} retransmissions, "
                                f"expected {retransmissions}")
            if not unexpected and (self.out_of_call or self.dead_call):
                problems.append(f"{self.out_of_call} out-of-call and {self.dead_call} "
                                "dead-call messages")
        if problems:
            raise SippError("; ".join(problems) + "\n" + self.describe())
        return self


# -- the runner -----------------------------------------------------------------------------


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Kill sipp if the test process dies without tearing down (Linux PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except Exception:
        pass


@dataclass
class Sipp:
    """One sipp process. Build with keywords, then `start()`, `wait()`, `result`.

    scenario: "uac.xml" (tests/sipp/), a path, or a built-in name ("uac", "uas").
    remote: "host:port" to call (UAC scenarios); None for a UAS.
    port: our sipp's local port (-p); picked with free_port() when None.
    calls/rate/limit: -m, -r (calls per `rate_period_ms`), -l.
    duration_ms: -d, the length of `<pause/>` steps.
    transport: "udp" (-t u1) or "tcp" (-t t1).
    auth: (user, password) for -au/-ap; keys: -key NAME VALUE pairs; service: -s.
    recv_timeout_ms: -recv_timeout; sipp_timeout_s: sipp's own -timeout (exit, failing).
    trace_msg: keep every message (-trace_msg) for `SippResult.messages()`.
    """

    scenario: str
    workdir: Path
    remote: str | None = None
    port: int | None = None
    host: str = "127.0.0.1"
    calls: int | None = None
    rate: float | None = None
    rate_period_ms: int | None = None
    limit: int | None = None
    duration_ms: int | None = None
    transport: str = "udp"
    auth: tuple[str, str] | None = None
    keys: Mapping[str, str] = field(default_factory=dict)
    service: str | None = None
    recv_timeout_ms: int | None = None
    sipp_timeout_s: float | None = None
    trace_msg: bool = False
    extra: Sequence[str] = ()
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    result: SippResult | None = field(default=None, init=False)
    _killed: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.port is None:
            self.port = free_port(self.host)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._stat = self.workdir / "stats.csv"
        self._errors = self.workdir / "errors.log"
        self._screen = self.workdir / "screen.log"
        self._messages = self.workdir / "messages.log"
        self._stdout = self.workdir / "stdout.txt"
        self._stderr = self.workdir / "stderr.txt"

    # -- command line -----------------------------------------------------------------------
    def _scenario_args(self) -> list[str]:
        if not self.scenario.endswith(".xml"):
            return ["-sn", self.scenario]
        source = Path(self.scenario)
        if not source.is_absolute() and not source.exists():
            source = SCENARIO_DIR / self.scenario
        if not source.exists():
            raise FileNotFoundError(source)
        target = self.workdir / source.name
        shutil.copyfile(source, target)
        return ["-sf", target.name]

    def args(self) -> list[str]:
        """sipp's argv (the scenario file is copied into the work directory)."""
        argv = [SIPP, *self._scenario_args()]
        if self.remote:
            argv.append(self.remote)
        argv += ["-i", self.host, "-p", str(self.port),
                 "-t", {"udp": "u1", "tcp": "t1"}[self.transport],
                 "-buff_size", str(BUFF_SIZE), "-nostdin",
                 "-trace_stat", "-stf", self._stat.name, "-fd", "1",
                 "-trace_err", "-error_file", self._errors.name,
                 "-trace_screen", "-screen_file", self._screen.name,
                 "-trace_counts"]
        if self.trace_msg:
            argv += ["-trace_msg", "-message_file", self._messages.name]
        if self.calls is not None:
            argv += ["-m", str(self.calls)]
        if self.rate is not None:
            argv += ["-r", f"{self.rate:g}"]
        if self.rate_period_ms is not None:
            argv += ["-rp", str(self.rate_period_ms)]
        if self.limit is not None:
            argv += ["-l", str(self.limit)]
        if self.duration_ms is not None:
            argv += ["-d", str(self.duration_ms)]
        if self.recv_timeout_ms is not None:
            argv += ["-recv_timeout", str(self.recv_timeout_ms)]
        if self.sipp_timeout_s is not None:
            argv += ["-timeout", f"{self.sipp_timeout_s:g}s", "-timeout_error"]
        if self.auth is not None:
            argv += ["-au", self.auth[0], "-ap", self.auth[1]]
        if self.service is not None:
            argv += ["-s", self.service]
        for name, value in self.keys.items():
            argv += ["-key", name, value]
        argv += list(self.extra)
        return argv

    # -- process ----------------------------------------------------------------------------
    def _spawn(self) -> None:
        if self.proc is not None:
            raise RuntimeError("sipp already started")
        argv = self.args()
        with self._stdout.open("wb") as out, self._stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                argv, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                preexec_fn=_die_with_parent if os.name == "posix" else None,
            )
        self._argv = argv

    def _not_bound(self) -> SippError:
        self.kill()
        return SippError(f"sipp did not bind {self.transport} port {self.port}\n"
                         f"{self._collect().describe()}")

    def start(self, ready_timeout: float = 5.0) -> Sipp:
        """Start sipp; a UAS (no `remote`) is waited for until its port is bound."""
        self._spawn()
        if self.remote is None and not wait_bound(self.port or 0, self._kind, ready_timeout,
                                                  self.proc):
            raise self._not_bound()
        return self

    async def astart(self, ready_timeout: float = 5.0) -> Sipp:
        """`start()` for async tests: the event loop keeps running while we wait."""
        self._spawn()
        if self.remote is None and not await await_bound(self.port or 0, self._kind,
                                                         ready_timeout, self.proc):
            raise self._not_bound()
        return self

    @property
    def _kind(self) -> str:
        return "tcp" if self.transport == "tcp" else "udp"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float) -> SippResult:
        """Block until sipp exits (killed after `timeout` s: SippError with its logs)."""
        assert self.proc is not None, "sipp not started"
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise SippError(f"sipp still running after {timeout} s\n"
                            f"{self._collect().describe()}") from None
        return self._collect()

    async def await_result(self, timeout: float) -> SippResult:
        """`wait()` for async tests."""
        assert self.proc is not None, "sipp not started"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.proc.poll() is None:
            if loop.time() >= deadline:
                self.kill()
                raise SippError(f"sipp still running after {timeout} s\n"
                                f"{self._collect().describe()}")
            await asyncio.sleep(0.05)
        return self._collect()

    def stop(self, timeout: float = 5.0) -> SippResult:
        """End a run that has no natural end (e.g. a UAS without -m): SIGUSR1 makes sipp
        stop placing/accepting calls and exit, writing its final statistics."""
        assert self.proc is not None, "sipp not started"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL if still running, then reap. Safe to call any time, any number of times."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            self._killed = True
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)

    def _collect(self) -> SippResult:
        assert self.proc is not None
        rc = self.proc.returncode if self.proc.returncode is not None else -1
        stats = _read_csv_rows(self._stat)
        count_files = sorted(self.workdir.glob("*_counts.csv"))
        counts = _read_csv_rows(count_files[-1]) if count_files else []
        screen = _tail(self._screen, 3000) or _tail(self._stdout, 3000)
        self.result = SippResult(
            command=getattr(self, "_argv", []), returncode=rc,
            stats=stats[-1] if stats else {}, counts=counts[-1] if counts else {},
            errors=_tail(self._errors), screen=screen, stderr=_tail(self._stderr, 2000),
            workdir=self.workdir, messages_path=self._messages if self.trace_msg else None,
            killed=self._killed,
        )
        return self.result


class SippFactory:
    """Makes `Sipp` runs in per-run directories under `base`; `close()` kills them all."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.runs: list[Sipp] = []

    def __call__(self, scenario: str, **kwargs: object) -> Sipp:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(scenario).stem)
        run = Sipp(scenario, self.base / f"sipp{len(self.runs)}-{name}", **kwargs)  # type: ignore[arg-type]
        self.runs.append(run)
        return run

    def close(self) -> None:
        for run in self.runs:
            run.kill()
