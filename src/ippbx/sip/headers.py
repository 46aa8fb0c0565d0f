"""Parsers for structured SIP header values, applied on demand to the raw text.

Messages keep header values as raw strings (cheap to parse and to relay); the helpers here
turn one value into a small object when a layer needs it: Via, name-addr (From/To/
Contact/Route), CSeq, and the digest credentials of the auth headers. Each helper raises
`HeaderError`, a subclass of `SipParseError` (status 400), and nothing else.

The grammar followed is RFC 3261 §25 with the relaxations RFC 4475 asks for: LWS around
`/`, `;`, `=` and `:`, a display name glued to `<` (`caller<sip:…>`), quoted strings with
quoted-pairs, and unknown parameters of any token name. Strict where it costs nothing:
empty parameters (`;;`), spaces inside `<…>`, non-token characters in an unquoted display
name, and an addr-spec that needed angle brackets (it has `?` or `,`) are rejected.

`Via.parse` and `NameAddr.parse` remember what they parsed (`sip/parse_memo.py`): each
hit is a fresh copy, so callers may change what they get.
"""

from __future__ import annotations

import re

from ippbx.sip.errors import SipParseError
from ippbx.sip.parse_memo import ParseMemo
from ippbx.sip.record import Record
from ippbx.sip.uri import SipUri, UriError, is_scheme, split_host_port


class HeaderError(SipParseError):
    """A header value that does not follow its grammar."""


TOKEN_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
)
# Characters an unquoted display name may not hold (RFC 3261 separators other than
# whitespace); non-ASCII is tolerated there since phones send UTF-8 names unquoted.
_DISPLAY_FORBIDDEN = frozenset('()<>@,;:\\"/[]?={}\x00\r\n')
# An unquoted auth-param value is a token in the RFCs; be lenient (some servers send
# base64 or URIs bare) but never accept whitespace or quotes there.
_BARE_VALUE_FORBIDDEN = frozenset(' \t\r\n"')


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value; commas inside quotes or <…> are kept."""
    if "," not in value:
        stripped = value.strip()
        return [stripped] if stripped else []
    items: list[str] = []
    start = 0
    quoted = angle = False
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angle = True
        elif ch == ">":
            angle = False
        elif ch == "," and not angle:
            items.append(value[start:i].strip())
            start = i + 1
        i += 1
    items.append(value[start:].strip())
    return [item for item in items if item]


def _quoted_end(text: str, start: int) -> int:
    """Index just past the quoted string opening at `text[start]`; HeaderError if open."""
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            if i + 1 >= n or text[i + 1] in "\r\n":
                break
            i += 2
            continue
        if ch == '"':
            return i + 1
        i += 1
    raise HeaderError(f"unterminated quoted string in {text!r}")


def unquote(text: str) -> str:
    """The content of a quoted-string (`"a \\"b\\""` → `a "b"`); other text is returned as is."""
    if len(text) < 2 or text[0] != '"':
        return text
    if _quoted_end(text, 0) != len(text):
        raise HeaderError(f"junk after quoted string in {text!r}")
    inner = text[1:-1]
    if "\\" not in inner:
        return inner
    out: list[str] = []
    i = 0
    while i < len(inner):
        ch = inner[i]
        if ch == "\\" and i + 1 < len(inner):
            out.append(inner[i + 1])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def quote(text: str) -> str:
    """`text` as a quoted-string, with `"` and `\\` escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_params(text: str) -> dict[str, str | None]:
    """Parse ";a=b;c" (leading `;` already removed) into {"a": "b", "c": None}.

    Names are lower-cased and must be tokens; values keep their quotes. LWS around `;`
    and `=` is allowed; an empty parameter (`a;;b`) raises HeaderError.
    """
    params: dict[str, str | None] = {}
    for part in _split_outside_quotes(text, ";"):
        name, eq, value = part.partition("=")
        name = name.strip().lower()
        if not name or not TOKEN_CHARS.issuperset(name):
            raise HeaderError(f"bad parameter name {name!r} in {text!r}")
        if eq:
            value = value.strip()
            if not value:
                raise HeaderError(f"empty value for parameter {name!r} in {text!r}")
            params[name] = value
        else:
            params[name] = None
    return params


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    if '"' not in text:
        return text.split(sep)
    parts: list[str] = []
    start = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            i = _quoted_end(text, i)
            continue
        if ch == sep:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


