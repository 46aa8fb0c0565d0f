"""rtpengine's ng control protocol: a sans-IO codec and the asyncio client `NgClient`.

Wire format
-----------
A request is one UDP datagram `<cookie> <bencoded dict>`; the dict holds `command` and
its parameters. The answer is `<same cookie> <bencoded dict>` with `result` = `ok`
(`pong` for a ping) or `error` plus `error-reason`; an `ok` may carry a `warning`.
rtpengine remembers the answers it gave by cookie, so a retransmission with the same
cookie is answered again rather than executed twice (an `offer` does not allocate a
second set of ports).

Sans-IO part: `build_request` makes a datagram with a fresh cookie, `parse_answer`
splits an answer into (cookie, dict), `PendingRequests` matches answers to the requests
waiting for them, `check_result` turns `result: error` into `MediaError`.
Decoded dicts follow `ippbx.media.bencode`: keys are `str`, strings are `bytes`
(`text()` reads one as `str`).

`NgClient` talks to one or more engines ("host:port" each) from an ephemeral UDP socket
per engine. `request` retransmits with the same cookie after `timeout` seconds, doubling
each time, `tries` times in all (0.5 + 1 + 2 = 3.5 s by default), then raises
`MediaError`; the one error type also covers `result: error` and malformed answers.
A call stays on the engine that took its first `offer` (new calls go round-robin).

Flags for a B2BUA anchoring phones (`OFFER_FLAGS`, `ANSWER_FLAGS`), checked against
rtpengine 10.5.3:

* `replace: [origin, session-connection]`: the o= and session c= lines name the media
  interface, not the phone on the other leg (its address, maybe private, never leaks
  across; the media c= is rewritten anyway).
* `ICE: remove` strips ICE attributes from the SDP we pass on, and `reject-ICE` (offers)
  makes rtpengine refuse the ICE a phone offered, so neither leg tries ICE checks
  against candidates of the other; rtpengine is the only media address each leg sees.
* `port-latching`: rtpengine keeps its local ports when a re-INVITE moves the phone's
  port, so the SDP the other leg already has stays valid.
* NAT: symmetric RTP is rtpengine's default (`asymmetric` is not set). It sends to the
  address each stream's packets come from (it learns the phone's public address and
  port from the first packets; measured: immediately), so a phone behind NAT whose SDP
  names a private address is reached all the same. `received_from=` on `offer`/`answer`
  additionally sets `SIP-source-address` with `received-from`: the SIP source address
  replaces the SDP address before any packet arrives (10.5.3 ignores it when the SDP
  carries ICE candidates; those win).
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import os
import secrets
import socket
from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar, cast

from ippbx.media.bencode import BencodeError, decode, encode

__all__ = [
    "ANSWER_FLAGS", "OFFER_FLAGS", "REPEAT_FOREVER", "MediaError", "NgClient",
    "PendingRequests", "build_request", "check_result", "merge_params", "parse_answer",
    "parse_ng_address", "text",
]

log = logging.getLogger(__name__)

OFFER_FLAGS: Mapping[str, object] = {
    "replace": ("origin", "session-connection"),
    "ICE": "remove",
    "flags": ("reject-ICE", "port-latching"),
}
ANSWER_FLAGS: Mapping[str, object] = {
    "replace": ("origin", "session-connection"),
    "ICE": "remove",
    "flags": ("port-latching",),
}

# `play media` `repeat-times` (10.5.3 knows only the hyphenated key; "repeat times" is an
# unknown key and plays once). It is a signed 32-bit count: 2**31 and above wrap and play
# once. A million repeats of even a 1 s file is 11 days: "until stopped".
REPEAT_FOREVER = 1_000_000
_MAX_REPEAT = 2**31 - 1

# error reasons rtpengine gives for a call-id it does not know (delete treats as done)
_UNKNOWN_CALL = ("unknown call-id", "call-id not found")

MAX_DATAGRAM = 65507
T = TypeVar("T")


class MediaError(Exception):
    """An ng request failed: no answer in time, `result: error`, or a malformed answer."""

    def __init__(self, message: str, *, reason: str | None = None,
                 cookie: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason  # rtpengine's error-reason, when it gave one
        self.cookie = cookie  # the answer's cookie, for a malformed answer that had one


# -- sans-IO --------------------------------------------------------------------------------


def text(value: object, default: str = "") -> str:
    """A decoded ng value as `str` (bytes read as UTF-8, invalid bytes replaced)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    if value is None:
        return default
    return str(value)


