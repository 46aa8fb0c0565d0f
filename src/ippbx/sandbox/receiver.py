"""A minimal call-report receiver for the sandbox (`ippbx demo --receiver PORT`).

It stands in for an integrator's application: an HTTP/1.1 listener on loopback that
answers every POST `200 OK` and hands the JSON body to `on_report`. The sandbox logs in
to the PBX's API with `port` = this port, so the PBX's report delivery has somewhere to
deliver to from the first call on. One request per connection, as ippbx sends them
(`Connection: close`); bodies over 1 MiB or malformed requests are answered 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["ReportReceiver"]

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20
READ_TIMEOUT = 10.0
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK"
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class ReportReceiver:
    """HTTP POST sink on host:port (0: a free port, read `.port` after `start`)."""

    def __init__(self, host: str, port: int,
                 on_report: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.host = host
        self.port = port
        self.on_report = on_report
        self.received = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.close()
        await server.wait_closed()
        while self._writers:  # the handlers finish as their connections close
            await asyncio.sleep(0.01)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            report = await asyncio.wait_for(self._read(reader), READ_TIMEOUT)
            writer.write(OK if report is not None else BAD)
            await writer.drain()
            if report is not None:
                self.received += 1
                if self.on_report is not None:
                    self.on_report(report)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            log.debug("report receiver: a broken request", exc_info=True)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self._writers.discard(writer)

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> dict[str, Any] | None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        lines = head.split("\r\n")
        if not lines[0].startswith("POST "):
            return None
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    return None
        if not 0 < length <= MAX_BODY:
            return None
        try:
            report = json.loads(await reader.readexactly(length))
        except ValueError:
            return None
        return report if isinstance(report, dict) else None
