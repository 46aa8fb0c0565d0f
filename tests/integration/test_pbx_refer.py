"""A phone transfers its call itself (REFER, RFC 3515): ippbx accepts it (202), tells the
phone it is done (NOTIFY with a 200 sipfrag), releases it (BYE), connects the other party
to the target, and the application sees the call carry on under the same ids."""

from __future__ import annotations

from pathlib import Path

from pbx_harness import PbxHarness, TrunkSpec, ext_password
from sipp_harness import SippFactory, free_port

from ippbx.pbx import events


async def test_refer_from_the_phone_transfers_the_call(tmp_path: Path, sipp: SippFactory) -> None:
    trunk_port = free_port()
    pbx = await PbxHarness.start(tmp_path, [TrunkSpec("carrier", trunk_port)])
    transfers: list[events.CallTransferred] = []
    pbx.app.registry.subscribe(
        lambda e: transfers.append(e) if isinstance(e, events.CallTransferred) else None
    )
    try:
        carrier = await sipp("ctl_uas_carrier_reinvite.xml", port=trunk_port, calls=1,
                             sipp_timeout_s=30).astart()
        target_port = free_port()
        register = sipp("pbx_register.xml", remote=pbx.sip_address, port=target_port,
                        calls=1, auth=("1002", ext_password("1002")), keys={"user": "1002"},
                        recv_timeout_ms=3000, sipp_timeout_s=10)
        await register.astart()
        (await register.await_result(10)).assert_ok(calls=1)
        target = await sipp("ctl_uas_target.xml", port=target_port, calls=1,
                            sipp_timeout_s=30).astart()
        phone = await sipp("ctl_uac_refer.xml", remote=pbx.sip_address, calls=1,
                           auth=("1001", ext_password("1001")),
                           keys={"user": "1001", "target": "1002"}, service="95551234",
                           duration_ms=1000, recv_timeout_ms=8000, sipp_timeout_s=30).astart()

        async def talking() -> list[dict[str, str]]:
            return [c for c in await pbx.outbound() if c["status"] == "Talking"]

        [before] = await pbx.wait_for(talking, 10, "the call to be answered")
        call = pbx.app.registry.by_outboundid(before["outboundid"])
        assert call is not None
        callid = call.callid
        (await phone.await_result(20)).assert_ok(calls=1)  # 202, NOTIFY 200 sipfrag, BYE

        async def transferred() -> bool:
            return call.caller.extension == "1002" and call.caller.answered is not None

        await pbx.wait_for(transferred, 10, "1002 to take 1001's place")
        assert [t.target for t in transfers] == ["1002"]
        assert transfers[0].leg.extension == "1001"
        assert call.callid == callid and await talking() == [before]

        assert (await pbx.post("outbound/hangup", {"outboundid": before["outboundid"]})).json() \
            == {"status": "Success"}
        (await carrier.await_result(15)).assert_ok(calls=1)
        (await target.await_result(15)).assert_ok(calls=1)
        assert await pbx.outbound() == []
    finally:
        await pbx.stop()
