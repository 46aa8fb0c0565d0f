"""Transfers as a CRM sees them: real sipp calls through ippbx, transferred by the API and
by the phone (REFER), with a real HTTP receiver taking the reports.

What a CRM needs from a transfer: the transferor goes Idle and the target Ringing, then
InUse; the target's RING and ANSWER arrive with the call's callid and the trunk leg's
outboundid (a screen-pop for the target); the CDR names the extensions that took part,
and `cdr/download` by the target's extid finds it.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import pytest
from pbx_harness import PbxHarness, TrunkSpec, phone
from reports_harness import Receiver, call_reports, until
from sipp_harness import SippFactory, free_port

NUMBER = "5551234"


def statuses(got: list[dict[str, Any]], ext: str) -> list[str]:
    return [r["status"] for r in got
            if r["action"] == "ExtensionStatus" and r["extension"] == ext]


async def download(pbx: PbxHarness, extid: str) -> list[dict[str, str]]:
    """CDR rows `cdr/get_random` + `cdr/download` give for `extid` today."""
    day = time.strftime("%Y-%m-%d", time.gmtime())
    body = {"extid": extid, "starttime": f"{day} 00:00:00", "endtime": f"{day} 23:59:59"}
    answer = (await pbx.post("cdr/get_random", body)).json()
    assert answer["status"] == "Success", answer
    url = (f"{pbx.api_url}/cdr/download?extid={extid}&starttime={body['starttime']}"
           f"&endtime={body['endtime']}&token={pbx.token}&random={answer['random']}")
    response = await pbx.client.get(url)
    assert response.headers["content-type"].startswith("text/csv"), response.text
    return list(csv.DictReader(io.StringIO(response.text)))


@pytest.mark.parametrize("how", ["api", "refer"])
async def test_transferred_outbound_call_reports_and_cdr(
    tmp_path: Path, sipp: SippFactory, how: str
) -> None:
    """1001 calls out through the carrier, then transfers the carrier party to 1002 (by
    `calltransfer` or by a REFER from its phone); the API hangs up at the end."""
    trunk_port = free_port()
    receiver = await Receiver().start()
    pbx = await PbxHarness.start(tmp_path, [TrunkSpec("carrier", trunk_port)])
    try:
        await pbx.post("heartbeat", {"port": str(receiver.port), "url": "crm"})
        carrier = await sipp("ctl_uas_carrier_reinvite.xml", port=trunk_port, calls=1,
                             sipp_timeout_s=30).astart()
        target = await phone(sipp, pbx, "1002", "ctl_uas_target.xml", sipp_timeout_s=30)
        if how == "api":
            near = await sipp("pbx_uac_auth_recv_bye.xml", remote=pbx.sip_address,
                              service="9" + NUMBER, calls=1, auth=("1001", "secret1001"),
                              keys={"user": "1001"}, recv_timeout_ms=10000,
                              sipp_timeout_s=30).astart()
        else:
            near = await sipp("ctl_uac_refer.xml", remote=pbx.sip_address, calls=1,
                              auth=("1001", "secret1001"),
                              keys={"user": "1001", "target": "1002"}, service="9" + NUMBER,
                              duration_ms=1000, recv_timeout_ms=8000,
                              sipp_timeout_s=30).astart()

        async def talking() -> list[dict[str, str]]:
            return [c for c in await pbx.outbound() if c["status"] == "Talking"]

        [before] = await pbx.wait_for(talking, 10, "the call to be answered")
        assert before["from"] == "1001"
        call = pbx.app.registry.by_outboundid(before["outboundid"])
        assert call is not None
        callid = call.callid
        if how == "api":
            answer = (await pbx.post("calltransfer", {"callid": callid, "transferor": "1001",
                                                      "transferto": "1002"})).json()
            assert answer["status"] == "Success", answer
        (await near.await_result(20)).assert_ok(calls=1)

        async def transferred() -> bool:
            return call.caller.extension == "1002" and call.caller.answered is not None

        await pbx.wait_for(transferred, 10, "1002 to take 1001's place")
        await until(lambda: "InUse" in statuses(receiver.at("/crm"), "1002"), 10,
                    "1002 InUse")
        assert (await pbx.post("outbound/hangup", {"outboundid": before["outboundid"]})
                ).json() == {"status": "Success"}
        (await carrier.await_result(15)).assert_ok(calls=1)
        (await target.await_result(15)).assert_ok(calls=1)
        await until(lambda: any(r["action"] == "NewCdr" for r in receiver.at("/crm"))
                    and "Idle" in statuses(receiver.at("/crm"), "1002"), 10, "the NewCdr")
        await pbx.wait_idle()
        by_target = await download(pbx, "1002")
        by_transferor = await download(pbx, "1001")
    finally:
        await pbx.stop(check_leaks=False)
        await receiver.stop()

    got = receiver.at("/crm")
    assert statuses(got, "1001") == ["InUse", "Idle"]  # Idle once it has left the call
    assert statuses(got, "1002")[-3:] == ["Ringing", "InUse", "Idle"]
    assert statuses(got, "1002")[0] == "Registered"
    trunk = {"from": "1001", "to": NUMBER, "trunk": "carrier",
             "outboundid": before["outboundid"]}
    reports = call_reports(got) + [r for r in got if r["action"] == "Tranfer"]
    mine = [r for r in reports if r["callid"] == callid]
    assert len(mine) == len(reports)  # every report of the call carries its callid
    actions = [r["action"] for r in call_reports(got)]
    assert actions == ["ALERT", "RING", "ANSWER", "ANSWER",  # 1001 and the carrier
                       "BYE",  # 1001 leaves
                       "ALERT", "RING", "ANSWER", "ANSWER",  # 1002 takes the call
                       "BYE", "BYE", "NewCdr"]  # the API hangs up
    sequence = call_reports(got)
    assert sequence[4] == {"action": "BYE", "callid": callid, "ext": {"extid": "1001"},
                           "outbound": trunk, "sn": "ippbxtest01"}
    assert sequence[6] == {"action": "RING", "callid": callid, "ext": {"extid": "1002"},
                           "outbound": trunk, "sn": "ippbxtest01"}
    assert list(sequence[7])[2:4] == ["ext", "outbound"] and sequence[7]["ext"] == {
        "extid": "1002"}
    tranfers = [r for r in got if r["action"] == "Tranfer"]
    if how == "refer":  # reported for a transfer made from the phone only, as the vendors do
        assert tranfers == [{"action": "Tranfer", "callid": callid, "ext": {"extid": "1001"},
                             "outbound": trunk, "sn": "ippbxtest01"}]
    else:
        assert tranfers == []
    cdr = sequence[-1]
    assert (cdr["callfrom"], cdr["callto"], cdr["status"], cdr["type"]) == (
        "1001", "9" + NUMBER, "ANSWERED", "Outbound")
    assert [row["callid"] for row in by_target] == [callid]
    assert [row["callid"] for row in by_transferor] == [callid]
    assert by_target[0]["callfrom"] == "1001"
