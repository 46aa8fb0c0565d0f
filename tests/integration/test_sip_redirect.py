"""3xx redirects from a callee (a phone forwarding its calls, a carrier), with real sipp
peers through ippbx.

By default ippbx follows a redirect: the number each Contact of the 3xx names (highest q
first) is dialled as a new dial by the caller, through the caller's own dial plan, so a
redirect reaches nothing the caller could not dial itself; the redirected callee leg ends
and a new one takes its place (`outbound/query` shows the new target). A redirect back to
a target the call has tried, or a fourth redirect, fails the call with 482. With
`[calls] redirects = "relay"` the caller gets the 3xx instead, its Contacts naming the
same numbers at ippbx's address.

Extension 1001 (sipp, digest auth) calls 1002, a sipp phone answering 302
(redirect_uas_302.xml, its Contact given in the test); route 9 → the carrier (prefix
stripped); route 8 → the carrier too, but for extension 1005 only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pbx_harness import PbxHarness, TrunkSpec, dialling, phone, rejected_with
from sipp_harness import LoggedMessage, Sipp, SippFactory, SippResult, free_port

NUMBER = "5551234"  # dialled as 9 + NUMBER
PREMIUM = """
[[outbound_routes]]
name = "premium"
prefix = "8"
match = "X."
trunks = ["carrier"]
extensions = ["1005"]
"""


async def redirecting(sipp: SippFactory, pbx: PbxHarness, ext: str, *numbers: str,
                      trace_msg: bool = False) -> Sipp:
    """Extension `ext` registered by a sipp phone that answers 302 naming `numbers` (a
    `;q=` may follow each), at a host of its own."""
    contacts = []
    for entry in numbers:
        number, semi, params = entry.partition(";")
        contacts.append(f"<sip:{number}@phone-{ext}.invalid>{semi}{params}")
    return await phone(sipp, pbx, ext, "redirect_uas_302.xml",
                       keys={"contacts": ", ".join(contacts)}, trace_msg=trace_msg)


def received(result: SippResult, start: str) -> list[LoggedMessage]:
    return [m for m in result.messages()
            if m.direction == "received" and m.first_line.startswith(start)]


def user_of(value: str | None) -> str:
    """The user part of the first SIP URI in a header value or Request-Line."""
    assert value is not None
    return value.split("sip:", 1)[1].split("@", 1)[0]


async def start(tmp_path: Path, trunk_port: int, extra: str = "") -> PbxHarness:
    return await PbxHarness.start(tmp_path, [TrunkSpec("carrier", trunk_port)],
                                  extra=PREMIUM + extra)


async def test_a_302_is_followed_as_the_callers_own_dial(
    tmp_path: Path, sipp: SippFactory
) -> None:
    trunk_port = free_port()
    pbx = await start(tmp_path, trunk_port)
    try:
        carrier = await sipp("uas.xml", port=trunk_port, calls=1, trace_msg=True,
                             sipp_timeout_s=20).astart()
        callee = await redirecting(sipp, pbx, "1002", "9" + NUMBER, trace_msg=True)
        caller = await dialling(sipp, pbx, "redirect_uac.xml", "1002", duration_ms=2000,
                                trace_msg=True).astart()

        async def talking() -> list[dict[str, str]]:
            return [c for c in await pbx.outbound() if c["status"] == "Talking"]

        # while it lasts, the API shows the call going out to the redirect's target
        [call] = await pbx.wait_for(talking, 10, "the redirected call to be answered")
        assert call == {"outboundid": call["outboundid"], "from": "1001", "to": NUMBER,
                        "trunk": "carrier", "status": "Talking"}
        live = pbx.app.registry.by_outboundid(call["outboundid"])
        assert live is not None and live.callee is not None
        assert live.callee.id == call["outboundid"] and live.dialled == "1002"
        assert live.extensions == ["1001", "1002"]  # 1002 took part: its leg ended

        near = (await caller.await_result(15)).assert_ok(calls=1)
        far = (await carrier.await_result(10)).assert_ok(calls=1)
        (await callee.await_result(10)).assert_ok(calls=1)
        await pbx.wait_idle()
        [cdr] = pbx.app.store.cdrs()
        assert (cdr.status, cdr.dst_trunk) == ("ANSWERED", "carrier")
    finally:
        await pbx.stop()
    # the carrier got the caller's dial of 9 + NUMBER: the number stripped, the caller's
    # SDP offer, the trunk's caller id
    [invite] = received(far, "INVITE ")
    assert invite.first_line.startswith(f"INVITE sip:{NUMBER}@127.0.0.1:{trunk_port} ")
    assert user_of(invite.header("To")) == NUMBER
    assert user_of(invite.header("From")) == "66666"
    assert "s=redirected-caller" in invite.text
    # the caller saw no 302: just its call answered
    assert [m.first_line.split()[1] for m in near.messages()
            if m.direction == "received" and m.first_line.startswith("SIP/2.0")
            and (m.header("CSeq") or "").endswith("INVITE")][-1] == "200"


@pytest.mark.parametrize(("number", "status"), [("8" + NUMBER, 403), ("777", 404)])
async def test_a_redirect_outside_the_callers_dial_plan_is_refused(
    tmp_path: Path, sipp: SippFactory, number: str, status: int
) -> None:
    """8 + number: a route 1001 may not use (403); 777: no route at all (404)."""
    trunk_port = free_port()
    pbx = await start(tmp_path, trunk_port)
    carrier = await sipp("uas.xml", port=trunk_port, calls=1, trace_msg=True).astart()
    try:
        callee = await redirecting(sipp, pbx, "1002", number)
        caller = dialling(sipp, pbx, rejected_with(tmp_path, status), "1002")
        (await (await caller.astart()).await_result(15)).assert_ok(calls=1)
        (await callee.await_result(10)).assert_ok(calls=1)
        await pbx.wait_idle()
        [cdr] = pbx.app.store.cdrs()
        assert (cdr.status, cdr.dst_trunk) == ("FAILED", "")
    finally:
        await pbx.stop()
    assert carrier.stop().messages() == []  # nothing was sent there


@pytest.mark.parametrize("loop", ["to itself", "ping-pong", "too many"])
async def test_a_redirect_loop_ends_with_482(
    tmp_path: Path, sipp: SippFactory, loop: str
) -> None:
    trunk_port = free_port()
    pbx = await start(tmp_path, trunk_port)
    carrier = await sipp("uas.xml", port=trunk_port, calls=1, trace_msg=True).astart()
    try:
        if loop == "to itself":
            chain = {"1002": "1002"}
        elif loop == "ping-pong":
            chain = {"1002": "1003", "1003": "1002"}
        else:  # three redirects followed; the fourth (to the carrier) is not
            chain = {"1002": "1003", "1003": "1004", "1004": "1005", "1005": "9" + NUMBER}
        phones = {ext: await redirecting(sipp, pbx, ext, to, trace_msg=True)
                  for ext, to in chain.items()}
        caller = dialling(sipp, pbx, rejected_with(tmp_path, 482), "1002")
        (await (await caller.astart()).await_result(20)).assert_ok(calls=1)
        for ext, ran in phones.items():  # each was called once, and answered 302
            result = (await ran.await_result(10)).assert_ok(calls=1)
            [invite] = received(result, "INVITE ")
            assert user_of(invite.header("To")) == ext
        await pbx.wait_idle()
        [cdr] = pbx.app.store.cdrs()
        assert (cdr.status, cdr.dst_trunk) == ("FAILED", "")
    finally:
        await pbx.stop()
    assert carrier.stop().messages() == []


async def test_contacts_are_tried_highest_q_first(tmp_path: Path, sipp: SippFactory) -> None:
    """1002 redirects to 1003 (q=0.3) and 1004 (q=0.7): 1004 is busy, 1003 answers."""
    pbx = await start(tmp_path, free_port())
    try:
        callee = await redirecting(sipp, pbx, "1002", "1003;q=0.3", "1004;q=0.7")
        busy = await phone(sipp, pbx, "1004", "uas_busy.xml", trace_msg=True)
        answering = await phone(sipp, pbx, "1003", "uas.xml", trace_msg=True)
        caller = await dialling(sipp, pbx, "redirect_uac.xml", "1002",
                                duration_ms=500).astart()
        (await caller.await_result(15)).assert_ok(calls=1)
        (await callee.await_result(10)).assert_ok(calls=1)
        first = (await busy.await_result(10)).assert_ok(calls=1)
        second = (await answering.await_result(10)).assert_ok(calls=1)
        await pbx.wait_idle()
        [cdr] = pbx.app.store.cdrs()
        assert cdr.status == "ANSWERED"
    finally:
        await pbx.stop()
    [tried] = received(first, "INVITE ")
    [invite] = received(second, "INVITE ")
    assert tried.time <= invite.time
    assert user_of(invite.first_line) == user_of(invite.header("To")) == "1003"
    assert "s=redirected-caller" in invite.text


async def test_a_trunk_callers_redirect_goes_through_the_inbound_routes(
    tmp_path: Path, sipp: SippFactory
) -> None:
    """A call in on DID 5550100 rings 1002, which redirects to 5550103: the inbound route
    for that DID on the caller's trunk sends it to 1003."""
    trunk_port = free_port()
    pbx = await start(tmp_path, trunk_port, extra="""
[[inbound_routes]]
name = "did103"
trunk = "carrier"
did = "5550103"
destination = "extension:1003"
""")
    try:
        callee = await redirecting(sipp, pbx, "1002", "5550103")
        answering = await phone(sipp, pbx, "1003", "uas.xml", trace_msg=True)
        far = await sipp("uac.xml", remote=pbx.sip_address, port=trunk_port,
                         service="5550100", calls=1, duration_ms=1500, recv_timeout_ms=8000,
                         sipp_timeout_s=20).astart()

        async def talking() -> list[dict[str, str]]:
            return [c for c in await pbx.inbound() if c["status"] == "Talking"]

        [call] = await pbx.wait_for(talking, 10, "the inbound call to be answered")
        live = pbx.app.registry.by_inboundid(call["inboundid"])
        assert live is not None and live.callee is not None
        assert (live.callee.extension, live.inbound_route) == ("1003", "did103")
        (await far.await_result(15)).assert_ok(calls=1)
        (await callee.await_result(10)).assert_ok(calls=1)
        (await answering.await_result(10)).assert_ok(calls=1)
        await pbx.wait_idle()
    finally:
        await pbx.stop()


