"""Report building and rendering: domain events → the vendor report sequences."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ippbx.api.reports import (
    Action,
    Form,
    Report,
    ReportBuilder,
    destination,
    form_of,
    render,
    route_of,
)
from ippbx.api.sessions import Session
from ippbx.config import Config, parse_config
from ippbx.pbx.calls import CallRegistry, Leg, LegKind, LegStatus
from ippbx.pbx.extension_state import ExtensionStates

SN = "sn1"
UTC = ZoneInfo("UTC")
CONFIG_TEXT = """
[api]
password = "x"
[[extensions]]
number = "1001"
password = "p"
[[extensions]]
number = "1002"
password = "p"
[[extensions]]
number = "1003"
password = "p"
"""
CONFIG = parse_config(CONFIG_TEXT)


class Feed:
    """A registry whose events are turned into rendered reports in both forms."""

    def __init__(self, config: Config | None = None) -> None:
        self.reg = CallRegistry()
        self.builder = ReportBuilder(config or CONFIG, ExtensionStates(self.reg))
        self.ov: list[dict[str, Any]] = []
        self.ys: list[dict[str, Any]] = []
        self.reg.subscribe(self._on)

    def _on(self, event: Any) -> None:
        for report in self.builder.on_event(event):
            self.ov.append(render(report, Form.OPENVOX, SN, UTC))
            self.ys.append(render(report, Form.YEASTAR, SN, UTC))

    def actions(self, form: str = "ov") -> list[str]:
        return [r["action"] if r["action"] != "ExtensionStatus"
                else f"{r['extension']}:{r['status']}" for r in getattr(self, form)]


def ext_to_trunk(feed: Feed) -> tuple[Leg, Leg]:
    caller = Leg(LegKind.EXTENSION, "1001", "95551234", extension="1001", created=100.0)
    call = feed.reg.start_call(caller, "95551234")
    out = Leg(LegKind.TRUNK, "66666", "5551234", trunk="carrier", created=100.0)
    feed.reg.add_callee(call, out)
    return caller, out


def test_ext_to_trunk_answered_openvox_and_yeastar() -> None:
    feed = Feed()
    caller, out = ext_to_trunk(feed)
    feed.reg.ringing(out.id, now=101.0)
    feed.reg.ringing(out.id, now=101.5)  # a 183 after the 180: once
    feed.reg.set_status(out.id, LegStatus.TALKING, now=103.0)
    feed.reg.set_status(caller.id, LegStatus.TALKING, now=103.0)
    feed.reg.set_status(out.id, LegStatus.WAIT)  # hold and resume: no new ANSWER
    feed.reg.set_status(out.id, LegStatus.TALKING)
    feed.reg.end_leg(out.id, 200, now=110.0)  # the carrier hung up first
    feed.reg.end_leg(caller.id, 200, now=110.0)
    assert feed.actions() == ["1001:InUse", "ALERT", "RING", "ANSWER", "ANSWER", "1001:Hold",
                              "1001:InUse", "BYE", "BYE", "1001:Idle", "NewCdr"]
    assert feed.actions("ys") == ["1001:Busy", "ALERT", "RING", "ANSWER", "ANSWERED",
                                  "1001:Hold", "1001:Busy", "BYE", "BYE", "1001:Idle", "NewCdr"]
    feed.ov = [r for r in feed.ov if r["action"] != "ExtensionStatus" or r["status"] != "Hold"]
    del feed.ov[5]  # the InUse after the hold
    cid = caller.id
    trunk = {"from": "66666", "to": "5551234", "trunk": "carrier", "outboundid": out.id}
    ext = {"extid": "1001"}
    assert feed.ov[1] == {"action": "ALERT", "callid": cid, "ext": ext, "sn": SN}
    assert list(feed.ov[2].items()) == [("action", "RING"), ("callid", cid),
                                        ("outbound", trunk), ("ext", ext), ("sn", SN)]
    assert list(feed.ov[4])[2:4] == ["ext", "outbound"]  # caller side: caller first
    assert list(feed.ov[5])[2:4] == ["outbound", "ext"]  # the carrier hung up first
    assert list(feed.ov[6])[2:4] == ["ext", "outbound"]
    del feed.ov[7]  # Idle
    assert feed.ov[7] == {
        "action": "NewCdr", "callid": cid, "timestart": "1970-01-01 00:01:40",
        "callfrom": "1001", "callto": "95551234", "callduraction": "10",
        "talkduraction": "7", "status": "ANSWERED", "type": "Outbound",
        "srctrunkname": "", "desttrunkname": "carrier", "sn": SN,
    }
    assert feed.ys[2] == {"action": "RING", "callid": cid,
                          "call": [{"outbound": trunk}, {"ext": ext}], "sn": SN}
    assert feed.ys[4]["call"] == [{"ext": ext}, {"outbound": trunk}]
    assert feed.ys[10] == feed.ov[7]


def test_answer_without_ringing_still_sends_alert_and_ring_first() -> None:
    feed = Feed()
    caller, out = ext_to_trunk(feed)
    feed.reg.set_status(out.id, LegStatus.TALKING)
    assert feed.actions() == ["1001:InUse", "ALERT", "RING", "ANSWER", "ANSWER"]


@pytest.mark.parametrize(("cause", "reason", "status"), [
    (486, "486 Busy Here", "BUSY"), (480, "480 Temporarily unavailable", "NO ANSWER"),
    (487, "487 Request Terminated", "NO ANSWER"), (503, "503 Service Unavailable", "FAILED"),
])
def test_failed_call(cause: int, reason: str, status: str) -> None:
    feed = Feed()
    caller, out = ext_to_trunk(feed)
    feed.reg.end_leg(out.id, cause)
    feed.reg.end_leg(caller.id, cause)
    assert feed.actions() == ["1001:InUse", "1001:Idle", "CallFailed", "NewCdr"]
    failed = feed.ov[2]
    assert list(failed) == ["action", "reason", "callid", "outbound", "ext", "sn"]
    assert failed["reason"] == cause and failed["callid"] == caller.id
    assert feed.ys[2]["reason"] == reason
    assert feed.ys[2]["call"] == [{"outbound": failed["outbound"]}, {"ext": {"extid": "1001"}}]
    assert feed.ov[3]["status"] == status


def test_internal_call_lists_two_extensions_as_an_array() -> None:
    feed = Feed()
    caller = Leg(LegKind.EXTENSION, "1001", "1002", extension="1001")
    call = feed.reg.start_call(caller, "1002")
    callee = Leg(LegKind.EXTENSION, "1001", "1002", extension="1002")
    feed.reg.add_callee(call, callee)
    feed.reg.ringing(callee.id)
    feed.reg.set_status(callee.id, LegStatus.TALKING)
    feed.reg.set_status(caller.id, LegStatus.TALKING)
    feed.reg.end_leg(caller.id)
    feed.reg.end_leg(callee.id)
    assert feed.actions() == ["1001:InUse", "1002:Ringing", "ALERT", "RING", "1002:InUse",
                              "ANSWER", "ANSWER", "BYE", "1001:Idle", "BYE", "1002:Idle",
                              "NewCdr"]
    assert feed.ov[2]["ext"] == {"extid": "1001"}
    assert feed.ov[3]["ext"] == {"extid": ["1002", "1001"]}
    assert feed.ov[6]["ext"] == {"extid": ["1001", "1002"]}
    assert feed.ys[3]["call"] == [{"ext": {"extid": "1002"}}, {"ext": {"extid": "1001"}}]
    assert feed.ov[11]["type"] == "Internal"


def test_inbound_call_parties() -> None:
    feed = Feed()
    inbound = Leg(LegKind.TRUNK, "0123456", "5550100", trunk="carrier")
    call = feed.reg.start_call(inbound, "5550100")
    ext = Leg(LegKind.EXTENSION, "0123456", "1002", extension="1002")
    feed.reg.add_callee(call, ext)
    feed.reg.ringing(ext.id)
    trunk = {"from": "0123456", "to": "5550100", "trunk": "carrier", "inboundid": inbound.id}
    assert feed.actions() == ["1002:Ringing", "ALERT", "RING"]
    assert feed.ov[1] == {"action": "ALERT", "callid": inbound.id, "inbound": trunk, "sn": SN}
    assert list(feed.ov[2].items())[2:4] == [("ext", {"extid": "1002"}), ("inbound", trunk)]


def test_busy_extension_stays_in_use_and_idles_after_its_last_call() -> None:
    feed = Feed()
    a = feed.reg.start_call(Leg(LegKind.EXTENSION, "1001", "1002", extension="1001"), "1002")
    b = feed.reg.start_call(Leg(LegKind.TRUNK, "0123", "5550100", trunk="carrier"), "5550100")
    ring = Leg(LegKind.EXTENSION, "0123", "1001", extension="1001")
    feed.reg.add_callee(b, ring)
    feed.reg.ringing(ring.id)  # call waiting: 1001 stays InUse
    feed.reg.end_leg(ring.id, 486)
    feed.reg.end_leg(b.caller.id, 486)
    feed.reg.end_leg(a.caller.id, 487)
    statuses = [a for a in feed.actions() if ":" in a]
    assert statuses == ["1001:InUse", "1001:Idle"]


def test_registration_and_bootup() -> None:
    feed = Feed()
    feed.reg.registration_changed("1003", True)
    feed.reg.registration_changed("1003", False)
    assert [r["status"] for r in feed.ov] == ["Registered", "Unregistered"]
    assert render(Report(Action.BOOTUP), Form.YEASTAR, SN, UTC) == {"action": "BootUp",
                                                                    "sn": SN}


def session(**kw: str) -> Session:
    return Session(token="t" * 32, dialect=kw.pop("dialect", "openvox"),
                   source_ip=kw.pop("source_ip", "110.22.2.3"), **kw)


@pytest.mark.parametrize(("fields", "url"), [
    ({"port": "8260"}, "http://110.22.2.3:8260/"),
    ({}, "http://110.22.2.3:8260/"),
    ({"port": "8260", "url": "report"}, "http://110.22.2.3:8260/report"),
    ({"port": "8260", "url": "/a/b/", "urltag": "0"}, "http://110.22.2.3:8260/a/b"),
    ({"port": "9", "url": "110.22.2.3:8260/report", "urltag": "1"},
     "http://110.22.2.3:8260/report"),
    ({"port": "9", "url": "https://x.example:443/r", "urltag": "1"}, "https://x.example:443/r"),
    ({"port": "9", "url": "http://x.example/r"}, "http://x.example/r"),
    ({"port": "8280", "ipaddr": "172.16.6.150"}, "http://172.16.6.150:8280/"),
    ({"port": "8260", "source_ip": "::1"}, "http://[::1]:8260/"),
])
def test_destination(fields: dict[str, str], url: str) -> None:
    assert destination(session(**fields)) == url


def test_form_follows_the_login_version_alone() -> None:
    assert form_of(session()) is Form.OPENVOX
    assert form_of(session(version="0.0.1")) is Form.OPENVOX
    assert form_of(session(version="1.0.2")) is Form.YEASTAR
    assert form_of(session(version=" 1.0.2 ", dialect="openvox")) is Form.YEASTAR
    # a Yeastar-path login without a version reads the flat form (a real connector does)
    assert form_of(session(dialect="yeastar")) is Form.OPENVOX
    assert form_of(session(dialect="yeastar", version="1.1.0")) is Form.OPENVOX


def test_sessions_with_one_destination_and_form_share_a_route() -> None:
    a = session(port="8260", url="cb")
    b = session(port="8260", url="/cb/", dialect="yeastar", source_ip="110.22.2.3")
    assert route_of(a) == route_of(b) == "openvox http://110.22.2.3:8260/cb"
    assert route_of(session(port="8260", url="cb", version="1.0.2")) != route_of(a)
    assert route_of(session(port="8261", url="cb")) != route_of(a)


def test_phone_transfer_reports_tranfer_and_a_bye_for_the_transferor() -> None:
    feed = Feed()
    caller, out = ext_to_trunk(feed)
    feed.reg.set_status(out.id, LegStatus.TALKING, now=103.0)
    feed.reg.set_status(caller.id, LegStatus.TALKING, now=103.0)
    call = feed.reg.find(out.id)
    assert call is not None
    feed.reg.transferred(call, caller, "1002")  # 1001 sent REFER to 1002
    target = Leg(LegKind.EXTENSION, "66666", "1002", extension="1002")
    feed.reg.replace_leg(call, caller.id, target)
    assert call.callid == caller.id and call.caller is target
    tranfer = next(r for r in feed.ov if r["action"] == "Tranfer")
    trunk = {"from": "66666", "to": "5551234", "trunk": "carrier", "outboundid": out.id}
    assert tranfer == {"action": "Tranfer", "callid": caller.id, "ext": {"extid": "1001"},
                       "outbound": trunk, "sn": SN}
    bye = next(r for r in feed.ov if r["action"] == "BYE")
    assert list(bye)[2:4] == ["ext", "outbound"] and bye["ext"] == {"extid": "1001"}
    # the target rings and answers: its state, RING and ANSWER reach the CRM
    feed.reg.ringing(target.id)
    feed.reg.set_status(target.id, LegStatus.TALKING)
    after = feed.actions()[feed.actions().index("Tranfer"):]
    assert after == ["Tranfer", "BYE", "1001:Idle", "1002:Ringing", "ALERT", "RING",
                     "1002:InUse", "ANSWER", "ANSWER"]
    ring = feed.ov[-4]
    assert ring == {"action": "RING", "callid": caller.id, "ext": {"extid": "1002"},
                    "outbound": trunk, "sn": SN}
    assert list(feed.ov[-2])[2:4] == ["ext", "outbound"]  # the target answers
    assert list(feed.ov[-1])[2:4] == ["outbound", "ext"]  # the party that stayed
    # the call ends: a BYE pair for the target and the carrier, the CDR names 1001
    feed.reg.end_leg(out.id)
    feed.reg.end_leg(target.id)
    assert feed.actions()[-4:] == ["BYE", "BYE", "1002:Idle", "NewCdr"]
    cdr = feed.ov[-1]
    assert cdr["action"] == "NewCdr" and cdr["callfrom"] == "1001"


def test_a_transfer_target_that_fails_gets_no_bye() -> None:
    feed = Feed()
    caller, out = ext_to_trunk(feed)
    feed.reg.set_status(out.id, LegStatus.TALKING)
    feed.reg.set_status(caller.id, LegStatus.TALKING)
    call = feed.reg.find(out.id)
    assert call is not None
    target = Leg(LegKind.EXTENSION, "66666", "1002", extension="1002")
    feed.reg.replace_leg(call, caller.id, target)
    feed.reg.end_leg(target.id, 486)
    assert [a for a in feed.actions() if a == "BYE"] == ["BYE"]  # the transferor's only
    assert feed.actions()[-2:] == ["1002:Ringing", "1002:Idle"]


def test_extension_status_can_be_turned_off_globally_and_per_extension() -> None:
    one = 'number = "1002"\npassword = "p"'
    quiet = parse_config(CONFIG_TEXT.replace(one, one + "\nreport_status = false"))
    feed = Feed(quiet)
    caller = Leg(LegKind.EXTENSION, "1001", "1002", extension="1001")
    call = feed.reg.start_call(caller, "1002")
    callee = Leg(LegKind.EXTENSION, "1001", "1002", extension="1002")
    feed.reg.add_callee(call, callee)
    feed.reg.set_status(callee.id, LegStatus.TALKING)
    assert feed.actions() == ["1001:InUse", "ALERT", "RING", "ANSWER", "ANSWER"]
    off = parse_config(CONFIG_TEXT + "[reports]\nextension_status = false\n")
    feed = Feed(off)
    ext_to_trunk(feed)
    feed.reg.registration_changed("1003", True)
    assert feed.actions() == []
