"""Paging groups with real SIP and audio through ippbx's own rtpengine.

The phones are `AudioPhone`s (ippbx's UA plus an RTP endpoint sending a tone of its
own). A call to the group's number: every idle registered member's phone gets an INVITE
with the auto-answer headers, answers by itself and hears the caller's tone (numpy's FFT
on what it receives), a member in a call is left alone, the caller hears a beep once
heard; a member hanging up leaves the others paged; the caller hanging up ends every
member's call and leaves no call in the registry or in rtpengine. A page nobody can hear
fails 480 unanswered; one whose members never answer is cancelled and hung up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audio_phone import AudioPhone, user_of
from pbx_harness import PbxHarness, Start
from test_media_calls import (
    TONE_A,
    TONE_B,
    assert_anchored,
    engine_calls,
    hears,
    listen,
    no_engine_calls,
    start_media_pbx,
    starts_hearing,
)

from ippbx.config import Config
from ippbx.pbx.paging import ANSWER_SECONDS

TONE_C = 1000.0 + 170.0  # the third phone's
TONE_D = 500.0  # the busy member's
TONE_E = 1700.0  # the one it talks to
BEEP = 1000.0  # the built-in beep: the caller is heard from now on


def paging(groups: list[dict[str, Any]]) -> Callable[[Config], Config]:
    """A harness `adjust`: these paging groups."""
    def adjust(config: Config) -> Config:
        data = config.model_dump()
        data["paging_groups"] = groups
        return Config.model_validate(data)
    return adjust


async def until(pbx: PbxHarness, condition: Callable[[], object], what: str) -> None:
    async def check() -> bool:
        return bool(condition())
    await pbx.wait_for(check, timeout=5, what=what)


async def extension_status(pbx: PbxHarness) -> dict[str, str]:
    answer = (await pbx.post("extensionlist/query")).json()
    return {e["extnumber"]: e["status"] for e in answer["extlist"]}


async def test_a_page_reaches_every_idle_member_until_the_caller_hangs_up(
        start_pbx: Start, tmp_path: Path) -> None:
    group = {"number": "6700", "name": "floor2", "members": ["1001", "1002", "1003", "1004"]}
    pbx = await start_media_pbx(start_pbx, tmp_path, adjust=paging([group]))
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)  # the caller
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B)
    c = await AudioPhone.extension(pbx.sip_address, "1003", tone=TONE_C)
    d = await AudioPhone.extension(pbx.sip_address, "1004", tone=TONE_D)  # busy
    e = await AudioPhone.extension(pbx.sip_address, "1005", tone=TONE_E)  # not a member
    phones = (a, b, c, d, e)
    try:
        assert (await d.call("1005")).status == 200
        await e.wait_established()
        [busy_call] = await engine_calls(pbx)

        assert (await a.call("6700")).status == 200  # answered by ippbx
        await starts_hearing(a, BEEP)  # once a member answered: speak now
        await b.wait_established()
        await c.wait_established()
        # (a) each idle member's phone was asked to answer by itself, and did
        for member in (b, c):
            [invite] = member.incoming
            assert "answer-after=0" in (invite.get("Call-Info") or ""), invite
            assert "autoanswer" in (invite.get("Alert-Info") or ""), invite
            assert user_of(invite.get("From") or "") == "1001"  # who pages
            assert_anchored(pbx, member.remote_media, a)
            assert member.remote_media is not None
            assert member.remote_media.direction == "sendonly"  # it only listens
        # (c) the busy member and the caller itself were not paged
        assert d.incoming == [] and a.incoming == []
        assert [user_of(i.get("From") or "") for i in e.incoming] == ["1004"]
        # (b) both hear the caller's tone
        await starts_hearing(b, TONE_A)
        await starts_hearing(c, TONE_A)
        heard_b, heard_c = await listen(b, c)
        hears(heard_b, TONE_A, "1002")
        hears(heard_c, TONE_A, "1003")
        # the members are in calls: busy, each a call of its own; 1004 talks on
        status = await extension_status(pbx)
        assert status["1002"] == status["1003"] == status["1001"] == "Busy", status
        assert len(pbx.app.registry) == 4, pbx.app.registry.calls()
        heard_d, heard_e = await listen(d, e)
        hears(heard_d, TONE_E, "1004")
        hears(heard_e, TONE_D, "1005")

        # a member hanging up leaves only itself
        assert (await b.hangup()).status == 200
        await until(pbx, lambda: not pbx.app.registry.by_extension("1002"), "1002 to leave")
        [heard_c] = await listen(c)
        hears(heard_c, TONE_A, "1003 after 1002 left")
        assert a.in_call

        # (d) the caller hangs up: every member's call ends, nothing is left of the page
        assert (await a.hangup()).status == 200
        await c.wait_ended()
        await until(pbx, lambda: len(pbx.app.registry) == 1, "the page's calls to end")
        [left] = pbx.app.registry.calls()
        assert {leg.extension for leg in left.legs()} == {"1004", "1005"}

        async def only_the_busy_call() -> bool:
            return await engine_calls(pbx) == [busy_call]
        await pbx.wait_for(only_the_busy_call, timeout=5, what="rtpengine to drop the page")
        assert (await extension_status(pbx))["1003"] == "Registered"
        assert (await d.hangup()).status == 200
        await e.wait_ended()
        await no_engine_calls(pbx)
        await pbx.stop()
    finally:
        for phone in phones:
            await phone.stop()


async def test_a_page_nobody_can_hear(start_pbx: Start, tmp_path: Path) -> None:
    groups = [{"number": "6700", "members": ["1002", "1003"], "duplex": True},
              {"number": "6701", "members": ["1001", "1003"]}]
    pbx = await start_media_pbx(start_pbx, tmp_path, adjust=paging(groups))
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    b = await AudioPhone.extension(pbx.sip_address, "1002", tone=TONE_B, answer_delay=60)
    try:  # (1003 is not registered)
        # only the caller itself and an unregistered member: 480, never answered
        assert (await a.call("6701")).status == 480
        assert b.incoming == []
        # the one member that could be paged never answers: cancelled, the caller hung up
        started = time.monotonic()
        assert (await a.call("6700")).status == 200
        await a.wait_ended(timeout=ANSWER_SECONDS + 5)
        assert time.monotonic() - started >= ANSWER_SECONDS - 0.5
        assert len(b.incoming) == 1 and b.cancelled == 1
        await no_engine_calls(pbx)
        await pbx.stop()
    finally:
        await a.stop()
        await b.stop()


async def test_paging_with_several_subscriptions_twice_in_a_row(
        start_pbx: Start, tmp_path: Path) -> None:
    """Two pages one after the other through the same group: the engine's subscriptions
    of the first are gone, the second is heard the same (three members at once)."""
    group = {"number": "6700", "members": ["1002", "1003", "1004"]}
    pbx = await start_media_pbx(start_pbx, tmp_path, adjust=paging([group]))
    a = await AudioPhone.extension(pbx.sip_address, "1001", tone=TONE_A)
    members = [await AudioPhone.extension(pbx.sip_address, n, tone=t)
               for n, t in (("1002", TONE_B), ("1003", TONE_C), ("1004", TONE_D))]
    try:
        for _ in range(2):
            assert (await a.call("6700")).status == 200
            for member in members:
                await member.wait_established()
            await asyncio.gather(*(starts_hearing(m, TONE_A) for m in members))
            for member, heard in zip(members, await listen(*members), strict=True):
                hears(heard, TONE_A, member.name)
            assert (await a.hangup()).status == 200
            for member in members:
                await member.wait_ended()
            await no_engine_calls(pbx)
            await pbx.wait_idle()
        await pbx.stop()
    finally:
        for phone in (a, *members):
            await phone.stop()
