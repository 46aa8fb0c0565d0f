"""No call lives forever: ring timeouts, CANCELs that get no answer, session timers and
the longest call, with real sipp peers through ippbx.

* A carrier that rings and then ignores our CANCEL (no 200, no 487) holds nobody: the
  caller gets 480 at the ring timeout (plus a short grace for the 487), the call leaves
  the registry and the trunk's channel count at once, and the INVITE transaction ends
  64*T1 later in the UA (unit-tested in test_transaction.py).
* The same carrier when the caller gives up first: the caller gets its 487 at once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pbx_harness import PbxHarness, TrunkSpec, dialling, rejected_with
from sipp_harness import SippFactory, free_port

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
