"""3xx redirects from a callee (RFC 3261 §8.1.3.4): the numbers they name, the loop guard.

A callee that answers 3xx names where the call should go in its Contact header(s). ippbx
takes the user part of each Contact URI (the number of a `tel:` URI) as a number the
caller dialled, highest `q` first, and routes it with the caller's own dial plan, so a
redirect reaches nothing the caller could not dial itself (`[calls] redirects =
"follow"`, the B2BUA does the dialling). A call follows at most `MAX_REDIRECTS`
redirects, and never to a destination it has already dialled: both end the call with
`LOOP_STATUS`. With `redirects = "relay"` the 3xx goes back to the caller, its Contacts
rewritten to reach the same numbers through ippbx (`relayed_contacts`), so the caller's
next INVITE passes the dial plan too and no address of the callee leaks.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ippbx.pbx.dialplan import ToExtension, ToTrunks
from ippbx.sip.errors import SipParseError
from ippbx.sip.headers import NameAddr, format_params
from ippbx.sip.message import Response
from ippbx.sip.uri import unescape

MAX_REDIRECTS = 3  # redirected targets dialled per call, at most
LOOP_STATUS = 482  # Loop Detected: a redirect to a target tried already, or one too many
_KEPT_PARAMS = ("q", "expires")  # Contact parameters a relayed 3xx keeps
_DIALABLE = re.compile(r"[0-9A-Za-z*#+_.-]{1,32}")  # what a dialled number may be


def is_redirect(status: int | None) -> bool:
    return status is not None and 300 <= status < 400


def contact_number(uri: str) -> str:
    """The number a redirect's Contact URI names: the user part of a sip:/sips: URI (its
    %HH escapes decoded, `;params` of the user part dropped), the number of a tel: URI;
    "" if it names none, or nothing a phone could dial (the characters of extension
    numbers, at most 32)."""
    scheme, sep, rest = uri.strip().partition(":")
    scheme = scheme.lower()
    if not sep:
        return ""
    if scheme == "tel":
        number = unescape(rest.partition(";")[0])
    elif scheme in ("sip", "sips"):
        userinfo, at, _ = rest.rpartition("@")
        number = unescape(userinfo.partition(":")[0].partition(";")[0]) if at else ""
    else:
        return ""
    return number if _DIALABLE.fullmatch(number) else ""


def _q(contact: NameAddr) -> float:
    try:
        return float(contact.params.get("q") or 1.0)
    except ValueError:
        return 1.0


def _contacts(response: Response) -> list[NameAddr]:
    """The response's Contact entries that parse, highest q first (ties in the order
    given); a malformed one is skipped, not fatal."""
    contacts = []
    for value in response.get_all("Contact"):
        try:
            contact = NameAddr.parse(value)
        except SipParseError:
            continue
        if contact.uri != "*":
            contacts.append(contact)
    return sorted(contacts, key=_q, reverse=True)  # (sorted() is stable)


def redirect_numbers(response: Response) -> list[str]:
    """The numbers a 3xx names, highest q first, each once."""
    numbers: list[str] = []
    for contact in _contacts(response):
        number = contact_number(contact.uri)
        if number and number not in numbers:
            numbers.append(number)
    return numbers


def relayed_contacts(response: Response, uri_for: Callable[[str], str]) -> list[str]:
    """The Contact values of a 3xx relayed to the caller: each number it names at
    `uri_for(number)` (ippbx's own URI), with the entry's q and expires."""
    values: list[str] = []
    for contact in _contacts(response):
        number = contact_number(contact.uri)
        if not number:
            continue
        params = {k: v for k, v in contact.params.items() if k in _KEPT_PARAMS}
        value = f"<{uri_for(number.replace('#', '%23'))}>{format_params(params)}"
        if value not in values:
            values.append(value)
    return values


def target_key(destination: ToExtension | ToTrunks) -> str:
    """What identifies a dialled destination for the loop check."""
    if isinstance(destination, ToExtension):
        return f"extension:{destination.number}"
    return f"out:{destination.number}"
