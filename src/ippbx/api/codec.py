"""Request decoding and response encoding, JSON and XML, as the OpenVox/Yeastar APIs use them.

Requests: JSON is parsed with every number kept as its source text (`1589938378.1130`
stays `"1589938378.1130"`); XML is parsed with defusedxml with DTDs, entities and
external references forbidden, each child of the root becoming one field. Either must
decode to an object (a mapping); anything else is a `CodecError`.

Responses: every scalar becomes a string. JSON is compact UTF-8. XML has the exact layout
pinned by the tests (four-space indentation, one element per line), which reproduces the
vendor's documented example byte for byte:

    <?xml version="1.0" encoding="UTF-8" ?>
    <xml>
        <status>Success</status>
        <outbound>
            <outboundid>1589881535.982</outboundid>
            ...
        </outbound>
    </xml>

A plain list repeats its element once per entry (`<outbound>` per call; an empty list emits
nothing); an `ItemList` is one container holding `<item id="N">` wrappers (configuration
lists); a nested mapping is a nested element.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from enum import StrEnum
from itertools import repeat
from typing import Any
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as safe_et

MAX_BODY = 64 * 1024
"""Largest request body accepted, in bytes (larger ones answer errno 10002)."""

MAX_DEPTH = 16
"""Deepest nesting accepted in a request body."""

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8" ?>'
_INDENT = "    "


class Format(StrEnum):
    """Wire format of a request and its response."""

    JSON = "json"
    XML = "xml"

    @property
    def content_type(self) -> str:
        return f"application/{self.value}; charset=utf-8"


_XML_FORMAT = Format.XML  # (a module constant: an enum member's lookup costs)


class CodecError(ValueError):
    """The request body cannot be decoded into an object."""


class ItemList(list[Any]):
    """A configuration list: XML wraps each entry in `<item id="N">` inside one container."""


class JsonNumber(int):
    """A response value the vendor's JSON shows as a number, not a string (the one case:
    `queuestatus/query`'s `callercount`); XML shows it as text like any other."""


# -- requests ---------------------------------------------------------------------------------
_BOM = b"\xef\xbb\xbf"
_SURROGATE = re.compile("[\ud800-\udfff]")


def is_blank(body: bytes) -> bool:
    """True for an absent body (empty, whitespace, or a lone BOM)."""
    if body[:1] == b"{":  # (a JSON object, the usual body: at once)
        return False
    return not body.removeprefix(_BOM).strip()


def looks_like_xml(body: bytes) -> bool:
    """Sniff the format of a body sent without `?type=`: a leading `<` means XML."""
    if body[:1] == b"{":  # (a JSON object, the usual body: at once)
        return False
    return body.removeprefix(_BOM).lstrip().startswith(b"<")


def decode(body: bytes, fmt: Format) -> dict[str, Any] | None:
    """Decode a request body; None when there is no body at all."""
    if is_blank(body):
        return None
    return decode_xml(body) if fmt is _XML_FORMAT else decode_json(body)


def _reject_constant(name: str) -> Any:
    raise CodecError(f"{name} is not JSON")


_JSON = json.JSONDecoder(parse_int=str, parse_float=str, parse_constant=_reject_constant)


_STR = repeat(str)  # (`map(isinstance, values, _STR)`: each value checked against str)


