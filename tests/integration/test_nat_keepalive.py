"""A phone registered over UDP from behind NAT: ippbx sends it CRLF keep-alives at the
address its REGISTER came from, every `[sip] nat_keepalive` seconds, so the NAT keeps
the mapping calls to it need (RFC 5626 §4.4.1). None with `nat_keepalive = 0`."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from audio_phone import AudioPhone
from pbx_harness import Start


async def keepalives_at(port: int, seconds: float) -> list[bytes]:
    """The datagrams that reach 127.0.0.1:`port` within `seconds`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    got: list[bytes] = []
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                got.append(await asyncio.wait_for(loop.sock_recv(sock, 2048), left))
            except TimeoutError:
                break
    finally:
        sock.close()
    return got


@pytest.mark.parametrize("interval", [0.5, 0])
async def test_registered_udp_phones_get_keepalives(start_pbx: Start, interval: float) -> None:
    pbx = await start_pbx([], sip={"nat_keepalive": interval})
    phone = await AudioPhone.extension(pbx.sip_address, "1001")
    port = phone.sip_port
    await phone.stop()  # (its registration stays: a socket of ours takes its port)
    got = await keepalives_at(port, 1.6)
    if interval:
        assert len(got) >= 2 and set(got) == {b"\r\n\r\n"}, got
    else:
        assert got == []
    await pbx.stop()
