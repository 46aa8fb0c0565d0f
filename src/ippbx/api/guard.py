"""Limits on the API's HTTP connections, so idle or half-sent requests cannot use up the
server: a request deadline and connection caps, applied by `ippbx.api.http_server`.

- A request must arrive whole (headers and body) within `request_timeout` seconds of its
  first byte, and a new connection must start a request within that time: a connection
  that sends nothing, or half a request (slowloris), is closed. Between requests, an
  idle keep-alive connection is closed after `http_server.KEEP_ALIVE` seconds.
- At most `max_connections_per_ip` open connections from one address, and
  `max_connections` in all (keep it below the process's descriptor limit, which `App`
  lifts to the hard limit at start): a connection over a cap is closed as soon as it is
  accepted.
- Every cut is counted (`HttpGuard.cut`) and logged, one WARNING line per reason at most
  every `LOG_EVERY` seconds with how many there were.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

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