def decode_json(body: bytes) -> dict[str, Any]:
    try:
        # what json.loads does with bytes (UTF-8/16/32 found by sniffing), with a decoder
        # made once
        if body[:1] == b"{":
            text = body.decode("utf-8", "surrogatepass")
            # an object with nothing around it (the usual body): the scanner alone
            value, end = _JSON.raw_decode(text) if text[-1] == "}" else (None, -1)
            if end != len(text):
                value = _JSON.decode(text)
        else:
            text = body.decode(json.detect_encoding(body), "surrogatepass")
            value = _JSON.decode(text)
    except (ValueError, RecursionError) as exc:
        raise CodecError(f"bad JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CodecError(f"JSON body is a {type(value).__name__}, not an object")
    # a flat object of plain text (the usual request) can hold no lone surrogate and is
    # not deep: only other bodies are walked
    if "\\u" in text or (not text.isascii() and _SURROGATE.search(text)) or not all(
            map(isinstance, value.values(), _STR)):
        _check_json(value, 0)
    return value


def _check_json(value: Any, depth: int) -> None:
    """Refuse over-deep nesting and strings with lone surrogates (they cannot be encoded)."""
    if depth > MAX_DEPTH:
        raise CodecError("JSON nested too deeply")
    if isinstance(value, str):
        if _SURROGATE.search(value):
            raise CodecError("lone surrogate in JSON string")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_json(key, depth + 1)
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)


def decode_xml(body: bytes) -> dict[str, Any]:
    try:
        root = safe_et.fromstring(body, forbid_dtd=True)
    except Exception as exc:  # ParseError, DefusedXmlException, LookupError, ...
        raise CodecError(f"bad XML: {type(exc).__name__}: {exc}") from None
    value = _element_value(root, 0)
    return value if isinstance(value, dict) else {}


def _element_value(element: Element, depth: int) -> str | dict[str, Any]:
    children = list(element)
    if not children:
        return element.text or ""
    if depth >= MAX_DEPTH:
        raise CodecError("XML nested too deeply")
    fields: dict[str, Any] = {}
    for child in children:
        tag = str(child.tag).rpartition("}")[2]
        value = _element_value(child, depth + 1)
        if tag not in fields:
            fields[tag] = value
        elif isinstance(fields[tag], list):
            fields[tag].append(value)
        else:
            fields[tag] = [fields[tag], value]
    return fields


# -- responses --------------------------------------------------------------------------------
def scalar_text(value: Any) -> str:
    """The string form of a response scalar (None is the empty string)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def stringify(value: Any) -> Any:
    """Copy a payload with every scalar turned into a string (list kinds preserved;
    a `JsonNumber` stays a number)."""
    if isinstance(value, Mapping):
        return {str(k): stringify(v) for k, v in value.items()}
    if isinstance(value, ItemList):
        return ItemList(stringify(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [stringify(v) for v in value]
    if isinstance(value, JsonNumber):
        return int(value)
    return scalar_text(value)


def encode(payload: Mapping[str, Any], fmt: Format) -> bytes:
    if payload == _BARE_SUCCESS:  # (heartbeat, logout, call control: nothing but status)
        return _BARE_SUCCESS_BYTES[fmt]
    return encode_xml(payload) if fmt is Format.XML else encode_json(payload)


_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # (made once)


def encode_json(payload: Mapping[str, Any]) -> bytes:
    return _JSON_ENCODER.encode(stringify(payload)).encode("utf-8")


_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(value: Any) -> str:
    text = _XML_INVALID.sub("\ufffd", scalar_text(value))
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def encode_xml(payload: Mapping[str, Any]) -> bytes:
    lines = [XML_DECLARATION]
    _xml_element("xml", payload, 0, lines)
    return ("\n".join(lines) + "\n").encode("utf-8")


def xml_lines(name: str, value: Any, depth: int) -> list[str]:
    """The lines of one element `name` holding `value`, indented for `depth`."""
    lines: list[str] = []
    _xml_element(name, value, depth, lines)
    return lines


def _xml_element(name: str, value: Any, depth: int, out: list[str]) -> None:
    pad = _INDENT * depth
    if isinstance(value, Mapping):
        if not value:
            out.append(f"{pad}<{name}></{name}>")
            return
        out.append(f"{pad}<{name}>")
        for key, item in value.items():
            _xml_element(str(key), item, depth + 1, out)
        out.append(f"{pad}</{name}>")
    elif isinstance(value, ItemList):
        if not value:
            out.append(f"{pad}<{name}></{name}>")
            return
        out.append(f"{pad}<{name}>")
        for index, item in enumerate(value):
            _xml_item(index, item, depth + 1, out)
        out.append(f"{pad}</{name}>")
    elif isinstance(value, (list, tuple)):
        for item in value:
            _xml_element(name, item, depth, out)
    else:
        out.append(f"{pad}<{name}>{_xml_text(value)}</{name}>")


def _xml_item(index: int, value: Any, depth: int, out: list[str]) -> None:
    pad = _INDENT * depth
    open_tag = f'<item id="{index}">'
    if isinstance(value, Mapping) and value:
        out.append(pad + open_tag)
        for key, item in value.items():
            _xml_element(str(key), item, depth + 1, out)
        out.append(f"{pad}</item>")
    elif isinstance(value, Mapping):
        out.append(f"{pad}{open_tag}</item>")
    else:
        out.append(f"{pad}{open_tag}{_xml_text(value)}</item>")


# -- envelopes --------------------------------------------------------------------------------
def success(payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`{"status":"Success", …payload}` with `status` first."""
    return {"status": "Success", **(payload or {})}


