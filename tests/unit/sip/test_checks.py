"""sip/checks.py: the header checks every message meets, and the §8.2.2 refusals."""

from __future__ import annotations

import pytest

from ippbx.sip.checks import check_request, malformed
from ippbx.sip.message import Request, Response, parse_message


def request(method: str = "INVITE", uri: str = "sip:1001@10.0.0.1", *, to: str =
            "<sip:1001@10.0.0.1>", extra: str = "", from_: str = "<sip:a@10.0.0.2>;tag=f",
            contact: str = "<sip:a@10.0.0.2>") -> Request:
    text = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1\r\n"
        f"From: {from_}\r\nTo: {to}\r\nCall-ID: c1\r\nCSeq: 1 {method}\r\n"
        f"Contact: {contact}\r\n{extra}Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def test_well_formed_messages_pass() -> None:
    assert malformed(request()) is None
    assert malformed(request("REGISTER", contact="*")) is None
    response = Response(200, None, list(request().headers))
    assert malformed(response) is None


@pytest.mark.parametrize(("field", "value"), [
    ("from_", "<sip:a@10.0.0.2;tag=f"),  # unclosed <
    ("to", '"Bob <sip:b@h>'),  # unterminated quote
    ("contact", "sip:a@h?x=y"),  # '?' outside <>
])
def test_malformed_names_the_broken_field(field: str, value: str) -> None:
    problem = malformed(request(**{field: value}))
    assert problem is not None and problem


def test_malformed_second_via_and_response() -> None:
    msg = request()
    msg.add("Via", "SIP/2.0/UDP ;;;")
    assert malformed(msg) is not None
    assert malformed(Response(200, None, [("Via", "junk"), *request().headers[1:]])) is not None


@pytest.mark.parametrize("uri", ["unknownscheme:1001", "tel:+15551234", "soap.beep://h:1",
                                 "http://example.com"])
def test_unknown_request_uri_scheme_is_416(uri: str) -> None:
    refusal = check_request(request(uri=uri))
    assert refusal is not None and refusal.status == 416


def test_other_schemes_can_be_served() -> None:
    assert check_request(request(uri="tel:+15551234"), schemes=frozenset({"sip", "tel"})) is None
    assert check_request(request(uri="SIPS:1001@10.0.0.1")) is None


def test_malformed_sip_request_uri_is_400() -> None:
    refusal = check_request(request(uri="sip:1001@10.0.0.1;;x"))
    assert refusal is not None and refusal.status == 400


def test_register_to_must_be_a_sip_uri() -> None:
    refusal = check_request(request("REGISTER", to="isbn:2983792873"))
    assert refusal is not None and refusal.status == 400
    assert check_request(request("INVITE", to="isbn:2983792873")) is None  # only REGISTER


def test_require_unsupported_is_420_listing_them() -> None:
    refusal = check_request(request(extra="Require: foo\r\nRequire: 100rel, timer\r\n"))
    assert refusal is not None and refusal.status == 420
    assert refusal.headers == (("Unsupported", "foo, 100rel, timer"),)
    refusal = check_request(request(extra="Require: foo, Timer\r\n"),
                            supported=["timer"])
    assert refusal is not None and refusal.headers == (("Unsupported", "foo"),)
    assert check_request(request(extra="Require: TIMER\r\n"), supported=["timer"]) is None


@pytest.mark.parametrize("method", ["ACK", "CANCEL"])
def test_ack_and_cancel_never_get_420(method: str) -> None:
    assert check_request(request(method, extra="Require: foo\r\n")) is None


def test_proxy_require_is_for_proxies() -> None:
    assert check_request(request(extra="Proxy-Require: foo\r\n")) is None


def test_order_scheme_before_require() -> None:
    refusal = check_request(request(uri="x:y", extra="Require: foo\r\n"))
    assert refusal is not None and refusal.status == 416
