"""Anchored media: every SDP that crosses a bridged call goes through the media engine.

With a media engine (rtpengine), neither party of a call sees the other's address: each
sees the engine's, and the engine relays the RTP (learning each phone's real source
address, so a phone behind NAT gets audio). The B2BUA tells the anchor each time an SDP
crosses the bridge, as what it is in the offer/answer model (RFC 3264): an `offer` from
one leg to the other, or the `answer` of one leg to the other's offer. The anchor hands
it to the engine (`offer` / `answer` commands: the engine's call is ippbx's call id, each
leg's tag its leg id) and returns the SDP to send on.

On top of that, what a PBX does with the audio of a call: music on hold for a held party
(`play media`, looped until taken off hold), mute (`block media`: what a party says no
longer reaches the call), prompts. `end(call)` deletes the engine's call.

A failing engine does not fail the call: the SDP passes through untouched (the parties
then talk end to end, as without an engine) and the call is marked unanchored, so the rest
of its offers and answers pass through too. When the engine restarts, every call anchored
on the dead one has lost its audio: `lost()` gives their ids, for the PBX to hang up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

log = logging.getLogger(__name__)

SDP = "application/sdp"
# play media's loop: the held party hears the music until taken off hold
MOH_REPEATS = 1_000_000


class MediaControl(Protocol):
    """What the anchor needs of the engine's control client (`ippbx.media.rtpengine`)."""

    async def offer(self, call_id: str, from_tag: str, sdp: bytes, *,
                    to_tag: str | None = None) -> bytes: ...

    async def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: bytes) -> bytes: ...

    async def delete(self, call_id: str, from_tag: str | None = None) -> None: ...

    async def play_media(self, call_id: str, from_tag: str, file: str,
                         repeat_times: int | None = None) -> int: ...

    async def stop_media(self, call_id: str, from_tag: str) -> None: ...

    async def start_recording(self, call_id: str) -> None: ...

    async def stop_recording(self, call_id: str) -> None: ...

    async def subscribe_request(self, call_id: str, from_tag: str) -> dict[str, object]: ...

    async def subscribe_answer(self, call_id: str, to_tag: str, sdp: bytes) -> None: ...

    async def unsubscribe(self, call_id: str, to_tag: str) -> None: ...

    async def block_media(self, call_id: str, from_tag: str) -> None: ...

    async def unblock_media(self, call_id: str, from_tag: str) -> None: ...


DELETE_TRIES = 3  # an engine call's delete, asked this many times at most
DELETE_RETRY_SECONDS = 2.0


