"""What every API endpoint takes and answers, as tables for the OpenAPI description
(`ippbx.api.openapi` builds the document from `ippbx.api.dialects.ENDPOINTS` and these).

`DOCS` holds one `EndpointDoc` per endpoint name: a summary, the request fields (`req` /
`opt`: always text on the wire; numbers are taken too), the success payload (JSON Schema
pieces made with `text`, `number`, `obj`, `items`, `repeated`; a function of the dialect
where the dialects differ) and the errnos the handler itself can answer. The errnos of
the dispatch steps every endpoint shares (format, body size, token, body) are added by
`ippbx.api.openapi` from the `Endpoint` and the dialect, so they are not repeated here.

Payload pieces follow the codec (`ippbx.api.codec`): every scalar is a string (a
`number` is the one JSON number, `queuestatus/query`'s `callercount`); `items` is a
configuration list (`codec.ItemList`: XML `<key><item id="N">…</item></key>`),
`repeated` a plain list (XML: one `<key>` element per entry, none when empty).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ippbx.api.errors import Errno

if TYPE_CHECKING:
    from ippbx.api.dialects import Dialect

Schema = dict[str, Any]
Answer = Mapping[str, Schema]

ERRNO_TEXT: dict[Errno, str] = {
    Errno.BAD_PACKET: "body not parsable (OpenVox), not an object, or over 64 KiB; "
                      "OpenVox `type` other than json/xml",
    Errno.UNKNOWN_REQUEST: "unknown endpoint; a configuration change by a user who may "
                           "not make one (readonly API user, no configuration store)",
    Errno.MISSING_PARAM: "a required field missing or empty, or a field that is not text",
    Errno.EXTENSION_NOT_FOUND: "no such extension (or not registered, so nothing could "
                               "ring it)",
    Errno.CALL_NOT_FOUND: "no such live call",
    Errno.EXTENSION_NOT_IDLE: "the listener is busy, or the call has a listener already",
    Errno.NUMBER_NOT_FOUND: "no route for the number dialled; no such paging group",
    Errno.IVR_NOT_FOUND: "no such IVR",
    Errno.QUEUE_NOT_FOUND: "no such queue",
    Errno.RINGGROUP_NOT_FOUND: "no such ring group",
    Errno.CALL_NOT_CONNECTED: "the call is not answered yet",
    Errno.INBOUND_TOO_LATE: "the inbound call's accept/refuse decision is made already",
    Errno.CONFIG_FAILED: "configuration change refused (invalid value, duplicate, "
                         "unknown reference, something left pointing at nothing); "
                         "nothing changed",
    Errno.IVR_CONFIG_FAILED: "IVR change refused; nothing changed",
    Errno.QUEUE_CONFIG_FAILED: "queue change refused; nothing changed",
    Errno.PROMPT_NOT_FOUND: "no prompt by that name",
    Errno.NO_OUTBOUND_PERMISSION: "a route matched that this extension may not use",
    Errno.WRONG_PASSWORD: "not the queue's password",
    Errno.ONLY_JSON: "Yeastar: XML body, `type` other than json, or JSON that does not "
                     "parse or is not an object",
    Errno.ONLY_POST: "a method the endpoint does not take",
    Errno.IP_LOCKED: "address locked out after failed logins, or not in `allowed_ips`",
    Errno.BAD_CREDENTIALS: "Yeastar: bad username or password",
    Errno.NO_SUCH_TOKEN: "token unknown, logged out, or expired more than 6 hours ago",
    Errno.TOKEN_MISSING: "no token, or an empty one",
    Errno.TOKEN_EXPIRED: "token expired (unused for `token_ttl` seconds)",
    Errno.EMPTY_BODY: "this endpoint needs a body and none was sent",
    Errno.BAD_PORT: "`port` is not an integer 0-65535",
    Errno.RECORDING_RANDOM_INVALID: "recording random unknown, expired, used, another "
                                    "token's or another recording's",
    Errno.RECORDING_NOT_FOUND: "no such recording",
    Errno.BAD_ALLOWED_IP: "`allowedip` is not an address; a download from an address the "
                          "random does not allow",
    Errno.VOICEMAIL_STATUS_WRONG: "voicemail status wrong (Yeastar's; not answered by ippbx)",
    Errno.VOICEMAIL_RANDOM_INVALID: "voicemail random unknown, expired, used, another "
                                    "token's or another message's",
    Errno.VOICEMAIL_NOT_FOUND: "no such voicemail message",
    Errno.CDR_TIME_FORMAT: "time not `YYYY-MM-DD HH:MM:SS`",
    Errno.CDR_RANDOM_INVALID: "CDR random unknown, expired, used, another token's or "
                              "another query's",
    Errno.CDR_NOT_FOUND: "no CDR in the range",
    Errno.INTERNAL: "internal failure: a call needing the media engine without one, no "
                    "PBX behind the API, or an unexpected error (logged; never an HTTP 500)",
    Errno.OPENVOX_LOGIN_FAILED: "OpenVox: bad username or password",
}
"""What each errno means, as the description shows it."""


# -- request fields ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Param:
    """One request field (body field; query parameter of a download by GET)."""

    description: str
    required: bool = False
    example: str | None = None
    enum: tuple[str, ...] = ()


def req(description: str, example: str | None = None, enum: Iterable[str] = ()) -> Param:
    """A required field: missing or empty answers 10004."""
    return Param(description, True, example, tuple(enum))


def opt(description: str, example: str | None = None, enum: Iterable[str] = ()) -> Param:
    """An optional field (absent, `null` and, unless said otherwise, empty: not given)."""
    return Param(description, False, example, tuple(enum))


# -- answer pieces ----------------------------------------------------------------------------
def text(description: str = "", *, enum: Iterable[str] = (), pattern: str = "",
         const: str | None = None) -> Schema:
    """A scalar: a string in JSON and the text of an element in XML."""
    schema: Schema = {"type": "string"}
    if const is not None:
        schema["const"] = const
    values = list(enum)
    if values:
        schema["enum"] = values
    if pattern:
        schema["pattern"] = pattern
    if description:
        schema["description"] = description
    return schema


def number(description: str = "") -> Schema:
    """A JSON number (XML: its text)."""
    schema: Schema = {"type": "integer", "minimum": 0}
    if description:
        schema["description"] = description
    return schema


def obj(properties: Mapping[str, Schema], *, optional: Iterable[str] = (),
        description: str = "", min_properties: int | None = None) -> Schema:
    """An object with exactly these keys (those in `optional` may be absent)."""
    absent = set(optional)
    schema: Schema = {
        "type": "object",
        "properties": dict(properties),
        "required": [name for name in properties if name not in absent],
        "additionalProperties": False,
    }
    if min_properties is not None:
        schema["minProperties"] = min_properties
        schema["maxProperties"] = min_properties
    if description:
        schema["description"] = description
    return schema


def items(item: Schema, description: str = "") -> Schema:
    """A configuration list: JSON array; XML `<key><item id="0">…</item>…</key>`."""
    schema: Schema = {"type": "array", "items": {**item, "xml": {"name": "item"}},
                      "xml": {"wrapped": True}}
    if description:
        schema["description"] = description
    return schema


def repeated(item: Schema, description: str = "") -> Schema:
    """A plain list: JSON array; XML one `<key>` element per entry (none when empty)."""
    schema: Schema = {"type": "array", "items": item}
    if description:
        schema["description"] = description
    return schema


# -- endpoints --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EndpointDoc:
    """What one endpoint takes and answers."""

    summary: str
    description: str = ""
    fields: Mapping[str, Param] = field(default_factory=dict)
    answer: Answer | Callable[[Dialect], Answer] = field(default_factory=dict)
    optional: tuple[str, ...] = ()  # answer keys that may be absent
    errnos: tuple[Errno, ...] = ()  # the handler's own (30001 here: answered on purpose)
    file: tuple[str, str] | None = None  # a download: (media type, what the file is)

    def answer_for(self, dialect: Dialect) -> Answer:
        return self.answer(dialect) if callable(self.answer) else self.answer


E = Errno
_ON_OFF = ("on", "off")
_DIGITS = r"^[0-9]+$"
_HEX32 = r"^[0-9a-f]{32}$"
_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$"
_EXT_STATUS = ("Unavailable", "Registered", "Idle", "Ringing", "Busy", "Hold")
_LEG_STATUS = ("Progress", "Talking", "Wait")
_CONFIG_CHANGE = (E.UNKNOWN_REQUEST, E.MISSING_PARAM, E.CONFIG_FAILED)
_DIAL = (E.MISSING_PARAM, E.EXTENSION_NOT_FOUND, E.NO_OUTBOUND_PERMISSION, E.NUMBER_NOT_FOUND)
_TRANSFER = (E.MISSING_PARAM, E.CALL_NOT_FOUND, E.CALL_NOT_CONNECTED, E.EXTENSION_NOT_FOUND,
             E.NO_OUTBOUND_PERMISSION, E.NUMBER_NOT_FOUND, E.INTERNAL)
_AGENT = (E.MISSING_PARAM, E.QUEUE_NOT_FOUND, E.EXTENSION_NOT_FOUND, E.WRONG_PASSWORD)
_YES_NO = "`yes` (also `1`, `true`, `on`) answers the phone automatically where it can; " \
          "default `no`"

_MEMBERS = {"number": req("room number", "6600"),
            "membernumber": req("one member number or a comma list", "1003")}
_MEMBER_ERRNOS = (E.MISSING_PARAM, E.NUMBER_NOT_FOUND)
_SUPERVISION_ERRNOS = (E.MISSING_PARAM, E.EXTENSION_NOT_FOUND, E.CALL_NOT_FOUND,
                       E.EXTENSION_NOT_IDLE, E.NO_OUTBOUND_PERMISSION, E.NUMBER_NOT_FOUND,
                       E.INTERNAL)
_CALL_ID = text("the new call's id (`<epoch>.<sequence>`; OpenVox clients ignore it)")
_TIMES = ("`YYYY-MM-DD HH:MM:SS` in the PBX's time zone")


def _supervision(summary: str, supervisor: str, what: str, monitored: str,
                 description: str = "On the conference mixer (30001 without it).",
                 ) -> EndpointDoc:
    """extension/listen, whisper, barge: a supervisor's extension, the monitored one."""
    return EndpointDoc(summary, description,
                       fields={supervisor: req(what, "1003"),
                               monitored: req("extension in a call", "1001")},
                       answer={"callid": _CALL_ID}, errnos=_SUPERVISION_ERRNOS)


