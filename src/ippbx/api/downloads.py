"""One-time download tickets: the `random` string of `cdr/get_random`, valid 30 s, once.

A ticket is bound to the session (token) that asked for it and records what it allows
(here: a CDR query) and from which addresses. `redeem` consumes it whatever the outcome,
so a random string never works twice.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TICKET_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Ticket:
    """What one random string allows."""

    token: str
    kind: str
    params: dict[str, Any]
    addresses: frozenset[str]
    expires: float


class DownloadTickets:
    """The live tickets, keyed by their random string."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, ttl: float = TICKET_SECONDS
    ) -> None:
        self._clock = clock
        self._ttl = ttl
        self._tickets: dict[str, Ticket] = {}

    def issue(
        self, token: str, kind: str, params: dict[str, Any], addresses: frozenset[str]
    ) -> str:
        now = self._clock()
        for key in [k for k, t in self._tickets.items() if t.expires <= now]:
            del self._tickets[key]
        random = secrets.token_hex(16)
        self._tickets[random] = Ticket(token, kind, params, addresses, now + self._ttl)
        return random

    def redeem(self, random: str, token: str, kind: str) -> Ticket | None:
        """The ticket if `random` is live, of `kind` and `token`'s; it is used up either way."""
        ticket = self._tickets.pop(random, None)
        if ticket is None or ticket.expires <= self._clock():
            return None
        if ticket.token != token or ticket.kind != kind:
            return None
        return ticket

    def __len__(self) -> int:
        return len(self._tickets)