async def test_a_transfer_targets_redirect_is_followed(
    tmp_path: Path, sipp: SippFactory
) -> None:
    """1001 → carrier, transferred by the API to 1002, which redirects to 1003: routed
    with the transferor's permissions, 1003 takes the call."""
    trunk_port = free_port()
    pbx = await start(tmp_path, trunk_port)
    try:
        carrier = await sipp("ctl_uas_carrier_reinvite.xml", port=trunk_port, calls=1,
                             sipp_timeout_s=30).astart()
        callee = await redirecting(sipp, pbx, "1002", "1003")
        target = await phone(sipp, pbx, "1003", "ctl_uas_target.xml", trace_msg=True)
        near = await dialling(sipp, pbx, "pbx_uac_auth_recv_bye.xml", "9" + NUMBER).astart()

        async def talking() -> list[dict[str, str]]:
            return [c for c in await pbx.outbound() if c["status"] == "Talking"]

        [call] = await pbx.wait_for(talking, 10, "the call to be answered")
        live = pbx.app.registry.by_outboundid(call["outboundid"])
        assert live is not None
        answer = (await pbx.post("calltransfer", {"callid": live.callid, "transferor": "1001",
                                                  "transferto": "1002"})).json()
        assert answer == {"status": "Success"}
        (await near.await_result(15)).assert_ok(calls=1)  # 1001 leaves (BYE)
        (await callee.await_result(10)).assert_ok(calls=1)  # 1002: 302

        async def transferred() -> bool:
            return live.caller.extension == "1003" and live.caller.answered is not None

        await pbx.wait_for(transferred, 10, "1003 to take the call")
        assert live.extensions == ["1001", "1002", "1003"]
        assert (await pbx.post("outbound/hangup", {"outboundid": call["outboundid"]})
                ).json() == {"status": "Success"}
        (await carrier.await_result(15)).assert_ok(calls=1)
        got = (await target.await_result(15)).assert_ok(calls=1)
        await pbx.wait_idle()
    finally:
        await pbx.stop()
    [invite] = received(got, "INVITE ")
    assert user_of(invite.header("To")) == "1003"


