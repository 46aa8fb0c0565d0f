"""`recording/get_random` and `recording/download`: a call recording (WAV), behind a
one-time random, as `cdr/get_random` + `cdr/download` give the CDRs.

`recording/get_random {recording, allowedip?}` (POST) checks that the recording exists in
the recordings directory (20014 otherwise, and for any name that is not a plain file name
there: `../etc/passwd` is simply not a recording) and answers it back with a `random`
valid 30 s, once, for this token; `allowedip` (20015 if not an address) adds one address
allowed to download besides the session's own.

`recording/download?recording=…&random=…&token=…` (GET, a plain link, or POST) answers
the file as `audio/wav`. The random must be live, this token's and, when the link
repeats the name, for that recording (20012 otherwise); a download from another address
is 20015; a recording deleted meanwhile is 20014. Errors are the usual JSON envelope.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ippbx.api.endpoints.cdr import download_addresses
from ippbx.api.errors import ApiError, Errno
from ippbx.api.request import ApiRequest, Endpoint, FileReply

_TICKET_KIND = "recording"


def _recording(req: ApiRequest, name: str) -> Path:
    recordings = req.ctx.recordings
    path = recordings.path_of(name) if recordings is not None else None
    if path is None:
        raise ApiError(Errno.RECORDING_NOT_FOUND)
    return path


def get_random(req: ApiRequest) -> Mapping[str, Any]:
    name = req.require("recording").strip()
    _recording(req, name)
    addresses = download_addresses(req)
    random = req.ctx.downloads.issue(req.token or "", _TICKET_KIND, {"recording": name},
                                     addresses)
    return {"recording": name, "random": random}


def download(req: ApiRequest) -> FileReply:
    random = (req.text("random") or "").strip()
    ticket = req.ctx.downloads.redeem(random, req.token or "", _TICKET_KIND) if random else None
    if ticket is None:
        raise ApiError(Errno.RECORDING_RANDOM_INVALID)
    name: str = ticket.params["recording"]
    given = (req.text("recording") or "").strip()
    if given and given != name:
        raise ApiError(Errno.RECORDING_RANDOM_INVALID, "recording differs from the random's")
    if req.client_ip not in ticket.addresses:
        raise ApiError(Errno.BAD_ALLOWED_IP, "address not allowed to download")
    try:
        body = _recording(req, name).read_bytes()
    except OSError:
        raise ApiError(Errno.RECORDING_NOT_FOUND) from None
    return FileReply(body, "audio/wav", name)


ENDPOINTS = [
    Endpoint("recording/get_random", get_random),
    Endpoint("recording/download", download, methods=frozenset({"GET", "POST"})),
]
