"""RFC 4475 §3.1 torture messages (fixtures in torture/): what the parser does with each.

Valid messages (§3.1.1) must parse and read correctly. Invalid ones (§3.1.2) must raise
SipParseError and nothing else, with the status the RFC asks for. Structured headers are
parsed lazily, so "rejected" means: `parse_message` raises, or the first property the
stack reads on every request (`vias`, `from_`, `to`, `contacts`) raises. Each entry of
INVALID says which, and why; the few the RFC only calls semantically invalid (and which we
accept) are in ACCEPTED_INVALID with the reason.
"""

from __future__ import annotations

import pathlib

import pytest

from ippbx.sip.errors import SipParseError
from ippbx.sip.headers import NameAddr
from ippbx.sip.message import Request, Response, StreamParser, parse_message
from ippbx.sip.uri import SipUri

TORTURE = pathlib.Path(__file__).parent / "torture"


def load(name: str) -> bytes:
    [path] = TORTURE.glob(f"*/{name}.sip")
    return path.read_bytes()


def touch_all(msg: Request | Response) -> None:
    """Read every structured view the stack relies on."""
    msg.vias  # noqa: B018
    msg.top_via  # noqa: B018
    msg.from_  # noqa: B018
    msg.to  # noqa: B018
    msg.cseq  # noqa: B018
    msg.contacts  # noqa: B018


def uri_of(addr: NameAddr) -> SipUri:
    return addr.sip_uri()


