"""Micro-benchmark: the Python cost of one API request inside ippbx's HTTP server.

Run: `.venv/bin/python bench/api_dispatch.py` (one core, seconds). A request's bytes are
fed to the API server's connection (`ippbx.api.http_server`) with a transport that keeps
nothing, so what is timed is the parsing, the dispatch and the answer's encoding — no
socket, no event loop turn. Three requests, as wrk sends them in `bench/api_query.py`:

- `hello`: the same server with a handler answering a constant body (the floor);
- `outbound/query` one id, authenticated by `?token=` (the id is not live: the lookup
  runs, the answer is the empty list);
- `heartbeat`.

Prints µs per request (best of 5) and the ratio of each to `hello`. On a socket the
kernel's work comes on top of these (the write to a client asleep in `epoll` costs about
what the Python does), so `api_query.py` stays the figure for the goal; this one shows
where a change moved the Python.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import platform
import sys
import timeit

from ippbx.api.http_server import HttpRequest, HttpResponse, HttpServer
from ippbx.api.request import ApiContext
from ippbx.api.server import build_app
from ippbx.api.sessions import SessionManager
from ippbx.config import load_config
from ippbx.pbx.calls import CallRegistry


class _Sink:
    """A transport that takes every write and keeps the last one."""

    def __init__(self) -> None:
        self.last = b""

    def write(self, data: bytes) -> None:
        self.last = data

    def writelines(self, data: object) -> None:
        pass

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else None

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        raise AssertionError("a benchmark request closed its connection")

    abort = close

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _post(path: str, body: bytes) -> bytes:
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:8260\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)) + body


def _hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse(200, ((b"Content-Type", b"application/json"),), b'{"hello":"world"}')


def best_us(server: HttpServer, request: bytes, expect: bytes, number: int) -> float:
    conn = server.connection()
    sink = _Sink()
    conn.connection_made(sink)  # type: ignore[arg-type]
    conn.data_received(request)
    if not sink.last.endswith(expect):
        raise SystemExit(f"unexpected answer: {sink.last[-200:]!r}")
    times = timeit.repeat(lambda: conn.data_received(request), number=number, repeat=5)
    return min(times) / number * 1e6


async def main() -> None:
    config = load_config(None)
    ctx = ApiContext(config=config, registry=CallRegistry(),
                     sessions=SessionManager(config.api))
    password = hashlib.md5(config.api.password.encode()).hexdigest()
    token = ctx.sessions.login(config.api.username, password, "127.0.0.1", "openvox").token
    api = HttpServer(build_app(ctx), 64 * 1024)
    number = 50_000
    hello = best_us(HttpServer(_hello, 64 * 1024), _post("/hello", b"{}"),
                    b'{"hello":"world"}', number)
    query = best_us(api, _post(f"/api/v0.0.1/outbound/query?token={token}",
                               json.dumps({"outboundid": "1700000000.5"}).encode()),
                    b'{"status":"Success","outbound":[]}', number)
    beat = best_us(api, _post(f"/api/v0.0.1/heartbeat?token={token}", b"{}"),
                   b'{"status":"Success"}', number)
    print(f"api_dispatch: hello {hello:.2f} µs, outbound/query one id {query:.2f} µs "
          f"({query / hello:.2f}× hello), heartbeat {beat:.2f} µs ({beat / hello:.2f}× hello) "
          f"per request (best of 5, Python {platform.python_version()}, {sys.platform})")


if __name__ == "__main__":
    asyncio.run(main())
