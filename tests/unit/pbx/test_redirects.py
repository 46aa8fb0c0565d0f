"""3xx redirects (pbx/redirects.py): the numbers a redirect names, in q order, and the
Contacts a relayed one carries."""

from __future__ import annotations

from ippbx.pbx.dialplan import ToExtension, ToTrunks
from ippbx.pbx.redirects import (
    contact_number,
    is_redirect,
    redirect_numbers,
    relayed_contacts,
    target_key,
)
from ippbx.sip.message import Request, Response, make_response


def moved(*contacts: str, status: int = 302) -> Response:
    invite = Request("INVITE", "sip:1002@pbx", [
        ("Via", "SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKrd"),
        ("From", "<sip:1001@pbx>;tag=a"), ("To", "<sip:1002@pbx>"),
        ("Call-ID", "rd@10.0.0.9"), ("CSeq", "1 INVITE"), ("Max-Forwards", "70"),
    ])
    return make_response(invite, status, to_tag="b",
                         headers=[("Contact", c) for c in contacts])


def test_the_number_a_contact_names() -> None:
    assert contact_number("sip:1003@10.0.0.5:5062;transport=tcp") == "1003"
    assert contact_number("sips:+15551234@carrier.example") == "+15551234"
    assert contact_number("sip:%2A72@pbx") == "*72"  # escapes decoded
    assert contact_number("sip:5551234;phone-context=example.com@gw") == "5551234"
    assert contact_number("tel:+15551234;phone-context=+1") == "+15551234"
    assert contact_number("SIP:1003@h") == "1003"
    for nothing in ("sip:pbx.example", "mailto:a@b", "http://x/y", "nonsense",
                    "sip:a%20b@h", "sip:" + "1" * 33 + "@h"):
        assert contact_number(nothing) == "", nothing


def test_numbers_highest_q_first_each_once() -> None:
    response = moved("<sip:1003@h>;q=0.3, <sip:1004@h>;q=0.7", "<sip:1005@h>",
                     "<sip:1004@other>;q=0.1", "<mailto:x@y>", "<sip:host-only>")
    assert redirect_numbers(response) == ["1005", "1004", "1003"]
    assert redirect_numbers(moved()) == []
    # a malformed entry is skipped, not fatal; a bad q counts as 1
    assert redirect_numbers(moved('<sip:1003@h', "<sip:1004@h>;q=x")) == ["1004"]


def test_relayed_contacts_point_at_ippbx() -> None:
    response = moved('"Bob" <sip:1003@10.0.0.5:5062>;q=0.5;expires=60;+sip.instance="<x>"',
                     "<sip:9#1@10.0.0.5>", "<sip:10.0.0.5>")
    assert relayed_contacts(response, lambda n: f"sip:{n}@pbx:5060") == [
        "<sip:9%231@pbx:5060>", "<sip:1003@pbx:5060>;q=0.5;expires=60"]


def test_keys_and_statuses() -> None:
    assert is_redirect(302) and is_redirect(380) and not is_redirect(None)
    assert not is_redirect(200) and not is_redirect(404)
    assert target_key(ToExtension("1003")) != target_key(ToTrunks("r", "1003", ("t",)))
    assert target_key(ToTrunks("a", "555", ("t",))) == target_key(ToTrunks("b", "555", ()))
