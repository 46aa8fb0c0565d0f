"""Limits on the API's HTTP connections, so idle or half-sent requests cannot use up the
server: uvicorn's HTTP protocol with a request deadline and connection caps.

- A request must arrive whole (headers and body) within `request_timeout` seconds of its
  first byte, and a new connection must start a request within that time: a connection
  that sends nothing, or half a request (slowloris), is closed. uvicorn's own keep-alive
  timeout still closes idle connections between requests.
- At most `max_connections_per_ip` open connections from one address, and
  `max_connections` in all (keep it below the process's descriptor limit, which `App`
  lifts to the hard limit at start): a connection over a cap is closed as soon as it is
  accepted.
- Every cut is counted (`HttpGuard.cut`) and logged, one WARNING line per reason at most
  every `LOG_EVERY` seconds with how many there were.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

LOG_EVERY = 10.0


@dataclass
class HttpGuard:
    """The limits of one API listener and what they cut."""

    request_timeout: float
    max_connections_per_ip: int
    max_connections: int
    open: Counter[str] = field(default_factory=Counter)  # open connections by address
    cut: Counter[str] = field(default_factory=Counter)  # connections closed, by reason
    _logged: dict[str, tuple[float, int]] = field(default_factory=dict)

    def admit(self, ip: str) -> str | None:
        """Count a new connection from `ip`; the reason to refuse it, or None."""
        if sum(self.open.values()) >= self.max_connections:
            return "too many connections"
        if self.open[ip] >= self.max_connections_per_ip:
            return "too many connections from one address"
        self.open[ip] += 1
        return None

    def release(self, ip: str) -> None:
        self.open[ip] -= 1
        if self.open[ip] <= 0:
            del self.open[ip]

    def record(self, reason: str, ip: str) -> None:
        """A connection was cut for `reason`: count it, and log now and then."""
        self.cut[reason] += 1
        now = time.monotonic()
        last, count = self._logged.get(reason, (0.0, 0))
        if now - last >= LOG_EVERY:
            log.warning("API connection from %s closed: %s (%d such since the last line)",
                        ip, reason, self.cut[reason] - count)
            self._logged[reason] = (now, self.cut[reason])

    def protocol(self) -> type[HttpToolsProtocol]:
        """uvicorn's HTTP protocol class with these limits (`uvicorn.Config(http=…)`)."""
        guard = self

        class GuardedHttpProtocol(HttpToolsProtocol):
            _deadline: asyncio.TimerHandle | None = None
            _admitted: str | None = None

            def connection_made(self, transport: Any) -> None:
                super().connection_made(transport)
                ip = self.client[0] if self.client else ""
                refused = guard.admit(ip)
                if refused is not None:
                    guard.record(refused, ip)
                    transport.abort()
                    return
                self._admitted = ip
                self._arm()

            def connection_lost(self, exc: Exception | None) -> None:
                self._disarm()
                if self._admitted is not None:
                    guard.release(self._admitted)
                    self._admitted = None
                super().connection_lost(exc)

            def on_message_begin(self) -> None:
                super().on_message_begin()
                self._arm()  # this request has request_timeout to arrive whole

            def on_message_complete(self) -> None:
                super().on_message_complete()
                self._disarm()

            def _arm(self) -> None:
                self._disarm()
                self._deadline = self.loop.call_later(guard.request_timeout, self._expired)

            def _disarm(self) -> None:
                if self._deadline is not None:
                    self._deadline.cancel()
                    self._deadline = None

            def _expired(self) -> None:
                self._deadline = None
                if not self.transport.is_closing():
                    guard.record("request not received in time", self._admitted or "")
                    self.transport.close()

        return GuardedHttpProtocol
