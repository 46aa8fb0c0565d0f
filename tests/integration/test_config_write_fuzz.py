"""The write endpoints under odd input: every field of every endpoint given values a
careless or hostile client sends (numbers, lists, objects, nulls, long and non-ASCII text,
patterns that are not patterns). ippbx answers each in its envelope — Success, or Failed
with one of the errnos the endpoints document — never 30001, and the configuration it ends
with is whole: it validates as a file would, survives a restart, and phones' extensions
still register."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from pbx_harness import PbxHarness, TrunkSpec

from ippbx.config import Config
from ippbx.running_config import RunningConfig, build, objects_of
from ippbx.store.sqlite import Store

FIELDS = {
    "extension/add": ["number", "username", "callerid", "registerpassword",
                      "maxregistrations", "hasvoicemail", "vmsecret", "noanswerforward",
                      "ntransferto", "ntransferext", "ntransfernum", "busyforward",
                      "btransferto", "btransfernum", "mobile", "mobileprefix",
                      "enablemobile", "ringtimeout", "maxduration", "dnd", "monitormode"],
    "extension/update": ["extid", "extnumber", "username", "registerpassword", "dnd",
                         "ringtimeout", "maxduration", "busyforward", "btransferto",
                         "btransferext"],
    "extension/delete": ["number"],
    "siptrunk/add": ["trunkname", "trunktype", "host", "port", "username", "password",
                     "fromuser"],
    "siptrunk/update": ["id", "trunkname", "trunktype", "host", "port"],
    "siptrunk/delete": ["trunkname"],
    "outroute/add": ["name", "prefix", "matchpattern", "prepend", "callerid", "trunks"],
    "outroute/update": ["id", "name", "matchpattern", "trunks", "callerid"],
    "outroute/delete": ["name"],
    "inroute/add": ["name", "did", "caller_id", "desttype", "dest", "trunk"],
    "inroute/update": ["name", "did", "desttype", "dest"],
    "inroute/delete": ["name"],
    "paginggroup/add": ["number", "name", "type", "member"],
    "paginggroup/update": ["number", "type", "member"],
    "paginggroup/delete": ["number"],
}
GOOD = {"number": ["1006", "1007", "1001"], "extid": ["1001", "1006", "1999"],
        "trunkname": ["carrier", "carrier2"], "name": ["out", "r1", "did"],
        "id": ["1", "2", "99"], "trunks": ["carrier", "carrier,carrier"],
        "matchpattern": ["X.", "NXXX", "_9."], "desttype": ["extension", "hangup", "queue"],
        "dest": ["1001", "1002"], "trunktype": ["peer", "register"],
        "host": ["127.0.0.1", "sip.example"], "port": ["5060", "5080"],
        "member": ["1001,1002"], "type": ["paging", "intercom"]}
ODD: list[Any] = [
    "", " ", "all", "0", "-1", "65536", "99999999999999999999", 1.5, 7, True, None, [],
    ["1001"], {"a": "b"}, "on", "off", "maybe", "X[", "[9-", "!", "a" * 300, "émoji 📞",
    "1001,1001,,", "\x00", "<xml/>", "${HOME}", "Custom Number", "Extension", "Voicemail",
    "Mobile Number", "Follow System", "Unlimited", "extension:1001", "number:5",
]
ALLOWED_ERRNOS = {"10002", "10003", "10004", "10006", "10011", "10017"}


def body_for(rng: random.Random, endpoint: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for field in FIELDS[endpoint]:
        roll = rng.random()
        if roll < 0.15:
            continue
        if roll < 0.8 and field in GOOD:
            body[field] = rng.choice(GOOD[field])
        else:
            body[field] = rng.choice(ODD)
    return body


async def test_odd_input_never_breaks_the_write_api_or_the_configuration(
        tmp_path: Path) -> None:
    pbx = await PbxHarness.start(tmp_path, trunks=[TrunkSpec("carrier", 5080)])
    rng = random.Random(18)
    outcomes: dict[str, int] = {}
    try:
        for _ in range(600):
            endpoint = rng.choice(list(FIELDS))
            body = body_for(rng, endpoint)
            answer = (await pbx.post(endpoint, body)).json()
            if answer["status"] == "Success":
                outcomes["Success"] = outcomes.get("Success", 0) + 1
                continue
            assert answer["status"] == "Failed", (endpoint, body, answer)
            assert answer["errno"] in ALLOWED_ERRNOS, (endpoint, body, answer)
            outcomes[answer["errno"]] = outcomes.get(answer["errno"], 0) + 1
        # both kinds of answer happened, so the fuzzing reached the changes themselves
        assert outcomes.get("Success", 0) >= 10 and outcomes.get("10017", 0) >= 20, outcomes
        in_force = pbx.app.running.config
        Config.model_validate(build(in_force, objects_of(in_force)))  # (whole, valid)
        extensions = (await pbx.post("extensionlist/query", {})).json()["extlist"]
        assert [e["extnumber"] for e in extensions] == [e.number for e in in_force.extensions]
        path = in_force.store.path
    finally:
        await pbx.stop()
    store = Store(path)  # what a restart would take: the same configuration
    try:
        assert RunningConfig.open(in_force, store).config == in_force
    finally:
        store.close()
