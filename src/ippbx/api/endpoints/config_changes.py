"""Configuration changes: add / update / delete of extensions, SIP trunks, routes, and
the settings of IVRs, queues and paging groups.

`extension/add|update|delete`, `siptrunk/add|update|delete`, `outroute/add|update|delete`,
`inroute/add|update|delete`, `ivr/update`, `queue/update`, `paginggroup/add|update|delete`
(spec endpoints §1.3–§4.4, §5.2, §6.2, §8.3–§8.5), the same on both dialects. Each
handler turns the vendor's fields into ippbx's (`ippbx.config`) and hands the change to
`RunningConfig`, which validates the whole configuration, stores it and applies it live.

Rules (the vendors leave them open; these are ours, documented in docs/configuration.md):
- Only an `admin` API user may change anything (a `readonly` one: 10003, as if the
  endpoint did not exist for it); with `[store] config = "toml"` no one may (10017).
- `update` changes the fields given; the others keep their values.
- Errors: a missing key field 10004; an unknown extension 10006 (IVR 10012, queue 10013,
  paging group 10011); a value that is not valid, a duplicate number or name, an unknown
  trunk or route, or a change that would leave something pointing at nothing (a route
  naming a deleted trunk, a forward to a deleted extension): 10017 (for an IVR 10018, a
  queue 10019), the configuration unchanged.
- IVRs and queues are changed, not added or deleted (the vendor API has no such
  endpoints: the file, the CLI or `ippbx config import` do that). `queue/update`'s
  `dynamicagents` is the list of extensions allowed to sign in; `announcefreq` `0` turns
  the position announcement off.
- `extension/add` without `registerpassword` makes one (20 random characters; read it
  with `extension/query`).
- Forwarding: `Voicemail` → the extension's mailbox, `Extension` → that number (an IVR,
  ring group or queue number works too), `Mobile Number` → the extension's mobile with
  its prefix, `Custom Number` → prefix + number, dialled through the outbound routes.
- `outroute` `callerid`: a comma list of the extensions that may use the route ("": all).
- `inroute`: ippbx's extra `trunk` field names the trunk whose calls the route takes
  (absent: any trunk); `desttype` `disa` and `callback` are refused (10017).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ippbx.api.endpoints.config import required_names
from ippbx.api.endpoints.queues import STRATEGY_NAMES
from ippbx.api.errors import ApiError, Errno
from ippbx.api.request import ApiRequest, Endpoint
from ippbx.running_config import ChangeRefused, Refusal, RunningConfig, dump

_ON_OFF = {"on": True, "off": False, "yes": True, "no": False, "1": True, "0": False,
           "true": True, "false": False}
MONITOR_MODES = frozenset({"disabled", "disable", "extensive", "listen", "whisper",
                           "barge-in"})
# inroute desttype → ippbx destination kind ("" : no target, e.g. hangup)
_DEST_KINDS = {"extension": "extension", "voicemail": "voicemail", "ivr": "ivr",
               "ringgroup": "ringgroup", "queue": "queue", "conference": "conference",
               "hangup": ""}
_FORWARD_TARGETS = ("Voicemail", "Extension", "Mobile Number", "Custom Number")


def invalid(detail: str) -> ApiError:
    return ApiError(Errno.CONFIG_FAILED, detail)


def running(req: ApiRequest) -> RunningConfig:
    """The running configuration, if this request may change it (else ApiError)."""
    ctx = req.ctx
    if ctx.running is None:
        raise ApiError(Errno.UNKNOWN_REQUEST, "no configuration store behind this API")
    if not ctx.sessions.is_admin(req.session):
        raise ApiError(Errno.UNKNOWN_REQUEST, "configuration changes need an admin user")
    return ctx.running


def apply(change: Callable[[], object], *, not_found: Errno = Errno.CONFIG_FAILED,
          failed: Errno = Errno.CONFIG_FAILED) -> Mapping[str, Any]:
    """Make the change (a call on the `RunningConfig` the handler got from `running`);
    a refusal is answered with `not_found` (no such object) or `failed`."""
    try:
        change()
    except ChangeRefused as exc:
        if exc.reason is Refusal.NOT_FOUND:
            raise ApiError(not_found, exc.detail) from None
        raise ApiError(failed, exc.detail) from None
    return {}


def flag(req: ApiRequest, name: str) -> bool | None:
    value = req.text(name)
    if value is None or value == "":
        return None
    try:
        return _ON_OFF[value.strip().lower()]
    except KeyError:
        raise invalid(f"{name} must be on or off, not {value!r}") from None


def integer(req: ApiRequest, name: str) -> int | None:
    value = req.text(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise invalid(f"{name} must be a number, not {value!r}") from None


def present(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


# -- extensions -------------------------------------------------------------------------------
def _forward(req: ApiRequest, key: str, ext: Mapping[str, Any],
             local_kind: Callable[[str], str]) -> str | None:
    """`{key}forward` + `{k}transferto|ext|prefix|num` as a destination (None: not given)."""
    k = key[0]
    on = flag(req, f"{key}forward")
    target = req.text(f"{k}transferto")
    if on is None and target is None:
        return None
    if on is False:
        return ""
    if not target:
        raise ApiError(Errno.MISSING_PARAM, f"{k}transferto is required with {key}forward on")
    if target not in _FORWARD_TARGETS:
        raise invalid(f"{k}transferto must be one of {', '.join(_FORWARD_TARGETS)}")
    if target == "Voicemail":
        return f"voicemail:{ext['number']}"
    if target == "Extension":
        dest = req.require(f"{k}transferext")
        return f"{local_kind(dest)}:{dest}"
    if target == "Mobile Number":
        mobile = ext.get("mobile", "")
        if not mobile:
            raise invalid(f"{k}transferto Mobile Number: the extension has no mobile")
        return f"number:{ext.get('mobile_prefix', '')}{mobile}"
    return f"number:{req.text(f'{k}transferprefix') or ''}{req.require(f'{k}transfernum')}"


def _max_duration(req: ApiRequest) -> int | None:
    value = req.text("maxduration")
    if value is None or value == "":
        return None
    if value in ("Follow System", "Unlimited"):  # (0: `[calls] max_duration` applies)
        return 0
    return integer(req, "maxduration")


def extension_fields(req: ApiRequest, current: Mapping[str, Any]) -> dict[str, Any]:
    """The extension fields this request sets, over `current` (the stored fields, or
    {} for a new one), as a whole object."""
    mode = req.text("monitormode")
    if mode and mode.lower() not in MONITOR_MODES:
        raise invalid(f"monitormode {mode!r} is not a monitoring mode")
    flag(req, "allowbeingmonitored")  # (validated; nothing behind it yet)
    fields = {**current, **present({
        "name": req.text("username"),
        "callerid": req.text("callerid"),
        "password": req.text("registerpassword") or None,
        "max_contacts": integer(req, "maxregistrations"),
        "email": req.text("email"),
        "mobile": req.text("mobile"),
        "mobile_prefix": req.text("mobileprefix"),
        "voicemail": flag(req, "hasvoicemail"),
        "vm_pin": req.text("vmsecret"),
        "ring_mobile": flag(req, "ringsimultaneous"),
        "ring_timeout": integer(req, "ringtimeout"),
        "max_duration": _max_duration(req),
        "dnd": flag(req, "dnd"),
    })}
    if flag(req, "enablemobile") is False:
        fields["mobile"], fields["ring_mobile"] = "", False
    to_email = flag(req, "enablevmtoemail")
    if to_email is not None:
        fields["vm_email"] = fields.get("email", "") if to_email else ""

    def local_kind(target: str) -> str:
        cfg = req.ctx.config  # (the configuration in force)
        for kind, items in (("ivr", cfg.ivrs), ("ringgroup", cfg.ring_groups),
                            ("queue", cfg.queues)):
            if any(item.number == target for item in items):
                return kind
        return "extension"

    for key, name in (("noanswer", "forward_noanswer"), ("busy", "forward_busy")):
        destination = _forward(req, key, fields, local_kind)
        if destination is not None:
            fields[name] = destination
    return fields


FieldsOf = Callable[[ApiRequest, Mapping[str, Any]], dict[str, Any]]


def update(req: ApiRequest, config: RunningConfig, kind: str, key: str | None,
           fields_of: FieldsOf, *, not_found: Errno = Errno.CONFIG_FAILED,
           failed: Errno = Errno.CONFIG_FAILED) -> Mapping[str, Any]:
    """`…/update` of the object of `kind` named `key` (None: none found): the fields the
    request sets (`fields_of`, over the stored ones; a value it refuses is `failed`)."""
    item = config.find(kind, key) if key is not None else None
    if item is None:
        raise ApiError(not_found, f"no {kind} object {key!r}")
    try:
        fields = fields_of(req, dump(kind, item))
    except ApiError as exc:
        if exc.errno is not Errno.CONFIG_FAILED:
            raise
        raise ApiError(failed, exc.detail) from None
    assert key is not None
    return apply(lambda: config.update(kind, key, fields), not_found=not_found, failed=failed)


def update_by_key(req: ApiRequest, kind: str, field: str, fields_of: FieldsOf, *,
                  not_found: Errno = Errno.CONFIG_FAILED,
                  failed: Errno = Errno.CONFIG_FAILED) -> Mapping[str, Any]:
    """`…/update` of the object whose key (number or name) the body's `field` gives."""
    config = running(req)
    return update(req, config, kind, req.require(field), fields_of, not_found=not_found,
                  failed=failed)


