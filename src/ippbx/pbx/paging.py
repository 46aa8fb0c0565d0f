"""Paging groups (`[[paging_groups]]`): a call to the group's number is heard on every
idle member's phone, which answers by itself.

The caller is answered by ippbx (its audio anchored on the media engine, as for an IVR)
once at least one member can be paged; if none can (not registered, in a call, do-not-
disturb, or the caller itself), the call fails 480 unanswered, so the caller's phone
says at once that nobody is there rather than answering into silence. Then, for each
member that can: the engine is asked for a copy of what the caller sends (rtpengine's
`subscribe request`; several subscriptions to one party each get a tag of their own),
the member's newest registered phone is INVITEd with that offer (receive-only from the
phone's side) and the auto-answer headers (`Call-Info: answer-after=0`, `Alert-Info`),
and its answer goes back to the engine (`subscribe answer`). The caller hears a beep
once the first member answered: from then on they are heard.

Each member is a call of its own in the registry (from the caller's number to the
member; one party, the member), so the member's extension is busy, `outbound/query`,
`inbound/query`, the reports and the CDRs see it. A member that does not answer within
`ANSWER_SECONDS` is cancelled; a member that hangs up leaves the page alone (its
subscription is dropped). The page lasts until the caller hangs up (every member is then
hung up, the engine's call with its subscriptions deleted), or until no member is left
(the caller is hung up: 480 if no member ever answered).

`duplex = true` (the vendors' "intercom") is paged the same way: rtpengine 10.5 cannot
mix, so the members' voices reach no one (their answer is receive-only). A mixer comes
with conferences.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ippbx.config import PagingGroup
from ippbx.media.prompts import find_prompt
from ippbx.pbx.b2bua import B2BUA, Bridge
from ippbx.pbx.calls import Leg, LegKind, LegStatus
from ippbx.pbx.control import AUTO_ANSWER_HEADERS
from ippbx.pbx.dialplan import ToPaging, ToQueue

if TYPE_CHECKING:
    from ippbx.pbx.applications import Applications

log = logging.getLogger(__name__)

ANSWER_SECONDS = 5.0  # a member's phone that has not answered by then is cancelled
BEEP = "beep"  # the prompt the caller hears once the first member answered


def pageable(members: Iterable[str], caller: str, registered: Callable[[str], bool],
             busy: Callable[[str], bool], dnd: Callable[[str], bool]) -> list[str]:
    """The members a page reaches, in the group's order, each once: registered, not in
    a call, not on do-not-disturb, and not the caller itself."""
    out: list[str] = []
    for member in members:
        if member == caller or member in out:
            continue
        if registered(member) and not busy(member) and not dnd(member):
            out.append(member)
    return out


@dataclass(eq=False)
class Page:
    """One page under way: the caller's bridge and its members' calls."""

    number: str
    caller: Bridge
    members: dict[str, Bridge] = field(default_factory=dict)  # extension → its call
    heard: asyncio.Event = field(default_factory=asyncio.Event)  # a member answered


class Paging:
    """Runs the calls to paging groups (`Applications.paging`)."""

    def __init__(self, b2bua: B2BUA, groups: Sequence[PagingGroup], prompts: Path | str,
                 answer_seconds: float = ANSWER_SECONDS) -> None:
        self.b2bua = b2bua
        self.registry = b2bua.registry
        self.groups = {g.number: g for g in groups}
        self.prompts = Path(prompts)
        self.answer_seconds = answer_seconds

    def reconfigure(self, groups: Sequence[PagingGroup]) -> None:
        """The paging groups of a new configuration (pages under way go on)."""
        self.groups = {g.number: g for g in groups}

    def reachable(self, group: PagingGroup, caller: str) -> list[str]:
        """The members of `group` a page from extension `caller` would reach now."""
        b2bua = self.b2bua
        settings = b2bua.settings
        return pageable(group.members, caller,
                        registered=lambda ext: bool(b2bua.registrar.contacts(ext)),
                        busy=lambda ext: bool(self.registry.by_extension(ext)),
                        dnd=lambda ext: settings is not None and settings.dnd(ext))

    async def run(self, apps: Applications, bridge: Bridge, destination: ToQueue | ToPaging,
                  max_forwards: int, depth: int) -> int | None:
        """Page the group: None once the page is over (the caller was answered), else
        the status to fail the caller with."""
        b2bua, call = self.b2bua, bridge.call
        group = self.groups.get(destination.number) \
            if isinstance(destination, ToPaging) else None
        if group is None:
            return 404
        caller = call.caller.extension or ""
        if b2bua.media is None or not self.reachable(group, caller):
            log.info("call %s: paging group %s: no member to page", call.callid, group.number)
            return 480
        status = await apps.enter(bridge)
        if status is not None:
            return status
        self.registry.note(call, application=f"paging:{group.number}")
        page = Page(group.number, bridge)
        try:
            for ext in self.reachable(group, caller):  # (again: the answer took a moment)
                page.members[ext] = self._member_call(bridge, ext)
            for ext, member in list(page.members.items()):
                b2bua.spawn(self._page(page, ext, member, max_forwards))
            if not page.members:
                b2bua.teardown(bridge, 480)
            await self._beep_when_heard(page)
            await bridge.abort_event().wait()  # until the caller hangs up (or is hung up)
        finally:
            for member in list(page.members.values()):
                b2bua.teardown(member, 200 if member.a_dialog is not None else 487)
        return None

    def _member_call(self, caller: Bridge, ext: str) -> Bridge:
        """A call of its own for member `ext` (its only party), in the registry at once
        so its extension is busy from now on."""
        leg = Leg(LegKind.EXTENSION, caller.call.caller.from_number, ext, extension=ext,
                  outgoing=True)
        call = self.registry.start_call(leg, ext)
        return self.b2bua.new_bridge(call, None)

    async def _beep_when_heard(self, page: Page) -> None:
        """Once the first member answered, the caller hears a beep: speak now."""
        caller = page.caller
        heard = asyncio.ensure_future(page.heard.wait())
        gone = caller.abort_event().waiter()
        try:
            await asyncio.wait({heard, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            heard.cancel()
            caller.stop_waiting(gone)
        media = self.b2bua.media
        beep = find_prompt(BEEP, self.prompts)
        if page.heard.is_set() and not caller.ended and media is not None and beep:
            await media.play(caller.call.callid, caller.call.caller.id, str(beep))

    async def _page(self, page: Page, ext: str, member: Bridge, max_forwards: int) -> None:
        """Page member `ext` (its call `member`) until it or the page ends."""
        b2bua, registry = self.b2bua, self.registry
        media, leg = b2bua.media, member.call.caller
        paged = page.caller.call.callid
        subscription = ""
        try:
            offered: tuple[str, bytes] | None = None
            if media is not None and not member.ended:
                offered = await media.subscribe(paged, page.caller.call.caller.id)
            binding = b2bua.registrar.contacts(ext)[:1]
            if offered is None or member.ended or not binding:
                if leg.live:
                    registry.end_leg(leg.id, 503 if offered is None else 480)
                b2bua.finish(member)
                return
            assert media is not None
            subscription, sdp = offered
            invite = b2bua.build_invite(sdp, "application/sdp", binding[0].contact,
                                        binding[0].source, leg.from_number, leg.to_number,
                                        max_forwards, None)
            for name, value in AUTO_ANSWER_HEADERS:
                invite.add(name, value)
            member.dialling = leg  # (its 180 is reported as the member ringing)
            response = await b2bua.send_invite(member, invite, binding[0].source, None,
                                               timeout=self.answer_seconds)
            ci = member.b_invite
            member.b_invite = None
            if response.status >= 300 or member.ended or ci is None or ci.dialog is None:
                if response.status < 300 and ci is not None and ci.dialog is not None:
                    b2bua.ack(ci.dialog)  # (answered as the page ended: hung up)
                    b2bua.bye(ci.dialog)
                if leg.live:
                    registry.end_leg(leg.id, response.status if response.status >= 300
                                     else 487)
                b2bua.finish(member)
                return
            member.a_dialog = ci.dialog
            b2bua.remember(member, "a", ci.dialog)
            b2bua.ack(ci.dialog)
            registry.set_status(leg.id, LegStatus.TALKING)
            self.registry.note(member.call, answered=leg.answered)  # (its only party answered)
            if not await media.subscribed(paged, subscription, response.body):
                b2bua.teardown(member, 503)
                return
            page.heard.set()
            await member.abort_event().wait()  # until it hangs up or the page ends
        except asyncio.CancelledError:
            b2bua.teardown(member, 503)
            raise
        finally:
            if subscription and media is not None and media.anchored(paged):
                await media.unsubscribe(paged, subscription)
            self._left(page, ext, member)

    def _left(self, page: Page, ext: str, member: Bridge) -> None:
        """Member `ext` is out of the page; with none left, so is the caller."""
        if page.members.get(ext) is member:
            del page.members[ext]
        caller = page.caller
        if not page.members and not caller.ended:
            log.info("call %s: paging group %s: no member left", caller.call.callid,
                     page.number)
            self.b2bua.teardown(caller, 200 if page.heard.is_set() else 480)
