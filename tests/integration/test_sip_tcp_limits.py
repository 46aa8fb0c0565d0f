"""The PBX's SIP TCP limits against real loopback sockets: the per-address cap, the idle
time that CRLF keep-alives restart only a few times in a row, and the API still answering
while SIP TCP connections are held (`[sip] tcp_*`, sip/transport.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from pbx_harness import PbxHarness, build_config
from sip_wire import options_request, read_message
from sipp_harness import free_port

from ippbx.app import App
from ippbx.config import parse_config
from ippbx.sip.message import Response

WAIT = 5.0  # upper bound of every wait in this file

StartPbx = Callable[[dict[str, object]], Awaitable[PbxHarness]]


@pytest.fixture
async def start_pbx(tmp_path: Path) -> AsyncIterator[StartPbx]:
    """`await start_pbx({"tcp_max_per_ip": 5})`: a PbxHarness with those `[sip]` keys."""
    started: list[PbxHarness] = []

    async def start(sip: dict[str, object]) -> PbxHarness:
        text = build_config(free_port(), tmp_path / "ippbx.sqlite3", [])
        keys = "".join(f"{k} = {v}\n" for k, v in sip.items())
        text = text.replace("[sip]\n", "[sip]\n" + keys, 1)
        app = App(parse_config(text))
        await app.start()
        pbx = PbxHarness(app)
        started.append(pbx)
        await pbx.login()
        return pbx

    yield start
    for pbx in started:
        await pbx.stop(check_leaks=False)


async def connect(pbx: PbxHarness, source: str) -> tuple[asyncio.StreamReader,
                                                         asyncio.StreamWriter]:
    port = pbx.app.pbx.transport.local_port
    return await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), WAIT)


def options(writer: asyncio.StreamWriter, call_id: str) -> bytes:
    host, port = writer.get_extra_info("sockname")[:2]
    return options_request(host, port, call_id)


async def ask_options(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      call_id: str) -> int:
    writer.write(options(writer, call_id))
    answer = await read_message(reader)
    assert isinstance(answer, Response) and answer.call_id == call_id
    return answer.status


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True if the PBX closes the connection within `timeout` s (nothing else arrives)."""
    try:
        data = await asyncio.wait_for(reader.read(65536), timeout)
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return data == b""


async def test_per_address_cap_spares_other_clients_and_the_api(
    start_pbx: StartPbx, caplog: pytest.LogCaptureFixture
) -> None:
    pbx = await start_pbx({"tcp_max_per_ip": 50})
    transport = pbx.app.pbx.transport
    clients: list[asyncio.StreamWriter] = []
    caplog.set_level(logging.WARNING, logger="ippbx.sip.transport")
    try:
        flood = []
        for _ in range(80):  # 30 over the cap, all from one address
            reader, writer = await connect(pbx, "127.0.0.3")
            flood.append(reader)
            clients.append(writer)
        closed = await asyncio.gather(*(closed_by_peer(r, 1.0) for r in flood))
        assert closed.count(True) == 30
        assert transport.cut["too many connections from one address"] == 30
        assert transport._per_ip["127.0.0.3"] == 50
        lines = [r for r in caplog.records if "from one address" in r.getMessage()]
        assert len(lines) == 1  # one WARNING line per reason per 10 s

        # another address still gets through over TCP, and the API still answers
        reader, writer = await connect(pbx, "127.0.0.4")
        clients.append(writer)
        assert await ask_options(reader, writer, "other-host") == 200
        assert await pbx.outbound() == []

        # the held connections of 127.0.0.3 are still served; a new one is still refused
        held = next(i for i, c in enumerate(closed) if not c)
        assert await ask_options(flood[held], clients[held], "held") == 200
        reader, writer = await connect(pbx, "127.0.0.3")
        clients.append(writer)
        assert await closed_by_peer(reader, 1.0)
    finally:
        for writer in clients:
            writer.transport.abort()
    await asyncio.sleep(0.1)
    assert not transport._per_ip


async def test_crlf_only_connection_closed_while_sip_traffic_keeps_one_open(
    start_pbx: StartPbx,
) -> None:
    pbx = await start_pbx({"tcp_idle_seconds": 1.0, "tcp_max_keepalives": 3})
    transport = pbx.app.pbx.transport
    crlf_reader, crlf_writer = await connect(pbx, "127.0.0.3")
    sip_reader, sip_writer = await connect(pbx, "127.0.0.3")
    phone_reader, phone_writer = await connect(pbx, "127.0.0.3")
    loop = asyncio.get_running_loop()
    started = loop.time()
    crlf_closed_after: float | None = None
    try:
        for tick in range(12):  # one every 0.3 s: 3.6 s in all
            if crlf_closed_after is None:
                crlf_writer.write(b"\r\n\r\n")  # RFC 5626 ping, nothing else ever
                try:
                    pong = await asyncio.wait_for(crlf_reader.read(2), WAIT)
                except ConnectionResetError:
                    pong = b""
                if pong == b"":
                    crlf_closed_after = loop.time() - started
                else:
                    assert pong == b"\r\n"
            # a SIP request every tick
            assert await ask_options(sip_reader, sip_writer, f"sip-{tick}") == 200
            # like a phone: a keep-alive between SIP requests, 2 in a row at most
            if tick % 3 == 0:
                assert await ask_options(phone_reader, phone_writer, f"phone-{tick}") == 200
            else:
                phone_writer.write(b"\r\n\r\n")
                assert await asyncio.wait_for(phone_reader.readexactly(2), WAIT) == b"\r\n"
            await asyncio.sleep(0.3)
        # 3 keep-alives counted (the last at ~0.6 s), then 1 s idle
        assert crlf_closed_after is not None and 1.2 < crlf_closed_after < 3.0
        assert transport.cut["only keep-alives"] == 1
        assert transport.cut["idle"] == 0
        assert not sip_writer.transport.is_closing()
        assert await ask_options(sip_reader, sip_writer, "sip-last") == 200
        assert await ask_options(phone_reader, phone_writer, "phone-last") == 200
    finally:
        for writer in (crlf_writer, sip_writer, phone_writer):
            writer.transport.abort()
    # a connection that sends nothing at all goes after the idle time
    silent_reader, silent_writer = await connect(pbx, "127.0.0.4")
    try:
        assert await closed_by_peer(silent_reader, 2.0)
        assert transport.cut["idle"] == 1
    finally:
        silent_writer.transport.abort()


async def test_total_cap_counts_every_address(start_pbx: StartPbx) -> None:
    pbx = await start_pbx({"tcp_max_connections": 3})
    transport = pbx.app.pbx.transport
    clients = [await connect(pbx, source) for source in ("127.0.0.3", "127.0.0.4", "127.0.0.5")]
    try:
        late_reader, late_writer = await connect(pbx, "127.0.0.6")
        clients.append((late_reader, late_writer))
        assert await closed_by_peer(late_reader, 1.0)
        assert transport.cut["too many connections"] == 1
        reader, writer = clients[0]
        assert await ask_options(reader, writer, "first") == 200
        assert await pbx.outbound() == []
    finally:
        for _, writer in clients:
            writer.transport.abort()