_SUCCESS_JSON = b'{"status":"Success"'
_SUCCESS_XML = f"{XML_DECLARATION}\n<xml>\n{_INDENT}<status>Success</status>\n".encode()


_ENVELOPES: dict[tuple[str, Format], tuple[bytes, bytes, bytes]] = {}
_BARE_SUCCESS = {"status": "Success"}


class EncodedList:
    """A success answer holding one list, `key`, of items encoded already in `fmt`
    (`ippbx.api.call_views`): `body()` is the same bytes as `encode` of the whole payload,
    made once; `pieces()` gives it in parts for a large answer."""

    __slots__ = ("key", "fmt", "items", "_envelope", "_size", "_body")

    def __init__(self, key: str, fmt: Format, items: list[bytes]) -> None:
        self.key = key
        self.fmt = fmt
        self.items = items
        envelope = _ENVELOPES.get((key, fmt))
        if envelope is None:
            if fmt is Format.JSON:
                envelope = (_SUCCESS_JSON + b',"' + key.encode() + b'":[', b",", b"]}")
            else:
                envelope = (_SUCCESS_XML, b"", b"</xml>\n")
            _ENVELOPES[(key, fmt)] = envelope
        self._envelope = envelope  # head, separator, tail
        self._size = -1
        self._body: bytes | None = None

    @property
    def size(self) -> int:
        """Length of the answer in bytes."""
        if self._size < 0 and len(self.items) < 64:  # (small: joined at once)
            self._size = len(self.body())
        elif self._size < 0:
            head, separator, tail = self._envelope
            items = self.items
            self._size = (len(head) + len(tail) + sum(map(len, items))
                          + len(separator) * max(0, len(items) - 1))
        return self._size

    def body(self) -> bytes:
        """The whole answer."""
        if self._body is None:
            head, separator, tail = self._envelope
            self._body = b"".join((head, separator.join(self.items), tail))
        return self._body

    def pieces(self, piece: int) -> Iterator[bytes]:
        """The answer in parts of about `piece` bytes (at least one item each)."""
        head, separator, tail = self._envelope
        out: list[bytes] = [head]
        size = len(head)
        last = len(self.items) - 1
        for index, item in enumerate(self.items):
            out.append(item)
            size += len(item)
            if index != last:
                out.append(separator)
            if size >= piece:
                yield b"".join(out)
                out.clear()
                size = 0
        out.append(tail)
        yield b"".join(out)


def failure(errno: int) -> dict[str, Any]:
    """`{"status":"Failed","errno":"N"}`."""
    return {"status": "Failed", "errno": str(int(errno))}


_BARE_SUCCESS_BYTES = {Format.JSON: encode_json(_BARE_SUCCESS),
                       Format.XML: encode_xml(_BARE_SUCCESS)}
