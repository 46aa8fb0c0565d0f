"""The offer/answer scenarios (tests/sipp/oa_*.xml), checked sipp against sipp on loopback.

test_sip_offer_answer.py puts ippbx between each caller scenario and its callee; here the
two talk to each other directly, and every message's SDP and headers are checked with the
same functions (offer_answer.py). If one of these fails, the scenario or the check is
broken, not ippbx; if these pass and the ippbx test fails, ippbx is at fault.

The extension callers authenticate as ippbx asks them to (INVITE, 407, ACK, INVITE with
credentials): `challenging()` gives the callee scenario a 407 for the first INVITE, so
the caller's file is exactly the one used through ippbx. Scenarios that stand in for ippbx
where a callee cannot (`oa_uas_unsupported.xml`, `oa_uas_early_bye.xml`,
`oa_uas_options.xml`) are only used here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from offer_answer import (
    Party,
    check_basic,
    check_early_bye_caller,
    check_early_update,
    check_info,
    check_late_offer,
    check_options,
    check_prack_with_sdp,
    check_reinvite_without_sdp,
    check_reliable_180,
    check_unreliable_180,
    check_unsupported,
    check_update,
)
from sipp_harness import SCENARIO_DIR, SippFactory, SippResult, free_port

CHALLENGE = """<recv request="INVITE" crlf="true"/>

  <send>
    <![CDATA[

      SIP/2.0 407 Proxy Authentication Required
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]Challenge[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Proxy-Authenticate: Digest realm="pair.test", nonce="[pid]n[call_number]", algorithm=MD5
      Content-Length: 0

    ]]>
  </send>

  <recv request="ACK"/>

  """


def challenging(tmp_path: Path, scenario: str) -> str:
    """`scenario` (a UAS) answering the caller's first INVITE with a 407 first, as ippbx
    does (a path for sipp)."""
    text = (SCENARIO_DIR / scenario).read_text()
    at = text.index('<recv request="INVITE"')
    path = tmp_path / f"challenging_{scenario}"
    path.write_text(text[:at] + CHALLENGE + text[at:])
    return str(path)


def run_pair(sipp: SippFactory, caller: str, callee: str, *, keys: dict[str, str] | None = None,
             auth: bool = True) -> tuple[Party, Party]:
    """One call from `caller` to `callee`, both checked by sipp and returned as Parties."""
    port = free_port()
    uas = sipp(callee, port=port, calls=1, trace_msg=True, sipp_timeout_s=15).start()
    uac = sipp(caller, remote=f"127.0.0.1:{port}", calls=1, service="95551234",
               auth=("1001", "secret1001") if auth else None,
               keys={"user": "1001", **(keys or {})}, duration_ms=100, trace_msg=True,
               recv_timeout_ms=3000, sipp_timeout_s=15).start()
    uac_result = uac.wait(timeout=20).assert_ok(calls=1)
    uas_result = uas.wait(timeout=10).assert_ok(calls=1)
    caller_party, callee_party = Party("caller", uac_result), Party("callee", uas_result)
    caller_party.distinct()
    callee_party.distinct()
    return caller_party, callee_party


Check = Callable[[Party, Party], None]


PAIRS = [
    ("oa_uac_late_offer.xml", "oa_uas_late_offer.xml", check_late_offer),
    ("oa_uac_basic.xml", "oa_uas_basic.xml", check_basic),
    ("oa_uac_reinvite_no_sdp.xml", "oa_uas_reinvite_no_sdp.xml", check_reinvite_without_sdp),
    ("oa_uac_update.xml", "oa_uas_update.xml", check_update),
    ("oa_uac_prack_sdp.xml", "oa_uas_prack_sdp.xml", check_prack_with_sdp),
    ("oa_uac_early_update.xml", "oa_uas_early_update.xml", check_early_update),
    ("oa_uac_info.xml", "oa_uas_info.xml", check_info),
]


@pytest.mark.parametrize(("caller", "callee", "check"), [
    pytest.param(*pair, id=pair[0].removeprefix("oa_uac_").removesuffix(".xml")) for pair in PAIRS
])
def test_extension_caller_pair(tmp_path: Path, sipp: SippFactory, caller: str, callee: str,
                               check: Check) -> None:
    caller_party, callee_party = run_pair(sipp, caller, challenging(tmp_path, callee))
    check(caller_party, callee_party)


@pytest.mark.parametrize("rel_header", ["Supported", "Require"])
def test_reliable_180_pair(tmp_path: Path, sipp: SippFactory, rel_header: str) -> None:
    caller_party, callee_party = run_pair(sipp, "oa_uac_100rel.xml",
                                          challenging(tmp_path, "oa_uas_100rel.xml"),
                                          keys={"rel_header": rel_header})
    check_reliable_180(caller_party, callee_party)
    invite = callee_party.one("INVITE", "received")
    assert invite.header(rel_header) == "100rel", invite.text


def test_caller_without_100rel_pair(tmp_path: Path, sipp: SippFactory) -> None:
    """The caller of the no-100rel variant takes an unreliable 180 and sends no PRACK."""
    caller_party, _ = run_pair(sipp, "oa_uac_basic.xml", challenging(tmp_path, "oa_uas_basic.xml"))
    check_unreliable_180(caller_party)


def test_trunk_caller_late_offer_pair(sipp: SippFactory) -> None:
    """The carrier calling in (no auth) with a late offer, to the phone's scenario."""
    caller_party, callee_party = run_pair(sipp, "oa_uac_trunk_late_offer.xml",
                                          "oa_uas_late_offer.xml", auth=False)
    check_late_offer(caller_party, callee_party)


