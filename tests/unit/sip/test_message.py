"""SIP message parsing, header access, serialization, framing and make_response."""

from __future__ import annotations

import pytest

from ippbx.sip.errors import SipParseError
from ippbx.sip.message import (
    MAX_MESSAGE,
    Request,
    Response,
    SentResponse,
    StreamParser,
    canonical_name,
    make_response,
    parse_message,
)

BASIC = (
    "INVITE sip:1002@pbx.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n"
    "Max-Forwards: 70\r\n"
    'From: "Alice" <sip:1001@pbx.example.com>;tag=1928301774\r\n'
    "To: <sip:1002@pbx.example.com>\r\n"
    "Call-ID: a84b4c76e66710@192.0.2.10\r\n"
    "CSeq: 314159 INVITE\r\n"
    "Contact: <sip:1001@192.0.2.10:5060>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 4\r\n"
    "\r\n"
    "v=0\n"
)


def msg(text: str = BASIC) -> Request | Response:
    return parse_message(text.encode())


def with_headers(*lines: str, body: str = "", first: str = "OPTIONS sip:a@b SIP/2.0") -> bytes:
    base = [
        first,
        "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
        "From: <sip:a@b>;tag=1",
        "To: <sip:a@b>",
        "Call-ID: c1",
        f"CSeq: 1 {first.split()[0] if not first.startswith('SIP/') else 'OPTIONS'}",
    ]
    return ("\r\n".join(base + list(lines)) + "\r\n\r\n" + body).encode()


# ------------------------------------------------------------------ basic parse/serialize
def test_parse_basic_request() -> None:
    m = msg()
    assert isinstance(m, Request)
    assert (m.method, m.uri) == ("INVITE", "sip:1002@pbx.example.com")
    assert m.call_id == "a84b4c76e66710@192.0.2.10"
    assert m.cseq == (314159, "INVITE")
    assert m.from_.tag == "1928301774" and m.from_.display_name == "Alice"
    assert m.to.uri == "sip:1002@pbx.example.com" and m.to.tag is None
    assert m.top_via.branch == "z9hG4bK776asdhds" and m.top_via.port == 5060
    assert m.body == b"v=0\n"
    assert m.sip_uri().user == "1002"


def test_serialize_round_trip_and_content_length_rewritten() -> None:
    m = msg()
    m.body = b"v=0\r\no=x\r\n"
    again = parse_message(m.to_bytes())
    assert again.get("Content-Length") == "10" and again.body == m.body
    assert bytes(m) == m.to_bytes()
    assert m.to_bytes().startswith(b"INVITE sip:1002@pbx.example.com SIP/2.0\r\nVia: ")


def test_response_parse_and_defaults() -> None:
    r = parse_message(
        b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
        b"To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n"
    )
    assert isinstance(r, Response) and r.status == 180 and r.reason == "Ringing"
    assert Response(486).reason == "Busy Here" and Response(799).reason == "Unknown"
    assert r.to_bytes().startswith(b"SIP/2.0 180 Ringing\r\n")
    assert "Response 180" in repr(r) and "Request INVITE" in repr(msg())


# ---------------------------------------------------------- header names and compact forms
@pytest.mark.parametrize(
    ("compact", "name"),
    [("v", "Via"), ("f", "From"), ("t", "To"), ("i", "Call-ID"), ("m", "Contact"),
     ("l", "Content-Length"), ("c", "Content-Type"), ("e", "Content-Encoding"),
     ("k", "Supported"), ("s", "Subject"), ("o", "Event"), ("r", "Refer-To"),
     ("b", "Referred-By"), ("u", "Allow-Events"), ("x", "Session-Expires"), ("y", "Identity")],
)
def test_compact_forms_expand(compact: str, name: str) -> None:
    assert canonical_name(compact) == name
    assert canonical_name(compact.upper()) == name


def test_message_in_compact_form() -> None:
    m = parse_message(
        b"REGISTER sip:pbx SIP/2.0\r\nv: SIP/2.0/TCP h:5060;branch=z9hG4bKx\r\n"
        b"f: <sip:1001@pbx>;tag=9\r\nt: <sip:1001@pbx>\r\ni: reg-1\r\nCSeq: 2 REGISTER\r\n"
        b"m: <sip:1001@192.0.2.1>;expires=60\r\nl: 0\r\n\r\n"
    )
    assert m.get("Via") == "SIP/2.0/TCP h:5060;branch=z9hG4bKx"
    assert m.call_id == "reg-1" and m.contacts[0].params == {"expires": "60"}
    assert [n for n, _ in m.headers] == [
        "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Content-Length"
    ]


