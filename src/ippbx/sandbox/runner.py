"""The sandbox: a real ippbx with the demo configuration and simulated traffic, one process.

`Sandbox.start()` brings things up in this order, all in the current event loop:

1. the carrier (`carrier.py`) binds the demo trunk's address (127.0.0.1:5080; port 0
   picks a free one, which then goes into the PBX's configuration);
2. the PBX (`App`, exactly what `ippbx serve` runs) with `sandbox_config()`: the demo
   configuration, the SQLite store in a temporary directory unless `store` is given
   (the self-signed certificate of the HTTPS API, `https_port`, is made beside it);
3. with `receiver_port`, a report receiver (`receiver.py`) on that port, and an API
   session (login over HTTP, as an application would) that sends the reports there;
4. the phones (`phones.py`), one per extension, on free loopback ports, REGISTER;
5. the scheduler places the calls of the seeded plan (`plan.py`) in order, on average
   `calls_per_minute`, never more than `concurrent_max` at once (it waits for a free
   slot rather than skipping a call, so the sequence of dialled numbers depends on the
   seed alone); every `status_interval` seconds one status line is printed.

The simulators reach the PBX through SIP only. The status line reads the PBX's own
counters (the live-call registry, the report delivery) for display.

`stop()` ends the scheduler, lets the callers hang up (BYE / CANCEL) for up to
`STOP_GRACE` seconds, cancels what is left, unregisters the phones, stops the endpoints,
then the PBX, and removes the temporary store. `serve()` runs until SIGINT/SIGTERM or
`duration`; `run()` does it in a fresh uvloop loop and returns the exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import signal
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
import uvloop

from ippbx.api.tls import API_CERT_STEM
from ippbx.app import App
from ippbx.certs import certificate_paths
from ippbx.sandbox.carrier import Carrier, CarrierBehaviour
from ippbx.sandbox.config import DEMO_NO_ANSWER_SECONDS, Topology, sandbox_config
from ippbx.sandbox.endpoint import CallOutcome, Endpoint, wait_first
from ippbx.sandbox.phones import Phone
from ippbx.sandbox.plan import CallKind, PlannedCall, Planner
from ippbx.sandbox.receiver import ReportReceiver
from ippbx.sip.wire import Peer

__all__ = ["Sandbox", "SandboxError", "SandboxOptions", "Stats"]

log = logging.getLogger(__name__)

STOP_GRACE = 5.0  # seconds the calls get to hang up when the sandbox stops
UNREGISTER_TIMEOUT = 3.0
OUTCOMES = ("answered", "busy", "no answer", "abandoned", "failed")


class SandboxError(Exception):
    """The sandbox could not start (e.g. a phone could not register)."""


@dataclass
class SandboxOptions:
    """Everything `ippbx demo` can be told (the defaults are the demo's)."""

    calls_per_minute: float = 20.0
    concurrent_max: int = 10
    seed: int | None = None  # None: a random one, printed so the run can be repeated
    duration: float | None = None  # seconds; None: until Ctrl-C
    status_interval: float = 5.0
    host: str = "127.0.0.1"
    sip_port: int = 5060
    api_port: int = 9011
    https_port: int = 8088
    tls_port: int = 5061
    carrier_port: int = 5080
    store: str | None = None  # SQLite path; None: a temporary directory
    no_answer_seconds: int = DEMO_NO_ANSWER_SECONDS
    busy_rate: float = 0.15
    no_answer_rate: float = 0.10
    receiver_port: int | None = None  # receive the reports here (0: a free port)
    verbose: bool = False  # a line per call placed, per call over and per report

    def __post_init__(self) -> None:
        if self.calls_per_minute <= 0:
            raise ValueError("calls per minute must be positive")
        if self.concurrent_max < 1:
            raise ValueError("concurrent max must be at least 1")
        if self.duration is not None and self.duration < 0:
            raise ValueError("duration must not be negative")
        if self.status_interval <= 0:
            raise ValueError("status interval must be positive")
        CarrierBehaviour(busy_rate=self.busy_rate, no_answer_rate=self.no_answer_rate)


@dataclass
class Stats:
    """What the sandbox's own calls did."""

    placed: int = 0
    done: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def record(self, outcome: CallOutcome) -> None:
        self.done += 1
        self.outcomes[outcome.category] += 1


class Sandbox:
    """ippbx plus simulated phones and carrier; see the module docstring."""

    def __init__(self, options: SandboxOptions | None = None, *,
                 out: TextIO | None = None) -> None:
        self.options = options = options or SandboxOptions()
        self.seed = options.seed if options.seed is not None else secrets.randbelow(1_000_000)
        self.out = out if out is not None else sys.stdout
        self.app: App | None = None
        self.carrier: Carrier | None = None
        self.phones: dict[str, Phone] = {}
        self.receiver: ReportReceiver | None = None
        self._token = ""
        self.topology: Topology | None = None
        self.planner: Planner | None = None
        self.history: list[PlannedCall] = []  # the calls placed, in order
        self.stats = Stats()
        self.store_path = ""
        self._calls: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._slot = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._started_at = 0.0
        self._stopped = False

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Carrier, PBX, phones, then the traffic. Undone again if any step fails."""
        opts = self.options
        loop = asyncio.get_running_loop()
        self._started_at = loop.time()
        try:
            behaviour = CarrierBehaviour(busy_rate=opts.busy_rate,
                                         no_answer_rate=opts.no_answer_rate)
            self.carrier = Carrier(opts.host, opts.carrier_port, seed=self.seed,
                                   behaviour=behaviour)
            await self.carrier.start()
            if opts.store is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="ippbx-demo-")
                self.store_path = str(Path(self._tmp.name) / "ippbx-demo.sqlite3")
            else:
                self.store_path = opts.store
            config = sandbox_config(
                sip_port=opts.sip_port, api_port=opts.api_port,
                https_port=opts.https_port, tls_port=opts.tls_port,
                carrier_port=self.carrier.port,
                store_path=self.store_path,
                no_answer_seconds=opts.no_answer_seconds, host=opts.host,
            )
            self.app = App(config)
            await self.app.start()
            topology = self.topology = Topology.from_config(
                config, pbx_port=self.app.pbx.transport.local_port)
            pbx = Peer(topology.pbx_host, topology.pbx_port)
            self.carrier.connect(pbx)
            if opts.receiver_port is not None:
                self.receiver = ReportReceiver(opts.host, opts.receiver_port, self._on_report)
                await self.receiver.start()
                self._token = await self._api("login", {
                    "username": config.api.username,
                    "password": hashlib.md5(config.api.password.encode()).hexdigest(),
                    "port": str(self.receiver.port),
                })
            for number, password in topology.extensions.items():
                self.phones[number] = Phone(
                    number, password, pbx, topology.domain, host=opts.host,
                    display_name=topology.names.get(number, ""), seed=self.seed,
                )
            await asyncio.gather(*(phone.start() for phone in self.phones.values()))
            registered = await asyncio.gather(*(p.register() for p in self.phones.values()))
            if not all(registered):
                failed = [n for n, ok in zip(self.phones, registered, strict=True) if not ok]
                raise SandboxError(f"phones {', '.join(failed)} could not register")
            for phone in self.phones.values():
                phone.keep_registered()
            self.planner = Planner(self.seed, list(topology.extensions), topology.prefix,
                                   topology.dids, calls_per_minute=opts.calls_per_minute)
            self._tasks = [asyncio.ensure_future(self._schedule()),
                           asyncio.ensure_future(self._report_status())]
        except BaseException:
            await self.stop(quiet=True)
            raise

    async def stop(self, *, quiet: bool = False) -> None:
        """Hang up, unregister, stop everything; leaves no task and no socket behind."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        endpoints: list[Endpoint] = [*self.phones.values()]
        if self.carrier is not None:
            endpoints.append(self.carrier)
        for endpoint in endpoints:
            endpoint.stopping.set()  # callers hang up, callees wait for the BYE
        if self._calls:
            await asyncio.wait(set(self._calls), timeout=STOP_GRACE)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        while any(e.calls_in_progress for e in endpoints) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        calls = set(self._calls)
        for task in calls:
            task.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(p.unregister() for p in self.phones.values()),
                               return_exceptions=True),
                UNREGISTER_TIMEOUT)
        for endpoint in endpoints:
            await endpoint.stop()
        if self._token and self.app is not None:
            delivery = self.app.reports.delivery
            deadline = loop.time() + 1.0  # the last reports (Unregistered…) reach the receiver
            while delivery.pending() and loop.time() < deadline:
                await asyncio.sleep(0.02)
            with contextlib.suppress(httpx.HTTPError, SandboxError):
                await self._api("logout", {})
            self._token = ""
        if self.app is not None:
            if not quiet:
                self._print(self.status_line())
            await self.app.stop()
            self.app.close()
        if self.receiver is not None:
            await self.receiver.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def serve(self) -> int:
        """Start, run until SIGINT/SIGTERM or `duration`, stop; the exit code (0)."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        signals = (signal.SIGINT, signal.SIGTERM)

        def on_signal(signum: int) -> None:
            self._print(f"{signal.Signals(signum).name} received, stopping…")
            for sig in signals:
                loop.remove_signal_handler(sig)  # a second one: the default behaviour
            stop.set()

        for sig in signals:
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            await self.start()
            self._print(self.banner())
            await wait_first((stop,), self.options.duration)
        finally:
            await self.stop()
            for sig in signals:
                loop.remove_signal_handler(sig)
        self._print("ippbx demo stopped")
        return 0

    def run(self) -> int:
        """`serve()` in a fresh uvloop event loop."""
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(self.serve())

    # -- traffic ----------------------------------------------------------------------------
    @property
    def live_calls(self) -> int:
        """Calls the sandbox placed that are not over yet."""
        return len(self._calls)

    async def _schedule(self) -> None:
        assert self.planner is not None
        first = True
        while not self._stopping.is_set():
            plan = self.planner.next()
            if not first and await wait_first((self._stopping,), plan.gap) is not None:
                return
            first = False
            while len(self._calls) >= self.options.concurrent_max:
                self._slot.clear()
                if await wait_first((self._slot, self._stopping), None) is self._stopping:
                    return
            self.history.append(plan)
            self.stats.placed += 1
            if self.options.verbose:
                self._print(plan.describe())
            task = asyncio.ensure_future(self._place(plan))
            self._calls.add(task)
            task.add_done_callback(self._call_done)

    def _call_done(self, task: asyncio.Task[None]) -> None:
        self._calls.discard(task)
        self._slot.set()

    async def _place(self, plan: PlannedCall) -> None:
        try:
            if plan.kind is CallKind.INBOUND:
                assert self.carrier is not None
                outcome = await self.carrier.call(plan.caller, plan.dialled, talk=plan.talk,
                                                  patience=plan.patience)
            else:
                outcome = await self.phones[plan.caller].call(
                    plan.dialled, talk=plan.talk, patience=plan.patience)
        except Exception:
            log.exception("sandbox call %s failed", plan.describe())
            outcome = CallOutcome(500)
        self.stats.record(outcome)
        if self.options.verbose:
            who = f", {outcome.hung_up_by} hung up" if outcome.answered else ""
            self._print(f"#{plan.index} {outcome.category} ({outcome.status}{who})")

    # -- the API session of --receiver ------------------------------------------------------
    async def _api(self, endpoint: str, body: dict[str, str]) -> str:
        """POST to the PBX's API as an application does; the token on login."""
        assert self.app is not None
        url = f"http://{self.options.host}:{self.app.api.port}/api/v0.0.1/{endpoint}"
        if self._token:
            url += f"?token={self._token}"
        async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
            answer = (await client.post(url, json=body)).json()
        if answer.get("status") != "Success":
            raise SandboxError(f"API {endpoint} failed: {answer}")
        return str(answer.get("token", ""))

    def _on_report(self, report: dict[str, Any]) -> None:
        if not self.options.verbose:
            return
        parts = [f"report {report.get('action', '?')}"]
        for key in ("callid", "extension", "status", "reason"):
            if key in report:
                parts.append(f"{key} {report[key]}")
        self._print(" ".join(parts))

    # -- output -----------------------------------------------------------------------------
    async def _report_status(self) -> None:
        while True:
            await asyncio.sleep(self.options.status_interval)
            self._print(self.status_line())

    def _clock(self) -> str:
        elapsed = int(asyncio.get_running_loop().time() - self._started_at)
        return f"{elapsed // 60:02d}:{elapsed % 60:02d}"

    def _print(self, text: str) -> None:
        prefix = f"[{self._clock()}] " if self._started_at else ""
        print(prefix + text, file=self.out, flush=True)

    def status_line(self) -> str:
        """One line: live calls (the PBX's registry), calls done, reports delivered."""
        live = outbound = inbound = delivered = queued = 0
        if self.app is not None:
            registry = self.app.registry
            live, outbound, inbound = (len(registry), len(registry.outbound()),
                                       len(registry.inbound()))
            delivered = self.app.reports.delivery.delivered
            queued = self.app.reports.delivery.pending()
        outcomes = ", ".join(f"{name} {self.stats.outcomes[name]}" for name in OUTCOMES)
        return (f"live calls {live} (outbound {outbound}, inbound {inbound}) | "
                f"calls placed {self.stats.placed}, done {self.stats.done} ({outcomes}) | "
                f"reports delivered {delivered}, queued {queued}")

    def banner(self) -> str:
        opts = self.options
        assert self.app is not None and self.carrier is not None and self.topology is not None
        api = f"http://{opts.host}:{self.app.api.port}"
        https: list[str] = []
        if self.app.api_tls is not None:
            cert = (self.app.config.api.tls_cert
                    or certificate_paths(self.store_path, API_CERT_STEM)[0])
            https = [f"  https    https://{opts.host}:{self.app.api_tls.port}/api/v0.0.1/ "
                     f"(certificate {cert}; curl -k)"]
        tls_port = self.app.pbx.transport.tls_port
        tls = f", {opts.host}:{tls_port} (tls)" if tls_port is not None else ""
        phones = ", ".join(self.phones)
        length = f"for {opts.duration:g} s" if opts.duration is not None else "until Ctrl-C"
        return "\n".join([
            f"ippbx demo, seed {self.seed} (repeat this traffic with --seed {self.seed})",
            f"  PBX      SIP {self.topology.pbx_host}:{self.topology.pbx_port} (udp, tcp)"
            f"{tls}, API {api}/api/v0.0.1/ (user api, password apipass)",
            *https,
            f"  carrier  {self.carrier.host}:{self.carrier.port} "
            f"(trunk {self.topology.trunk.name!r}, DID {', '.join(self.topology.dids)})",
            f"  phones   {phones} registered",
            f"  traffic  {opts.calls_per_minute:g} calls/min, at most {opts.concurrent_max} "
            f"at once, {length}",
            f"  store    {self.store_path}",
            *([f"  receiver http://{opts.host}:{self.receiver.port}/ gets the call reports "
               "(an API session of its own)"] if self.receiver is not None else []),
        ])
