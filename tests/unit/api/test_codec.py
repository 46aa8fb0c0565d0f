"""Codec: JSON/XML request decoding and response encoding (no sockets)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ippbx.api import codec
from ippbx.api.codec import CodecError, Format, ItemList

DECL = '<?xml version="1.0" encoding="UTF-8" ?>'


# -- JSON in ----------------------------------------------------------------------------------
def test_json_numbers_keep_their_source_text() -> None:
    body = b'{"outboundid": 1589938378.1130, "port": 8260, "big": 1e400, "n": -0.0}'
    assert codec.decode_json(body) == {
        "outboundid": "1589938378.1130",
        "port": "8260",
        "big": "1e400",
        "n": "-0.0",
    }


def test_json_huge_integer_is_text_not_an_error() -> None:
    digits = "9" * 5000
    assert codec.decode_json(f'{{"a": {digits}}}'.encode()) == {"a": digits}


@pytest.mark.parametrize(
    "body",
    [b"[]", b"42", b'"x"', b"null", b"true", b"{", b'{"a":NaN}', b'{"a":Infinity}',
     b"\xff\xfe\x00{", b'{"a":"\\ud800"}', b"[" * 5000 + b"]" * 5000,
     b'{"a":' * 40 + b"1" + b"}" * 40],
)
def test_json_refused(body: bytes) -> None:
    with pytest.raises(CodecError):
        codec.decode_json(body)


def test_json_with_bom_and_nested_values() -> None:
    body = b'\xef\xbb\xbf{"a": {"b": [1, "x"]}, "c": null}'
    assert codec.decode_json(body) == {"a": {"b": ["1", "x"]}, "c": None}


# -- XML in -----------------------------------------------------------------------------------
def test_xml_fields_nested_and_repeated() -> None:
    body = (
        DECL + "\n<xml>\n\t<outboundid>1589938378.1130</outboundid>\n"
        "  <callee><extid>101</extid></callee><a>1</a><a>2</a><a>3</a><empty/></xml>"
    ).encode()
    assert codec.decode_xml(body) == {
        "outboundid": "1589938378.1130",
        "callee": {"extid": "101"},
        "a": ["1", "2", "3"],
        "empty": "",
    }


def test_xml_root_with_only_text_is_an_empty_object() -> None:
    assert codec.decode_xml(b"<xml>hello</xml>") == {}


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<xml><username>&lol3;</username></xml>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><username>&xxe;</username></xml>"""


@pytest.mark.parametrize(
    "body",
    [BILLION_LAUGHS, XXE, b'<!DOCTYPE xml><xml><a>1</a></xml>', b"<xml><a>1</xml>",
     b"<xml>", b"not xml", b'<?xml version="1.0" encoding="bogus"?><xml/>',
     b"<a>" * 40 + b"x" + b"</a>" * 40],
)
def test_xml_refused(body: bytes) -> None:
    with pytest.raises(CodecError):
        codec.decode_xml(body)


def test_decode_blank_and_sniffing() -> None:
    assert codec.decode(b"", Format.JSON) is None
    assert codec.decode(b" \r\n\t", Format.XML) is None
    assert codec.decode(b"\xef\xbb\xbf", Format.JSON) is None
    assert codec.looks_like_xml(b"  \n<xml/>")
    assert codec.looks_like_xml(b"\xef\xbb\xbf<xml/>")
    assert not codec.looks_like_xml(b'{"a":"<"}')


# -- out --------------------------------------------------------------------------------------
def test_json_out_every_scalar_is_a_string() -> None:
    payload = codec.success({"a": 1, "b": None, "c": [2, {"d": 3.5}], "e": True})
    assert codec.encode_json(payload) == (
        b'{"status":"Success","a":"1","b":"","c":["2",{"d":"3.5"}],"e":"true"}'
    )
    assert codec.encode_json(codec.failure(20004)) == b'{"status":"Failed","errno":"20004"}'


def test_json_out_is_utf8_not_escaped() -> None:
    assert codec.encode_json({"name": "Zoë"}) == '{"name":"Zoë"}'.encode()


def test_xml_out_matches_the_vendor_example_byte_for_byte() -> None:
    payload = codec.success(
        {"outbound": [{"outboundid": "1589881535.982", "from": "66666", "to": "103",
                       "trunk": "to-18-16-2", "status": "Talking"}]}
    )
    assert codec.encode_xml(payload) == (
        b'<?xml version="1.0" encoding="UTF-8" ?>\n'
        b"<xml>\n"
        b"    <status>Success</status>\n"
        b"    <outbound>\n"
        b"        <outboundid>1589881535.982</outboundid>\n"
        b"        <from>66666</from>\n"
        b"        <to>103</to>\n"
        b"        <trunk>to-18-16-2</trunk>\n"
        b"        <status>Talking</status>\n"
        b"    </outbound>\n"
        b"</xml>\n"
    )


def test_xml_out_failure_and_empty_list() -> None:
    assert codec.encode_xml(codec.failure(10004)) == (
        DECL.encode() + b"\n<xml>\n    <status>Failed</status>\n    <errno>10004</errno>\n</xml>\n"
    )
    assert codec.encode_xml(codec.success({"outbound": []})) == (
        DECL.encode() + b"\n<xml>\n    <status>Success</status>\n</xml>\n"
    )


def test_xml_out_item_lists_nested_and_empty_values() -> None:
    payload = codec.success(
        {"extlist": ItemList([{"extnumber": 100, "agentid": ""}, {"extnumber": "101"}]),
         "callee": {"extid": "101"}, "none": ItemList(), "obj": {}}
    )
    assert codec.encode_xml(payload).decode() == (
        DECL + "\n<xml>\n"
        "    <status>Success</status>\n"
        "    <extlist>\n"
        '        <item id="0">\n'
        "            <extnumber>100</extnumber>\n"
        "            <agentid></agentid>\n"
        "        </item>\n"
        '        <item id="1">\n'
        "            <extnumber>101</extnumber>\n"
        "        </item>\n"
        "    </extlist>\n"
        "    <callee>\n"
        "        <extid>101</extid>\n"
        "    </callee>\n"
        "    <none></none>\n"
        "    <obj></obj>\n"
        "</xml>\n"
    )


def test_xml_out_escapes_and_replaces_invalid_characters() -> None:
    out = codec.encode_xml({"a": "<b> & \x00\x07 ok"})
    assert b"<a>&lt;b&gt; &amp; \xef\xbf\xbd\xef\xbf\xbd ok</a>" in out


def test_content_types() -> None:
    assert Format.JSON.content_type == "application/json; charset=utf-8"
    assert Format.XML.content_type == "application/xml; charset=utf-8"


_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=30
).map(lambda s: "".join(c for c in s if c in "\t\n" or c >= " "))
_names = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(lambda n: n != "xml")


@given(st.dictionaries(_names, _text, max_size=8))
def test_xml_round_trip(fields: dict[str, str]) -> None:
    assert codec.decode_xml(codec.encode_xml(fields)) == fields


@given(st.dictionaries(st.text(max_size=10), st.one_of(st.text(max_size=20), st.integers())))
def test_json_round_trip_gives_strings(fields: dict[str, object]) -> None:
    fields = {k: v for k, v in fields.items() if not any("\ud800" <= c <= "\udfff" for c in k)}
    fields = {
        k: v for k, v in fields.items()
        if not (isinstance(v, str) and any("\ud800" <= c <= "\udfff" for c in v))
    }
    decoded = codec.decode_json(codec.encode_json(fields))
    assert decoded == {k: str(v) for k, v in fields.items()}
    assert json.loads(codec.encode_json(fields)) == decoded
