"""`AudioPhone`: a SIP phone for tests that carries real audio, made of ippbx's own
`UserAgent` (a real UDP socket on loopback) and an `RtpEndpoint` (rtp_audio.py).

As an extension it registers with the PBX (REGISTER, answering the 401 with its
password), places calls (INVITE with its SDP offer, answering 401/407 challenges, ACK)
and answers the calls the PBX sends it (180, then 200 with its SDP answer; the ACK is
awaited). As a trunk's carrier it listens on a given port (`TrunkSpec(name, port)` makes
the harness's ippbx send the `9…` calls there) and answers the same way, without
registering. In a call it holds and takes off hold with a re-INVITE (sendonly /
sendrecv offers), answers the re-INVITEs and UPDATEs it gets in the mirrored direction
(sendonly with recvonly, inactive with inactive, …; an offerless re-INVITE with an offer
whose answer comes in the ACK), transfers (REFER), and hangs up with BYE or answers the
other side's BYE.

Its RTP follows the SDP: each SDP it receives (`remote_sdps` keeps them all, in order,
so a test can assert where the media points) re-points the endpoint at the address
it names; audio is sent only while both directions allow it (our side sendrecv or
sendonly, theirs sendrecv or recvonly). `play_tone` / `rtp.play_…` choose what it sends.

    pbx = await PbxHarness.start(tmp_path)
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=700)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=1300)
    try:
        assert (await a.call("1002")).status == 200
        heard = await b.rtp.record(0.5)            # 700 Hz
        await a.hold(); await a.unhold(); await a.hangup()
        await pbx.stop()
    finally:
        await a.stop(); await b.stop()

One call at a time: a new INVITE while in a call is answered 486.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from types import TracebackType

from rtp_audio import Media, RtpEndpoint, parse_media, sdp_answer, sdp_offer
from sip_net import register_request

from ippbx.pbx.auth import next_attempt
from ippbx.sip.dialog import Dialog
from ippbx.sip.digest import DigestError, answer_challenge
from ippbx.sip.headers import NameAddr
from ippbx.sip.message import Request, Response
from ippbx.sip.transport import SipTransport
from ippbx.sip.ua import ServerRequest, UserAgent
from ippbx.sip.uri import SipUri
from ippbx.sip.wire import Peer

log = logging.getLogger(__name__)

SDP_HEADERS = [("Content-Type", "application/sdp")]
DOMAIN = "ippbx.test"
WAIT = 5.0  # seconds any single SIP exchange may take on loopback (it takes milliseconds)
SENDING = ("sendrecv", "sendonly")  # our directions that let us send
RECEIVING = ("sendrecv", "recvonly")  # their directions that let them receive


def ext_password(number: str) -> str:
    """The password the PBX harness gives extension `number`."""
    return f"secret{number}"


def as_peer(address: str | Peer) -> Peer:
    """A Peer from "host:port" (UDP)."""
    if isinstance(address, Peer):
        return address
    host, _, port = address.rpartition(":")
    return Peer(host, int(port))


def user_of(uri: str) -> str:
    """The user part of a SIP URI ("" if it has none)."""
    return SipUri.parse(NameAddr.parse(uri).uri).user or ""


def with_credentials(request: Request, challenge: Response, user: str,
                     password: str) -> Request:
    """The retry of `request` answering the 401/407 `challenge` with `user`'s password."""
    proxy = challenge.status == 407
    header = challenge.get("Proxy-Authenticate" if proxy else "WWW-Authenticate") or ""
    retry = next_attempt(request)
    retry.set("Proxy-Authorization" if proxy else "Authorization",
              answer_challenge(header, request.method, request.uri, user, password))
    return retry


