"""What ippbx's SIP side handles, kept in one place: methods, option tags, bodies.

Every `Allow`, `Allow-Events`, `Supported` and `Accept` ippbx sends, and the option tags a peer's
`Require` may name without a 420 (RFC 3261 §8.2.2.3), come from here, so what ippbx
advertises is what it does.

- `ALLOW`: the methods ippbx answers as a B2BUA (PRACK, UPDATE and INFO inside calls,
  REFER for blind transfer, REGISTER for extensions, SUBSCRIBE for message waiting).
  NOTIFY is not among them: ippbx sends NOTIFYs but takes none (outside a call 481,
  inside one 501).
- `ALLOW_EVENTS`: the event packages a SUBSCRIBE may name (RFC 6665):
  `message-summary` (RFC 3842, `pbx/mwi.py`).
- `option_tags(session_timers)`: `100rel` (RFC 3262: reliable provisional responses, PRACK),
  `norefersub` (RFC 4488: a REFER with `Refer-Sub: false` gets no NOTIFYs) and, when
  `[calls] session_expires` is not 0, `timer` (RFC 4028).
- `ACCEPT`: the only session description format ippbx reads.
"""

from __future__ import annotations

ALLOW_METHODS: tuple[str, ...] = (
    "INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "PRACK", "UPDATE", "INFO",
    "REFER", "SUBSCRIBE",
)
ALLOW = ", ".join(ALLOW_METHODS)
ALLOW_EVENTS = "message-summary"
ACCEPT = "application/sdp"

RELIABLE_PROVISIONALS = "100rel"  # RFC 3262
NO_REFER_SUB = "norefersub"  # RFC 4488
SESSION_TIMERS = "timer"  # RFC 4028


def option_tags(session_timers: bool) -> tuple[str, ...]:
    """The option tags ippbx supports (for `Supported`, and accepted in `Require`)."""
    base = (RELIABLE_PROVISIONALS, NO_REFER_SUB)
    return (*base, SESSION_TIMERS) if session_timers else base


def supported_header(session_timers: bool) -> tuple[str, str]:
    return ("Supported", ", ".join(option_tags(session_timers)))


def capability_headers(session_timers: bool) -> list[tuple[str, str]]:
    """`Allow`, `Accept`, `Supported` and `Allow-Events`, as an OPTIONS answer carries
    them (RFC 3261 §11.2, RFC 6665)."""
    return [("Allow", ALLOW), ("Accept", ACCEPT), supported_header(session_timers),
            ("Allow-Events", ALLOW_EVENTS)]