class Via(Record):
    """One Via entry: `SIP/2.0/UDP host:port;branch=…;rport;received=…`."""

    __slots__ = ("transport", "host", "port", "params")
    FIELDS = ("transport", "host", "port", "params")

    def __init__(self, transport: str, host: str, port: int | None = None,
                 params: dict[str, str | None] | None = None) -> None:
        self.transport = transport
        self.host = host
        self.port = port
        self.params: dict[str, str | None] = {} if params is None else params

    @classmethod
    def parse(cls, value: str) -> Via:
        """Parse one Via value; LWS around the `/` of the sent-protocol is allowed."""
        return _VIAS.parse(value)

    def _copy(self) -> Via:
        return Via(self.transport, self.host, self.port, dict(self.params))

    @staticmethod
    def _parse(value: str) -> Via:
        parts = value.split("/", 2)
        if len(parts) != 3:
            raise HeaderError(f"bad Via sent-protocol in {value!r}")
        name, version = parts[0], parts[1]
        if name != "SIP" and name.strip().upper() != "SIP" or \
                version != "2.0" and version.strip() != "2.0":
            raise HeaderError(f"bad Via sent-protocol in {value!r}")
        pieces = parts[2].split(None, 1)
        if len(pieces) != 2:
            raise HeaderError(f"Via without sent-by: {value!r}")
        transport, rest = pieces
        if not TOKEN_CHARS.issuperset(transport):
            raise HeaderError(f"bad Via transport in {value!r}")
        sent_by, sep, param_text = rest.partition(";")
        sent_by = sent_by.strip()
        if not sent_by:
            raise HeaderError(f"Via without sent-by: {value!r}")
        try:
            host, port = split_host_port(sent_by)
        except UriError as exc:
            raise HeaderError(f"bad Via sent-by: {exc}") from None
        params = parse_params(param_text) if sep else {}
        return Via(transport.upper(), host, port, params)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {host}{port}{format_params(self.params)}"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def is_rfc3261(self) -> bool:
        branch = self.branch
        return branch is not None and branch.startswith("z9hG4bK")


def _check_uri_text(uri: str, value: str) -> None:
    colon = uri.find(":")
    if colon <= 0 or not is_scheme(uri[:colon]):
        raise HeaderError(f"bad URI in address {value!r}")
    for ch in uri:
        if ch in " \t\r\n<>\"":
            raise HeaderError(f"bad character in URI of {value!r}")


class NameAddr(Record):
    """A name-addr or addr-spec with header parameters (From, To, Contact, Route…).

    `display` is the display name as it arrived (quotes and escapes kept, so it prints
    back unchanged); `display_name` is its text.
    """

    __slots__ = ("uri", "display", "params")
    FIELDS = ("uri", "display", "params")

    def __init__(self, uri: str, display: str | None = None,
                 params: dict[str, str | None] | None = None) -> None:
        self.uri = uri
        self.display = display
        self.params: dict[str, str | None] = {} if params is None else params

    @classmethod
    def parse(cls, value: str) -> NameAddr:
        """Parse a name-addr (`"Bob" <sip:b@h>;tag=1`) or addr-spec (`sip:b@h;tag=1`)."""
        return _NAME_ADDRS.parse(value)

    def _copy(self) -> NameAddr:
        return NameAddr(self.uri, self.display, dict(self.params))

    @staticmethod
    def _parse(value: str) -> NameAddr:
        value = value.strip()
        if value == "*":
            return NameAddr("*")
        display: str | None
        if value.startswith('"'):
            end = _quoted_end(value, 0)
            display = value[:end]
            lt = end
            while lt < len(value) and value[lt] in " \t\r\n":
                lt += 1
            if lt >= len(value) or value[lt] != "<":
                raise HeaderError(f"quoted display name without <URI> in {value!r}")
        else:
            lt = value.find("<")
            semi = value.find(";")
            if lt != -1 and (semi == -1 or lt < semi):
                display = value[:lt].strip() or None
                if display is not None and not _DISPLAY_FORBIDDEN.isdisjoint(display):
                    raise HeaderError(f"unquoted display name with separators in {value!r}")
            else:
                lt = -1
                display = None
        if lt != -1:
            gt = value.find(">", lt)
            if gt == -1:
                raise HeaderError(f"unclosed '<' in {value!r}")
            uri = value[lt + 1 : gt]
            param_text = value[gt + 1 :].lstrip()
            if param_text and param_text[0] != ";":
                raise HeaderError(f"junk after '>' in {value!r}")
        else:
            # addr-spec: parameters after the URI belong to the header, not the URI
            semi = value.find(";")
            uri, param_text = (value, "") if semi == -1 else (value[:semi], value[semi:])
            uri = uri.rstrip()
            if "?" in uri or "," in uri:
                raise HeaderError(f"URI with '?' or ',' must be in <> in {value!r}")
        _check_uri_text(uri, value)
        params = parse_params(param_text[1:]) if param_text else {}
        return NameAddr(uri, display, params)

    def __str__(self) -> str:
        if self.uri == "*":
            return "*"
        display = f"{self.display} " if self.display else ""
        return f"{display}<{self.uri}>{format_params(self.params)}"

    @property
    def display_name(self) -> str | None:
        """The display name's text: unquoted, quoted-pairs resolved."""
        if self.display is None:
            return None
        return unquote(self.display) if self.display.startswith('"') else self.display

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def sip_uri(self) -> SipUri:
        """The URI parsed as a SIP URI; HeaderError if it is not one."""
        try:
            return SipUri.parse(self.uri)
        except UriError as exc:
            raise HeaderError(str(exc)) from None