def test_header_names_are_case_insensitive() -> None:
    m = parse_message(with_headers("x-CUSTOM-header: 1", "max-forwards: 7", "CONTENT-length: 0"))
    for name in ("Max-Forwards", "max-forwards", "MAX-FORWARDS"):
        assert m.get(name) == "7" and m.has(name)
    assert m.get("X-Custom-Header") == "1" and m.get("x-custom-HEADER") == "1"
    assert m.get("call-id") == m.get("CALL-ID") == m.get("i") == "c1"
    assert ("X-Custom-Header", "1") in m.headers  # unknown names get one canonical spelling


def test_bad_header_names_rejected() -> None:
    with pytest.raises(SipParseError):
        canonical_name("Bad Name")
    with pytest.raises(SipParseError):
        canonical_name("")
    with pytest.raises(SipParseError):
        parse_message(with_headers("Bad Name: x"))
    with pytest.raises(SipParseError):
        parse_message(with_headers(": no name"))
    with pytest.raises(SipParseError):
        parse_message(with_headers("no colon at all"))


# --------------------------------------------------------------------- list headers
def test_get_all_splits_on_commas_outside_quotes_and_angle_brackets() -> None:
    m = parse_message(with_headers(
        'Contact: "Doe, John" <sip:john@h;x=1>;q=0.5, <sip:b@h?subject=a,b>, sip:c@h',
        "Contact: <sip:d@h>",
        'Route: <sip:p1;lr>,<sip:p2;lr> , <sip:p3;lr>',
        "Subject: hello, world",
        'Call-Info: <http://x/a,b>;purpose=icon, <http://y>;purpose=info',
    ))
    assert m.get_all("Contact") == [
        '"Doe, John" <sip:john@h;x=1>;q=0.5', "<sip:b@h?subject=a,b>", "sip:c@h", "<sip:d@h>"
    ]
    assert [c.display_name for c in m.contacts] == ["Doe, John", None, None, None]
    assert m.get_all("Route") == ["<sip:p1;lr>", "<sip:p2;lr>", "<sip:p3;lr>"]
    assert m.get_all("Subject") == ["hello, world"]  # not a list header
    assert len(m.get_all("Call-Info")) == 2
    assert m.get_all("Nope") == []


def test_multiple_vias_in_one_line_and_across_lines() -> None:
    m = parse_message(with_headers(
        "Via: SIP/2.0/TCP p1;branch=z9hG4bK2, SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bK3",
    ))
    assert [(v.transport, v.host, v.port, v.branch) for v in m.vias] == [
        ("UDP", "h", None, "z9hG4bK1"),
        ("TCP", "p1", None, "z9hG4bK2"),
        ("UDP", "2001:db8::1", 5070, "z9hG4bK3"),
    ]


# ------------------------------------------------------------------------ folding etc.
def test_folded_lines_are_joined() -> None:
    m = parse_message(with_headers(
        "Subject: first", " second", "\tthird", "X-Empty:", "  now has value",
        "Contact:", "   <sip:x@y>", "   ;expires=30",
    ))
    assert m.get("Subject") == "first second third"
    assert m.get("X-Empty") == "now has value"
    assert m.contacts[0].params == {"expires": "30"}


def test_bare_lf_and_mixed_line_endings() -> None:
    text = BASIC.replace("\r\n", "\n")
    m = parse_message(text.encode())
    assert m.cseq == (314159, "INVITE") and m.body == b"v=0\n"
    mixed = BASIC.replace("Content-Length: 4\r\n\r\n", "Content-Length: 4\r\n\n")
    assert parse_message(mixed.encode()).body == b"v=0\n"


def test_leading_crlf_keepalives_before_a_datagram_are_skipped() -> None:
    assert parse_message(b"\r\n\r\n" + BASIC.encode()).call_id == "a84b4c76e66710@192.0.2.10"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\n",  # no blank line
        b"INVITE sip:a@b SIP/2.0\r\nVia: x\rFrom: y\r\n\r\n",  # bare CR
        b" Via: continuation first\r\n\r\n",
    ],
)
def test_malformed_framing(data: bytes) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status == 400