def _call_leg(id_name: str) -> Schema:
    return obj({id_name: text(), "from": text(), "to": text(), "trunk": text()})


_OUTBOUND_ITEM = obj({
    "outboundid": text("the trunk leg's id (`<epoch>.<sequence>`)"),
    "from": text("caller id presented on the trunk"),
    "to": text("number sent to the trunk (route prefix stripped)"),
    "trunk": text("trunk name"),
    "status": text(enum=_LEG_STATUS),
})
_CALLEE = obj(
    {"extid": text("the extension (\"\" while nothing answers)"),
     "ivrid": text("the IVR the caller is in"),
     "queueid": text("the queue the caller waits in"),
     "outboundid": text("the outbound leg the call was forwarded to")},
    optional=("extid", "ivrid", "queueid", "outboundid"), min_properties=1,
    description="what the call is connected to: one key",
)


def _inbound_item(dialect: Dialect) -> Schema:
    callee = repeated(_CALLEE, "one entry (Yeastar's array)") if dialect.callee_as_list \
        else _CALLEE
    return obj({
        "inboundid": text("the trunk leg's id (`<epoch>.<sequence>`)"),
        "from": text("caller number"),
        "to": text("number called (DID)"),
        "trunk": text("trunk name"),
        "callee": callee,
        "status": text(enum=_LEG_STATUS),
    })


def _extension_type(dialect: Dialect) -> Schema:
    return text("`pjsip` on v0.0.1, `SIP` on v1.1.0", const=dialect.extension_type)


def _extension_info(dialect: Dialect) -> Schema:
    forward = {}
    for key in ("noanswer", "busy"):
        k = key[0]
        forward |= {
            f"{key}forward": text(enum=_ON_OFF),
            f"{k}transferto": text(enum=("", "Voicemail", "Extension", "Custom Number",
                                         "Mobile Number")),
            f"{k}transferext": text("the extension (or IVR, ring group, queue) number"),
            f"{k}transferprefix": text("always \"\": the number is shown as dialled"),
            f"{k}transfernum": text("the number as dialled, route prefix included"),
        }
    return obj({
        "extnumber": text(),
        "username": text("the configured name, else the number"),
        "type": _extension_type(dialect),
        "status": text(enum=_EXT_STATUS),
        "callerid": text(),
        "registerpassword": text("SIP password; \"\" for a readonly API user"),
        "maxregistrations": text(pattern=_DIGITS),
        "loginpassword": text("always \"\" (no web login)"),
        "email": text(),
        "moblie": text("the mobile number (sic, the vendor's key)"),
        "language": text(),
        "hasvoicemail": text(enum=_ON_OFF),
        "vmsecret": text("voicemail PIN; \"\" for a readonly API user"),
        "enablevmtoemail": text(enum=_ON_OFF),
        **forward,
        "enablemobile": text(enum=_ON_OFF),
        "ringsimultaneous": text(enum=_ON_OFF),
        "mobileprefix": text(),
        "allowbeingmonitored": text(enum=_ON_OFF),
        "monitormode": text(),
        "ringtimeout": text("seconds", pattern=_DIGITS),
        "maxduration": text("seconds, or `Unlimited`", pattern=r"^([0-9]+|Unlimited)$"),
        "dnd": text(enum=_ON_OFF),
        "inbound": _call_leg("inboundid"),
        "outbound": _call_leg("outboundid"),
        "ext": obj({"extid": text()}),
    }, optional=("inbound", "outbound", "ext"))