# ------------------------------------------------------------------------ §3.1.1 valid
# name: (method or status, Request-URI or None, Call-ID, CSeq, top Via branch,
#        To URI, From URI, body length)
VALID = {
    "wsinv": ("INVITE", "sip:vivekg@chair-dnrc.example.com;unknownparam",
              "wsinv.ndaksdj@192.0.2.1", (9, "INVITE"), "390skdjuw",
              "sip:vivekg@chair-dnrc.example.com", "sip:jdrosen@example.com", 150),
    "intmeth": ("!interesting-Method0123456789_*+`.%indeed'~",
                "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d"
                "_too.(doesn't-it)@example.com",
                "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
                (139122385, "!interesting-Method0123456789_*+`.%indeed'~"),
                "z9hG4bK-.!%66*_+`'~",
                "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com",
                "sip:mundane@example.com", 0),
    "esc01": ("INVITE", "sip:sips%3Auser%40example.com@example.net",
              "esc01.239409asdfakjkn23onasd0-3234", (234234, "INVITE"), "z9hG4bKkdjuw",
              "sip:%75se%72@example.com", "sip:I%20have%20spaces@example.net", 150),
    "escnull": ("REGISTER", "sip:example.com", "escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd",
                (14398234, "REGISTER"), "z9hG4bKkdjuw", "sip:null-%00-null@example.com",
                "sip:null-%00-null@example.com", 0),
    "esc02": ("RE%47IST%45R", "sip:registrar.example.com",
              "esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf", (29344, "RE%47IST%45R"),
              "z9hG4bK209%fzsnel234", "sip:resource@example.com", "sip:resource@example.com",
              0),
    "lwsdisp": ("OPTIONS", "sip:user@example.com", "lwsdisp.1234abcd@funky.example.com",
                (60, "OPTIONS"), "z9hG4bKkdjuw", "sip:user@example.com",
                "sip:caller@example.com", 0),
    "longreq": ("INVITE", "sip:user@example.com",
                "longreq.one" + "really" * 20 + "longcallid", (3882340, "INVITE"), None,
                "sip:user@example.com:6000;unknownparam1=very" + "long" * 20
                + "value;longparam" + "name" * 25 + "=shortvalue;very" + "long" * 25
                + "ParameterNameWithNoValue",
                "sip:" + "amazinglylongcallername" * 5 + "@example.net", 150),
    "dblreq": ("REGISTER", "sip:example.com", "dblreq.0ha0isndaksdj99sdfafnl3lk233412",
               (8, "REGISTER"), "z9hG4bKkdjuw23492", "sip:j.user@example.com",
               "sip:j.user@example.com", 0),
    "semiuri": ("OPTIONS", "sip:user;par=u%40example.net@example.com",
                "semiuri.0ha0isndaksdj", (8, "OPTIONS"), "z9hG4bKkdjuw",
                "sip:j_user@example.com", "sip:caller@example.org", 0),
    "transports": ("OPTIONS", "sip:user@example.com", "transports.kijh4akdnaqjkwendsasfdj",
                   (60, "OPTIONS"), "z9hG4bKkdjuw", "sip:user@example.com",
                   "sip:caller@example.com", 0),
    "mpart01": ("MESSAGE", "sip:kumiko@example.org",
                "3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..", (1, "MESSAGE"),
                "z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-", "sip:kumiko@example.org",
                "sip:fluffy@example.com", 553),
    "unreason": (200, None, "unreason.1234ksdfak3j2erwedfsASdf", (35, "INVITE"),
                 "z9hG4bK1324923", "sip:user@example.edu", "sip:user@example.com", 154),
    "noreason": (100, None, "noreason.asndj203insdf99223ndf", (35, "INVITE"),
                 "z9hG4bK2398ndaoe", "sip:user@example.edu", "sip:user@example.com", 0),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_message_parses_with_its_key_fields(name: str) -> None:
    kind, ruri, call_id, cseq, branch, to_uri, from_uri, body_len = VALID[name]
    msg = parse_message(load(name))
    if isinstance(kind, int):
        assert isinstance(msg, Response) and msg.status == kind
    else:
        assert isinstance(msg, Request)
        assert msg.method == kind and msg.uri == ruri
        msg.sip_uri()  # every valid Request-URI here is a well-formed SIP URI
    assert msg.call_id == call_id
    assert msg.cseq == cseq
    assert msg.top_via.branch == branch
    assert msg.to.uri == to_uri and msg.from_.uri == from_uri
    uri_of(msg.to)
    uri_of(msg.from_)
    assert len(msg.body) == body_len
    touch_all(msg)
    # serialising and parsing again keeps the message
    again = parse_message(msg.to_bytes())
    assert [h for h in again.headers if h[0] != "Content-Length"] == [
        h for h in msg.headers if h[0] != "Content-Length"
    ]
    assert again.get("Content-Length") == str(body_len)
    assert again.body == msg.body


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_message_framed_by_the_stream_parser(name: str) -> None:
    data = load(name)
    if name == "dblreq":  # over a stream the trailing INVITE is a second message
        first, second = StreamParser().feed(data)
        assert first.call_id.startswith("dblreq.0ha0isndaksdj99")
        assert isinstance(second, Request) and second.method == "INVITE"
        return
    [msg] = StreamParser().feed(data)
    assert msg.to_bytes() == parse_message(data).to_bytes()


def test_wsinv_details() -> None:
    msg = parse_message(load("wsinv"))
    assert msg.get("Max-Forwards") == "0068"
    assert msg.get("Subject") == ""
    assert msg.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert [(v.transport, v.host, v.branch) for v in msg.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert msg.from_.display_name == 'J Rosenberg \\"'
    assert msg.from_.tag == "98asjd8" and msg.to.tag == "1918181833n"
    [contact] = msg.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert msg.sip_uri().params == {"unknownparam": None}
    route = NameAddr.parse(msg.get("Route") or "").sip_uri()
    assert route.params == {"lr": None, "unknownwith": "value", "unknown-no-value": None}


def test_intmeth_details() -> None:
    msg = parse_message(load("intmeth"))
    assert isinstance(msg, Request)
    ruri = msg.sip_uri()
    assert ruri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert ruri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert ruri.host == "example.com"
    assert msg.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert msg.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert msg.from_.params["fromparam''~+*_!.-%"] == '"работающий"'
    assert msg.from_.tag == "_token~1'+`*%!-."
    assert msg.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"
    assert msg.get("Max-Forwards") == "255"


def test_escapes_are_kept_and_decodable() -> None:
    msg = parse_message(load("esc01"))
    assert isinstance(msg, Request)
    assert msg.sip_uri().unescaped_user == "sips:user@example.com"
    assert msg.to.sip_uri().unescaped_user == "user"
    assert msg.from_.sip_uri().unescaped_user == "I have spaces"
    contact = msg.contacts[0].sip_uri()
    assert contact.unescaped_user == "caller"
    # RFC 3986: unescaping is never recursive; the parameter stays as it arrived
    assert contact.params == {"%6c%72": None, "n%61me": "v%61lue%25%34%31"}
    nulls = parse_message(load("escnull"))
    assert nulls.to.sip_uri().unescaped_user == "null-\x00-null"
    assert [c.sip_uri().unescaped_user for c in nulls.contacts] == ["\x00", "\x00\x00"]


def test_percent_is_not_an_escape_outside_uris() -> None:
    msg = parse_message(load("esc02"))
    assert isinstance(msg, Request) and msg.method == "RE%47IST%45R"
    assert msg.to.display_name == "%Z%45"
    assert [c.uri for c in msg.contacts] == [
        "sip:alias1@host1.example.com", "sip:alias3@host3.example.com"
    ]
    assert msg.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_longreq_details() -> None:
    msg = parse_message(load("longreq"))
    vias = msg.vias
    assert len(vias) == 34
    assert [v.host for v in vias[:33]] == [f"sip{i}.example.com" for i in range(33, 0, -1)]
    assert vias[-1].params == {"received": "192.0.2.5", "branch": "very" + "long" * 50
                               + "branchvalue"}
    assert msg.to.sip_uri().port == 6000
    assert msg.from_.tag == "12" + "982" * 50 + "424"
    assert msg.get("Unknown-" + "Long" * 20 + "-Name", "").startswith("unknown-long")


def test_dblreq_ignores_octets_past_content_length_on_udp() -> None:
    msg = parse_message(load("dblreq"))
    assert msg.body == b"" and b"INVITE" not in msg.to_bytes()


def test_semiuri_user_part_holds_the_semicolon() -> None:
    msg = parse_message(load("semiuri"))
    assert isinstance(msg, Request)
    ruri = msg.sip_uri()
    assert ruri.user == "user;par=u%40example.net" and ruri.host == "example.com"
    assert ruri.unescaped_user == "user;par=u@example.net"
    assert ruri.params == {}
    assert msg.get_all("Accept") == [
        "application/sdp", "application/pkcs7-mime", "multipart/mixed", "multipart/signed",
        "message/sip", "message/sipfrag",
    ]


def test_transports() -> None:
    msg = parse_message(load("transports"))
    assert [v.transport for v in msg.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_mpart01_binary_body_is_kept_byte_exact() -> None:
    data = load("mpart01")
    msg = parse_message(data)
    assert msg.body == data[-553:]
    assert b"\x00" in msg.body
    assert msg.top_via.port == 5070 and "rport" in msg.top_via.params


def test_reason_phrases() -> None:
    unreason = parse_message(load("unreason"))
    assert isinstance(unreason, Response)
    assert unreason.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    assert unreason.to_bytes().startswith(load("unreason").split(b"\r\n")[0] + b"\r\n")
    noreason = parse_message(load("noreason"))
    assert isinstance(noreason, Response) and noreason.reason == ""


# ---------------------------------------------------------------------- §3.1.2 invalid
# name: (where it is rejected, expected status, why)
INVALID = {
    "badinv01": ("vias", 400, "empty Via parameters ';;' and a Via item that is only ';'"),
    "clerr": ("parse", 400, "Content-Length 9999 > body on UDP (a stream would just wait)"),
    "ncl": ("parse", 400, "negative Content-Length"),
    "scalar02": ("parse", 400, "CSeq number >= 2**31 (checked at parse time)"),
    "scalarlg": ("parse", 400, "response CSeq number >= 2**31: dropped"),
    "quotbal": ("to", 400, "unterminated quoted display name in To"),
    "ltgtruri": ("parse", 400, "Request-URI enclosed in <> has no valid scheme"),
    "lwsruri": ("parse", 400, "LWS inside the Request-URI makes four start-line parts"),
    "lwsstart": ("parse", 400, "more than one SP between start-line elements"),
    "trws": ("parse", 400, "SP after SIP-Version (RFC: acceptable to reject)"),
    "escruri": ("parse", 400, "?headers in a SIP Request-URI"),
    "regbadct": ("contacts", 400, "addr-spec with '?' must be in <> (RFC 3261 §20)"),
    "badaspec": ("to", 400, "spaces inside <...> of the To addr-spec"),
    "baddn": ("from_", 400, "unquoted display name with ',' (From and To)"),
    "badvers": ("parse", 505, "SIP/7.0"),
    "mismatch01": ("parse", 400, "CSeq method INVITE on an OPTIONS request"),
    "mismatch02": ("parse", 501, "unknown method whose CSeq differs: 501 (RFC prefers it)"),
    "bigcode": ("parse", 400, "status code 4294967301 is not three digits: dropped"),
}
# Only semantically invalid: accepted by the parser, left to the layer that cares.
ACCEPTED_INVALID = {
    "baddate": "Date with a non-GMT zone: we never read Date, and the RFC says an element "
    "shouldn't reject for it unless Date matters to its processing",
}


def test_every_fixture_is_classified() -> None:
    names = {p.stem for p in (TORTURE / "invalid").glob("*.sip")}
    assert names == set(INVALID) | set(ACCEPTED_INVALID)
    assert {p.stem for p in (TORTURE / "valid").glob("*.sip")} == set(VALID)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_message_is_rejected(name: str) -> None:
    stage, status, _why = INVALID[name]
    data = load(name)
    if stage == "parse":
        with pytest.raises(SipParseError) as info:
            parse_message(data)
    else:
        msg = parse_message(data)  # lazily parsed headers: the message frames fine
        with pytest.raises(SipParseError) as info:
            getattr(msg, stage)
        with pytest.raises(SipParseError):
            touch_all(msg)
    assert info.value.status == status


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_message_on_a_stream_raises_only_sip_parse_error(name: str) -> None:
    parser = StreamParser()
    try:
        for msg in parser.feed(load(name)):
            touch_all(msg)
    except SipParseError:
        pass
    if name == "clerr":  # over TCP the receiver can only wait for the missing bytes
        assert parser.buffered > 0


@pytest.mark.parametrize("name", sorted(ACCEPTED_INVALID))
def test_semantically_invalid_message_is_accepted(name: str) -> None:
    msg = parse_message(load(name))
    touch_all(msg)
    assert msg.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"