async def test_relay_passes_the_302_on_with_its_contacts(
    tmp_path: Path, sipp: SippFactory
) -> None:
    trunk_port = free_port()
    pbx = await start(tmp_path, trunk_port, extra='[calls]\nredirects = "relay"\n')
    assert pbx.app.config.calls.redirects == "relay"
    try:
        callee = await redirecting(sipp, pbx, "1002", "1003;q=0.5", "9" + NUMBER)
        other = await phone(sipp, pbx, "1003", "uas.xml", trace_msg=True)
        caller = dialling(sipp, pbx, rejected_with(tmp_path, 302), "1002", trace_msg=True)
        result = (await (await caller.astart()).await_result(15)).assert_ok(calls=1)
        (await callee.await_result(10)).assert_ok(calls=1)
        await pbx.wait_idle()
    finally:
        await pbx.stop()
    [moved] = received(result, "SIP/2.0 302")
    assert moved.first_line == "SIP/2.0 302 Moved Temporarily"
    # each number, highest q first, at ippbx's address (the phone's own is not shown), so
    # the caller's next INVITE goes through the dial plan again
    contacts = [v.strip() for line in moved.text.splitlines()
                if line.lower().startswith("contact:") for v in line.split(":", 1)[1].split(",")]
    assert contacts == [f"<sip:9{NUMBER}@{pbx.sip_address}>",
                        f"<sip:1003@{pbx.sip_address}>;q=0.5"]
    assert other.stop().messages() == []  # ippbx did not follow it
