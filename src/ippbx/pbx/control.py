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
- blind transfer: routed as if the transferor dialled the target, with its permissions
  (a party on a trunk reaches trunks only if its inbound route has `allow_transfer_out`;
  a 3xx from the target is followed with the same permissions);
  BYE the transferor, INVITE the target with the remaining party's SDP, then re-INVITE
  the remaining party with the target's answer. The remaining leg (and so
  an `outboundid` on it) carries on; the call keeps its callid.
- transfer from a phone (REFER, RFC 3515): 202, then the same blind transfer, the
  transferor kept informed: a NOTIFY with a `100 Trying` sipfrag at once, one with the
  target's final status (`200 OK` once it answered, `486 Busy Here`…, ending the
  subscription) when known, then its BYE. Its dialog leaves the call at once (its BYE ends
  only it) but stays up for those. `Refer-Sub: false` (RFC 4488): no NOTIFY, BYE at once.
- click-to-call (RFC 3725 flow I): INVITE the extension without SDP (auto-answer headers
  on request), then INVITE the target with the extension's offer, and complete the
  extension's 2xx with the target's answer in the ACK. The target may be an IVR or a
  ring group too (`ivr/dial_extension`), and the first party an external number
  (`ivr/dial_outbound`, `ringgroup/dial_outbound`): an IVR completes the 2xx with its own
  answer (pbx/applications.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from functools import partial
from weakref import WeakKeyDictionary

from ippbx.config import Trunk
from ippbx.pbx.b2bua import B2BUA, Bridge, Side
from ippbx.pbx.calls import Leg, LegKind, LegStatus
from ippbx.pbx.dialplan import Destination, Refusal, Refused, ToExtension, ToTrunks
from ippbx.pbx.registrar import Binding
from ippbx.pbx.sdp import direction, is_hold, with_direction
from ippbx.pbx.session_keeper import with_side
from ippbx.sip.dialog import TERMINATED, Dialog
from ippbx.sip.errors import SipParseError
from ippbx.sip.headers import NameAddr
from ippbx.sip.message import REASONS, Request, Response
from ippbx.sip.ua import ServerRequest
from ippbx.sip.wire import Peer

log = logging.getLogger(__name__)

NOTIFY_TIMEOUT = 4.0  # seconds a NOTIFY to a transferor may take before we go on without it
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
        self._reinvite_locks: WeakKeyDictionary[Bridge, asyncio.Lock] = WeakKeyDictionary()

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
        call.hangup_by = call.hangup_by or "api"
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
        one is in progress (hold then unhold at once would otherwise cross). None if the
        call ended meanwhile."""
        lock = self._reinvite_locks.setdefault(bridge, asyncio.Lock())
        async with lock:
            if bridge.ended:
                return None
            b2bua = self.b2bua
            ua = b2bua.ua
            side: Side = "a" if dialog is bridge.a_dialog else "b"
            # (`body` is the other side's SDP: with anchored media, as the engine has it)
            offerer, answerer = bridge.leg("b" if side == "a" else "a"), bridge.leg(side)
            bridge.reinviting = with_side(bridge.reinviting, side)  # (crossing one: 491)
            try:
                body = await b2bua.offer_sdp(bridge, offerer, answerer, body)
                if bridge.ended or dialog.state == TERMINATED:
                    return None
                response = await ua.request_in_dialog(
                    dialog, "INVITE", body, [("Content-Type", bridge.content_type)]
                )
                if response.status < 300 and response.body:
                    await b2bua.answer_sdp(bridge, offerer, answerer, response.body)
            finally:
                bridge.reinviting = bridge.reinviting.replace(side, "")
            if response.status < 300:
                ua.ack(dialog)
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
    ) -> tuple[Bridge, Side, ToExtension | ToTrunks]:
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
        if isinstance(destination, ToExtension):
            # refuse now rather than drop the transferor and then the remaining party
            self.require_extension(destination.number)
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
        self, bridge: Bridge, side: Side, destination: ToExtension | ToTrunks,
        subscribe: bool,
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
        sent = self.b2bua.ua.request_in_dialog(transferor.a_dialog, "NOTIFY", frag.encode(), [
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
        self, bridge: Bridge, side: Side, destination: ToExtension | ToTrunks,
        outcome: Callable[[int], None] | None = None,
    ) -> None:
        """Blind transfer: `side` leaves, the other party is connected to `destination`.
        `outcome(status)` hears the target's final status (200: answered) when known."""
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

    def dial(self, extension: str, target: str, autoanswer: bool = False) -> str:
        """Ring `extension`; once it answers, call `target` from it (a party, or an IVR
        or ring group by its number). Returns the callid."""
        b2bua = self.b2bua
        contacts = self.require_extension(extension)
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

    def dial_number(self, number: str, target: str, fromext: str = "") -> str:
        """Call the external `number` (route prefix included, with `fromext`'s outbound
        permissions, all extensions' when ""); once it answers, put it through to the
        IVR or ring group numbered `target`. Returns the callid."""
        b2bua = self.b2bua
        destination = b2bua.dialplan.local(target)
        if destination is None:
            raise ControlError(ControlError.NO_ROUTE)
        routed = b2bua.dialplan.route_outbound(fromext, number)
        _check(routed)
        assert isinstance(routed, ToTrunks)
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
            call.outbound_route = routed.route
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
            status = await b2bua.deliver(bridge, destination, 70)
            if status is not None:  # the target failed
                self._drop_originated(bridge, dialog, offer, status)
        except asyncio.CancelledError:  # stopping
            self._drop_originated(bridge, dialog, offer, 503)
            raise
        except Exception:
            log.exception("click-to-call %s failed", call.callid)
            self._drop_originated(bridge, dialog, offer, 500)
            raise

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
            self.b2bua.ua.ack(dialog, with_direction(offer, "inactive") if offer else b"",
                              [("Content-Type", bridge.content_type)] if offer else ())
        self.b2bua.teardown(bridge, status)


_REFER_REFUSALS = {
    ControlError.NOT_PERMITTED: 403,
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