@pytest.mark.parametrize("challenged", [True, False], ids=["after-407", "at-once"])
def test_require_foo_pair(tmp_path: Path, sipp: SippFactory, challenged: bool) -> None:
    """The caller takes the 420 at once or after a digest challenge (ippbx may do either)."""
    callee = challenging(tmp_path, "oa_uas_unsupported.xml") if challenged \
        else "oa_uas_unsupported.xml"
    caller_party, callee_party = run_pair(sipp, "oa_uac_require_foo.xml", callee)
    check_unsupported(caller_party)
    assert callee_party.one("INVITE", "received").header("Require") == "foo"


def test_early_bye_pair(tmp_path: Path, sipp: SippFactory) -> None:
    caller_party, callee_party = run_pair(sipp, "oa_uac_early_bye.xml",
                                          challenging(tmp_path, "oa_uas_early_bye.xml"))
    check_early_bye_caller(caller_party)
    callee_party.one("BYE", "received")


def test_early_cancel_carrier_pair(sipp: SippFactory) -> None:
    """The carrier of the early-BYE test (uas_ring_forever.xml): 180, then a CANCEL gets 200
    and the INVITE 487, none with SDP; driven here by uac_cancel.xml (whose INVITE has no
    SDP either: through ippbx the carrier's INVITE must carry the caller's)."""
    port = free_port()
    uas = sipp("uas_ring_forever.xml", port=port, calls=1, trace_msg=True).start()
    uac = sipp("uac_cancel.xml", remote=f"127.0.0.1:{port}", calls=1, duration_ms=100,
               recv_timeout_ms=3000).start()
    uac.wait(timeout=20).assert_ok(calls=1)
    carrier = Party("carrier", uas.wait(timeout=10).assert_ok(calls=1))
    carrier.bodies({"INVITE": None, "INVITE 180": None, "INVITE CANCEL": None,
                    "INVITE CANCEL 200": None, "INVITE 487": None, "INVITE ACK": None})


def test_options_pair(sipp: SippFactory) -> None:
    port = free_port()
    uas = sipp("oa_uas_options.xml", port=port, calls=1).start()
    uac = sipp("oa_uac_options.xml", remote=f"127.0.0.1:{port}", calls=1, service="ippbx",
               trace_msg=True, recv_timeout_ms=3000).start()
    result: SippResult = uac.wait(timeout=20).assert_ok(calls=1)
    uas.wait(timeout=10).assert_ok(calls=1)
    check_options(Party("asker", result).one("OPTIONS 200", "received"))
