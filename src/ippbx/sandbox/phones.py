"""Simulated phones: one SIP endpoint per demo extension, registered with digest auth.

A `Phone` binds its own loopback port, REGISTERs as its extension (answering the PBX's
401 challenge with the extension's password, then refreshing before the binding
expires), places calls through the PBX (answering the 407 challenge to its INVITE) and
answers the calls the PBX sends it after a short ring, now and then refusing one (486) or
letting it ring out. It unregisters (`Expires: 0`) when the sandbox stops.

How it answers is drawn from the phone's own seeded RNG, all draws for a call at once,
so a given seed gives each phone the same sequence of behaviours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass

from ippbx.sandbox.endpoint import SDP_HEADERS, AnswerPlan, CallOutcome, Endpoint
from ippbx.sip.digest import DigestClient, DigestError
from ippbx.sip.message import Request
from ippbx.sip.ua import ServerRequest, TransportFactory
from ippbx.sip.wire import Peer

__all__ = ["Phone", "PhoneBehaviour"]

log = logging.getLogger(__name__)

REGISTER_EXPIRES = 300
REGISTER_TIMEOUT = 10.0
USER_AGENT = "ippbx-sandbox-phone/0.1"


@dataclass(frozen=True, slots=True)
class PhoneBehaviour:
    """How a simulated phone's user answers the calls it gets."""

    ring: tuple[float, float] = (0.5, 2.5)  # seconds before picking up
    decline_rate: float = 0.05  # answers "busy" (486)
    ignore_rate: float = 0.05  # lets it ring until the caller or the PBX gives up
    hangup_rate: float = 0.2  # hangs up first…
    hold: tuple[float, float] = (3.0, 20.0)  # …after this much talk

    def draw(self, rng: random.Random, auto_answer: bool = False) -> AnswerPlan:
        """The plan for one incoming call (always four draws)."""
        ring = rng.uniform(*self.ring)
        choice = rng.random()
        hangs_up = rng.random() < self.hangup_rate
        hold = rng.uniform(*self.hold)
        if auto_answer:
            return AnswerPlan(ring=0.0, final=200, hold=hold if hangs_up else None)
        if choice < self.decline_rate:
            return AnswerPlan(ring=ring, final=486)
        if choice < self.decline_rate + self.ignore_rate:
            return AnswerPlan(ring=ring, final=0)
        return AnswerPlan(ring=ring, final=200, hold=hold if hangs_up else None)


class Phone(Endpoint):
    """A SIP phone registered as one extension; see the module docstring."""

    def __init__(
        self,
        number: str,
        password: str,
        pbx: Peer,
        domain: str,
        *,
        display_name: str = "",
        host: str = "127.0.0.1",
        seed: int | str = 0,
        behaviour: PhoneBehaviour | None = None,
        transport: TransportFactory | None = None,
    ) -> None:
        super().__init__(f"phone {number}", host, 0, user_agent=USER_AGENT,
                         transport=transport)
        self.number = number
        self.password = password
        self.pbx = pbx
        self.domain = domain
        self.display_name = display_name
        self.behaviour = behaviour or PhoneBehaviour()
        self.rng = random.Random(f"ippbx-sandbox-phone:{seed}:{number}")
        self.registered = False
        self._auth = DigestClient(number, password)
        self._reg_call_id = ""
        self._reg_tag = ""
        self._reg_cseq = 0
        self._refresher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await super().start()
        self._reg_call_id = self.ua.new_call_id()
        self._reg_tag = self.ua.new_tag()

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        await super().stop()

    @property
    def aor(self) -> str:
        return f"sip:{self.number}@{self.domain}"

    def _name_addr(self, uri: str) -> str:
        name = self.display_name.replace('"', "")
        return f'"{name}" <{uri}>' if name else f"<{uri}>"

    # -- registration -----------------------------------------------------------------------
    async def register(self, expires: int = REGISTER_EXPIRES) -> bool:
        """REGISTER (or unregister with 0), answering the digest challenge; True on 2xx."""
        uri = f"sip:{self.domain}"
        authorization: str | None = None
        for _ in range(3):
            self._reg_cseq += 1
            headers = [
                ("From", f"{self._name_addr(self.aor)};tag={self._reg_tag}"),
                ("To", self._name_addr(self.aor)),
                ("Call-ID", self._reg_call_id),
                ("CSeq", f"{self._reg_cseq} REGISTER"),
                ("Contact", f"<{self.ua.contact_uri(self.number)}>"),
                ("Expires", str(expires)),
            ]
            if authorization:
                headers.append(("Authorization", authorization))
            request = Request("REGISTER", uri, headers)
            try:
                response = await asyncio.wait_for(self.ua.request(request, self.pbx),
                                                  REGISTER_TIMEOUT)
            except TimeoutError:
                return False
            if response.status == 401 and (challenge := response.get("WWW-Authenticate")):
                try:
                    authorization = self._auth.answer(challenge, "REGISTER", uri)
                except DigestError:
                    return False
                continue
            ok = 200 <= response.status < 300
            if not ok:
                log.warning("%s: REGISTER answered %d", self.name, response.status)
            self.registered = ok and expires > 0
            return ok
        return False

    def keep_registered(self, expires: int = REGISTER_EXPIRES) -> None:
        """Refresh the registration before it expires, until stopped."""
        if self._refresher is None:
            self._refresher = asyncio.ensure_future(self._refresh(expires))

    async def _refresh(self, expires: int) -> None:
        while True:
            await asyncio.sleep(expires * 0.8 if self.registered else 5.0)
            await self.register(expires)

    async def unregister(self) -> bool:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        if not self.registered:
            return True
        return await self.register(0)

    # -- calls --------------------------------------------------------------------------------
    async def call(self, dialled: str, *, talk: float,
                   patience: float | None = None) -> CallOutcome:
        """Dial `dialled` through the PBX as a user would; return how it went."""
        uri = f"sip:{dialled}@{self.domain}"
        call_id = self.ua.new_call_id()
        tag = self.ua.new_tag()
        body = self.sdp()

        def build(cseq: int, authorization: tuple[str, str] | None) -> Request:
            headers = [
                ("From", f"{self._name_addr(self.aor)};tag={tag}"),
                ("To", f"<{uri}>"),
                ("Call-ID", call_id),
                ("CSeq", f"{cseq} INVITE"),
                ("Contact", f"<{self.ua.contact_uri(self.number)}>"),
                ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS"),
                *SDP_HEADERS,
            ]
            if authorization is not None:
                headers.append(authorization)
            return Request("INVITE", uri, headers, body)

        return await self.place_call(build, self.pbx, talk=talk, patience=patience,
                                     credentials=DigestClient(self.number, self.password))

    async def incoming(self, sr: ServerRequest) -> None:
        auto = "answer-after" in (sr.request.get("Call-Info") or "")
        await self.answer(sr, self.behaviour.draw(self.rng, auto_answer=auto))
