"""SIP and SIPS URIs (RFC 3261 §19.1): parse to a small value object and print back.

Parameter names are case-insensitive and stored lower-case; their values keep their case
except `transport`, `user`, `method`, `maddr`, `ttl` whose values are also compared
case-insensitively by `param()` (so `;transport=UDP`, as sipp's built-in UAS sends it,
reads as `udp`). Other schemes (tel:, urn:) are kept as opaque text by the callers.

The user part is split off at the *last* `@` before anything else, because the user part
may itself contain `;`, `?`, `/` and `,` (RFC 4475 §3.1.1.2 and §3.1.1.9); parameters and
headers are only looked for in the host part that follows. Percent escapes stay as they
arrived (`user`); `unescaped_user` and `unescape()` decode them when a comparison needs it.
`equivalent(a, b)` compares two URIs as RFC 3261 §19.1.4 says (used to match a digest's
`uri` against the Request-URI).
"""

from __future__ import annotations

import ipaddress

from ippbx.sip.errors import SipParseError
from ippbx.sip.parse_memo import ParseMemo
from ippbx.sip.record import Record


class UriError(SipParseError):
    """A URI that is not a well-formed SIP URI."""


_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_UNRESERVED = _ALNUM + "-_.!~*'()"
_USER_CHARS = frozenset(_UNRESERVED + "%&=+$,;?/")
_PASSWORD_CHARS = frozenset(_UNRESERVED + "%&=+$,")
_PARAM_CHARS = frozenset(_UNRESERVED + "%[]/:&+$")
_HEADER_CHARS = frozenset(_UNRESERVED + "%[]/?:+$=&")
_HOST_CHARS = frozenset(_ALNUM + "-._")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")
_HEX = frozenset("0123456789abcdefABCDEF")
_SCHEME_CHARS = frozenset(_ALNUM + "+-.")


def _check(part: str, allowed: frozenset[str], what: str, text: str) -> None:
    if not allowed.issuperset(part):
        raise UriError(f"bad character in URI {what}: {text!r}")
    i = part.find("%")
    while i != -1:
        if part[i + 1 : i + 2] not in _HEX or part[i + 2 : i + 3] not in _HEX:
            raise UriError(f"bad % escape in URI {what}: {text!r}")
        i = part.find("%", i + 3)


def unescape(text: str) -> str:
    """Decode %HH escapes (RFC 3261 `escaped`) as UTF-8; malformed escapes stay as they are."""
    if "%" not in text:
        return text
    out = bytearray()
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "%" and text[i + 1 : i + 2] in _HEX and text[i + 2 : i + 3] in _HEX:
            out.append(int(text[i + 1 : i + 3], 16))
            i += 3
        else:
            out += ch.encode("utf-8", "surrogateescape")
            i += 1
    return out.decode("utf-8", "surrogateescape")


def is_scheme(text: str) -> bool:
    """True if `text` is a URI scheme name (ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ))."""
    return bool(text) and text[0].isascii() and text[0].isalpha() \
        and _SCHEME_CHARS.issuperset(text)


class SipUri(Record):
    """A parsed sip:/sips: URI."""

    __slots__ = ("host", "user", "password", "port", "scheme", "params", "headers")
    FIELDS = ("host", "user", "password", "port", "scheme", "params", "headers")

    def __init__(self, host: str, user: str | None = None, password: str | None = None,
                 port: int | None = None, scheme: str = "sip",
                 params: dict[str, str | None] | None = None, headers: str = "") -> None:
        self.host = host
        self.user = user
        self.password = password
        self.port = port
        self.scheme = scheme
        self.params: dict[str, str | None] = {} if params is None else params
        self.headers = headers

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a sip: or sips: URI; raise UriError (a SipParseError) if malformed."""
        return _SIP_URIS.parse(text)

    def _copy(self) -> SipUri:
        return SipUri(self.host, self.user, self.password, self.port, self.scheme,
                      dict(self.params), self.headers)

    @staticmethod
    def _parse(text: str) -> SipUri:
        text = text.strip()
        scheme, sep, rest = text.partition(":")
        scheme = scheme.lower()
        if not sep or scheme not in ("sip", "sips"):
            raise UriError(f"not a SIP URI: {text!r}")
        user = password = None
        at = rest.rfind("@")
        if at != -1:
            userinfo, rest = rest[:at], rest[at + 1 :]
            user, colon, pw = userinfo.partition(":")
            if not user:
                raise UriError(f"empty user in URI {text!r}")
            _check(user, _USER_CHARS, "user", text)
            if colon:
                _check(pw, _PASSWORD_CHARS, "password", text)
                password = pw
        rest, qmark, headers = rest.partition("?")
        if qmark:
            if not headers:
                raise UriError(f"empty headers in URI {text!r}")
            _check(headers, _HEADER_CHARS, "headers", text)
        hostport, *param_parts = rest.split(";")
        host, port = split_host_port(hostport)
        params: dict[str, str | None] = {}
        for part in param_parts:
            name, eq, value = part.partition("=")
            if not name:
                raise UriError(f"empty parameter in URI {text!r}")
            _check(name, _PARAM_CHARS, "parameter", text)
            if eq:
                if not value:
                    raise UriError(f"empty parameter value in URI {text!r}")
                _check(value, _PARAM_CHARS, "parameter", text)
            params[name.lower()] = value if eq else None
        return SipUri(host, user, password, port, scheme, params, headers)

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out += [":", self.password]
            out.append("@")
        out.append(f"[{self.host}]" if ":" in self.host else self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        for name, value in self.params.items():
            out.append(f";{name}" if value is None else f";{name}={value}")
        if self.headers:
            out += ["?", self.headers]
        return "".join(out)

    def param(self, name: str) -> str | None:
        """A parameter's value (lower-cased for the case-insensitive ones)."""
        value = self.params.get(name.lower())
        if value is not None and name.lower() in ("transport", "user", "method", "maddr", "ttl"):
            return value.lower()
        return value

    @property
    def transport(self) -> str:
        return (self.param("transport") or ("tls" if self.scheme == "sips" else "udp")).lower()

    @property
    def unescaped_user(self) -> str | None:
        """The user part with %HH escapes decoded (`sip:%75ser@h` → `user`)."""
        return None if self.user is None else unescape(self.user)

    def with_params(self, **changes: str | None) -> SipUri:
        params = dict(self.params)
        for key, value in changes.items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = value
        return SipUri(self.host, self.user, self.password, self.port, self.scheme, params,
                      self.headers)