def update_by_id(req: ApiRequest, kind: str, fields_of: FieldsOf) -> Mapping[str, Any]:
    """`…/update` of the object of `kind` whose `id` (from its query) the body gives."""
    config = running(req)
    raw = req.require("id")
    key = config.key_of(kind, int(raw)) if raw.strip().isdigit() else None
    return update(req, config, kind, key, fields_of)


def delete(req: ApiRequest, kind: str, field: str, *, allow_all: bool = True,
           not_found: Errno = Errno.CONFIG_FAILED) -> Mapping[str, Any]:
    """`…/delete` of the objects of `kind` the body's `field` names (a comma list; `all`
    where `allow_all`, else it is taken as a name)."""
    config = running(req)  # (a readonly user: 10003 before any check of the body)
    chosen = required_names(req, field)
    if chosen is None and not allow_all:
        chosen = [req.require(field).strip()]
    return apply(lambda: config.delete(kind, chosen), not_found=not_found)


def add(req: ApiRequest, kind: str, fields_of: FieldsOf, required: Sequence[str] = (), *,
        key: str = "") -> Mapping[str, Any]:
    """`…/add` of an object of `kind`: the body's `key` field (its number or name, seeding
    the fields under the same name), then its `required` fields, must be given (10004)."""
    config = running(req)
    seed = {key: req.require(key)} if key else {}
    for field in required:
        req.require(field)
    fields = fields_of(req, seed)
    return apply(lambda: config.add(kind, fields))


