"""Micro-benchmark: parse and serialize a typical ~930-byte SIP INVITE.

Run: `.venv/bin/python bench/sip_parse.py` (one core, timeit, best of 5). Prints one line
for BENCHMARKS.md. Budget: parse <= 15 µs per message.
"""

from __future__ import annotations

import platform
import sys
import timeit

from ippbx.sip.message import StreamParser, parse_message

SDP = (
    b"v=0\r\n"
    b"o=- 3912345678 3912345678 IN IP4 192.168.1.23\r\n"
    b"s=Softphone\r\n"
    b"c=IN IP4 192.168.1.23\r\n"
    b"t=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 8 9 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:9 G722/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)

INVITE = (
    "INVITE sip:1002@pbx.example.com;transport=udp SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.168.1.23:5062;branch=z9hG4bK-524287-1---8a1c3f9d2b7e4a11;rport\r\n"
    "Max-Forwards: 70\r\n"
    'From: "Alice Example" <sip:1001@pbx.example.com>;tag=8d3c2f1a\r\n'
    "To: <sip:1002@pbx.example.com>\r\n"
    "Call-ID: 5f0a3c2e9b8d47a1b6c0e2f4a8d1c3b5@192.168.1.23\r\n"
    "CSeq: 2 INVITE\r\n"
    "Contact: <sip:1001@192.168.1.23:5062;transport=udp>;+sip.instance=\"<urn:uuid:1>\"\r\n"
    "Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n"
    "Supported: replaces, norefersub, extended-refer, timer, outbound, path\r\n"
    "User-Agent: Zoiper rv2.10.20.5-mod\r\n"
    "Content-Type: application/sdp\r\n"
    f"Content-Length: {len(SDP)}\r\n"
    "\r\n"
).encode() + SDP


def best_us(stmt: object, number: int) -> float:
    times = timeit.repeat(stmt, number=number, repeat=5)  # type: ignore[arg-type]
    return min(times) / number * 1e6


def main() -> None:
    data = INVITE
    msg = parse_message(data)
    assert msg.to_bytes() and len(msg.body) == len(SDP)
    number = 20000
    parse = best_us(lambda: parse_message(data), number)
    serialize = best_us(msg.to_bytes, number)
    access = best_us(lambda: parse_message(data).top_via.branch, number)
    stream = StreamParser()
    both = data * 10
    framed = best_us(lambda: stream.feed(both), number // 10) / 10
    print(
        f"sip_parse: {len(data)}-byte INVITE parse {parse:.2f} µs, parse+top_via "
        f"{access:.2f} µs, StreamParser {framed:.2f} µs/msg, serialize {serialize:.2f} µs "
        f"(best of 5, Python {platform.python_version()}, {sys.platform})"
    )


if __name__ == "__main__":
    main()
