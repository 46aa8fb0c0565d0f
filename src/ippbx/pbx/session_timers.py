"""Session timers (RFC 4028) for the B2BUA's two legs: what to ask, what was agreed, when.

A call whose peer vanished (a phone unplugged, a carrier that lost our call) sends no BYE;
without session timers it would stay up, and hold its trunk channel, forever. Every leg
ippbx sets up therefore gets a session interval and a refresher:

* An INVITE we send (the callee's leg) asks for `Session-Expires: N;refresher=uac`
  (`[calls] session_expires`), with `Supported: timer` and `Min-SE`; a 422 answer names
  the peer's minimum and the INVITE is sent once more with it (`retry_interval`).
* An INVITE we receive (the caller's leg) with a `Session-Expires` below our `Min-SE`
  (90 s) is refused 422 with `Min-SE: 90` (§9), unless the caller does not support
  timers, in which case the interval is raised instead. Otherwise the interval is the
  smaller of the caller's and ours, and the refresher is the caller's choice if it
  supports timers, else ippbx (§9).
* In our 2xx (`answer_headers`) the agreed `Session-Expires` and, if the caller supports
  timers, `Require: timer`.

Where the peer does not support session timers at all, ippbx is the refresher anyway: an
UPDATE (if the peer allows it) or a re-INVITE with the unchanged SDP every half interval.
That is a keep-alive the peer cannot tell from a refresh, and the point: a refresh that
gets 408 or 481, or no answer within `answer_timeout`, ends the call. Where the peer is
the refresher, a session that sees no refresh (re-INVITE or UPDATE) for the interval less
min(32 s, a third of it) is ended with a BYE (§10).

Pure: parses headers and computes times (with `sip/session.py`, whose `SessionRefresh`
runs them); `pbx/session_keeper.py` owns the timers and the requests.
"""

from __future__ import annotations

from dataclasses import dataclass

from ippbx.sip.headers import HeaderError, parse_params, split_list
from ippbx.sip.message import Request, Response

__all__ = [
    "MIN_SE", "SessionTimer", "TooSmall", "allows_update", "answer_headers", "from_request",
    "from_response", "offer_headers", "retry_interval",
]

MIN_SE = 90  # seconds, RFC 4028 §4: no smaller Min-SE is allowed


@dataclass(frozen=True, slots=True)
class SessionTimer:
    """The agreement on one leg: the interval (seconds) and whether ippbx refreshes.
    When each timer fires follows from the interval: `sip/session.py`'s
    `refresh_after`, `expire_after` and `answer_timeout`."""

    interval: float
    we_refresh: bool
    peer_supports: bool = False  # the peer said `Supported: timer`


@dataclass(frozen=True, slots=True)
class TooSmall:
    """An INVITE asked for less than our Min-SE: answer 422 with this header."""

    min_se: float

    @property
    def headers(self) -> list[tuple[str, str]]:
        return [("Min-SE", str(int(self.min_se)))]


def _supports_timer(message: Request | Response) -> bool:
    return any("timer" in (t.lower() for t in split_list(v))
               for name in ("Supported", "Require") for v in message.get_all(name))


def _session_expires(message: Request | Response) -> tuple[int, str | None] | None:
    """(delta-seconds, refresher) of the Session-Expires header, or None if absent or
    malformed (a malformed one is treated as absent: the call is worth more than it)."""
    value = message.get("Session-Expires")
    if value is None:
        return None
    delta, _, rest = value.partition(";")
    try:
        seconds = int(delta.strip())
        params = parse_params(rest) if rest.strip() else {}
    except (ValueError, HeaderError):
        return None
    if seconds <= 0:
        return None
    refresher = params.get("refresher")
    return seconds, refresher.lower() if refresher in ("uac", "uas", "UAC", "UAS") else None


def _min_se(message: Request | Response, floor: float) -> float:
    value = message.get("Min-SE") or ""
    try:
        return max(floor, int(value.partition(";")[0].strip()))
    except ValueError:
        return floor


def allows_update(message: Request | Response) -> bool:
    """Does the peer's Allow list UPDATE (so a refresh needs no SDP)?"""
    return any(m.strip().upper() == "UPDATE"
               for v in message.get_all("Allow") for m in split_list(v))


def offer_headers(interval: float, min_se: float = MIN_SE) -> list[tuple[str, str]]:
    """The headers of an INVITE we send: ippbx (the UAC) offers to refresh. (Its
    `Supported: timer` comes with the others from `pbx/capabilities.py`.)"""
    return [("Session-Expires", f"{int(interval)};refresher=uac"),
            ("Min-SE", str(int(min_se)))]


def retry_interval(response: Response, asked: float, min_se: float = MIN_SE) -> float | None:
    """A 422 to our INVITE: the interval to ask for next (its Min-SE), or None if a retry
    would not help (it asks for no more than we did)."""
    if response.status != 422:
        return None
    wanted = _min_se(response, min_se)
    return float(wanted) if wanted > asked else None


def from_request(request: Request, ours: float, min_se: float = MIN_SE
                 ) -> SessionTimer | TooSmall:
    """Our agreement on the caller's leg, from its INVITE (`ours`: the configured
    interval, > 0; `min_se`: our Min-SE, 90 unless the configured interval is less,
    which only a test's is). Seconds are floats here; the headers carry them as
    integers."""
    supports = _supports_timer(request)
    asked = _session_expires(request)
    floor = _min_se(request, min_se)
    if asked is None:
        return SessionTimer(max(ours, floor), we_refresh=True, peer_supports=supports)
    delta, refresher = asked
    seconds = float(delta)
    if seconds < min_se:
        if supports:
            return TooSmall(min_se)
        seconds = min_se  # (§9: raise it, the UAC cannot understand a 422)
    interval = max(min(seconds, ours), floor)
    if not supports:
        return SessionTimer(interval, we_refresh=True)
    return SessionTimer(interval, we_refresh=refresher != "uac", peer_supports=True)


def answer_headers(timer: SessionTimer) -> list[tuple[str, str]]:
    """Session timer headers of our 2xx to the caller's INVITE (or to a refresh)."""
    refresher = "uas" if timer.we_refresh else "uac"
    headers = [("Session-Expires", f"{int(timer.interval)};refresher={refresher}")]
    if timer.peer_supports:
        headers.append(("Require", "timer"))
    return headers


def from_response(response: Response, asked: float, min_se: float = MIN_SE) -> SessionTimer:
    """Our agreement on the callee's leg, from its 2xx to the INVITE in which we asked
    for `asked` seconds with us as refresher."""
    agreed = _session_expires(response)
    if agreed is None:  # the callee does not do session timers: we refresh all the same
        return SessionTimer(asked, we_refresh=True)
    seconds, refresher = agreed
    return SessionTimer(max(seconds, min_se), we_refresh=refresher != "uas",
                        peer_supports=True)
