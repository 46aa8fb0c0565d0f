"""Configuration queries: extensions, trunks and routes from the TOML config, plus live status.

`extensionlist/query`, `extension/query`, `trunklist/query`, `siptrunk/query`,
`outroute/query`, `inroute/query` (spec §4.2–4.7). Every list is an `ItemList`, so XML
shows it as `<extlist><item id="0">…</item>…</extlist>`. Live state (extension and trunk
status, an extension's current call) comes from `ctx.pbx`, a read-only `PbxView`.

Filters, the same rule everywhere (like `outbound/query`): one value, a comma list or
`"all"`; listed entries come back in request order, whitespace trimmed, duplicates and
unknown names dropped, and no match is a success with an empty list (never 10006).
`extension/query`'s `extid` is optional (absent or empty: all); `siptrunk/query`'s
`trunkname` and the routes' `name` are required (missing or empty: 10004).

Ids of trunks and routes are the store's (they stay while the object lives; see
`ippbx.running_config`), else their 1-based position in the config file. Passwords
(`registerpassword`, `vmsecret`, a trunk's `password`) are shown to admin API users only.

`extension/query` shows an extension's features as the config sets them (read through
`effective_settings`): voicemail, its PIN and e-mail; forwarding on no answer and on busy
(`Voicemail`, `Extension`, `Custom Number`, or `Mobile Number` when the number is the
extension's mobile with its prefix; the number as dialled, so the prefix field stays
empty); the mobile number and whether it rings too; DND; the ring timeout (else `[sip]
no_answer_seconds`) and the longest call (else `[calls] max_duration`; `Unlimited` when
neither sets one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from ippbx.api.codec import ItemList
from ippbx.api.endpoints.calls import parse_ids
from ippbx.api.errors import ApiError, Errno
from ippbx.api.request import ApiRequest, Endpoint, PbxView
from ippbx.config import Config, Extension, InboundRoute, OutboundRoute, Trunk
from ippbx.pbx.calls import Call, LegKind
from ippbx.pbx.extension_state import ExtState
from ippbx.pbx.status import PbxStatus
from ippbx.running_config import KEYS

T = TypeVar("T")

TRUNK_TYPE = "SIP"  # trunklist/query `type`: every ippbx trunk is SIP
TRUNK_TECH = "pjsip"  # siptrunk/query `tech`, as OpenVox shows it

UNLIMITED = "Unlimited"  # maxduration when no limit applies (the vendor's own word)
# forwarding destination kind → the vendor's `ntransferto`/`btransferto`. IVRs, ring
# groups and queues share the extensions' number space, so dialling them is "Extension".
_FORWARD_KINDS = {"voicemail": "Voicemail", "extension": "Extension", "ivr": "Extension",
                  "ringgroup": "Extension", "queue": "Extension", "number": "Custom Number"}
MOBILE_NUMBER = "Mobile Number"


def status_word(state: ExtState) -> str:
    """An extension's state as the queries show it (the vendors' `Unavailable` for an
    extension that is neither registered nor on a call)."""
    return "Unavailable" if state is ExtState.UNREGISTERED else state.value


def view(req: ApiRequest) -> PbxView:
    """The live PBX state; without a PBX behind the API, what the call registry knows."""
    return req.ctx.pbx if req.ctx.pbx is not None else PbxStatus(req.ctx.registry)


def required_names(req: ApiRequest, name: str) -> list[str] | None:
    """A required name filter: the names asked for, or None for `"all"` (10004 if empty)."""
    parts = [part.strip() for part in req.require(name).split(",") if part.strip()]
    if not parts:
        raise ApiError(Errno.MISSING_PARAM, f"{name} has no name in it")
    return parse_ids(",".join(parts))


def select(req: ApiRequest, kind: str, names: list[str] | None) -> list[tuple[int, Any]]:
    """(id, item) of the configuration's `kind` (e.g. "trunks") for all items, or for the
    names in request order. Ids are the store's (`RunningConfig.ids`), else 1-based
    positions."""
    items = getattr(req.ctx.config, kind)
    running = req.ctx.running
    ids = running.ids[kind] if running is not None else range(1, len(items) + 1)
    numbered = list(zip(ids, items, strict=True))
    if names is None:
        return numbered
    key = KEYS[kind]
    by_name = {getattr(item, key): (i, item) for i, item in numbered}
    return [by_name[n] for n in names if n in by_name]


# -- extensions -------------------------------------------------------------------------------
def username(ext: Extension) -> str:
    """The vendor's `username` is the display name (Yeastar: "Caller ID name")."""
    return ext.name or ext.number


