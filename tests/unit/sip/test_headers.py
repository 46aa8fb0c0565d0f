"""Structured header values: Via, name-addr, CSeq, parameters, lists, credentials."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ippbx.sip.headers import (
    HeaderError,
    NameAddr,
    Via,
    _auth_params,
    _auth_params_plain,
    format_params,
    parse_credentials,
    parse_cseq,
    parse_params,
    quote,
    split_list,
    unquote,
)
from ippbx.sip.parse_memo import ParseMemo


# ---------------------------------------------------------------------------------- Via
@pytest.mark.parametrize(
    ("value", "transport", "host", "port", "params"),
    [
        ("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport", "UDP", "192.0.2.1", 5060,
         {"branch": "z9hG4bK1", "rport": None}),
        ("SIP/2.0/tcp host.example.com", "TCP", "host.example.com", None, {}),
        ("SIP / 2.0 / UDP  h ; branch = z9hG4bKx ; received=192.0.2.9", "UDP", "h", None,
         {"branch": "z9hG4bKx", "received": "192.0.2.9"}),
        ("SIP  /   2.0 /UDP     192.0.2.2;branch=390skdjuw", "UDP", "192.0.2.2", None,
         {"branch": "390skdjuw"}),
        ("SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bKv6;received=2001:db8::1", "UDP",
         "2001:db8::9", 5070, {"branch": "z9hG4bKv6", "received": "2001:db8::1"}),
        ("SIP/2.0/TLS h:5061;rport=4000;x=\"quoted;value\"", "TLS", "h", 5061,
         {"rport": "4000", "x": '"quoted;value"'}),
        ("SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK56sdasks", "WSS",
         "df7jal23ls0d.invalid", None, {"branch": "z9hG4bK56sdasks"}),
        ("sip/2.0/UNKNOWN t4.example.com;BRANCH=z9hG4bKasd0f3en", "UNKNOWN",
         "t4.example.com", None, {"branch": "z9hG4bKasd0f3en"}),
    ],
)
def test_via_parse(
    value: str, transport: str, host: str, port: int | None, params: dict[str, str | None]
) -> None:
    via = Via.parse(value)
    assert (via.transport, via.host, via.port, via.params) == (transport, host, port, params)
    again = Via.parse(str(via))
    assert again == via


def test_via_branch_helpers() -> None:
    assert Via.parse("SIP/2.0/UDP h;branch=z9hG4bKabc").is_rfc3261
    assert not Via.parse("SIP/2.0/UDP h;branch=abc").is_rfc3261
    assert not Via.parse("SIP/2.0/UDP h").is_rfc3261
    assert str(Via("UDP", "::1", 5060, {"rport": None})) == "SIP/2.0/UDP [::1]:5060;rport"


@pytest.mark.parametrize(
    "value",
    [
        "", "SIP/2.0", "SIP/2.0/UDP", "SIP/2.0/UDP ", "SIP/7.0/UDP h", "HTTP/2.0/UDP h",
        "SIP/2.0/UDP h;;", "SIP/2.0/UDP h;branch=", "SIP/2.0/UDP h:99999", "SIP/2.0/UDP h:x",
        "SIP/2.0/UDP [::1", "SIP/2.0/UDP h o s t", "SIP/2.0/U(P h", "SIP/2.0/UDPh",
        "SIP/2.0/UDP h;branch=\"open", ";", "SIP/2.0/UDP <h>",
    ],
)
def test_via_parse_errors(value: str) -> None:
    with pytest.raises(HeaderError):
        Via.parse(value)


# ----------------------------------------------------------------------------- NameAddr
@pytest.mark.parametrize(
    ("value", "uri", "display", "display_name", "params"),
    [
        ('"Alice" <sip:alice@a.example>;tag=1', "sip:alice@a.example", '"Alice"', "Alice",
         {"tag": "1"}),
        ('"Doe, John; <boss>" <sip:j@h>', "sip:j@h", '"Doe, John; <boss>"',
         "Doe, John; <boss>", {}),
        ('"a \\"quoted\\" \\\\ name"<sip:q@h>', "sip:q@h", '"a \\"quoted\\" \\\\ name"',
         'a "quoted" \\ name', {}),
        ("Bob Smith <sip:bob@h:5070;transport=tcp> ; tag = 88", "sip:bob@h:5070;transport=tcp",
         "Bob Smith", "Bob Smith", {"tag": "88"}),
        ("caller<sip:caller@example.com>;tag=323", "sip:caller@example.com", "caller",
         "caller", {"tag": "323"}),
        ("Jürgen <sip:j@h>", "sip:j@h", "Jürgen", "Jürgen", {}),
        ("<sip:x@h>", "sip:x@h", None, None, {}),
        ("sip:x@h;tag=5;expires=60", "sip:x@h", None, None, {"tag": "5", "expires": "60"}),
        ('sip:x@h;+sip.instance="<urn:uuid:1>"', "sip:x@h", None, None,
         {"+sip.instance": '"<urn:uuid:1>"'}),
        ('<sip:x@h>;+sip.instance="<urn:uuid:1>";reg-id=1', "sip:x@h", None, None,
         {"+sip.instance": '"<urn:uuid:1>"', "reg-id": "1"}),
        ("tel:+15551234;tag=x", "tel:+15551234", None, None, {"tag": "x"}),
        ("<urn:service:sos>", "urn:service:sos", None, None, {}),
        ('"" <sip:x@h>', "sip:x@h", '""', "", {}),
    ],
)
def test_name_addr_parse(
    value: str, uri: str, display: str | None, display_name: str | None,
    params: dict[str, str | None],
) -> None:
    addr = NameAddr.parse(value)
    assert (addr.uri, addr.display, addr.display_name, addr.params) == (
        uri, display, display_name, params
    )
    assert NameAddr.parse(str(addr)) == addr


def test_name_addr_star_and_tag() -> None:
    star = NameAddr.parse(" * ")
    assert star.uri == "*" and str(star) == "*"
    assert NameAddr.parse("<sip:a@b>;tag=xyz").tag == "xyz"
    assert NameAddr.parse("<sip:a@b:5080>").sip_uri().port == 5080
    with pytest.raises(HeaderError):
        NameAddr.parse("<tel:+1555>").sip_uri()


@pytest.mark.parametrize(
    "value",
    [
        "", '"Mr. J. User <sip:j.user@example.com>', '"Bob" sip:bob@h', "<sip:a@b",
        "<sip:a@b> junk", "< sip:t.watson@example.org >", "Watson, Thomas <sip:t@h>",
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E", "sip:a@b,c", "no-scheme",
        "<>", "<:x>", "<1sip:x>", "<sip:a b@h>", "<sip:a@b>;;tag=1", "<sip:a@b>;tag=",
        '<sip:a@b>;x="open', "<sip:a@b>;bad name=1", "Bob (the) <sip:a@b>",
    ],
)
def test_name_addr_errors(value: str) -> None:
    with pytest.raises(HeaderError):
        NameAddr.parse(value)


# ------------------------------------------------------------------ remembered parses
def test_a_remembered_parse_is_a_fresh_object_a_caller_may_change() -> None:
    text = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKmemo1;rport"
    first = Via.parse(text)
    first.params["received"] = "198.51.100.7"  # (what a stamp does to the top Via)
    again = Via.parse(text)
    assert again is not first and again.params == {"branch": "z9hG4bKmemo1", "rport": None}
    to = "<sip:1002@192.0.2.1>;tag=memo"
    addr = NameAddr.parse(to)
    addr.params["tag"] = "changed"
    assert NameAddr.parse(to).tag == "memo"
    assert NameAddr.parse(to) is not NameAddr.parse(to)


def test_the_memo_is_bounded_and_keeps_no_long_text() -> None:
    memo: ParseMemo[NameAddr] = ParseMemo(NameAddr._parse, NameAddr._copy, size=2, longest=12)
    for text in ("<sip:a@h>", "<sip:b@h>"):
        memo.parse(text)
    assert set(memo.entries) == {"<sip:a@h>", "<sip:b@h>"}
    memo.parse("<sip:c@h>")  # full: starts again
    assert set(memo.entries) == {"<sip:c@h>"}
    assert memo.parse("<sip:long@host>").uri == "sip:long@host"  # parsed, not kept
    assert set(memo.entries) == {"<sip:c@h>"}
    with pytest.raises(HeaderError):
        memo.parse("<sip:x@h")
    assert set(memo.entries) == {"<sip:c@h>"}  # (a failed parse is not kept)


@given(st.text(alphabet='<>";= \tsip:@ab1.', max_size=30))
def test_parsing_the_same_text_twice_gives_the_same_outcome(text: str) -> None:
    outcomes = []
    for _ in range(2):
        try:
            outcomes.append(NameAddr.parse(text))
        except HeaderError as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]


@given(st.text(alphabet="0123456789 \tINVITEBYx-", max_size=24))
def test_a_cseq_parsed_twice_gives_the_same_outcome(text: str) -> None:
    """parse_cseq keeps what it parsed (a tuple, handed out as it is): a text parsed
    again, from the memo, is the same (number, method), or the same error."""
    outcomes: list[object] = []
    for _ in range(2):
        try:
            outcomes.append(parse_cseq(text))
        except HeaderError as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]
    if isinstance(outcomes[0], tuple):
        assert outcomes[0] == (int(text.split()[0]), text.split()[1])


# ------------------------------------------------------------------------ params, lists
def test_parse_params() -> None:
    assert parse_params("a=b;c; D = E ;q=0.5") == {"a": "b", "c": None, "d": "E", "q": "0.5"}
    assert parse_params('x="a;b=c";y') == {"x": '"a;b=c"', "y": None}
    assert format_params({"a": "b", "c": None}) == ";a=b;c"
    for bad in ("", ";", "a;;b", "a=", "=b", "a b=c", 'x="open'):
        with pytest.raises(HeaderError):
            parse_params(bad)


def test_split_list() -> None:
    assert split_list("") == [] and split_list("  ") == []
    assert split_list("a") == ["a"]
    assert split_list("a, b ,c,,") == ["a", "b", "c"]
    assert split_list('"x, \\"y" <sip:a,b@h>, z') == ['"x, \\"y" <sip:a,b@h>', "z"]


def test_quote_unquote() -> None:
    for text in ["", "plain", 'with "quotes"', "back\\slash", 'both \\"']:
        assert unquote(quote(text)) == text
    assert unquote("token") == "token"
    with pytest.raises(HeaderError):
        unquote('"a" b"')
    with pytest.raises(HeaderError):
        unquote('"open')


# --------------------------------------------------------------------------------- CSeq
def test_parse_cseq() -> None:
    assert parse_cseq("4711 INVITE") == (4711, "INVITE")
    assert parse_cseq("  0009 \t INVITE ") == (9, "INVITE")
    assert parse_cseq("2147483647 X") == (2147483647, "X")
    for bad in ("", "1", "INVITE", "1 2 3", "2147483648 INVITE", "-1 INVITE", "1.0 INVITE",
                "12345678901 INVITE", "1 INV(ITE", "¹ INVITE"):
        with pytest.raises(HeaderError):
            parse_cseq(bad)


# -------------------------------------------------------------------------- credentials
def test_parse_credentials() -> None:
    scheme, params = parse_credentials(
        'Digest username="bob", realm="r,1", nonce="n\\"q", uri="sip:a@b", qop=auth, '
        "nc=00000001, Algorithm=MD5, opaque=\"\""
    )
    assert scheme == "Digest"
    assert params == {
        "username": "bob", "realm": "r,1", "nonce": 'n"q', "uri": "sip:a@b", "qop": "auth",
        "nc": "00000001", "algorithm": "MD5", "opaque": "",
    }
    assert parse_credentials("Digest\tusername=x")[1] == {"username": "x"}
    for bad in ("", "   ", 'Digest username="open', "Digest username", "Digest =x",
                "Digest a=b c", "Di(gest a=b", "Bearer abc="):
        with pytest.raises(HeaderError):
            parse_credentials(bad)


_PIECES = st.sampled_from([
    "username", "Nonce", "uri", "a", "=", "=", ",", ",", " ", "\t", '"', '"', "\\", "<",
    ">", "sip:b@c", "x y", "00000001", "MD5", ";", "\r\n", "é", "\x0b", "(",
])


_WS = st.sampled_from(["", " ", "  ", "\t"])
_ITEM = st.tuples(
    _WS, st.sampled_from(["username", "Nonce", "nc", "a"]), _WS, _WS,
    st.one_of(st.text(st.sampled_from('ab ,<>"\\=\t'), max_size=6).map(lambda t: f'"{t}"'),
              st.text(st.sampled_from("ab:@<>=;"), min_size=1, max_size=6)),
    _WS,
).map(lambda p: f"{p[0]}{p[1]}{p[2]}={p[3]}{p[4]}{p[5]}")


@given(st.one_of(st.lists(_PIECES, max_size=14).map("".join),
                 st.lists(_ITEM, max_size=5).map(",".join)))
def test_credentials_read_in_one_pass_as_item_by_item(rest: str) -> None:
    """The one-expression reading of plain credentials gives what the item-by-item one
    gives, and leaves to it whatever it does not read whole (which it may refuse)."""
    plain = _auth_params_plain(rest)
    if plain is None:
        return
    assert plain == _auth_params(rest)


def test_credentials_of_a_phone_are_read_in_one_pass() -> None:
    rest = ('username="1001", realm="ippbx", nonce="abc", uri="sip:5551234@127.0.0.1", '
            'response="0123", algorithm=MD5, cnonce="c\\d", qop=auth, nc=00000001')
    assert _auth_params_plain(rest) == _auth_params(rest)
    assert _auth_params_plain(rest) is not None
    assert _auth_params_plain("a=1,,b=2") is None and _auth_params("a=1,,b=2") == {
        "a": "1", "b": "2"}
