"""Offer/answer through ippbx: late offers, PRACK, UPDATE, INFO, Require, BYE while ringing.

Acceptance tests of the SIP call flows of a B2BUA (RFC 3261, 3262, 3264, 3311, 6086):
ippbx sits between a sipp caller and a sipp callee, each sees ippbx as its peer, and every
session description must reach the other side unchanged and in the right message. The
callers are extension 1001 (digest auth) dialling 9 + NUMBER, routed to a sipp "carrier"
on the trunk's port; the inbound late offer comes from the carrier to a DID ringing
extension 1002, a sipp that REGISTERed first (`phone()`).

Each flow's scenarios (tests/sipp/oa_*.xml) check their SDP themselves (`<ereg
check_it>`), and the same per-message checks as test_sipp_offer_answer_pairs.py (which
runs each pair sipp to sipp, so a failure here is ippbx's) are applied to both logs:
which messages carry which SDP, that ippbx passed each body on byte for byte, the
100rel/RSeq/RAck headers, and that no message reached a party twice. Every call must
then end clean: no call in the registry or `outbound/query`, no dialog in the UA.
"""

from __future__ import annotations

import asyncio
from typing import Any

from offer_answer import (
    CALLEE_1,
    CALLER_1,
    Party,
    check_early_bye_caller,
    check_early_update,
    check_info,
    check_late_offer,
    check_options,
    check_prack,
    check_prack_with_sdp,
    check_reinvite_without_sdp,
    check_reliable_180,
    check_unreliable_180,
    check_unsupported,
    check_update,
    passed_on,
)
from pbx_harness import PbxHarness, Start, TrunkSpec, dialling, phone
from sipp_harness import LoggedMessage, Sipp, SippError, SippFactory, SippResult, free_port

NUMBER = "95551234"  # route 9 → the carrier, which is dialled 5551234
RECV_TIMEOUT_MS = 2500  # every answer comes within milliseconds on loopback
PAUSE_MS = 200  # the callers' <pause/> before hanging up


async def through_pbx(start_pbx: Start, sipp: SippFactory, caller: str, callee: str,
                      **caller_kwargs: Any) -> tuple[PbxHarness, Sipp, Sipp]:
    """ippbx with the carrier trunk, the carrier running `callee`, and extension 1001
    calling it with `caller`."""
    trunk_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", trunk_port)])
    far = await sipp(callee, port=trunk_port, calls=1, trace_msg=True,
                     recv_timeout_ms=RECV_TIMEOUT_MS, sipp_timeout_s=10).astart()
    caller_kwargs.setdefault("duration_ms", PAUSE_MS)
    near = await dialling(sipp, pbx, caller, NUMBER, trace_msg=True,
                          recv_timeout_ms=RECV_TIMEOUT_MS, sipp_timeout_s=10,
                          **caller_kwargs).astart()
    return pbx, near, far


async def outcome(run: Sipp, timeout: float) -> SippResult:
    """The run's result; one still running after `timeout` s is killed (logs kept)."""
    try:
        return await run.await_result(timeout)
    except SippError:
        assert run.result is not None
        return run.result


async def both(near: Sipp, far: Sipp) -> tuple[Party, Party]:
    """Both runs over and successful in sipp's eyes (their own <ereg> checks included),
    then their logs; the far end gets a second only once the near end has failed."""
    near_result = await outcome(near, 15)
    far_result = await outcome(far, 1 if near_result.returncode else 10)
    near_result.assert_ok(calls=1)
    far_result.assert_ok(calls=1)
    caller, callee = Party("caller", near_result), Party("callee", far_result)
    caller.distinct()
    callee.distinct()
    return caller, callee


async def ends_clean(pbx: PbxHarness) -> None:
    await pbx.wait_idle(5)
    assert len(pbx.app.registry) == 0, pbx.app.registry.calls()
    assert await pbx.outbound() == [] and await pbx.inbound() == []
    assert pbx.app.pbx.trunks.in_use["carrier"] == 0
    await pbx.stop()


def logged(result: SippResult) -> list[LoggedMessage]:
    """The run's messages; none if it never logged one."""
    path = result.messages_path
    return result.messages() if path is not None and path.exists() else []


