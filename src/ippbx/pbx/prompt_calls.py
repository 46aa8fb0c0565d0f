"""Prompt calls: ippbx calls an extension or an external number and plays it prompts.

This is the vendors' `extension/playprompt` and `outbound/playprompt`. The call has one
party: ippbx INVITEs it without SDP (auto-answer headers on request), and once it answers
with its offer, the media engine answers on ippbx's behalf (`offer` from the party, then
an `answer` from the engine's own "player" side, whose RTP goes nowhere), so the party's
audio is anchored and the engine can play to it. The prompts (`[media] prompts`/NAME.wav,
or else ippbx's built-in NAME, `ippbx.media.prompts`; several joined by `+`) are played
one after the other; when the last one has ended, a `PlayPromptEnd` report names them,
and ippbx hangs up. DTMF the party sends meanwhile comes as `DTMF` reports like any
call's.

Prompt names, as the vendors define them: a file name without extension, with at least
one letter, no `+` (the separator), and here no path either.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

from ippbx.config import Trunk
from ippbx.media.prompts import find_prompt
from ippbx.pbx.b2bua import B2BUA, Bridge
from ippbx.pbx.calls import Leg, LegKind, LegStatus
from ippbx.pbx.control import AUTO_ANSWER_HEADERS
from ippbx.pbx.dialplan import Refused, ToTrunks
from ippbx.sip.message import Request
from ippbx.sip.wire import Peer

log = logging.getLogger(__name__)

PLAYER = "ippbx-player"  # the engine-side tag of a prompt call's other party
_NAME = re.compile(r"[A-Za-z0-9_.-]*[A-Za-z][A-Za-z0-9_.-]*")
_RTPMAP = re.compile(rb"^a=rtpmap:(\d+) ([^/\s]+)/(\d+)", re.MULTILINE)
TAIL = 0.2  # seconds after a prompt's stated end before the next (or the hang-up)


class PromptError(Exception):
    """A prompt call cannot be placed; `reason` is one of the constants."""

    NO_PROMPT = "no such prompt"
    NO_MEDIA = "no media engine"
    NO_EXTENSION = "no extension"
    NOT_PERMITTED = "not permitted"
    NO_ROUTE = "no route"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def prompt_files(directory: Path, prompts: str) -> list[Path]:
    """The WAV of each `+`-joined prompt name: the user's in `directory`, else the built-in
    one (PromptError NO_PROMPT for a bad name or neither file)."""
    files = []
    for name in prompts.split("+"):
        if not _NAME.fullmatch(name):
            raise PromptError(PromptError.NO_PROMPT)
        user = directory / f"{name}.wav"  # (as before: any name _NAME takes)
        path = user if user.is_file() else find_prompt(name, directory)
        if path is None:
            raise PromptError(PromptError.NO_PROMPT)
        files.append(path.resolve())
    return files


def player_answer(offer: bytes) -> bytes:
    """The player's SDP answer to the engine's `offer`: the offer's first audio codec
    (and telephone-event, so DTMF keeps flowing), RTP to the discard port."""
    maps = [(int(pt), name.decode(), rate.decode()) for pt, name, rate in _RTPMAP.findall(offer)]
    audio = [m for m in maps if m[1].lower() != "telephone-event"][:1] or [(0, "PCMU", "8000")]
    events = [m for m in maps if m[1].lower() == "telephone-event"][:1]
    chosen = audio + events
    lines = [
        "v=0", "o=ippbx 1 1 IN IP4 127.0.0.1", "s=ippbx", "c=IN IP4 127.0.0.1", "t=0 0",
        "m=audio 9 RTP/AVP " + " ".join(str(pt) for pt, _, _ in chosen),
        *(f"a=rtpmap:{pt} {name}/{rate}" for pt, name, rate in chosen),
        "a=sendrecv",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


class PromptCalls:
    """Places prompt calls through the B2BUA (one task per call)."""

    def __init__(self, b2bua: B2BUA, prompts: str | Path) -> None:
        self.b2bua = b2bua
        self.registry = b2bua.registry
        self.directory = Path(prompts)

    def to_extension(self, extension: str, prompts: str, autoanswer: bool = False) -> str:
        """Call extension `extension` and play it `prompts`; the new call's callid."""
        b2bua = self.b2bua
        files = self._ready(prompts)
        if extension not in b2bua.extensions:
            raise PromptError(PromptError.NO_EXTENSION)
        contacts = b2bua.registrar.contacts(extension)
        if not contacts:
            raise PromptError(PromptError.NO_EXTENSION)
        binding = contacts[0]
        leg = Leg(LegKind.EXTENSION, "ippbx", extension, extension=extension, outgoing=True)
        return self._start(leg, binding.contact, binding.source, None, files, prompts,
                           autoanswer)

    def to_number(self, number: str, prompts: str) -> str:
        """Call `number` (route prefix included) out through the outbound route that
        takes it, and play it `prompts`; the new call's callid."""
        b2bua = self.b2bua
        files = self._ready(prompts)
        destination = b2bua.dialplan.route_outbound("", number)
        if isinstance(destination, Refused):
            raise PromptError(PromptError.NOT_PERMITTED if destination.sip_status == 403
                              else PromptError.NO_ROUTE)
        found = b2bua.free_trunk(destination)
        if found is None:
            raise PromptError(PromptError.NO_ROUTE)
        trunk, dest, uri = found
        leg = Leg(LegKind.TRUNK, trunk.callerid or "ippbx", destination.number,
                  trunk=trunk.name, outgoing=True)
        return self._start(leg, uri, dest, trunk, files, prompts, False, destination)

    def _ready(self, prompts: str) -> list[Path]:
        if self.b2bua.media is None:
            raise PromptError(PromptError.NO_MEDIA)
        return prompt_files(self.directory, prompts)

    def _start(self, leg: Leg, uri: str, dest: Peer, trunk: Trunk | None, files: list[Path],
               prompts: str, autoanswer: bool, route: ToTrunks | None = None) -> str:
        b2bua = self.b2bua
        call = self.registry.start_call(leg, leg.to_number)
        if route is not None:
            self.registry.note(call, outbound_route=route.route)
        bridge = b2bua.new_bridge(call, None)
        invite = b2bua.build_invite(b"", bridge.content_type, uri, dest, leg.from_number,
                                    leg.to_number, 70, trunk)
        if autoanswer:
            for name, value in AUTO_ANSWER_HEADERS:
                invite.add(name, value)
        b2bua.spawn(self._run(bridge, invite, dest, trunk, files, prompts))
        return call.callid

    async def _run(self, bridge: Bridge, invite: Request, dest: Peer, trunk: Trunk | None,
                   files: list[Path], prompts: str) -> None:
        b2bua, call = self.b2bua, bridge.call
        leg = call.caller
        try:
            response = await b2bua.call_first_party(bridge, invite, dest, trunk)
            dialog = bridge.a_dialog
            if response is None or dialog is None:
                return
            bridge.sdp["a"] = response.body
            answer = await self._anchor(bridge, response.body)
            b2bua.ack(dialog, answer, [("Content-Type", "application/sdp")] if answer else ())
            self.registry.set_status(leg.id, LegStatus.TALKING)
            self.registry.note(call, answered=leg.answered)  # (its only party answered)
            played = await self._play(bridge, leg, files)
            if bridge.ended:
                return
            if played:
                self.registry.prompt_ended(call.callid, leg.id, prompts)
            else:  # (no PlayPromptEnd for prompts nobody heard)
                log.warning("prompt call %s: the media engine could not play %s",
                            call.callid, prompts)
            b2bua.teardown(bridge, 200 if played else 503)
        except asyncio.CancelledError:
            b2bua.teardown(bridge, 503)
            raise
        except Exception:
            log.exception("prompt call %s failed", call.callid)
            b2bua.teardown(bridge, 500)

    async def _anchor(self, bridge: Bridge, offer: bytes) -> bytes:
        """The answer to the party's offer, with its media anchored on the engine."""
        media = self.b2bua.media
        if media is None or not offer:
            return b""
        callid, party = bridge.call.callid, bridge.call.caller.id
        to_player = await media.offer(callid, party, PLAYER, offer)
        return await media.answer(callid, party, PLAYER, player_answer(to_player))

    async def _play(self, bridge: Bridge, leg: Leg, files: list[Path]) -> bool:
        """Play `files` to `leg` one after the other: False if the engine could not
        (the call then ends), True once all have played or the party hung up."""
        media = self.b2bua.media
        for path in files:
            if media is None:
                return False
            if bridge.ended:
                return True
            seconds = await media.play(bridge.call.callid, leg.id, str(path))
            if seconds is None:
                return False
            # (until it has played, or the party hangs up: finish() aborts the bridge)
            await bridge.pause(seconds + TAIL)
        return True