def live_call_fields(call: Call, number: str) -> dict[str, Any]:
    """`inbound{…}`, `outbound{…}` and `ext{extid}` of extension `number`'s call (§3.3)."""
    fields: dict[str, Any] = {}
    if (leg := call.inbound_leg) is not None:
        fields["inbound"] = {"inboundid": leg.id, "from": leg.from_number,
                             "to": leg.to_number, "trunk": leg.trunk or ""}
    if (leg := call.outbound_leg) is not None:
        fields["outbound"] = {"outboundid": leg.id, "from": leg.from_number,
                              "to": leg.to_number, "trunk": leg.trunk or ""}
    for leg in call.legs():
        if leg.kind is LegKind.EXTENSION and leg.extension and leg.extension != number:
            fields["ext"] = {"extid": leg.extension}
            break
    return fields


def extensionlist_query(req: ApiRequest) -> Mapping[str, Any]:
    pbx = view(req)
    ext_type = req.dialect.extension_type
    return {"extlist": ItemList(
        {"extnumber": ext.number, "status": status_word(pbx.extension_status(ext.number)),
         "type": ext_type, "username": username(ext), "agentid": ""}
        for ext in req.ctx.config.extensions
    )}


def effective_settings(ext: Extension, req: ApiRequest) -> Extension:
    """The settings the extension works with now: the config file's, with do-not-disturb
    and forward-always as the phone set them (feature codes)."""
    control = req.ctx.control
    settings = control.b2bua.settings if control is not None else None
    if settings is None:
        return ext
    return ext.model_copy(update={"dnd": settings.dnd(ext.number),
                                  "forward_always": settings.forward_always(ext.number)})


def on_off(flag: bool) -> str:
    return "on" if flag else "off"


def forward_fields(destination: str, ext: Extension, key: str) -> dict[str, str]:
    """A forwarding destination as `{key}forward` on/off and `{k}transferto|ext|prefix|num`
    (`k` its first letter); the number is as dialled, route prefix included."""
    kind, _, target = destination.partition(":")
    to = _FORWARD_KINDS.get(kind, "")
    number = target if kind == "number" else ""
    if number and ext.mobile and number == ext.mobile_prefix + ext.mobile:
        to = MOBILE_NUMBER
    k = key[0]
    return {f"{key}forward": on_off(bool(destination)), f"{k}transferto": to,
            f"{k}transferext": target if kind != "number" else "",
            f"{k}transferprefix": "", f"{k}transfernum": number}


def max_duration(ext: Extension, config: Config) -> str:
    """The extension's limit, else the system's (`[calls] max_duration`); none: Unlimited."""
    seconds = ext.max_duration or config.calls.max_duration
    return str(seconds) if seconds else UNLIMITED


def feature_fields(ext: Extension, config: Config) -> dict[str, Any]:
    """extension/query's fields from `loginpassword` to `dnd`, in the vendor's order. Web
    login, prompt language and monitoring, which ippbx has nothing behind, carry the
    vendor's defaults so that clients reading them keep working."""
    return {
        "loginpassword": "",
        "email": ext.email,
        "moblie": ext.mobile,  # sic: the vendor's spelling
        "language": "",
        "hasvoicemail": on_off(ext.voicemail),
        "vmsecret": ext.vm_pin,
        "enablevmtoemail": on_off(bool(ext.vm_email)),
        **forward_fields(ext.forward_noanswer, ext, "noanswer"),
        **forward_fields(ext.forward_busy, ext, "busy"),
        "enablemobile": on_off(bool(ext.mobile)),
        "ringsimultaneous": on_off(ext.ring_mobile),
        "mobileprefix": ext.mobile_prefix,
        "allowbeingmonitored": "off",
        "monitormode": "disable",
        "ringtimeout": ext.ring_timeout or config.sip.no_answer_seconds,
        "maxduration": max_duration(ext, config),
        "dnd": on_off(ext.dnd),
    }


