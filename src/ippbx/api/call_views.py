"""The live calls as `outbound/query` and `inbound/query` show them, encoded once per call.

Each view (one `<outbound>` / `{"outboundid":…}` item) is encoded in the wire format
asked for and kept, by variant (list, format, callee form) and leg id, with a stamp of
what it shows that can change: a leg's id, numbers and trunk are fixed when it is made, so
the stamp is the leg itself (compared by identity, so a reused id is never mistaken for
the old leg), its status and, for an inbound call, its callee leg. A query for "all
calls" is then a join of stored bytes, and while the registry has not changed at all
(`CallStore.changes`) that answer is itself kept, joined; an item is encoded again
only when its call changed since it was last shown.

Entries of ended legs are swept once a variant holds twice as many as there are live
legs, so the store stays in proportion to the calls without listening to call events.
The encodings are `ippbx.api.codec`'s own (`encode_json`, `xml_lines`), so an answer
built from pieces is byte for byte the one the codec writes for the whole payload.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import repeat
from typing import Any

from ippbx.api import codec
from ippbx.api.codec import EncodedList, Format
from ippbx.pbx.calls import Call, CallStore, Leg, LegKind, LegStatus

_SWEEP_SLACK = 1024
"""Entries allowed beyond twice the live legs before a sweep (small registries)."""
_NO_CALLEE = repeat(None)  # (an outbound item's stamp has no callee)


def outbound_view(leg: Leg) -> dict[str, Any]:
    return {
        "outboundid": leg.id,
        "from": leg.from_number,
        "to": leg.to_number,
        "trunk": leg.trunk or "",
        "status": leg.status.value,
    }


def _callee(call: Call) -> dict[str, str]:
    callee = call.callee
    if callee is None or (call.application and not callee.live):
        kind, _, number = call.application.partition(":")
        if kind in ("ivr", "queue"):  # (in a menu, waiting in line)
            return {f"{kind}id": number}
        return {"extid": ""}
    if callee.kind is LegKind.TRUNK:
        return {"outboundid": callee.id}
    return {"extid": callee.extension or ""}


def inbound_view(call: Call, callee_as_list: bool) -> dict[str, Any]:
    leg = call.inbound_leg
    assert leg is not None  # the registry's inbound index only holds calls with one
    callee = _callee(call)
    return {
        "inboundid": leg.id,
        "from": leg.from_number,
        "to": leg.to_number,
        "trunk": leg.trunk or "",
        "callee": [callee] if callee_as_list else callee,
        "status": leg.status.value,
    }


def encode_item(name: str, view: dict[str, Any], fmt: Format) -> bytes:
    """One list item as it appears inside the answer (XML: its lines at depth 1)."""
    if fmt is Format.JSON:
        return codec.encode_json(view)
    return ("\n".join(codec.xml_lines(name, view, 1)) + "\n").encode("utf-8")


Variant = tuple[str, Format, bool]  # list name, format, callee as a list
Held = tuple[Leg, LegStatus, Leg | None, bytes]  # the stamp, then the encoded item


class CallViews:
    """Encoded call views by variant and leg id, rebuilt when the call changed."""

    def __init__(self) -> None:
        self._items: dict[Variant, dict[str, Held]] = {}
        self._all: dict[Variant, tuple[CallStore, int, EncodedList]] = {}
        self.encoded = 0  # items encoded since start (a miss each)

    def outbound(self, registry: CallStore, ids: list[str] | None, fmt: Format
                 ) -> EncodedList:
        """The encoded `outbound` items of the calls `ids` (None: all), in order."""
        variant: Variant = ("outbound", fmt, False)
        kept = self._whole(variant, registry) if ids is None else None
        if kept is not None:
            return kept
        legs = registry.outbound_legs(ids)
        entries = zip(legs, _NO_CALLEE, legs, strict=False)  # (_NO_CALLEE never ends)
        return self._encode(variant, registry, ids, entries, outbound_view)

    def inbound(
        self, registry: CallStore, ids: list[str] | None, fmt: Format, callee_as_list: bool
    ) -> EncodedList:
        """The encoded `inbound` items of the calls `ids` (None: all), in order."""
        variant: Variant = ("inbound", fmt, callee_as_list)
        kept = self._whole(variant, registry) if ids is None else None
        if kept is not None:
            return kept
        entries = ((leg, call.callee, call) for call in registry.inbound(ids)
                   if (leg := call.inbound_leg) is not None)
        return self._encode(variant, registry, ids, entries,
                            lambda call: inbound_view(call, callee_as_list))

    def _encode(self, variant: Variant, registry: CallStore, ids: list[str] | None,
                entries: Iterable[tuple[Leg, Leg | None, Any]],
                view: Callable[[Any], dict[str, Any]]) -> EncodedList:
        """The answer for `entries` ((leg, callee leg, what `view` shows)), each item
        encoded again only if its leg, status or callee changed since it was kept."""
        name, fmt, _ = variant
        items = self._items.setdefault(variant, {})
        out: list[bytes] = []
        for leg, callee, source in entries:
            held = items.get(leg.id)
            if (held is None or held[0] is not leg or held[1] is not leg.status
                    or held[2] is not callee):
                held = items[leg.id] = (leg, leg.status, callee,
                                        encode_item(name, view(source), fmt))
                self.encoded += 1
            out.append(held[3])
        answer = EncodedList(name, fmt, out)
        if ids is None:
            self._all[variant] = (registry, registry.changes, answer)
        if len(items) > 2 * registry.leg_count() + _SWEEP_SLACK:
            self._items[variant] = {k: v for k, v in items.items() if registry.has_leg(k)}
        return answer

    def __len__(self) -> int:
        return sum(len(items) for items in self._items.values())

    def _whole(self, variant: Variant, registry: CallStore) -> EncodedList | None:
        """The list of all items made while the registry was as it is now, if any."""
        kept = self._all.get(variant)
        if kept is not None and kept[0] is registry and kept[1] == registry.changes:
            return kept[2]
        return None
