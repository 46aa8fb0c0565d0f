"""Bencode, the encoding of rtpengine's ng protocol: sans-IO `encode` and `decode`.

Encoding takes `bytes`, `str` (UTF-8), `int` (not `bool`), `list`/`tuple` and `dict` with
`str` or `bytes` keys (written in sorted byte order, as the format requires).

Decoding returns `int`, `list` and `dict` as they are, dictionary keys as `str` (decoded
as UTF-8, invalid sequences replaced) and every byte string that is not a key as `bytes`:
rtpengine's keys are ASCII names, while its values can be SDP bodies or file names whose
bytes the caller decides how to read. Any malformed input (truncation, trailing bytes, a
non-canonical integer such as `i-0e` or `i03e`, a non-string key, nesting deeper than
`MAX_DEPTH`) raises `BencodeError` and nothing else. Unsorted dictionary keys are
accepted (a lenient reader; the last of duplicate keys wins).
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_DEPTH", "BencodeError", "decode", "encode"]

MAX_DEPTH = 64
_MAX_INT_DIGITS = 64
_DIGITS = frozenset(b"0123456789")


class BencodeError(ValueError):
    """Input that is not bencode (decode) or a value bencode cannot carry (encode)."""


def encode(value: object) -> bytes:
    """Bencode `value` (see the module docstring for the types); raise BencodeError."""
    out: list[bytes] = []
    _encode(value, out, 0)
    return b"".join(out)


def _encode(value: object, out: list[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise BencodeError(f"nested deeper than {MAX_DEPTH}")
    if isinstance(value, bool):
        raise BencodeError("bencode has no booleans")
    if isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        out.append(b"%d:" % len(data))
        out.append(data)
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogateescape")
        out.append(b"%d:" % len(data))
        out.append(data)
    elif isinstance(value, list | tuple):
        out.append(b"l")
        for item in value:
            _encode(item, out, depth + 1)
        out.append(b"e")
    elif isinstance(value, dict):
        items: dict[bytes, object] = {}
        for key, item in value.items():
            if isinstance(key, str):
                raw = key.encode("utf-8", "surrogateescape")
            elif isinstance(key, bytes):
                raw = key
            else:
                raise BencodeError(f"dictionary key {key!r} is not str or bytes")
            if raw in items:
                raise BencodeError(f"dictionary key {raw!r} given twice")
            items[raw] = item
        out.append(b"d")
        for raw in sorted(items):
            out.append(b"%d:" % len(raw))
            out.append(raw)
            _encode(items[raw], out, depth + 1)
        out.append(b"e")
    else:
        raise BencodeError(f"cannot bencode {type(value).__name__}")


def decode(data: bytes) -> Any:
    """Decode one whole bencoded value from `data`; raise BencodeError when malformed."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BencodeError("decode takes bytes")
    buf = bytes(data)
    value, end = _decode(buf, 0, 0)
    if end != len(buf):
        raise BencodeError(f"trailing data at offset {end}")
    return value


def _decode(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    if depth > MAX_DEPTH:
        raise BencodeError(f"nested deeper than {MAX_DEPTH}")
    if pos >= len(buf):
        raise BencodeError("truncated input")
    lead = buf[pos]
    if lead == ord("i"):
        return _decode_int(buf, pos + 1)
    if lead in _DIGITS:
        return _decode_bytes(buf, pos)
    if lead == ord("l"):
        items: list[Any] = []
        pos += 1
        while True:
            if pos >= len(buf):
                raise BencodeError("truncated list")
            if buf[pos] == ord("e"):
                return items, pos + 1
            item, pos = _decode(buf, pos, depth + 1)
            items.append(item)
    if lead == ord("d"):
        result: dict[str, Any] = {}
        pos += 1
        while True:
            if pos >= len(buf):
                raise BencodeError("truncated dictionary")
            if buf[pos] == ord("e"):
                return result, pos + 1
            if buf[pos] not in _DIGITS:
                raise BencodeError(f"dictionary key at offset {pos} is not a string")
            raw, pos = _decode_bytes(buf, pos)
            item, pos = _decode(buf, pos, depth + 1)
            result[raw.decode("utf-8", "replace")] = item
    raise BencodeError(f"unexpected byte {buf[pos:pos + 1]!r} at offset {pos}")


def _decode_int(buf: bytes, pos: int) -> tuple[int, int]:
    end = buf.find(b"e", pos, pos + _MAX_INT_DIGITS + 2)
    if end < 0:
        raise BencodeError(f"unterminated or oversized integer at offset {pos}")
    text = buf[pos:end]
    digits = text[1:] if text.startswith(b"-") else text
    if not digits or not all(c in _DIGITS for c in digits):
        raise BencodeError(f"bad integer {text!r} at offset {pos}")
    if (digits.startswith(b"0") and len(digits) > 1) or text == b"-0":
        raise BencodeError(f"non-canonical integer {text!r} at offset {pos}")
    return int(text), end + 1


def _decode_bytes(buf: bytes, pos: int) -> tuple[bytes, int]:
    colon = buf.find(b":", pos, pos + _MAX_INT_DIGITS + 1)
    if colon < 0:
        raise BencodeError(f"bad string length at offset {pos}")
    digits = buf[pos:colon]
    if not digits or not all(c in _DIGITS for c in digits):
        raise BencodeError(f"bad string length {digits!r} at offset {pos}")
    if digits.startswith(b"0") and len(digits) > 1:
        raise BencodeError(f"non-canonical string length {digits!r} at offset {pos}")
    length = int(digits)
    start = colon + 1
    if start + length > len(buf):
        raise BencodeError(f"string at offset {pos} runs past the end")
    return buf[start:start + length], start + length
