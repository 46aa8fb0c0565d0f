"""A supervisor on an agent's call, on the conference mixer: listen (hear both parties,
unheard), whisper (heard by the agent only) and barge (a three-way conversation).

The supervisor's phone is called (auto-answer headers) into a quiet room the
supervision holds in the mixer (`Conferences.hold_room`; the supervisor's leg joins it
as a conference member does, through the media engine). The monitored call's two legs
stay where they are in the engine (same ports, no re-INVITE to either phone); what
changes is where the engine sends and takes their audio:

- a *copy* of a party (rtpengine's `subscribe request`) is a mixer party that only
  speaks: the room hears that party, nobody hears the room through it;
- a *moved* party (the engine's call re-offered from that leg to a tag of the mixer's,
  as an IVR's caller is moved from the player to a callee) speaks to the room and hears
  the room's mix of the others.

- listen: the room has a copy of each party; the supervisor hears both, nobody hears
  the supervisor, and the two parties keep talking straight through the engine.
- whisper: the agent is moved to the room, with a copy of the far party; a second room
  holds the far party (moved) and a copy of the agent. The supervisor hears both, the
  agent hears the far party and the supervisor, the far party hears the agent only.
- barge: both parties are moved to the room: everyone hears the two others.

When the supervisor hangs up, the moved legs are put back (the engine's call re-offered
from the caller's leg to the callee's, with their own SDPs: the pairing they had) and
the copies dropped; when the monitored call ends, the supervisor is hung up. One
supervisor per call. When the mixer restarts, every supervision ends (the parties are
put back, the supervisor hung up). Known limit: a re-INVITE on the monitored call while
parties are moved (a hold) pairs its legs again in the engine, so the two talk directly
and the supervisor stops hearing the moved ones until the supervision is started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from ippbx.config import Conference
from ippbx.media.janus import JanusError, Participant
from ippbx.pbx import events
from ippbx.pbx.b2bua import B2BUA, Bridge
from ippbx.pbx.conferences import ConferenceError, Conferences, Room, engine_side, mixer_answer
from ippbx.pbx.dialplan import ToConference
from ippbx.pbx.listen import anchored_call_of

if TYPE_CHECKING:
    from ippbx.pbx.control import CallControl

log = logging.getLogger(__name__)


class Mode(StrEnum):
    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"


class SupervisionError(Exception):
    """A supervision that cannot start; `reason` is one of these."""

    NO_EXTENSION = "no extension"  # the supervisor is unknown or not registered
    NO_CALL = "no call"  # the monitored extension is in no answered, anchored call
    BUSY = "busy"  # the supervisor is in a call, or the call has a supervisor
    NO_MIXER = "no mixer"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _mix_tag(leg_id: str) -> str:
    return f"mix-{leg_id}"


@dataclass(eq=False)
class Supervised:
    """One supervision under way."""

    mode: Mode
    bridge: Bridge  # the monitored call's
    agent: str  # its leg ids: the monitored extension's, the other party's
    far: str
    room_number: str  # the room held for it (the supervisor's call joins it)
    supervisor_callid: str = ""
    parties: list[Participant] = field(default_factory=list)
    copies: list[str] = field(default_factory=list)  # subscription tags
    moved: list[str] = field(default_factory=list)  # leg ids moved to the mixer
    second: Room | None = None  # whisper's room for the far party
    over: asyncio.Event = field(default_factory=asyncio.Event)


class Supervision:
    """Starts and ends supervisions (`extension/listen|whisper|barge`)."""

    def __init__(self, b2bua: B2BUA, conferences: Conferences, control: CallControl) -> None:
        self.b2bua = b2bua
        self.registry = b2bua.registry
        self.conferences = conferences
        self.control = control
        self._by_call: dict[str, Supervised] = {}  # monitored callid → its supervision
        self._numbers = itertools.count(1)
        self.registry.subscribe(self._on_event, events.CallEnded)
        conferences.on_restart.append(self._mixer_restarted)

    @property
    def count(self) -> int:
        """Supervisions under way."""
        return len(self._by_call)

    @property
    def available(self) -> bool:
        return self.conferences.mixer() is not None and self.b2bua.media is not None

    def start(self, mode: Mode, supervisor: str, monitored: str) -> str:
        """Call extension `supervisor` into extension `monitored`'s call as `mode` says;
        the supervisor's call's callid."""
        b2bua, media = self.b2bua, self.b2bua.media
        if not self.available or media is None:
            raise SupervisionError(SupervisionError.NO_MIXER)
        if supervisor not in b2bua.extensions or not b2bua.registrar.contacts(supervisor):
            raise SupervisionError(SupervisionError.NO_EXTENSION)
        if self.registry.by_extension(supervisor):
            raise SupervisionError(SupervisionError.BUSY)
        bridge = anchored_call_of(b2bua, monitored)
        if bridge is None or bridge.a_dialog is None or bridge.b_dialog is None \
                or bridge.ended:
            raise SupervisionError(SupervisionError.NO_CALL)
        if bridge.call.callid in self._by_call:
            raise SupervisionError(SupervisionError.BUSY)
        legs = {side: bridge.leg(side) for side in ("a", "b")}
        agent_side = next((side for side, leg in legs.items()
                           if leg is not None and leg.extension == monitored), None)
        if agent_side is None:
            raise SupervisionError(SupervisionError.NO_CALL)
        agent, far = legs[agent_side], legs["b" if agent_side == "a" else "a"]
        if agent is None or far is None or not agent.live or not far.live:
            raise SupervisionError(SupervisionError.NO_CALL)
        number = f"*supervision.{next(self._numbers)}"
        job = Supervised(mode, bridge, agent.id, far.id, number)
        room = self.conferences.hold_room(Conference(number=number, name=f"{mode} {monitored}",
                                                     max_members=2))
        self._by_call[bridge.call.callid] = job
        try:
            job.supervisor_callid = self.control.dial(
                supervisor, monitored, autoanswer=True,
                destination=ToConference(number, invited=True))
        except Exception:
            self._by_call.pop(bridge.call.callid, None)
            self.b2bua.spawn(self.conferences.close_room(number))
            raise
        b2bua.spawn(self._run(job, room))
        return job.supervisor_callid

    async def _run(self, job: Supervised, room: Room) -> None:
        try:
            await self.conferences.open_room(room)
            if not await self._set_up(job, room):
                log.warning("call %s: the %s could not start", job.bridge.call.callid,
                            job.mode)
                return
            await job.over.wait()
        except (JanusError, ConferenceError) as exc:
            log.warning("call %s: %s failed (%s)", job.bridge.call.callid, job.mode, exc)
        finally:
            await self._end(job)

    async def _set_up(self, job: Supervised, room: Room) -> bool:
        if job.mode is Mode.LISTEN:
            return await self._copy(job, room, job.agent) and \
                await self._copy(job, room, job.far)
        if job.mode is Mode.BARGE:
            return await self._move(job, room, job.agent) and \
                await self._move(job, room, job.far)
        second = job.second = self.conferences.hold_room(Conference(
            number=f"{job.room_number}.far", name="whisper", max_members=2))
        await self.conferences.open_room(second)
        return await self._move(job, room, job.agent) and \
            await self._copy(job, room, job.far) and \
            await self._move(job, second, job.far) and \
            await self._copy(job, second, job.agent)

    async def _copy(self, job: Supervised, room: Room, leg_id: str) -> bool:
        """A party of `room` that carries what leg `leg_id` sends."""
        media, callid = self.b2bua.media, job.bridge.call.callid
        if media is None or job.over.is_set():
            return False
        offered = await media.subscribe(callid, leg_id)
        if offered is None:
            return False
        tag, sdp = offered
        job.copies.append(tag)
        engine = engine_side(sdp)
        if engine is None:
            return False
        party = await self.conferences.join_engine(room, engine, f"copy {leg_id}")
        job.parties.append(party)
        return await media.subscribed(callid, tag, mixer_answer(
            sdp, party.janus_rtp, engine.payload_type, direction="recvonly"))

    async def _move(self, job: Supervised, room: Room, leg_id: str) -> bool:
        """Leg `leg_id` speaks to `room` and hears its mix (instead of the other leg)."""
        media, bridge = self.b2bua.media, job.bridge
        side = _side_of(bridge, leg_id)
        if media is None or side is None or job.over.is_set() or bridge.ended:
            return False
        callid, tag = bridge.call.callid, _mix_tag(leg_id)
        to_mixer = await media.offer(callid, leg_id, tag, bridge.sdp.get(side, b""))
        engine = engine_side(to_mixer)
        if engine is None:
            return False
        party = await self.conferences.join_engine(room, engine, f"leg {leg_id}")
        job.parties.append(party)
        job.moved.append(leg_id)
        answer = mixer_answer(to_mixer, party.janus_rtp, engine.payload_type)
        return bool(await media.answer(callid, leg_id, tag, answer))

    async def _end(self, job: Supervised) -> None:
        """Put the monitored call's legs back, drop the copies and the rooms, hang the
        supervisor up."""
        bridge, media = job.bridge, self.b2bua.media
        callid = bridge.call.callid
        if self._by_call.get(callid) is job:
            del self._by_call[callid]
        if job.moved and media is not None and not bridge.ended:
            await self._put_back(bridge)
        if media is not None and media.anchored(callid):
            for tag in job.copies:
                await media.unsubscribe(callid, tag)
        for party in job.parties:
            await self.conferences.leave_engine(party)
        if job.second is not None:
            await self.conferences.close_room(job.second.config.number)
        await self.conferences.close_room(job.room_number)  # (hangs the supervisor up)

    async def _put_back(self, bridge: Bridge) -> None:
        """The pairing the legs had: the caller's offer to the callee, its answer."""
        media = self.b2bua.media
        caller, callee = bridge.leg("a"), bridge.leg("b")
        if media is None or caller is None or callee is None:
            return
        callid = bridge.call.callid
        with contextlib.suppress(Exception):
            await media.offer(callid, caller.id, callee.id, bridge.sdp.get("a", b""))
            await media.answer(callid, caller.id, callee.id, bridge.sdp.get("b", b""))

    def _on_event(self, event: events.DomainEvent) -> None:
        """Either call ended (the monitored one, or the supervisor's): it is over."""
        if not isinstance(event, events.CallEnded):
            return
        callid = event.call.callid
        job = self._by_call.get(callid)
        if job is None:
            job = next((j for j in self._by_call.values()
                        if j.supervisor_callid == callid), None)
        if job is not None:
            job.over.set()

    def _mixer_restarted(self) -> None:
        for job in list(self._by_call.values()):
            job.parties.clear()  # (gone with the mixer)
            job.over.set()


def _side_of(bridge: Bridge, leg_id: str) -> str | None:
    for side in ("a", "b"):
        leg = bridge.leg(side)  # type: ignore[arg-type]
        if leg is not None and leg.id == leg_id:
            return side
    return None
