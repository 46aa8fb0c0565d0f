"""Keeping a `register` trunk registered with its provider (RFC 3261 §10.2).

One task per register trunk: REGISTER with the trunk's credentials (answering the
provider's 401/407 digest challenge), refresh well before the granted expiry, retry with
backoff when the provider fails or does not answer, and unregister on stop. The trunk's
status (`Registering` → `Registered` / `Failure`) is kept in `Trunks.status` for
`trunklist/query`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ippbx.config import Trunk
from ippbx.pbx.trunks import Trunks, TrunkStatus
from ippbx.sip.digest import DigestError, answer_challenge
from ippbx.sip.errors import SipParseError
from ippbx.sip.headers import NameAddr
from ippbx.sip.message import Request, Response
from ippbx.sip.ua import UserAgent
from ippbx.sip.wire import Peer

log = logging.getLogger(__name__)

RETRY_DELAYS = (5.0, 10.0, 20.0, 40.0, 60.0)


def refresh_delay(granted: int) -> float:
    """Seconds to wait before refreshing a binding granted for `granted` seconds."""
    return max(1.0, min(granted * 0.85, granted - 10.0))


def granted_expires(response: Response, contact_uri: str, requested: int) -> int:
    """The expiry the registrar granted our contact (Contact param, Expires, or ours)."""
    try:
        for value in response.get_all("Contact"):
            contact = NameAddr.parse(value)
            if contact.uri == contact_uri and contact.params.get("expires"):
                return int(contact.params["expires"] or requested)
        header = response.get("Expires")
        return int(header) if header is not None else requested
    except (SipParseError, ValueError):
        return requested


class TrunkRegistration:
    """The registration loop of one register trunk."""

    def __init__(self, trunk: Trunk, trunks: Trunks, ua: UserAgent) -> None:
        self.trunk = trunk
        self.trunks = trunks
        self.ua = ua
        self._call_id = ""
        self._cseq = 0
        self._task: asyncio.Task[None] | None = None
        self._registered_at: Peer | None = None  # where the binding in force was made

    @property
    def _aor(self) -> str:
        return f"sip:{self.trunk.username}@{self.trunk.host}"

    def start(self) -> None:
        self._call_id = self.ua.new_call_id()
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """End the loop and unregister, where it registered, if it holds a binding."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._registered_at is not None:
            with contextlib.suppress(asyncio.TimeoutError, OSError):
                await asyncio.wait_for(self.register_once(0), timeout=2.0)

    async def _run(self) -> None:
        failures = 0
        while True:
            self.trunks.status[self.trunk.name] = (
                TrunkStatus.REGISTERING if failures == 0 else TrunkStatus.FAILURE
            )
            granted = await self.register_once(self.trunk.expires)
            if granted is None:
                self.trunks.status[self.trunk.name] = TrunkStatus.FAILURE
                self._registered_at = None
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
            else:
                self.trunks.status[self.trunk.name] = TrunkStatus.REGISTERED
                delay = refresh_delay(granted)
                failures = 0
            await asyncio.sleep(delay)

    def _request(self, expires: int, contact: str) -> Request:
        self._cseq += 1
        host = self.trunk.host
        return Request("REGISTER", f"sip:{host}:{self.trunk.port}", [
            ("From", f"<{self._aor}>;tag={self.ua.new_tag()}"),
            ("To", f"<{self._aor}>"),
            ("Call-ID", self._call_id),
            ("CSeq", f"{self._cseq} REGISTER"),
            ("Contact", f"<{contact}>"),
            ("Expires", str(expires)),
        ])

    async def register_once(self, expires: int) -> int | None:
        """One REGISTER exchange; the granted expiry, or None if it failed."""
        if not self._call_id:
            self._call_id = self.ua.new_call_id()
        # an un-REGISTER goes where the registration was made, even if the trunk's address
        # changed since (a configuration change: `Trunks` already knows the new one)
        dest = self._registered_at if expires == 0 and self._registered_at is not None \
            else self.trunks.destination(self.trunk)
        contact = self.ua.contact_uri(self.trunk.username, dest.transport)
        request = self._request(expires, contact)
        response = await self.ua.request(request, dest)
        if response.status in (401, 407):
            header = response.get(
                "Proxy-Authenticate" if response.status == 407 else "WWW-Authenticate"
            ) or ""
            retry = self._request(expires, contact)
            try:
                credentials = answer_challenge(
                    header, "REGISTER", retry.uri, self.trunk.username, self.trunk.password
                )
            except DigestError:
                log.warning("trunk %s: cannot answer challenge %r", self.trunk.name, header)
                return None
            retry.set(
                "Proxy-Authorization" if response.status == 407 else "Authorization", credentials
            )
            response = await self.ua.request(retry, dest)
        if 200 <= response.status < 300:
            self._registered_at = dest if expires else None
            return granted_expires(response, contact, expires)
        log.warning("trunk %s: REGISTER answered %d %s", self.trunk.name, response.status,
                    response.reason)
        return None
