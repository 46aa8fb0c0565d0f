"""Control Inbound Call end to end: a real ippbx, a carrier and extension 1002 played by
ippbx's own UA on loopback (`AudioPhone`), an application logged in over the real HTTP API
receiving its reports on a real HTTP receiver.

The carrier calls DID 5550200, whose inbound route (`held`, to extension 1002) has
`control_inbound_call`; DID 5550100 (the harness's route `did`, to 1002 too) has not.
Two sessions get the reports: OpenVox's flat form at `/ov` (v0.0.1) and Yeastar's
`call:[…]` form at `/ys` (v1.1.0, login version 1.0.2); the application decides on the
Yeastar path unless a test says otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

from audio_phone import SDP_HEADERS, AudioPhone
from pbx_harness import API_PASSWORD, PbxHarness, Start, TrunkSpec
from reports_harness import SN, Receiver, until
from rtp_audio import sdp_offer
from sipp_harness import free_port

from ippbx.sip.message import Request, Response

HELD_DID = "5550200"
PLAIN_DID = "5550100"
CALL_ACTIONS = ("Invite", "Incoming", "ALERT", "RING", "ANSWER", "ANSWERED", "BYE",
                "CallFailed", "NewCdr")
WAIT = 10.0  # the most a step here may take (they take milliseconds)


def held_route(window: float) -> str:
    return f"""
[[inbound_routes]]
name = "held"
trunk = "carrier"
did = "{HELD_DID}"
destination = "extension:1002"
control_inbound_call = true

[calls]
inbound_control_seconds = {window}
"""


# -- the cast ------------------------------------------------------------------------------
class Scene:
    """One ippbx, its carrier, extension 1002 and the application's receiver."""

    def __init__(self, pbx: PbxHarness, carrier: AudioPhone, ext: AudioPhone,
                 receiver: Receiver) -> None:
        self.pbx, self.carrier, self.ext, self.receiver = pbx, carrier, ext, receiver
        self.tasks: list[asyncio.Future[Any]] = []

    @classmethod
    async def start(cls, start_pbx: Start, window: float = 10.0) -> Scene:
        trunk_port = free_port()
        pbx = await start_pbx([TrunkSpec("carrier", trunk_port)], extra=held_route(window))
        receiver = await Receiver().start()
        carrier = await AudioPhone.carrier(pbx.sip_address, trunk_port)
        ext = await AudioPhone.extension(pbx.sip_address, "1002")
        scene = cls(pbx, carrier, ext, receiver)
        await scene.log_in()
        return scene

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.carrier.stop()
        await self.ext.stop()
        await self.receiver.stop()

    async def log_in(self) -> None:
        """The two sessions; requests go on the Yeastar path with the second's token."""
        pbx = self.pbx
        password = hashlib.md5(API_PASSWORD.encode()).hexdigest()
        for version, url, more in (("v0.0.1", "ov", {}), ("v1.1.0", "ys", {"version": "1.0.2"})):
            body = {"username": "api", "password": password, "port": str(self.receiver.port),
                    "url": url, **more}
            login = f"http://127.0.0.1:{pbx.app.api.port}/api/{version}/login"
            answer = (await pbx.client.post(login, json=body)).json()
            assert answer["status"] == "Success", answer
            pbx.token, pbx.api_version = answer["token"], version

    def call(self, did: str) -> asyncio.Future[Response]:
        """The carrier calls `did` (its final answer, once it has one)."""
        task = asyncio.ensure_future(self.carrier.call(did, timeout=WAIT))
        self.tasks.append(task)
        return task

    async def api(self, endpoint: str, body: dict[str, Any], version: str = "v1.1.0"
                  ) -> dict[str, Any]:
        pbx = self.pbx
        url = f"http://127.0.0.1:{pbx.app.api.port}/api/{version}/{endpoint}?token={pbx.token}"
        answer: dict[str, Any] = (await pbx.client.post(url, json=body)).json()
        return answer

    async def fails(self, endpoint: str, body: dict[str, Any], errno: int,
                    version: str = "v1.1.0") -> None:
        answer = await self.api(endpoint, body, version)
        assert answer == {"status": "Failed", "errno": str(errno)}, (endpoint, body, answer)

    def reports(self, path: str = "/ys") -> list[dict[str, Any]]:
        return [r for r in self.receiver.at(path) if r["action"] in CALL_ACTIONS]

    def actions(self, path: str = "/ys") -> list[str]:
        return [r["action"] for r in self.reports(path)]

    async def report(self, action: str, path: str = "/ys") -> dict[str, Any]:
        """The (one) report `action` at `path`, once it arrived."""
        got = await until(lambda: [r for r in self.reports(path) if r["action"] == action],
                          WAIT, f"{action} at {path}")
        assert len(got) == 1, got
        return dict(got[0])

    def arrival(self, action: str) -> float:
        [at] = [g.at for g in self.receiver.got
                if g.path == "/ys" and g.body["action"] == action]
        return at

    async def hears_ringing(self) -> None:
        await until(lambda: any(r.status == 180 for r in self.carrier.provisional), WAIT,
                    "the carrier to hear ringing")

    async def idle(self) -> None:
        """Nothing left: no call, no call task, no dialog, no call held or remembered."""
        await self.pbx.wait_idle()
        inbound = self.pbx.app.pbx.b2bua.inbound
        assert len(inbound) == 0 and inbound.remembered == 0


