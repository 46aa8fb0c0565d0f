"""Who is calling: digest authentication of extensions, bans, and answering trunk challenges.

REGISTER is challenged with 401/WWW-Authenticate, INVITE with 407/Proxy-Authenticate
(realm = `sip.domain`). A source IP that fails `ban_failures` times in a row is refused
with 403 for `ban_seconds`. For register trunks, a provider's 401/407 to our INVITE is
answered with the trunk's credentials.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from ippbx.config import Config, Trunk
from ippbx.sip.digest import DigestChallenger, VerifyStatus, answer_challenge
from ippbx.sip.message import Request, Response
from ippbx.sip.ua import ServerRequest

_MAX_TRACKED_IPS = 10_000


class ExtensionAuth:
    """Digest checks for requests claiming to come from one of our extensions."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self._passwords = {e.number: e.password for e in config.extensions}
        self._challenger = DigestChallenger(
            realm=config.sip.domain, secret=secrets.token_bytes(32), clock=clock
        )
        self._clock = clock
        self._ban_failures = config.sip.ban_failures
        self._ban_seconds = config.sip.ban_seconds
        self._failures: dict[str, int] = {}
        self._banned: dict[str, float] = {}

    def is_banned(self, ip: str) -> bool:
        until = self._banned.get(ip)
        if until is None:
            return False
        if until > self._clock():
            return True
        del self._banned[ip]
        return False

    def authenticate(self, sr: ServerRequest, *, proxy: bool) -> str | None:
        """The extension that `sr` is authenticated as, or None once a response was sent."""
        ip = sr.source.host
        if self.is_banned(ip):
            sr.respond(403, "Banned")
            return None
        request = sr.request
        value = request.get("Proxy-Authorization" if proxy else "Authorization")
        if not value:
            self._challenge(sr, proxy, stale=False)
            return None
        result = self._challenger.verify(value, request.method, self._passwords.get)
        if result.status is VerifyStatus.OK and result.username in self._passwords:
            self._failures.pop(ip, None)
            return result.username
        if result.status is VerifyStatus.STALE:
            self._challenge(sr, proxy, stale=True)
            return None
        self._fail(ip)
        sr.respond(403)
        return None

    def _challenge(self, sr: ServerRequest, proxy: bool, *, stale: bool) -> None:
        header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        sr.respond(
            407 if proxy else 401,
            headers=[(header, self._challenger.challenge(stale=stale))],
            to_tag=secrets.token_hex(6),
        )

    def _fail(self, ip: str) -> None:
        count = self._failures.get(ip, 0) + 1
        if count >= self._ban_failures:
            self._failures.pop(ip, None)
            if len(self._banned) < _MAX_TRACKED_IPS:
                self._banned[ip] = self._clock() + self._ban_seconds
            return
        if len(self._failures) >= _MAX_TRACKED_IPS:
            self._failures.clear()
        self._failures[ip] = count

    @staticmethod
    def answer_challenge(invite: Request, challenge: Response, trunk: Trunk) -> Request:
        """A copy of `invite` (next CSeq, no Via) carrying credentials for the trunk."""
        proxy = challenge.status == 407
        header = challenge.get("Proxy-Authenticate" if proxy else "WWW-Authenticate") or ""
        retry = invite.copy()
        retry.remove("Via")
        number, method = retry.cseq
        retry.set("CSeq", f"{number + 1} {method}")
        credentials = answer_challenge(
            header, method, invite.uri, trunk.username, trunk.password, body=invite.body
        )
        retry.set("Proxy-Authorization" if proxy else "Authorization", credentials)
        return retry