def _new_extension_fields(req: ApiRequest, current: Mapping[str, Any]) -> dict[str, Any]:
    fields = extension_fields(req, current)
    fields.setdefault("password", secrets.token_urlsafe(15))  # (the vendor's: optional)
    return fields


def extension_add(req: ApiRequest) -> Mapping[str, Any]:
    return add(req, "extensions", _new_extension_fields, key="number")


def _renumbered_extension_fields(req: ApiRequest, current: Mapping[str, Any]) -> dict[str, Any]:
    fields = extension_fields(req, current)
    if new_number := req.text("extnumber"):
        fields["number"] = new_number
    return fields


def extension_update(req: ApiRequest) -> Mapping[str, Any]:
    return update_by_key(req, "extensions", "extid", _renumbered_extension_fields,
                         not_found=Errno.EXTENSION_NOT_FOUND)


def extension_delete(req: ApiRequest) -> Mapping[str, Any]:
    return delete(req, "extensions", "number", allow_all=False,
                  not_found=Errno.EXTENSION_NOT_FOUND)


# -- trunks -----------------------------------------------------------------------------------
def trunk_fields(req: ApiRequest, current: Mapping[str, Any]) -> dict[str, Any]:
    trunk_type = req.text("trunktype")
    if trunk_type == "account":
        raise invalid("account trunks (a device registering to ippbx) are not supported: "
                      "make it an extension")
    if trunk_type not in (None, "", "peer", "register"):
        raise invalid(f"trunktype must be register or peer, not {trunk_type!r}")
    username = req.text("username") or req.text("authname")
    return {**current, **present({
        "name": req.text("trunkname") or None,
        "type": trunk_type or None,
        "host": req.text("host") or None,
        "port": integer(req, "port"),
        "username": username,
        "from_user": req.text("fromuser"),
        "password": req.text("password"),
    })}


