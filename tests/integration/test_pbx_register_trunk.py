"""A register trunk: ippbx registers to a provider (sipp) with digest, and an extension's
call goes out through it, answering the provider's INVITE challenge too."""

from __future__ import annotations

from pathlib import Path

from pbx_harness import PbxHarness, TrunkSpec, ext_password
from sipp_harness import SippFactory, free_port

from ippbx.pbx.trunks import TrunkStatus

PROVIDER_KEYS = {"user": "acct1", "password": "provider-pw"}
TRUNK_EXTRA = 'username = "acct1"\npassword = "provider-pw"\nexpires = 120'


async def test_register_trunk_registers_and_carries_a_call(
    tmp_path: Path, sipp: SippFactory
) -> None:
    provider_port = free_port()
    registrar = sipp("pbx_provider_register.xml", port=provider_port, calls=1,
                     keys=PROVIDER_KEYS, sipp_timeout_s=15)
    await registrar.astart()
    pbx = await PbxHarness.start(
        tmp_path, [TrunkSpec("provider", provider_port, "register", TRUNK_EXTRA)]
    )
    try:
        (await registrar.await_result(15)).assert_ok(calls=1)
        trunks = pbx.app.pbx.trunks

        async def registered() -> bool:
            return trunks.status["provider"] is TrunkStatus.REGISTERED

        await pbx.wait_for(registered, 5, "the trunk to register")

        provider = sipp("pbx_provider_invite.xml", port=provider_port, calls=1,
                        keys=PROVIDER_KEYS, sipp_timeout_s=20)
        await provider.astart()
        caller = sipp("uac_auth.xml", remote=pbx.sip_address, calls=1, duration_ms=2000,
                      auth=("1001", ext_password("1001")), keys={"user": "1001"},
                      service="95551234", recv_timeout_ms=5000, sipp_timeout_s=20)
        await caller.astart()

        async def talking() -> list[dict[str, str]]:
            calls = await pbx.outbound()
            return [c for c in calls if c["status"] == "Talking"]

        live = await pbx.wait_for(talking, 10, "the call to be answered")
        assert len(live) == 1
        assert live[0]["trunk"] == "provider" and live[0]["to"] == "5551234"
        (await caller.await_result(20)).assert_ok(calls=1)
        (await provider.await_result(20)).assert_ok(calls=1)
        assert await pbx.outbound() == []
    finally:
        await pbx.stop()


async def test_register_trunk_with_wrong_password_shows_failure(
    tmp_path: Path, sipp: SippFactory
) -> None:
    provider_port = free_port()
    registrar = sipp("pbx_provider_register.xml", port=provider_port, calls=1,
                     keys={"user": "acct1", "password": "something-else"}, sipp_timeout_s=10)
    await registrar.astart()
    pbx = await PbxHarness.start(
        tmp_path, [TrunkSpec("provider", provider_port, "register", TRUNK_EXTRA)]
    )
    try:
        trunks = pbx.app.pbx.trunks

        async def failed() -> bool:
            return trunks.status["provider"] is TrunkStatus.FAILURE

        await pbx.wait_for(failed, 5, "the trunk to report failure")
    finally:
        await pbx.stop()
