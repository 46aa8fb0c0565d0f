"""ippbx's PBX core (UA + B2BUA + CallRegistry + Registrar + Trunks + ExtensionAuth +
CallControl + MessageWaiting) over the in-memory network of `sip_net`, with phones and
carriers played by further `UserAgent`s on the same network: the PBX domain tested end
to end in milliseconds, without sockets or sipp.

Addresses: the PBX is 10.0.0.1:5060; carrier trunks live on 10.0.1.N:5060 (the trunk
`carrier` on 10.0.1.1, `second` on 10.0.1.2 unless a test says otherwise); extension
1001-1005 (password `secret100N`) phones on 10.0.2.1-5. `pbx_config()` writes the TOML:
route "9" + number out through the trunks (prefix stripped), DID 5550100 on the first
trunk → extension 1002, the other settings their defaults; `World.start_pbx` hands the
B2BUA call timers shorter than the configuration allows, so a test needs no seconds to
see a timeout.

`EngineModel` plays rtpengine's offer/answer for a B2BUA given a `MediaAnchor` on it.

A `Party` is a phone or a carrier: it answers INVITEs as told (`answer`: a final status,
or None to ring until cancelled; `ring`: 180 first; `delay` before answering;
`on_cancel`: the answer once cancelled, 487, a 200 crossing the CANCEL, or none), answers
re-INVITEs with its own SDP in the mirrored direction, BYE and everything else 200 (and,
with `bye_after_notify`, hangs up when a NOTIFY says its REFER succeeded), and records
every request it got. Its SDP names it (`s=<name>`), so a test can see whose SDP
reached whom. A phone `register()`s and `call()`s through the PBX answering the digest
challenges (401 to REGISTER, 407 to INVITE) with its extension's password.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sip_net import WAIT, FakeNet, make_ua, register_request, settled, until

from ippbx.config import Config, parse_config
from ippbx.pbx import events
from ippbx.pbx.auth import ExtensionAuth, next_attempt
from ippbx.pbx.b2bua import B2BUA
from ippbx.pbx.calls import Call, CallRegistry
from ippbx.pbx.capabilities import option_tags
from ippbx.pbx.control import CallControl
from ippbx.pbx.mwi import MessageWaiting
from ippbx.pbx.registrar import Registrar
from ippbx.pbx.trunks import Trunks
from ippbx.sip.dialog import Dialog
from ippbx.sip.digest import answer_challenge
from ippbx.sip.message import Request, Response
from ippbx.sip.ua import ClientInvite, ServerRequest, UserAgent
from ippbx.sip.wire import Peer

PBX = Peer("10.0.0.1", 5060)
DOMAIN = "ippbx.test"
SDP_HEADERS = [("Content-Type", "application/sdp")]


def ext_password(number: str) -> str:
    return f"secret{number}"


def phone_host(number: str) -> str:
    return f"10.0.2.{int(number) - 1000}"


@dataclass(frozen=True)
class TrunkSpec:
    name: str
    host: str
    port: int = 5060
    extra: str = ""  # more TOML lines for its [[trunks]] table


CARRIER = TrunkSpec("carrier", "10.0.1.1")
SECOND = TrunkSpec("second", "10.0.1.2")


def pbx_config(trunks: tuple[TrunkSpec, ...] = (CARRIER,), extra: str = "", *,
               route_trunks: tuple[str, ...] | None = None, sip: str = "") -> Config:
    """The configuration (see the module docstring); `sip`: more [sip] lines, `extra`:
    more tables."""
    lines = [
        "[sip]", f'listen = "{PBX.host}:{PBX.port}"', f'domain = "{DOMAIN}"', sip,
        "[api]", 'password = "apipass"',
    ]
    for n in range(1001, 1006):
        lines += ["[[extensions]]", f'number = "{n}"', f'password = "{ext_password(str(n))}"']
    for t in trunks:
        lines += ["[[trunks]]", f'name = "{t.name}"', f'host = "{t.host}"', f"port = {t.port}",
                  'callerid = "66666"', t.extra]
    if trunks:
        names = ", ".join(f'"{n}"' for n in route_trunks or [t.name for t in trunks])
        lines += ["[[outbound_routes]]", 'name = "external"', 'prefix = "9"', 'match = "X."',
                  f"trunks = [{names}]",
                  "[[inbound_routes]]", 'name = "did"', f'trunk = "{trunks[0].name}"',
                  'did = "5550100"', 'destination = "extension:1002"']
    return parse_config("\n".join(lines) + "\n" + extra)


def make_sdp(name: str, host: str, version: int = 1, direction: str = "sendrecv") -> bytes:
    """A small SDP whose session name says whose it is."""
    return (f"v=0\r\no=- 1 {version} IN IP4 {host}\r\ns={name}\r\nc=IN IP4 {host}\r\n"
            f"t=0 0\r\nm=audio 4000 RTP/AVP 0\r\na={direction}\r\n").encode()


def mirrored(offer: bytes) -> str:
    """The direction answering an offer (RFC 3264 §6.1)."""
    for wanted, answer in ((b"a=sendonly", "recvonly"), (b"a=inactive", "inactive"),
                           (b"a=recvonly", "sendonly")):
        if wanted in offer:
            return answer
    return "sendrecv"


def sdp_name(body: bytes) -> str:
    """Whose SDP this is (its s= line)."""
    for line in body.decode().splitlines():
        if line.startswith("s="):
            return line[2:]
    return ""


@dataclass
class Outgoing:
    """A call a Party placed: its INVITE (after the digest challenge) and what came back."""

    party: Party
    invite: ClientInvite
    provisional: list[Response] = field(default_factory=list)

    async def final(self, ack_body: bytes = b"") -> Response:
        """Its final answer (a 2xx ACKed, with `ack_body` — the answer to an offer in the
        2xx — if given; its dialog the party's current one)."""
        response = await asyncio.wait_for(self.invite.final(), WAIT)
        if response.status < 300 and self.invite.dialog is not None:
            self.party.ua.ack(self.invite.dialog, ack_body, SDP_HEADERS if ack_body else ())
            self.party.dialog = self.invite.dialog
        return response

    def cancel(self) -> None:
        self.invite.cancel()


class Party:
    """A phone or a carrier: a UserAgent on the net, answering as told (module docstring)."""

    def __init__(self, net: FakeNet, name: str, host: str, port: int = 5060, *,
                 number: str = "", pbx: Peer = PBX) -> None:
        self.name = name
        self.pbx = pbx  # where its calls and registrations go
        self.host = host
        self.number = number  # an extension's number ("" for a carrier)
        self.password = ext_password(number) if number else ""
        self.ua: UserAgent = make_ua(net, host, port)
        self.ua.on_request = self._on_request
        self.version = 1
        self.sdp = make_sdp(name, host)
        self.answer: int | None = 200  # final status for a new INVITE; None: ring on
        self.on_cancel: int | None = 487  # the answer to a cancelled INVITE (None: none)
        self.ring = True
        self.delay = 0.0
        self.reinvite_delay = 0.0  # seconds before it answers a re-INVITE
        self.reinvite_answers: list[int] = []  # its next re-INVITEs' answers (then 200)
        self.requests: list[ServerRequest] = []
        self.acks: list[Request | None] = []  # the ACKs of our 2xx to INVITEs
        self.dialog: Dialog | None = None  # the current call's dialog
        self.ended = 0  # calls the other side hung up (BYE received)
        # a transferor as RFC 5589 §6.1 has it: the NOTIFY of a 200 sipfrag for its REFER
        # ends the transfer, and it hangs up (BYE) itself
        self.bye_after_notify = False
        self.bye_delay = 0.0  # seconds between that NOTIFY's 200 and the BYE
        self.byes: list[Response] = []  # the answers to the BYEs it sent that way

    def __repr__(self) -> str:
        return f"<Party {self.name}>"

    # -- what it got ----------------------------------------------------------------------
    def got(self, method: str) -> list[Request]:
        return [sr.request for sr in self.requests if sr.request.method == method]

    async def wait_for(self, method: str, count: int = 1) -> Request:
        """The `count`th `method` request this party got (waiting for it)."""
        await until(lambda: len(self.got(method)) >= count,
                    f"{self.name} to get {count} {method}")
        return self.got(method)[count - 1]

    # -- answering ------------------------------------------------------------------------
    async def _on_request(self, sr: ServerRequest) -> None:
        self.requests.append(sr)
        method = sr.request.method
        if method == "INVITE" and sr.dialog is None:
            await self._new_call(sr)
        elif method == "INVITE":  # a re-INVITE: answer in the mirrored direction
            if self.reinvite_delay:
                await asyncio.sleep(self.reinvite_delay)
            if self.reinvite_answers:
                sr.respond(self.reinvite_answers.pop(0))
                return
            self.version += 1
            body = make_sdp(self.name, self.host, self.version, mirrored(sr.request.body))
            sr.respond(200, body=body, headers=SDP_HEADERS)
            self.acks.append(await sr.acked())
        elif method == "BYE":
            sr.respond(200)
            assert sr.dialog is not None
            self.ua.forget_dialog(sr.dialog)
            if sr.dialog is self.dialog:
                self.dialog = None
            self.ended += 1
        else:  # NOTIFY, OPTIONS, INFO, UPDATE…
            sr.respond(200)
            if method == "NOTIFY" and self.bye_after_notify \
                    and sr.request.body.startswith(b"SIP/2.0 200") and self.dialog is not None:
                await asyncio.sleep(self.bye_delay)
                self.byes.append(await self.hangup())

    async def _new_call(self, sr: ServerRequest) -> None:
        if self.ring:
            sr.respond(180)
        if self.answer is None:  # rings until cancelled
            await sr.cancelled.wait()
        elif self.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sr.cancelled.wait(), self.delay)
        status = self.on_cancel if sr.was_cancelled else self.answer
        if status is None:  # ignores the CANCEL: no final answer ever
            return
        if status >= 300:
            sr.respond(status)
            return
        offer = sr.request.body  # none: ours is the offer (and the answer comes in the ACK)
        body = make_sdp(self.name, self.host, self.version, mirrored(offer)) if offer \
            else self.sdp
        sr.respond(status, body=body, headers=SDP_HEADERS)
        self.dialog = sr.dialog
        self.acks.append(await sr.acked())

    # -- calling --------------------------------------------------------------------------
    async def call(self, number: str, body: bytes | None = None,
                   headers: list[tuple[str, str]] | None = None,
                   from_user: str = "") -> Outgoing:
        """INVITE `number` at the PBX (a phone answers its 407 with its credentials); the
        INVITE is out once this returns (or answered, if not by a challenge)."""
        uri = f"sip:{number}@{DOMAIN}"
        body = self.sdp if body is None else body
        from_user = from_user or self.number or self.name
        request = Request("INVITE", uri, [
            ("From", f"<sip:{from_user}@{DOMAIN}>;tag={self.ua.new_tag()}"),
            ("To", f"<{uri}>"),
            ("Call-ID", self.ua.new_call_id()),
            ("CSeq", "1 INVITE"),
            ("Contact", f"<{self.ua.contact_uri(self.number or self.name)}>"),
            *(SDP_HEADERS if body else []),
            *(headers or []),
        ], body)
        out = Outgoing(self, self.ua.invite(request, self.pbx))
        out.invite.on_provisional = out.provisional.append
        if self.number:
            first = await asyncio.wait_for(out.invite.final(), WAIT)
            if first.status != 407:
                return out
            retry = next_attempt(request)
            retry.set("Proxy-Authorization", answer_challenge(
                first.get("Proxy-Authenticate") or "", "INVITE", uri, self.number,
                self.password))
            out = Outgoing(self, self.ua.invite(retry, self.pbx))
            out.invite.on_provisional = out.provisional.append
        return out

    async def register(self, expires: int = 300, aor_user: str = "") -> Response:
        """REGISTER our contact for our extension (or `aor_user`'s address), answering
        the 401 with our extension's credentials."""
        assert self.number
        request = register_request(self.ua, self.number, DOMAIN, expires, aor_user)
        first = await asyncio.wait_for(self.ua.request(request, self.pbx), WAIT)
        assert first.status == 401, first
        retry = next_attempt(request)
        retry.set("Authorization", answer_challenge(
            first.get("WWW-Authenticate") or "", "REGISTER", request.uri, self.number,
            self.password))
        return await asyncio.wait_for(self.ua.request(retry, self.pbx), WAIT)

    # -- in the call ----------------------------------------------------------------------
    def _current(self) -> Dialog:
        assert self.dialog is not None, f"{self.name} is in no call"
        return self.dialog

    async def hangup(self) -> Response:
        dialog = self._current()
        response = await asyncio.wait_for(self.ua.request_in_dialog(dialog, "BYE"), WAIT)
        self.ua.forget_dialog(dialog)
        self.dialog = None
        return response

    async def reinvite(self, direction: str) -> Response:
        """Re-offer our SDP with `direction` (hold: sendonly), ACKing a 2xx."""
        dialog = self._current()
        self.version += 1
        body = make_sdp(self.name, self.host, self.version, direction)
        response = await asyncio.wait_for(
            self.ua.request_in_dialog(dialog, "INVITE", body, SDP_HEADERS), WAIT)
        if response.status < 300:
            self.ua.ack(dialog)
        return response

    async def refer(self, target: str) -> Response:
        return await asyncio.wait_for(self.ua.request_in_dialog(
            self._current(), "REFER", headers=[("Refer-To", f"<sip:{target}@{DOMAIN}>")]),
            WAIT)


