"""Any bytes a client sends, whole or cut anywhere, reach the API's HTTP server without an
exception escaping, and every request it answers gets a well-formed HTTP/1.1 answer from
the real API handler (200, 400, 404 or 431; never a 500), or the connection is closed."""

from __future__ import annotations

import asyncio
import os
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from ippbx.api.http_server import HttpServer
from ippbx.api.request import ApiContext
from ippbx.api.server import build_app
from ippbx.api.sessions import SessionManager
from ippbx.config import load_config
from ippbx.pbx.calls import CallRegistry

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
_STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r\n]*\r\n")

VALID = [
    b"POST /api/v0.0.1/login HTTP/1.1\r\nHost: pbx\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /api/v1.1.0/outbound/query?token=abc&type=json HTTP/1.1\r\nHost: pbx\r\n"
    b"Content-Length: 18\r\n\r\n{\"outboundid\":\"1\"}",
    b"POST /api/v0.0.1/heartbeat HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"2\r\n{}\r\n0\r\n\r\n",
    b"GET /api/v0.0.1/cdr/download?random=x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"OPTIONS / HTTP/1.1\r\nHost: pbx\r\n\r\n",
    b"HEAD /nowhere HTTP/1.1\r\nHost: pbx\r\nExpect: 100-continue\r\n\r\n",
]


class Wire:
    """The transport side the server writes to."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False
        self.reading = True

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else None

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.out += data

    def writelines(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self.write(piece)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    abort = close

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


async def feed(chunks: list[bytes]) -> Wire:
    config = load_config(None)
    ctx = ApiContext(config=config, registry=CallRegistry(),
                     sessions=SessionManager(config.api))
    server = HttpServer(build_app(ctx), 64 * 1024)
    conn = server.connection()
    wire = Wire()
    conn.connection_made(wire)  # type: ignore[arg-type]
    for chunk in chunks:
        conn.data_received(chunk)
    conn.connection_lost(None)
    return wire


def check(wire: Wire) -> None:
    statuses = [int(m.group(1)) for m in _STATUS.finditer(bytes(wire.out))]
    assert set(statuses) <= {100, 200, 400, 404, 431}, statuses
    if wire.out:
        assert wire.out.startswith(b"HTTP/1.1 ")


def run(chunks: list[bytes]) -> None:
    loop = asyncio.new_event_loop()
    try:
        check(loop.run_until_complete(feed(chunks)))
    finally:
        loop.close()


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=6))
def test_random_bytes(chunks: list[bytes]) -> None:
    run(chunks)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    st.lists(st.sampled_from(VALID), min_size=1, max_size=4),
    st.lists(st.tuples(st.integers(0, 2000), st.binary(min_size=0, max_size=8)), max_size=4),
    st.lists(st.integers(1, 400), max_size=6),
)
def test_valid_requests_mutated_and_cut_anywhere(
    requests: list[bytes], edits: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    data = bytearray(b"".join(requests))
    for at, insert in edits:
        at %= len(data) + 1
        data[at:at + len(insert)] = insert
    chunks, pos = [], 0
    for size in cuts:
        chunks.append(bytes(data[pos:pos + size]))
        pos += size
    chunks.append(bytes(data[pos:]))
    run(chunks)


def test_pipelined_valid_requests_are_all_answered() -> None:
    loop = asyncio.new_event_loop()
    try:
        wire = loop.run_until_complete(feed([b"".join(VALID[:3]) + VALID[4]]))
    finally:
        loop.close()
    statuses = [int(m.group(1)) for m in _STATUS.finditer(bytes(wire.out))]
    assert statuses == [200, 200, 200, 200]
