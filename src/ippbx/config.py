"""Load and validate the TOML configuration into typed models.

A bad file is reported as one line naming the key and the problem (`ConfigError`), which
the command line turns into exit code 2. String values may reference the environment as
`${NAME}` so secrets need not live in the file.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ippbx.media.rtpengine import parse_ng_address
from ippbx.pbx.patterns import PatternError, compile_pattern


class ConfigError(Exception):
    """A configuration problem, worded as one line for the operator."""


_Number = Annotated[str, Field(pattern=r"^[0-9A-Za-z*#+_.-]{1,32}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


def _host_port(value: str, default_port: int) -> tuple[str, int]:
    """Split "host:port" (IPv6 in brackets); raise ValueError when malformed."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    else:
        host, port_text = value, ""
    port = int(port_text) if port_text else default_port
    if not host or not 0 <= port <= 65535:
        raise ValueError(f"bad listen address {value!r}")
    return host, port


def _existing_file(value: str) -> str:
    """A path that must name a file, or "" (not set)."""
    if value and not Path(value).is_file():
        raise ValueError(f"no such file {value!r}")
    return value


def _check_tls_listener(cert: str, key: str, address: tuple[str, int] | None,
                        listen: tuple[str, int], name: str) -> None:
    """A TLS listener beside a plain one: its cert/key pair whole, its own address."""
    if bool(cert) != bool(key):
        raise ValueError("tls_cert and tls_key go together (give both or neither)")
    if address is not None and address[1] != 0 and address == listen:
        raise ValueError(f"{name} is the same address as listen")


class PbxSection(_Model):
    sn: str = "ippbx00000001"
    name: str = "ippbx"
    timezone: str = "UTC"
    firmware: str = "0.1.0"


class SipSection(_Model):
    listen: str = "0.0.0.0:5060"
    domain: str = "ippbx.local"
    user_agent: str = "ippbx"
    min_expires: int = Field(60, ge=1)
    max_expires: int = Field(3600, ge=1)
    default_expires: int = Field(600, ge=1)
    # ban_failures / ban_seconds moved to [security]; still read here (Config moves them)
    no_answer_seconds: int = Field(60, ge=1)
    # every nat_keepalive seconds each phone registered over UDP gets a CRLF keep-alive
    # (RFC 5626 §4.4.1) at the address its REGISTER came from, so the NAT in front of it
    # keeps the mapping that lets calls reach it (0: off)
    nat_keepalive: float = Field(25.0, ge=0)
    # SIP over TCP: connections capped per address and in all (below the descriptor
    # limit); closed after tcp_idle_seconds without a SIP message, which CRLF
    # keep-alives restart only tcp_max_keepalives times in a row (sip/transport.py)
    tcp_max_per_ip: int = Field(64, ge=1)
    tcp_max_connections: int = Field(2000, ge=1)
    tcp_idle_seconds: float = Field(300.0, gt=0)
    tcp_max_keepalives: int = Field(240, ge=0)
    # RFC 3261 §18.1.1: a new request for a UDP destination larger than this many bytes
    # goes over TCP to the same host and port, over UDP if that connect fails (0: never;
    # sip/oversize.py). At most a UDP datagram's payload.
    udp_max_request: int = Field(1300, ge=0, le=65507)
    # SIP over TLS ("" = off; same limits as TCP). Without tls_cert/tls_key a self-signed
    # certificate is made beside the store (ippbx-sip.crt). tls_verify / tls_ca: how the
    # certificates of peers we connect to (TLS trunks) are checked.
    tls_listen: str = ""
    # overload control (sip/overload.py): when the event loop runs later than
    # overload_lag_ms, or more than overload_backlog_kib wait in the UDP receive buffer,
    # new INVITEs and REGISTERs are admitted at a falling rate, the others get 503
    overload_control: bool = True
    overload_lag_ms: float = Field(100.0, gt=0)
    overload_backlog_kib: int = Field(512, gt=0)
    tls_cert: str = ""
    tls_key: str = ""
    tls_verify: bool = True
    tls_ca: str = ""

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, v: str) -> str:
        _host_port(v, 5060)
        return v

    @field_validator("tls_listen")
    @classmethod
    def _check_tls_listen(cls, v: str) -> str:
        if v.strip():
            _host_port(v, 5061)
        return v

    @field_validator("tls_cert", "tls_key", "tls_ca")
    @classmethod
    def _check_pem_file(cls, v: str) -> str:
        return _existing_file(v)

    @model_validator(mode="after")
    def _check_tls(self) -> SipSection:
        _check_tls_listener(self.tls_cert, self.tls_key, self.tls_address,
                            self.listen_address, "tls_listen")
        return self

    @property
    def listen_address(self) -> tuple[str, int]:
        return _host_port(self.listen, 5060)

    @property
    def tls_address(self) -> tuple[str, int] | None:
        """The SIP over TLS (host, port), or None when TLS is off."""
        return _host_port(self.tls_listen, 5061) if self.tls_listen.strip() else None


