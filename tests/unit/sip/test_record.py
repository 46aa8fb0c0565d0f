"""The SIP stack's records (`sip/record.py`) behave as the dataclasses they replaced:
equal by class and fields, printed by field, not hashable, their defaults fresh."""

from __future__ import annotations

import pytest

from ippbx.sip.headers import NameAddr, Via
from ippbx.sip.transaction import Terminated, Timeout, TxKey
from ippbx.sip.uri import SipUri

KEY = TxKey(True, "z9hG4bK1", "", "INVITE")


def test_equal_by_class_and_fields() -> None:
    assert Via("UDP", "h", 5060, {"branch": "b"}) == Via("UDP", "h", 5060, {"branch": "b"})
    assert Via("UDP", "h", 5060) != Via("UDP", "h", 5061)
    assert Via("UDP", "h", 5060) != Via("TCP", "h", 5060)
    # the same fields in another class are another value
    assert Timeout(KEY) != Terminated(KEY)
    assert Timeout(KEY) == Timeout(KEY)
    assert NameAddr("sip:a@h") != "sip:a@h"


def test_printed_by_field() -> None:
    assert repr(NameAddr("sip:a@h", '"A"', {"tag": "1"})) == \
        "NameAddr(uri='sip:a@h', display='\"A\"', params={'tag': '1'})"
    assert repr(Terminated(KEY)).startswith("Terminated(key=TxKey(client=True")


def test_not_hashable_and_defaults_fresh() -> None:
    with pytest.raises(TypeError):
        hash(Via("UDP", "h"))
    one, two = SipUri("h"), SipUri("h")
    one.params["transport"] = "tcp"  # each record has its own parameters
    assert two.params == {}
    assert one.with_params(transport=None) == two
    assert one.with_params(lr="").params == {"transport": "tcp", "lr": ""}
