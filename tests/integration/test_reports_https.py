"""Reports to an `https://` receiver: delivered when its certificate is trusted (`[reports]
tls_ca`), held back (not sent in clear, not dropped) when it is not."""

from __future__ import annotations

import asyncio
from pathlib import Path

from reports_harness import Pbx, Receiver, config_text, until
from sipp_harness import SippFactory, free_port

from ippbx.certs import make_self_signed, server_context


async def register(sipp: SippFactory, pbx: Pbx, ext: str) -> None:
    """A real REGISTER of `ext` (it gives an ExtensionStatus report)."""
    run = sipp("pbx_register.xml", remote=pbx.sip, port=free_port(), calls=1,
               auth=(ext, f"secret{ext}"), keys={"user": ext}, recv_timeout_ms=3000,
               sipp_timeout_s=10)
    await run.astart()
    (await run.await_result(10)).assert_ok(calls=1)


async def test_reports_reach_an_https_receiver_only_when_trusted(
    tmp_path: Path, sipp: SippFactory
) -> None:
    cert, key = make_self_signed("receiver", ["127.0.0.1"])
    cert_path, key_path = tmp_path / "receiver.crt", tmp_path / "receiver.key"
    cert_path.write_bytes(cert)
    key_path.write_bytes(key)
    receiver = await Receiver(ssl_context=server_context(cert_path, key_path)).start()
    url = f"https://127.0.0.1:{receiver.port}/crm"
    trusting = config_text(tmp_path / "a.sqlite3", free_port(), {},
                           reports=f'tls_ca = "{cert_path}"')
    pbx = await Pbx.start(trusting)
    try:
        await pbx.login("v0.0.1", url=url)
        await register(sipp, pbx, "1001")
        await until(lambda: receiver.at("/crm"), 10, "the report over HTTPS")
        assert receiver.at("/crm") == [{"action": "ExtensionStatus", "extension": "1001",
                                        "status": "Registered", "sn": "ippbxtest01"}]
    finally:
        await pbx.stop()

    # the same receiver, a PBX that does not trust its certificate: nothing is sent
    pbx = await Pbx.start(config_text(tmp_path / "b.sqlite3", free_port(), {}))
    try:
        await pbx.login("v0.0.1", url=url)
        await register(sipp, pbx, "1002")
        await asyncio.sleep(1.5)
        assert len(receiver.got) == 1  # (still only the first PBX's report)
        assert pbx.app.reports.delivery.pending() == 1  # kept for a later try, not dropped
    finally:
        await pbx.stop()
        await receiver.stop()
