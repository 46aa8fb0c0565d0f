"""Who is calling: digest authentication of extensions, and answering trunk challenges.

REGISTER is challenged with 401/WWW-Authenticate, INVITE with 407/Proxy-Authenticate
(realm = `sip.domain`, one header per `[security] digest_algorithms`, nonces bound to the
source address: `ippbx.sip.digest`). Bans, lockouts and rate limits are decided by
`ippbx.pbx.security`; here each request is answered:

- from a banned address: 403 "Banned";
- no credentials, credentials we cannot pin on the sender (another scheme, another realm,
  a nonce not issued to this address, malformed): a fresh challenge, nothing counted;
- an extension locked out for this address, whatever the password: 403, nothing counted;
- the right digest over an expired or already used nonce: a challenge with stale=true;
- a digest whose `uri` is not the Request-URI: a failure, and a fresh challenge;
- wrong credentials (password, user name): a failure, 403;
- any of these but the ban when the address has run out of its rate: 503 + Retry-After.

For register trunks, a provider's 401/407 to our INVITE is answered with the trunk's
credentials.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable

from ippbx.config import Config, Trunk
from ippbx.pbx.security import Security
from ippbx.sip.digest import DigestChallenger, VerifyStatus, answer_challenge
from ippbx.sip.message import Request, Response
from ippbx.sip.ua import ServerRequest


def next_attempt(invite: Request) -> Request:
    """A copy of `invite` to send again after a challenge or a 422: the next CSeq and no
    Via (the UA adds a fresh one, so it is a new transaction)."""
    retry = invite.copy()
    retry.remove("Via")
    number, method = retry.cseq
    retry.set("CSeq", f"{number + 1} {method}")
    return retry


class ExtensionAuth:
    """Digest checks for requests claiming to come from one of our extensions."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self._passwords = {e.number: e.password for e in config.extensions}
        section = config.security
        self._challenger = DigestChallenger(
            realm=config.sip.domain, secret=secrets.token_bytes(32), clock=clock,
            algorithms=section.digest_algorithms, accept_host_uri=section.digest_uri == "host",
        )
        # a phone stays "known" for its extension as long as a registration can last
        self.security = Security(section, frozenset(self._passwords),
                                 known_seconds=config.sip.max_expires, clock=clock)
        self._retry_after = str(max(1, math.ceil(1.0 / section.rate_limit)))

    def reconfigure(self, config: Config) -> None:
        """The extensions and passwords of a new configuration (the next request sees
        them; a nonce issued before stays good, its answer is checked against the new
        password)."""
        self._passwords = {e.number: e.password for e in config.extensions}
        self.security.set_extensions(frozenset(self._passwords))

    def is_banned(self, ip: str) -> bool:
        return self.security.is_banned(ip)

    def authenticate(self, sr: ServerRequest, *, proxy: bool) -> str | None:
        """The extension that `sr` is authenticated as, or None once a response was sent."""
        ip = sr.source.host
        security = self.security
        if security.is_banned(ip):
            sr.respond(403, "Banned")
            return None
        request = sr.request
        result = self._challenger.verify(
            request.get_all("Proxy-Authorization" if proxy else "Authorization"),
            request.method, self._passwords.get, uri=request.uri, source=ip,
        )
        status = result.status
        pinned = status not in (VerifyStatus.MISSING, VerifyStatus.INVALID)
        if pinned and result.username is not None and security.is_locked(result.username, ip):
            refuse = True  # the same answer whatever the password; nothing counted
        elif result.ok and result.username is not None:
            security.succeeded(ip, result.username)
            return result.username
        else:
            if result.is_failure:
                security.failed(ip, result.username)
            refuse = status is VerifyStatus.FAILED
        if security.over_limit(ip):
            sr.respond(503, "Too Many Requests", headers=[("Retry-After", self._retry_after)])
        elif refuse:
            sr.respond(403)
        else:
            self._challenge(sr, proxy, ip, stale=status is VerifyStatus.STALE)
        return None

    def _challenge(self, sr: ServerRequest, proxy: bool, ip: str, *, stale: bool) -> None:
        header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        sr.respond(
            407 if proxy else 401,
            headers=[(header, value) for value in self._challenger.challenges(ip, stale)],
            to_tag=secrets.token_hex(6),
        )

    @staticmethod
    def answer_challenge(invite: Request, challenge: Response, trunk: Trunk) -> Request:
        """A copy of `invite` (next CSeq, no Via) carrying credentials for the trunk."""
        proxy = challenge.status == 407
        header = challenge.get("Proxy-Authenticate" if proxy else "WWW-Authenticate") or ""
        retry = next_attempt(invite)
        credentials = answer_challenge(
            header, invite.method, invite.uri, trunk.username, trunk.password,
            body=invite.body,
        )
        retry.set("Proxy-Authorization" if proxy else "Authorization", credentials)
        return retry
