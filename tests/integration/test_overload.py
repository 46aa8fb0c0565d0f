"""Overload control with real packets: while ippbx is overloaded, new REGISTERs and INVITEs
get a cheap stateless 503 with Retry-After, and the call already up is served to its end.

The overload is declared by lowering `shedder.lag_max` (the `[sip] overload_lag_ms`
threshold) at run time to a lag every event loop has, which is what the measured lag of a
saturated loop does; producing a real saturation in a unit-sized test would make it slow
and flaky. bench/sip_cps.py measures the real thing (its overload step).
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from pbx_harness import PbxHarness, TrunkSpec, dialling
from sipp_harness import SippFactory, free_port

from ippbx.sip.message import Request, Response, parse_message


def register(n: int, port: int, branch: str | None = None) -> bytes:
    return Request("REGISTER", "sip:127.0.0.1", [
        ("Via", f"SIP/2.0/UDP 127.0.0.1:{port};branch={branch or f'z9hG4bK-flood-{n}'}"),
        ("From", f"<sip:1004@127.0.0.1>;tag=f{n}"),
        ("To", "<sip:1004@127.0.0.1>"),
        ("Call-ID", f"flood-{n}@127.0.0.1"),
        ("CSeq", "1 REGISTER"),
        ("Contact", f"<sip:1004@127.0.0.1:{port}>"),
        ("Max-Forwards", "70"),
    ]).to_bytes()


async def answers(sock: socket.socket, seconds: float) -> list[Response]:
    loop = asyncio.get_running_loop()
    got: list[Response] = []
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 65536), left)
        except TimeoutError:
            break
        message = parse_message(data)
        assert isinstance(message, Response)
        got.append(message)
    return got


async def test_overloaded_pbx_refuses_new_work_and_finishes_the_call_it_has(
    tmp_path: Path, sipp: SippFactory
) -> None:
    trunk_port = free_port()
    pbx = await PbxHarness.start(tmp_path, trunks=[TrunkSpec("carrier", trunk_port)])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    sock.connect(("127.0.0.1", pbx.app.pbx.transport.local_port))
    port = sock.getsockname()[1]
    try:
        shedder = pbx.app.pbx.ua.shedder
        assert shedder is not None and shedder.limit is None  # on by default, calm
        far = await sipp("uas.xml", port=trunk_port, calls=1).astart()
        near = await dialling(sipp, pbx, "uac_auth.xml", "95551234", duration_ms=3000).astart()

        async def talking() -> bool:
            return [c["status"] for c in await pbx.outbound()] == ["Talking"]

        await pbx.wait_for(talking, timeout=5, what="the call to be up")

        shedder.lag_max = 1e-9  # from now on the loop counts as overloaded
        await pbx.wait_for(lambda: asyncio.sleep(0, shedder.limited), timeout=2,
                           what="the admission limit")
        for n in range(40):
            sock.send(register(n, port))
        got = await answers(sock, 1.0)
        refused = [r for r in got if r.status == 503]
        assert len(got) == 40, [r.status for r in got]  # one answer each, no more
        assert len(refused) >= 30, [r.status for r in got]
        assert {r.get("Retry-After") for r in refused} == {str(shedder.retry_after)}
        assert {r.status for r in got} <= {401, 503}  # the admitted ones are challenged
        assert shedder.shed >= 30

        # a trickle still gets in (the admission rate never falls below a floor), and a
        # retransmission of an admitted REGISTER is its transaction's business: the same
        # 401 again, never a 503
        await asyncio.sleep(0.5)
        sock.send(register(100, port))
        assert [r.status for r in await answers(sock, 0.5)] == [401]
        sock.send(register(100, port))
        assert [r.status for r in await answers(sock, 0.5)] == [401]

        # the call that was up is served to its end: its BYE is answered, it leaves
        (await near.await_result(15)).assert_ok(calls=1)
        (await far.await_result(10)).assert_ok(calls=1)
        await pbx.wait_idle()

        shedder.lag_max = 0.1  # calm again: the limit is lifted within a few seconds
        await pbx.wait_for(lambda: asyncio.sleep(0, not shedder.limited), timeout=10,
                           what="the limit to be lifted")
        sock.send(register(99, port))
        assert [r.status for r in await answers(sock, 1.0)] == [401]
    finally:
        sock.close()
        await pbx.stop()
