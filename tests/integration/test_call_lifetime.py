"""No call lives forever: ring timeouts, CANCELs that get no answer, session timers and
the longest call, with real sipp peers through ippbx.

* A carrier that rings and then ignores our CANCEL (no 200, no 487) holds nobody: the
  caller gets 480 at the ring timeout (plus a short grace for the 487), the call leaves
  the registry and the trunk's channel count at once, and the INVITE transaction ends
  64*T1 later in the UA (unit-tested in test_transaction.py).
* The same carrier when the caller gives up first: the caller gets its 487 at once.
* Session timers (RFC 4028): a caller that vanishes mid-call (no BYE) is hung up within
  one interval, the carrier getting its BYE; the INVITE to the carrier offers them.
* `[calls] max_duration`: ippbx hangs up both legs when it is reached.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

from pbx_harness import PbxHarness, TrunkSpec, dialling, rejected_with
from sipp_harness import SippFactory, free_port

from ippbx.config import Config

NUMBER = "95551234"


async def test_a_carrier_that_ignores_cancel_does_not_hold_the_caller(
    tmp_path: Path, sipp: SippFactory
) -> None:
    trunk_port = free_port()
    pbx = await PbxHarness.start(tmp_path, trunks=[TrunkSpec("carrier", trunk_port)],
                                 no_answer_seconds=2)
    try:
        far = await sipp("uas_ignore_cancel.xml", port=trunk_port, calls=1,
                         sipp_timeout_s=20).astart()
        loop = asyncio.get_running_loop()
        started = loop.time()
        near = await dialling(sipp, pbx, rejected_with(tmp_path, 480), NUMBER).astart()

        async def ringing() -> bool:
            return [c["status"] for c in await pbx.outbound()] == ["Progress"]

        await pbx.wait_for(ringing, timeout=5, what="the call to ring")
        (await near.await_result(15)).assert_ok(calls=1)
        # 2 s of ringing, at most 2 s more waiting for a 487 that never comes
        assert loop.time() - started < 2 + 2 + 1.5
        assert len(pbx.app.registry) == 0 and await pbx.outbound() == []
        assert pbx.app.pbx.trunks.in_use["carrier"] == 0
        (await far.await_result(10)).assert_ok(calls=1)  # it saw the CANCEL
        await pbx.wait_idle()
    finally:
        await pbx.stop()


async def test_a_caller_that_cancels_gets_487_although_the_carrier_ignores_cancel(
    tmp_path: Path, sipp: SippFactory
) -> None:
    trunk_port = free_port()
    pbx = await PbxHarness.start(tmp_path, trunks=[TrunkSpec("carrier", trunk_port)])
    try:
        far = await sipp("uas_ignore_cancel.xml", port=trunk_port, calls=1,
                         sipp_timeout_s=20).astart()
        near = await dialling(sipp, pbx, "pbx_uac_auth_cancel.xml", NUMBER,
                              duration_ms=1000).astart()
        (await near.await_result(15)).assert_ok(calls=1)  # 200 to the CANCEL, 487, ACK
        assert len(pbx.app.registry) == 0
        (await far.await_result(10)).assert_ok(calls=1)
        await pbx.wait_idle()
    finally:
        await pbx.stop()


def short_sessions(session_expires: int = 0, max_duration: int = 0) -> Callable[[Config], Config]:
    """Session timers / a longest call shorter than the configuration allows (RFC 4028's
    90 s minimum), so a test need not wait that long."""

    def adjust(config: Config) -> Config:
        calls = config.calls.model_copy(update={"session_expires": session_expires,
                                                "max_duration": max_duration})
        return config.model_copy(update={"calls": calls})

    return adjust


async def test_a_caller_that_vanishes_is_hung_up_by_the_session_timer(
    tmp_path: Path, sipp: SippFactory
) -> None:
    """The caller's sipp is killed mid-call (no BYE, its port closed). ippbx refreshes
    both legs (neither peer does session timers): the carrier answers its UPDATEs, the
    caller never does, so within one interval the call is torn down: the carrier gets a
    BYE and the call leaves the registry."""
    trunk_port = free_port()
    pbx = await PbxHarness.start(tmp_path, trunks=[TrunkSpec("carrier", trunk_port)],
                                 adjust=short_sessions(session_expires=4))
    try:
        far = await sipp("uas_refresh.xml", port=trunk_port, calls=1, trace_msg=True,
                         sipp_timeout_s=30).astart()
        near = await dialling(sipp, pbx, "uac_auth.xml", NUMBER, duration_ms=60_000,
                              sipp_timeout_s=70).astart()

        async def talking() -> bool:
            return [c["status"] for c in await pbx.outbound()] == ["Talking"]

        await pbx.wait_for(talking, timeout=5, what="the call to be up")
        near.kill()  # the caller vanishes
        loop = asyncio.get_running_loop()
        gone = loop.time()

        async def no_calls() -> bool:
            return await pbx.outbound() == []

        # refresh after 2 s, unanswered after 1.3 s more
        await pbx.wait_for(no_calls, timeout=8, what="the call to be torn down")
        assert loop.time() - gone < 4 + 2
        result = (await far.await_result(15)).assert_ok(calls=1)  # it got its BYE
        received = [m.first_line for m in result.messages() if m.direction == "received"]
        assert any(line.startswith("UPDATE ") for line in received), received
        invite = next(m for m in result.messages() if m.first_line.startswith("INVITE "))
        assert "Session-Expires: 4;refresher=uac" in invite.text
        assert re.search(r"^Supported: .*\btimer\b", invite.text, re.M), invite.text
        assert pbx.app.pbx.b2bua.keeper.ended == 1
        assert len(pbx.app.registry) == 0 and pbx.app.pbx.trunks.in_use["carrier"] == 0
        # (left: the BYE to the vanished caller, which takes Timer F, 32 s, to give up)
    finally:
        await pbx.stop(check_leaks=False)


async def test_max_duration_hangs_up_a_long_call(tmp_path: Path, sipp: SippFactory) -> None:
    trunk_port = free_port()
    pbx = await PbxHarness.start(tmp_path, trunks=[TrunkSpec("carrier", trunk_port)],
                                 adjust=short_sessions(max_duration=2))
    try:
        far = await sipp("uas.xml", port=trunk_port, calls=1).astart()
        loop = asyncio.get_running_loop()
        started = loop.time()
        near = await dialling(sipp, pbx, "pbx_uac_auth_recv_bye.xml", NUMBER).astart()
        (await near.await_result(15)).assert_ok(calls=1)  # it got ippbx's BYE
        (await far.await_result(10)).assert_ok(calls=1)  # so did the carrier
        assert 2 <= loop.time() - started < 2 + 3
        await pbx.wait_idle()
        assert await pbx.outbound() == []
    finally:
        await pbx.stop()
