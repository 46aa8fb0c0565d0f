"""Pure parts of sip/transport.py: Via stamping, response routing, error responses.

The socket behaviour is tested against real loopback sockets in
tests/integration/test_sip_transport.py.
"""

from __future__ import annotations

import pytest

from ippbx.sip.headers import Via
from ippbx.sip.message import Request, parse_message
from ippbx.sip.transport import Peer, error_response, fix_via, via_destination

INVITE = (
    "INVITE sip:1001@10.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP {via};branch=z9hG4bK776asdhds\r\n"
    "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK1\r\n"
    "Max-Forwards: 70\r\n"
    "To: <sip:1001@10.0.0.1>\r\n"
    "From: <sip:1002@10.0.0.2>;tag=1928301774\r\n"
    "Call-ID: a84b4c76e66710\r\n"
    "CSeq: 314159 INVITE\r\n"
    "Content-Length: 0\r\n\r\n"
)


def request(via: str) -> Request:
    msg = parse_message(INVITE.format(via=via).encode())
    assert isinstance(msg, Request)
    return msg


def test_peer_is_a_hashable_value() -> None:
    assert Peer("1.2.3.4", 5060) == Peer("1.2.3.4", 5060, "udp")
    assert len({Peer("1.2.3.4", 5060), Peer("1.2.3.4", 5060, "tcp")}) == 2
    with pytest.raises(AttributeError):
        Peer("h", 1).port = 2  # type: ignore[misc]


def test_matching_via_is_left_alone() -> None:
    msg = request("10.0.0.2:5060")
    before = msg.to_bytes()
    fix_via(msg, Peer("10.0.0.2", 5060))
    assert msg.to_bytes() == before


def test_received_added_when_sent_by_differs() -> None:
    msg = request("pc33.example.com:5060")
    fix_via(msg, Peer("192.0.2.4", 5060))
    assert msg.top_via.params["received"] == "192.0.2.4"
    assert "rport" not in msg.top_via.params
    assert len(msg.vias) == 2
    assert msg.vias[1].host == "proxy.example.com"


def test_empty_rport_filled_and_received_always_added() -> None:
    msg = request("10.0.0.2:5060;rport")
    fix_via(msg, Peer("10.0.0.2", 40123))
    top = msg.top_via
    assert top.params["rport"] == "40123"
    assert top.params["received"] == "10.0.0.2"
    assert top.branch == "z9hG4bK776asdhds"


def test_rport_with_value_is_kept() -> None:
    msg = request("10.0.0.2:5060;rport=5070")
    fix_via(msg, Peer("10.0.0.2", 40123))
    assert msg.top_via.params["rport"] == "5070"
    assert "received" not in msg.top_via.params


def via(text: str) -> Via:
    return Via.parse(text)


@pytest.mark.parametrize(
    ("top", "source", "expected"),
    [
        ("SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bK1", Peer("10.0.0.2", 5070),
         Peer("10.0.0.2", 5070)),
        ("SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK1", Peer("10.0.0.2", 33333),
         Peer("10.0.0.2", 5060)),
        ("SIP/2.0/UDP host.invalid:5070;branch=z9hG4bK1;received=192.0.2.9",
         Peer("192.0.2.9", 5070), Peer("192.0.2.9", 5070)),
        ("SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bK1;rport=40000;received=192.0.2.9",
         Peer("192.0.2.9", 40000), Peer("192.0.2.9", 40000)),
        ("SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bK1;maddr=239.255.255.1",
         Peer("10.0.0.2", 5070), Peer("239.255.255.1", 5070)),
        ("SIP/2.0/TCP 10.0.0.2:5070;branch=z9hG4bK1;received=192.0.2.9",
         Peer("192.0.2.9", 40000, "tcp"), Peer("192.0.2.9", 5070, "tcp")),
        ("SIP/2.0/TCP host.invalid;branch=z9hG4bK1",
         Peer("192.0.2.9", 40000, "tcp"), Peer("host.invalid", 5060, "tcp")),
    ],
)
def test_via_destination(top: str, source: Peer, expected: Peer) -> None:
    assert via_destination(via(top), source) == expected


GARBAGE_REQUEST = (
    b"INVITE sip:1001@10.0.0.1 SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bKbad;rport\r\n"
    b"f: <sip:1002@10.0.0.2>;tag=abc\r\n"
    b"t: <sip:1001@10.0.0.1>\r\n"
    b"i: bad-1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Content-Length: 9999\r\n"
    b"\x00\x01 this line has no colon\r\n\r\n"
)


def test_error_response_for_readable_garbage() -> None:
    response = error_response(GARBAGE_REQUEST, 400, Peer("127.0.0.1", 40000))
    assert response is not None
    assert response.status == 400
    assert response.reason == "Bad Request"
    assert response.call_id == "bad-1"
    assert response.cseq == (1, "INVITE")
    assert response.to.tag
    top = response.top_via
    assert top.params["rport"] == "40000"
    assert top.params["received"] == "127.0.0.1"
    assert via_destination(top, Peer("127.0.0.1", 40000)) == Peer("127.0.0.1", 40000)


def test_error_response_keeps_status_and_existing_to_tag() -> None:
    data = GARBAGE_REQUEST.replace(b"t: <sip:1001@10.0.0.1>", b"To: <sip:1001@x>;tag=t1")
    response = error_response(data.replace(b"SIP/2.0\r\nv:", b"SIP/3.0\r\nv:"), 505,
                              Peer("127.0.0.1", 1))
    assert response is not None
    assert (response.status, response.reason) == (505, "Version Not Supported")
    assert response.to.tag == "t1"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x01\x02\x03 binary",
        GARBAGE_REQUEST.replace(b"i: bad-1\r\n", b""),  # no Call-ID
        GARBAGE_REQUEST.replace(b"CSeq: 1 INVITE\r\n", b""),  # no CSeq
        GARBAGE_REQUEST.replace(b"v: SIP/2.0/UDP 10.0.0.2:5070", b"v: nonsense"),  # bad Via
        GARBAGE_REQUEST.replace(b"INVITE sip:", b"ACK sip:", 1),  # never answer an ACK
        b"SIP/2.0 200 OK\r\n" + GARBAGE_REQUEST.split(b"\r\n", 1)[1],  # a response
    ],
)
def test_error_response_none_when_unanswerable(data: bytes) -> None:
    assert error_response(data, 400, Peer("127.0.0.1", 1)) is None