class ApiUser(_Model):
    """One more API user: `admin` may change the configuration and read its secrets,
    `readonly` may not."""

    username: str = Field(min_length=1)
    password: str = Field(min_length=1)
    role: Literal["admin", "readonly"] = "readonly"


class ApiSection(_Model):
    """The HTTP API. `username`/`password` is the first user, an admin; `users` adds more
    (each with a role)."""

    listen: str = "127.0.0.1:9011"
    username: str = "api"
    password: str = Field(min_length=1)
    users: list[ApiUser] = []
    allowed_ips: list[str] = []
    token_ttl: int = Field(1800, ge=1)
    lockout_failures: int = Field(5, ge=1)
    lockout_seconds: int = Field(600, ge=0)
    # a request must arrive whole this soon; connections capped per address and in all
    request_timeout: float = Field(10.0, gt=0)
    max_connections_per_ip: int = Field(128, ge=1)
    max_connections: int = Field(1000, ge=1)
    # HTTPS beside plain HTTP ("" = off); without tls_cert/tls_key a self-signed
    # certificate is made beside the store (ippbx.api.tls).
    https_listen: str = ""
    tls_cert: str = ""
    tls_key: str = ""

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, v: str) -> str:
        _host_port(v, 9011)
        return v

    @field_validator("https_listen")
    @classmethod
    def _check_https_listen(cls, v: str) -> str:
        if v.strip():
            _host_port(v, 8088)
        return v

    @field_validator("tls_cert", "tls_key")
    @classmethod
    def _check_pem_file(cls, v: str) -> str:
        return _existing_file(v)

    @model_validator(mode="after")
    def _check_tls(self) -> ApiSection:
        _check_tls_listener(self.tls_cert, self.tls_key, self.https_address,
                            self.listen_address, "https_listen")
        return self

    @field_validator("allowed_ips")
    @classmethod
    def _check_ips(cls, v: list[str]) -> list[str]:
        for item in v:
            ipaddress.ip_network(item, strict=False)
        return v

    @model_validator(mode="after")
    def _check_users(self) -> ApiSection:
        names = [self.username, *(user.username for user in self.users)]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"API user {name!r} is listed twice")
        return self

    @property
    def all_users(self) -> list[ApiUser]:
        """Every API user, the first (`username`/`password`) an admin."""
        return [ApiUser(username=self.username, password=self.password, role="admin"),
                *self.users]

    @property
    def listen_address(self) -> tuple[str, int]:
        return _host_port(self.listen, 9011)

    @property
    def https_address(self) -> tuple[str, int] | None:
        """The HTTPS (host, port), or None when HTTPS is off."""
        return _host_port(self.https_listen, 8088) if self.https_listen.strip() else None


