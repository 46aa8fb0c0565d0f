"""The SIP transport's pure half (sip/wire.py): Via stamping, response routing, errors.

The socket behaviour is tested against real loopback sockets in
tests/integration/test_sip_transport.py.
"""

from __future__ import annotations

import pytest

from ippbx.config import SipSection
from ippbx.sip.headers import Via
from ippbx.sip.message import Request, Response, StreamParser, parse_message
from ippbx.sip.transport import SipTransport
from ippbx.sip.wire import (
    Peer,
    Rejection,
    error_response,
    fix_via,
    read_datagram,
    read_stream,
    reply_address,
    via_destination,
)

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


@pytest.mark.parametrize("top", ["10.0.0.2:5060;rport", "pc33.example.com:5060"])
def test_a_stamped_request_reads_as_its_bytes(top: str) -> None:
    """The stamp keeps the other parsed headers cached: what the request says after it
    is what a fresh parse of its bytes says."""
    msg = request(top)
    msg.cseq, msg.from_, msg.to  # noqa: B018 - parsed (and cached) before the stamp
    fix_via(msg, Peer("10.0.0.2", 40123))
    fresh = parse_message(msg.to_bytes())
    assert [str(v) for v in msg.vias] == [str(v) for v in fresh.vias]
    assert len(msg.vias) == 2 and msg.get_all("Via") == fresh.get_all("Via")
    assert msg.top_via.params["received"] == "10.0.0.2"
    assert (msg.cseq, str(msg.from_), str(msg.to)) == (fresh.cseq, str(fresh.from_),
                                                       str(fresh.to))


@pytest.mark.parametrize("joined", [False, True])
def test_a_stamped_top_via_keeps_its_place_on_its_line(joined: bool) -> None:
    """The top Via alone on its line is rewritten where it is; two Vias on one line are
    split, the stamped one first. Either way the bytes say what the request says."""
    text = INVITE.format(via="10.0.0.2:5060;rport")
    if joined:
        text = text.replace("\r\nVia: SIP/2.0/UDP proxy", ", SIP/2.0/UDP proxy")
    msg = parse_message(text.encode())
    assert len(msg.get_all("Via")) == 2 and len(msg.headers) == (7 if joined else 8)
    fix_via(msg, Peer("10.0.0.2", 40123))
    fresh = parse_message(msg.to_bytes())
    assert [str(v) for v in msg.vias] == [str(v) for v in fresh.vias]
    assert fresh.top_via.params == {"branch": "z9hG4bK776asdhds", "rport": "40123",
                                    "received": "10.0.0.2"}
    assert [n for n, _ in msg.headers][:2] == ["Via", "Via"]


def test_another_via_set_on_top_is_what_the_request_then_says() -> None:
    msg = request("10.0.0.2:5060")
    assert msg.top_via.host == "10.0.0.2"  # (parsed and cached)
    msg.set_top_via(via("SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bKnew"))
    assert msg.top_via.host == "10.9.9.9" and len(msg.vias) == 2
    assert [str(v) for v in msg.vias] == [str(v) for v in parse_message(msg.to_bytes()).vias]


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
        # maddr is never followed: it would aim our answers at a third party
        ("SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bK1;maddr=239.255.255.1",
         Peer("10.0.0.2", 5070), Peer("10.0.0.2", 5070)),
        ("SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bK1;maddr=192.0.2.77;rport=4000",
         Peer("10.0.0.2", 4000), Peer("10.0.0.2", 4000)),
        ("SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bK1;rport",  # asked, not stamped
         Peer("10.0.0.2", 4321), Peer("10.0.0.2", 4321)),
        # nor the sent-by host: only the address the request came from
        ("SIP/2.0/UDP victim.example.com:5070;branch=z9hG4bK1",
         Peer("192.0.2.9", 5070), Peer("192.0.2.9", 5070)),
        ("SIP/2.0/TCP 10.0.0.2:5070;branch=z9hG4bK1;received=192.0.2.9",
         Peer("192.0.2.9", 40000, "tcp"), Peer("192.0.2.9", 5070, "tcp")),
        ("SIP/2.0/TCP host.invalid;branch=z9hG4bK1",
         Peer("192.0.2.9", 40000, "tcp"), Peer("192.0.2.9", 5060, "tcp")),
    ],
)
def test_via_destination(top: str, source: Peer, expected: Peer) -> None:
    assert via_destination(via(top), source) == expected


