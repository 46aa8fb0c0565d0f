"""Call control on behalf of an application: hang up, hold, blind transfer, click-to-call.

The API layer finds the call (by outboundid, inboundid, extension or callid) and asks
here by its callid (a string: no live object crosses, so the call may one day live in a
store shared by several nodes); everything SIP happens in the B2BUA's primitives.
Operations that take time (transfer, originate, hold) run as B2BUA tasks and return at
once, as the vendors' APIs do; the application follows them through `outbound/query`
and the call reports.

- hang up: BYE both dialogs of an answered call; before the answer, CANCEL the callee
  and answer the caller 487.
- hold/unhold: re-INVITE the other party with the extension's last SDP set to
  `sendonly` / `sendrecv`; both legs show `Wait` while held, and with anchored media
  the held party hears music on hold.
- mute/unmute (anchored media only): the media engine stops (lets again) what the
  extension says reaching the other party.
- blind transfer: routed as if the transferor dialled the target (`route_transfer`:
  the numbers of extensions, IVRs, ring groups, queues and paging groups for anyone;
  other numbers with the transferor's permissions, a party on a trunk reaching trunks
  only if its inbound route has `allow_transfer_out`; a 3xx from the target is followed
  with the same permissions). To a party (an extension, an outside number): BYE the
  transferor, INVITE the target with the remaining party's SDP, then re-INVITE the
  remaining party with the target's answer. To what ippbx answers or rings itself (an
  IVR, a ring group, a queue, a paging group; anchored media only): BYE the transferor,
  re-INVITE the remaining party without SDP and answer its offer (in the ACK) with the
  engine's SDP against ippbx's player, as an application answers a caller; the call then
  goes on as a call answered by ippbx (`Applications.go`: ringback while a ring group
  rings, whose member is bridged by `B2BUA._answered_connected`). The applications serve
  the call's caller side: a remaining callee takes the caller's place first
  (`CallRegistry.swap_sides`). The remaining leg (and so an `outboundid` on it) carries
  on; the call keeps its callid.
- transfer from a phone (REFER, RFC 3515): 202, then the same blind transfer, the
  transferor kept informed: a NOTIFY with a `100 Trying` sipfrag at once, one with the
  target's final status (`200 OK` once it answered, `486 Busy Here`…, ending the
  subscription; `200 OK` as soon as ippbx answered the remaining party for an IVR, a
  ring group, a queue) when known, then its BYE. Its dialog leaves the call at once (its BYE ends
  only it) but stays up for those. `Refer-Sub: false` (RFC 4488): no NOTIFY, BYE at once.
- click-to-call (RFC 3725 flow I): INVITE the extension without SDP (auto-answer headers
  on request), then INVITE the target with the extension's offer, and complete the
  extension's 2xx with the target's answer in the ACK. The target may be any local
  number (an IVR, a ring group, a queue, a paging group: `ivr/dial_extension`), and the
  first party an external number (`outbound/dial_outbound`, the callback, whose target
  may be an external number too; `ivr/dial_outbound`, `ringgroup/dial_outbound`,
  `queue/dial_outbound`): an application completes the 2xx with its own answer
  (pbx/applications.py). With anchored media, an external first party is answered so at
  once and hears ringback while its target rings (not held un-ACKed for up to 25 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from functools import partial

from ippbx.config import Trunk
from ippbx.pbx.b2bua import B2BUA, Bridge, Side, offer_turn
from ippbx.pbx.calls import Leg, LegKind, LegStatus
from ippbx.pbx.dialplan import Destination, Local, Refusal, Refused, ToExtension, ToTrunks
from ippbx.pbx.registrar import Binding
from ippbx.pbx.sdp import direction, is_hold, with_direction
from ippbx.sip.dialog import TERMINATED, Dialog
from ippbx.sip.errors import SipParseError
from ippbx.sip.headers import NameAddr
from ippbx.sip.message import REASONS, Request, Response
from ippbx.sip.session import OfferStimulus, glare_retry_delay
from ippbx.sip.ua import ServerRequest
from ippbx.sip.wire import Peer

log = logging.getLogger(__name__)

Transfer = Local | ToTrunks  # where a blind transfer may go (`Dialplan.route_transfer`)
NOTIFY_TIMEOUT = 4.0  # seconds a NOTIFY to a transferor may take before we go on without it
GLARE_TRIES = 3  # a re-INVITE of ours (hold, unhold) answered 491 is sent this often at most
AUTO_ANSWER_HEADERS = (
    ("Call-Info", "<sip:ippbx>;answer-after=0"),
    ("Alert-Info", "<http://ippbx/>;info=alert-autoanswer"),
)


class ControlError(Exception):
    """An operation that cannot be done; `reason` says why (the API maps it to an errno)."""

    NO_CALL = "no call"
    NO_EXTENSION = "no extension"
    NOT_PERMITTED = "not permitted"
    NO_ROUTE = "no route"
    NOT_CONNECTED = "not connected"
    NO_MEDIA = "no media engine"  # the call's audio does not pass through ippbx

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CallControl:
    """Application-driven operations on the B2BUA's calls."""

    def __init__(self, b2bua: B2BUA) -> None:
        self.b2bua = b2bua
        self.registry = b2bua.registry
        b2bua.on_refer = self._on_refer

    def _bridge(self, callid: str) -> Bridge:
        bridge = self.b2bua.bridges.get(callid)
        if bridge is None or bridge.ended:
            raise ControlError(ControlError.NO_CALL)
        return bridge

    @staticmethod
    def _answered(bridge: Bridge) -> bool:
        return bridge.a_dialog is not None and bridge.b_dialog is not None

    # -- hang up ------------------------------------------------------------------------
    def hangup(self, callid: str) -> None:
        """End call `callid` whatever its state."""
        bridge = self._bridge(callid)
        call = bridge.call
        self.registry.hung_up_by(call, "api")
        if self._answered(bridge):
            self.b2bua.teardown(bridge, 200)
        else:
            bridge.abort()  # the call's task cancels the callee and answers the caller

    def hangup_extension(self, number: str) -> int:
        """End every call of extension `number`; how many there were."""
        calls = self.registry.by_extension(number)
        for call in calls:
            if call.callid in self.b2bua.bridges:
                self.hangup(call.callid)
        return len(calls)

    # -- hold ---------------------------------------------------------------------------
    def _side_of_extension(self, bridge: Bridge, number: str) -> Side:
        for side in ("a", "b"):
            leg = bridge.leg(side)  # type: ignore[arg-type]
            if leg is not None and leg.live and leg.extension == number:
                return side  # type: ignore[return-value]
        raise ControlError(ControlError.NO_CALL)

    def hold(self, callid: str, extension: str, on: bool) -> None:
        """Put the party `extension` talks to on hold (`on`) or take it off."""
        bridge = self._bridge(callid)
        side = self._side_of_extension(bridge, extension)
        if not self._answered(bridge):
            raise ControlError(ControlError.NOT_CONNECTED)
        self.b2bua.spawn(self._hold(bridge, side, on))

    async def _hold(self, bridge: Bridge, side: Side, on: bool) -> None:
        other: Side = "b" if side == "a" else "a"
        dialog = bridge.dialog(other)
        sdp = bridge.sdp.get(side, b"")
        if dialog is None or not sdp:
            return
        offer = with_direction(sdp, "sendonly" if on else "sendrecv")
        response = await self._reinvite(bridge, dialog, offer)
        if response is None or response.status >= 300 or bridge.ended:
            return
        bridge.sdp[side] = offer
        self.b2bua.set_held(bridge, other if on else None)

    # -- mute ---------------------------------------------------------------------------
    def mute(self, callid: str, extension: str, on: bool) -> None:
        """Mute `extension` in its call (`on`) or unmute it: the other party no longer
        hears it, it still hears them. Needs the call's media anchored on the engine; it
        ends with the call."""
        bridge = self._bridge(callid)
        side = self._side_of_extension(bridge, extension)
        if not self._answered(bridge):
            raise ControlError(ControlError.NOT_CONNECTED)
        media = self.b2bua.media
        leg = bridge.leg(side)
        if media is None or leg is None or not media.anchored(callid):
            raise ControlError(ControlError.NO_MEDIA)
        self.b2bua.spawn(self._mute(callid, leg.id, on))

    async def _mute(self, callid: str, leg_id: str, on: bool) -> None:
        media = self.b2bua.media
        if media is not None:
            await media.mute(callid, leg_id, on)

    async def _reinvite(self, bridge: Bridge, dialog: Dialog, body: bytes) -> Response | None:
        """Send a re-INVITE in `dialog` (ACKed if answered 2xx), after any other that
        ippbx has out for this call: RFC 3261 §14.1 allows no new INVITE in a dialog while
        one is in progress (hold then unhold at once would otherwise cross). One that
        crossed the peer's own (491) is sent again after §14.1's random pause, up to
        `GLARE_TRIES` times in all. None if the call ended meanwhile."""
        lock = bridge.reinvite_order()
        async with lock:
            b2bua = self.b2bua
            side: Side = "a" if dialog is bridge.a_dialog else "b"
            # (`body` is the other side's SDP: with anchored media, as the engine has it)
            offerer, answerer = bridge.leg("b" if side == "a" else "a"), bridge.leg(side)
            for attempt in range(GLARE_TRIES):
                if attempt:
                    await asyncio.sleep(glare_retry_delay(dialog.is_uac))
                if bridge.ended or dialog.state == TERMINATED:
                    return None
                if not await offer_turn(bridge, side):  # (a crossing one gets 491)
                    return None
                try:
                    offer = await b2bua.offer_sdp(bridge, offerer, answerer, body)
                    if bridge.ended or dialog.state == TERMINATED:
                        return None
                    response = await b2bua.request(
                        dialog, "INVITE", offer, [("Content-Type", bridge.content_type)]
                    )
                    if response.status < 300 and response.body:
                        await b2bua.answer_sdp(bridge, offerer, answerer, response.body)
                finally:
                    bridge.offer(side, OfferStimulus.OUR_ANSWERED)
                if response.status != 491:
                    break
                log.info("call %s: our re-INVITE crossed the %s side's (491)%s",
                         bridge.call.callid, "caller" if side == "a" else "callee",
                         "; trying again" if attempt + 1 < GLARE_TRIES else "")
            if response.status < 300:
                b2bua.ack(dialog)
            return response

    # -- blind transfer -----------------------------------------------------------------
    def _transferor_side(self, bridge: Bridge, transferor: str) -> Side:
        """The side whose party is `transferor`: an extension number, a leg id, or the
        external number on a trunk leg."""
        for side in ("a", "b"):
            leg = bridge.leg(side)  # type: ignore[arg-type]
            if leg is None or not leg.live:
                continue
            external = leg.to_number if leg.outgoing else leg.from_number
            if transferor in (leg.extension, leg.id) or (
                leg.kind is LegKind.TRUNK and transferor == external
            ):
                return side  # type: ignore[return-value]
        raise ControlError(ControlError.NO_CALL)

    def transfer(self, callid: str, transferor: str, target: str) -> None:
        """Blind transfer: `transferor` leaves, the other party is connected to `target`."""
        bridge, side, destination = self._prepare_transfer(callid, transferor, target)
        self.b2bua.spawn(self._transfer(bridge, side, destination))

    def _prepare_transfer(
        self, callid: str, transferor: str, target: str
    ) -> tuple[Bridge, Side, Transfer]:
        bridge = self._bridge(callid)
        call = bridge.call
        side = self._transferor_side(bridge, transferor)
        if not self._answered(bridge):
            raise ControlError(ControlError.NOT_CONNECTED)
        leg = bridge.leg(side)
        assert leg is not None
        # as if the transferor dialled it, with its permissions: a party on a trunk has no
        # way out through a trunk unless its inbound route grants one
        destination = self.b2bua.dialplan.route_transfer(
            leg.extension or "", call.inbound_route if leg is call.inbound_leg else "", target
        )
        _check(destination)
        # refuse now rather than drop the transferor and then the remaining party
        if isinstance(destination, ToExtension):
            self.require_extension(destination.number)
        elif not isinstance(destination, ToTrunks):
            media = self.b2bua.media
            # (ippbx answers the remaining party itself: its audio must be the engine's)
            if media is None or self.b2bua.apps is None or not media.anchored(call.callid):
                raise ControlError(ControlError.NO_MEDIA)
        assert not isinstance(destination, Refused)
        return bridge, side, destination

    def _on_refer(self, bridge: Bridge, side: Side, sr: ServerRequest) -> None:
        """A phone transfers its call (REFER, RFC 3515): accept (202), then transfer as
        the API would, telling the phone how it goes (`_refer`)."""
        leg = bridge.leg(side)
        try:
            target = NameAddr.parse(sr.request.get("Refer-To") or "").sip_uri().unescaped_user or ""
        except SipParseError:
            target = ""
        if leg is None or not target:
            sr.respond(400, "Bad Refer-To")
            return
        try:
            _, _, destination = self._prepare_transfer(bridge.call.callid, leg.id, target)
        except ControlError as exc:
            sr.respond(_REFER_REFUSALS.get(exc.reason, 603))
            return
        # RFC 4488: the transferor may ask for no implicit subscription, hence no NOTIFY
        refer_sub = (sr.request.get("Refer-Sub") or "").partition(";")[0]
        subscribe = refer_sub.strip().lower() != "false"
        sr.respond(202, headers=() if subscribe else [("Refer-Sub", "false")])
        self.registry.transferred(bridge.call, leg, target)
        self.b2bua.spawn(self._refer(bridge, side, destination, subscribe))

    async def _refer(
        self, bridge: Bridge, side: Side, destination: Transfer, subscribe: bool,
    ) -> None:
        """Carry out an accepted REFER. With its implicit subscription, the transferor's
        dialog leaves the call but stays up (`B2BUA.detach`) for the NOTIFYs (RFC 3515
        §2.4.4): a `100 Trying` sipfrag now, the target's final status once known
        (`_conclude`), then a BYE."""
        if bridge.ended or bridge.dialog(side) is None:  # the call ended meanwhile
            return
        if not subscribe:
            await self._transfer(bridge, side, destination)
            return
        b2bua = self.b2bua
        transferor = b2bua.detach(bridge, side)
        trying = asyncio.ensure_future(self._notify(transferor, 100))
        concluded = False

        def outcome(status: int) -> None:
            nonlocal concluded
            concluded = True
            b2bua.spawn(self._conclude(transferor, trying, status))

        try:
            await self._transfer(bridge, side, destination, outcome)
        finally:
            if not concluded:  # (stopping, or a failure of our own)
                trying.cancel()
                b2bua.release(transferor)

    async def _conclude(self, transferor: Bridge | None, trying: asyncio.Future[None],
                        status: int) -> None:
        """The INVITE to the transfer target ended with `status` (200: answered): after
        the `100 Trying` NOTIFY, a final one ends the subscription; then the BYE."""
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(trying, NOTIFY_TIMEOUT)
            await self._notify(transferor, status)
        finally:
            self.b2bua.release(transferor)

    async def _notify(self, transferor: Bridge | None, status: int) -> None:
        """A NOTIFY of the REFER's implicit subscription (RFC 3515 §2.4.5) carrying the
        status line `status` as a sipfrag; a provisional keeps the subscription active, a
        final one ends it. Nothing if the transferor has hung up; an unanswered NOTIFY is
        given up after NOTIFY_TIMEOUT."""
        if transferor is None or transferor.ended or transferor.a_dialog is None:
            return
        state = "active;expires=60" if status < 200 else "terminated;reason=noresource"
        frag = f"SIP/2.0 {status} {REASONS.get(status, '')}\r\n"  # (the SP stays)
        sent = self.b2bua.request(transferor.a_dialog, "NOTIFY", frag.encode(), [
            ("Event", "refer"),
            ("Subscription-State", state),
            ("Content-Type", "message/sipfrag;version=2.0"),
        ])
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(sent, NOTIFY_TIMEOUT)

    @staticmethod
    def _other_extension(bridge: Bridge, side: Side) -> str | None:
        other = bridge.leg("b" if side == "a" else "a")
        return other.extension if other is not None else None

    async def _transfer(
        self, bridge: Bridge, side: Side, destination: Transfer,
        outcome: Callable[[int], None] | None = None,
    ) -> None:
        """Blind transfer: `side` leaves, the other party is connected to `destination`.
        `outcome(status)` hears the target's final status (200: answered) when known."""
        if not isinstance(destination, ToExtension | ToTrunks):
            await self._hand_over(bridge, side, destination, outcome)
            return
        b2bua = self.b2bua
        keep: Side = "b" if side == "a" else "a"
        old = bridge.leg(side)
        kept = bridge.leg(keep)
        assert old is not None and kept is not None
        # a 3xx from the target is followed with the transferor's permissions
        reroute = partial(b2bua.dialplan.route_transfer, old.extension or "",
                          bridge.call.inbound_route if old is bridge.call.inbound_leg else "")
        b2bua.bye(bridge.dialog(side))  # the transferor leaves now (BYE, then forgotten)
        bridge.set_dialog(side, None)
        offer = bridge.sdp.get(keep, b"")
        if offer and is_hold(bridge.sdp.get(side, b"")) \
                and direction(offer) in ("recvonly", "inactive"):
            # the remaining party's last SDP answered a hold by the transferor: the new
            # party holds no one (a hold by the remaining party itself goes on)
            offer = with_direction(offer, "sendrecv")
        presented = kept.from_number if not kept.outgoing else kept.to_number
        current = [old.id]  # the leg each attempt replaces: the transferor, then a failure

        def attach(new: Leg) -> None:
            self.registry.replace_leg(bridge.call, current[0], new)
            current[0] = new.id

        on_behalf = old.extension or self._other_extension(bridge, side) or ""
        try:
            placed = await b2bua.place_leg(
                bridge, destination, offer, presented, attach, on_behalf, reroute, kept
            )
        except asyncio.CancelledError:  # stopping: CANCEL the target, release the other
            pending = bridge.b_invite
            if pending is not None and pending.dialog is None:
                pending.cancel()
            b2bua.hangup_side(bridge, side, 503)
            raise
        if outcome is not None:
            outcome(placed if isinstance(placed, int) else 200)
        if isinstance(placed, int):  # the target did not answer: the other party is released
            b2bua.hangup_side(bridge, side, 480)
            return
        new_leg, dialog, answer = placed
        if bridge.ended:  # the remaining party hung up meanwhile
            b2bua.bye(dialog)
            return
        bridge.set_dialog(side, dialog)
        b2bua.remember(bridge, side, dialog)
        bridge.sdp[side] = answer
        status = LegStatus.WAIT if is_hold(offer) else LegStatus.TALKING
        for leg in (new_leg, kept):  # (a hold by the transferor ends with it)
            if leg.live:
                self.registry.set_status(leg.id, status)
        keep_dialog = bridge.dialog(keep)
        if keep_dialog is not None and answer:
            response = await self._reinvite(bridge, keep_dialog, answer)
            if response is not None and response.status < 300 and response.body:
                bridge.sdp[keep] = response.body

    async def _hand_over(
        self, bridge: Bridge, side: Side, destination: Local,
        outcome: Callable[[int], None] | None = None,
    ) -> None:
        """Blind transfer to what ippbx answers or rings itself (an IVR, a ring group, a
        queue, a paging group): `side` leaves, ippbx answers the other party (the
        call's caller side from now on) as an application does, then puts it through to
        `destination` as a call it answered. `outcome(200)` once the party is answered
        (as a PBX reports a blind transfer it took over), else the failure."""
        b2bua, registry = self.b2bua, self.registry
        apps = b2bua.apps
        assert apps is not None  # (`_prepare_transfer` saw to it)
        old = bridge.leg(side)
        b2bua.bye(bridge.dialog(side))  # the transferor leaves now (a REFER's is detached)
        bridge.set_dialog(side, None)
        try:
            await self._end_hold(bridge)
            if bridge.ended:  # the remaining party hung up meanwhile
                if outcome is not None:
                    outcome(487)
                return
            if old is not None and old.live:
                registry.end_leg(old.id, 200)
            if side == "a":  # the callee stays: it is served as the caller from now on
                self._callee_to_caller(bridge)
            b2bua.keeper.start(bridge, "b", None, False)  # (the transferor's timer)
            self.registry.note(bridge.call, application="")
            answered = await self._answer_by_pbx(bridge)
            if outcome is not None:
                outcome(200 if answered else 487 if bridge.ended else 503)
            if not answered:
                b2bua.teardown(bridge, 503)
                return
            status = await apps.go(bridge, destination, 70, 0)
            if status is not None:  # nobody took it: the party is hung up
                b2bua.fail(bridge, status)
        except asyncio.CancelledError:  # stopping: release the remaining party
            b2bua.teardown(bridge, 503)
            raise
        except Exception:
            log.exception("transfer of call %s to %s failed", bridge.call.callid,
                          destination)
            b2bua.teardown(bridge, 500)
            raise

    async def _end_hold(self, bridge: Bridge) -> None:
        """A hold between the transferor and the remaining party ends with the transfer:
        the music on hold stops and the holder's audio is let through again."""
        media, held = self.b2bua.media, bridge.moh
        if not held:
            return
        bridge.moh = ""
        held_leg = bridge.leg("a" if held == "a" else "b")
        holder = bridge.leg("b" if held == "a" else "a")
        if media is not None and held_leg is not None:
            await media.hold_music(bridge.call.callid, held_leg.id,
                                   holder.id if holder is not None else None, False)

    def _callee_to_caller(self, bridge: Bridge) -> None:
        """The caller side has left: the callee's dialog, SDP and leg take its place (the
        applications, the dial plan's deliveries and DTMF serve the caller side)."""
        dialog = bridge.b_dialog
        bridge.a_dialog, bridge.b_dialog = dialog, None
        bridge.sdp = {"a": bridge.sdp.get("b", b"")}
        self.registry.swap_sides(bridge.call)
        self.b2bua.remember(bridge, "a", dialog)  # (its requests come as the caller's)

    async def _answer_by_pbx(self, bridge: Bridge) -> bool:
        """Re-INVITE the caller side without SDP; its 2xx carries its offer, which ippbx
        answers in the ACK against its player (`Applications.answer`, as for a call it
        originated): the party is a call answered by ippbx. ippbx refreshes its session
        from now on. False if that could not be done (the 2xx is then completed with the
        party's own SDP made inactive)."""
        b2bua, apps = self.b2bua, self.b2bua.apps
        dialog = bridge.a_dialog
        lock = bridge.reinvite_order()
        async with lock:  # (after a hold or unhold of ippbx's still out)
            if apps is None or dialog is None or bridge.ended or dialog.state == TERMINATED:
                return False
            headers = [("Supported", "timer"), ("Session-Expires",
                        f"{int(b2bua.session_expires)};refresher=uac")
                       ] if b2bua.session_expires else []
            if not await offer_turn(bridge, "a"):  # (a crossing one gets 491)
                return False
            try:
                response = await b2bua.request(dialog, "INVITE", b"", headers)
            finally:
                bridge.offer("a", OfferStimulus.OUR_ANSWERED)
            if response.status >= 300 or bridge.ended:
                return False
            offer = response.body
            bridge.sdp = {"a": offer}
            bridge.content_type = response.get("Content-Type") or bridge.content_type
            if bridge.digits is not None:
                while not bridge.digits.empty():  # (keys meant for an earlier menu)
                    bridge.digits.get_nowait()
            if offer and await apps.answer(bridge):
                b2bua.keeper.start(bridge, "a", bridge.a_session, False)
                return True
            last = dialog.last_ack
            if last is None or last.cseq != dialog.invite_cseq:  # (2xx not ACKed yet)
                b2bua.ack_declining(dialog, offer, bridge.content_type)
            return False

    # -- click-to-call ------------------------------------------------------------------
    def require_extension(self, number: str) -> list[Binding]:
        """The contacts of extension `number`; NO_EXTENSION if it is unknown or not
        registered (nothing could ring it)."""
        if number not in self.b2bua.extensions:
            raise ControlError(ControlError.NO_EXTENSION)
        contacts = self.b2bua.registrar.contacts(number)
        if not contacts:
            raise ControlError(ControlError.NO_EXTENSION)
        return contacts

    def dial(self, extension: str, target: str, autoanswer: bool = False,
             destination: Destination | None = None) -> str:
        """Ring `extension`; once it answers, call `target` from it (a party, or an IVR,
        ring group, queue, paging group or conference room by its number; `destination`
        when given says where `target` goes). Returns the callid."""
        b2bua = self.b2bua
        contacts = self.require_extension(extension)
        if destination is None:
            destination = b2bua.dialplan.route_from_extension(extension, target)
        _check(destination)
        if isinstance(destination, ToExtension):
            self.require_extension(destination.number)
        binding = contacts[0]
        leg = Leg(LegKind.EXTENSION, extension, target, extension=extension, outgoing=True)
        invite = b2bua.build_invite(b"", "application/sdp", binding.contact, binding.source,
                                    target, extension, 70, None)
        if autoanswer:
            for name, value in AUTO_ANSWER_HEADERS:
                invite.add(name, value)
        return self._originate(leg, target, invite, binding.source, None, destination)

    def require_local(self, number: str) -> None:
        """`number` is an extension that could ring, an IVR, a ring group, a queue or a
        paging group; NO_EXTENSION otherwise."""
        local = self.b2bua.dialplan.local(number)
        if local is None:
            raise ControlError(ControlError.NO_EXTENSION)
        if isinstance(local, ToExtension):
            self.require_extension(number)

    def dial_number(self, number: str, target: str, fromext: str = "",
                    local: Destination | None = None) -> str:
        """Call the external `number` (route prefix included, with extension `fromext`'s
        outbound permissions, those open to all extensions when ""); once it answers, put
        it through to `target`: an extension, IVR, ring group, queue or paging group by
        its number, or another external number (routed the same way: a callback);
        `local`, when given, is where it goes instead. Returns the callid."""
        b2bua = self.b2bua
        dialplan = b2bua.dialplan
        if fromext and fromext not in b2bua.extensions:
            raise ControlError(ControlError.NO_EXTENSION)
        routed = dialplan.route_outbound(fromext, number)
        _check(routed)
        assert isinstance(routed, ToTrunks)
        destination: Destination | None = local or dialplan.local(target)
        if destination is None:  # an outside number: the second leg goes out too
            destination = dialplan.route_outbound(fromext, target)
            _check(destination)
            assert isinstance(destination, ToTrunks)
            if b2bua.free_trunk(destination) is None:
                raise ControlError(ControlError.NO_ROUTE)
        elif isinstance(destination, ToExtension):
            self.require_extension(destination.number)
        found = b2bua.free_trunk(routed)
        if found is None:
            raise ControlError(ControlError.NO_ROUTE)
        trunk, dest, uri = found
        presented = trunk.callerid or fromext or "ippbx"
        leg = Leg(LegKind.TRUNK, fromext or presented, routed.number, trunk=trunk.name,
                  outgoing=True)
        invite = b2bua.build_invite(b"", "application/sdp", uri, dest, presented,
                                    routed.number, 70, trunk)
        callid = self._originate(leg, target, invite, dest, trunk, destination)
        call = self.registry.get(callid)
        if call is not None:
            self.registry.note(call, outbound_route=routed.route)
        return callid

    def _originate(self, leg: Leg, target: str, invite: Request, dest: Peer,
                   trunk: Trunk | None, destination: Destination) -> str:
        b2bua = self.b2bua
        call = self.registry.start_call(leg, target)
        bridge = b2bua.new_bridge(call, None)
        b2bua.spawn(self._dial(bridge, invite, dest, trunk, destination))
        return call.callid

    async def _dial(
        self, bridge: Bridge, invite: Request, dest: Peer, trunk: Trunk | None,
        destination: Destination,
    ) -> None:
        b2bua = self.b2bua
        call = bridge.call
        caller = call.caller
        dialog: Dialog | None = None  # the first party's, once it answered
        offer = b""  # the SDP it offered in its 200
        try:
            response = await b2bua.call_first_party(bridge, invite, dest, trunk)
            if response is None:
                return
            dialog = bridge.a_dialog
            bridge.sdp["a"] = offer = response.body
            bridge.content_type = response.get("Content-Type") or bridge.content_type
            self.registry.set_status(caller.id, LegStatus.TALKING)
            status = await self._put_through(bridge, destination)
            if status is not None:  # the target failed
                self._drop_originated(bridge, dialog, offer, status)
        except asyncio.CancelledError:  # stopping
            self._drop_originated(bridge, dialog, offer, 503)
            raise
        except Exception:
            log.exception("click-to-call %s failed", call.callid)
            self._drop_originated(bridge, dialog, offer, 500)
            raise

    async def _put_through(self, bridge: Bridge, destination: Destination) -> int | None:
        """Connect the answered first party of a call ippbx placed to `destination`. An
        external party (a callback) is answered by ippbx against its player when the
        media is anchored, and hears ringback while the target rings; otherwise its 2xx
        waits for the target's answer (RFC 3725 flow I)."""
        b2bua, apps = self.b2bua, self.b2bua.apps
        if bridge.call.caller.kind is LegKind.TRUNK and apps is not None \
                and b2bua.media is not None and await apps.answer(bridge):
            return await apps.go(bridge, destination, 70, 0)
        return await b2bua.deliver(bridge, destination, 70)

    def _drop_originated(
        self, bridge: Bridge, dialog: Dialog | None, offer: bytes, status: int
    ) -> None:
        """End a click-to-call whose second party is not connected: CANCEL an INVITE still
        out, complete the extension's 2xx if still un-ACKed (its own SDP made inactive:
        there is no answer to give it), then BYE it."""
        if bridge.ended:
            return
        pending = bridge.b_invite
        if pending is not None and pending.dialog is None:
            pending.cancel()
        if dialog is not None and dialog.last_ack is None:
            self.b2bua.ack_declining(dialog, offer, bridge.content_type)
        self.b2bua.teardown(bridge, status)


_REFER_REFUSALS = {
    ControlError.NOT_PERMITTED: 403,
    ControlError.NO_MEDIA: 488,  # (the target is answered by ippbx: needs the engine)
    ControlError.NO_ROUTE: 404,
    ControlError.NO_EXTENSION: 404,
    ControlError.NOT_CONNECTED: 491,
    ControlError.NO_CALL: 481,
}


def _check(destination: Destination) -> None:
    if isinstance(destination, Refused):
        raise ControlError(
            ControlError.NOT_PERMITTED if destination.reason is Refusal.FORBIDDEN
            else ControlError.NO_ROUTE
        )