_VIAS: ParseMemo[Via] = ParseMemo(Via._parse, Via._copy)
_NAME_ADDRS: ParseMemo[NameAddr] = ParseMemo(NameAddr._parse, NameAddr._copy)


def _parse_cseq(value: str) -> tuple[int, str]:
    """Parse "CSeq: 4711 INVITE" into (4711, "INVITE"); the number must be < 2**31."""
    parts = value.split()
    if len(parts) != 2:
        raise HeaderError(f"bad CSeq {value!r}")
    number_text, method = parts
    if not (number_text.isascii() and number_text.isdigit()) or len(number_text) > 10:
        raise HeaderError(f"bad CSeq number in {value!r}")
    number = int(number_text)
    if number >= 2**31:
        raise HeaderError(f"CSeq number out of range in {value!r}")
    if not TOKEN_CHARS.issuperset(method):
        raise HeaderError(f"bad CSeq method in {value!r}")
    return number, method


# `parse_cseq(value)`: `_parse_cseq` through a memo (a tuple is handed out as it is)
parse_cseq = ParseMemo(_parse_cseq, None, longest=64).parse


def parse_credentials(value: str) -> tuple[str, dict[str, str]]:
    """Parse an auth header (`Digest realm="x", nonce="y"…`) into (scheme, params unquoted).

    Parameter names are lower-cased; quoted values are unquoted (quoted-pairs resolved).
    LWS around `=` and `,` and an empty item (`a=1,,b=2`) are tolerated.
    """
    parts = value.strip().split(None, 1)
    if not parts or not TOKEN_CHARS.issuperset(parts[0]):
        raise HeaderError(f"bad auth header {value!r}")
    rest = parts[1] if len(parts) == 2 else ""
    params = _auth_params_plain(rest)
    return parts[0], params if params is not None else _auth_params(rest)


# one `name=value` or `name="value"` item and its comma: what every phone sends
_AUTH_PARAM = re.compile(
    r"""\s*([-.!%*_+`'~0-9A-Za-z]+)\s*=\s*(?:"((?:[^"\\\r\n]|\\.)*)"|([^\s,"<]+))\s*(?:,|\Z)""")


def _auth_params_plain(rest: str) -> dict[str, str] | None:
    """The params of credentials made only of plain items, in one regular expression
    per item; None for anything else (an empty item, `<…>`, a malformed one), which
    `_auth_params` parses, or refuses, item by item."""
    params: dict[str, str] = {}
    pos, end = 0, len(rest)
    match = _AUTH_PARAM.match
    while pos < end:
        found = match(rest, pos)
        if found is None:
            return None
        name, quoted, bare = found.groups()
        if quoted is None:
            params[name.lower()] = bare
        else:
            params[name.lower()] = quoted if "\\" not in quoted else unquote(f'"{quoted}"')
        pos = found.end()
    return params


def _auth_params(rest: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in split_list(rest):
        name, eq, raw = item.partition("=")
        name = name.strip().lower()
        if not eq or not name or not TOKEN_CHARS.issuperset(name):
            raise HeaderError(f"bad auth parameter {item!r}")
        raw = raw.strip()
        if raw.startswith('"'):
            raw = unquote(raw)
        elif not raw or not _BARE_VALUE_FORBIDDEN.isdisjoint(raw):
            raise HeaderError(f"bad auth parameter value {item!r}")
        params[name] = raw
    return params
