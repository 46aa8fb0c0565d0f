"""What answers calls itself: IVR menus, voicemail, the mailbox menu, feature codes.

Each runs once the B2BUA's dial plan sends a call to it (`B2BUA.deliver`). ippbx then
answers the caller with the media engine's SDP against its own "player" side (the
caller's audio is anchored; prompts are played into it, DTMF comes back as rtpengine's
events or SIP INFO `application/dtmf-relay`, both queued on the bridge by
`B2BUA.digit`), and the application talks to the caller:

- IVR: plays its prompt (a key cuts it short), waits `timeout` s for a key, `repeat`
  times, then its default. A key with an option goes there; with `direct_dial`, keys
  that begin an extension's (or IVR's, ring group's) number are collected until the
  number is complete (2 s between keys, or `#`). The call is then put through from
  here, the caller hearing ringback (the built-in `ringback`) meanwhile: the party that
  answers is bridged to the caller without a new answer to it
  (`B2BUA._answered_connected`).
- Voicemail (a message for a mailbox): the mailbox's greeting (else the built-in
  `leave-message`), a beep, then the caller's audio is recorded by the engine until
  they hang up, press `#`, or `[voicemail] max_seconds` pass. When the engine's call
  is gone, its recording becomes the message (`Mailboxes.deposit`), which tells the
  mailbox's phones (message waiting).
- Mailbox menu (`*97` own mailbox, `*98` any): the PIN (three tries), how many new
  messages, then each message (new first) with its menu: 1 again, 7 delete, 9 next,
  5 record the greeting, * leave.
- Feature codes: `*78`/`*79` do-not-disturb on/off, `*21NUMBER`/`*22` forward-always
  on/off, confirmed by a prompt.
"""

from __future__ import annotations

import asyncio
import logging
import time
import wave
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from ippbx.config import Config, Ivr
from ippbx.media.prompts import find_prompt
from ippbx.pbx.b2bua import B2BUA, Bridge
from ippbx.pbx.calls import LegStatus
from ippbx.pbx.capabilities import ALLOW
from ippbx.pbx.dialplan import (
    Destination,
    Feature,
    Refusal,
    Refused,
    ToConference,
    ToFeature,
    ToIvr,
    ToMailbox,
    ToPaging,
    ToQueue,
    ToVoicemail,
)
from ippbx.pbx.extension_features import ExtensionFeatures
from ippbx.pbx.prompt_calls import PLAYER, player_answer
from ippbx.pbx.session_timers import SessionTimer

log = logging.getLogger(__name__)

TAIL = 0.2  # seconds after a prompt's stated end before what follows
INTERDIGIT = 2.0  # seconds between the keys of a number dialled from a menu
PIN_SECONDS = 10.0  # to key a PIN or a mailbox number
MENU_SECONDS = 6.0  # for a key after the mailbox menu
GREETING_SECONDS = 60.0
PIN_TRIES = 3
KEYS_KEPT = 64  # keys a caller may press ahead of the application (more are dropped)
RINGBACK_TIMES = 200  # the ringback's 5 s, over and over while a party rings (16 min)


class MessageStore(Protocol):
    """What the applications need of the mailboxes (`pbx/mailboxes.py`)."""

    def greeting(self, mailbox: str) -> Path | None: ...

    def save_greeting(self, mailbox: str, wav: Path) -> Path: ...

    def deposit(self, mailbox: str, caller: str, wav: Path, seconds: int) -> object: ...

    def messages(self, mailbox: str) -> Sequence[MessageLike]: ...

    def path_of(self, mailbox: str, file: str) -> Path | None: ...

    def mark_heard(self, mailbox: str, file: str) -> None: ...

    def delete(self, mailbox: str, file: str) -> bool: ...


class MessageLike(Protocol):
    @property
    def file(self) -> str: ...

    @property
    def heard(self) -> bool: ...


class Runner(Protocol):
    """An application that decides itself when to answer the caller (queues, paging):
    it calls `Applications.enter` then."""

    async def run(self, apps: Applications, bridge: Bridge, destination: ToQueue | ToPaging,
                  max_forwards: int, depth: int) -> int | None: ...


class ConferenceRunner(Protocol):
    """Conference rooms (`pbx/conferences.py`): they answer the caller themselves."""

    async def run(self, apps: Applications, bridge: Bridge, destination: ToConference,
                  max_forwards: int, depth: int) -> int | None: ...