class CallsSection(_Model):
    """Limits on a call's life: session timers (RFC 4028) on both legs, so a call whose
    peer vanished ends within one interval (0 = off, else at least 90 s, the RFC's
    minimum), and the longest a call may last (0 = no limit). What a 3xx from the callee
    does: ippbx dials the number it names for the caller, through the caller's dial plan
    (`follow`), or passes it on to the caller (`relay`). How long an inbound call on a
    route with `control_inbound_call` waits for an application's inbound/accept or
    inbound/refuse before it is let through (`inbound_control_seconds`; the vendor's
    fixed 10 s by default)."""

    session_expires: int = Field(1800, ge=0)
    max_duration: int = Field(0, ge=0)
    redirects: Literal["follow", "relay"] = "follow"
    inbound_control_seconds: float = Field(10.0, gt=0, le=60)
    # this node's name, prefixed to every call and leg id ("pbx2-1589938378.1130"), as
    # Asterisk's systemname does; "" (one node): plain ids
    node: str = Field("", max_length=32, pattern=r"^[A-Za-z0-9_]*$")

    @field_validator("session_expires")
    @classmethod
    def _check_session_expires(cls, v: int) -> int:
        if 0 < v < 90:
            raise ValueError("must be 0 (off) or at least 90 seconds (RFC 4028 Min-SE)")
        return v


class MediaSection(_Model):
    """The media engine (ippbx.media): rtpengine anchors call audio. `engine` "auto" uses
    rtpengine when its binary is installed (else none, said once in the log); `ng` ""
    spawns ippbx's own rtpengine, "host:port" (or a list) uses running ones instead.
    `interface` is the address put in SDP (rtpengine's `--interface`; "LOCAL!PUBLIC"
    advertises PUBLIC while binding LOCAL), RTP ports come from port_min..port_max.
    `moh` is the music-on-hold WAV ("" = the built-in one), `prompts` the directory of
    announcement WAVs, `recordings` where call recordings go, kept keep_recordings_days
    (0 = forever)."""

    engine: Literal["auto", "rtpengine", "none"] = "auto"
    ng: list[str] | str = ""
    interface: str = "127.0.0.1"
    port_min: int = Field(30000, ge=1024, le=65535)
    port_max: int = Field(40000, ge=1024, le=65535)
    moh: str = ""
    prompts: str = "prompts"
    recordings: str = "recordings"
    keep_recordings_days: int = Field(30, ge=0)
    # the conference mixer (Janus AudioBridge): "" runs ippbx's own janus when it is
    # installed (and the engine is rtpengine), "none" none, a URL an external one
    janus: str = ""
    janus_port_min: int = Field(41000, ge=1024, le=65535)
    janus_port_max: int = Field(44999, ge=1024, le=65535)

    @field_validator("ng")
    @classmethod
    def _check_ng(cls, v: list[str] | str) -> list[str] | str:
        for item in [v] if isinstance(v, str) else v:
            if isinstance(v, str) and not item.strip():
                continue
            parse_ng_address(item)  # ValueError: "bad ng address ... (want host:port)"
        return v

    @field_validator("interface")
    @classmethod
    def _check_interface(cls, v: str) -> str:
        for part in v.split("!"):
            try:
                ipaddress.ip_address(part)
            except ValueError:
                raise ValueError(f"{v!r} is not an IP address (or LOCAL!PUBLIC)") from None
        if v.count("!") > 1:
            raise ValueError(f"{v!r}: at most one ! (LOCAL!PUBLIC)")
        return v

    @field_validator("moh")
    @classmethod
    def _check_moh(cls, v: str) -> str:
        return _existing_file(v)

    @field_validator("janus")
    @classmethod
    def _check_janus(cls, v: str) -> str:
        if v in ("", "none") or re.fullmatch(r"https?://[^\s/]+(/\S*)?", v):
            return v
        raise ValueError(f"{v!r}: want \"\" (ippbx's own janus), \"none\" or "
                         "http://host:port/janus")

    @model_validator(mode="after")
    def _check_ports(self) -> MediaSection:
        if self.port_min >= self.port_max:
            raise ValueError("port_min must be below port_max")
        if self.janus_port_min >= self.janus_port_max:
            raise ValueError("janus_port_min must be below janus_port_max")
        return self

    @property
    def ng_addresses(self) -> list[str]:
        """The external engines' "host:port" ([] = spawn our own)."""
        items = [self.ng] if isinstance(self.ng, str) else self.ng
        return [item.strip() for item in items if item.strip()]


