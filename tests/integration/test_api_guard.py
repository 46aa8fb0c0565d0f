"""The API's HTTP limits against a slow or greedy client: half-sent requests and silent
connections are closed within `request_timeout`, one address cannot take more than
`max_connections_per_ip` connections, and the API keeps answering everyone else."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sipp_harness import free_port

from ippbx.app import App
from ippbx.config import parse_config

LOGIN = {"username": "api", "password": hashlib.md5(b"apipass").hexdigest()}


@contextlib.asynccontextmanager
async def running(tmp_path: Path, **api: object) -> AsyncIterator[App]:
    lines = ["[sip]", f'listen = "127.0.0.1:{free_port()}"', "[media]", 'engine = "none"', "[api]",
             'listen = "127.0.0.1:0"', 'password = "apipass"',
             *(f"{k} = {v}" for k, v in api.items()),
             "[store]", f'path = "{tmp_path / "db.sqlite3"}"']
    app = App(parse_config("\n".join(lines) + "\n"))
    await app.start()
    try:
        yield app
    finally:
        await app.stop()
        app.close()


async def closed_by_server(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True if the server closes the connection (EOF or reset) within `timeout`."""
    try:
        return await asyncio.wait_for(reader.read(1024), timeout) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


async def test_half_sent_requests_and_silent_connections_are_closed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with running(tmp_path, request_timeout=1.0, max_connections_per_ip=500) as app:
        port = app.api.port
        conns = []
        for i in range(200):  # bounded: 100 silent, 100 stuck in their headers
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            if i % 2:
                writer.write(b"POST /api/v0.0.1/login HTTP/1.1\r\nHost: x\r\nContent-Le")
            conns.append((reader, writer))
        results = await asyncio.gather(*(closed_by_server(r, 5.0) for r, _ in conns))
        assert all(results), f"{results.count(False)} connections still open"
        for _, writer in conns:
            writer.close()
        assert app.api.guard is not None
        assert app.api.guard.cut["request not received in time"] == 200
        async with httpx.AsyncClient(timeout=5) as client:  # and it still serves
            answer = (await client.post(f"{app.api.url}/api/v0.0.1/login", json=LOGIN)).json()
        assert answer["status"] == "Success"
    lines = [r for r in caplog.records if r.name == "ippbx.api.guard"]
    assert 1 <= len(lines) <= 2 and not any(r.exc_info for r in lines)  # not one per cut


async def test_one_address_cannot_take_every_connection(tmp_path: Path) -> None:
    async with running(tmp_path, max_connections_per_ip=20) as app:
        port = app.api.port
        greedy = [await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.3", 0))
                  for _ in range(30)]
        cut = await asyncio.gather(*(closed_by_server(r, 1.0) for r, _ in greedy))
        assert cut.count(True) == 10  # the connections over the cap, at once
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.4")
        async with httpx.AsyncClient(timeout=5, transport=transport) as client:
            answer = (await client.post(f"{app.api.url}/api/v0.0.1/login", json=LOGIN)).json()
        assert answer["status"] == "Success"  # another address is served meanwhile
        for _, writer in greedy:
            writer.close()
