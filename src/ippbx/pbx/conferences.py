"""Conference rooms (`[[conferences]]`): callers to a room's number talk together, mixed
by Janus AudioBridge (`ippbx.media.janus`).

The media path of a member: its phone ↔ rtpengine ↔ Janus. The caller is answered by
ippbx against the engine's "player" side, as for an IVR (its audio anchored: prompts
are played into it, its DTMF comes back as rtpengine's events or SIP INFO, NAT and
recording work as for any call). To join the room, the engine is asked again for its
side facing the player (a re-offer of the caller's SDP keeps its ports), that address
joins the AudioBridge room as a plain-RTP participant (PCMU or PCMA, as the phone
offered), and Janus's address for that participant becomes the player side's answer.
Janus then sends each member the mix of the others (never its own voice back); a prompt
ippbx plays to a member (rtpengine's `play media`) covers the mix while it lasts.
Pointing phones at Janus directly would save a hop but lose all of that, and ippbx would
have to move each phone with a re-INVITE to join or leave.

A call to a room:

- PIN: with `pin` or `moderator_pin` set, the caller is asked for it (three tries,
  ended by `#`); the moderator PIN makes a moderator. A room with only a moderator PIN
  lets participants in with `#` alone. Members called in (`conference/add_member`) are
  not asked.
- `max_members` members at most: the next caller hears "full" and is hung up (480).
- `wait_for_moderator`: until a moderator is in, participants hear music on hold and are
  shown as `HOLD`; they join when one arrives.
- Joining: the member hears "you are the only person" when alone; the others hear a
  short high tone, and a low one when a member leaves (in rooms of up to ten others:
  each tone is a `play media` per member).
- A member is listed (`live`) once it waits for a moderator or is in the mixer.
- Keys in the room (`*` then a key within 3 s): `*1` mutes / unmutes oneself; a
  moderator's `*2` mutes every other participant, `*3` unmutes them, `*9` removes the
  participant who joined last.
- `record = true`: Janus records the room's mix, from its first member to its last, as
  a WAV in `[media] recordings`; each member's CDR names it (`recording/download`).
- The API: `mute` / `unmute` / `kick` members by number, `invite` numbers (extensions,
  or outside numbers through the outbound routes open to all extensions), `live()` the
  rooms in session and their members.

A room exists in Janus while it has members; the last one leaving destroys it. When the
mixer restarts (its rooms are lost), every room with members is made again and its
members join it again; a member that cannot is hung up. With no mixer (Janus not
installed, or `[media] janus = "none"`), calls to rooms fail 480, as the other
applications do without the media engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ippbx.config import Conference
from ippbx.media.janus import JanusClient, JanusError, Participant, RtpAddress
from ippbx.media.prompts import find_prompt
from ippbx.pbx.b2bua import B2BUA, Bridge
from ippbx.pbx.calls import LegStatus
from ippbx.pbx.dialplan import ToConference
from ippbx.pbx.prompt_calls import PLAYER

if TYPE_CHECKING:
    from ippbx.pbx.applications import Applications
    from ippbx.pbx.control import CallControl

log = logging.getLogger(__name__)

PIN_TRIES = 3
PIN_SECONDS = 10.0
MENU_SECONDS = 3.0  # for the key after `*`
MUSIC_TIMES = 1000  # the music on hold over and over while waiting for a moderator
JOIN_TONE, LEAVE_TONE = "conf-join", "conf-leave"
# a join or leave tone is one `play media` per member: rooms bigger than this are silent
# about comings and goings (a 100-member room filling at 10/s would ask rtpengine for
# 1,000 plays a second), and at most this many tones are played at once
TONES_UP_TO = 10
TONES_AT_ONCE = 8
# the codecs a member may talk to the mixer with: RTP payload type → Janus's name
MIXER_CODECS = {0: "pcmu", 8: "pcma"}

_CONNECTION = re.compile(rb"^c=IN IP[46] (\S+)", re.M)
_AUDIO = re.compile(rb"^m=audio (\d+) RTP/AVP((?: \d+)+)", re.M)


class ConferenceError(Exception):
    """A conference request that cannot be carried out; `reason` is one of these."""

    NO_ROOM = "no such room"
    NO_MEMBER = "no such member"
    NO_MIXER = "no mixer"
    TOO_MANY = "more numbers than the room takes"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def engine_side(sdp: bytes) -> RtpAddress | None:
    """Where the engine receives the player side's RTP, and its first audio codec that
    the mixer takes (None: no audio line, or no codec in common)."""
    conn, audio = _CONNECTION.search(sdp), _AUDIO.search(sdp)
    if conn is None or audio is None:
        return None
    for pt in (int(p) for p in audio.group(2).split()):
        if pt in MIXER_CODECS:
            return RtpAddress(conn.group(1).decode(), int(audio.group(1)), pt)
    return None


def mixer_answer(offer: bytes, mixer: RtpAddress, payload_type: int,
                 direction: str = "sendrecv") -> bytes:
    """The player side's SDP answer to the engine: RTP to and from the mixer's port for
    this member, the one codec, and telephone-event if offered (the keys a member
    presses keep reaching the engine's detector; Janus drops them). `recvonly` answers
    a copy of a party (the engine only sends)."""
    events = re.search(rb"^a=rtpmap:(\d+) telephone-event/8000", offer, re.M)
    pts = [str(payload_type)] + ([events.group(1).decode()] if events else [])
    name = MIXER_CODECS[payload_type].upper()
    family = "IP6" if ":" in mixer.ip else "IP4"
    lines = [
        "v=0", f"o=ippbx 1 1 IN {family} {mixer.ip}", "s=ippbx", f"c=IN {family} {mixer.ip}",
        "t=0 0", f"m=audio {mixer.port} RTP/AVP {' '.join(pts)}",
        f"a=rtpmap:{payload_type} {name}/8000",
    ]
    if events:
        lines.append(f"a=rtpmap:{pts[1]} telephone-event/8000")
    lines.append(f"a={direction}")
    return ("\r\n".join(lines) + "\r\n").encode()


def room_recording_name(number: str, started: float, mixer_id: int) -> str:
    """The WAV of a room's session: `conference-<number>-<yyyymmdd>-<hhmmss>-<id>.wav`
    (a name `recording/download` serves)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    plain = re.sub(r"[^0-9A-Za-z_.-]", "_", number)
    return f"conference-{plain}-{stamp}-{mixer_id}.wav"


@dataclass(eq=False)
class Member:
    """One caller in a room."""

    bridge: Bridge
    number: str  # the number it is shown by: its extension, or the caller's number
    moderator: bool
    joined: float
    waiting: bool = False  # for a moderator (`HOLD`)
    muted: bool = False
    participant: Participant | None = None  # in the mixer's room

    @property
    def leg_id(self) -> str:
        return self.bridge.call.caller.id

    @property
    def channelid(self) -> str:
        return f"SIP/{self.number}-{self.leg_id}"

    @property
    def status(self) -> str:
        return "HOLD" if self.waiting else "Up"


@dataclass(eq=False)
class Room:
    """A room in session (one member at least)."""

    config: Conference
    mixer_id: int
    members: list[Member] = field(default_factory=list)
    opened: bool = False  # the mixer's room exists
    held: bool = False  # a supervision's: quiet (no prompts nor tones), kept until closed
    recording: str = ""  # the WAV of its mix, in [media] recordings (`record = true`)
    moderator_in: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # making it in the mixer

    def moderators(self) -> list[Member]:
        return [m for m in self.members if m.moderator]


@dataclass(frozen=True)
class MemberState:
    number: str
    channelid: str
    status: str  # Up / HOLD
    moderator: bool
    muted: bool
    callid: str


@dataclass(frozen=True)
class RoomState:
    number: str
    name: str
    members: list[MemberState]


class Conferences:
    """Runs the calls to conference rooms (`Applications.conferences`)."""

    def __init__(self, b2bua: B2BUA, rooms: Sequence[Conference], prompts: Path | str,
                 mixer: Callable[[], JanusClient | None],
                 recordings: Path | str = "recordings") -> None:
        self.b2bua = b2bua
        self.recordings = Path(recordings)
        self.registry = b2bua.registry
        self.prompts = Path(prompts)
        self.mixer = mixer  # the mixer's client now (None: no mixer, or not running)
        self.control: CallControl | None = None  # places the calls of `invite`
        self.config: dict[str, Conference] = {c.number: c for c in rooms}
        self.rooms: dict[str, Room] = {}  # in session
        self.held: dict[str, Conference] = {}  # the rooms supervisions hold (not listed)
        self.on_restart: list[Callable[[], object]] = []  # after the mixer came back
        self._ids = itertools.count(1001)
        self._tasks: set[asyncio.Task[None]] = set()
        self._tones = asyncio.Semaphore(TONES_AT_ONCE)

    def reconfigure(self, rooms: Sequence[Conference]) -> None:
        """New settings apply to the next callers; a room deleted ends no call."""
        self.config = {c.number: c for c in rooms}
        for number, room in self.rooms.items():
            if number in self.config:
                room.config = self.config[number]

    # -- the API ------------------------------------------------------------------------
    def live(self, numbers: Sequence[str] | None = None) -> list[RoomState]:
        """The rooms in session (those of `numbers`, or all), their members in the
        order they came."""
        out: list[RoomState] = []
        for number, room in self.rooms.items():
            if room.held or (numbers is not None and number not in numbers):
                continue
            out.append(RoomState(number, room.config.name, [
                MemberState(m.number, m.channelid, m.status, m.moderator, m.muted,
                            m.bridge.call.callid)
                for m in room.members if m.waiting or m.participant is not None]))
        return out

    def _room(self, number: str) -> Room:
        if number not in self.config:
            raise ConferenceError(ConferenceError.NO_ROOM)
        room = self.rooms.get(number)
        if room is None:
            raise ConferenceError(ConferenceError.NO_MEMBER)
        return room

    def _members(self, number: str, members: Sequence[str]) -> list[Member]:
        room = self._room(number)
        found = [m for m in room.members if m.number in members]
        if not found:
            raise ConferenceError(ConferenceError.NO_MEMBER)
        return found

    def mute(self, number: str, members: Sequence[str], on: bool) -> int:
        """Mute (or unmute) the members of room `number` shown by these numbers: the
        others stop (or start again) hearing them; how many members that was."""
        room = self._room(number)
        found = self._members(number, members)
        for member in found:
            member.muted = on  # (shown at once; the mixer is told in the background)
            self._spawn(self._set_muted(room, member, on))
        return len(found)

    def invite(self, number: str, numbers: Sequence[str]) -> list[str]:
        """Call `numbers` into room `number`: extensions (registered), or outside numbers
        through the outbound routes open to every extension; each joins once it answers,
        without a PIN. All are checked before any is called (no more numbers than the
        room's `max_members`); the new calls' ids."""
        config = self.require_room(number)
        if len(dict.fromkeys(numbers)) > config.max_members:  # (one request, one room)
            raise ConferenceError(ConferenceError.TOO_MANY)
        control = self.control
        if control is None:
            raise ConferenceError(ConferenceError.NO_MIXER)
        target = ToConference(number, invited=True)
        plans: list[tuple[str, bool]] = []
        for wanted in dict.fromkeys(numbers):
            if wanted in self.b2bua.extensions:
                control.require_extension(wanted)  # (ControlError: not registered)
                plans.append((wanted, True))
            else:
                plans.append((wanted, False))
        callids: list[str] = []
        for wanted, extension in plans:
            if extension:
                callids.append(control.dial(wanted, number, destination=target))
            else:
                callids.append(control.dial_number(wanted, number, local=target))
        return callids

    def kick(self, number: str, members: Sequence[str]) -> int:
        """Hang up the members of room `number` shown by these numbers; how many."""
        found = self._members(number, members)
        for member in found:
            self._remove(member)
        return len(found)

    def require_room(self, number: str) -> Conference:
        config = self.config.get(number)
        if config is None:
            raise ConferenceError(ConferenceError.NO_ROOM)
        if self.mixer() is None or self.b2bua.media is None:
            raise ConferenceError(ConferenceError.NO_MIXER)
        return config

    # -- a caller in a room -------------------------------------------------------------
    async def run(self, apps: Applications, bridge: Bridge, destination: ToConference,
                  max_forwards: int, depth: int) -> int | None:
        config = self.config.get(destination.number) or self.held.get(destination.number)
        if config is None:
            return 404
        callid = bridge.call.callid
        if self.mixer() is None or self.b2bua.media is None:
            log.info("call %s: conference %s needs the mixer (janus)", callid, config.number)
            return 480
        status = await apps.enter(bridge)
        if status is not None:
            return status
        call = bridge.call
        self.registry.note(call, application=f"conference:{config.number}")
        moderator = False
        if not destination.invited and (config.pin or config.moderator_pin):
            role = await self._pin(apps, bridge, config)
            if role is None:
                return await self._goodbye(apps, bridge, "goodbye")
            moderator = role
        room = self.rooms.get(config.number)
        if room is not None and len(room.members) >= config.max_members:
            log.info("call %s: conference %s is full", callid, config.number)
            return await self._goodbye(apps, bridge, "conf-full")
        if bridge.ended or bridge.gave_up:
            return None
        if room is None:
            room = self.rooms[config.number] = Room(config, next(self._ids))
        caller = call.caller
        # (a member ippbx called in is shown by the number it called)
        shown = caller.extension or (caller.to_number if bridge.originated
                                     else caller.from_number)
        member = Member(bridge, shown, moderator, time.time())
        room.members.append(member)
        if moderator:
            room.moderator_in.set()
        log.info("call %s: %s joins conference %s%s", callid, shown, config.number,
                 " (moderator)" if moderator else "")
        try:
            await self._take_part(apps, room, member)
        finally:
            await self._leave(room, member)
        return None

    async def _goodbye(self, apps: Applications, bridge: Bridge, prompt: str) -> None:
        """Say `prompt` to a caller who does not join, and hang it up."""
        if not (bridge.ended or bridge.gave_up):
            await apps.play(bridge, [prompt], keys=False)
        if not bridge.ended:
            self.b2bua.teardown(bridge, 200)

    async def _pin(self, apps: Applications, bridge: Bridge,
                   config: Conference) -> bool | None:
        """Ask for the PIN: True for a moderator, False for a participant, None when
        the caller did not get it right (or hung up)."""
        for _ in range(PIN_TRIES):
            keyed = await apps.ask(bridge, "conf-enter-pin")
            if bridge.ended or bridge.gave_up:
                return None
            if config.moderator_pin and keyed == config.moderator_pin:
                return True
            if keyed == config.pin:  # ("" with only a moderator PIN: `#` alone)
                return False
            await apps.play(bridge, ["conf-wrong-pin"], keys=False)
        return None

    async def _take_part(self, apps: Applications, room: Room, member: Member) -> None:
        bridge = member.bridge
        config = room.config
        if config.wait_for_moderator and not member.moderator and not room.moderators():
            member.waiting = True
            self.registry.set_status(bridge.call.caller.id, LegStatus.WAIT)
            await self._wait_for_moderator(apps, room, member)
            if bridge.ended or bridge.gave_up:
                return
        member.waiting = False
        self.registry.set_status(bridge.call.caller.id, LegStatus.TALKING)
        if not await self._join(room, member):
            self._remove(member, 503)
            return
        others = [m for m in room.members if m is not member and m.participant]
        if room.held:  # (a supervisor: no prompt, no tone, no keys)
            await bridge.abort_event().wait()
            return
        if not others:
            await apps.play(bridge, ["conf-only"], keys=False)
        self._tone(others, JOIN_TONE)
        await self._keys(apps, room, member)

    async def _wait_for_moderator(self, apps: Applications, room: Room,
                                  member: Member) -> None:
        """Music until a moderator is in (or the caller hangs up)."""
        bridge, media = member.bridge, self.b2bua.media
        callid, party = bridge.call.callid, bridge.call.caller.id
        await apps.play(bridge, ["conf-waiting"], keys=False)
        if media is not None and not bridge.ended:
            await media.play(callid, party, media.moh, MUSIC_TIMES)
        arrived = asyncio.ensure_future(room.moderator_in.wait())
        gone = bridge.abort_event().waiter()
        try:
            await asyncio.wait({arrived, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            arrived.cancel()
            bridge.stop_waiting(gone)
        if media is not None and not bridge.ended:
            await media.stop_playing(callid, party)

    async def _join(self, room: Room, member: Member) -> bool:
        """Put the member's audio into the mixer's room (making the room first)."""
        client, media = self.mixer(), self.b2bua.media
        bridge = member.bridge
        call = bridge.call
        if client is None or media is None or bridge.ended:
            return False
        try:
            async with room.lock:  # (the room is made once; the joins run side by side)
                await self._open(client, room)
            to_player = await media.offer(call.callid, call.caller.id, PLAYER,
                                          bridge.sdp.get("a", b""))
            engine = engine_side(to_player)
            if engine is None or bridge.ended:
                log.info("call %s: no codec the mixer takes", call.callid)
                return False
            participant = await client.join(room.mixer_id, engine, display=member.number,
                                            muted=member.muted)
            if bridge.ended:
                await client.leave(participant)
                return False
            member.participant = participant
            if room.recording:  # (the member's CDR names the room's recording)
                self.registry.note(call, recording=room.recording)
            answer = mixer_answer(to_player, participant.janus_rtp, engine.payload_type)
            await media.answer(call.callid, call.caller.id, PLAYER, answer)
        except JanusError as exc:
            log.warning("call %s: could not join conference %s (%s)", call.callid,
                        room.config.number, exc)
            return False
        return True

    async def _open(self, client: JanusClient, room: Room) -> None:
        if room.opened:
            return
        record_file = None
        if room.config.record and not room.held:
            name = room_recording_name(room.config.number, time.time(), room.mixer_id)
            self.recordings.mkdir(parents=True, exist_ok=True)
            record_file = str(self.recordings.resolve() / name)
            room.recording = name
        await client.create_room(room.mixer_id,
                                 description=room.config.name or room.config.number,
                                 record_file=record_file)
        room.opened = True

    # -- rooms a supervision holds (pbx/supervision.py) ----------------------------------
    def hold_room(self, config: Conference) -> Room:
        """A quiet room kept, member or not, until `close_room`; callers invited to its
        number join it. Made in the mixer by `open_room` or its first member's join."""
        room = Room(config, next(self._ids), held=True)
        self.held[config.number] = config
        self.rooms[config.number] = room
        return room

    async def open_room(self, room: Room) -> None:
        """Make `room` in the mixer now (JanusError; ConferenceError NO_MIXER)."""
        client = self.mixer()
        if client is None:
            raise ConferenceError(ConferenceError.NO_MIXER)
        async with room.lock:
            await self._open(client, room)

    async def join_engine(self, room: Room, engine: RtpAddress, display: str) -> Participant:
        """A party of the mixer's room fed from (and feeding) the engine at `engine`."""
        client = self.mixer()
        if client is None:
            raise ConferenceError(ConferenceError.NO_MIXER)
        return await client.join(room.mixer_id, engine, display=display)

    async def leave_engine(self, participant: Participant) -> None:
        client = self.mixer()
        if client is not None:
            with contextlib.suppress(JanusError):
                await client.leave(participant)

    async def close_room(self, number: str) -> None:
        """The end of a held room: its members are hung up, the mixer's room destroyed."""
        self.held.pop(number, None)
        room = self.rooms.pop(number, None)
        if room is None:
            return
        for member in list(room.members):
            self._remove(member)
        client = self.mixer()
        if room.opened and client is not None:
            room.opened = False
            with contextlib.suppress(JanusError):
                await client.destroy_room(room.mixer_id)

    async def _keys(self, apps: Applications, room: Room, member: Member) -> None:
        """The member's keys until it leaves: the `*` menu."""
        bridge = member.bridge
        while not (bridge.ended or bridge.gave_up):
            key = await apps.key(bridge, 3600.0)
            if key != "*":
                continue
            choice = await apps.key(bridge, MENU_SECONDS)
            if choice == "1":
                await self._set_muted(room, member, not member.muted)
                await apps.play(bridge, ["conf-muted" if member.muted else "conf-unmuted"],
                                keys=False)
            elif member.moderator and choice in ("2", "3"):
                for other in room.members:
                    if other is not member and not other.moderator:
                        await self._set_muted(room, other, choice == "2")
                await apps.play(bridge, ["beep"], keys=False)
            elif member.moderator and choice == "9":
                last = [m for m in room.members if m is not member and not m.moderator]
                if last:
                    self._remove(last[-1])
                await apps.play(bridge, ["beep"], keys=False)

    async def _set_muted(self, room: Room, member: Member, on: bool) -> None:
        member.muted = on
        client = self.mixer()
        if member.participant is None or client is None:
            return  # (it joins muted or not, as set)
        try:
            await client.mute(room.mixer_id, member.participant.id, on)
        except JanusError as exc:
            log.warning("conference %s: could not %smute %s (%s)", room.config.number,
                        "" if on else "un", member.number, exc)

    def _remove(self, member: Member, status: int = 200) -> None:
        """Hang the member up (it leaves the room as its call ends)."""
        bridge = member.bridge
        if bridge.ended:
            return
        self.registry.hung_up_by(bridge.call, "api")
        self.b2bua.teardown(bridge, status)

    async def _leave(self, room: Room, member: Member) -> None:
        with contextlib.suppress(ValueError):
            room.members.remove(member)
        client = self.mixer()
        participant, member.participant = member.participant, None
        if participant is not None and client is not None:
            try:
                await client.leave(participant)
            except JanusError as exc:
                log.info("conference %s: leaving the mixer: %s", room.config.number, exc)
        if member.moderator and not room.moderators():
            room.moderator_in.clear()
        if room.held:
            return  # (its holder closes it)
        if not room.members:
            if self.rooms.get(room.config.number) is room:
                del self.rooms[room.config.number]
            if room.opened and client is not None:
                room.opened = False
                try:
                    await client.destroy_room(room.mixer_id)
                except JanusError as exc:
                    log.info("conference %s: destroying the mixer's room: %s",
                             room.config.number, exc)
            return
        if participant is not None:
            self._tone([m for m in room.members if m.participant], LEAVE_TONE)

    def _tone(self, members: Sequence[Member], name: str) -> None:
        media = self.b2bua.media
        path = find_prompt(name, self.prompts)
        if media is None or path is None or len(members) > TONES_UP_TO:
            return
        for member in members:
            self._spawn(self._play_tone(member, str(path)))

    async def _play_tone(self, member: Member, path: str) -> None:
        media, bridge = self.b2bua.media, member.bridge
        async with self._tones:
            if media is not None and not bridge.ended:
                await media.play(bridge.call.callid, bridge.call.caller.id, path)

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the mixer came back -------------------------------------------------------------
    def mixer_restarted(self) -> None:
        """Every room of the mixer is gone: make the rooms in session again, their
        members join again (a member that cannot is hung up)."""
        rooms = [room for room in self.rooms.values() if not room.held]
        if rooms:
            log.warning("conference mixer restarted: rebuilding %d room(s)", len(rooms))
        for room in rooms:
            room.opened = False
            self._spawn(self._rebuild(room))
        for room in self.rooms.values():
            room.opened = False
        for hook in self.on_restart:  # (the supervisions end theirs)
            hook()

    async def _rebuild(self, room: Room) -> None:
        for member in list(room.members):
            if member.participant is None or member.bridge.ended:
                continue
            member.participant = None
            if not await self._join(room, member):
                self._remove(member, 503)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
