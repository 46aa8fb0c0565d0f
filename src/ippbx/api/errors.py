"""API error numbers (`errno`) and the exception that carries one to the envelope.

The numbers are Yeastar's v1 table (OpenVox publishes none). A dialect may show a
different number for the same failure (OpenVox answers bad credentials with 30003 and a
malformed body with 10002 where Yeastar says 20000); `ippbx.api.dialects` does that
mapping, so the rest of the API raises one neutral code. README.md lists the choices.
"""

from __future__ import annotations

from enum import IntEnum


class Errno(IntEnum):
    """The errno values ippbx answers with (emitted as strings, e.g. `"20004"`)."""

    BAD_PACKET = 10002  # body not parsable / not an object / over the size limit / bad type
    UNKNOWN_REQUEST = 10003  # no such endpoint (or no such API version)
    MISSING_PARAM = 10004  # a required parameter is missing, empty or of the wrong shape
    EXTENSION_NOT_FOUND = 10006  # no such extension (or it is not registered)
    CALL_NOT_FOUND = 10007
    EXTENSION_NOT_IDLE = 10008  # extension/listen: the listener is busy (or the call has one)
    NUMBER_NOT_FOUND = 10011  # no route for the number dialled; no such paging group
    IVR_NOT_FOUND = 10012  # ivr/query: none of the IVRs asked for exists
    QUEUE_NOT_FOUND = 10013
    RINGGROUP_NOT_FOUND = 10014
    CALL_NOT_CONNECTED = 10015  # the operation needs an answered call
    CONFIG_FAILED = 10017  # a configuration change refused (invalid, duplicate, unknown)
    IVR_CONFIG_FAILED = 10018  # ivr/update refused
    QUEUE_CONFIG_FAILED = 10019  # queue/update refused
    INBOUND_TOO_LATE = 10016  # inbound/accept|refuse: the call's decision is made already
    PROMPT_NOT_FOUND = 10023  # playprompt: no prompt file by that name
    NO_OUTBOUND_PERMISSION = 10024  # a route matched that this extension may not use
    WRONG_PASSWORD = 10032  # queue/add|del_dynamicagent: not the queue's password
    ONLY_JSON = 20000  # Yeastar dialect: body is XML, or JSON that does not parse
    ONLY_POST = 20001  # method other than POST on an API endpoint
    IP_LOCKED = 20002  # too many failed logins, or the address is not in allowed_ips
    BAD_CREDENTIALS = 20003  # OpenVox dialect shows 30003
    NO_SUCH_TOKEN = 20004  # unknown, logged out, or expired long ago and forgotten
    TOKEN_MISSING = 20005  # no token / empty token
    TOKEN_EXPIRED = 20006  # expired, still remembered
    EMPTY_BODY = 20007  # a body is required and none was sent
    BAD_PORT = 20008  # `port` at login/heartbeat is not 0..65535
    RECORDING_RANDOM_INVALID = 20012  # recording/download random unknown, expired, used
    RECORDING_NOT_FOUND = 20014  # recording/get_random|download: no such recording
    BAD_ALLOWED_IP = 20015  # */get_random `allowedip` not an address; download from elsewhere
    VOICEMAIL_STATUS_WRONG = 20016  # (Yeastar's; v0.0.1 has no voicemail status to be wrong)
    VOICEMAIL_RANDOM_INVALID = 20017  # voicemail/download random unknown, expired, used
    VOICEMAIL_NOT_FOUND = 20018  # voicemail/delete|get_random|download: no such message
    CDR_TIME_FORMAT = 20019  # cdr/get_random time not YYYY-MM-DD HH:MM:SS
    CDR_RANDOM_INVALID = 20020  # cdr/download random unknown, expired, used or not this query's
    CDR_NOT_FOUND = 20021  # cdr/download: no CDR in the range
    INTERNAL = 30001  # an unexpected failure inside ippbx (logged, never a 500)
    OPENVOX_LOGIN_FAILED = 30003  # what OpenVox's own example answers to bad credentials


class ApiError(Exception):
    """Raised anywhere below an endpoint to answer `{"status":"Failed","errno":…}`."""

    def __init__(self, errno: Errno, detail: str = "") -> None:
        super().__init__(f"{int(errno)} {errno.name}" + (f": {detail}" if detail else ""))
        self.errno = errno
        self.detail = detail