class StoreSection(_Model):
    """The SQLite file, and where the objects (extensions, trunks, routes, …) live:
    `sqlite` (the file seeds the store, the API and the CLI change it; see
    `ippbx.running_config`) or `toml` (the file is the configuration; SIGHUP re-reads it,
    the API cannot change it)."""

    path: str = "ippbx.sqlite3"
    config: Literal["sqlite", "toml"] = "sqlite"


class ReportsSection(_Model):
    """Call reports (webhooks): what is sent, and how it is delivered (per-POST timeout,
    retry window, backoff cap, tries for a report the receiver refuses, connections in
    flight per destination, connections kept open for the next report and pipelined,
    TLS checks for `https://` receivers, and whether a process of their own POSTs them)."""

    extension_status: bool = True
    timeout: float = Field(5.0, gt=0)
    retry_minutes: float = Field(30.0, ge=0)
    backoff_max: float = Field(60.0, ge=0.01)
    rejected_tries: int = Field(3, ge=1, le=10)
    concurrency: int = Field(4, ge=1, le=64)
    keep_alive: bool = True
    pipelining: bool = True
    own_process: bool = True
    user_agent: str = "WebAPI"
    tls_verify: bool = True
    tls_ca: str = ""

    @field_validator("tls_ca")
    @classmethod
    def _check_ca(cls, v: str) -> str:
        return _existing_file(v)


class MetricsSection(_Model):
    """`GET /metrics` on the API port(s), in Prometheus text format; with `token`, only
    for `Authorization: Bearer <token>`."""

    enabled: bool = True
    token: str = ""


class ConsoleSection(_Model):
    """The web console at `/console/` on the API port(s): API users log in with their
    password; a login lasts `session_hours` without use."""

    enabled: bool = True
    session_hours: float = Field(8.0, gt=0)