_SIP_URIS: ParseMemo[SipUri] = ParseMemo(SipUri._parse, SipUri._copy)


def uri_host(host: str) -> str:
    """A host as a URI writes it: an IPv6 address in brackets (RFC 3261 §25.1)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def split_host_port(text: str) -> tuple[str, int | None]:
    """Split "host[:port]" (IPv6 references in brackets); raise UriError if malformed."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            raise UriError(f"unclosed IPv6 reference in {text!r}")
        host, rest = text[1:end], text[end + 1 :].strip()
        if rest and not rest.startswith(":"):
            raise UriError(f"junk after IPv6 reference in {text!r}")
        if not host or ":" not in host or not _IPV6_CHARS.issuperset(host):
            raise UriError(f"bad IPv6 reference in {text!r}")
        port_text = rest[1:].strip() if rest else ""
        if rest and not port_text:
            raise UriError(f"empty port in {text!r}")
    else:
        host, colon, port_text = text.partition(":")
        host = host.rstrip()
        port_text = port_text.strip()
        if not host or not _HOST_CHARS.issuperset(host):
            raise UriError(f"bad host in {text!r}")
        if colon and not port_text:
            raise UriError(f"empty port in {text!r}")
    if not port_text:
        return host, None
    if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
        raise UriError(f"bad port in {text!r}")
    port = int(port_text)
    if not 0 < port <= 65535:
        raise UriError(f"bad port in {text!r}")
    return host, port


# parameters that make two SIP URIs differ when only one of them has it (RFC 3261 §19.1.4)
_SIGNIFICANT_PARAMS = ("user", "ttl", "method", "maddr", "transport")


def _host_key(host: str) -> str:
    host = host.lower()
    if ":" in host:  # an IPv6 reference: compare the address, not its spelling
        try:
            return ipaddress.IPv6Address(host).compressed
        except ValueError:
            return host
    return host


def _headers_key(headers: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in headers.split("&") if headers else ():
        name, _, value = item.partition("=")
        out[unescape(name).lower()] = unescape(value)
    return out


def equivalent(a: str, b: str) -> bool:
    """Do two URIs name the same resource, compared as RFC 3261 §19.1.4 says?

    sip:/sips: URIs: same scheme; user and password compared case-sensitively after
    decoding %HH escapes; host case-insensitively (IPv6 by address); the port only equal
    to the same port (`sip:h` is not `sip:h:5060`); `user`, `ttl`, `method`, `maddr` and
    `transport` must agree when either URI has them, any other parameter only when both
    have it (values case-insensitive); URI headers must all agree. Any other URI, or one
    that does not parse, equals only the same text (scheme case-insensitive).
    """
    a, b = a.strip(), b.strip()
    if a == b:
        return True
    try:
        x, y = SipUri.parse(a), SipUri.parse(b)
    except UriError:
        sa, _, ra = a.partition(":")
        sb, _, rb = b.partition(":")
        return sa.lower() == sb.lower() and ra == rb
    if (x.scheme, x.unescaped_user, x.port) != (y.scheme, y.unescaped_user, y.port):
        return False
    if (None if x.password is None else unescape(x.password)) != \
            (None if y.password is None else unescape(y.password)):
        return False
    if _host_key(x.host) != _host_key(y.host):
        return False
    for name in set(x.params) | set(y.params):
        vx, vy = x.params.get(name, ""), y.params.get(name, "")
        if (name in x.params) != (name in y.params):
            if name in _SIGNIFICANT_PARAMS:
                return False
            continue
        if unescape(vx or "").lower() != unescape(vy or "").lower():
            return False
    return _headers_key(x.headers) == _headers_key(y.headers)
