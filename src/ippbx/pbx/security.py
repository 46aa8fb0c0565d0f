"""Bans, lockouts and rate limits for SIP authentication (a pike/fail2ban of our own).

Pure policy with an injected clock and bounded memory; `pbx/auth.py` asks it before and
tells it after each digest check. The rules:

- **What counts.** Only a failure the digest layer could pin on its sender counts: wrong
  credentials over a nonce we issued to that same address (`VerifyResult.is_failure`). A
  spoofed packet cannot carry such a nonce, so nobody can get someone else banned blindly.
- **Per address.** Each failure counts against the source address and, within it, against
  the extension it tried (or against no extension for an unknown user name). The address
  is banned for `ban_seconds` once its failures reach `ban_failures`; a success for
  extension X from the address forgets that address's failures at X only (the address
  proved it knows X's password), never those at other extensions. Counts are forgotten
  `failure_window` seconds after the address's last failure. A ban refuses every request
  from the address (403) and is logged once at WARNING.
- **Per extension.** Failures at an extension from anywhere count too; at
  `lockout_failures` (within `failure_window` of each other) the extension is locked for
  `lockout_seconds`: authentications as it are refused (403, whatever the password) —
  except from addresses it authenticated from successfully in the last `known_seconds`
  (its own phones keep registering and calling). Successes never reset this count, so a
  distributed guesser cannot hide behind the phone's refreshes. Logged once at WARNING.
- **Rate limit.** Each address has a token bucket (`rate_limit` per second, `rate_burst`
  deep); every request we answer without accepting it (a challenge or a refusal) takes a
  token, and with none left the request is answered 503 with Retry-After instead (valid
  credentials are never limited). SIP has no way to drop a request without leaving a
  transaction open, hence 503 rather than silence.
- **Trusted** addresses (`trusted` CIDRs) are never banned, counted against or rate
  limited; their failures still count against the extension they tried.

Memory: every table holds at most `table_size` entries and forgets expired ones from its
oldest end, evicting the least recently used entry only when it is full of live ones.
Address failure counts live in two such tables: one failure in a "probation" table, two or
more in a "protected" one, so a flood of one-failure addresses can only push out other
one-failure addresses, never the count of an address that keeps guessing.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ippbx.addresses import in_networks, networks
from ippbx.config import SecuritySection

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")

_KNOWN_SOURCES_PER_EXTENSION = 16


class ExpiringTable(Generic[K, V]):
    """key → value with an expiry time, least recently written first, at most `capacity`.

    `put` moves a key to the new end; expired entries are purged from the old end (exact
    when every entry lives the same time after its last write, and bounded either way), and
    when the table is still full the oldest entry goes. Never cleared wholesale.
    """

    def __init__(self, capacity: int, clock: Callable[[], float]) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._clock = clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._items))

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= self._clock():
            del self._items[key]
            return None
        return item[1]

    def expires_at(self, key: K) -> float | None:
        item = self._items.get(key)
        return None if item is None or item[0] <= self._clock() else item[0]

    def put(self, key: K, value: V, expires_at: float) -> None:
        self._items[key] = (expires_at, value)
        self._items.move_to_end(key)
        if len(self._items) > self.capacity:
            self.purge()
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def pop(self, key: K) -> V | None:
        item = self._items.pop(key, None)
        return None if item is None or item[0] <= self._clock() else item[1]

    def purge(self) -> None:
        """Drop expired entries from the old end."""
        now = self._clock()
        items = self._items
        while items:
            key = next(iter(items))
            if items[key][0] > now:
                break
            del items[key]


@dataclass(slots=True)
class _AddressFailures:
    """Failures of one source address, by the extension they were at (None: no such user)."""

    total: int = 0
    by_extension: dict[str | None, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float
    limited: bool = False


@dataclass(slots=True)
class _ExtensionState:
    failures: int = 0
    last_failure: float = float("-inf")
    locked_until: float = float("-inf")
    known: OrderedDict[str, float] = field(default_factory=OrderedDict)  # address -> until


class Security:
    """The policy of the module docstring for one PBX."""

    def __init__(
        self,
        section: SecuritySection,
        extensions: set[str] | frozenset[str],
        *,
        known_seconds: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.section = section
        self.known_seconds = known_seconds
        self._clock = clock
        self._trusted = networks(section.trusted)
        size = section.table_size
        self._probation: ExpiringTable[str, _AddressFailures] = ExpiringTable(size, clock)
        self._protected: ExpiringTable[str, _AddressFailures] = ExpiringTable(size, clock)
        self._bans: ExpiringTable[str, int] = ExpiringTable(size, clock)
        self._buckets: ExpiringTable[str, _Bucket] = ExpiringTable(size, clock)
        self._extensions = {number: _ExtensionState() for number in extensions}

    # -- addresses ------------------------------------------------------------------------
    def is_trusted(self, address: str) -> bool:
        return bool(self._trusted) and in_networks(address, self._trusted)

    def is_banned(self, address: str) -> bool:
        return address in self._bans

    def ban_expires_at(self, address: str) -> float | None:
        return self._bans.expires_at(address)

    def failures(self, address: str) -> int:
        """The failures currently counted against `address`."""
        record = self._protected.get(address) or self._probation.get(address)
        return record.total if record is not None else 0

    def over_limit(self, address: str) -> bool:
        """Take a token for a request we will not accept; True if none was left."""
        if self.is_trusted(address):
            return False
        rate, burst = self.section.rate_limit, float(self.section.rate_burst)
        now = self._clock()
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = _Bucket(burst, now)
        else:
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * rate)
            bucket.at = now
        limited = bucket.tokens < 1.0
        if limited:
            if not bucket.limited:
                log.info("SIP: %s is over the rate limit (%g requests/s without valid "
                         "credentials): answering 503", address, rate)
            bucket.limited = True
        else:
            bucket.tokens -= 1.0
            bucket.limited = False
        # a bucket that has filled up again is the same as none: let the entry expire then
        self._buckets.put(address, bucket, now + (burst - bucket.tokens) / rate)
        return limited

    # -- extensions -----------------------------------------------------------------------
    def set_extensions(self, extensions: set[str] | frozenset[str]) -> None:
        """The extensions that exist now (a configuration change): new ones start clean,
        removed ones are forgotten, the others keep their counts and lockouts."""
        self._extensions = {number: self._extensions.get(number) or _ExtensionState()
                            for number in extensions}

    def is_locked(self, extension: str, address: str) -> bool:
        """Is `extension` locked out for a request from `address`?"""
        state = self._extensions.get(extension)
        if state is None:
            return False
        now = self._clock()
        if state.locked_until <= now:
            return False
        until = state.known.get(address)
        return until is None or until <= now

    def extension_failures(self, extension: str) -> int:
        state = self._extensions.get(extension)
        if state is None or state.last_failure + self.section.failure_window <= self._clock():
            return 0
        return state.failures

    # -- outcomes -------------------------------------------------------------------------
    def failed(self, address: str, extension: str | None) -> None:
        """A failure pinned on `address` (see `VerifyResult.is_failure`) at `extension`."""
        now = self._clock()
        if extension is not None and extension not in self._extensions:
            extension = None
        if extension is not None:
            self._extension_failed(extension, address, now)
        if self.is_trusted(address):
            return
        record = self._protected.pop(address) or self._probation.pop(address) \
            or _AddressFailures()
        record.total += 1
        record.by_extension[extension] = record.by_extension.get(extension, 0) + 1
        if record.total >= self.section.ban_failures:
            self._ban(address, record, now)
            return
        table = self._probation if record.total == 1 else self._protected
        table.put(address, record, now + self.section.failure_window)

    def succeeded(self, address: str, extension: str) -> None:
        """`address` authenticated as `extension`."""
        now = self._clock()
        state = self._extensions.get(extension)
        if state is not None:
            state.known[address] = now + self.known_seconds
            state.known.move_to_end(address)
            while len(state.known) > _KNOWN_SOURCES_PER_EXTENSION:
                state.known.popitem(last=False)
        for table in (self._protected, self._probation):
            record = table.get(address)
            if record is None:
                continue
            record.total -= record.by_extension.pop(extension, 0)
            if record.total <= 0:
                table.pop(address)
            # (a record that dropped back to one failure stays where it is: harmless)

    def _ban(self, address: str, record: _AddressFailures, now: float) -> None:
        seconds = self.section.ban_seconds
        if seconds <= 0:
            return
        self._bans.put(address, record.total, now + seconds)
        tried = ", ".join(sorted(ext for ext in record.by_extension if ext is not None))
        log.warning("SIP: banned %s for %d s after %d failed authentications (extensions: %s)",
                    address, seconds, record.total, tried or "none")

    def _extension_failed(self, extension: str, address: str, now: float) -> None:
        state = self._extensions[extension]
        if state.last_failure + self.section.failure_window <= now:
            state.failures = 0
        state.failures += 1
        state.last_failure = now
        if state.failures >= self.section.lockout_failures and state.locked_until <= now:
            seconds = self.section.lockout_seconds
            state.failures = 0
            if seconds <= 0:
                return
            state.locked_until = now + seconds
            log.warning("SIP: extension %s locked for %d s after %d failed authentications "
                        "(the last from %s)", extension, seconds,
                        self.section.lockout_failures, address)
