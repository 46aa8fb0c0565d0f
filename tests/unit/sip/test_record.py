"""The SIP stack's records (`sip/record.py`) behave as the dataclasses they replaced:
equal by class and fields, printed by field, not hashable, their defaults fresh."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ippbx.sip
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


def _literal(node: ast.ClassDef, name: str) -> tuple[str, ...] | None:
    for stmt in node.body:
        if isinstance(stmt, ast.Assign) and [getattr(t, "id", None) for t in stmt.targets] \
                == [name]:
            return tuple(ast.literal_eval(stmt.value))
    return None


def test_fields_name_what_init_takes_and_the_slots_hold() -> None:
    """A field left out of `FIELDS` would be left out of `==` and the repr, silently. Read
    from the source: compiled, a class keeps no `__slots__` and shows no signature."""
    classes = [node for path in sorted(Path(ippbx.sip.__file__).parent.glob("*.py"))
               for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.ClassDef)]
    records = {"Record"}
    while True:  # (a record's base may be a record too, in any file)
        more = {c.name for c in classes
                if any(getattr(b, "id", None) in records for b in c.bases)}
        if more <= records:
            break
        records |= more
    checked = []
    for node in classes:
        if node.name == "Record" or node.name not in records:
            continue
        fields, slots = _literal(node, "FIELDS"), _literal(node, "__slots__")
        if fields is None:  # one that adds no field to its base's
            assert slots == () and not any(isinstance(f, ast.FunctionDef)
                                           and f.name == "__init__" for f in node.body)
            continue
        assert slots == fields, node.name
        init = next(f for f in node.body
                    if isinstance(f, ast.FunctionDef) and f.name == "__init__")
        assert tuple(a.arg for a in init.args.args[1:]) == fields, node.name
        checked.append(node.name)
    assert {"Via", "NameAddr", "SipUri", "Send", "_Keyed"} <= set(checked)