_TRUNK = obj({
    "id": text("the trunk's id (for `siptrunk/update`)", pattern=_DIGITS),
    "trunkname": text(),
    "tech": text(const="pjsip"),
    "trunktype": text(enum=("register", "peer")),
    "host": text(),
    "port": text(pattern=_DIGITS),
    "domain": text("the host"),
    "username": text(),
    "authname": text(),
    "fromuser": text(),
    "password": text("\"\" for a readonly API user"),
}, optional=("username", "authname", "fromuser", "password"),
    description="a peer trunk has no `username`, `authname`, `fromuser`, `password`")

_QUEUE = obj({
    "queuenumber": text(),
    "queuename": text(),
    "password": text("the PIN dynamic agents sign in with"),
    "agents": text("static agents, a comma list"),
    "announcefreq": text("seconds between position announcements; 0: off",
                         pattern=_DIGITS),
    "announceholdtime": text(const="off"),
    "announcepos": text(enum=_ON_OFF),
    "joinempty": text(enum=_ON_OFF),
    "leavewhenempty": text(enum=_ON_OFF),
    "retry": text(pattern=_DIGITS),
    "ringstrategy": text(enum=("Ring All", "Rrmemory", "Least Recent", "Fewest Calls",
                               "Random", "Linear")),
    "agenttimeout": text(pattern=_DIGITS),
    "wrapuptime": text(pattern=_DIGITS),
    "dynamicagents": text("dynamic agents signed in now, a comma list"),
    "agentannounce": text(),
    "musiconhold": text(),
    "maxwaittime": text(pattern=_DIGITS),
})

# extension/add and extension/update: every field optional but the key
_EXTENSION_FIELDS: dict[str, Param] = {
    "username": opt("name (the caller id name)"),
    "callerid": opt("caller id"),
    "registerpassword": opt("SIP password (extension/add without one: 20 random characters)"),
    "maxregistrations": opt("most contacts registered at once"),
    "email": opt("e-mail address"),
    "mobile": opt("mobile number"),
    "mobileprefix": opt("route prefix dialled before the mobile number"),
    "enablemobile": opt("`off` clears the mobile number", enum=_ON_OFF),
    "ringsimultaneous": opt("ring the mobile with the extension", enum=_ON_OFF),
    "hasvoicemail": opt("voicemail", enum=_ON_OFF),
    "vmsecret": opt("voicemail PIN"),
    "enablevmtoemail": opt("voicemail to the e-mail address", enum=_ON_OFF),
    "noanswerforward": opt("forward on no answer", enum=_ON_OFF),
    "ntransferto": opt("where to (with noanswerforward on)",
                       enum=("Voicemail", "Extension", "Mobile Number", "Custom Number")),
    "ntransferext": opt("the number for `Extension` (an IVR, ring group or queue too)"),
    "ntransferprefix": opt("route prefix for `Custom Number`"),
    "ntransfernum": opt("the number for `Custom Number`"),
    "busyforward": opt("forward on busy", enum=_ON_OFF),
    "btransferto": opt("where to (with busyforward on)",
                       enum=("Voicemail", "Extension", "Mobile Number", "Custom Number")),
    "btransferext": opt("the number for `Extension`"),
    "btransferprefix": opt("route prefix for `Custom Number`"),
    "btransfernum": opt("the number for `Custom Number`"),
    "allowbeingmonitored": opt("checked, nothing behind it", enum=_ON_OFF),
    "monitormode": opt("checked (disabled, extensive, listen, whisper, barge-in), nothing "
                       "behind it"),
    "ringtimeout": opt("seconds an extension rings"),
    "maxduration": opt("longest call in seconds; `Follow System` or `Unlimited`: the "
                       "system's `[calls] max_duration`"),
    "dnd": opt("do not disturb", enum=_ON_OFF),
}

_TRUNK_FIELDS: dict[str, Param] = {
    "trunkname": opt("trunk name"),
    "trunktype": opt("`register` or `peer` (`account` is refused: make it an extension)",
                     enum=("register", "peer")),
    "host": opt("host name or address"),
    "port": opt("SIP port"),
    "username": opt("account user (register trunks)"),
    "authname": opt("taken as `username` when that is absent"),
    "fromuser": opt("From user (register trunks)"),
    "password": opt("account password (register trunks)"),
}

_OUTROUTE_FIELDS: dict[str, Param] = {
    "name": opt("route name"),
    "prefix": opt("digits that lead the number dialled, stripped"),
    "matchpattern": opt("dial pattern after the prefix (`X.`, `NXXXXXX`)"),
    "prepend": opt("digits put in front of the number sent"),
    "callerid": opt("the extensions that may use the route, a comma list (\"\": all)"),
    "trunks": opt("trunk names, a comma list, in order of use"),
}

_INROUTE_FIELDS: dict[str, Param] = {
    "did": opt("DID pattern (\"\": any)"),
    "caller_id": opt("caller pattern (\"\": any)"),
    "trunk": opt("ippbx's own: the trunk whose calls the route takes (absent: any)"),
    "desttype": opt("destination kind (`disa`, `callback` are refused)",
                    enum=("extension", "voicemail", "ivr", "ringgroup", "queue", "conference",
                          "hangup")),
    "dest": opt("destination number (required unless `hangup`)"),
}


def _required(fields: Mapping[str, Param], *names: str,
              examples: Mapping[str, str] | None = None) -> dict[str, Param]:
    """`fields` with `names` made required and `examples` set."""
    examples = examples or {}
    return {name: Param(p.description, p.required or name in names,
                        examples.get(name, p.example), p.enum)
            for name, p in fields.items()}