def extension_query(req: ApiRequest) -> Mapping[str, Any]:
    pbx = view(req)
    config = req.ctx.config
    secrets = req.ctx.sessions.is_admin(req.session)
    infos = ItemList()
    for _, ext in select(req, "extensions", parse_ids(req.text("extid"))):
        info: dict[str, Any] = {
            "extnumber": ext.number,
            "username": username(ext),
            "type": req.dialect.extension_type,
            "status": status_word(pbx.extension_status(ext.number)),
            "callerid": ext.callerid or ext.number,
            # The SIP password, as the vendors show it, to admin users only
            "registerpassword": ext.password if secrets else "",
            "maxregistrations": ext.max_contacts,
            **feature_fields(effective_settings(ext, req), config),
        }
        if not secrets:
            info["vmsecret"] = ""
        call = pbx.extension_call(ext.number)
        if call is not None:
            info.update(live_call_fields(call, ext.number))
        infos.append(info)
    return {"extinfos": infos}


# -- trunks -----------------------------------------------------------------------------------
def trunklist_query(req: ApiRequest) -> Mapping[str, Any]:
    pbx = view(req)
    return {req.dialect.trunk_list_key: ItemList(
        {"trunkname": trunk.name, "status": pbx.trunk_status(trunk.name), "type": TRUNK_TYPE}
        for trunk in req.ctx.config.trunks
    )}


def siptrunk_view(index: int, trunk: Trunk, secrets: bool = True) -> dict[str, Any]:
    info: dict[str, Any] = {
        "id": index,
        "trunkname": trunk.name,
        "tech": TRUNK_TECH,
        "trunktype": trunk.type,
        "host": trunk.host,
        "port": trunk.port,
        "domain": trunk.host,
    }
    if trunk.type == "register":  # a peer trunk has no credentials keys at all (§1.3)
        info.update(username=trunk.username, authname=trunk.username,
                    fromuser=trunk.from_user, password=trunk.password if secrets else "")
    return info


def siptrunk_query(req: ApiRequest) -> Mapping[str, Any]:
    chosen = select(req, "trunks", required_names(req, "trunkname"))
    secrets = req.ctx.sessions.is_admin(req.session)
    return {"trunks": ItemList(siptrunk_view(i, t, secrets) for i, t in chosen)}


# -- routes -----------------------------------------------------------------------------------
def outroute_view(index: int, route: OutboundRoute) -> dict[str, Any]:
    # `callerid`: the extensions that may use the route, a comma list ("": all)
    return {"id": index, "name": route.name, "prepend": route.prepend, "prefix": route.prefix,
            "matchpattern": route.match, "callerid": ",".join(route.extensions),
            "trunks": ",".join(route.trunks)}


def inroute_view(index: int, route: InboundRoute) -> dict[str, Any]:
    desttype, _, dest = route.destination.partition(":")  # "extension:1001" | "hangup"
    return {"id": index, "name": route.name, "did": route.did, "caller_id": route.callerid,
            "desttype": desttype, "dest": dest}


def outroute_query(req: ApiRequest) -> Mapping[str, Any]:
    chosen = select(req, "outbound_routes", required_names(req, "name"))
    return {"outroutes": ItemList(outroute_view(i, r) for i, r in chosen)}


def inroute_query(req: ApiRequest) -> Mapping[str, Any]:
    chosen = select(req, "inbound_routes", required_names(req, "name"))
    return {"inroutes": ItemList(inroute_view(i, r) for i, r in chosen)}


ENDPOINTS = [
    Endpoint("extensionlist/query", extensionlist_query),
    Endpoint("extension/query", extension_query),
    Endpoint("trunklist/query", trunklist_query),
    Endpoint("siptrunk/query", siptrunk_query),
    Endpoint("outroute/query", outroute_query),
    Endpoint("inroute/query", inroute_query),
]