def inbound_of(invite: dict[str, Any]) -> dict[str, str]:
    [party] = invite["call"]
    return dict(party["inbound"])


# -- accept, refuse, no decision -----------------------------------------------------------
async def test_accept_rings_the_extension_after_invite_and_incoming(start_pbx: Start) -> None:
    scene = await Scene.start(start_pbx)
    pbx, carrier, ext = scene.pbx, scene.carrier, scene.ext
    try:
        calling = scene.call(HELD_DID)
        invite = await scene.report("Invite")
        inbound = inbound_of(invite)
        iid = inbound["inboundid"]
        assert invite == {"action": "Invite", "callid": iid, "call": [{"inbound": {
            "from": "carrier", "to": HELD_DID, "trunk": "carrier", "inboundid": iid}}],
            "sn": SN}
        assert list(invite) == ["action", "callid", "call", "sn"]
        # held: the caller hears ringing, nobody is rung, the call is being set up
        await scene.hears_ringing()
        assert ext.incoming == [] and not calling.done()
        assert await pbx.inbound(iid) == [{"inboundid": iid, "from": "carrier",
                                           "to": HELD_DID, "trunk": "carrier",
                                           "callee": [{"extid": ""}], "status": "Progress"}]

        assert await scene.api("inbound/accept", {"inboundid": iid}) == {"status": "Success"}
        assert (await calling).status == 200  # 1002 rang and answered
        await ext.wait_established()
        assert len(ext.incoming) == 1
        await scene.report("ALERT")
        assert scene.arrival("Incoming") <= scene.arrival("ALERT")
        for action in ("inbound/accept", "inbound/refuse"):  # decided already
            await scene.fails(action, {"inboundid": iid}, 10016)
        assert (await carrier.hangup()).status == 200
        await ext.wait_ended()
        await scene.report("NewCdr")
        await scene.report("NewCdr", "/ov")
        await scene.idle()
        await scene.fails("inbound/accept", {"inboundid": iid}, 10007)  # the call is over
        await pbx.stop()
    finally:
        await scene.close()

    ys = scene.reports()
    assert [r["action"] for r in ys] == ["Invite", "Incoming", "ALERT", "RING", "ANSWER",
                                         "ANSWERED", "BYE", "BYE", "NewCdr"]
    assert ys[1] == {"action": "Incoming", "callid": iid, "call": [{"inbound": inbound}],
                     "sn": SN}
    assert all(r["callid"] == iid for r in ys)
    assert ys[-1]["status"] == "ANSWERED" and ys[-1]["type"] == "Inbound"
    ov = scene.reports("/ov")  # the flat form
    assert ov[:2] == [{"action": "Invite", "callid": iid, "inbound": inbound, "sn": SN},
                      {"action": "Incoming", "callid": iid, "inbound": inbound, "sn": SN}]
    assert [r["action"] for r in ov] == ["Invite", "Incoming", "ALERT", "RING", "ANSWER",
                                         "ANSWER", "BYE", "BYE", "NewCdr"]


async def test_refuse_declines_the_call_and_rings_nobody(start_pbx: Start) -> None:
    scene = await Scene.start(start_pbx)
    pbx = scene.pbx
    try:
        calling = scene.call(HELD_DID)
        iid = inbound_of(await scene.report("Invite"))["inboundid"]
        await scene.hears_ringing()
        # on the OpenVox path too (every endpoint is served on both)
        answer = await scene.api("inbound/refuse", {"inboundid": iid}, "v0.0.1")
        assert answer == {"status": "Success"}
        assert (await calling).status == 603  # Decline
        await scene.report("NewCdr")
        await scene.report("NewCdr", "/ov")
        await scene.idle()
        assert scene.ext.incoming == []
        await scene.fails("inbound/refuse", {"inboundid": iid}, 10007)
        [cdr] = [r for r in pbx.app.store.cdrs() if r.callid == iid]
        await pbx.stop()
    finally:
        await scene.close()

    assert scene.actions() == ["Invite", "CallFailed", "NewCdr"]  # no Incoming, no RING
    failed = scene.reports()[1]
    assert failed["reason"] == "603 Declined" and failed["call"] == scene.reports()[0]["call"]
    assert scene.reports("/ov")[1]["reason"] == 603
    assert scene.reports()[2]["status"] == "NO ANSWER"
    assert (cdr.cause, cdr.hangup_by, cdr.type) == (603, "api", "Inbound")


