"""The registrar: where each extension can be reached (RFC 3261 §10.3), kept in SQLite.

It is handed REGISTER requests that have already been authenticated for an extension and
answers them: bindings with expiry (min/max/default), several contacts up to the
extension's `max_contacts`, unregister with `Expires: 0` or `*`, and the source address a
REGISTER came from remembered so calls reach phones behind NAT. Over the limit, the
binding registered (or refreshed) longest ago goes, never the one just registered: with
`max_contacts = 1` a phone that moves replaces its old binding whatever the expiry each
asked for, and the 200 lists the bindings in force. Changes are reported to
`on_change(extension, registered)`. For the metrics, `replies` counts the answers by
status and `binding_count` the bindings held (kept up to date as they change: nothing
is scanned to read them).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from ippbx.config import Config
from ippbx.sip.errors import SipParseError
from ippbx.sip.headers import NameAddr
from ippbx.sip.message import Request
from ippbx.sip.wire import Peer
from ippbx.store.sqlite import RegistrationRow, Store


@dataclass(frozen=True, slots=True)
class Reply:
    """The response the registrar wants sent: status, reason (None: standard), headers."""

    status: int
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class Binding:
    """One contact of an extension: the URI to put in the Request-URI, where to send it."""

    extension: str
    contact: str
    expires_at: float
    source: Peer
    call_id: str
    cseq: int
    user_agent: str = ""


class Registrar:
    """Bindings per extension, persisted on every change."""

    def __init__(
        self,
        config: Config,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[str, bool], None] | None = None,
    ) -> None:
        self._config = config
        self._store = store
        self._clock = clock
        self.on_change = on_change
        self._max_contacts = {e.number: e.max_contacts for e in config.extensions}
        self._bindings: dict[str, list[Binding]] = {}
        self.binding_count = 0  # bindings held, expired ones until `expire()` drops them
        self.replies: Counter[int] = Counter()  # REGISTERs answered, by status
        if store is not None:
            for row in store.load_registrations(clock()):
                if row.extension in self._max_contacts:
                    self._bindings.setdefault(row.extension, []).append(
                        Binding(row.extension, row.contact, row.expires_at,
                                Peer(row.host, row.port, row.transport), row.call_id, row.cseq,
                                row.user_agent)
                    )
                    self.binding_count += 1

    def reconfigure(self, config: Config) -> None:
        """A new configuration: the bindings of an extension that is gone, or whose
        password changed, are dropped (its phone must register, and authenticate, anew);
        the others stay."""
        old = {e.number: e.password for e in self._config.extensions}
        new = {e.number: e.password for e in config.extensions}
        self._config = config
        self._max_contacts = {e.number: e.max_contacts for e in config.extensions}
        for extension in list(self._bindings):
            if new.get(extension) is None or new[extension] != old.get(extension):
                self.unbind(extension)

    def unbind(self, extension: str) -> None:
        """Forget every binding of `extension`."""
        if self._store is not None:
            self._store.delete_registration(extension)
        self._set(extension, [])

    # -- lookups ------------------------------------------------------------------------
    def contacts(self, extension: str) -> list[Binding]:
        """Live bindings of `extension`, newest first."""
        bindings = self._bindings.get(extension)
        if not bindings:
            return []
        now = self._clock()
        if any(b.expires_at <= now for b in bindings):
            self.expire(now)
            bindings = self._bindings.get(extension, [])
        return sorted(bindings, key=lambda b: -b.expires_at)

    def bindings(self) -> list[Binding]:
        """Every live binding."""
        now = self._clock()
        return [b for bindings in list(self._bindings.values()) for b in bindings
                if b.expires_at > now]

    def is_registered(self, extension: str) -> bool:
        return bool(self.contacts(extension))

    def bound_extensions(self) -> int:
        """How many extensions hold a binding (expired ones count until `expire()`
        drops them, within a few seconds): a dict's length, for the metrics."""
        return len(self._bindings)

    def registered_count(self) -> int:
        return sum(1 for ext in list(self._bindings) if self.contacts(ext))

    def expire(self, now: float | None = None) -> None:
        """Drop expired bindings (called on lookups and periodically by the app)."""
        now = self._clock() if now is None else now
        for ext in list(self._bindings):
            live = [b for b in self._bindings[ext] if b.expires_at > now]
            if len(live) != len(self._bindings[ext]):
                for b in self._bindings[ext]:
                    if b.expires_at <= now and self._store is not None:
                        self._store.delete_registration(ext, b.contact)
                self._set(ext, live)

    # -- REGISTER -----------------------------------------------------------------------
    def register(self, request: Request, source: Peer, extension: str) -> Reply:
        """Apply an authenticated REGISTER for `extension`; return the response to send."""
        reply = self._register(request, source, extension)
        self.replies[reply.status] += 1
        return reply

    def _register(self, request: Request, source: Peer, extension: str) -> Reply:
        sip = self._config.sip
        now = self._clock()
        try:
            contacts = [NameAddr.parse(c) for c in request.get_all("Contact")]
            cseq, _ = request.cseq
            header_expires = request.get("Expires")
            default = int(header_expires) if header_expires is not None else sip.default_expires
        except (SipParseError, ValueError):
            return Reply(400, "Bad Contact or Expires")
        current = list(self._bindings.get(extension, []))  # oldest registration first
        if not contacts:  # a query: list the bindings
            return self._ok(extension)
        if any(c.uri == "*" for c in contacts):
            if len(contacts) != 1 or default != 0:
                return Reply(400, "Wildcard Contact needs Expires: 0")
            if self._store is not None:
                self._store.delete_registration(extension)
            self._set(extension, [])
            return self._ok(extension)
        for contact in contacts:
            raw = contact.params.get("expires")
            try:
                expires = int(raw) if raw is not None else default
            except ValueError:
                return Reply(400, "Bad expires parameter")
            if expires < 0:
                return Reply(400, "Bad expires parameter")
            if 0 < expires < sip.min_expires:
                return Reply(423, headers=(("Min-Expires", str(sip.min_expires)),))
            old = next((b for b in current if b.contact == contact.uri), None)
            if old is not None and old.call_id == request.call_id and cseq <= old.cseq:
                return Reply(500, "Out of order REGISTER")
            if old is not None:
                current.remove(old)
                if self._store is not None:
                    self._store.delete_registration(extension, old.contact)
            if expires == 0:
                continue
            binding = Binding(
                extension, contact.uri, now + min(expires, sip.max_expires), source,
                request.call_id, cseq, request.get("User-Agent") or "",
            )
            current.append(binding)
            limit = max(1, self._max_contacts.get(extension, 1))
            while len(current) > limit:  # replace the oldest, so a phone that moved gets in
                evicted = current.pop(0)  # registered longest ago (not: expiring soonest)
                if self._store is not None:
                    self._store.delete_registration(extension, evicted.contact)
            if self._store is not None:
                self._store.save_registration(RegistrationRow(
                    extension, binding.contact, binding.expires_at, source.host, source.port,
                    source.transport, binding.call_id, binding.cseq, binding.user_agent,
                ))
        self._set(extension, current)
        return self._ok(extension)

    def _set(self, extension: str, bindings: list[Binding]) -> None:
        old = self._bindings.get(extension)
        was = bool(old)
        self.binding_count += len(bindings) - (len(old) if old else 0)
        if bindings:
            self._bindings[extension] = bindings
        else:
            self._bindings.pop(extension, None)
        now_registered = bool(bindings)
        if was != now_registered and self.on_change is not None:
            self.on_change(extension, now_registered)

    def _ok(self, extension: str) -> Reply:
        now = self._clock()
        contacts = tuple(
            ("Contact", f"<{b.contact}>;expires={max(0, int(b.expires_at - now))}")
            for b in self._bindings.get(extension, [])
        )
        return Reply(200, headers=contacts)
