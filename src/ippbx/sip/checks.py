"""What a UAS checks on every request before its TU sees it (RFC 3261 §8.2), sans-IO.

Two stages, both pure functions of the message:

* `malformed(message)`: the header fields the stack itself reads (Via, From, To, CSeq,
  and a request's Contact) are parsed once, eagerly. A message that fails here never
  reaches the transaction layer: a request is answered 400 statelessly (there is no
  transaction to hang it on), an ACK or a response is dropped. The string returned is
  for the log line.
* `check_request(request, …)`: the refusals §8.2.2 asks of a UAS, in its order:
  a Request-URI whose scheme we do not serve gets 416 (§8.2.2.1; a malformed sip: URI
  400); a REGISTER whose To is not a sip:/sips: URI 400 (the To of a REGISTER is the
  address of record, §10.2, §10.3 step 5; RFC 4475 §3.3.4); a `Require` naming an option
  tag we do not support 420 with `Unsupported` listing them (§8.2.2.3, a MUST; ACK and
  CANCEL are never refused that way). `Proxy-Require` is for proxies and is ignored.

Method inspection (§8.2.1, 405/501) stays with the TU: only it knows which methods it
implements.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ippbx.sip.errors import SipParseError
from ippbx.sip.message import Request, Response

__all__ = ["Refusal", "malformed", "check_request", "SIP_SCHEMES"]

SIP_SCHEMES = frozenset({"sip", "sips"})


@dataclass(frozen=True, slots=True)
class Refusal:
    """The response a request gets instead of reaching the TU, and why (for the log)."""

    status: int
    reason: str | None = None  # None: the standard reason phrase
    headers: tuple[tuple[str, str], ...] = ()
    why: str = ""


def malformed(message: Request | Response) -> str | None:
    """Why a header field the stack reads does not parse, or None if they all do."""
    try:
        vias = message.vias  # (parsing is the point)
        message.from_  # noqa: B018
        message.to  # noqa: B018
        message.cseq  # noqa: B018
        if isinstance(message, Request):
            message.contacts  # noqa: B018
    except SipParseError as exc:
        return str(exc) or type(exc).__name__
    if not vias and not message.has("Via"):
        return "no Via"
    return None


def check_request(
    request: Request,
    *,
    schemes: frozenset[str] = SIP_SCHEMES,
    supported: Iterable[str] = (),
) -> Refusal | None:
    """The refusal §8.2.2 calls for, or None if the TU may handle `request`.

    `schemes` are the Request-URI schemes served (lower case); `supported` the option
    tags this UAS implements (compared case-insensitively).
    """
    scheme = request.uri.partition(":")[0].lower()
    if scheme not in schemes:
        return Refusal(416, why=f"Request-URI scheme {scheme!r}")
    if scheme in SIP_SCHEMES:
        try:
            request.sip_uri()
        except SipParseError as exc:
            return Refusal(exc.status, why=f"Request-URI: {exc}")
    if request.method == "REGISTER":
        aor_scheme = request.to.uri.partition(":")[0].lower()
        if aor_scheme not in SIP_SCHEMES:
            return Refusal(400, "To Is Not a SIP URI", why=f"REGISTER To scheme {aor_scheme!r}")
    if request.method not in ("ACK", "CANCEL"):
        options = request.get_all("Require")
        if options:
            known = {tag.lower() for tag in supported}
            unknown = [tag for tag in options if tag.lower() not in known]
            if unknown:
                listed = ", ".join(unknown)
                return Refusal(420, headers=(("Unsupported", listed),),
                               why=f"Require: {listed}")
    return None