class MediaAnchor:
    """The calls whose media ippbx anchors on the engine, and what it does with it."""

    def __init__(self, control: MediaControl, moh: str,
                 error_types: tuple[type[BaseException], ...] = (Exception,),
                 repeat: int = MOH_REPEATS,
                 available: Callable[[], bool] = lambda: True) -> None:
        self.control = control
        # is the engine up? (not while it is being restarted: a call set up meanwhile
        # keeps its SDP end to end rather than wait for an engine that is not there)
        self.available = available
        self.moh = moh  # the WAV a held party hears
        self.repeat = repeat  # times the music is played over (until off hold)
        self._errors = error_types
        self._anchored: set[str] = set()  # call ids with an engine call
        self._unanchored: set[str] = set()  # calls whose engine failed them: passthrough
        self._muted: set[tuple[str, str]] = set()  # (call id, leg id) muted by the API
        self._inflight: dict[str, int] = {}  # call id → its offers out to the engine
        self._gone: set[str] = set()  # calls that ended with an offer out
        self._recorded: dict[str, str] = {}  # call id → its recording's name
        self._moh_order: dict[str, asyncio.Lock] = {}  # call id → its hold music changes
        # a recorded call's engine call is gone (its pcap complete): (call id, name)
        self.on_recorded: Callable[[str, str], None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.failures = 0  # engine commands that failed (each logged)

    # -- offer / answer -----------------------------------------------------------------
    async def offer(self, call_id: str, offerer: str, answerer: str | None, sdp: bytes,
                    content_type: str = SDP) -> bytes:
        """The SDP `offerer` (a leg id) offers `answerer`, as `answerer` must see it."""
        if not self._applies(call_id, sdp, content_type):
            return sdp
        if call_id not in self._anchored and not self.available():
            self._unanchored.add(call_id)
            return sdp
        out = await self._sdp_command(call_id, "offer", self.control.offer(
            call_id, offerer, sdp, to_tag=answerer))
        if out is None:  # (ended meanwhile: nothing to relay; or failed: as it is)
            return sdp if call_id in self._unanchored else b""
        self._anchored.add(call_id)
        return out

    async def answer(self, call_id: str, offerer: str, answerer: str, sdp: bytes,
                     content_type: str = SDP) -> bytes:
        """`answerer`'s answer to `offerer`'s offer, as `offerer` must see it; nothing
        (b"") when no offer of the call went through the engine: an SDP that answers
        nothing (early media a callee shows before any offer) would give `offerer` the
        other party's own address."""
        if not self._applies(call_id, sdp, content_type):
            return sdp
        if call_id not in self._anchored:
            return b""
        out = await self._sdp_command(call_id, "answer", self.control.answer(
            call_id, offerer, answerer, sdp))
        if out is None:
            return sdp if call_id in self._unanchored else b""
        return out

    async def _sdp_command(self, call_id: str, what: str,
                           command: Awaitable[bytes]) -> bytes | None:
        """Run an offer or an answer: the engine's SDP; None when the call ended
        meanwhile (nothing to relay) or the engine failed (the call is unanchored)."""
        self._inflight[call_id] = self._inflight.get(call_id, 0) + 1
        error: BaseException | None = None
        out = b""
        try:
            out = await command
        except self._errors as exc:
            error = exc
        finally:
            left = self._inflight.pop(call_id) - 1
            if left:
                self._inflight[call_id] = left
        if call_id in self._gone:  # the call ended while this was out
            if not left:  # (an offer may have made the engine's call anew)
                self._gone.discard(call_id)
                self._spawn(self._delete(call_id))
            return None
        if error is not None:
            self._failed(call_id, what, error)
            return None
        return out

    def _applies(self, call_id: str, sdp: bytes, content_type: str) -> bool:
        return bool(sdp) and call_id not in self._unanchored \
            and content_type.partition(";")[0].strip().lower() == SDP

    def _failed(self, call_id: str, what: str, exc: BaseException) -> None:
        self.failures += 1
        log.warning("media engine: %s for call %s failed (%s); its media goes end to end",
                    what, call_id, exc)
        self._unanchored.add(call_id)

    def anchored(self, call_id: str) -> bool:
        return call_id in self._anchored

    # -- what a PBX does with the audio -------------------------------------------------
    async def hold_music(self, call_id: str, held: str, holder: str | None, on: bool) -> bool:
        """Start (or stop) the music on hold the party `held` (a leg id) hears instead of
        `holder` (whose audio is kept from it meanwhile, unless muted anyway)."""
        if call_id not in self._anchored or not self.moh:
            return False
        # in the order asked: a hold and an unhold at once must not cross at the engine
        lock = self._moh_order.setdefault(call_id, asyncio.Lock())
        try:
            async with lock:
                if on:
                    if holder is not None:
                        await self.control.block_media(call_id, holder)
                    await self.control.play_media(call_id, held, self.moh, self.repeat)
                else:
                    await self.control.stop_media(call_id, held)
                    if holder is not None and (call_id, holder) not in self._muted:
                        await self.control.unblock_media(call_id, holder)
        except self._errors as exc:
            log.warning("media engine: music on hold %s for %s failed (%s)",
                        "start" if on else "stop", held, exc)
            return False
        return True

    async def play(self, call_id: str, party: str, file: str,
                   times: int = 1) -> float | None:
        """Play the WAV `file` to `party` (`times` over); how long it lasts once
        (seconds), None if the engine could not."""
        if call_id not in self._anchored:
            return None
        try:
            return await self.control.play_media(call_id, party, file, times) / 1000
        except self._errors as exc:
            log.warning("media engine: playing %s to %s failed (%s)", file, party, exc)
            return None

    async def stop_playing(self, call_id: str, party: str) -> None:
        """Stop what is being played to `party` (before what is played next)."""
        if call_id in self._anchored:
            await self._quietly(self.control.stop_media(call_id, party))

    def stop_recording(self, call_id: str) -> None:
        """Record no more of the call (what was recorded is kept, made into the
        recording when the call ends)."""
        if call_id in self._recorded:
            self._spawn(self._quietly(self.control.stop_recording(call_id)))

    async def _quietly(self, command: Awaitable[None]) -> None:
        try:
            await command
        except self._errors as exc:
            log.debug("media engine: %s", exc)

    async def mute(self, call_id: str, party: str, on: bool) -> bool:
        """Stop (or let again) what `party` says reaching the call."""
        if call_id not in self._anchored:
            return False
        try:
            if on:
                self._muted.add((call_id, party))
                await self.control.block_media(call_id, party)
            else:
                self._muted.discard((call_id, party))
                await self.control.unblock_media(call_id, party)
        except self._errors as exc:
            log.warning("media engine: %s of %s failed (%s)", "mute" if on else "unmute",
                        party, exc)
            return False
        return True

    def record(self, call_id: str, name: str) -> bool:
        """Record the call (both parties) as `name`, from now to its end."""
        if call_id not in self._anchored or call_id in self._recorded:
            return False
        self._recorded[call_id] = name
        self._spawn(self._start_recording(call_id))
        return True

    async def _start_recording(self, call_id: str) -> None:
        try:
            await self.control.start_recording(call_id)
        except self._errors as exc:
            log.warning("media engine: recording call %s failed (%s)", call_id, exc)
            self._recorded.pop(call_id, None)

    async def subscribe(self, call_id: str, party: str) -> tuple[str, bytes] | None:
        """A copy of what `party` sends, for a listener: (the subscription's tag, the
        SDP offer to make the listener), None if the engine could not."""
        if call_id not in self._anchored:
            return None
        try:
            offered = await self.control.subscribe_request(call_id, party)
        except self._errors as exc:
            log.warning("media engine: listening to %s failed (%s)", party, exc)
            return None
        tag, sdp = offered.get("to-tag"), offered.get("sdp")
        if not isinstance(tag, str) or not isinstance(sdp, bytes) or not tag:
            return None
        return tag, sdp

    async def subscribed(self, call_id: str, tag: str, sdp: bytes) -> bool:
        """The listener's answer to the subscription `tag`'s offer: audio flows."""
        try:
            await self.control.subscribe_answer(call_id, tag, sdp)
        except self._errors as exc:
            log.warning("media engine: the listener's answer failed (%s)", exc)
            return False
        return True

    async def unsubscribe(self, call_id: str, tag: str) -> None:
        try:
            await self.control.unsubscribe(call_id, tag)
        except self._errors as exc:
            log.debug("media engine: unsubscribe %s failed (%s)", tag, exc)

    # -- the end of calls -----------------------------------------------------------------
    def end(self, call_id: str) -> None:
        """The call is over: delete its engine call (in the background)."""
        self._unanchored.discard(call_id)
        self._moh_order.pop(call_id, None)
        if call_id in self._inflight:
            self._gone.add(call_id)
        if self._muted:
            self._muted = {muted for muted in self._muted if muted[0] != call_id}
        if call_id in self._anchored:
            self._anchored.discard(call_id)
            self._spawn(self._delete(call_id))

    async def _delete(self, call_id: str) -> None:
        # (a busy engine that drops a delete would keep the call, and its ports, for its
        # own timeout: a day for ippbx's rtpengine; asked again a little later)
        for attempt in range(DELETE_TRIES):
            try:
                await self.control.delete(call_id)
                break
            except self._errors as exc:
                # (an engine that answered with an error would only say it again)
                last = attempt == DELETE_TRIES - 1 or getattr(exc, "reason", None) is not None
                log.warning("media engine: delete of call %s failed (%s)%s", call_id, exc,
                            "" if last else "; asking again")
                if last:
                    break
                await asyncio.sleep(DELETE_RETRY_SECONDS)
        name = self._recorded.pop(call_id, None)
        if name is not None and self.on_recorded is not None:
            self.on_recorded(call_id, name)

    def lost(self) -> list[str]:
        """The engine restarted: the calls it anchored have lost their audio (their ids);
        they are forgotten here."""
        lost = sorted(self._anchored)
        self._anchored.clear()
        return lost

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Let the deletes still under way finish (bounded)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)

    @property
    def calls(self) -> int:
        return len(self._anchored)

    def held(self) -> int:
        """How many call ids the anchor holds anything for (0 once every call ended)."""
        return len(self._anchored | self._unanchored | self._gone | set(self._inflight)
                   | set(self._recorded) | set(self._moh_order)
                   | {call for call, _ in self._muted})

