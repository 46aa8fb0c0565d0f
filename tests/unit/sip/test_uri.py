"""SIP URIs: parts, IPv6, parameters, escapes, and what is rejected."""

from __future__ import annotations

import pytest

from ippbx.sip.errors import SipParseError
from ippbx.sip.uri import SipUri, UriError, equivalent, is_scheme, split_host_port, unescape


@pytest.mark.parametrize(
    ("text", "user", "password", "host", "port", "params", "headers"),
    [
        ("sip:alice@atlanta.com", "alice", None, "atlanta.com", None, {}, ""),
        ("sip:alice:secretword@atlanta.com;transport=tcp", "alice", "secretword",
         "atlanta.com", None, {"transport": "tcp"}, ""),
        ("sips:alice@atlanta.com?subject=project%20x&priority=urgent", "alice", None,
         "atlanta.com", None, {}, "subject=project%20x&priority=urgent"),
        ("sip:+1-212-555-1212:1234@gateway.com;user=phone", "+1-212-555-1212", "1234",
         "gateway.com", None, {"user": "phone"}, ""),
        ("sip:alice@192.0.2.4:5070", "alice", None, "192.0.2.4", 5070, {}, ""),
        ("sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com", None, None, "atlanta.com",
         None, {"method": "REGISTER"}, "to=alice%40atlanta.com"),
        ("sip:alice;day=tuesday@atlanta.com", "alice;day=tuesday", None, "atlanta.com", None,
         {}, ""),
        ("sip:[2001:db8::10]", None, None, "2001:db8::10", None, {}, ""),
        ("sip:1001@[2001:db8::10]:5062;transport=udp;lr", "1001", None, "2001:db8::10", 5062,
         {"transport": "udp", "lr": None}, ""),
        ("sip:[::ffff:192.0.2.1]:5060", None, None, "::ffff:192.0.2.1", 5060, {}, ""),
        ("SIP:Bob@Example.COM;Maddr=239.255.255.1;TTL=15", "Bob", None, "Example.COM", None,
         {"maddr": "239.255.255.1", "ttl": "15"}, ""),
        ("sip:host_with_underscore.example", None, None, "host_with_underscore.example", None,
         {}, ""),
        ("  sip:a@b  ", "a", None, "b", None, {}, ""),
    ],
)
def test_parse(
    text: str, user: str | None, password: str | None, host: str, port: int | None,
    params: dict[str, str | None], headers: str,
) -> None:
    uri = SipUri.parse(text)
    assert (uri.user, uri.password, uri.host, uri.port, uri.params, uri.headers) == (
        user, password, host, port, params, headers
    )
    assert SipUri.parse(str(uri)) == uri


def test_str_round_trip_keeps_the_text() -> None:
    for text in ("sip:1001@[2001:db8::10]:5062;transport=udp;lr",
                 "sips:a:b@h:1;x=y?h=v", "sip:h"):
        assert str(SipUri.parse(text)) == text


@pytest.mark.parametrize(
    ("text", "transport"),
    [
        ("sip:h;transport=UDP", "udp"),  # sipp's built-in UAS writes it upper-case
        ("sip:h;TRANSPORT=Tcp", "tcp"),
        ("sip:h", "udp"),
        ("sips:h", "tls"),
        ("sip:h;transport=ws", "ws"),
    ],
)
def test_transport_is_case_insensitive(text: str, transport: str) -> None:
    assert SipUri.parse(text).transport == transport


def test_param_lookup() -> None:
    uri = SipUri.parse("sip:h;User=Phone;X-Custom=MixedCase;lr")
    assert uri.param("user") == "phone" and uri.param("USER") == "phone"
    assert uri.param("x-custom") == "MixedCase"  # other values keep their case
    assert uri.param("lr") is None and "lr" in uri.params
    assert uri.param("missing") is None
    changed = uri.with_params(lr=None, transport="tcp")
    assert "lr" not in changed.params and changed.transport == "tcp"
    assert "lr" in uri.params  # the original is untouched