class Pbx:
    """The PBX core over the net, wired as `PbxService` wires it (no sockets, no store)."""

    def __init__(self, net: FakeNet, config: Config, address: Peer = PBX,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.address = address
        self.ua = make_ua(net, address.host, address.port, user_agent=config.sip.user_agent,
                          supported=option_tags(bool(config.calls.session_expires)))
        self.registry = CallRegistry()
        self.registrar = Registrar(config, clock=clock,
                                   on_change=self.registry.registration_changed)
        self.trunks = Trunks(config)
        self.trunks.track(self.registry)
        self.auth = ExtensionAuth(config, clock=clock)
        self.b2bua = B2BUA(config, self.ua, self.registry, self.registrar, self.trunks,
                           self.auth)
        self.b2bua.attach()
        self.control = CallControl(self.b2bua)
        self.mwi = MessageWaiting(
            self.ua, self.auth, self.registrar, lambda mailbox: (0, 0), DOMAIN,
            unsolicited=config.voicemail.unsolicited_mwi, clock=clock,
            mailboxes=frozenset(e.number for e in config.extensions))
        self.b2bua.on_subscribe = self.mwi.on_subscribe
        self.events: list[events.DomainEvent] = []  # everything the registry published
        self.registry.subscribe(self.events.append)

    def only_call(self) -> Call:
        [call] = self.registry.calls()
        return call

    async def idle(self) -> None:
        """Wait until no call, bridge or call task is left; then check nothing leaked:
        no live leg, no trunk channel in use, no session timer, no SIP dialog in the
        PBX's UA or the B2BUA, no NOTIFY under way."""
        await until(lambda: not len(self.registry) and not self.b2bua.bridges
                    and not self.b2bua.active_tasks and not len(self.ua.dialogs)
                    and not self.mwi.active_tasks, "the PBX to be idle")
        assert self.registry.leg_count() == 0
        assert set(self.trunks.in_use.values()) <= {0}, self.trunks.in_use
        assert len(self.b2bua.keeper) == 0  # no session timer left running
        assert not self.b2bua._dialogs, self.b2bua._dialogs  # (its dialog index)


class World:
    """A FakeNet with one PBX and the parties a test makes; `stop()` ends them all."""

    def __init__(self) -> None:
        self.net = FakeNet()
        self.pbx: Pbx | None = None
        self.parties: list[Party] = []

    async def start_pbx(self, config: Config | None = None, address: Peer = PBX,
                        clock: Callable[[], float] = time.time, *,
                        no_answer_seconds: float | None = None,
                        session_expires: float | None = None,
                        max_duration: float | None = None) -> Pbx:
        """The PBX (`clock`: the registrar's and the digest nonces' time), its call timers
        shortened below what a configuration allows where asked: they are handed to the
        B2BUA as the floats they are, never put in the configuration's `int` fields."""
        self.pbx = Pbx(self.net, config or pbx_config(), address, clock)
        b2bua = self.pbx.b2bua
        if no_answer_seconds is not None:
            b2bua.no_answer_seconds = no_answer_seconds
        if session_expires is not None:  # (our Min-SE follows it: `B2BUA.min_se`)
            b2bua.session_expires = session_expires
        if max_duration is not None:
            b2bua.keeper.max_duration = max_duration
        await self.pbx.ua.start()
        return self.pbx

    async def party(self, name: str, host: str, port: int = 5060) -> Party:
        """A party that is neither a trunk's carrier nor an extension's phone."""
        party = Party(self.net, name, host, port)
        await party.ua.start()
        self.parties.append(party)
        return party

    async def carrier(self, trunk: TrunkSpec = CARRIER) -> Party:
        """The carrier on `trunk`'s address (its calls in come from there)."""
        return await self.party(trunk.name, trunk.host, trunk.port)

    async def phone(self, number: str, *, register: bool = True) -> Party:
        """Extension `number`'s phone, registered unless told not to."""
        party = Party(self.net, number, phone_host(number), number=number,
                      pbx=self.pbx.address if self.pbx is not None else PBX)
        await party.ua.start()
        self.parties.append(party)
        if register:
            assert (await party.register()).status == 200
        return party

    async def settled(self) -> None:
        """Every UA (PBX and parties) back to no transaction, dialog, task or waiter:
        takes the transactions' wait timers, 64*T1 = 0.32 s."""
        uas = [p.ua for p in self.parties] + ([self.pbx.ua] if self.pbx else [])
        await settled(*uas)

    async def stop(self) -> None:
        if self.pbx is not None:
            await self.pbx.b2bua.stop()
            await self.pbx.mwi.stop()
            await self.pbx.ua.stop()
        for party in self.parties:
            await party.ua.stop()


# -- the media engine -----------------------------------------------------------------------
ENGINE_HOST = "10.9.9.9"


class EngineModel:
    """rtpengine's offer/answer as the B2BUA sees it, in memory: each SDP it gives names
    the engine (ENGINE_HOST) and the tag it is for; an answer without an offer of that
    call first fails as rtpengine's does (unknown call); every command takes `delay`."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls: set[str] = set()
        self.deleted: set[str] = set()
        self.playing: set[tuple[str, str]] = set()  # (call, tag) hearing a file
        self.blocked: set[tuple[str, str]] = set()  # (call, tag) whose media is blocked

    async def offer(self, call_id: str, from_tag: str, sdp: bytes, *,
                    to_tag: str | None = None) -> bytes:
        await asyncio.sleep(self.delay)
        self.calls.add(call_id)
        return make_sdp(f"engine-for-{to_tag}", ENGINE_HOST)

    async def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: bytes) -> bytes:
        await asyncio.sleep(self.delay)
        if call_id not in self.calls:
            raise LookupError("Unknown call-id")
        return make_sdp(f"engine-for-{from_tag}", ENGINE_HOST)

    async def delete(self, call_id: str, from_tag: str | None = None) -> None:
        await asyncio.sleep(self.delay)
        self.calls.discard(call_id)
        self.deleted.add(call_id)

    async def play_media(self, call_id: str, from_tag: str, file: str,
                         repeat_times: int | None = None) -> int:
        await asyncio.sleep(self.delay)
        self.playing.add((call_id, from_tag))
        return 1000

    async def stop_media(self, call_id: str, from_tag: str) -> None:
        await asyncio.sleep(self.delay)
        self.playing.discard((call_id, from_tag))

    async def block_media(self, call_id: str, from_tag: str) -> None:
        await asyncio.sleep(self.delay)
        self.blocked.add((call_id, from_tag))

    async def unblock_media(self, call_id: str, from_tag: str) -> None:
        await asyncio.sleep(self.delay)
        self.blocked.discard((call_id, from_tag))

    async def start_recording(self, call_id: str) -> None: ...

    async def stop_recording(self, call_id: str) -> None: ...

    async def subscribe_request(self, call_id: str, from_tag: str) -> dict[str, object]:
        raise LookupError("not modelled")

    async def subscribe_answer(self, call_id: str, to_tag: str, sdp: bytes) -> None: ...

    async def unsubscribe(self, call_id: str, to_tag: str) -> None: ...
