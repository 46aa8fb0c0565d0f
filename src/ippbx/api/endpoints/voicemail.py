"""`voicemail/query`, `voicemail/delete`, `voicemail/get_random` and `voicemail/download`:
the messages in the extensions' mailboxes (`ippbx.pbx.mailboxes`).

`voicemail/query {extid?}` lists, per extension that has messages, each message's file
name, caller, time (`YYYY-MM-DD HH:MM:SS` in the PBX's time zone) and length in seconds,
oldest first. `extid` is one extension, a comma list or absent/`all` (every extension, in
config order); numbers that are no extension are skipped. No message at all answers the
bare `Success`, as the vendor does.

`voicemail/delete {extid, voicemailfile}` deletes one message, or every one of the
mailbox for `all` (an empty mailbox included). 10006 if `extid` is no extension, 20018 if
the mailbox has no such message.

`voicemail/get_random {extid, voicemailfile, allowedip?}` answers the message back with a
`random` valid 30 s, once, for this token (as `recording/get_random` does; 10006 / 20018
as for delete, 20015 for an `allowedip` that is not an address).
`voicemail/download?extid=…&voicemailfile=…&random=…&token=…` (GET, a plain link, or
POST; the vendor's `voicemailstatus` is ignored) answers the WAV as `audio/wav`: 20017
if the random is not live, not this token's, or for another message than the link
names; 20015 from an address it does not allow; 20018 if the message went meanwhile.
Downloading leaves the message new (a phone's listening marks it heard).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import tzinfo
from pathlib import Path
from typing import Any

from ippbx.api.codec import ItemList
from ippbx.api.endpoints.calls import parse_ids
from ippbx.api.endpoints.cdr import download_addresses
from ippbx.api.errors import ApiError, Errno
from ippbx.api.request import ApiRequest, Endpoint, FileReply
from ippbx.pbx import cdr
from ippbx.pbx.mailboxes import Mailboxes, Message

_TICKET_KIND = "voicemail"
ALL = "all"


def _mailbox_numbers(req: ApiRequest) -> list[str]:
    """The extensions `extid` asks for (every one when absent or `all`)."""
    numbers = [ext.number for ext in req.ctx.config.extensions]
    asked = parse_ids(req.text("extid"))
    if asked is None:
        return numbers
    known = set(numbers)
    return [number for number in asked if number in known]


def _message_view(message: Message, tz: tzinfo) -> dict[str, Any]:
    return {"voicemailfile": message.file, "messagefrom": message.caller,
            "voicemaildate": cdr.local_time(message.received_at, tz),
            "voicemaillength": message.seconds}


def query(req: ApiRequest) -> Mapping[str, Any]:
    mailboxes = req.ctx.mailboxes
    numbers = _mailbox_numbers(req)
    if mailboxes is None or not numbers:
        return {}
    found = mailboxes.all_messages()
    tz = cdr.zone(req.ctx.config.pbx.timezone)
    listed = ItemList(
        {"extid": number, "voicemail": ItemList(_message_view(m, tz) for m in found[number])}
        for number in numbers if found.get(number)
    )
    return {"voicemails": listed} if listed else {}


def _mailbox(req: ApiRequest) -> tuple[str, Mailboxes]:
    """The `extid` asked for, a configured extension (10006 otherwise), and the mailboxes
    (20018 when there are none behind the API)."""
    extid = req.require("extid").strip()
    if req.ctx.config.extension(extid) is None:
        raise ApiError(Errno.EXTENSION_NOT_FOUND)
    if req.ctx.mailboxes is None:
        raise ApiError(Errno.VOICEMAIL_NOT_FOUND)
    return extid, req.ctx.mailboxes


def delete(req: ApiRequest) -> Mapping[str, Any]:
    extid, mailboxes = _mailbox(req)
    file = req.require("voicemailfile").strip()
    if file.lower() == ALL:
        mailboxes.delete_all(extid)
    elif not mailboxes.delete(extid, file):
        raise ApiError(Errno.VOICEMAIL_NOT_FOUND)
    return {}


def get_random(req: ApiRequest) -> Mapping[str, Any]:
    extid, mailboxes = _mailbox(req)
    file = req.require("voicemailfile").strip()
    if mailboxes.path_of(extid, file) is None:
        raise ApiError(Errno.VOICEMAIL_NOT_FOUND)
    addresses = download_addresses(req)
    params = {"extid": extid, "voicemailfile": file}
    random = req.ctx.downloads.issue(req.token or "", _TICKET_KIND, params, addresses)
    return {"extid": extid, "voicemailfile": file, "random": random}


def _message_file(req: ApiRequest, extid: str, file: str) -> Path:
    mailboxes = req.ctx.mailboxes
    path = mailboxes.path_of(extid, file) if mailboxes is not None else None
    if path is None:
        raise ApiError(Errno.VOICEMAIL_NOT_FOUND)
    return path


def download(req: ApiRequest) -> FileReply:
    random = (req.text("random") or "").strip()
    ticket = req.ctx.downloads.redeem(random, req.token or "", _TICKET_KIND) if random else None
    if ticket is None:
        raise ApiError(Errno.VOICEMAIL_RANDOM_INVALID)
    params: dict[str, str] = ticket.params
    for name in ("extid", "voicemailfile"):
        given = (req.text(name) or "").strip()
        if given and given != params[name]:
            raise ApiError(Errno.VOICEMAIL_RANDOM_INVALID, f"{name} differs from the random's")
    if req.client_ip not in ticket.addresses:
        raise ApiError(Errno.BAD_ALLOWED_IP, "address not allowed to download")
    try:
        body = _message_file(req, params["extid"], params["voicemailfile"]).read_bytes()
    except OSError:
        raise ApiError(Errno.VOICEMAIL_NOT_FOUND) from None
    return FileReply(body, "audio/wav", params["voicemailfile"])


ENDPOINTS = [
    Endpoint("voicemail/query", query),
    Endpoint("voicemail/delete", delete),
    Endpoint("voicemail/get_random", get_random),
    Endpoint("voicemail/download", download, methods=frozenset({"GET", "POST"})),
]