def siptrunk_add(req: ApiRequest) -> Mapping[str, Any]:
    return add(req, "trunks", trunk_fields, ("trunkname", "trunktype", "host"))


def siptrunk_update(req: ApiRequest) -> Mapping[str, Any]:
    return update_by_id(req, "trunks", trunk_fields)


def siptrunk_delete(req: ApiRequest) -> Mapping[str, Any]:
    return delete(req, "trunks", "trunkname")


# -- outbound routes --------------------------------------------------------------------------
def _comma_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def outroute_fields(req: ApiRequest, current: Mapping[str, Any]) -> dict[str, Any]:
    return {**current, **present({
        "name": req.text("name") or None,
        "prefix": req.text("prefix"),
        "match": req.text("matchpattern") or None,
        "prepend": req.text("prepend"),
        "extensions": _comma_list(req.text("callerid")),
        "trunks": _comma_list(req.text("trunks")) or None,
    })}


def outroute_add(req: ApiRequest) -> Mapping[str, Any]:
    return add(req, "outbound_routes", outroute_fields, ("name", "matchpattern", "trunks"))


def outroute_update(req: ApiRequest) -> Mapping[str, Any]:
    return update_by_id(req, "outbound_routes", outroute_fields)


def outroute_delete(req: ApiRequest) -> Mapping[str, Any]:
    return delete(req, "outbound_routes", "name")


# -- inbound routes ---------------------------------------------------------------------------
def inroute_fields(req: ApiRequest, current: Mapping[str, Any]) -> dict[str, Any]:
    fields = {**current, **present({
        "did": req.text("did"),
        "callerid": req.text("caller_id"),
        "trunk": req.text("trunk"),
    })}
    desttype = req.text("desttype")
    if desttype:
        if desttype not in _DEST_KINDS:
            raise invalid(f"desttype {desttype!r} is not supported")
        kind = _DEST_KINDS[desttype]
        fields["destination"] = f"{kind}:{req.require('dest')}" if kind else "hangup"
    return fields


def inroute_add(req: ApiRequest) -> Mapping[str, Any]:
    return add(req, "inbound_routes", inroute_fields, ("desttype",), key="name")


def inroute_update(req: ApiRequest) -> Mapping[str, Any]:
    # (no id: a route is chosen by name, never renamed)
    return update_by_key(req, "inbound_routes", "name", inroute_fields)


def inroute_delete(req: ApiRequest) -> Mapping[str, Any]:
    return delete(req, "inbound_routes", "name")


# -- IVRs, queues, paging groups -------------------------------------------------------------
_IVR_NAME = re.compile(r"[^!$()/#;,\[\]\"=<>&'`^%@{}|\\\s]{1,31}")
# queue/query's `ringstrategy` words → ippbx's strategies
STRATEGIES = {word.lower(): strategy for strategy, word in STRATEGY_NAMES.items()}


def _ivr_fields(req: ApiRequest, current: Mapping[str, Any]) -> dict[str, Any]:
    name = req.text("ivrname")
    if name is not None and not _IVR_NAME.fullmatch(name):
        raise invalid(f"ivrname {name!r}: 1-31 characters, no space nor any of "
                      "! $ ( ) / # ; , [ ] \" = < > & ' ` ^ % @ { } | \\")
    return {**current, **present({"name": name, "repeat": integer(req, "promptrepeat"),
                                  "timeout": integer(req, "responsetimeout")})}