DOCS: dict[str, EndpointDoc] = {
    # -- authentication ---------------------------------------------------------------------
    "login": EndpointDoc(
        "Log in: a token for every other endpoint",
        "Checks, in order: the address against `allowed_ips` and the lockout (20002), "
        "username and password present (10004), `port` (20008), the credentials (20003; "
        "30003 on OpenVox). Failures from one address lock it out for "
        "`lockout_seconds` after `lockout_failures` in a row. `port`, `url` and `urltag` "
        "say where the call reports go (docs/reports.md).",
        {"username": req("API user", "api"),
         "password": req("lowercase MD5 hex of the password",
                         "146079b602960d62e6df7c96b4502b32"),
         "port": opt("TCP port of the report receiver (0-65535)", "8260"),
         "url": opt("report path (relative) or `host:port/path` (absolute)"),
         "urltag": opt("`0`: `url` is relative, `1`: absolute", enum=("0", "1")),
         "urlflag": opt("the same as `urltag`"),
         "version": opt("report format version")},
        {"token": text("32 lowercase hex; valid `token_ttl` seconds after its last use",
                       pattern=_HEX32)},
        errnos=(E.IP_LOCKED, E.MISSING_PARAM, E.BAD_PORT, E.BAD_CREDENTIALS)),
    "heartbeat": EndpointDoc(
        "Renew the token; change where the reports go",
        "An empty body only renews the token; absent fields keep their value.",
        {"ipaddr": opt("address the reports go to"),
         "port": opt("TCP port of the report receiver (0-65535)"),
         "url": opt("report path or `host:port/path`"),
         "urltag": opt("`0`: `url` is relative, `1`: absolute"),
         "urlflag": opt("the same as `urltag`")},
        errnos=(E.MISSING_PARAM, E.BAD_PORT)),
    "logout": EndpointDoc("End this token's session (the others stay)"),
    # -- live calls -------------------------------------------------------------------------
    "outbound/query": EndpointDoc(
        "Live outbound trunk calls",
        "No id, `\"\"` or `all`: every live call, oldest first; a comma list: those "
        "still live, in request order (unknown ids dropped). No match: an empty list.",
        {"outboundid": opt("one id, a comma list, or `all`", "1589881535.982")},
        {"outbound": repeated(_OUTBOUND_ITEM, "one entry per call")},
        errnos=(E.MISSING_PARAM,)),
    "inbound/query": EndpointDoc(
        "Live inbound trunk calls",
        "As `outbound/query`. `callee` is an object on v0.0.1 and an array of one on "
        "v1.1.0.",
        {"inboundid": opt("one id, a comma list, or `all`", "1589881290.963")},
        lambda d: {"inbound": repeated(_inbound_item(d), "one entry per call")},
        errnos=(E.MISSING_PARAM,)),
    # -- call control -----------------------------------------------------------------------
    "outbound/hangup": EndpointDoc(
        "Hang up an outbound call",
        fields={"outboundid": req("the call's outbound id", "1589881535.982")},
        errnos=(E.MISSING_PARAM, E.CALL_NOT_FOUND)),
    "inbound/hangup": EndpointDoc(
        "Hang up an inbound call",
        fields={"inboundid": req("the call's inbound id", "1589881290.963")},
        errnos=(E.MISSING_PARAM, E.CALL_NOT_FOUND)),
    "extension/hangup": EndpointDoc(
        "Hang up every call of an extension",
        fields={"extid": req("extension", "1001")},
        errnos=(E.MISSING_PARAM, E.CALL_NOT_FOUND)),
    "extension/hold": EndpointDoc(
        "Hold the extension's call (a re-INVITE puts the other party on hold)",
        fields={"extid": req("extension", "1001")},
        errnos=(E.MISSING_PARAM, E.CALL_NOT_FOUND, E.CALL_NOT_CONNECTED)),
    "extension/unhold": EndpointDoc(
        "Resume the extension's held call",
        fields={"extid": req("extension", "1001")},
        errnos=(E.MISSING_PARAM, E.CALL_NOT_FOUND, E.CALL_NOT_CONNECTED)),
    "extension/mute": EndpointDoc(
        "Mute the extension in its call (needs the media engine: 30001 without)",
        fields={"extid": req("extension", "1001")},
        errnos=(E.MISSING_PARAM, E.CALL_NOT_FOUND, E.CALL_NOT_CONNECTED, E.INTERNAL)),
    "extension/unmute": EndpointDoc(
        "Unmute the extension in its call",
        fields={"extid": req("extension", "1001")},
        errnos=(E.MISSING_PARAM, E.CALL_NOT_FOUND, E.CALL_NOT_CONNECTED, E.INTERNAL)),
    "calltransfer": EndpointDoc(
        "Blind transfer: `transferor` leaves, the other party goes to `transferto`",
        "The target is an extension, IVR, ring group, queue, paging group or an outside "
        "number (dialled with the transferor's permissions). A target answered by ippbx "
        "itself needs the media engine (30001 without).",
        {"callid": req("any id of the call (callid, inboundid, outboundid)",
                       "1589940297.1207"),
         "transferor": req("the party that leaves: extension, leg id, or the outside "
                             "number of a trunk leg", "1001"),
         "transferto": req("target number", "1002")},
        errnos=_TRANSFER),
    "outbound/transfer_number": EndpointDoc(
        "Transfer an outbound call (Yeastar's): the outbound party goes to `number`",
        "`fromext` (else the other party of the call) leaves.",
        {"outboundid": req("the call's outbound id", "1589881535.982"),
         "number": req("target number", "1002"),
         "fromext": opt("the party that leaves")},
        {"callid": text("the call's id")},
        errnos=_TRANSFER),
    "inbound/transfer_number": EndpointDoc(
        "Transfer an inbound call (Yeastar's): the caller goes to `number`",
        "`fromext` (else the other party of the call) leaves.",
        {"inboundid": req("the call's inbound id", "1589881290.963"),
         "number": req("target number", "1002"),
         "fromext": opt("the party that leaves")},
        {"callid": text("the call's id")},
        errnos=_TRANSFER),
    "extension/dial_extension": EndpointDoc(
        "Click-to-call: ring `caller`, then connect it to `callee`",
        "`callee` is an extension or another local number (IVR, ring group, queue, "
        "paging group), never an outside one (10006).",
        {"caller": req("extension rung first (must be registered)", "1001"),
         "callee": req("extension or local number", "1002"),
         "autoanswer": opt(_YES_NO, enum=("yes", "no"))},
        {"callid": _CALL_ID},
        errnos=_DIAL),
    "extension/dial_outbound": EndpointDoc(
        "Ring extension `extid`, then dial the outside number `outto` from it",
        fields={"extid": req("extension (must be registered)", "1001"),
                "outto": req("number as dialled, route prefix included", "95551234"),
                "autoanswer": opt(_YES_NO, enum=("yes", "no"))},
        answer={"callid": _CALL_ID},
        errnos=_DIAL),
    "outbound/dial_outbound": EndpointDoc(
        "Callback: call the outside `caller`, then connect it to `outto`",
        "`outto` is another outside number or any local one.",
        {"caller": req("outside number, route prefix included", "95551234"),
         "outto": req("outside number (route prefix included) or local number", "1001"),
         "fromext": opt("extension whose outbound permissions apply (absent: those open "
                        "to all)")},
        {"callid": _CALL_ID},
        errnos=_DIAL),
    "extension/playprompt": EndpointDoc(
        "Call an extension and play prompts to it (needs the media engine)",
        fields={"extid": req("extension", "1001"),
                "prompt": req("prompt name(s), `+`-joined", "welcome"),
                "autoanswer": opt(_YES_NO, enum=("yes", "no"))},
        answer={"callid": _CALL_ID},
        errnos=(E.MISSING_PARAM, E.INTERNAL, E.PROMPT_NOT_FOUND, E.EXTENSION_NOT_FOUND)),
    "outbound/playprompt": EndpointDoc(
        "Call an outside number and play prompts to it (needs the media engine)",
        fields={"outto": req("number, route prefix included", "95551234"),
                "prompt": req("prompt name(s), `+`-joined", "welcome")},
        answer={"callid": _CALL_ID},
        errnos=(E.MISSING_PARAM, E.INTERNAL, E.PROMPT_NOT_FOUND, E.NO_OUTBOUND_PERMISSION,
                E.NUMBER_NOT_FOUND)),
    "extension/listen": _supervision(
        "Silent monitoring: `listener` hears both sides of `listenedext`'s call",
        "listener", "idle extension that listens", "listenedext",
        "Both sides on the conference mixer; without it the far party only."),
    "extension/whisper": _supervision(
        "Whisper: `whisperer` talks to `whisperedext` (hearing both sides); the other "
        "party does not hear it", "whisperer", "idle extension that coaches",
        "whisperedext"),
    "extension/barge": _supervision(
        "Barge in: `bargein` joins `bargedext`'s call, a three-way conversation",
        "bargein", "idle extension that joins", "bargedext"),
    "inbound/accept": EndpointDoc(
        "Let an inbound call held for a decision go on (Yeastar's Control Inbound Call)",
        "Only calls on a route with `control_inbound_call`; the call is not answered.",
        {"inboundid": req("the call's inbound id (from the Invite report)",
                          "1589881290.963")},
        errnos=(E.MISSING_PARAM, E.CALL_NOT_FOUND, E.INBOUND_TOO_LATE)),
    "inbound/refuse": EndpointDoc(
        "Refuse an inbound call held for a decision (603 Decline)",
        fields={"inboundid": req("the call's inbound id (from the Invite report)",
                                 "1589881290.963")},
        errnos=(E.MISSING_PARAM, E.CALL_NOT_FOUND, E.INBOUND_TOO_LATE)),
    "ivr/dial_extension": EndpointDoc(
        "Ring an extension; once it answers it is in the IVR's menu",
        fields={"ivrid": req("IVR number", "6000"),
                "extid": req("extension (must be registered)", "1001")},
        answer={"callid": _CALL_ID},
        errnos=(E.IVR_NOT_FOUND, *_DIAL)),
    "ivr/dial_outbound": EndpointDoc(
        "Call an outside number; once it answers it is in the IVR's menu",
        fields={"ivrid": req("IVR number", "6000"),
                "outto": req("number, route prefix included", "95551234"),
                "fromext": opt("extension whose outbound permissions apply")},
        answer={"callid": _CALL_ID},
        errnos=(E.IVR_NOT_FOUND, *_DIAL)),
    "ringgroup/dial_outbound": EndpointDoc(
        "Call an outside number; once it answers the ring group rings",
        fields={"ringgroupid": req("ring group number", "6300"),
                "outto": req("number, route prefix included", "95551234"),
                "fromext": opt("extension whose outbound permissions apply")},
        answer={"callid": _CALL_ID},
        errnos=(E.RINGGROUP_NOT_FOUND, *_DIAL)),
    "queue/dial_outbound": EndpointDoc(
        "Call an outside number; once it answers it waits in the queue",
        fields={"queueid": req("queue number", "6500"),
                "outto": req("number, route prefix included", "95551234"),
                "fromext": opt("extension whose outbound permissions apply")},
        answer={"callid": _CALL_ID},
        errnos=(E.QUEUE_NOT_FOUND, *_DIAL)),
    # -- CDR, recordings, voicemail ---------------------------------------------------------
    "cdr/get_random": EndpointDoc(
        "A one-time key (30 s) to download CDRs as CSV",
        "The key works once, for this token, from the session's addresses (login "
        "source, heartbeat `ipaddr`) and `allowedip`.",
        {"extid": req("`all`, one extension or a comma list", "all"),
         "starttime": req(f"range start, {_TIMES}", "2024-01-01 00:00:00"),
         "endtime": req(f"range end (included), {_TIMES}", "2024-12-31 23:59:59"),
         "allowedip": opt("one more address allowed to download")},
        {"extid": text("as given"),
         "starttime": text("as given (strptime's reading: `2024-1-1 0:0:0` is taken too)"),
         "endtime": text("as given"),
         "random": text("the key, for cdr/download", pattern=_HEX32)},
        errnos=(E.MISSING_PARAM, E.CDR_TIME_FORMAT, E.BAD_ALLOWED_IP)),
    "cdr/download": EndpointDoc(
        "The CDRs of a `cdr/get_random` key, as CSV (a plain link: GET)",
        "Fields repeated from the key's query must match it (20020 otherwise).",
        {"random": req("the key from cdr/get_random"),
         "extid": opt("as given to cdr/get_random"),
         "starttime": opt("as given to cdr/get_random"),
         "endtime": opt("as given to cdr/get_random")},
        errnos=(E.MISSING_PARAM, E.CDR_RANDOM_INVALID, E.BAD_ALLOWED_IP, E.CDR_NOT_FOUND),
        file=("text/csv", "a header row (callid, timestart, callfrom, callto, callduraction, "
                          "talkduraction, status, type, srctrunkname, desttrunkname, "
                          "hangupby), then one row per call, oldest first")),
    "recording/get_random": EndpointDoc(
        "A one-time key (30 s) to download a call recording",
        fields={"recording": req("file name (a NewCdr report's `recording`)"),
                "allowedip": opt("one more address allowed to download")},
        answer={"recording": text(), "random": text("the key, for recording/download",
                                                     pattern=_HEX32)},
        errnos=(E.MISSING_PARAM, E.RECORDING_NOT_FOUND, E.BAD_ALLOWED_IP)),
    "recording/download": EndpointDoc(
        "The recording of a `recording/get_random` key (a plain link: GET)",
        fields={"random": req("the key from recording/get_random"),
                "recording": opt("as given to recording/get_random")},
        errnos=(E.MISSING_PARAM, E.RECORDING_RANDOM_INVALID, E.BAD_ALLOWED_IP,
                E.RECORDING_NOT_FOUND),
        file=("audio/wav", "the recording")),
    "voicemail/query": EndpointDoc(
        "Voicemail messages, per extension that has some",
        "No message at all: the bare `Success`, without `voicemails`.",
        {"extid": opt("one extension, a comma list, or `all`", "1004")},
        {"voicemails": items(obj({
            "extid": text(),
            "voicemail": items(obj({
                "voicemailfile": text("file name, e.g. `msg0000.wav`"),
                "messagefrom": text("caller"),
                "voicemaildate": text(_TIMES, pattern=_TIME),
                "voicemaillength": text("seconds", pattern=_DIGITS),
            }), "oldest first"),
        }))},
        optional=("voicemails",),
        errnos=(E.MISSING_PARAM,)),
    "voicemail/delete": EndpointDoc(
        "Delete one message, or all of a mailbox",
        fields={"extid": req("extension", "1004"),
                "voicemailfile": req("file name, or `all`", "msg0000.wav")},
        errnos=(E.MISSING_PARAM, E.EXTENSION_NOT_FOUND, E.VOICEMAIL_NOT_FOUND)),
    "voicemail/get_random": EndpointDoc(
        "A one-time key (30 s) to download a voicemail message",
        fields={"extid": req("extension", "1004"),
                "voicemailfile": req("file name", "msg0000.wav"),
                "allowedip": opt("one more address allowed to download")},
        answer={"extid": text(), "voicemailfile": text(),
                "random": text("the key, for voicemail/download", pattern=_HEX32)},
        errnos=(E.MISSING_PARAM, E.EXTENSION_NOT_FOUND, E.VOICEMAIL_NOT_FOUND,
                E.BAD_ALLOWED_IP)),
    "voicemail/download": EndpointDoc(
        "The message of a `voicemail/get_random` key (a plain link: GET)",
        "The vendor's `voicemailstatus` is ignored. The message stays new.",
        {"random": req("the key from voicemail/get_random"),
         "extid": opt("as given to voicemail/get_random"),
         "voicemailfile": opt("as given to voicemail/get_random")},
        errnos=(E.MISSING_PARAM, E.VOICEMAIL_RANDOM_INVALID, E.BAD_ALLOWED_IP,
                E.VOICEMAIL_NOT_FOUND),
        file=("audio/wav", "the message")),
    # -- system and configuration queries ---------------------------------------------------
    "deviceinfo/query": EndpointDoc(
        "The PBX: name, serial number, versions, clock, boot time, extensions in use",
        answer={"deviceinfo": obj({
            "devicename": text(),
            "sn": text(),
            "hardwarever": text(),
            "firmwarever": text(),
            "systemtime": text(_TIMES, pattern=_TIME),
            "uptime": text("boot time, `YYYY-Mon-DD-HH:MM:SS`",
                           pattern=r"^[0-9]{4}-[A-Z][a-z]{2}-[0-9]{2}-[0-9]{2}:[0-9]{2}:"
                                   r"[0-9]{2}$"),
            "extensionstatus": text("`<busy>/<configured>`", pattern=r"^[0-9]+/[0-9]+$"),
        })}),
    "extensionlist/query": EndpointDoc(
        "Every extension: number, status, type, name",
        answer=lambda d: {"extlist": items(obj({
            "extnumber": text(),
            "status": text(enum=_EXT_STATUS),
            "type": _extension_type(d),
            "username": text("the configured name, else the number"),
            "agentid": text(const=""),
        }))}),
    "extension/query": EndpointDoc(
        "Extension settings, and the call of each extension in one",
        "Secrets (`registerpassword`, `vmsecret`) are shown to admin API users only. "
        "`inbound`, `outbound`, `ext` describe the extension's call and are absent when "
        "it has none. Unknown numbers are skipped.",
        {"extid": opt("one extension, a comma list, or `all` (absent: all)", "1001")},
        lambda d: {"extinfos": items(_extension_info(d))},
        errnos=(E.MISSING_PARAM,)),
    "trunklist/query": EndpointDoc(
        "Every trunk: name, status, type",
        "The list's key is `trunkname` on v0.0.1 (OpenVox's example) and `trunklist` on "
        "v1.1.0.",
        answer=lambda d: {d.trunk_list_key: items(obj({
            "trunkname": text(),
            "status": text("peer trunks: `Unknown`",
                           enum=("Registered", "Registering", "Failure", "Unknown")),
            "type": text(const="SIP"),
        }))}),
    "siptrunk/query": EndpointDoc(
        "SIP trunk settings",
        fields={"trunkname": req("one name, a comma list, or `all`", "all")},
        answer={"trunks": items(_TRUNK)},
        errnos=(E.MISSING_PARAM,)),
    "outroute/query": EndpointDoc(
        "Outbound routes",
        fields={"name": req("one name, a comma list, or `all`", "all")},
        answer={"outroutes": items(obj({
            "id": text("the route's id (for outroute/update)", pattern=_DIGITS),
            "name": text(), "prepend": text(), "prefix": text(), "matchpattern": text(),
            "callerid": text("the extensions that may use the route (\"\": all)"),
            "trunks": text("comma list"),
        }))},
        errnos=(E.MISSING_PARAM,)),
    "inroute/query": EndpointDoc(
        "Inbound routes",
        fields={"name": req("one name, a comma list, or `all`", "all")},
        answer={"inroutes": items(obj({
            "id": text(pattern=_DIGITS), "name": text(), "did": text(),
            "caller_id": text(),
            "desttype": text(enum=("extension", "voicemail", "ivr", "ringgroup", "queue",
                                   "number", "hangup")),
            "dest": text("\"\" for hangup"),
        }))},
        errnos=(E.MISSING_PARAM,)),
    "ivr/query": EndpointDoc(
        "IVRs (by name or number)",
        "Names of which none is an IVR: 10012.",
        {"name": opt("IVR name or number, a comma list, or `all` (absent: all)", "main")},
        {"ivr": items(obj({
            "ivrid": text("the IVR's number"),
            "promptrepeat": text(pattern=_DIGITS),
            "responsetimeout": text("seconds", pattern=_DIGITS),
            "ivrname": text(), "prompt": text(),
        }))},
        errnos=(E.MISSING_PARAM, E.IVR_NOT_FOUND)),
    "queue/query": EndpointDoc(
        "Queue settings",
        fields={"queueid": opt("one number, a comma list, or `all` (absent: all)", "6500")},
        answer={"queues": items(_QUEUE)},
        errnos=(E.MISSING_PARAM, E.QUEUE_NOT_FOUND)),
    "queuestatus/query": EndpointDoc(
        "A queue's agents and waiting callers, live",
        "`agentstatus`: 1 idle, 2 in a call, 5 unregistered, 6 ringing, 7 in a call and "
        "ringing, 8 on hold, 9 paused, 10 wrapping up. `callers` is ippbx's addition.",
        {"queueid": req("queue number", "6500")},
        {"queue": obj({
            "queuenumber": text(),
            "queuestatus": obj({
                "members": items(obj({
                    "agent": text("extension"),
                    "agentstatus": text(enum=[str(n) for n in range(11)]),
                })),
                "callercount": number("callers waiting (a JSON number)"),
                "callers": items(obj({
                    "callid": text(), "from": text(),
                    "waittime": text("seconds", pattern=_DIGITS),
                    "position": text(pattern=_DIGITS),
                })),
            }),
        })},
        errnos=(E.MISSING_PARAM, E.QUEUE_NOT_FOUND)),
    "queue/add_dynamicagent": EndpointDoc(
        "Sign a dynamic agent in",
        fields={"queueid": req("queue number", "6500"),
                "extid": req("extension allowed to sign in", "1004"),
                "password": opt("the queue's password (checked when given)", "4321")},
        errnos=_AGENT),
    "queue/del_dynamicagent": EndpointDoc(
        "Sign a dynamic agent out",
        fields={"queueid": req("queue number", "6500"),
                "extid": req("dynamic agent", "1004"),
                "password": req("the queue's password", "4321")},
        errnos=_AGENT),
    "queue/pause_agent": EndpointDoc(
        "Pause an agent (no queue calls)",
        fields={"queueid": req("queue number", "6500"), "extid": req("agent", "1002")},
        errnos=_AGENT),
    "queue/unpause_agent": EndpointDoc(
        "Resume a paused agent",
        fields={"queueid": req("queue number", "6500"), "extid": req("agent", "1002")},
        errnos=_AGENT),
    "paginggroup/lists": EndpointDoc(
        "Every paging group: number, name",
        answer={"paginggrouplist": items(obj({"number": text(), "name": text()}))}),
    "paginggrouplist/lists": EndpointDoc(
        "The same as paginggroup/lists (the path of the vendor's example)",
        answer={"paginggrouplist": items(obj({"number": text(), "name": text()}))}),
    "paginggroup/query": EndpointDoc(
        "Paging groups",
        "Numbers of which none is a group: 10011.",
        {"number": req("one number, a comma list, or `all`", "all")},
        {"paginggroup": items(obj({
            "number": text(), "name": text(),
            "type": text("`intercom`: two-way", enum=("paging", "intercom")),
            "member": text("member extensions, a comma list"),
        }))},
        errnos=(E.MISSING_PARAM, E.NUMBER_NOT_FOUND)),
    # -- configuration changes (admin API users) --------------------------------------------
    "extension/add": EndpointDoc(
        "Add an extension",
        fields=_required({"number": opt("extension number"), **_EXTENSION_FIELDS}, "number",
                         examples={"number": "1010", "username": "Frank"}),
        errnos=_CONFIG_CHANGE),
    "extension/update": EndpointDoc(
        "Change an extension (fields not given keep their value)",
        fields=_required({"extid": opt("extension to change"),
                          "extnumber": opt("new number"), **_EXTENSION_FIELDS}, "extid",
                         examples={"extid": "1005", "username": "Erin B"}),
        errnos=(*_CONFIG_CHANGE, E.EXTENSION_NOT_FOUND)),
    "extension/delete": EndpointDoc(
        "Delete extensions",
        fields={"number": req("one number or a comma list (`all` is a number here)",
                              "1010")},
        errnos=(*_CONFIG_CHANGE, E.EXTENSION_NOT_FOUND)),
    "siptrunk/add": EndpointDoc(
        "Add a SIP trunk",
        fields=_required(_TRUNK_FIELDS, "trunkname", "trunktype", "host",
                         examples={"trunkname": "carrier-b", "trunktype": "peer",
                                   "host": "192.0.2.10"}),
        errnos=_CONFIG_CHANGE),
    "siptrunk/update": EndpointDoc(
        "Change a SIP trunk (fields not given keep their value)",
        fields=_required({"id": opt("the trunk's id from siptrunk/query"), **_TRUNK_FIELDS},
                         "id", examples={"id": "1", "port": "5080"}),
        errnos=_CONFIG_CHANGE),
    "siptrunk/delete": EndpointDoc(
        "Delete SIP trunks",
        fields={"trunkname": req("one name, a comma list, or `all`", "carrier-b")},
        errnos=_CONFIG_CHANGE),
    "outroute/add": EndpointDoc(
        "Add an outbound route",
        fields=_required(_OUTROUTE_FIELDS, "name", "matchpattern", "trunks",
                         examples={"name": "local", "prefix": "8", "matchpattern": "X.",
                                   "trunks": "carrier"}),
        errnos=_CONFIG_CHANGE),
    "outroute/update": EndpointDoc(
        "Change an outbound route (fields not given keep their value)",
        fields=_required({"id": opt("the route's id from outroute/query"),
                          **_OUTROUTE_FIELDS}, "id",
                         examples={"id": "1", "prepend": ""}),
        errnos=_CONFIG_CHANGE),
    "outroute/delete": EndpointDoc(
        "Delete outbound routes",
        fields={"name": req("one name, a comma list, or `all`", "local")},
        errnos=_CONFIG_CHANGE),
    "inroute/add": EndpointDoc(
        "Add an inbound route",
        fields=_required({"name": opt("route name"), **_INROUTE_FIELDS}, "name", "desttype",
                         examples={"name": "sales-did", "did": "5550101",
                                   "desttype": "queue", "dest": "6500"}),
        errnos=_CONFIG_CHANGE),
    "inroute/update": EndpointDoc(
        "Change an inbound route, chosen by name (fields not given keep their value)",
        fields=_required({"name": opt("the route to change (never renamed)"),
                          **_INROUTE_FIELDS}, "name",
                         examples={"name": "main-did", "desttype": "ivr", "dest": "6000"}),
        errnos=_CONFIG_CHANGE),
    "inroute/delete": EndpointDoc(
        "Delete inbound routes",
        fields={"name": req("one name, a comma list, or `all`", "sales-did")},
        errnos=_CONFIG_CHANGE),
    "ivr/update": EndpointDoc(
        "Change an IVR's name, prompt repeats or response time-out",
        fields={"ivrid": req("IVR number", "6000"),
                "ivrname": opt("1-31 characters, no space nor any of "
                               "! $ ( ) / # ; , [ ] \" = < > & ' ` ^ % @ { } | \\"),
                "promptrepeat": opt("times the prompt plays", "2"),
                "responsetimeout": opt("seconds waited for a key")},
        errnos=(E.UNKNOWN_REQUEST, E.MISSING_PARAM, E.IVR_NOT_FOUND, E.IVR_CONFIG_FAILED)),
    "queue/update": EndpointDoc(
        "Change a queue's settings (fields not given keep their value)",
        fields={"queueid": req("queue number", "6500"),
                "queuename": opt("name"),
                "password": opt("the PIN dynamic agents sign in with"),
                "ringstrategy": opt("how agents are rung", "Ring All",
                                    enum=("Ring All", "Least Recent", "Fewest Calls",
                                          "Random", "Rrmemory", "Linear")),
                "agents": opt("static agents, a comma list"),
                "dynamicagents": opt("extensions allowed to sign in, a comma list"),
                "agenttimeout": opt("seconds an agent rings"),
                "wrapuptime": opt("seconds of rest after a call"),
                "retry": opt("seconds before agents are rung again"),
                "maxwaittime": opt("longest wait in seconds"),
                "joinempty": opt("callers may join with no agent", enum=_ON_OFF),
                "leavewhenempty": opt("callers leave when no agent is left", enum=_ON_OFF),
                "announcepos": opt("announce the caller's position", enum=_ON_OFF),
                "announcefreq": opt("seconds between announcements; `0`: off"),
                "announceholdtime": opt("checked, nothing behind it", enum=_ON_OFF)},
        errnos=(E.UNKNOWN_REQUEST, E.MISSING_PARAM, E.QUEUE_NOT_FOUND,
                E.QUEUE_CONFIG_FAILED)),
    "paginggroup/add": EndpointDoc(
        "Add a paging group",
        fields={"number": req("group number", "6400"),
                "name": opt("group name", "floor"),
                "type": opt("`paging` one-way, `intercom` two-way", "paging",
                            enum=("paging", "intercom")),
                "member": req("member extensions, a comma list", "1001,1002")},
        errnos=_CONFIG_CHANGE),
    "paginggroup/update": EndpointDoc(
        "Change a paging group (fields not given keep their value)",
        fields={"number": req("group number", "6400"),
                "name": opt("group name"),
                "type": opt("`paging` one-way, `intercom` two-way", "intercom",
                            enum=("paging", "intercom")),
                "member": opt("member extensions, a comma list")},
        errnos=(*_CONFIG_CHANGE, E.NUMBER_NOT_FOUND)),
    "paginggroup/delete": EndpointDoc(
        "Delete paging groups",
        fields={"number": req("one number, a comma list, or `all`", "6400")},
        errnos=(*_CONFIG_CHANGE, E.NUMBER_NOT_FOUND)),
    # -- conferences ---------------------------------------------------------------------
    "conference/query": EndpointDoc(
        "Conference rooms' settings",
        "Numbers of which none is a room: 10011.",
        {"number": req("one room number, a comma list, or `all`", "all")},
        {"conferences": items(obj({
            "number": text(), "name": text(),
            "participantepassword": text("participant PIN (the vendor's spelling)"),
            "moderatorpassword": text("moderator PIN"),
            "waitformoderator": text(enum=("yes", "no")),
        }))},
        errnos=(E.MISSING_PARAM, E.NUMBER_NOT_FOUND)),
    "conference/query_in_session": EndpointDoc(
        "The rooms in session and who is in them",
        "Rooms with nobody in them are not listed; numbers of which none is a room: 10011.",
        {"number": req("one room number, a comma list, or `all`", "6600")},
        {"conference": items(obj({
            "conferencenumber": text(), "conferencename": text(),
            "member": repeated(obj({
                "number": text("the member's extension or number"),
                "channelid": text("`SIP/<number>-<leg id>`"),
                "memberstatus": text("`HOLD`: waiting for a moderator", enum=("Up", "HOLD")),
                "moderator": text(enum=("yes", "no")),
                "muted": text(enum=("yes", "no")),
                "callid": text("the member's call"),
            })),
        }))},
        errnos=(E.MISSING_PARAM, E.NUMBER_NOT_FOUND)),
    "conference/update": EndpointDoc(
        "Change a conference room (fields not given keep their value)",
        fields={"number": req("room number", "6600"),
                "name": opt("room name; none of & ' < > ` | $ ] \\ \""),
                "participantepassword": opt("participant PIN, digits; empty: none"),
                "moderatorpassword": opt("moderator PIN, digits; empty: none"),
                "waitformoderator": opt("participants wait for a moderator",
                                        enum=("yes", "no"))},
        errnos=(*_CONFIG_CHANGE, E.NUMBER_NOT_FOUND)),
    "conference/add_member": EndpointDoc(
        "Call numbers into a room (extensions, or outside numbers through the routes "
        "open to all extensions); each joins when it answers, without a PIN",
        fields={"number": req("room number", "6600"),
                "invitemember": req("one number or a comma list", "1003,95550005555")},
        answer={"callid": text("the new calls' ids, a comma list")},
        errnos=(E.MISSING_PARAM, E.NUMBER_NOT_FOUND, E.EXTENSION_NOT_FOUND,
                E.NO_OUTBOUND_PERMISSION, E.INTERNAL)),
    "conference/kick_member": EndpointDoc(
        "Hang up members of a room", fields=_MEMBERS, errnos=_MEMBER_ERRNOS),
    "conference/mute_member": EndpointDoc(
        "Mute members of a room (the others stop hearing them)", fields=_MEMBERS,
        errnos=_MEMBER_ERRNOS),
    "conference/unmute_member": EndpointDoc(
        "Unmute members of a room", fields=_MEMBERS, errnos=_MEMBER_ERRNOS),
}
"""Every endpoint's description, by name (a test checks it covers `ENDPOINTS`)."""