def test_escapes() -> None:
    assert unescape("%75se%72") == "user"
    assert unescape("I%20have%20spaces") == "I have spaces"
    assert unescape("null-%00-null") == "null-\x00-null"
    assert unescape("%e5%a4%a7") == "大"
    assert unescape("100%") == "100%" and unescape("%zz") == "%zz"
    assert unescape("plain") == "plain"
    uri = SipUri.parse("sip:sips%3Auser%40example.com@example.net")
    assert uri.user == "sips%3Auser%40example.com"
    assert uri.unescaped_user == "sips:user@example.com"
    assert SipUri.parse("sip:h").unescaped_user is None


def test_unusual_but_legal_user_and_password() -> None:
    uri = SipUri.parse(
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too."
        "(doesn't-it)@example.com"
    )
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com" and uri.params == {} and uri.headers == ""


@pytest.mark.parametrize(
    "text",
    [
        "", "sip:", "tel:+15551234", "http://x", "sip", "sip:@h", "sip:a@", "sip:a@b:",
        "sip:a@b:0", "sip:a@b:65536", "sip:a@b:5o60", "sip:a@[::1", "sip:a@[::1]x",
        "sip:a@[zz::1]", "sip:a@[]", "sip:a@2001:db8::1", "sip:a b@h", "sip:a@h h",
        "sip:a<b@h", "sip:a@h;", "sip:a@h;x=", "sip:a@h;=y", "sip:a@h?", "sip:%zz@h",
        "sip:a%2@h", "sip:a@h;p=%g1", "sip:a@h?x=\"y\"", "sip:a@h:５０６０", "sip:a@hö",
    ],
)
def test_rejects(text: str) -> None:
    with pytest.raises(UriError):
        SipUri.parse(text)


def test_uri_error_is_a_sip_parse_error_and_a_value_error() -> None:
    with pytest.raises(SipParseError) as info:
        SipUri.parse("mailto:x@y")
    assert isinstance(info.value, ValueError) and info.value.status == 400


def test_split_host_port() -> None:
    assert split_host_port("h") == ("h", None)
    assert split_host_port(" h : 5060 ") == ("h", 5060)
    assert split_host_port("[::1]:5060") == ("::1", 5060)
    assert split_host_port("192.0.2.1:1") == ("192.0.2.1", 1)
    for bad in ("", ":5060", "h:", "h:65536", "[::1]:", "[::1]5060", "h:-1", "a@b"):
        with pytest.raises(UriError):
            split_host_port(bad)


def test_is_scheme() -> None:
    assert is_scheme("sip") and is_scheme("soap.beep") and is_scheme("x+y-z")
    assert not is_scheme("") and not is_scheme("1sip") and not is_scheme("<sip")
    assert not is_scheme("sí")


# -- equivalence (RFC 3261 §19.1.4), used to match a digest's uri against the Request-URI --
@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sip:alice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;newparam=5"),
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@atlanta.com;transport=TCP"),
        ("sip:alice@[2001:db8::10]:5060", "sip:alice@[2001:DB8:0::10]:5060"),
        ("sip:carol@chicago.com?Subject=next%20meeting",
         "sip:carol@chicago.com?Subject=%6Eext%20meeting"),
        ("tel:+1234", "TEL:+1234"),
    ],
)
def test_equivalent_uris(a: str, b: str) -> None:
    assert equivalent(a, b) and equivalent(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com", "sips:bob@biloxi.com"),
        ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;newparam=6"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
        ("sip:1002@pbx", "sip:1003@pbx"),
        ("sip:1002@pbx;user=phone", "sip:1002@pbx"),
        ("tel:+1234", "tel:+1235"),
    ],
)
def test_different_uris(a: str, b: str) -> None:
    assert not equivalent(a, b) and not equivalent(b, a)


def test_a_remembered_uri_is_a_fresh_object_a_caller_may_change() -> None:
    text = "sip:1002@192.0.2.4:5070;transport=udp?Subject=memo"
    first = SipUri.parse(text)
    first.headers = ""  # (what a dialog does to a remote target it keeps)
    first.params["lr"] = None
    again = SipUri.parse(text)
    assert again is not first
    assert (again.headers, again.params) == ("Subject=memo", {"transport": "udp"})
    assert str(SipUri.parse(text)) == text
