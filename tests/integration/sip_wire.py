"""Reading SIP off a raw TCP stream in tests that talk to ippbx without a SIP stack."""

from __future__ import annotations

import asyncio

from ippbx.sip.message import Request, Response, parse_message

WAIT = 5.0  # upper bound of every read here


async def read_message(reader: asyncio.StreamReader) -> Request | Response:
    """The next message on `reader`: its head, then Content-Length bytes of body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await asyncio.wait_for(reader.readexactly(length), WAIT) if length else b""
    return parse_message(head + body)


def options_request(host: str, port: int, call_id: str, transport: str = "TCP") -> bytes:
    """An OPTIONS to ippbx from `host`:`port` over `transport`, as bytes."""
    return Request("OPTIONS", "sip:ippbx@127.0.0.1", [
        ("Via", f"SIP/2.0/{transport} {host}:{port};branch=z9hG4bK-{call_id}"),
        ("From", f"<sip:probe@{host}:{port}>;tag=f-{call_id}"),
        ("To", "<sip:ippbx@127.0.0.1>"),
        ("Call-ID", call_id),
        ("CSeq", "1 OPTIONS"),
        ("Max-Forwards", "70"),
    ]).to_bytes()