class SecuritySection(_Model):
    """SIP authentication policy (pbx/security.py, sip/digest.py): bans per source address,
    lockout per extension, a rate limit for requests without valid credentials, addresses
    exempt from bans and limits, the digest algorithms offered."""

    ban_failures: int = Field(10, ge=1, le=1000)
    ban_seconds: int = Field(300, ge=0)
    failure_window: int = Field(600, ge=1)
    lockout_failures: int = Field(20, ge=1)
    lockout_seconds: int = Field(600, ge=0)
    rate_limit: float = Field(50.0, gt=0)
    rate_burst: int = Field(200, ge=1)
    trusted: list[str] = []
    table_size: int = Field(10_000, ge=1)
    digest_algorithms: list[Literal["MD5", "SHA-256"]] = Field(["MD5"], min_length=1)
    digest_uri: Literal["request-uri", "host"] = "request-uri"

    @field_validator("trusted")
    @classmethod
    def _check_trusted(cls, v: list[str]) -> list[str]:
        for item in v:
            ipaddress.ip_network(item, strict=False)
        return v

    @field_validator("digest_algorithms")
    @classmethod
    def _check_algorithms(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("an algorithm is listed twice")
        return v


def _move_sip_ban_keys(data: object) -> object:
    """`[sip] ban_failures` / `ban_seconds` (the old place) become `[security]` keys."""
    if not isinstance(data, dict) or not isinstance(data.get("sip"), dict):
        return data
    sip = dict(data["sip"])
    moved = {key: sip.pop(key) for key in ("ban_failures", "ban_seconds") if key in sip}
    if not moved:
        return data
    security = data.get("security", {})
    if not isinstance(security, dict):
        return data
    for key in moved:
        if key in security:
            raise ValueError(f"sip.{key}: also set in [security]; keep only [security] {key}")
    return {**data, "sip": sip, "security": {**security, **moved}}


# Where a call may be sent: an extension, an IVR, a ring group, a queue, a mailbox
# (`voicemail:N` leaves a message in N's), a number dialled as the one sending it would
# dial it (`number:N`, route prefix included), or nowhere (`hangup`).
DESTINATION_KINDS = ("extension", "ivr", "ringgroup", "queue", "voicemail", "conference",
                     "number")
_DESTINATION = re.compile(r"(?:(?:" + "|".join(DESTINATION_KINDS)
                          + r"):[0-9A-Za-z*#+_.-]{1,32}|hangup)")


def _destination(v: str) -> str:
    if not _DESTINATION.fullmatch(v):
        raise ValueError(f"{v!r} is not a destination (KIND:NUMBER with KIND one of "
                         f"{', '.join(DESTINATION_KINDS)}; or hangup)")
    return v


Destination = Annotated[str, AfterValidator(_destination)]
_OptionalDestination = Annotated[str, AfterValidator(lambda v: v and _destination(v))]


class Extension(_Model):
    """A phone user. Beyond its SIP account: voicemail (`voicemail`, its PIN `vm_pin`),
    forwarding (always / on busy / on no answer, each a destination; "" = off; an
    unanswered or busy extension with voicemail and no forwarding goes to its mailbox),
    do-not-disturb, its ring timeout (0: `[sip] no_answer_seconds`) and longest call
    (0: `[calls] max_duration`), and a mobile number rung with it (`ring_mobile`,
    dialled as `mobile_prefix` + `mobile` through the outbound routes)."""

    number: _Number
    password: str = Field(min_length=1)
    name: str = ""
    callerid: str = ""
    max_contacts: int = Field(1, ge=1, le=100)
    report_status: bool = True  # ExtensionStatus reports for this extension
    record: bool = False  # record its calls (needs the media engine)
    email: str = ""
    voicemail: bool = False
    vm_pin: str = Field("", pattern=r"^[0-9]{0,16}$")
    vm_email: str = ""
    dnd: bool = False
    forward_always: _OptionalDestination = ""
    forward_busy: _OptionalDestination = ""
    forward_noanswer: _OptionalDestination = ""
    ring_timeout: int = Field(0, ge=0, le=600)
    max_duration: int = Field(0, ge=0)
    mobile: str = Field("", pattern=r"^[0-9+*#]{0,32}$")
    mobile_prefix: str = Field("", pattern=r"^[0-9*#]{0,8}$")
    ring_mobile: bool = False


class Ivr(_Model):
    """An auto attendant: answers, plays `prompt` (from `[media] prompts` or the
    built-in set), waits `timeout` s for a key, `repeat` times, then goes to `default`.
    `options` maps a key ("0"-"9", "*", "#") to a destination; with `direct_dial`, the
    caller may key an extension's number instead."""

    number: _Number
    name: str = Field("", max_length=31)
    prompt: str = Field("welcome", pattern=r"^[A-Za-z0-9_.-]+$")
    timeout: int = Field(5, ge=1, le=60)
    repeat: int = Field(2, ge=1, le=5)
    options: dict[Annotated[str, Field(pattern=r"^[0-9*#]$")], Destination] = {}
    default: Destination = "hangup"
    direct_dial: bool = True


class RingGroup(_Model):
    """Several extensions rung for one number: all at once (`ringall`: the first to
    answer takes the call) or one after another (`sequential`, each for
    `member_seconds`); after `ring_seconds` in all, `failover`."""

    number: _Number
    name: str = Field("", max_length=31)
    strategy: Literal["ringall", "sequential"] = "ringall"
    members: list[_Number] = Field(min_length=1)
    ring_seconds: int = Field(20, ge=1, le=600)
    member_seconds: int = Field(10, ge=1, le=600)
    failover: Destination = "hangup"


QUEUE_STRATEGIES = ("ringall", "roundrobin", "leastrecent", "fewestcalls", "random", "linear")


class Queue(_Model):
    """A call queue (ACD): callers wait hearing music on hold (`moh`: a WAV of `[media]
    prompts`, "" the built-in music), told their place every `announce_seconds` when
    `announce_position`; the agents free to take one (static `agents`, and extensions
    logged in as dynamic agents: any extension with `password` as the queue's PIN, or
    only those of `dynamic_agents` when it is set) are offered it by `strategy`, each
    ringing `ring_seconds`; after a queue call an agent rests `wrapup_seconds`. A
    caller waits `max_wait` s at most, then goes to `failover`; with no agent logged in
    at all, callers do not join (`join_empty` off) or leave (`leave_when_empty`)."""

    number: _Number
    name: str = Field("", max_length=31)
    strategy: Literal["ringall", "roundrobin", "leastrecent", "fewestcalls", "random",
                      "linear"] = "ringall"
    agents: list[_Number] = []
    dynamic_agents: list[_Number] = []
    password: str = Field("", pattern=r"^[0-9]{0,16}$")
    max_wait: int = Field(300, ge=1, le=86400)
    failover: Destination = "hangup"
    moh: str = Field("", pattern=r"^[A-Za-z0-9_.-]*$")
    announce_position: bool = True
    announce_seconds: int = Field(30, ge=0, le=3600)
    wrapup_seconds: int = Field(5, ge=0, le=3600)
    ring_seconds: int = Field(15, ge=1, le=600)
    retry_seconds: int = Field(5, ge=0, le=600)
    join_empty: bool = True
    leave_when_empty: bool = False


class PagingGroup(_Model):
    """A number that auto-answers every idle member's phone (`Call-Info:
    answer-after=0`, `Alert-Info`) and lets them hear the caller. `duplex` (the
    vendors' "intercom") is shown as such; the members' voices reach no one until a
    mixer joins them (a conference)."""

    number: _Number
    name: str = Field("", max_length=31)
    members: list[_Number] = Field(min_length=1)
    duplex: bool = False


_Pin = Annotated[str, Field(pattern=r"^[0-9]{0,16}$")]


class Conference(_Model):
    """A conference room (`[[conferences]]`), mixed by Janus AudioBridge: callers to its
    number key `pin` (if set) or `moderator_pin` (a moderator); with
    `wait_for_moderator` the others hear music until a moderator is in. At most
    `max_members` at once; `record` records the room's mix."""

    number: _Number
    name: str = Field("", max_length=63)
    pin: _Pin = ""
    moderator_pin: _Pin = ""
    wait_for_moderator: bool = False
    max_members: int = Field(20, ge=2, le=200)
    record: bool = False

    @model_validator(mode="after")
    def _pins_differ(self) -> Conference:
        if self.moderator_pin and self.moderator_pin == self.pin:
            raise ValueError("moderator_pin must differ from pin")
        return self


class VoicemailSection(_Model):
    """Mailboxes: messages (WAV) under `directory`, at most `max_seconds` long each
    (`#` or hanging up ends one sooner), and mailbox features codes."""

    directory: str = "voicemail"
    max_seconds: int = Field(180, ge=5, le=3600)
    max_messages: int = Field(100, ge=1)
    unsolicited_mwi: bool = True  # NOTIFY phones that did not SUBSCRIBE too


class Trunk(_Model):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    type: Literal["peer", "register"] = "peer"
    host: str = Field(min_length=1)
    port: int = Field(5060, ge=1, le=65535)  # 5061 when transport is "tls" and no port
    transport: Literal["udp", "tcp", "tls"] = "udp"
    username: str = ""
    password: str = ""
    from_user: str = ""
    callerid: str = ""
    max_channels: int = Field(0, ge=0)
    expires: int = Field(3600, ge=60)
    record: bool = False  # record the calls through it (needs the media engine)

    @model_validator(mode="after")
    def _tls_port(self) -> Trunk:
        if self.transport == "tls" and "port" not in self.model_fields_set:
            object.__setattr__(self, "port", 5061)  # (frozen model)
        return self

    @model_validator(mode="after")
    def _register_needs_credentials(self) -> Trunk:
        if self.type == "register" and not (self.username and self.password):
            raise ValueError("a register trunk needs username and password")
        return self


class OutboundRoute(_Model):
    name: str = Field(min_length=1)
    prefix: str = ""
    match: str
    prepend: str = ""
    trunks: list[str] = Field(min_length=1)
    extensions: list[str] = []
    record: bool = False  # record the calls it routes (needs the media engine)

    @field_validator("match")
    @classmethod
    def _check_match(cls, v: str) -> str:
        try:
            compile_pattern(v)
        except PatternError as exc:
            raise ValueError(str(exc)) from None
        return v


class InboundRoute(_Model):
    name: str = Field(min_length=1)
    trunk: str = ""  # the trunk whose calls it takes ("": calls of any trunk)
    did: str = ""
    callerid: str = ""
    destination: str
    # may a caller this route admitted transfer its call out through a trunk (REFER, or
    # an API transfer naming it as the transferor)? Off: anyone who can call the DID
    # could otherwise dial anywhere at the owner's cost.
    allow_transfer_out: bool = False
    record: bool = False  # record the calls it admits (needs the media engine)
    # Yeastar's "Control Inbound Call": each call it admits rings the caller and waits
    # for an application's inbound/accept or inbound/refuse (`pbx/inbound_control.py`)
    control_inbound_call: bool = False

    @field_validator("destination")
    @classmethod
    def _check_destination(cls, v: str) -> str:
        if v.startswith("number:"):
            raise ValueError("an inbound route sends calls to a number of the PBX, "
                             "not out again (number:)")
        return _destination(v)


class Config(_Model):
    pbx: PbxSection = PbxSection()
    sip: SipSection = SipSection()
    api: ApiSection
    calls: CallsSection = CallsSection()
    media: MediaSection = MediaSection()
    store: StoreSection = StoreSection()
    reports: ReportsSection = ReportsSection()
    metrics: MetricsSection = MetricsSection()
    console: ConsoleSection = ConsoleSection()
    security: SecuritySection = SecuritySection()
    voicemail: VoicemailSection = VoicemailSection()
    extensions: list[Extension] = []
    trunks: list[Trunk] = []
    outbound_routes: list[OutboundRoute] = []
    inbound_routes: list[InboundRoute] = []
    ivrs: list[Ivr] = []
    ring_groups: list[RingGroup] = []
    queues: list[Queue] = []
    paging_groups: list[PagingGroup] = []
    conferences: list[Conference] = []

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: object) -> object:
        return _move_sip_ban_keys(data)

    @model_validator(mode="after")
    def _cross_references(self) -> Config:
        _unique(self.extensions, "number", "extensions", "extension number")
        _unique(self.trunks, "name", "trunks", "trunk name")
        _unique(self.outbound_routes, "name", "outbound_routes", "route name")
        _unique(self.inbound_routes, "name", "inbound_routes", "route name")
        trunks = {t.name for t in self.trunks}
        exts = {e.number for e in self.extensions}
        for i, route in enumerate(self.outbound_routes):
            for j, name in enumerate(route.trunks):
                if name not in trunks:
                    raise ValueError(f"outbound_routes[{i}].trunks[{j}]: no trunk named {name!r}")
            for j, ext in enumerate(route.extensions):
                if ext not in exts:
                    raise ValueError(f"outbound_routes[{i}].extensions[{j}]: no extension {ext!r}")
        for i, route in enumerate(self.inbound_routes):
            if route.trunk and route.trunk not in trunks:
                raise ValueError(f"inbound_routes[{i}].trunk: no trunk named {route.trunk!r}")
        self._check_numbers()
        return self

    def _check_numbers(self) -> None:
        """Extensions, IVRs, ring groups, queues and paging groups share one number
        space, and every destination names something that exists."""
        owners: dict[str, str] = {}
        for section, items in (("extensions", self.extensions), ("ivrs", self.ivrs),
                               ("ring_groups", self.ring_groups), ("queues", self.queues),
                               ("paging_groups", self.paging_groups),
                               ("conferences", self.conferences)):
            for i, item in enumerate(items):
                number = item.number  # type: ignore[attr-defined]
                if number in owners:
                    raise ValueError(f"{section}[{i}].number: {number!r} is already "
                                     f"{owners[number]}")
                owners[number] = f"{section}[{i}]"
        kinds = {
            "extension": {e.number for e in self.extensions},
            "voicemail": {e.number for e in self.extensions},
            "ivr": {v.number for v in self.ivrs},
            "ringgroup": {g.number for g in self.ring_groups},
            "queue": {q.number for q in self.queues},
            "conference": {c.number for c in self.conferences},
        }
        where: list[tuple[str, str]] = []
        for i, route in enumerate(self.inbound_routes):
            where.append((f"inbound_routes[{i}].destination", route.destination))
        for i, ext in enumerate(self.extensions):
            for key in ("forward_always", "forward_busy", "forward_noanswer"):
                if value := getattr(ext, key):
                    where.append((f"extensions[{i}].{key}", value))
        for i, ivr in enumerate(self.ivrs):
            where.append((f"ivrs[{i}].default", ivr.default))
            where += [(f"ivrs[{i}].options.{key}", value)
                      for key, value in ivr.options.items()]
        for i, group in enumerate(self.ring_groups):
            where.append((f"ring_groups[{i}].failover", group.failover))
            for j, member in enumerate(group.members):
                if member not in kinds["extension"]:
                    raise ValueError(f"ring_groups[{i}].members[{j}]: no extension "
                                     f"{member!r}")
        for i, queue in enumerate(self.queues):
            where.append((f"queues[{i}].failover", queue.failover))
            for key in ("agents", "dynamic_agents"):
                for j, member in enumerate(getattr(queue, key)):
                    if member not in kinds["extension"]:
                        raise ValueError(f"queues[{i}].{key}[{j}]: no extension {member!r}")
        for i, paging in enumerate(self.paging_groups):
            for j, member in enumerate(paging.members):
                if member not in kinds["extension"]:
                    raise ValueError(f"paging_groups[{i}].members[{j}]: no extension "
                                     f"{member!r}")
        for place, value in where:
            kind, _, number = value.partition(":")
            if kind in kinds and number not in kinds[kind]:
                raise ValueError(f"{place}: no {kind} {number!r}")

    def extension(self, number: str) -> Extension | None:
        for ext in self.extensions:
            if ext.number == number:
                return ext
        return None

    def trunk(self, name: str) -> Trunk | None:
        for trunk in self.trunks:
            if trunk.name == name:
                return trunk
        return None


