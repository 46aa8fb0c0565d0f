"""API sessions: login, tokens with a sliding lifetime, heartbeat, logout and login lockout.

Pure logic with an injectable clock; nothing here knows HTTP. A login checks, in order:
the source address against `allowed_ips` (refused with 20002), the address's lockout
(20002), the presence of username and password (10004), then the credentials (20003;
the OpenVox dialect shows that as 30003). The password is the lowercase MD5 hex of the
configured API password, compared in constant time. `lockout_failures` consecutive
failures from one address lock it for `lockout_seconds`; a success resets its count, and
an address's count is dropped after `lockout_seconds` without a failure.

A token is 32 lowercase hex characters from `secrets`. It stays valid while it is used at
least every `token_ttl` seconds (any request, a heartbeat, or a delivered report via
`touch`). An expired token is remembered for `forget_after` seconds (answering 20006),
then forgotten (20004, like a token that never existed or was logged out). Tokens are
never logged: `Session.__repr__` hides it.

With a `store`, sessions survive a restart: login, heartbeat and logout are written at
once, other use (`check`, `touch`) at most every `persist_every` seconds; at start the
stored sessions are loaded back (times converted between the wall clock in the store and
the monotonic clock here), and long-forgotten ones deleted.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ippbx.addresses import in_networks, networks
from ippbx.api.errors import ApiError, Errno
from ippbx.config import ApiSection
from ippbx.store.sessions import SessionRow

Clock = Callable[[], float]

FORGET_AFTER = 6 * 3600.0
"""Seconds an expired token is still recognised (and answered with 20006)."""

_PURGE_EVERY = 60.0

PERSIST_EVERY = 60.0
"""At most this often (seconds) is a session's last use written to the store."""


class SessionStore(Protocol):
    """Where sessions are kept across restarts (`ippbx.store.sqlite.Store`)."""

    def save_session(self, row: SessionRow) -> None: ...

    def touch_session(self, token: str, last_seen: float) -> None: ...

    def delete_session(self, token: str) -> None: ...

    def load_sessions(self) -> list[SessionRow]: ...


@dataclass(slots=True)
class Session:
    """One logged-in API client and where its reports go."""

    token: str = field(repr=False)
    dialect: str
    source_ip: str
    port: str = ""
    url: str = ""
    urltag: str = "0"
    version: str = ""
    ipaddr: str = ""
    created: float = 0.0
    last_seen: float = 0.0
    persisted: float = field(default=0.0, repr=False, compare=False)
    username: str = ""  # who logged in ("": the first user, from before names were kept)

    @property
    def report_ip(self) -> str:
        """Address reports go to: what a heartbeat's `ipaddr` set, else the login source."""
        return self.ipaddr or self.source_ip


@dataclass(slots=True)
class _Failures:
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


def md5_hex(text: str) -> str:
    """Lowercase MD5 hex of `text` (what a client sends as the login password)."""
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def check_port(port: str | None) -> str | None:
    """Validate a report port (0..65535); raise ApiError(BAD_PORT) otherwise."""
    if port is None or port == "":
        return port
    text = port.strip()
    # (the length first: int() of a few thousand digits raises, and costs)
    if not (text.isascii() and text.isdigit() and len(text.lstrip("0")) <= 5
            and int(text) <= 65535):
        raise ApiError(Errno.BAD_PORT, "port must be 0..65535")
    return str(int(text))


