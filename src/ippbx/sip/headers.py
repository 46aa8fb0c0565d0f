"""Parsers for structured SIP header values, applied on demand to the raw text.

Messages keep header values as raw strings (cheap to parse and to relay); the helpers here
turn one value into a small object when a layer needs it: Via, name-addr (From/To/
Contact/Route), CSeq, and the digest credentials of the auth headers. Each helper raises
`HeaderError`, a subclass of `SipParseError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ippbx.sip.errors import SipParseError
from ippbx.sip.uri import SipUri, UriError, split_host_port


class HeaderError(SipParseError):
    """A header value that does not follow its grammar."""


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


def parse_params(text: str) -> dict[str, str | None]:
    """Parse ";a=b;c" into {"a": "b", "c": None}; names lower-cased, quotes kept."""
    params: dict[str, str | None] = {}
    for part in _split_outside_quotes(text, ";"):
        part = part.strip()
        if not part:
            continue
        name, eq, value = part.partition("=")
        name = name.strip().lower()
        if not name:
            raise HeaderError(f"empty parameter name in {text!r}")
        params[name] = value.strip() if eq else None
    return params


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    if '"' not in text:
        return text.split(sep)
    parts: list[str] = []
    quoted = False
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and quoted:
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if quoted:
        raise HeaderError(f"unterminated quoted string in {text!r}")
    parts.append(text[start:])
    return parts


@dataclass(slots=True)
class Via:
    """One Via entry: `SIP/2.0/UDP host:port;branch=…;rport;received=…`."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str) -> Via:
        sent_protocol, _, rest = value.strip().partition(" ")
        proto = [p.strip() for p in sent_protocol.split("/")]
        if len(proto) != 3 or proto[0].upper() != "SIP" or not proto[2]:
            # RFC 4475 allows LWS around the slashes: "SIP / 2.0 / UDP"
            joined = value.replace(" / ", "/").replace(" /", "/").replace("/ ", "/")
            if joined != value:
                return cls.parse(joined)
            raise HeaderError(f"bad Via sent-protocol in {value!r}")
        rest = rest.strip()
        sent_by, sep, param_text = rest.partition(";")
        sent_by = sent_by.strip()
        if not sent_by:
            raise HeaderError(f"Via without sent-by: {value!r}")
        try:
            host, port = split_host_port(sent_by)
        except UriError as exc:
            raise HeaderError(str(exc)) from None
        params = parse_params(param_text) if sep else {}
        return cls(proto[2].upper(), host, port, params)

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


@dataclass(slots=True)
class NameAddr:
    """A name-addr or addr-spec with header parameters (From, To, Contact, Route…)."""

    uri: str
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str) -> NameAddr:
        value = value.strip()
        lt = value.find("<")
        if lt != -1:
            gt = value.find(">", lt)
            if gt == -1:
                raise HeaderError(f"unclosed '<' in {value!r}")
            display = value[:lt].strip() or None
            uri = value[lt + 1 : gt].strip()
            param_text = value[gt + 1 :].strip()
            if param_text and not param_text.startswith(";"):
                raise HeaderError(f"junk after '>' in {value!r}")
        else:
            if value == "*":
                return cls("*")
            # addr-spec: parameters after the URI belong to the header, not the URI
            uri, _, param_text = value.partition(";")
            uri = uri.strip()
            param_text = ";" + param_text if param_text else ""
            display = None
            if " " in uri:
                raise HeaderError(f"bad address {value!r}")
        if not uri or ":" not in uri:
            raise HeaderError(f"bad URI in address {value!r}")
        params = parse_params(param_text[1:]) if param_text else {}
        return cls(uri, display, params)

    def __str__(self) -> str:
        if self.uri == "*":
            return "*"
        display = f"{self.display} " if self.display else ""
        return f"{display}<{self.uri}>{format_params(self.params)}"

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def sip_uri(self) -> SipUri:
        try:
            return SipUri.parse(self.uri)
        except UriError as exc:
            raise HeaderError(str(exc)) from None


def parse_cseq(value: str) -> tuple[int, str]:
    """Parse "CSeq: 4711 INVITE" into (4711, "INVITE")."""
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or len(parts[0]) > 10:
        raise HeaderError(f"bad CSeq {value!r}")
    number = int(parts[0])
    if number >= 2**31:
        raise HeaderError(f"CSeq number out of range in {value!r}")
    return number, parts[1]


def parse_credentials(value: str) -> tuple[str, dict[str, str]]:
    """Parse an auth header (`Digest realm="x", nonce="y"…`) into (scheme, params unquoted)."""
    scheme, _, rest = value.strip().partition(" ")
    if not scheme:
        raise HeaderError("empty auth header")
    params: dict[str, str] = {}
    for item in split_list(rest):
        name, eq, raw = item.partition("=")
        if not eq:
            raise HeaderError(f"bad auth parameter {item!r}")
        raw = raw.strip()
        if raw.startswith('"'):
            if len(raw) < 2 or not raw.endswith('"'):
                raise HeaderError(f"bad quoted auth parameter {item!r}")
            raw = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        params[name.strip().lower()] = raw
    return scheme, params