# -- 1, 2. late offer ------------------------------------------------------------------------
async def test_late_offer_extension_to_trunk(start_pbx: Start, sipp: SippFactory) -> None:
    """INVITE without SDP → the carrier's INVITE has none; its 200 offers, the caller's
    ACK answers, each passed on."""
    pbx, near, far = await through_pbx(start_pbx, sipp, "oa_uac_late_offer.xml",
                                       "oa_uas_late_offer.xml")
    check_late_offer(*await both(near, far))
    await ends_clean(pbx)


async def test_late_offer_trunk_to_extension(start_pbx: Start, sipp: SippFactory) -> None:
    """The carrier calls the DID without SDP; extension 1002's 200 offers, the carrier's
    ACK answers."""
    trunk_port = free_port()
    pbx = await start_pbx([TrunkSpec("carrier", trunk_port)])
    ext = await phone(sipp, pbx, "1002", "oa_uas_late_offer.xml", trace_msg=True,
                      recv_timeout_ms=RECV_TIMEOUT_MS, sipp_timeout_s=10)
    far = await sipp("oa_uac_trunk_late_offer.xml", remote=pbx.sip_address, port=trunk_port,
                     service="5550100", keys={"user": "0123456"}, calls=1,
                     duration_ms=PAUSE_MS, trace_msg=True, recv_timeout_ms=RECV_TIMEOUT_MS,
                     sipp_timeout_s=10).astart()
    check_late_offer(*await both(far, ext))
    await ends_clean(pbx)


# -- 3. re-INVITE without SDP ----------------------------------------------------------------
async def test_reinvite_without_sdp(start_pbx: Start, sipp: SippFactory) -> None:
    """A phone's unhold: re-INVITE without SDP → the carrier's re-INVITE has none; the
    carrier's 200 offers, reaches the caller, whose ACK's answer reaches the carrier's
    ACK (ippbx must not ACK the carrier before the caller has answered)."""
    pbx, near, far = await through_pbx(start_pbx, sipp, "oa_uac_reinvite_no_sdp.xml",
                                       "oa_uas_reinvite_no_sdp.xml")
    check_reinvite_without_sdp(*await both(near, far))
    await ends_clean(pbx)


# -- 4. UPDATE in a confirmed dialog ---------------------------------------------------------
async def test_update_in_confirmed_dialog(start_pbx: Start, sipp: SippFactory) -> None:
    """UPDATE with a=sendonly → the carrier's UPDATE carries it; its 200 (a=recvonly)
    reaches the caller."""
    pbx, near, far = await through_pbx(start_pbx, sipp, "oa_uac_update.xml",
                                       "oa_uas_update.xml")
    check_update(*await both(near, far))
    await ends_clean(pbx)


# -- 5. PRACK without SDP --------------------------------------------------------------------
async def test_reliable_180_without_sdp(start_pbx: Start, sipp: SippFactory) -> None:
    """Caller with Supported: 100rel, carrier rings reliably: ippbx PRACKs the carrier in
    its early dialog, and rings the caller reliably, which PRACKs ippbx."""
    pbx, near, far = await through_pbx(start_pbx, sipp, "oa_uac_100rel.xml",
                                       "oa_uas_100rel.xml",
                                       extra=("-key", "rel_header", "Supported"))
    check_reliable_180(*await both(near, far))
    await ends_clean(pbx)


async def test_caller_without_100rel_rings_unreliably(start_pbx: Start,
                                                      sipp: SippFactory) -> None:
    """A caller without 100rel gets a plain 180 (no Require, no RSeq) and sends no PRACK,
    while the carrier's reliable 180 is PRACKed by ippbx all the same."""
    pbx, near, far = await through_pbx(start_pbx, sipp, "oa_uac_basic.xml",
                                       "oa_uas_100rel.xml")
    caller, carrier = await both(near, far)
    check_unreliable_180(caller)
    carrier.bodies({"INVITE": CALLER_1, "INVITE 180": None, "PRACK": None, "PRACK 200": None,
                    "INVITE 200": CALLEE_1, "INVITE ACK": None, "BYE": None, "BYE 200": None})
    check_prack(carrier, "INVITE 180", "sent")
    passed_on(caller, carrier, "INVITE")
    passed_on(carrier, caller, "INVITE 200")
    await ends_clean(pbx)