def new_cookie() -> str:
    """A fresh request cookie: 16 hex digits, unique for all practical purposes."""
    return secrets.token_hex(8)


def build_request(command: str, params: Mapping[str, object],
                  cookie: str | None = None) -> tuple[str, bytes]:
    """(cookie, datagram) for `command` with `params`; MediaError if they cannot be sent."""
    if not command or "command" in params:
        raise MediaError("the command goes in `command`, not in params")
    cookie = cookie or new_cookie()
    if not cookie.isascii() or " " in cookie or not cookie.isprintable():
        raise MediaError(f"bad cookie {cookie!r}")
    try:
        body = encode({**params, "command": command})
    except BencodeError as exc:
        raise MediaError(f"{command}: cannot encode parameters: {exc}") from None
    datagram = cookie.encode("ascii") + b" " + body
    if len(datagram) > MAX_DATAGRAM:
        raise MediaError(f"{command}: request of {len(datagram)} bytes exceeds a datagram")
    return cookie, datagram


def parse_answer(datagram: bytes) -> tuple[str, dict[str, Any]]:
    """Split an answer datagram into (cookie, dict); MediaError when malformed.

    The cookie is returned even for a malformed body when it can be read, in the
    MediaError's `cookie` attribute, so the request it answers can fail at once.
    """
    head, sep, body = bytes(datagram).partition(b" ")
    if not sep or not head:
        raise MediaError("answer without a cookie")
    try:
        cookie = head.decode("ascii")
    except UnicodeDecodeError:
        raise MediaError("answer with a non-ASCII cookie") from None
    try:
        answer = decode(body)
    except BencodeError as exc:
        raise MediaError(f"malformed answer: {exc}", cookie=cookie) from None
    if not isinstance(answer, dict) or "result" not in answer:
        raise MediaError("malformed answer: not a dictionary with a result", cookie=cookie)
    return cookie, answer


def check_result(command: str, answer: Mapping[str, Any]) -> dict[str, Any]:
    """The answer when it reports success; MediaError with rtpengine's reason otherwise."""
    result = text(answer.get("result"))
    if result == "error":
        reason = text(answer.get("error-reason"), "no reason given")
        raise MediaError(f"{command}: {reason}", reason=reason)
    if result not in ("ok", "pong"):
        raise MediaError(f"{command}: unexpected result {result!r}", reason=result)
    if "warning" in answer:
        log.debug("rtpengine %s: warning %s", command, text(answer["warning"]))
    return dict(answer)


def merge_params(base: Mapping[str, object], extra: Mapping[str, object] | None
                 ) -> dict[str, object]:
    """`base` updated by `extra`; list values (`flags`, `replace`...) are joined instead."""
    merged: dict[str, object] = {
        k: list(v) if isinstance(v, list | tuple) else v for k, v in base.items()}
    for key, value in (extra or {}).items():
        old = merged.get(key)
        if isinstance(old, list) and isinstance(value, list | tuple):
            merged[key] = old + [v for v in value if v not in old]
        else:
            merged[key] = list(value) if isinstance(value, tuple) else value
    return merged


