"""The API's own HTTP/1.1 server over real loopback sockets, on the asyncio loop and on
uvloop (ippbx runs on uvloop): keep-alive and pipelining, HTTP/1.0, Expect: 100-continue,
HEAD, bodies over the limit, heads over the limit, garbage, a failing handler, large
answers in pieces, idle connections."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from ippbx.api import http_server
from ippbx.api.http_server import HttpRequest, HttpResponse
from ippbx.api.server import ApiServer

TEXT = ((b"Content-Type", b"text/plain"),)
HUGE_PIECE = b"h" * (1 << 20)
LIMIT = 64 * 1024


def echo(request: HttpRequest) -> HttpResponse:
    """Answers what it was asked, so the test sees what the handler saw."""
    if request.path == "/boom":
        raise RuntimeError("handler bug")
    if request.path == "/pieces":
        return HttpResponse(200, TEXT, [b"a" * 70000, b"b" * 70000, b"c"], 140001)
    if request.path == "/huge":
        return HttpResponse(200, TEXT, [HUGE_PIECE] * 16, 16 * len(HUGE_PIECE))
    text = (f"{request.method} {request.path} q={request.query.decode()} "
            f"len={len(request.body)} big={request.too_large} from={request.client}")
    return HttpResponse(200, TEXT, text.encode())


LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop,
}


def on_each_loop(test: Callable[[int], Coroutine[Any, Any, None]]) -> Callable[[str], None]:
    """Run `test(port)` against a server on a fresh loop of each kind."""

    @pytest.mark.parametrize("loop_kind", list(LOOPS))
    def run(loop_kind: str) -> None:
        async def main() -> None:
            server = ApiServer(echo, "127.0.0.1", 0)
            await server.start()
            try:
                await asyncio.wait_for(test(server.port), 20)
            finally:
                await server.stop()

        loop = LOOPS[loop_kind]()
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    run.__name__ = test.__name__
    run.__doc__ = test.__doc__
    return run


async def read_response(reader: asyncio.StreamReader, head_only: bool = False
                        ) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    headers = {k.lower(): v for k, _, v in (line.partition(b": ") for line in lines[1:])}
    length = 0 if head_only else int(headers.get(b"content-length", b"0"))
    body = await reader.readexactly(length)
    return lines[0], headers, body


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


@on_each_loop
async def test_keep_alive_and_pipelined_requests_answer_in_order(port: int) -> None:
    reader, writer = await connect(port)
    writer.write(b"GET /one?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"
                 b"POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
                 b"POST /three%20x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"2\r\nab\r\n0\r\n\r\n")
    answers = [await read_response(reader) for _ in range(3)]
    assert [a[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 3
    assert answers[0][2] == b"GET /one q=x=1 len=0 big=False from=127.0.0.1"
    assert answers[1][2].startswith(b"POST /two q= len=3 big=False")
    assert answers[2][2].startswith(b"POST /three x q= len=2 big=False")
    assert b"date" in answers[0][1] and b"server" not in answers[0][1]
    writer.write(b"GET /again HTTP/1.1\r\nHost: a\r\n\r\n")  # still open
    assert (await read_response(reader))[2].startswith(b"GET /again")
    writer.close()


@on_each_loop
async def test_http_1_0_closes_unless_asked_to_keep_alive(port: int) -> None:
    reader, writer = await connect(port)
    writer.write(b"GET /a HTTP/1.0\r\n\r\n")
    status, headers, _ = await read_response(reader)
    assert headers[b"connection"] == b"close" and await reader.read() == b""
    reader, writer = await connect(port)
    writer.write(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    status, headers, _ = await read_response(reader)
    assert headers[b"connection"] == b"keep-alive"
    writer.write(b"GET /b HTTP/1.0\r\n\r\n")
    assert (await read_response(reader))[2].startswith(b"GET /b")
    writer.close()


@on_each_loop
async def test_expect_100_continue_and_head(port: int) -> None:
    reader, writer = await connect(port)
    writer.write(b"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                 b"Expect: 100-continue\r\n\r\n")
    assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"body")
    assert (await read_response(reader))[2].startswith(b"POST /e q= len=4")
    writer.write(b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n")
    status, headers, body = await read_response(reader, head_only=True)
    assert int(headers[b"content-length"]) > 0
    writer.write(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n")  # no stray body came first
    assert (await read_response(reader))[2].startswith(b"GET /after")
    writer.close()


@on_each_loop
async def test_a_declared_body_over_the_limit_is_answered_at_once_and_closed(port: int
                                                                             ) -> None:
    reader, writer = await connect(port)
    writer.write(b"POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\nxx")
    status, headers, body = await read_response(reader)
    assert body.startswith(b"POST /big q= len=0 big=True")
    assert headers[b"connection"] == b"close" and await reader.read() == b""


@on_each_loop
async def test_a_chunked_body_over_the_limit_is_dropped_and_the_connection_kept(port: int
                                                                                ) -> None:
    reader, writer = await connect(port)
    writer.write(b"POST /big HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(20):  # 20 x 8 KiB = 160 KiB
        writer.write(b"2000\r\n" + b"z" * 0x2000 + b"\r\n")
    writer.write(b"0\r\n\r\n")
    assert (await read_response(reader))[2].startswith(b"POST /big q= len=0 big=True")
    writer.write(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (await read_response(reader))[2].startswith(b"GET /next")
    writer.close()


@on_each_loop
async def test_garbage_huge_heads_and_handler_bugs_are_answered_and_closed(port: int
                                                                           ) -> None:
    reader, writer = await connect(port)
    writer.write(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
    assert (await read_response(reader))[0] == b"HTTP/1.1 400 Bad Request"
    assert await reader.read() == b""
    reader, writer = await connect(port)
    writer.write(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"y" * 70000 + b"\r\n\r\n")
    assert (await read_response(reader))[0] == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert await reader.read() == b""
    reader, writer = await connect(port)  # a huge head of small headers behind a request
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 90) for i in range(800))
    writer.write(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n" + many + b"\r\n")
    assert (await read_response(reader))[0] == b"HTTP/1.1 200 OK"
    assert (await read_response(reader))[0] == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert await reader.read() == b""
    reader, writer = await connect(port)  # a head line that never ends: cut at 64 KiB
    writer.write(b"GET / HTTP/1.1\r\nHost: a\r\nX-Endless: ")
    for _ in range(20):
        writer.write(b"z" * 8192)
    assert (await read_response(reader))[0] == b"HTTP/1.1 431 Request Header Fields Too Large"
    reader, writer = await connect(port)
    writer.write(b"GET /boom HTTP/1.1\r\nHost: a\r\n\r\n")
    status, headers, _ = await read_response(reader)
    assert status == b"HTTP/1.1 500 Internal Server Error" and await reader.read() == b""


@on_each_loop
async def test_an_answer_in_pieces_arrives_whole(port: int) -> None:
    reader, writer = await connect(port)
    writer.write(b"GET /pieces HTTP/1.1\r\nHost: a\r\n\r\n" * 2)
    for _ in range(2):
        status, headers, body = await read_response(reader)
        assert body == b"a" * 70000 + b"b" * 70000 + b"c"
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    monkeypatch.setattr(http_server, "KEEP_ALIVE", 0.3)
    monkeypatch.setattr(http_server, "SWEEP_EVERY", 0.05)
    server = ApiServer(echo, "127.0.0.1", 0)
    await server.start()
    try:
        reader, writer = await connect(server.port)
        writer.write(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        await read_response(reader)
        assert await asyncio.wait_for(reader.read(), 3) == b""  # closed by the server
    finally:
        await server.stop()


async def slow_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client whose receive window is small, so a large answer waits in the server."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock, limit=1 << 22)


async def test_a_slow_reader_gets_a_large_answer_whole_and_a_silent_one_is_cut(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """16 MiB take a reader at ~10 MiB/s longer than the keep-alive time: the connection
    stays open until it has read everything. One that reads nothing is cut after
    SEND_TIMEOUT, whatever is still waiting for it."""
    monkeypatch.setattr(http_server, "KEEP_ALIVE", 0.2)
    monkeypatch.setattr(http_server, "SEND_TIMEOUT", 1.0)
    monkeypatch.setattr(http_server, "SWEEP_EVERY", 0.05)
    server = ApiServer(echo, "127.0.0.1", 0)
    await server.start()
    try:
        reader, writer = await slow_client(server.port)
        writer.write(b"GET /huge HTTP/1.1\r\nHost: a\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b"Content-Length: 16777216" in head
        got = 0
        while got < 16 * len(HUGE_PIECE):
            chunk = await asyncio.wait_for(reader.read(1 << 20), 5)
            assert chunk, f"closed after {got} bytes"
            got += len(chunk)
            await asyncio.sleep(0.1 * len(chunk) / (1 << 20))  # ~10 MiB/s
        writer.close()

        reader, writer = await slow_client(server.port)
        writer.write(b"GET /huge HTTP/1.1\r\nHost: a\r\n\r\n")
        await asyncio.sleep(2.0)  # reads nothing past SEND_TIMEOUT
        got = 0
        with contextlib.suppress(ConnectionResetError):
            while chunk := await asyncio.wait_for(reader.read(1 << 20), 5):
                got += len(chunk)
        assert got < 16 * len(HUGE_PIECE)  # cut: the rest was never sent
        writer.close()
    finally:
        await server.stop()


# -- streamed answers (the console's server-sent events) ----------------------------------
class Streams:
    """A handler whose `/stream` answers are kept open and recorded."""

    def __init__(self) -> None:
        self.open: list[http_server.Stream] = []
        self.closed = 0

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path != "/stream":
            return echo(request)

        def opened(stream: http_server.Stream) -> None:
            self.open.append(stream)
            stream.on_close = self.on_close
            stream.send(b"first\n")

        return HttpResponse(200, TEXT, stream=opened)

    def on_close(self) -> None:
        self.closed += 1


async def until(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_streamed_answer_stays_open_until_the_client_goes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_server, "KEEP_ALIVE", 0.2)
    monkeypatch.setattr(http_server, "SWEEP_EVERY", 0.05)
    streams = Streams()
    server = ApiServer(streams, "127.0.0.1", 0)
    await server.start()
    try:
        reader, writer = await connect(server.port)
        # (a request pipelined behind the stream is never answered: the stream is the answer)
        writer.write(b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\nGET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length" not in head
        assert b"Connection: close" in head
        assert await asyncio.wait_for(reader.readline(), 3) == b"first\n"
        await asyncio.sleep(0.5)  # past the keep-alive time: no deadline cuts a stream
        [stream] = streams.open
        assert stream.send(b"later\n")
        assert await asyncio.wait_for(reader.readline(), 3) == b"later\n"
        writer.close()
        await until(lambda: streams.closed == 1)
        assert stream.closed and not stream.send(b"gone\n")
        # the server's stop closes the streams still open
        reader, writer = await connect(server.port)
        writer.write(b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"first\n"), 3)
    finally:
        await server.stop()
    await until(lambda: streams.closed == 2)
    assert await asyncio.wait_for(reader.read(), 3) == b""


async def test_a_stream_whose_client_reads_nothing_is_cut() -> None:
    streams = Streams()
    server = ApiServer(streams, "127.0.0.1", 0)
    await server.start()
    try:
        reader, writer = await slow_client(server.port)
        writer.write(b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\n")
        await until(lambda: len(streams.open) == 1)
        [stream] = streams.open
        piece = b"x" * 65536
        sent = 0
        while stream.send(piece):  # (bounded: the cut comes past STREAM_BUFFER unread)
            sent += 1
            assert sent < 1024, "never cut"
            await asyncio.sleep(0)
        await until(lambda: streams.closed == 1)
        writer.close()
    finally:
        await server.stop()