def _unique(items: list[BaseModel], attr: str, section: str, what: str) -> None:
    seen: set[str] = set()
    for i, item in enumerate(items):
        value = getattr(item, attr)
        if value in seen:
            raise ValueError(f"{section}[{i}].{attr}: duplicate {what} {value!r}")
        seen.add(value)


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(value: object, where: str) -> object:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in os.environ:
                raise ConfigError(f"{where}: environment variable {name} is not set")
            return os.environ[name]
        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand_env(v, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def format_validation_error(exc: ValidationError) -> str:
    """The first problem of `exc` as one line: where, and what."""
    err = exc.errors()[0]
    loc = ""
    for part in err["loc"]:
        loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    if msg.startswith(("outbound_routes[", "inbound_routes[", "extensions[", "trunks[",
                       "ivrs[", "ring_groups[", "queues[", "paging_groups[",
                       "conferences[")):
        return msg
    return f"{loc}: {msg}" if loc else msg


def parse_config(text: str, source: str = "<config>") -> Config:
    """Parse TOML text into a Config; raise ConfigError with a one-line message."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    data = _expand_env(raw, "")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc)}") from None


def load_config(path: str | Path | None) -> Config:
    """Load the config file at `path`, or the embedded demo config when `path` is None."""
    if path is None:
        text = resources.files("ippbx").joinpath("demo.toml").read_text(encoding="utf-8")
        return parse_config(text, "demo.toml")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_config(text, str(path))
