"""Many long scenario-(a) calls held on one ippbx, for held_calls.py and api_query.py."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from benchlib import Procs, free_port
from peers import Ippbx, PbxConfig, Sipp, ext_password, register

# -- held outbound calls (held_calls.py, api_query.py) ---------------------------------------


@dataclass
class Ramp:
    """How placing a batch of held calls went."""

    calls: int
    seconds: float
    created: int
    failed: int
    retransmissions: int
    unexpected: int
    live: int  # calls outbound/query lists once the batch is up

    @property
    def clean(self) -> bool:
        return (self.failed == 0 and self.retransmissions == 0 and self.unexpected == 0
                and self.created == self.calls)

    def describe(self) -> str:
        return (f"{self.created}/{self.calls} calls placed in {self.seconds:.1f} s, "
                f"failed {self.failed}, retrans {self.retransmissions}, "
                f"unexpected {self.unexpected}, live in ippbx {self.live}")


class OutboundBench:
    """ippbx with extension 1001 registered and a sipp UAS as carrier; holds outbound calls.

    Calls are scenario (a) of sip_cps.py (digest-authenticated extension → trunk) with a
    long pause, placed in batches by `hold()`; the sipp processes keep them up until the
    script kills them (`close()`), so no batch needs to know how long the script runs.
    """

    def __init__(self, procs: Procs, wd: Path, env: Mapping[str, str] | None = None,
                 media: dict[str, str | int] | None = None) -> None:
        self.procs, self.wd = procs, wd
        self.uas_port, self.ext_port = free_port(), free_port()
        cfg = PbxConfig(free_port(), free_port(), wd / "ippbx.sqlite3",
                        trunks=[("carrier", self.uas_port)], outbound_trunks=["carrier"],
                        media=media)  # None: engine "none" (see PbxConfig)
        self.pbx = Ippbx(procs, wd, cfg, env=env)
        self.uas: Sipp | None = None
        self.uacs: list[Sipp] = []
        self.live = 0
        self._uas_seen = (0, 0, 0)  # the UAS's failed, retrans, unexpected so far

    def start(self) -> OutboundBench:
        self.pbx.start()
        self.uas = Sipp(self.procs, self.wd, "uas", "uas.xml", port=self.uas_port,
                        recv_timeout_ms=None).start(uas=True)
        register(self.procs, self.wd, self.pbx, "1001", self.ext_port)
        return self

    def _uac(self, name: str, calls: int, rate: float, hold_ms: int, limit: int) -> Sipp:
        return Sipp(self.procs, self.wd, name, "ext_uac_auth.xml",
                    remote=self.pbx.sip_address, calls=calls, rate=rate, limit=limit,
                    hold_ms=hold_ms, auth=("1001", ext_password("1001")),
                    keys={"user": "1001"}, service="95551234",
                    timeout_s=hold_ms / 1000 + calls / rate + 120)

    def warm_up(self, calls: int = 200, rate: float = 100) -> None:
        """A few short calls, so one-time allocations do not count as per-call memory."""
        self.pbx.logout()
        uac = self._uac("warmup", calls, rate, 0, calls).start()
        res = uac.wait(calls / rate + 60)
        if res.successful != calls:
            raise RuntimeError(f"warm-up: {res.successful}/{calls} calls ok, "
                               f"{res.failed} failed: {res.errors[-500:]}")

    def hold(self, calls: int, rate: float, hold_ms: int, timeout: float) -> Ramp:
        """Place `calls` more calls at `rate`/s that stay up `hold_ms`; wait until ippbx
        lists them all (or `timeout` s pass)."""
        self.pbx.logout()  # no session → no call reports queued while calls are placed
        uac = self._uac(f"hold{len(self.uacs) + 1}", calls, rate, hold_ms, calls)
        self.uacs.append(uac)
        t0 = time.monotonic()
        uac.start()
        deadline = t0 + timeout
        created = 0
        while time.monotonic() < deadline and uac.running:
            res = uac.result()
            created = res.created
            if res.failed:
                break
            if created >= calls and res.counter("CurrentCall") >= calls:
                break
            time.sleep(0.5)
        # wait for the last answers; then ask ippbx how many calls it holds
        time.sleep(2.0)
        target = self.live + calls
        live, steady = -1, 0
        failed = uac.result().failed > 0  # (then the target is out of reach: stop once
        while time.monotonic() < deadline + 30:  # the count holds still for 3 looks)
            now = sum(1 for c in self.pbx.outbound(timeout=60) if c["status"] == "Talking")
            steady = steady + 1 if now == live else 0
            live = now
            if live >= target or (failed and steady >= 2):
                break
            time.sleep(1.0)
        live = max(live, 0)
        self.pbx.logout()  # (counting logged in: no reports for the calls still answered)
        seconds = time.monotonic() - t0
        res = uac.result()
        uas = self.uas.result() if self.uas else None
        seen = (uas.failed, uas.retransmissions, uas.unexpected) if uas else (0, 0, 0)
        new = [now - before for now, before in zip(seen, self._uas_seen, strict=True)]
        self._uas_seen = seen
        self.live = live
        return Ramp(calls, seconds, res.created, res.failed + new[0],
                    res.retransmissions + new[1], res.unexpected + new[2], live)

    def close(self) -> None:
        """Kill the callers and the carrier (their calls die with them), stop ippbx."""
        for uac in self.uacs:
            uac.kill()
        if self.uas is not None:
            self.uas.kill()
        self.pbx.stop()