def test_reply_address_never_raises() -> None:
    source = Peer("192.0.2.9", 40000)
    ok = Response(400, None, [("Via", "SIP/2.0/UDP 10.0.0.2;rport=40000;branch=z9hG4bK1"),
                              ("Via", "this one is broken")])
    assert reply_address(ok, source) == Peer("192.0.2.9", 40000)  # only the top Via counts
    for vias in ([("Via", "SIP/7.0/UDP c.example.com;branch=z9hG4bK1")], []):
        assert reply_address(Response(505, None, vias), source) == source


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
        GARBAGE_REQUEST.replace(b"CSeq: 1 INVITE\r\n", b""),  # no CSeq: nothing to match
        GARBAGE_REQUEST.replace(b"v: SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bKbad;rport\r\n",
                                b""),  # no Via
        GARBAGE_REQUEST.replace(b"INVITE sip:", b"ACK sip:", 1),  # never answer an ACK
        b"SIP/2.0 200 OK\r\n" + GARBAGE_REQUEST.split(b"\r\n", 1)[1],  # a response
    ],
)
def test_error_response_none_when_unanswerable(data: bytes) -> None:
    assert error_response(data, 400, Peer("127.0.0.1", 1)) is None


def test_error_response_with_only_via_and_cseq() -> None:
    """RFC 4475 §3.3.1 (insuf): ideally 400 even without From, To and Call-ID."""
    data = GARBAGE_REQUEST
    for line in (b"i: bad-1\r\n", b"f: <sip:1002@10.0.0.2>;tag=abc\r\n",
                 b"t: <sip:1001@10.0.0.1>\r\n"):
        data = data.replace(line, b"")
    response = error_response(data, 400, Peer("127.0.0.1", 40000))
    assert response is not None and response.status == 400
    assert [n for n, _ in response.headers] == ["Via", "CSeq"]
    assert response.top_via.params["rport"] == "40000"


def test_error_response_copies_a_via_it_cannot_parse() -> None:
    data = GARBAGE_REQUEST.replace(b"v: SIP/2.0/UDP 10.0.0.2:5070", b"v: SIP/7.0/UDP c.example")
    response = error_response(data, 505, Peer("127.0.0.1", 1))
    assert response is not None and response.status == 505
    assert response.get("Via") == "SIP/7.0/UDP c.example;branch=z9hG4bKbad;rport"
    assert reply_address(response, Peer("127.0.0.1", 1)) == Peer("127.0.0.1", 1)


BAD_LENGTH_BAD_SECOND_VIA = (
    b"OPTIONS sip:1001@10.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bKcl;rport\r\n"
    b"Via: SIP/2.0/UDP ;;;\r\n"
    b"From: <sip:1002@10.0.0.2>;tag=abc\r\n"
    b"To: <sip:1001@10.0.0.1>\r\n"
    b"Call-ID: cl-1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 12x\r\n\r\n"
)


def test_read_datagram() -> None:
    source = Peer("127.0.0.1", 40000)
    assert read_datagram(b"\r\n\r\n", source) is None
    message = read_datagram(INVITE.format(via="10.0.0.2:5060;rport").encode(), source)
    assert isinstance(message, Request) and message.top_via.params["rport"] == "40000"
    rejected = read_datagram(BAD_LENGTH_BAD_SECOND_VIA, source)
    assert isinstance(rejected, Rejection) and rejected.kind == "bad request"
    assert rejected.response is not None and rejected.response.status == 400
    assert reply_address(rejected.response, source) == source
    junk = read_datagram(b"hello\r\n\r\n", source)
    assert isinstance(junk, Rejection) and junk.kind == "unparsable" and junk.response is None


def test_read_stream_keeps_the_messages_before_the_garbage() -> None:
    source = Peer("127.0.0.1", 40000, "tcp")
    parser = StreamParser()
    good = INVITE.format(via="10.0.0.2:5060").encode()
    messages, rejection = read_stream(parser, good + BAD_LENGTH_BAD_SECOND_VIA, source)
    assert [m.call_id for m in messages] == ["a84b4c76e66710"]
    assert messages[0].top_via.params["received"] == "127.0.0.1"
    assert rejection is not None and rejection.response is not None
    assert rejection.response.call_id == "cl-1" and rejection.response.status == 400
    assert parser.unparsed == BAD_LENGTH_BAD_SECOND_VIA
    # garbage first: nothing framed, the rejection all the same
    messages, rejection = read_stream(StreamParser(), b"NOT SIP\r\n\r\n", source)
    assert messages == [] and rejection is not None and rejection.response is None


def test_tcp_limit_defaults_match_the_configuration() -> None:
    transport = SipTransport("127.0.0.1", 0, lambda message, peer: None)
    sip = SipSection()
    assert transport.max_connections_per_ip == sip.tcp_max_per_ip == 64
    assert transport.max_connections == sip.tcp_max_connections == 2000
    assert transport.idle_timeout == sip.tcp_idle_seconds == 300
    assert transport.max_keepalives == sip.tcp_max_keepalives == 240
