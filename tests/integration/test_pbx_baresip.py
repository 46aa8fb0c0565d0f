"""Interoperability with a real softphone: baresip registers and calls out through ippbx.

baresip (Debian `baresip`, headless, driven over ctrl_tcp; see baresip_harness.py and
docs/testing.md) registers as extension 1003 with digest auth, dials 9 5551234,
ippbx routes it to the "carrier" trunk (a sipp UAS running tests/sipp/uas.xml, which
answers and then waits for the BYE), and while the call is up the API's `outbound/query`
shows it `Talking`. baresip hangs up; the call must leave the API and the registry.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from baresip_harness import Baresip, baresip_available
from pbx_harness import PbxHarness, TrunkSpec, ext_password
from sipp_harness import SippFactory, free_port

pytestmark = pytest.mark.skipif(
    not baresip_available(),
    reason="baresip not installed (Debian package baresip; `make test` installs it)",
)


async def test_baresip_registers_and_calls_out_through_a_trunk(
    tmp_path: Path, sipp: SippFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ippbx")
    carrier_port = free_port()
    # the product's own digest rules (the harness relaxes the digest uri for sipp only)
    pbx = await PbxHarness.start(tmp_path, trunks=[TrunkSpec("carrier", carrier_port)],
                                 security={"digest_uri": "request-uri"})
    phone: Baresip | None = None
    try:
        pbx_port = pbx.app.pbx.transport.local_port
        account = (f"<sip:1003@127.0.0.1:{pbx_port}>;auth_user=1003;"
                   f"auth_pass={ext_password('1003')};regint=60;audio_codecs=PCMU;"
                   "answermode=auto")
        phone = Baresip.configure(tmp_path / "baresip", account)
        await phone.start()
        await phone.add_account(timeout=10)  # `uanew` the account line, wait for REGISTER_OK
        assert pbx.app.pbx.registrar.is_registered("1003")

        # uas.xml answers, then waits for the BYE: the call stays up until we hang up.
        carrier = await sipp("uas.xml", port=carrier_port, calls=1, trace_msg=True).astart()
        await phone.command("dial", "95551234")
        await phone.wait_event("CALL_ESTABLISHED", timeout=10)

        async def talking() -> list[dict[str, str]]:
            return [c for c in await pbx.outbound() if c.get("status") == "Talking"]

        calls = await pbx.wait_for(talking, timeout=5, what="the call to show Talking")
        assert len(calls) == 1, calls
        assert calls[0]["to"] == "5551234", calls
        assert calls[0]["trunk"] == "carrier", calls

        await phone.command("hangup")
        await phone.wait_event("CALL_CLOSED", timeout=10)
        (await carrier.await_result(timeout=10)).assert_ok(calls=1)

        async def no_calls() -> bool:
            return await pbx.outbound() == []

        await pbx.wait_for(no_calls, timeout=5, what="outbound/query to be empty")
        await pbx.wait_idle(timeout=5)
        assert len(pbx.app.registry) == 0
    finally:
        if phone is not None:
            await phone.stop()
        await pbx.stop()