def ivr_update(req: ApiRequest) -> Mapping[str, Any]:
    return update_by_key(req, "ivrs", "ivrid", _ivr_fields, not_found=Errno.IVR_NOT_FOUND,
                         failed=Errno.IVR_CONFIG_FAILED)


def _queue_fields(req: ApiRequest, current: Mapping[str, Any]) -> dict[str, Any]:
    strategy = req.text("ringstrategy")
    if strategy and strategy.strip().lower() not in STRATEGIES:
        raise invalid(f"ringstrategy {strategy!r} is not one of Ring All, Least Recent, "
                      "Fewest Calls, Random, Rrmemory, Linear")
    flag(req, "announceholdtime")  # (validated; ippbx announces no hold time)
    frequency = integer(req, "announcefreq")
    return {**current, **present({
        "name": req.text("queuename"),
        "password": req.text("password"),
        "strategy": STRATEGIES[strategy.strip().lower()] if strategy else None,
        "agents": _comma_list(req.text("agents")),
        "dynamic_agents": _comma_list(req.text("dynamicagents")),
        "ring_seconds": integer(req, "agenttimeout"),
        "wrapup_seconds": integer(req, "wrapuptime"),
        "retry_seconds": integer(req, "retry"),
        "max_wait": integer(req, "maxwaittime"),
        "join_empty": flag(req, "joinempty"),
        "leave_when_empty": flag(req, "leavewhenempty"),
        "announce_position": flag(req, "announcepos"),
        "announce_seconds": frequency or None,  # (0: the queue/query word for "off")
    })} | ({"announce_position": False} if frequency == 0 else {})


def queue_update(req: ApiRequest) -> Mapping[str, Any]:
    return update_by_key(req, "queues", "queueid", _queue_fields,
                         not_found=Errno.QUEUE_NOT_FOUND, failed=Errno.QUEUE_CONFIG_FAILED)


def _paging_fields(req: ApiRequest, current: Mapping[str, Any]) -> dict[str, Any]:
    kind = req.text("type")
    if kind not in (None, "", "paging", "intercom"):
        raise invalid(f"type must be paging or intercom, not {kind!r}")
    return {**current, **present({
        "name": req.text("name"),
        "duplex": (kind == "intercom") if kind else None,
        "members": _comma_list(req.text("member")),
    })}


def paginggroup_add(req: ApiRequest) -> Mapping[str, Any]:
    return add(req, "paging_groups", _paging_fields, ("member",), key="number")


def paginggroup_update(req: ApiRequest) -> Mapping[str, Any]:
    return update_by_key(req, "paging_groups", "number", _paging_fields,
                         not_found=Errno.NUMBER_NOT_FOUND)


def paginggroup_delete(req: ApiRequest) -> Mapping[str, Any]:
    return delete(req, "paging_groups", "number", not_found=Errno.NUMBER_NOT_FOUND)


ENDPOINTS = [
    Endpoint("extension/add", extension_add, body_required=True),
    Endpoint("extension/update", extension_update, body_required=True),
    Endpoint("extension/delete", extension_delete, body_required=True),
    Endpoint("siptrunk/add", siptrunk_add, body_required=True),
    Endpoint("siptrunk/update", siptrunk_update, body_required=True),
    Endpoint("siptrunk/delete", siptrunk_delete, body_required=True),
    Endpoint("outroute/add", outroute_add, body_required=True),
    Endpoint("outroute/update", outroute_update, body_required=True),
    Endpoint("outroute/delete", outroute_delete, body_required=True),
    Endpoint("inroute/add", inroute_add, body_required=True),
    Endpoint("inroute/update", inroute_update, body_required=True),
    Endpoint("inroute/delete", inroute_delete, body_required=True),
    Endpoint("ivr/update", ivr_update, body_required=True),
    Endpoint("queue/update", queue_update, body_required=True),
    Endpoint("paginggroup/add", paginggroup_add, body_required=True),
    Endpoint("paginggroup/update", paginggroup_update, body_required=True),
    Endpoint("paginggroup/delete", paginggroup_delete, body_required=True),
]