class PendingRequests(Generic[T]):
    """Requests waiting for an answer, by cookie; `T` is what the owner waits with."""

    def __init__(self) -> None:
        self._waiting: dict[str, T] = {}
        self.unmatched = 0  # answers for no waiting request (late, duplicate, stray)
        self.malformed = 0

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, cookie: str, waiter: T) -> None:
        if cookie in self._waiting:
            raise MediaError(f"cookie {cookie!r} is already waiting")
        self._waiting[cookie] = waiter

    def discard(self, cookie: str) -> None:
        self._waiting.pop(cookie, None)

    def match(self, datagram: bytes) -> tuple[T, dict[str, Any] | MediaError] | None:
        """(waiter, answer or the MediaError it amounts to), or None when nobody waits."""
        try:
            cookie, answer = parse_answer(datagram)
        except MediaError as exc:
            self.malformed += 1
            waiter = self._waiting.pop(exc.cookie, None) if exc.cookie is not None else None
            return (waiter, exc) if waiter is not None else None
        waiter = self._waiting.pop(cookie, None)
        if waiter is None:
            self.unmatched += 1
            return None
        return waiter, answer

    def waiters(self) -> list[T]:
        return list(self._waiting.values())


def parse_ng_address(value: str) -> tuple[str, int]:
    """"host:port" or "[v6]:port" into (host, port); ValueError when malformed."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = value.rpartition(":")
        if ":" in host:
            raise ValueError(f"bad ng address {value!r} (IPv6 goes in brackets)")
    if not host or not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise ValueError(f"bad ng address {value!r} (want host:port)")
    return host, int(port_text)


# -- asyncio --------------------------------------------------------------------------------


class _Link(asyncio.DatagramProtocol):
    """One engine: a UDP socket connected to its ng port, and its pending requests."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: PendingRequests[asyncio.Future[dict[str, Any]]] = PendingRequests()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        matched = self.pending.match(data)
        if matched is None:
            return
        future, answer = matched
        if future.done():
            return
        if isinstance(answer, MediaError):
            future.set_exception(answer)
        else:
            future.set_result(answer)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable: the engine is not (yet) listening. The request keeps
        # retransmitting until its time is up.
        log.debug("rtpengine %s: %s", self.name, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        for future in self.pending.waiters():
            if not future.done():
                future.set_exception(MediaError(f"rtpengine {self.name}: socket closed"))

    def send(self, datagram: bytes) -> None:
        if self.transport is None:
            raise MediaError(f"rtpengine {self.name}: client closed")
        self.transport.sendto(datagram)


class NgClient:
    """The ng client: `await NgClient.open(["127.0.0.1:2223"])`, requests, `close()`.

    `engines` are "host:port" strings (or one). Every command about a call goes to the
    engine that took the call's first `offer`; a new call goes to the next engine in
    turn. `forget(call_id)` / `forget_engine(engine)` drop that memory (e.g. after an
    engine restarted and lost its calls).
    """

    def __init__(self, engines: Sequence[str] | str, *, timeout: float = 0.5,
                 tries: int = 3) -> None:
        names = [engines] if isinstance(engines, str) else list(engines)
        if not names:
            raise ValueError("no rtpengine ng address given")
        for name in names:
            parse_ng_address(name)
        if timeout <= 0 or tries < 1:
            raise ValueError("timeout must be > 0 and tries >= 1")
        self.engines: list[str] = names
        self.timeout = timeout
        self.tries = tries
        self._links: dict[str, _Link] = {}
        self._calls: dict[str, str] = {}  # call-id -> engine
        self._turn = itertools.cycle(range(len(names)))
        self._closed = False
        # for the metrics: requests sent, and those that failed (no answer at all; an
        # error answer, a malformed one or a socket closed under it)
        self.requests = 0
        self.unanswered = 0
        self.errors = 0

    @classmethod
    async def open(cls, engines: Sequence[str] | str, *, timeout: float = 0.5,
                   tries: int = 3) -> NgClient:
        client = cls(engines, timeout=timeout, tries=tries)
        await client.start()
        return client

    async def start(self) -> None:
        """Open one ephemeral UDP socket per engine (names resolved now)."""
        loop = asyncio.get_running_loop()
        try:
            for name in self.engines:
                if name not in self._links:
                    self._links[name] = await self._connect(loop, name)
        except BaseException:
            self.close()
            raise

    @staticmethod
    async def _connect(loop: asyncio.AbstractEventLoop, name: str) -> _Link:
        host, port = parse_ng_address(name)
        try:
            ipaddress.ip_address(host)
            address = (host, port)
        except ValueError:
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            except OSError as exc:
                raise MediaError(f"rtpengine {name}: cannot resolve {host}: {exc}") from None
            address = infos[0][4][:2]
        try:
            _, link = await loop.create_datagram_endpoint(
                lambda: _Link(name), remote_addr=address)
        except OSError as exc:
            raise MediaError(f"rtpengine {name}: cannot open a socket: {exc}") from None
        return link

    async def replace_engine(self, old: str, new: str) -> None:
        """Talk to `new` instead of `old` (an engine that came back on another port);
        the calls on `old` are forgotten."""
        parse_ng_address(new)
        index = self.engines.index(old)
        link = await self._connect(asyncio.get_running_loop(), new)
        self.forget_engine(old)
        stale = self._links.pop(old, None)
        if stale is not None and stale.transport is not None:
            stale.transport.close()
        self.engines[index] = new
        self._links[new] = link

    def close(self) -> None:
        """Close the sockets; requests still waiting fail with MediaError."""
        self._closed = True
        for link in self._links.values():
            if link.transport is not None:
                link.transport.close()
        self._links.clear()

    @property
    def closed(self) -> bool:
        return self._closed

    def call_count(self) -> int:
        """How many calls the engines hold for us (an offer went out, no delete yet)."""
        return len(self._calls)

    def engine_of(self, call_id: str) -> str | None:
        """The engine holding `call_id`, or None when no offer went out for it."""
        return self._calls.get(call_id)

    def forget(self, call_id: str) -> None:
        self._calls.pop(call_id, None)

    def forget_engine(self, engine: str) -> list[str]:
        """Forget the calls on `engine` (it restarted); returns their call-ids."""
        lost = [cid for cid, name in self._calls.items() if name == engine]
        for cid in lost:
            del self._calls[cid]
        return lost

    def _pick(self, command: str, params: Mapping[str, object]) -> str:
        call_id = params.get("call-id")
        if isinstance(call_id, str | bytes):
            key = text(call_id)
            engine = self._calls.get(key)
            if engine is not None:
                return engine
            if command in ("offer", "publish"):
                engine = self.engines[next(self._turn)]
                self._calls[key] = engine
                return engine
        return self.engines[0]

    async def request(self, command: str, params: Mapping[str, object], *,
                      engine: str | None = None, timeout: float | None = None,
                      tries: int | None = None) -> dict[str, Any]:
        """Send `command` with `params` and return the answer (MediaError on failure).

        `engine` overrides the choice of engine; `timeout`/`tries` the client's own.
        """
        if self._closed:
            raise MediaError(f"{command}: client closed")
        name = engine or self._pick(command, params)
        link = self._links.get(name)
        if link is None:
            raise MediaError(f"{command}: rtpengine {name} is not open")
        cookie, datagram = build_request(command, params)
        self.requests += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        link.pending.add(cookie, future)
        delay = self.timeout if timeout is None else timeout
        tries = self.tries if tries is None else tries
        waited = 0.0
        try:
            for _ in range(tries):
                link.send(datagram)
                done, _pending = await asyncio.wait({future}, timeout=delay)
                if done:
                    break
                waited += delay
                delay *= 2
            else:
                self.unanswered += 1
                raise MediaError(f"{command}: no answer from rtpengine {name} in "
                                 f"{waited:.1f} s ({tries} tries)")
        finally:
            link.pending.discard(cookie)
            if not future.done():
                future.cancel()
        try:
            answer = future.result()  # raises the MediaError of a malformed answer
            return check_result(command, answer)
        except MediaError:
            self.errors += 1
            raise

    # -- the commands the PBX uses ----------------------------------------------------------

    async def ping(self) -> bool:
        """True when every engine answers pong."""
        results = await asyncio.gather(*(self.ping_engine(name) for name in self.engines))
        return all(results)

    async def ping_engine(self, engine: str, *, timeout: float | None = None,
                          tries: int | None = None) -> bool:
        """True when `engine` answers pong (with its own timeout/tries when given)."""
        try:
            answer = await self.request("ping", {}, engine=engine, timeout=timeout, tries=tries)
        except MediaError:
            return False
        return text(answer.get("result")) == "pong"

    async def offer(self, call_id: str, from_tag: str, sdp: bytes, *,
                    to_tag: str | None = None, flags: Mapping[str, object] | None = None,
                    received_from: str | None = None) -> bytes:
        """rtpengine's rewrite of the offer `sdp` from `from_tag` (the SDP to pass on).

        `to_tag` for an offer inside a dialog (a re-INVITE); `flags` adds ng keys to
        `OFFER_FLAGS` (lists are joined); `received_from` = the SIP source address of
        the offerer, to be used instead of the SDP's (module docstring: NAT).
        """
        params = self._sdp_params(call_id, from_tag, sdp, to_tag, OFFER_FLAGS, flags,
                                  received_from)
        return _sdp_of("offer", await self.request("offer", params))

    async def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: bytes, *,
                     flags: Mapping[str, object] | None = None,
                     received_from: str | None = None) -> bytes:
        """rtpengine's rewrite of the answer `sdp` from `to_tag` to the offer of `from_tag`."""
        params = self._sdp_params(call_id, from_tag, sdp, to_tag, ANSWER_FLAGS, flags,
                                  received_from)
        return _sdp_of("answer", await self.request("answer", params))

    @staticmethod
    def _sdp_params(call_id: str, from_tag: str, sdp: bytes, to_tag: str | None,
                    base: Mapping[str, object], flags: Mapping[str, object] | None,
                    received_from: str | None) -> dict[str, object]:
        params = merge_params(base, flags)
        if received_from:
            family = "IP6" if ipaddress.ip_address(received_from).version == 6 else "IP4"
            params = merge_params(params, {"flags": ["SIP-source-address"],
                                           "received-from": [family, received_from]})
        params.update({"call-id": call_id, "from-tag": from_tag, "sdp": bytes(sdp)})
        if to_tag is not None:
            params["to-tag"] = to_tag
        return params

    async def delete(self, call_id: str, from_tag: str | None = None) -> None:
        """End the call (at once, not after rtpengine's delete delay); an unknown call-id
        is no error."""
        params: dict[str, object] = {"call-id": call_id, "delete-delay": 0}
        if from_tag is not None:
            params["from-tag"] = from_tag
        try:
            answer = await self.request("delete", params)
        except MediaError as exc:
            if exc.reason is None or not exc.reason.lower().startswith(_UNKNOWN_CALL):
                raise
        else:
            warning = text(answer.get("warning")).lower()
            if warning and not warning.startswith(_UNKNOWN_CALL):
                log.info("rtpengine delete %s: %s", call_id, warning)
        self.forget(call_id)

    async def play_media(self, call_id: str, from_tag: str, file: str,
                         repeat_times: int | None = None) -> int:
        """Play the audio file (WAV; a path on the engine's host, relative ones resolved
        against our working directory) to `from_tag`, `repeat_times` times (None: once;
        `REPEAT_FOREVER`: until `stop_media`; ValueError outside 1..2**31-1, which 10.5.3
        would silently play once). Returns one play's duration in ms (0 when the engine
        did not say)."""
        params: dict[str, object] = {"call-id": call_id, "from-tag": from_tag,
                                     "file": os.path.abspath(file)}
        if repeat_times is not None:
            if not 1 <= repeat_times <= _MAX_REPEAT:
                raise ValueError(f"repeat_times must be 1..{_MAX_REPEAT}")
            params["repeat-times"] = repeat_times
        answer = await self.request("play media", params)
        duration = answer.get("duration", 0)
        return duration if isinstance(duration, int) else 0

    async def stop_media(self, call_id: str, from_tag: str) -> None:
        await self.request("stop media", {"call-id": call_id, "from-tag": from_tag})

    async def block_media(self, call_id: str, from_tag: str) -> None:
        """Drop the media `from_tag` sends (DTMF events still pass)."""
        await self.request("block media", {"call-id": call_id, "from-tag": from_tag})

    async def unblock_media(self, call_id: str, from_tag: str) -> None:
        await self.request("unblock media", {"call-id": call_id, "from-tag": from_tag})

    async def silence_media(self, call_id: str, from_tag: str) -> None:
        """Replace what `from_tag` sends by silence (G.711/G.722 only)."""
        await self.request("silence media", {"call-id": call_id, "from-tag": from_tag})

    async def unsilence_media(self, call_id: str, from_tag: str) -> None:
        await self.request("unsilence media", {"call-id": call_id, "from-tag": from_tag})

    async def start_recording(self, call_id: str) -> None:
        """Record the whole call (files under the engine's recording directory)."""
        await self.request("start recording", {"call-id": call_id})

    async def stop_recording(self, call_id: str) -> None:
        await self.request("stop recording", {"call-id": call_id})

    async def subscribe_request(self, call_id: str, from_tag: str, *,
                                to_tag: str | None = None,
                                flags: Mapping[str, object] | None = None) -> dict[str, Any]:
        """Ask for a copy of what `from_tag` sends. Returns {"sdp": bytes (a sendonly
        offer for the listener), "to-tag": str (the subscription's tag), "from-tags":
        list[str]}; finish with `subscribe_answer`."""
        params = merge_params({"call-id": call_id, "from-tag": from_tag}, flags)
        if to_tag is not None:
            params["to-tag"] = to_tag
        answer = await self.request("subscribe request", params)
        tags = answer.get("from-tags")
        return {
            "sdp": _sdp_of("subscribe request", answer),
            "to-tag": text(answer.get("to-tag")),
            "from-tags": [text(t) for t in tags] if isinstance(tags, list) else [from_tag],
        }

    async def subscribe_answer(self, call_id: str, to_tag: str, sdp: bytes) -> None:
        """The listener's answer to a `subscribe_request` offer: media starts flowing."""
        await self.request("subscribe answer",
                           {"call-id": call_id, "to-tag": to_tag, "sdp": bytes(sdp)})

    async def unsubscribe(self, call_id: str, to_tag: str) -> None:
        await self.request("unsubscribe", {"call-id": call_id, "to-tag": to_tag})

    async def query(self, call_id: str) -> dict[str, Any]:
        """rtpengine's `query` answer for the call (raw: str keys, bytes strings)."""
        return await self.request("query", {"call-id": call_id})

    async def list_calls(self, limit: int = 1000) -> list[str]:
        """The call-ids the engines hold (at most `limit` from each)."""
        calls: list[str] = []
        for name in self.engines:
            answer = await self.request("list", {"limit": limit}, engine=name)
            listed = answer.get("calls", [])
            if not isinstance(listed, list):
                raise MediaError("list: malformed answer (calls is not a list)")
            calls.extend(text(c) for c in listed)
        return calls

    async def __aenter__(self) -> NgClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def _sdp_of(command: str, answer: Mapping[str, Any]) -> bytes:
    sdp = answer.get("sdp")
    if not isinstance(sdp, bytes) or not sdp:
        raise MediaError(f"{command}: malformed answer (no sdp)")
    return sdp