def test_continuation_before_any_header() -> None:
    with pytest.raises(SipParseError):
        parse_message(b"OPTIONS sip:a@b SIP/2.0\r\n folded\r\nVia: x\r\n\r\n")


# -------------------------------------------------------------------- start line checks
@pytest.mark.parametrize(
    ("first", "status"),
    [
        ("OPTIONS sip:a@b SIP/3.0", 505),
        ("OPTIONS sip:a@b SIP/2.1", 505),
        ("OPTIONS sip:a@b HTTP/1.1", 400),
        ("OPTIONS sip:a@b", 400),
        ("OPTIONS  sip:a@b SIP/2.0", 400),
        ("OPTIONS sip:a@b SIP/2.0 ", 400),
        ("OPT(IONS sip:a@b SIP/2.0", 400),
        ("OPTIONS <sip:a@b> SIP/2.0", 400),
        ("OPTIONS a@b SIP/2.0", 400),
        ("OPTIONS 1sip:a@b SIP/2.0", 400),
        ("OPTIONS sip:a@b?Route=x SIP/2.0", 400),
        ("OPTIONS sip:a\x01@b SIP/2.0", 400),
        ("SIP/2.0 99 Too Low", 400),
        ("SIP/2.0 700 Too High", 400),
        ("SIP/2.0 2000 OK", 400),
        ("SIP/2.0 2x0 OK", 400),
        ("SIP/2.0 ２00 OK", 400),
        ("SIP/1.0 200 OK", 400),
        ("SIP/2.0", 400),
    ],
)
def test_bad_start_lines(first: str, status: int) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(with_headers("Content-Length: 0", first=first))
    assert info.value.status == status


def test_good_start_line_variants() -> None:
    assert parse_message(with_headers(first="OPTIONS sip:a@b sip/2.0")).method == "OPTIONS"
    r = parse_message(with_headers(first="SIP/2.0 200"))
    assert isinstance(r, Response) and r.reason == ""
    user_q = parse_message(with_headers(first="OPTIONS sip:wh?at@b SIP/2.0"))
    assert isinstance(user_q, Request) and user_q.sip_uri().user == "wh?at"
    tel = parse_message(with_headers(first="OPTIONS tel:+15551234 SIP/2.0"))
    assert isinstance(tel, Request)
    with pytest.raises(SipParseError) as info:
        tel.sip_uri()
    assert info.value.status == 416


def test_cseq_checks() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(with_headers(first="BYE sip:a@b SIP/2.0").replace(b"CSeq: 1 BYE",
                                                                          b"CSeq: 1 INVITE"))
    assert info.value.status == 400
    with pytest.raises(SipParseError) as info:
        parse_message(with_headers(first="FOO sip:a@b SIP/2.0").replace(b"CSeq: 1 FOO",
                                                                          b"CSeq: 1 BAR"))
    assert info.value.status == 501
    for bad in (b"CSeq: 2147483648 OPTIONS", b"CSeq: x OPTIONS", b"CSeq: 1", b"CSeq: -1 OPTIONS",
                b"CSeq: 1 OPTIONS extra", b"CSeq: \xd9\xa1 OPTIONS"):
        with pytest.raises(SipParseError) as info:
            parse_message(with_headers().replace(b"CSeq: 1 OPTIONS", bad))
        assert info.value.status == 400
    ok = parse_message(with_headers().replace(b"CSeq: 1 OPTIONS", b"CSeq:  2147483647   OPTIONS"))
    assert ok.cseq == (2147483647, "OPTIONS")


