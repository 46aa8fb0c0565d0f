"""Silent monitoring (`extension/listen`): a supervisor's extension hears a call unheard.

ippbx asks the media engine for a copy of the monitored call's audio (rtpengine's
`subscribe request`), calls the listener's extension with that offer (receive-only,
auto-answer headers), and hands the listener's answer back to the engine (`subscribe
answer`). The listener's call is a call of its own in the registry (its extension is
busy meanwhile; it has a CDR), with one party.

What the listener hears: rtpengine 10.5 cannot mix, and a subscription to both parties
gives one media stream per party, which a phone (one m-line) cannot play. So the listener
hears the monitored extension's far end: the customer an agent talks to. Nobody hears the
listener (its offer is send-only from the engine's side; whatever it sends goes nowhere).

The listening ends when either call ends: the listener hanging up drops the subscription;
the monitored call ending hangs the listener up. An extension is listened to by one
listener at a time, as the vendors have it.
"""

from __future__ import annotations

import asyncio
import logging

from ippbx.pbx import events
from ippbx.pbx.b2bua import B2BUA, Bridge
from ippbx.pbx.calls import Leg, LegKind, LegStatus
from ippbx.pbx.control import AUTO_ANSWER_HEADERS

log = logging.getLogger(__name__)


class ListenError(Exception):
    """A listen that cannot start; `reason` is one of the constants."""

    NO_EXTENSION = "no extension"  # the listener is unknown or not registered
    NO_CALL = "no call"  # the monitored extension is in no answered call
    BUSY = "listener busy"  # the listener is in a call, or the call has a listener
    NO_MEDIA = "no media engine"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def anchored_call_of(b2bua: B2BUA, extension: str) -> Bridge | None:
    """The answered call of `extension` whose audio the engine carries, if any."""
    media = b2bua.media
    if media is None:
        return None
    return next((b2bua.bridges[c.callid] for c in b2bua.registry.by_extension(extension)
                 if c.callid in b2bua.bridges and c.answered is not None
                 and media.anchored(c.callid)), None)


class Listening:
    """The listen calls under way: monitored callid → the listener's bridge."""

    def __init__(self, b2bua: B2BUA) -> None:
        self.b2bua = b2bua
        self.registry = b2bua.registry
        self._listeners: dict[str, Bridge] = {}  # monitored callid → listener's bridge
        self.registry.subscribe(self._on_event, events.CallEnded)

    def start(self, listener: str, listened: str) -> str:
        """Call extension `listener` and let it hear the call of extension `listened`;
        the listener's call's callid."""
        b2bua = self.b2bua
        media = b2bua.media
        if media is None:
            raise ListenError(ListenError.NO_MEDIA)
        if listener not in b2bua.extensions or not b2bua.registrar.contacts(listener):
            raise ListenError(ListenError.NO_EXTENSION)
        if self.registry.by_extension(listener):
            raise ListenError(ListenError.BUSY)
        monitored = anchored_call_of(b2bua, listened)
        if monitored is None:
            raise ListenError(ListenError.NO_CALL)
        if monitored.call.callid in self._listeners:
            raise ListenError(ListenError.BUSY)
        far = next((leg for leg in monitored.call.legs()
                    if leg.live and leg.extension != listened), None)
        if far is None:
            raise ListenError(ListenError.NO_CALL)
        leg = Leg(LegKind.EXTENSION, listened, listener, extension=listener, outgoing=True)
        call = self.registry.start_call(leg, listener)
        bridge = b2bua.new_bridge(call, None)
        self._listeners[monitored.call.callid] = bridge
        b2bua.spawn(self._run(bridge, monitored.call.callid, far.id))
        return call.callid

    async def _run(self, bridge: Bridge, monitored: str, far: str) -> None:
        b2bua, call = self.b2bua, bridge.call
        media, leg = b2bua.media, call.caller
        subscription = ""
        try:
            assert media is not None
            offered = await media.subscribe(monitored, far)
            if offered is None or bridge.ended:
                if leg.live:
                    self.registry.end_leg(leg.id, 503)
                b2bua.finish(bridge)
                return
            subscription, sdp = offered
            binding = b2bua.registrar.contacts(leg.extension or "")[:1]
            if not binding:
                self.registry.end_leg(leg.id, 480)
                b2bua.finish(bridge)
                return
            invite = b2bua.build_invite(sdp, "application/sdp", binding[0].contact,
                                        binding[0].source, leg.from_number, leg.to_number,
                                        70, None)
            for name, value in AUTO_ANSWER_HEADERS:
                invite.add(name, value)
            response = await b2bua.call_first_party(bridge, invite, binding[0].source, None)
            if response is None or bridge.a_dialog is None:
                return
            b2bua.ack(bridge.a_dialog)
            self.registry.set_status(leg.id, LegStatus.TALKING)
            self.registry.note(call, answered=leg.answered)  # (its only party answered)
            if not await media.subscribed(monitored, subscription, response.body):
                b2bua.teardown(bridge, 503)
                return
            await bridge.abort_event().wait()  # until one of the two calls ends
        except asyncio.CancelledError:
            b2bua.teardown(bridge, 503)
            raise
        finally:
            if self._listeners.get(monitored) is bridge:
                del self._listeners[monitored]
            if subscription and media is not None and media.anchored(monitored):
                await media.unsubscribe(monitored, subscription)

    def _on_event(self, event: events.DomainEvent) -> None:
        """The monitored call ended: its listener is hung up."""
        if isinstance(event, events.CallEnded):
            bridge = self._listeners.pop(event.call.callid, None)
            if bridge is not None and not bridge.ended:
                self.b2bua.teardown(bridge, 200)
