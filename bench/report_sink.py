"""A fast report receiver for the benchmarks: takes POSTs, counts them by `action`, answers
`200` with `Content-Length: 0`, and closes the connection (one report per connection, as
the vendors ask of a receiver) or, with `--keep-alive`, keeps it open for the next report
(as any HTTP/1.1 server does; a request with `Connection: close` is still answered and
closed).

    .venv/bin/python bench/report_sink.py [--host 127.0.0.1] [--port 0] [--counts FILE]
                                          [--keep-alive]

It prints `listening on HOST:PORT` once bound (port 0: a free one). `GET /counts` answers
the counts so far as JSON (`{"total": N, "actions": {"RING": n, …}, "bad": n}`); at exit
(SIGTERM, SIGINT) it prints them and writes them to --counts. `bench/sip_cps.py
--with-session` runs it as its own process pinned to core 1 (beside sipp), so what
ippbx's core spends on reports is ippbx's alone. uvloop when installed; the HTTP parsing
is the least a report needs (head up to a blank line, then `Content-Length` bytes).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import signal
import sys
from pathlib import Path
from typing import cast

MAX_HEAD = 16384
MAX_BODY = 1 << 20
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
OK_KEPT = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
ACTION = b'"action":"'


class Counts:
    def __init__(self) -> None:
        self.actions: collections.Counter[str] = collections.Counter()
        self.total = 0
        self.bad = 0

    def add(self, body: bytes) -> None:
        self.total += 1
        start = body.find(ACTION)
        if start < 0:
            self.actions["?"] += 1
            return
        start += len(ACTION)
        end = body.find(b'"', start)
        self.actions[body[start:end].decode("utf-8", "replace") if end > 0 else "?"] += 1

    def as_dict(self) -> dict[str, object]:
        return {"total": self.total, "actions": dict(self.actions), "bad": self.bad}


class Sink(asyncio.Protocol):
    def __init__(self, counts: Counts, keep_alive: bool) -> None:
        self.counts = counts
        self.keep_alive = keep_alive
        self.buf = b""
        self.body_at = -1  # where the body starts, once the head is in
        self.need = 0  # bytes of head and body
        self.close_asked = False  # the request said `Connection: close`
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's is no subclass)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.transport is not None and not self.transport.is_closing() and self.buf:
            if not self._request():
                return

    def _request(self) -> bool:
        """Answer the request at the start of the buffer, if whole; True if one was."""
        if self.body_at < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self._answer(BAD, bad=True)
                return False
            head = self.buf[:end].lower()
            if head.startswith(b"get /counts"):
                body = json.dumps(self.counts.as_dict()).encode()
                self._answer(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                             % (len(body), body))
                return True
            length = 0
            self.close_asked = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip() == b"content-length":
                    try:
                        length = int(value)
                    except ValueError:
                        length = -1
                elif name.strip() == b"connection":
                    self.close_asked = value.strip() == b"close"
            if not 0 <= length <= MAX_BODY:
                self._answer(BAD, bad=True)
                return False
            self.body_at = end + 4
            self.need = self.body_at + length
        if len(self.buf) < self.need:
            return False
        self.counts.add(self.buf[self.body_at:self.need])
        self.buf = self.buf[self.need:]
        self.body_at = -1
        if self.keep_alive and not self.close_asked:
            assert self.transport is not None
            self.transport.write(OK_KEPT)
            return True
        self._answer(OK)
        return False

    def _answer(self, text: bytes, bad: bool = False) -> None:
        if bad:
            self.counts.bad += 1
        assert self.transport is not None
        self.transport.write(text)
        self.transport.close()


async def serve(host: str, port: int, counts_file: str | None, keep_alive: bool) -> None:
    counts = Counts()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Sink(counts, keep_alive), host, port,
                                      backlog=4096)
    bound = server.sockets[0].getsockname()
    print(f"listening on {bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    text = json.dumps(counts.as_dict())
    print(text, flush=True)
    if counts_file:
        Path(counts_file).write_text(text + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--counts", help="write the counts (JSON) to this file at exit")
    p.add_argument("--keep-alive", action="store_true",
                   help="keep each connection open for the next request")
    args = p.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port, args.counts, args.keep_alive))
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(args.host, args.port, args.counts, args.keep_alive))
    return 0


if __name__ == "__main__":
    sys.exit(main())
