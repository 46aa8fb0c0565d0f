"""No toll fraud through a transfer: a caller who came in on a trunk cannot make the PBX
dial out through a trunk on its behalf (REFER from its side, or an API transfer naming it
as the transferor), unless the inbound route that admitted its call allows it.

The carrier is a sipp UAC calling the DID from the trunk's own address; once extension
1002 answers, it sends an in-dialog REFER to 9 + an outside number. A second trunk
("second", the only one route 9 uses) is a sipp UAS that records whatever reaches it.
"""

from __future__ import annotations

from pathlib import Path

from pbx_harness import PbxHarness, TrunkSpec, phone
from sipp_harness import SippFactory, free_port

DID = "5550100"  # the harness's inbound route: DID 5550100 on the first trunk → 1002
OUTSIDE = "95559999"  # route 9 → trunk "second", number 5559999


async def test_a_trunk_caller_cannot_transfer_its_call_out(
    tmp_path: Path, sipp: SippFactory
) -> None:
    carrier_port, second_port = free_port(), free_port()
    pbx = await PbxHarness.start(
        tmp_path, [TrunkSpec("carrier", carrier_port), TrunkSpec("second", second_port)],
        route_trunks=["second"])
    second = await sipp("uas.xml", port=second_port, calls=1, trace_msg=True).astart()
    try:
        ext = await phone(sipp, pbx, "1002", "uas.xml")
        far = await sipp("ctl_uac_trunk_refer_refused.xml", remote=pbx.sip_address,
                         port=carrier_port, service=DID, calls=1, duration_ms=1500,
                         keys={"user": "0123456", "target": OUTSIDE}, recv_timeout_ms=8000,
                         sipp_timeout_s=20).astart()

        async def talking() -> list[dict[str, object]]:
            return [c for c in await pbx.inbound() if c["status"] == "Talking"]

        [call] = await pbx.wait_for(talking, 10, "the inbound call to be answered")
        # the API refuses the same thing with the caller named as the transferor
        answer = (await pbx.post("calltransfer", {"callid": call["inboundid"],
                                                  "transferor": "0123456",
                                                  "transferto": OUTSIDE})).json()
        assert answer == {"status": "Failed", "errno": "10024"}
        # ... and the REFER gets 403; the carrier then hangs up, 1002 gets its BYE
        (await far.await_result(20)).assert_ok(calls=1)
        (await ext.await_result(15)).assert_ok(calls=1)
        await pbx.wait_idle()
        assert await pbx.outbound() == []
        [cdr] = pbx.app.store.cdrs()
        assert (cdr.type, cdr.dst_trunk, cdr.status) == ("Inbound", "", "ANSWERED")
    finally:
        await pbx.stop(check_leaks=False)
    got = second.stop()
    assert [m for m in got.messages() if m.direction == "received"] == []  # nothing went out


async def test_a_route_can_allow_a_trunk_caller_to_transfer_out(
    tmp_path: Path, sipp: SippFactory
) -> None:
    carrier_port, second_port = free_port(), free_port()
    pbx = await PbxHarness.start(
        tmp_path, [TrunkSpec("carrier", carrier_port), TrunkSpec("second", second_port)],
        route_trunks=["second"],
        extra="allow_transfer_out = true\n")  # (lands in the last table: the inbound route)
    assert pbx.app.config.inbound_routes[0].allow_transfer_out
    second = await sipp("ctl_uas_target.xml", port=second_port, calls=1,
                        trace_msg=True, sipp_timeout_s=20).astart()
    try:
        ext = await phone(sipp, pbx, "1002", "ctl_uas_carrier_reinvite.xml")
        far = await sipp("ctl_uac_trunk_refer.xml", remote=pbx.sip_address,
                         port=carrier_port, service=DID, calls=1, duration_ms=1000,
                         keys={"user": "0123456", "target": OUTSIDE}, recv_timeout_ms=8000,
                         sipp_timeout_s=20).astart()
        (await far.await_result(20)).assert_ok(calls=1)  # 202, NOTIFY 200, BYE

        async def out() -> list[dict[str, str]]:
            return [c for c in await pbx.outbound() if c["status"] == "Talking"]

        [leg] = await pbx.wait_for(out, 10, "1002 connected out through 'second'")
        assert (leg["trunk"], leg["to"], leg["from"]) == ("second", "5559999", "1002")
        assert (await pbx.post("outbound/hangup", {"outboundid": leg["outboundid"]})
                ).json() == {"status": "Success"}
        (await ext.await_result(15)).assert_ok(calls=1)
        (await second.await_result(15)).assert_ok(calls=1)
        await pbx.wait_idle()
    finally:
        await pbx.stop(check_leaks=False)