async def test_no_decision_in_the_window_lets_the_call_through(start_pbx: Start) -> None:
    window = 1.0
    scene = await Scene.start(start_pbx, window=window)
    try:
        called = time.monotonic()
        calling = scene.call(HELD_DID)
        iid = inbound_of(await scene.report("Invite"))["inboundid"]
        await until(lambda: scene.ext.incoming, WAIT, "1002 to be rung")
        waited = time.monotonic() - called  # 1002 is rung once the window has passed
        assert window <= waited <= window + 5, waited
        assert (await calling).status == 200  # nobody decided: 1002 rang and answered
        await scene.ext.wait_established()
        await scene.report("Incoming")
        await scene.report("ALERT")
        assert scene.arrival("Incoming") <= scene.arrival("ALERT")
        await scene.fails("inbound/accept", {"inboundid": iid}, 10016)  # too late
        await scene.fails("inbound/refuse", {"inboundid": iid}, 10016, "v0.0.1")
        assert (await scene.carrier.hangup()).status == 200
        await scene.ext.wait_ended()
        await scene.report("NewCdr")
        await scene.idle()
        await scene.pbx.stop()
    finally:
        await scene.close()
    assert scene.actions() == ["Invite", "Incoming", "ALERT", "RING", "ANSWER", "ANSWERED",
                               "BYE", "BYE", "NewCdr"]


# -- giving up while held ------------------------------------------------------------------
async def test_caller_cancelling_or_a_hangup_while_held_leaves_nothing(
        start_pbx: Start) -> None:
    scene = await Scene.start(start_pbx, window=30.0)
    pbx, carrier = scene.pbx, scene.carrier
    try:
        # the carrier gives up (CANCEL) while the call waits for a decision
        provisional: list[Response] = []
        invite = carrier.ua.invite(invite_request(carrier, HELD_DID), carrier.pbx,
                                   on_provisional=provisional.append)
        final = asyncio.ensure_future(invite.final())
        scene.tasks.append(final)
        iid = inbound_of(await scene.report("Invite"))["inboundid"]
        await until(lambda: any(r.status == 180 for r in provisional), WAIT, "180")
        cancelled = time.monotonic()
        invite.cancel()
        assert (await asyncio.wait_for(final, WAIT)).status == 487
        assert time.monotonic() - cancelled < 5  # at once, not at the window's end
        await scene.report("NewCdr")
        await scene.idle()
        await scene.fails("inbound/accept", {"inboundid": iid}, 10007)

        # the application hangs it up instead of deciding
        calling = scene.call(HELD_DID)
        await until(lambda: len([r for r in scene.reports() if r["action"] == "Invite"]) == 2,
                    WAIT, "the second Invite")
        second = inbound_of(scene.reports()[-1])["inboundid"]
        assert await scene.api("inbound/hangup", {"inboundid": second}) == {"status": "Success"}
        assert (await calling).status == 487
        await until(lambda: scene.actions().count("NewCdr") == 2, WAIT, "the second NewCdr")
        await scene.idle()
        assert scene.ext.incoming == []
        await pbx.stop()
    finally:
        await scene.close()
    assert scene.actions() == 2 * ["Invite", "CallFailed", "NewCdr"]
    assert [r["reason"] for r in scene.reports() if r["action"] == "CallFailed"] == 2 * [
        "487 Request Terminated"]


def invite_request(carrier: AudioPhone, did: str) -> Request:
    """An INVITE from the carrier to `did` at ippbx, with an SDP offer."""
    host, port = carrier.rtp.address
    uri = f"sip:{did}@ippbx.test"
    return Request("INVITE", uri, [
        ("From", f"<sip:{carrier.user}@ippbx.test>;tag={carrier.ua.new_tag()}"),
        ("To", f"<{uri}>"),
        ("Call-ID", carrier.ua.new_call_id()),
        ("CSeq", "1 INVITE"),
        ("Contact", f"<{carrier.ua.contact_uri(carrier.user)}>"),
        *SDP_HEADERS,
    ], sdp_offer(host, port, 1))


# -- errors, and a route without the switch ------------------------------------------------
async def test_a_route_without_control_is_unchanged_and_errors(start_pbx: Start) -> None:
    scene = await Scene.start(start_pbx)
    try:
        for action in ("inbound/accept", "inbound/refuse"):
            await scene.fails(action, {}, 10004)
            await scene.fails(action, {"inboundid": ""}, 10004)
            await scene.fails(action, {"inboundid": "1589879501.901"}, 10007)
        calling = scene.call(PLAIN_DID)
        assert (await calling).status == 200  # straight to 1002, as ever
        await scene.ext.wait_established()
        [call] = await scene.pbx.inbound()
        assert call["status"] == "Talking", call
        # a live inbound call, but never held for a decision
        await scene.fails("inbound/accept", {"inboundid": call["inboundid"]}, 10007)
        assert (await scene.carrier.hangup()).status == 200
        await scene.ext.wait_ended()
        await scene.report("NewCdr")
        await scene.idle()
        await scene.pbx.stop()
    finally:
        await scene.close()
    assert scene.actions() == ["ALERT", "RING", "ANSWER", "ANSWERED", "BYE", "BYE", "NewCdr"]