class Applications:
    """Runs the applications on calls the B2BUA hands it (`B2BUA.apps`)."""

    def __init__(self, b2bua: B2BUA, config: Config, mailboxes: MessageStore,
                 features: ExtensionFeatures,
                 claim_recording: Callable[[str, Callable[[Path], None]], None]) -> None:
        self.b2bua = b2bua
        self.config = config
        self.prompts = Path(config.media.prompts)
        self.mailboxes = mailboxes
        self.features = features
        # the recording of a call, once made (its WAV), goes to the callback given
        self.claim_recording = claim_recording
        self.ivrs: dict[str, Ivr] = {i.number: i for i in config.ivrs}
        self._numbers = sorted({*b2bua.extensions, *self.ivrs, *b2bua.groups,
                                *(q.number for q in config.queues),
                                *(p.number for p in config.paging_groups),
                                *(c.number for c in config.conferences)})
        self.queues: Runner | None = None  # call queues (pbx/queues.py)
        self.paging: Runner | None = None  # paging groups (pbx/paging.py)
        self.conferences: ConferenceRunner | None = None  # rooms (pbx/conferences.py)
        # a queue agent's feature code (`*71`-`*74`): carried out, the prompt to confirm
        self.agent_code: Callable[[ToFeature], str] | None = None

    def reconfigure(self, config: Config) -> None:
        """The IVRs and numbers of a new configuration (after the B2BUA's)."""
        self.config = config
        self.ivrs = {i.number: i for i in config.ivrs}
        self._numbers = sorted({*self.b2bua.extensions, *self.ivrs, *self.b2bua.groups,
                                *(q.number for q in config.queues),
                                *(p.number for p in config.paging_groups),
                                *(c.number for c in config.conferences)})

    # -- the entry point ----------------------------------------------------------------
    async def run(self, bridge: Bridge, destination: Destination, max_forwards: int,
                  depth: int) -> int | None:
        if isinstance(destination, ToQueue | ToPaging):  # (they answer when they choose)
            runner = self.queues if isinstance(destination, ToQueue) else self.paging
            if runner is None:
                return 480
            return await runner.run(self, bridge, destination, max_forwards, depth)
        if isinstance(destination, ToConference):
            if self.conferences is None:
                return 480
            return await self.conferences.run(self, bridge, destination, max_forwards, depth)
        status = await self.enter(bridge)
        if status is not None:
            return status
        registry, call = self.b2bua.registry, bridge.call
        if isinstance(destination, ToIvr):
            # (in the menu, the caller waits: `Wait`, its callee the IVR)
            self.b2bua.registry.note(bridge.call, application=f"ivr:{destination.number}")
            registry.set_status(bridge.call.caller.id, LegStatus.WAIT)
            return await self._ivr(bridge, self.ivrs[destination.number], max_forwards, depth)
        if isinstance(destination, ToVoicemail):
            # (its CDR: VOICEMAIL)
            self.b2bua.registry.note(call, application=f"voicemail:{destination.mailbox}")
            await self._leave_message(bridge, destination.mailbox)
        elif isinstance(destination, ToMailbox):
            await self._mailbox_menu(bridge, destination.mailbox)
        elif isinstance(destination, ToFeature):
            await self._feature(bridge, destination)
        self._hang_up(bridge)
        return None

    async def enter(self, bridge: Bridge) -> int | None:
        """Have the caller answered by ippbx for an application (a caller answered
        already, by a menu, stops hearing its ringback): None once it is, else the
        status to fail the call with."""
        media = self.b2bua.media
        if bridge.answered_by_pbx:
            if media is not None:
                await media.stop_playing(bridge.call.callid, bridge.call.caller.id)
        elif not await self.answer(bridge):
            return 503 if not bridge.gave_up else 487
        call = bridge.call
        self.b2bua.registry.set_status(call.caller.id, LegStatus.TALKING)
        if call.answered is None:  # (answered by ippbx: a connected call, no CallFailed)
            self.b2bua.registry.note(call, answered=call.caller.answered)
        return None

    async def answer(self, bridge: Bridge) -> bool:
        """Answer the caller with the engine's SDP against ippbx's player: the caller's
        audio is anchored, prompts can be played to it. False if it could not be."""
        b2bua, media = self.b2bua, self.b2bua.media
        call = bridge.call
        offer = bridge.sdp.get("a", b"")
        if bridge.digits is None:
            bridge.digits = asyncio.Queue(KEYS_KEPT)
        if media is None or not offer:
            return False  # (a caller's INVITE without SDP: not answered by applications)
        to_player = await media.offer(call.callid, call.caller.id, PLAYER, offer)
        if not media.anchored(call.callid) or not to_player or bridge.gave_up:
            return False
        answer = await media.answer(call.callid, call.caller.id, PLAYER,
                                    player_answer(to_player))
        if not answer or bridge.gave_up or bridge.ended:
            return False
        headers = [("Content-Type", "application/sdp")]
        a = bridge.a
        if a is not None and not a.final_sent:
            a.respond(200, headers=[("Allow", ALLOW), *headers], body=answer,
                      to_tag=bridge.a_tag, contact=b2bua.caller_contact(bridge))
            bridge.a_dialog = a.dialog
            b2bua.remember(bridge, "a", bridge.a_dialog)
            b2bua.forget_early(bridge)
            ack = await a.acked()
            bridge.a = None
            if ack is None:  # never confirmed: its dialog is ours to end (BYE), as for
                bridge.answered_by_pbx = True  # a call a party answered
                return False
        elif bridge.a_dialog is not None:  # (its 2xx carried its offer: a call ippbx
            # originated, or a party a transfer hands over, re-INVITEd without SDP)
            b2bua.ack(bridge.a_dialog, answer, headers)
        else:
            return False
        bridge.answered_by_pbx = True
        if b2bua.session_expires:  # (our 200 asked for no timer: ippbx refreshes)
            bridge.a_session = SessionTimer(b2bua.session_expires, we_refresh=True)
        else:
            bridge.a_session = None
        return not bridge.ended

    def _hang_up(self, bridge: Bridge) -> None:
        if not bridge.ended:
            self.b2bua.teardown(bridge, 200)

    # -- prompts and keys ---------------------------------------------------------------
    def _file(self, prompt: str | Path) -> Path | None:
        if isinstance(prompt, Path):
            return prompt
        found = find_prompt(prompt, self.prompts)
        if found is None:
            log.warning("no prompt %r (in %s or built in)", prompt, self.prompts)
        return found

    async def play(self, bridge: Bridge, prompts: Sequence[str | Path],
                   keys: bool = True) -> str | None:
        """Play `prompts` to the caller one after the other; with `keys`, a key pressed
        meanwhile stops them and is returned."""
        media = self.b2bua.media
        for prompt in prompts:
            path = self._file(prompt)
            if media is None or bridge.ended:
                return None
            if path is None:
                continue
            seconds = await media.play(bridge.call.callid, bridge.call.caller.id, str(path))
            if seconds is None:
                continue
            if keys:
                key = await self.key(bridge, seconds + TAIL)
                if key is not None:
                    await media.stop_playing(bridge.call.callid, bridge.call.caller.id)
                    return key
            else:
                await bridge.pause(seconds + TAIL)
        return None

    async def key(self, bridge: Bridge, seconds: float) -> str | None:
        """The next key the caller presses within `seconds` (None: none, or hung up)."""
        queue = bridge.digits
        if queue is None or bridge.ended:
            return None
        if not queue.empty():
            return queue.get_nowait()
        getting = asyncio.ensure_future(queue.get())
        gone = bridge.abort_event().waiter()
        try:
            done, _ = await asyncio.wait({getting, gone}, timeout=seconds,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            bridge.stop_waiting(gone)
            if not getting.done():
                getting.cancel()
        if getting in done and not getting.cancelled():
            return getting.result()
        return None

    async def keys(self, bridge: Bridge, first: str, seconds: float,
                   done: Callable[[str], bool] = lambda _: False) -> str:
        """Keys after `first` until `#`, `seconds` without one, or `done(keys)`."""
        keyed = first
        while keyed and not done(keyed) and len(keyed) < 32:
            key = await self.key(bridge, seconds)
            if key is None or key == "#":
                break
            keyed += key
        return keyed

    async def ask(self, bridge: Bridge, prompt: str) -> str:
        """Play `prompt`, then the keys the caller enters (ended by `#`)."""
        first = await self.play(bridge, [prompt]) or await self.key(bridge, PIN_SECONDS)
        if first is None or first == "#":
            return ""
        return await self.keys(bridge, first, PIN_SECONDS)

    def _say_number(self, number: int) -> list[str]:
        return [f"digit-{d}" for d in str(number)]

    # -- IVR ----------------------------------------------------------------------------
    async def _ivr(self, bridge: Bridge, ivr: Ivr, max_forwards: int,
                   depth: int) -> int | None:
        dialplan = self.b2bua.dialplan
        for _ in range(ivr.repeat):
            key = await self.play(bridge, [ivr.prompt])
            if key is None:
                key = await self.key(bridge, float(ivr.timeout))
            if bridge.ended:
                return None
            if key is None:
                continue
            destination: Destination | None = None
            if ivr.direct_dial and self._begins_number(key):
                keyed = await self.keys(bridge, key, INTERDIGIT, self._complete)
                destination = dialplan.local(keyed)
                if destination is None and keyed in ivr.options:
                    destination = dialplan.resolve(ivr.options[keyed])
            elif key in ivr.options:
                destination = dialplan.resolve(ivr.options[key])
            if destination is None:
                log.info("call %s: IVR %s: no option %r", bridge.call.callid, ivr.number, key)
                await self.play(bridge, ["invalid"], keys=False)
                continue
            return await self.go(bridge, destination, max_forwards, depth)
        if bridge.ended:
            return None
        return await self.go(bridge, dialplan.resolve(ivr.default), max_forwards, depth)

    def _begins_number(self, key: str) -> bool:
        return any(n.startswith(key) and n != key for n in self._numbers)

    def _complete(self, keyed: str) -> bool:
        """`keyed` is a number and no longer one begins with it."""
        return keyed in self._numbers and not self._begins_number(keyed)

    async def go(self, bridge: Bridge, destination: Destination, max_forwards: int,
                  depth: int) -> int | None:
        """Put the caller through to `destination` (saying "please hold" meanwhile)."""
        media = self.b2bua.media
        if isinstance(destination, Refused):
            if destination.reason is Refusal.HANGUP:
                await self.play(bridge, ["goodbye"], keys=False)
            return destination.sip_status
        self.b2bua.registry.note(bridge.call, application="")
        path = self._file("ringback")
        if media is not None and path is not None and not isinstance(
                destination, ToVoicemail | ToMailbox | ToIvr | ToQueue | ToPaging
                | ToConference):
            await media.play(bridge.call.callid, bridge.call.caller.id, str(path),
                             RINGBACK_TIMES)
        return await self.b2bua.deliver(bridge, destination, max_forwards, depth + 1)

    # -- voicemail ----------------------------------------------------------------------
    async def _leave_message(self, bridge: Bridge, mailbox: str) -> None:
        caller = bridge.call.caller  # (the party served: after a transfer, the one left)
        greeting = self.mailboxes.greeting(mailbox)
        await self.play(bridge, [greeting if greeting is not None else "leave-message"])
        await self.play(bridge, ["beep"], keys=False)
        from_number = caller.from_number if not caller.outgoing else caller.to_number

        def deposit(wav: Path) -> None:
            seconds = _seconds(wav)
            if seconds <= 0:
                wav.unlink(missing_ok=True)
                return
            self.mailboxes.deposit(mailbox, from_number, wav, seconds)

        if not await self._record(bridge, f"voicemail-{bridge.call.callid}.wav", deposit,
                                  float(self.config.voicemail.max_seconds)):
            return
        await self.play(bridge, ["goodbye"], keys=False)

    async def _record(self, bridge: Bridge, name: str, done: Callable[[Path], None],
                      seconds: float) -> bool:
        """Record what the caller says until `#`, hang-up or `seconds`; `done(wav)` gets
        it once the call is over. False if it could not be recorded."""
        media = self.b2bua.media
        callid = bridge.call.callid
        if media is None or bridge.ended or not media.record(callid, name):
            return False
        self.claim_recording(callid, done)
        if bridge.digits is not None:
            while not bridge.digits.empty():  # (keys pressed before the beep)
                bridge.digits.get_nowait()
        deadline = time.monotonic() + seconds
        while not bridge.ended:
            key = await self.key(bridge, deadline - time.monotonic())
            if key is None or key == "#":
                break
        media.stop_recording(callid)
        return not bridge.ended

    async def _mailbox_menu(self, bridge: Bridge, mailbox: str) -> None:
        extensions = self.b2bua.extensions
        for _ in range(PIN_TRIES if not mailbox else 1):
            if not mailbox:
                asked = await self.ask(bridge, "vm-enter-mailbox")
                if asked in extensions and extensions[asked].voicemail:
                    mailbox = asked
                else:
                    await self.play(bridge, ["vm-wrong-pin"], keys=False)
        ext = extensions.get(mailbox)
        if ext is None or bridge.ended:
            return
        if ext.vm_pin:
            for _ in range(PIN_TRIES):
                if await self.ask(bridge, "vm-enter-pin") == ext.vm_pin:
                    break
                if bridge.ended:
                    return
                await self.play(bridge, ["vm-wrong-pin"], keys=False)
            else:
                await self.play(bridge, ["goodbye"], keys=False)
                return
        messages = sorted(self.mailboxes.messages(mailbox), key=lambda m: m.heard)
        new = sum(1 for m in messages if not m.heard)
        if not messages:  # (the greeting can still be recorded)
            await self.play(bridge, ["vm-no-messages"], keys=False)
            key = await self.play(bridge, ["vm-menu"]) or await self.key(bridge, MENU_SECONDS)
            if key == "5":
                await self._record_greeting(bridge, mailbox)
                return
        elif new:
            await self.play(bridge, ["vm-you-have", *self._say_number(new), "vm-new-messages"])
        index = 0
        while index < len(messages) and not bridge.ended:
            message = messages[index]
            path = self.mailboxes.path_of(mailbox, message.file)
            key = None
            if path is not None:
                key = await self.play(bridge, ["vm-message", *self._say_number(index + 1),
                                               path])
                self.mailboxes.mark_heard(mailbox, message.file)
            key = key or await self.play(bridge, ["vm-menu"]) \
                or await self.key(bridge, MENU_SECONDS)
            if key == "1":
                continue
            if key == "7":
                self.mailboxes.delete(mailbox, message.file)
                messages.pop(index)
                await self.play(bridge, ["vm-deleted"], keys=False)
                continue
            if key == "5":
                await self._record_greeting(bridge, mailbox)
                return
            if key == "*":
                break
            index += 1
            if index == len(messages):
                await self.play(bridge, ["vm-no-more"], keys=False)
        await self.play(bridge, ["goodbye"], keys=False)

    async def _record_greeting(self, bridge: Bridge, mailbox: str) -> None:
        await self.play(bridge, ["vm-record-greeting"])
        await self.play(bridge, ["beep"], keys=False)

        def save(wav: Path) -> None:
            if _seconds(wav) > 0:
                self.mailboxes.save_greeting(mailbox, wav)
            wav.unlink(missing_ok=True)

        if await self._record(bridge, f"greeting-{bridge.call.callid}.wav", save,
                              GREETING_SECONDS):
            await self.play(bridge, ["vm-greeting-saved", "goodbye"], keys=False)

    # -- feature codes ------------------------------------------------------------------
    async def _feature(self, bridge: Bridge, code: ToFeature) -> None:
        features = self.features
        if code.feature is Feature.DND_ON:
            features.set_dnd(code.extension, True)
            prompt = "dnd-on"
        elif code.feature is Feature.DND_OFF:
            features.set_dnd(code.extension, False)
            prompt = "dnd-off"
        elif code.feature is Feature.FORWARD_ON:
            features.set_forward(code.extension, code.target)
            prompt = "forward-on"
        elif code.feature is Feature.FORWARD_OFF:
            features.set_forward(code.extension, "")
            prompt = "forward-off"
        elif self.agent_code is not None:  # (a queue agent's)
            prompt = self.agent_code(code)
        else:
            prompt = "invalid"
        await self.play(bridge, [prompt, "goodbye"], keys=False)


def _seconds(wav: Path) -> int:
    """How long the WAV lasts, whole seconds rounded (0 if it is not one)."""
    try:
        with wave.open(str(wav), "rb") as w:
            return round(w.getnframes() / (w.getframerate() or 8000))
    except (OSError, wave.Error, EOFError):
        return 0