@pytest.mark.parametrize("missing", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_mandatory_headers(missing: str) -> None:
    lines = [ln for ln in with_headers().decode().split("\r\n")
             if not ln.startswith(f"{missing}:")]
    with pytest.raises(SipParseError, match="missing"):
        parse_message("\r\n".join(lines).encode())


@pytest.mark.parametrize("dup", ["From: <sip:x@y>;tag=2", "To: <sip:x@y>", "Call-ID: c2",
                                 "CSeq: 2 OPTIONS", "Content-Length: 0", "Max-Forwards: 1"])
def test_duplicate_single_headers(dup: str) -> None:
    data = with_headers("Content-Length: 0", "Max-Forwards: 70", dup)
    with pytest.raises(SipParseError, match="more than one"):
        parse_message(data)


def test_empty_call_id_rejected() -> None:
    with pytest.raises(SipParseError):
        parse_message(with_headers().replace(b"Call-ID: c1", b"Call-ID:  "))


# ---------------------------------------------------------------------- Content-Length
def test_content_length_shorter_body_is_an_error_on_udp() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(with_headers("Content-Length: 10", body="short"))
    assert info.value.status == 400


def test_content_length_extra_bytes_are_truncated() -> None:
    m = parse_message(with_headers("Content-Length: 5", body="hello, and more junk"))
    assert m.body == b"hello"
    assert parse_message(with_headers("Content-Length: 0", body="junk")).body == b""


def test_no_content_length_on_udp_takes_the_rest() -> None:
    assert parse_message(with_headers(body="all of it")).body == b"all of it"


@pytest.mark.parametrize("value", ["-1", "five", "1 0", "0x10", "1234567890", "", "٣"])
def test_bad_content_length(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_message(with_headers(f"Content-Length: {value}", body="x" * 20))


def test_message_too_large() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(with_headers(body="x" * MAX_MESSAGE))
    assert info.value.status == 513


# ------------------------------------------------------------------------ StreamParser
def test_stream_frames_messages_across_chunks_and_keepalives() -> None:
    one = with_headers("Content-Length: 5", body="hello")
    two = with_headers("Content-Length: 0", first="INFO sip:a@b SIP/2.0")
    stream = b"\r\n\r\n" + one + b"\r\n" + two
    parser = StreamParser()
    got = []
    for i in range(len(stream)):
        got += parser.feed(stream[i : i + 1])
    assert [m.body for m in got] == [b"hello", b""]
    assert isinstance(got[1], Request) and got[1].method == "INFO"
    assert parser.buffered == 0
    assert parser.feed(b"") == []


def test_stream_waits_for_the_body() -> None:
    parser = StreamParser()
    data = with_headers("Content-Length: 5", body="hel")
    assert parser.feed(data) == [] and parser.buffered == len(data)
    [m] = parser.feed(b"lo")
    assert m.body == b"hello"


def test_stream_requires_content_length_and_stays_broken() -> None:
    parser = StreamParser()
    with pytest.raises(SipParseError):
        parser.feed(with_headers())
    with pytest.raises(SipParseError):
        parser.feed(with_headers("Content-Length: 0"))


def test_stream_limits() -> None:
    parser = StreamParser(max_message=200)
    with pytest.raises(SipParseError) as info:
        parser.feed(b"OPTIONS sip:a@b SIP/2.0\r\nX: " + b"y" * 300)
    assert info.value.status == 513
    parser = StreamParser(max_message=300)
    with pytest.raises(SipParseError) as info:
        parser.feed(with_headers("Content-Length: 1000"))
    assert info.value.status == 513


# ---------------------------------------------------------------------- header editing
def test_set_add_remove_and_remove_first() -> None:
    m = msg()
    m.add("Via", "SIP/2.0/TCP proxy;branch=z9hG4bKp", first=True)
    assert m.top_via.host == "proxy"  # cache cleared on edit
    m.remove_first("Via")
    assert m.top_via.host == "192.0.2.10"
    m.set("Via", "SIP/2.0/UDP a;branch=z9hG4bKa, SIP/2.0/UDP b;branch=z9hG4bKb")
    m.remove_first("Via")
    assert [v.host for v in m.vias] == ["b"]
    m.set("Max-Forwards", "69")
    assert m.get("max-forwards") == "69"
    m.add("X-New", "1")
    m.add("X-New", "0", first=True)
    assert m.get_all("X-New") == ["0", "1"]
    m.set("X-New", "2")
    assert m.get_all("X-New") == ["2"]
    m.remove("X-New")
    assert not m.has("X-New") and m.get("X-New", "dflt") == "dflt"
    m.set("CSeq", "7 INVITE")
    assert m.cseq == (7, "INVITE")
    m.remove_first("Nope")


def test_copy_is_independent() -> None:
    m = msg()
    c = m.copy()
    c.set("Call-ID", "other")
    c.add("X", "1")
    assert m.call_id == "a84b4c76e66710@192.0.2.10" and not m.has("X")
    assert isinstance(c, Request) and c.method == "INVITE"
    r = make_response(m, 200)  # type: ignore[arg-type]
    rc = r.copy()
    assert rc.status == 200 and rc.headers == r.headers and rc.headers is not r.headers


def test_accessors_raise_only_sip_parse_error() -> None:
    m = Request("OPTIONS", "sip:a@b", [("Via", "garbage"), ("From", "<sip:a@b"),
                                       ("To", '"x <sip:a@b>'), ("CSeq", "x y"),
                                       ("Contact", "<sip:a b>")])
    for attr in ("vias", "top_via", "from_", "to", "cseq", "contacts"):
        with pytest.raises(SipParseError):
            getattr(m, attr)
    empty = Request("OPTIONS", "sip:a@b")
    for attr in ("top_via", "from_", "to", "cseq"):
        with pytest.raises(SipParseError):
            getattr(empty, attr)
    assert empty.vias == [] and empty.contacts == [] and empty.call_id == ""


# ----------------------------------------------------------------------- make_response
def test_make_response_copies_and_tags() -> None:
    req = parse_message(with_headers(
        "Via: SIP/2.0/UDP second;branch=z9hG4bK2", "Timestamp: 54", first="INVITE sip:a@b SIP/2.0"
    ))
    assert isinstance(req, Request)
    r = make_response(req, 180, to_tag="abc", headers=[("Contact", "<sip:me@h>")])
    assert r.status == 180 and r.reason == "Ringing"
    assert r.get_all("Via") == [
        "SIP/2.0/UDP h;branch=z9hG4bK1", "SIP/2.0/UDP second;branch=z9hG4bK2"
    ]
    assert r.to.tag == "abc" and r.from_.tag == "1"
    assert r.call_id == "c1" and r.cseq == (1, "INVITE")
    assert r.get("Contact") == "<sip:me@h>" and not r.has("Timestamp")
    trying = make_response(req, 100, to_tag="abc")
    assert trying.to.tag is None and trying.get("Timestamp") == "54"
    assert make_response(req, 486, "Busy", to_tag="t").reason == "Busy"
    # a To that already has a tag keeps it
    req.set("To", "<sip:a@b> ; tag = old")
    assert make_response(req, 200, to_tag="new").to.tag == "old"
    # a response built from it parses back
    again = parse_message(make_response(req, 200, to_tag="x").to_bytes())
    assert isinstance(again, Response) and again.status == 200


def test_a_response_kept_as_bytes_knows_its_top_via_and_to() -> None:
    """What a finished transaction keeps of its response: where it goes (the top Via
    entry, also when one line holds several) and the To (whose tag a CANCEL reuses)."""
    req = parse_message(with_headers(first="INVITE sip:a@b SIP/2.0"))
    assert isinstance(req, Request)
    req.set("Via", 'SIP/2.0/UDP h:5070;branch=z9hG4bK1;x="a,b" , SIP/2.0/UDP second')
    kept = SentResponse(make_response(req, 486, to_tag="t9"))
    assert kept.via == 'SIP/2.0/UDP h:5070;branch=z9hG4bK1;x="a,b"'
    assert kept.to_tag == "t9" and kept.status == 486
    assert parse_message(kept.to_bytes()).get("To") == kept.to


def test_stream_keeps_the_messages_before_garbage() -> None:
    """A valid message and garbage in one segment: the message is not lost with it."""
    good = with_headers("Content-Length: 5", body="hello")
    garbage = b"NOT SIP AT ALL\r\n\r\n"
    parser = StreamParser()
    [m] = parser.feed(good + garbage)
    assert m.body == b"hello"
    assert isinstance(parser.error, SipParseError)
    assert parser.unparsed == garbage
    with pytest.raises(SipParseError):  # and the stream stays broken
        parser.feed(good)
    fresh = StreamParser()
    with pytest.raises(SipParseError):  # garbage first: raised at once
        fresh.feed(garbage + good)
    assert fresh.error is not None and fresh.unparsed.startswith(b"NOT SIP")