class SessionManager:
    """All API sessions and the per-address login failure counts."""

    def __init__(
        self,
        config: ApiSection,
        clock: Clock = time.monotonic,
        forget_after: float = FORGET_AFTER,
        *,
        store: SessionStore | None = None,
        wall_clock: Clock = time.time,
    ) -> None:
        # username → (MD5 of the password, as clients send it; role)
        self._users = {user.username.encode("utf-8"):
                       (md5_hex(user.password).encode("ascii"), user.role)
                       for user in config.all_users}
        self._first_user = config.username
        self._ttl = float(config.token_ttl)
        self._max_failures = config.lockout_failures
        self._lockout = float(config.lockout_seconds)
        self._allowed = networks(config.allowed_ips)
        self._clock = clock
        self._forget_after = forget_after
        self._sessions: dict[str, Session] = {}
        self._failures: dict[str, _Failures] = {}
        self._next_purge = clock() + _PURGE_EVERY
        self._store = store
        self._wall_clock = wall_clock
        self._persist_every = min(PERSIST_EVERY, self._ttl / 4)
        self.revision = 0  # bumped by every login, logout, heartbeat and forgotten token
        self._live: tuple[Session, ...] = ()  # what `live()` answered last …
        self._live_revision = -1  # … at this revision …
        self._live_until = 0.0  # … and until one of them may expire
        if store is not None:
            self._load(store)

    # -- login / logout ---------------------------------------------------------------------
    def login(
        self,
        username: str | None,
        password: str | None,
        source_ip: str,
        dialect: str,
        *,
        port: str | None = None,
        url: str | None = None,
        urltag: str | None = None,
        version: str | None = None,
    ) -> Session:
        """Check credentials and open a session; raise ApiError on refusal."""
        now = self._clock()
        self._admit(username, password, source_ip, now)
        port = check_port(port)
        assert username is not None and password is not None  # (_admit refuses blanks)
        self._verify(username, password, source_ip, now)
        token = secrets.token_hex(16)
        session = Session(
            token=token,
            dialect=dialect,
            source_ip=source_ip,
            port=port or "",
            url=url or "",
            urltag=urltag or "0",
            version=version or "",
            created=now,
            last_seen=now,
            username=username,
        )
        self._sessions[token] = session
        self.revision += 1
        self._save(session)
        return session

    def authenticate(self, username: str | None, password: str | None,
                     source_ip: str) -> str:
        """The role of `username` if `password` (its MD5 hex) is right, from an allowed
        address that is not locked out; raise ApiError otherwise (a wrong password counts
        toward the lockout). The checks of `login`, without opening a session."""
        now = self._clock()
        self._admit(username, password, source_ip, now)
        assert username is not None and password is not None  # (_admit refuses blanks)
        return self._verify(username, password, source_ip, now)

    def _admit(self, username: str | None, password: str | None, source_ip: str,
               now: float) -> None:
        """Refuse an address not allowed or locked out, and blank credentials."""
        self._maybe_purge(now)
        if not self.ip_allowed(source_ip):
            raise ApiError(Errno.IP_LOCKED, "address not in allowed_ips")
        failures = self._failures.get(source_ip)
        if failures is not None and failures.locked_until:
            if now < failures.locked_until:
                raise ApiError(Errno.IP_LOCKED, "address locked out")
            del self._failures[source_ip]
        if not username or not password:
            raise ApiError(Errno.MISSING_PARAM, "username and password are required")

    def _verify(self, username: str, password: str, source_ip: str, now: float) -> str:
        """`username`'s role if `password` is right; a wrong one counts toward the lockout."""
        if not self._credentials_ok(username, password):
            self._record_failure(source_ip, now)
            raise ApiError(Errno.BAD_CREDENTIALS)
        self._failures.pop(source_ip, None)
        entry = self._users.get(username.encode("utf-8"))
        return entry[1] if entry is not None else "readonly"

    def _credentials_ok(self, username: str, password: str) -> bool:
        """Is `password` (the MD5 hex clients send) `username`'s? Every user is
        compared, in constant time, so the answer's timing tells nothing."""
        name = username.encode("utf-8")
        given = password.encode("utf-8")
        ok = False
        for user, (md5, _) in self._users.items():
            ok |= hmac.compare_digest(name, user) & hmac.compare_digest(given, md5)
        return ok

    def role(self, session: Session) -> str:
        """`admin` or `readonly`: the role of the user who opened `session` (a user
        since removed from the configuration: readonly)."""
        entry = self._users.get((session.username or self._first_user).encode("utf-8"))
        return entry[1] if entry is not None else "readonly"

    def is_admin(self, session: Session | None) -> bool:
        """May `session` change the configuration and read its passwords?"""
        return session is not None and self.role(session) == "admin"

    def logout(self, token: str | None) -> None:
        """End the session of a valid token (raises like `check` otherwise)."""
        session = self.check(token)
        del self._sessions[session.token]
        self.revision += 1
        if self._store is not None:
            self._store.delete_session(session.token)

    def ip_allowed(self, source_ip: str) -> bool:
        return not self._allowed or in_networks(source_ip, self._allowed)

    def locked(self, source_ip: str) -> bool:
        failures = self._failures.get(source_ip)
        return failures is not None and self._clock() < failures.locked_until

    def _record_failure(self, source_ip: str, now: float) -> None:
        failures = self._failures.get(source_ip)
        if failures is None or now - failures.last >= self._lockout:
            failures = self._failures[source_ip] = _Failures()
        failures.count += 1
        failures.last = now
        if failures.count >= self._max_failures:
            failures.locked_until = now + self._lockout

    # -- tokens -----------------------------------------------------------------------------
    def check(self, token: str | None) -> Session:
        """The live session of `token`, its lifetime renewed; raise ApiError otherwise."""
        if not token:
            raise ApiError(Errno.TOKEN_MISSING)
        now = self._clock()
        self._maybe_purge(now)
        session = self._sessions.get(token)
        if session is None:
            raise ApiError(Errno.NO_SUCH_TOKEN)
        if now - session.last_seen >= self._ttl:
            raise ApiError(Errno.TOKEN_EXPIRED)
        session.last_seen = now
        self._touched(session, now)
        return session

    def touch(self, token: str) -> bool:
        """Renew a live session (e.g. after a delivered report); False if it is not live."""
        session = self._sessions.get(token)
        now = self._clock()
        if session is None or now - session.last_seen >= self._ttl:
            return False
        session.last_seen = now
        self._touched(session, now)
        return True

    def session(self, token: str) -> Session | None:
        """The session of `token` if it is live (without renewing it)."""
        session = self._sessions.get(token)
        if session is None or self._clock() - session.last_seen >= self._ttl:
            return None
        return session

    def heartbeat(
        self,
        token: str | None,
        *,
        ipaddr: str | None = None,
        port: str | None = None,
        url: str | None = None,
        urltag: str | None = None,
    ) -> Session:
        """Renew a session and update its report destination (absent fields are kept)."""
        session = self.check(token)
        port = check_port(port)
        if ipaddr:
            session.ipaddr = ipaddr
        if port:
            session.port = port
        if url is not None:
            session.url = url
        if urltag:
            session.urltag = urltag
        self.revision += 1
        self._save(session)
        return session

    def live(self) -> tuple[Session, ...]:
        """Sessions whose token is currently valid (the report destinations). The same
        tuple is answered again while no session changed and none may have expired, so a
        caller may keep what it derives from it while `live()` is that tuple."""
        now = self._clock()
        if self._live_revision == self.revision and now < self._live_until:
            return self._live
        live = tuple(s for s in self._sessions.values() if now - s.last_seen < self._ttl)
        self._live, self._live_revision = live, self.revision
        # (a renewal only pushes an expiry later: the first one due stays a safe bound)
        self._live_until = min((s.last_seen for s in live), default=now) + self._ttl
        return live

    def __len__(self) -> int:
        return len(self._sessions)

    # -- housekeeping -----------------------------------------------------------------------
    def _maybe_purge(self, now: float) -> None:
        if now >= self._next_purge:
            self.purge(now)

    def purge(self, now: float | None = None) -> None:
        """Forget long-expired tokens and stale failure counts."""
        now = self._clock() if now is None else now
        self._next_purge = now + _PURGE_EVERY
        gone = self._ttl + self._forget_after
        for token in [t for t, s in self._sessions.items() if now - s.last_seen >= gone]:
            del self._sessions[token]
            self.revision += 1
            if self._store is not None:
                self._store.delete_session(token)
        for ip in [
            ip
            for ip, f in self._failures.items()
            if now >= f.locked_until and now - f.last >= self._lockout
        ]:
            del self._failures[ip]

    # -- persistence ------------------------------------------------------------------------
    def _save(self, session: Session) -> None:
        if self._store is None:
            return
        now = self._clock()
        wall = self._wall_clock()
        session.persisted = session.last_seen
        self._store.save_session(SessionRow(
            session.token, session.dialect, session.source_ip, session.port, session.url,
            session.urltag, session.version, session.ipaddr,
            wall - (now - session.created), wall - (now - session.last_seen),
            session.username,
        ))

    def _touched(self, session: Session, now: float) -> None:
        if self._store is not None and now - session.persisted >= self._persist_every:
            session.persisted = now
            self._store.touch_session(session.token, self._wall_clock())

    def _load(self, store: SessionStore) -> None:
        now = self._clock()
        wall = self._wall_clock()
        gone = self._ttl + self._forget_after
        for row in store.load_sessions():
            idle = max(0.0, wall - row.last_seen)
            if idle >= gone:
                store.delete_session(row.token)
                continue
            last_seen = now - idle
            self._sessions[row.token] = Session(
                token=row.token, dialect=row.dialect, source_ip=row.source_ip,
                port=row.port, url=row.url, urltag=row.urltag, version=row.version,
                ipaddr=row.ipaddr, created=now - max(0.0, wall - row.created),
                last_seen=last_seen, persisted=last_seen, username=row.username,
            )
