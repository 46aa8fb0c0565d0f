"""Reliable provisional responses (RFC 3262, `100rel`, PRACK): the pure parts, sans-IO.

A UAS that sends a 1xx reliably adds `Require: 100rel` and an `RSeq` (one higher for each
reliable 1xx of the INVITE, the first picked at random), resends it at T1, 2·T1, 4·T1…
until a PRACK whose `RAck` (RSeq, the INVITE's CSeq number, `INVITE`) names it arrives, and
gives up after 64·T1 (the INVITE then gets a 5xx). Only one reliable 1xx may be
unacknowledged at a time (§3). The UAC answers each new reliable 1xx with a PRACK in the
early dialog and ignores a repeated or older RSeq (§4).

This module parses and builds those headers and holds the retransmission timer; the user
agent (`sip/ua.py`) owns the state of each INVITE.
"""

from __future__ import annotations

import secrets

from ippbx.sip.dialog import Retransmit2xx
from ippbx.sip.headers import split_list
from ippbx.sip.message import Message, Request, Response

__all__ = ["RELIABLE", "ReliableRetransmit", "first_rseq", "has_tag", "rack_of", "rseq_of"]

RELIABLE = "100rel"
_MAX_RSEQ = 2**31 - 1


def has_tag(message: Message, header: str, tag: str) -> bool:
    """Does `header` (Supported, Require…) of `message` list the option tag `tag`?"""
    return any(item.lower() == tag for value in message.get_all(header)
               for item in split_list(value))


def rseq_of(response: Response) -> int | None:
    """The RSeq of a reliable provisional response, or None if it is not one."""
    if not 100 < response.status < 200 or not has_tag(response, "Require", RELIABLE):
        return None
    try:
        value = int((response.get("RSeq") or "").strip())
    except ValueError:
        return None
    return value if 0 < value <= _MAX_RSEQ else None


def rack_of(request: Request) -> tuple[int, int, str] | None:
    """A PRACK's RAck: (RSeq, CSeq number, method), or None if it does not parse."""
    parts = (request.get("RAck") or "").split()
    if len(parts) != 3:
        return None
    try:
        return int(parts[0]), int(parts[1]), parts[2].upper()
    except ValueError:
        return None


def first_rseq() -> int:
    """The RSeq of an INVITE's first reliable 1xx: random, leaving room to count up (§3)."""
    return secrets.randbelow(2**30) + 1


class ReliableRetransmit(Retransmit2xx):
    """Resend a reliable 1xx until its PRACK: T1, then doubling without the T2 cap,
    giving up at 64·T1 (RFC 3262 §3). `data` is the owner's (the server request)."""

    __slots__ = ()

    def __init__(self, response: Response, dest: object, now: float, *, t1: float = 0.5,
                 data: object = None) -> None:
        super().__init__(response, dest, now, t1=t1, t2=64 * t1, data=data)