class AudioPhone:
    """One phone (or carrier): a UA on 127.0.0.1 and an RTP endpoint (module docstring)."""

    def __init__(self, pbx: str | Peer, number: str = "", password: str | None = None, *,
                 port: int = 0, name: str = "", tone: float | None = None,
                 symmetric: bool = False, domain: str = DOMAIN,
                 answer_status: int = 200, answer_delay: float = 0.0) -> None:
        self.pbx = as_peer(pbx)  # where its REGISTERs and INVITEs go
        self.number = number  # its extension ("" for a carrier)
        self.password = password if password is not None else (
            ext_password(number) if number else "")
        self.name = name or number or "carrier"
        self.domain = domain
        self.answer_status = answer_status  # the final answer to a new INVITE
        self.answer_delay = answer_delay  # seconds of ringing before it
        self.ua = UserAgent(lambda on_message: SipTransport("127.0.0.1", port, on_message),
                            user_agent=f"ippbx-audio-phone/{self.name}")
        self.ua.on_request = self._on_request
        self.rtp = RtpEndpoint(symmetric=symmetric)
        # the media address its SDP names, when not its RTP socket's (a phone behind NAT
        # names its private address; its packets come from elsewhere)
        self.advertise: tuple[str, int] | None = None
        if tone is not None:
            self.rtp.play_tone(tone)
        self.dialog: Dialog | None = None  # the current call's
        self.remote_sdps: list[bytes] = []  # every SDP received, in order
        self.local_sdps: list[bytes] = []  # every SDP we sent, in order
        self.incoming: list[Request] = []  # the new INVITEs we got (calls to us)
        self.requests: list[Request] = []  # every in-dialog request we got (re-INVITE, BYE…)
        self.provisional: list[Response] = []  # the 1xx to our last INVITE
        self.notifies: list[Request] = []  # NOTIFYs outside a call (message waiting)
        self.cancelled = 0  # calls to us that were cancelled while ringing
        self.local_direction = "sendrecv"
        self.remote_direction = "sendrecv"
        self.established = asyncio.Event()  # in a call (set until the call ends)
        self.ended = asyncio.Event()  # the last call ended (set until the next one starts)
        self._version = 0
        self._session_id = secrets.randbelow(1 << 31)
        self._offering = False  # our re-INVITE is out (a crossing one gets 491)

    @classmethod
    async def extension(cls, pbx: str | Peer, number: str, *, tone: float | None = None,
                        register: bool = True, **kwargs: object) -> AudioPhone:
        """A started phone for extension `number`, registered unless told not to."""
        phone = cls(pbx, number, tone=tone, **kwargs)  # type: ignore[arg-type]
        await phone.start()
        if register:
            try:
                response = await phone.register()
                assert response.status == 200, f"{number} REGISTER: {response}"
            except BaseException:
                await phone.stop()
                raise
        return phone

    @classmethod
    async def carrier(cls, pbx: str | Peer, port: int, *, tone: float | None = None,
                      **kwargs: object) -> AudioPhone:
        """A started carrier answering calls on 127.0.0.1:`port` (a peer trunk's)."""
        phone = cls(pbx, port=port, tone=tone, **kwargs)  # type: ignore[arg-type]
        await phone.start()
        return phone

    def __repr__(self) -> str:
        return f"<AudioPhone {self.name}>"

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> AudioPhone:
        await self.rtp.start()
        await self.ua.start()
        return self

    async def stop(self) -> None:
        """Close the SIP and RTP sockets (no BYE: hang up first if that matters)."""
        await self.ua.stop()
        await self.rtp.stop()

    async def __aenter__(self) -> AudioPhone:
        return await self.start()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def sip_port(self) -> int:
        return self.ua.transport.local_port

    @property
    def user(self) -> str:
        return self.number or self.name

    @property
    def in_call(self) -> bool:
        return self.dialog is not None

    @property
    def remote_media(self) -> Media | None:
        """The last SDP received, parsed (None before any)."""
        return parse_media(self.remote_sdps[-1]) if self.remote_sdps else None

    def play_tone(self, freq: float) -> None:
        self.rtp.play_tone(freq)

    # -- registering ---------------------------------------------------------------------
    async def register(self, expires: int = 300) -> Response:
        """REGISTER our contact for our extension, answering the challenge."""
        request = register_request(self.ua, self.number, self.domain, expires)
        response = await asyncio.wait_for(self.ua.request(request, self.pbx), WAIT)
        if response.status in (401, 407):
            retry = with_credentials(request, response, self.number, self.password)
            response = await asyncio.wait_for(self.ua.request(retry, self.pbx), WAIT)
        return response

    # -- placing a call ------------------------------------------------------------------
    async def call(self, number: str, timeout: float = WAIT) -> Response:
        """INVITE `number` at the PBX with our offer, answering up to two challenges; on a
        2xx, ACK it, take its SDP as the answer and start the media. The final response."""
        assert self.dialog is None, f"{self.name} is already in a call"
        uri = f"sip:{number}@{self.domain}"
        offer = self._offer("sendrecv")
        request = Request("INVITE", uri, [
            ("From", f"<sip:{self.user}@{self.domain}>;tag={self.ua.new_tag()}"),
            ("To", f"<{uri}>"),
            ("Call-ID", self.ua.new_call_id()),
            ("CSeq", "1 INVITE"),
            ("Contact", f"<{self.ua.contact_uri(self.user)}>"),
            ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO"),
            *SDP_HEADERS,
        ], offer)
        self.provisional = []
        self.ended.clear()
        for _ in range(3):
            invite = self.ua.invite(request, self.pbx, on_provisional=self.provisional.append)
            response = await asyncio.wait_for(invite.final(), timeout)
            if response.status not in (401, 407) or not self.password:
                break
            try:
                request = with_credentials(request, response, self.user, self.password)
            except DigestError:
                break
        if response.status >= 300:
            self.ended.set()
            return response
        assert invite.dialog is not None
        self.ua.ack(invite.dialog)
        self.dialog = invite.dialog
        self.local_direction = "sendrecv"
        if response.body:
            self._learn(response.body)
        self.established.set()
        return response

    # -- in a call -----------------------------------------------------------------------
    def _current(self) -> Dialog:
        assert self.dialog is not None, f"{self.name} is in no call"
        return self.dialog

    async def reinvite(self, direction: str, timeout: float = WAIT) -> Response:
        """Offer our media again with `direction` in a re-INVITE; on a 2xx, ACK it and
        take its SDP as the answer. The final response (491 on glare: try again)."""
        dialog = self._current()
        offer = self._offer(direction)
        self._offering = True
        try:
            response = await asyncio.wait_for(
                self.ua.request_in_dialog(dialog, "INVITE", offer, SDP_HEADERS), timeout)
        finally:
            self._offering = False
        if response.status < 300:
            self.ua.ack(dialog)
            self.local_direction = direction
            if response.body:
                self._learn(response.body)
        return response

    async def hold(self, timeout: float = WAIT) -> Response:
        """Put the other side on hold: a re-INVITE offering sendonly."""
        return await self.reinvite("sendonly", timeout)

    async def unhold(self, timeout: float = WAIT) -> Response:
        """Take the call off hold: a re-INVITE offering sendrecv."""
        return await self.reinvite("sendrecv", timeout)

    async def hangup(self, timeout: float = WAIT) -> Response:
        """BYE; the call is over for us whatever the answer."""
        dialog = self._current()
        try:
            return await asyncio.wait_for(self.ua.request_in_dialog(dialog, "BYE"), timeout)
        finally:
            self._end(dialog)

    async def wait_established(self, timeout: float = WAIT) -> None:
        """Until we are in a call (a call to us answered and ACKed, or ours answered)."""
        await asyncio.wait_for(self.established.wait(), timeout)

    async def wait_ended(self, timeout: float = WAIT) -> None:
        """Until the call is over (our BYE, theirs, or a failed call)."""
        await asyncio.wait_for(self.ended.wait(), timeout)

    async def send_dtmf(self, digit: str, duration_ms: int = 100) -> None:
        """One RFC 4733 event on our RTP stream."""
        await self.rtp.send_dtmf(digit, duration_ms)

    async def send_keys(self, keys: str, pause: float = 0.15) -> None:
        """RFC 4733 events, one key after the other."""
        for key in keys:
            await self.rtp.send_dtmf(key, 100)
            await asyncio.sleep(pause)

    async def send_info(self, key: str) -> Response:
        """A key as SIP INFO (application/dtmf-relay), as some phones send them."""
        body = f"Signal={key}\r\nDuration=160\r\n".encode()
        return await asyncio.wait_for(self.ua.request_in_dialog(
            self._current(), "INFO", body, [("Content-Type", "application/dtmf-relay")]), WAIT)

    async def refer(self, target: str) -> Response:
        """Transfer the call to `target` (a blind transfer: REFER, RFC 3515); the answer
        (202 when taken). The NOTIFYs that follow land in `requests`, the BYE ends it."""
        return await asyncio.wait_for(self.ua.request_in_dialog(self._current(), "REFER", b"", [
            ("Refer-To", f"<sip:{target}@{self.domain}>"),
            ("Referred-By", f"<sip:{self.user}@{self.domain}>")]), WAIT)

    # -- media ---------------------------------------------------------------------------
    def _offer(self, direction: str) -> bytes:
        """Our next offer (session version + 1) with `direction`; kept in `local_sdps`."""
        self._version += 1
        host, port = self.advertise or self.rtp.address
        body = sdp_offer(host, port, self._version, direction, session_id=self._session_id)
        self.local_sdps.append(body)
        return body

    def _learn(self, sdp: bytes) -> None:
        """A new SDP from the other side: point our RTP at it and follow its direction."""
        self.remote_sdps.append(sdp)
        try:
            media = parse_media(sdp)
        except ValueError:
            log.warning("%s: no audio in %r", self.name, sdp)
            return
        self.rtp.set_remote(media.ip, media.port)
        self.remote_direction = media.direction
        self._update_sending()

    def _update_sending(self) -> None:
        self.rtp.sending = (self.local_direction in SENDING
                            and self.remote_direction in RECEIVING)

    def _answer(self, offer: bytes) -> bytes:
        """Our answer to `offer` (mirrored direction), and the media set up for it."""
        self._version += 1
        host, port = self.advertise or self.rtp.address
        body = sdp_answer(offer, host, port, self._version, session_id=self._session_id)
        self.local_sdps.append(body)
        self.local_direction = parse_media(body).direction
        self._learn(offer)
        return body

    def _end(self, dialog: Dialog) -> None:
        self.ua.forget_dialog(dialog)
        if dialog is self.dialog:
            self.dialog = None
            self.rtp.set_remote(None)
            self.established.clear()
            self.ended.set()

    # -- answering -----------------------------------------------------------------------
    async def _on_request(self, sr: ServerRequest) -> None:
        method = sr.method
        if sr.dialog is None:
            if method == "INVITE":
                await self._new_call(sr)
            elif method == "NOTIFY":
                self.notifies.append(sr.request)
                sr.respond(200)
            else:  # OPTIONS keep-alives and the like
                sr.respond(200 if method == "OPTIONS" else 405)
            return
        self.requests.append(sr.request)
        if method == "INVITE":
            await self._reinvited(sr)
        elif method == "BYE":
            sr.respond(200)
            self._end(sr.dialog)
        elif method == "UPDATE" and sr.request.body:
            if self._offering:
                sr.respond(491)
                return
            sr.respond(200, body=self._answer(sr.request.body), headers=SDP_HEADERS)
        else:  # UPDATE without SDP (a session refresh), INFO, OPTIONS, NOTIFY…
            sr.respond(200)

    async def _new_call(self, sr: ServerRequest) -> None:
        self.incoming.append(sr.request)
        if self.dialog is not None:
            sr.respond(486)
            return
        sr.respond(180)
        if self.answer_delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sr.cancelled.wait(), self.answer_delay)
        if sr.was_cancelled:
            self.cancelled += 1
            sr.respond(487)
            return
        if self.answer_status >= 300:
            sr.respond(self.answer_status)
            return
        offer = sr.request.body
        self.ended.clear()
        if offer:
            body = self._answer(offer)
        else:  # no offer: ours goes in the 200, the answer comes in the ACK
            body = self._offer("sendrecv")
            self.local_direction = "sendrecv"
        sr.respond(self.answer_status, body=body, headers=SDP_HEADERS)
        self.dialog = sr.dialog
        ack = await sr.acked()
        if ack is None:  # never ACKed: the call failed
            if sr.dialog is not None:
                self._end(sr.dialog)
            return
        if not offer and ack.body:
            self._learn(ack.body)
        self.established.set()

    async def _reinvited(self, sr: ServerRequest) -> None:
        if self._offering:  # ours crossed theirs (RFC 3261 §14.2)
            sr.respond(491)
            return
        offer = sr.request.body
        if offer:
            body = self._answer(offer)
        else:  # an offerless re-INVITE: offer what we had, the answer comes in the ACK
            body = self._offer(self.local_direction)
        sr.respond(200, body=body, headers=SDP_HEADERS)
        ack = await sr.acked()
        if not offer and ack is not None and ack.body:
            self._learn(ack.body)