# -- 6. PRACK with SDP -----------------------------------------------------------------------
async def test_prack_carries_the_answer(start_pbx: Start, sipp: SippFactory) -> None:
    """Late offer answered in PRACKs: the carrier's reliable 183 offers, the caller's
    PRACK answers, and ippbx's PRACK to the carrier carries that answer."""
    pbx, near, far = await through_pbx(start_pbx, sipp, "oa_uac_prack_sdp.xml",
                                       "oa_uas_prack_sdp.xml")
    check_prack_with_sdp(*await both(near, far))
    await ends_clean(pbx)


# -- 7. UPDATE in an early dialog ------------------------------------------------------------
async def test_update_in_early_dialog(start_pbx: Start, sipp: SippFactory) -> None:
    """After a reliable 183 with the answer, the caller's UPDATE (m=audio 6002) in the
    early dialog reaches the carrier in its early dialog, and the answer comes back,
    before the call is answered."""
    pbx, near, far = await through_pbx(start_pbx, sipp, "oa_uac_early_update.xml",
                                       "oa_uas_early_update.xml")
    check_early_update(*await both(near, far))
    await ends_clean(pbx)


# -- 8. INFO ---------------------------------------------------------------------------------
async def test_info_relayed_both_ways(start_pbx: Start, sipp: SippFactory) -> None:
    """An INFO (application/dtmf-relay) from the caller reaches the carrier with the same
    type and body, and the carrier's reaches the caller; each 200 comes back."""
    pbx, near, far = await through_pbx(start_pbx, sipp, "oa_uac_info.xml", "oa_uas_info.xml")
    check_info(*await both(near, far))
    await ends_clean(pbx)


# -- 9. Require ------------------------------------------------------------------------------
async def test_require_unknown_extension_gets_420(start_pbx: Start, sipp: SippFactory) -> None:
    """Require: foo → 420 with Unsupported: foo, and the carrier hears nothing."""
    pbx, near, far = await through_pbx(start_pbx, sipp, "oa_uac_require_foo.xml",
                                       "oa_uas_basic.xml")
    result = (await outcome(near, 15)).assert_ok(calls=1)
    caller = Party("caller", result)
    caller.distinct()
    check_unsupported(caller)
    await asyncio.sleep(0.3)
    far_result = far.stop()
    assert far_result.successful == 0 and logged(far_result) == [], far_result.describe()
    await ends_clean(pbx)


async def test_require_100rel_is_accepted(start_pbx: Start, sipp: SippFactory) -> None:
    """Require: 100rel is supported: no 420, and the provisional responses are reliable."""
    pbx, near, far = await through_pbx(start_pbx, sipp, "oa_uac_100rel.xml",
                                       "oa_uas_100rel.xml",
                                       extra=("-key", "rel_header", "Require"))
    caller, carrier = await both(near, far)
    caller.none("INVITE 420")
    check_reliable_180(caller, carrier)
    await ends_clean(pbx)


# -- 10. BYE in an early dialog --------------------------------------------------------------
async def test_bye_in_early_dialog(start_pbx: Start, sipp: SippFactory) -> None:
    """RFC 3261 §15: the caller's BYE to the 180's early dialog gets 200, then its INVITE
    487; the carrier gets a CANCEL (not a BYE), and no call is left."""
    pbx, near, far = await through_pbx(start_pbx, sipp, "oa_uac_early_bye.xml",
                                       "uas_ring_forever.xml")
    caller, carrier = await both(near, far)
    check_early_bye_caller(caller)
    carrier.bodies({"INVITE": CALLER_1, "INVITE 180": None, "INVITE CANCEL": None,
                    "INVITE CANCEL 200": None, "INVITE 487": None, "INVITE ACK": None})
    passed_on(caller, carrier, "INVITE")
    carrier.none("BYE")
    assert await pbx.outbound() == []
    assert len(pbx.app.registry) == 0, pbx.app.registry.calls()
    await ends_clean(pbx)


# -- 11. OPTIONS -----------------------------------------------------------------------------
async def test_options_lists_what_ippbx_handles(start_pbx: Start, sipp: SippFactory) -> None:
    pbx = await start_pbx([])
    asker = await sipp("oa_uac_options.xml", remote=pbx.sip_address, service="ippbx",
                       calls=1, trace_msg=True, recv_timeout_ms=RECV_TIMEOUT_MS,
                       sipp_timeout_s=10).astart()
    result = (await outcome(asker, 15)).assert_ok(calls=1)
    check_options(Party("asker", result).one("OPTIONS 200", "received"))
    await pbx.stop()
