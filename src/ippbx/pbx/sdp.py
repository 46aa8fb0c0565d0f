"""The little SDP editing a B2BUA needs: change the media direction of an offer.

Media flows end to end, so ippbx never builds SDP of its own; to put a party on hold (or
take it off) it re-offers the other party's last SDP with every media section's direction
attribute set to `sendonly` (or `sendrecv`) and the o= session version raised (RFC 3264
§8: a changed offer must carry a higher version).
"""

from __future__ import annotations

_DIRECTIONS = (b"a=sendrecv", b"a=sendonly", b"a=recvonly", b"a=inactive")


def direction(sdp: bytes) -> str:
    """The direction of the first media section (or the session), "sendrecv" if none."""
    for line in sdp.splitlines():
        if line.strip() in _DIRECTIONS:
            return line.strip()[2:].decode()
    return "sendrecv"


def is_hold(sdp: bytes) -> bool:
    return direction(sdp) in ("sendonly", "inactive")


def with_direction(sdp: bytes, new: str) -> bytes:
    """`sdp` with each media section's direction set to `new` and the version raised."""
    eol = b"\r\n" if b"\r\n" in sdp else b"\n"
    attr = b"a=" + new.encode()
    out: list[bytes] = []
    in_media = False
    for line in sdp.splitlines():
        stripped = line.strip()
        if not stripped or stripped in _DIRECTIONS:
            continue
        if stripped.startswith(b"m="):
            if in_media:
                out.append(attr)
            in_media = True
        elif stripped.startswith(b"o="):
            line = _bump_version(stripped)
        out.append(line)
    out.append(attr)  # the last media section (or the session, if there is no m= line)
    return eol.join(out) + eol


def _bump_version(origin: bytes) -> bytes:
    """o=<user> <sess-id> <sess-version> … with sess-version + 1."""
    parts = origin.split(b" ")
    if len(parts) >= 3 and parts[2].isdigit():
        parts[2] = str(int(parts[2]) + 1).encode()
    return b" ".join(parts)
