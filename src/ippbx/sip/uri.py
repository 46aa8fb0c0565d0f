"""SIP and SIPS URIs (RFC 3261 §19.1): parse to a small value object and print back.

Parameter names are case-insensitive and stored lower-case; their values keep their case
except `transport`, `user`, `method`, `maddr`, `ttl` whose values are also compared
case-insensitively by `param()`. Other schemes (tel:, urn:) are kept as opaque text.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


class UriError(ValueError):
    """A URI that is not a well-formed SIP URI."""


@dataclass(slots=True)
class SipUri:
    """A parsed sip:/sips: URI."""

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    scheme: str = "sip"
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str = ""

    @classmethod
    def parse(cls, text: str) -> SipUri:
        text = text.strip()
        scheme, sep, rest = text.partition(":")
        scheme = scheme.lower()
        if not sep or scheme not in ("sip", "sips"):
            raise UriError(f"not a SIP URI: {text!r}")
        rest, _, headers = rest.partition("?")
        userinfo = None
        if "@" in rest:
            userinfo, _, rest = rest.rpartition("@")
        hostport, *param_parts = rest.split(";")
        user = password = None
        if userinfo is not None:
            user, colon, pw = userinfo.partition(":")
            password = pw if colon else None
            if not user:
                raise UriError(f"empty user in URI {text!r}")
        host, port = split_host_port(hostport)
        params: dict[str, str | None] = {}
        for part in param_parts:
            if not part:
                continue
            name, eq, value = part.partition("=")
            params[name.strip().lower()] = value.strip() if eq else None
        return cls(host, user, password, port, scheme, params, headers)

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
        value = self.params.get(name)
        if value is not None and name in ("transport", "user", "method", "maddr", "ttl"):
            return value.lower()
        return value

    @property
    def transport(self) -> str:
        return (self.param("transport") or ("tls" if self.scheme == "sips" else "udp")).lower()

    def with_params(self, **changes: str | None) -> SipUri:
        params = dict(self.params)
        for key, value in changes.items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = value
        return replace(self, params=params)


def split_host_port(text: str) -> tuple[str, int | None]:
    """Split "host[:port]" (IPv6 references in brackets); raise UriError if malformed."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            raise UriError(f"unclosed IPv6 reference in {text!r}")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise UriError(f"junk after IPv6 reference in {text!r}")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = text.partition(":")
    if not host or any(c in host for c in " \t<>\"@"):
        raise UriError(f"bad host in {text!r}")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise UriError(f"bad port in {text!r}")
    return host, int(port_text)
