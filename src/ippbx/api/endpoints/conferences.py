"""The conference family (`[[conferences]]`, `ippbx.pbx.conferences`), as OpenVox shows it.

- `conference/query {number}`: the rooms' settings, `number` one room, a comma list or
  `all`: `conferences[]` with `number`, `name`, `participantepassword` (sic),
  `moderatorpassword`, `waitformoderator` (`yes`/`no`).
- `conference/query_in_session {number}`: the rooms in session among those named (or
  `all`): `conference[]` with `conferencenumber`, `conferencename` and `member[]`
  (`number`, `channelid`, `memberstatus` `Up` or `HOLD` while waiting for a moderator,
  plus `moderator` and `muted` as `yes`/`no`, `callid`). A room with nobody in it is not
  listed.
- `conference/update {number, name, participantepassword, moderatorpassword,
  waitformoderator}`: through the running configuration, like the other writes.
- `conference/add_member {number, invitemember}`: calls the numbers into the room.
- `conference/kick_member`, `mute_member`, `unmute_member {number, membernumber}`.

The vendors list no errno for this family; ippbx answers 10011 (number not found) for a
number that names no room, or no member of it in session, 10006 for an extension to
invite that is not registered, 10004 for a missing field (or more numbers to invite than
the room's `max_members`), and 30001 when there is no
mixer (janus not installed or not running).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ippbx.api.codec import ItemList
from ippbx.api.endpoints.calls import parse_ids
from ippbx.api.endpoints.config_changes import flag, invalid, present, update_by_key
from ippbx.api.errors import ApiError, Errno
from ippbx.api.request import ApiRequest, Endpoint
from ippbx.config import Conference
from ippbx.pbx.conferences import ConferenceError, Conferences
from ippbx.pbx.control import ControlError

_ERRNOS = {
    ConferenceError.NO_ROOM: Errno.NUMBER_NOT_FOUND,
    ConferenceError.NO_MEMBER: Errno.NUMBER_NOT_FOUND,
    ConferenceError.NO_MIXER: Errno.INTERNAL,
    ConferenceError.TOO_MANY: Errno.MISSING_PARAM,
}
_CONTROL_ERRNOS = {
    ControlError.NO_EXTENSION: Errno.EXTENSION_NOT_FOUND,
    ControlError.NOT_PERMITTED: Errno.NO_OUTBOUND_PERMISSION,
    ControlError.NO_ROUTE: Errno.NUMBER_NOT_FOUND,
}


def _yes(on: bool) -> str:
    return "yes" if on else "no"


def room_view(room: Conference) -> dict[str, Any]:
    return {"number": room.number, "name": room.name or room.number,
            "participantepassword": room.pin, "moderatorpassword": room.moderator_pin,
            "waitformoderator": _yes(room.wait_for_moderator)}


def _chosen(req: ApiRequest) -> list[Conference]:
    """The rooms the body's `number` names (a comma list, or `all`); 10011 if none."""
    rooms = req.ctx.config.conferences
    numbers = parse_ids(req.require("number"))
    if numbers is None:
        return list(rooms)
    by_number = {c.number: c for c in rooms}
    found = [by_number[n] for n in numbers if n in by_number]
    if not found:
        raise ApiError(Errno.NUMBER_NOT_FOUND, "no such conference room")
    return found


def _conferences(req: ApiRequest) -> Conferences:
    if req.ctx.conferences is None:
        raise ApiError(Errno.INTERNAL, "no PBX behind this API")
    return req.ctx.conferences


def _numbers(req: ApiRequest, field: str) -> list[str]:
    numbers = [n.strip() for n in req.require(field).split(",") if n.strip()]
    if not numbers:
        raise ApiError(Errno.MISSING_PARAM, f"{field} names no number")
    return numbers


def query(req: ApiRequest) -> Mapping[str, Any]:
    return {"conferences": ItemList(room_view(c) for c in _chosen(req))}


def query_in_session(req: ApiRequest) -> Mapping[str, Any]:
    wanted = [c.number for c in _chosen(req)]
    live = _conferences(req).live(wanted)
    order = {n: i for i, n in enumerate(wanted)}
    live.sort(key=lambda r: order[r.number])
    return {"conference": ItemList(
        {"conferencenumber": r.number, "conferencename": r.name or r.number,
         "member": [{"number": m.number, "channelid": m.channelid,
                     "memberstatus": m.status, "moderator": _yes(m.moderator),
                     "muted": _yes(m.muted), "callid": m.callid} for m in r.members]}
        for r in live)}


def _pin(req: ApiRequest, name: str) -> str | None:
    value = req.text(name)
    if value is not None and not value.strip().isdigit() and value.strip():
        raise invalid(f"{name} must be digits, not {value!r}")
    return value.strip() if value is not None else None


def _fields(req: ApiRequest, current: Mapping[str, Any]) -> dict[str, Any]:
    name = req.text("name")
    if name is not None and any(c in name for c in "&'<>`|$]\\\""):
        raise invalid("name must not contain & ' < > ` | $ ] \\ \"")
    return {**current, **present({
        "name": name,
        "pin": _pin(req, "participantepassword"),
        "moderator_pin": _pin(req, "moderatorpassword"),
        "wait_for_moderator": flag(req, "waitformoderator"),
    })}


def update(req: ApiRequest) -> Mapping[str, Any]:
    return update_by_key(req, "conferences", "number", _fields,
                         not_found=Errno.NUMBER_NOT_FOUND)


def _act(action: Any, *args: Any) -> Any:
    try:
        return action(*args)
    except ConferenceError as exc:
        raise ApiError(_ERRNOS[exc.reason], exc.reason) from None
    except ControlError as exc:
        raise ApiError(_CONTROL_ERRNOS.get(exc.reason, Errno.INTERNAL), exc.reason) from None


def add_member(req: ApiRequest) -> Mapping[str, Any]:
    conferences = _conferences(req)
    number = req.require("number").strip()
    callids = _act(conferences.invite, number, _numbers(req, "invitemember"))
    return {"callid": ",".join(callids)}


def kick_member(req: ApiRequest) -> Mapping[str, Any]:
    conferences = _conferences(req)
    _act(conferences.kick, req.require("number").strip(), _numbers(req, "membernumber"))
    return {}


def _mute(req: ApiRequest, on: bool) -> Mapping[str, Any]:
    conferences = _conferences(req)
    _act(conferences.mute, req.require("number").strip(), _numbers(req, "membernumber"), on)
    return {}


def mute_member(req: ApiRequest) -> Mapping[str, Any]:
    return _mute(req, True)


def unmute_member(req: ApiRequest) -> Mapping[str, Any]:
    return _mute(req, False)


ENDPOINTS = [
    Endpoint("conference/query", query),
    Endpoint("conference/query_in_session", query_in_session),
    Endpoint("conference/update", update, body_required=True),
    Endpoint("conference/add_member", add_member, body_required=True),
    Endpoint("conference/kick_member", kick_member, body_required=True),
    Endpoint("conference/mute_member", mute_member, body_required=True),
    Endpoint("conference/unmute_member", unmute_member, body_required=True),
]
