"""The call plan: which call the sandbox places next, drawn from one seeded RNG.

`Planner.next()` returns the next `PlannedCall`: its kind (a phone calling out through
the carrier, a phone calling another phone, the carrier calling a DID), who calls, what
is dialled, how long after the previous call it starts, how long the caller talks once
answered and whether it gives up while ringing. Every field comes from the planner's own
`random.Random(seed)`, a fixed number of draws per call and nothing else (no clock, no
call outcome), so one seed always gives the same sequence of dialled numbers, however the
calls then go. The runner places the calls strictly in plan order.

The first call is always an outbound one (its kind is still drawn, and ignored), so a
fresh demo shows a live call in `outbound/query` within a second or two.

What the far ends do (the carrier's ringing time, busy or not; a phone's answer) is
drawn by each endpoint from its own RNG, so it does not disturb this sequence.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["CallKind", "CallMix", "PlannedCall", "Planner"]


class CallKind(StrEnum):
    OUTBOUND = "outbound"  # phone -> prefix + external number -> carrier
    INTERNAL = "internal"  # phone -> another extension
    INBOUND = "inbound"  # carrier -> DID -> extension


@dataclass(frozen=True, slots=True)
class CallMix:
    """Relative weights of the call kinds, and the callers' habits."""

    outbound: float = 0.6
    internal: float = 0.2
    inbound: float = 0.2
    talk: tuple[float, float] = (4.0, 30.0)  # seconds the caller talks, once answered
    abandon_rate: float = 0.08  # the caller hangs up while it rings…
    patience: tuple[float, float] = (1.0, 3.0)  # …after this many seconds


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """One call of the plan."""

    index: int
    kind: CallKind
    caller: str  # an extension, or (inbound) the number the carrier presents
    dialled: str  # prefix + number, an extension, or a DID
    gap: float  # seconds after the previous call starts
    talk: float  # seconds the caller talks before hanging up, once answered
    patience: float | None  # the caller gives up ringing after this long; None: waits

    def describe(self) -> str:
        text = f"#{self.index} {self.kind.value:<8} {self.caller} -> {self.dialled}"
        if self.patience is not None:
            text += f" (hangs up after {self.patience:.1f}s of ringing)"
        return text


class Planner:
    """An endless, reproducible sequence of calls for a set of extensions and DIDs."""

    def __init__(
        self,
        seed: int | str,
        extensions: list[str],
        prefix: str,
        dids: list[str] | tuple[str, ...] = (),
        *,
        calls_per_minute: float = 20.0,
        mix: CallMix | None = None,
    ) -> None:
        if not extensions:
            raise ValueError("the plan needs at least one extension")
        if calls_per_minute <= 0:
            raise ValueError("calls_per_minute must be positive")
        self.rng = random.Random(f"ippbx-sandbox-plan:{seed}")
        self.extensions = sorted(extensions)
        self.prefix = prefix
        self.dids = list(dids)
        self.rate = calls_per_minute / 60.0
        self.mix = mix = mix or CallMix()
        self.count = 0
        self._kinds = [CallKind.OUTBOUND, CallKind.INTERNAL, CallKind.INBOUND]
        self._weights = [
            mix.outbound,
            mix.internal if len(self.extensions) > 1 else 0.0,
            mix.inbound if self.dids else 0.0,
        ]
        if sum(self._weights) <= 0:
            raise ValueError("no kind of call can be placed with this mix")

    def next(self) -> PlannedCall:
        """The next call. Always the same number of draws, whatever the kind."""
        rng = self.rng
        self.count += 1
        gap = rng.expovariate(self.rate)
        kind = rng.choices(self._kinds, self._weights)[0]
        if self.count == 1 and self._weights[0] > 0:
            kind = CallKind.OUTBOUND
        ext = rng.choice(self.extensions)
        other = rng.choice([e for e in self.extensions if e != ext] or self.extensions)
        external = f"555{rng.randrange(10_000):04d}"
        presented = f"0{rng.randrange(100_000_000, 1_000_000_000)}"
        did = rng.choice(self.dids) if self.dids else ""
        talk = rng.uniform(*self.mix.talk)
        abandons = rng.random() < self.mix.abandon_rate
        patience = rng.uniform(*self.mix.patience)
        if kind is CallKind.OUTBOUND:
            caller, dialled = ext, self.prefix + external
        elif kind is CallKind.INTERNAL:
            caller, dialled = ext, other
        else:
            caller, dialled = presented, did
        return PlannedCall(
            index=self.count,
            kind=kind,
            caller=caller,
            dialled=dialled,
            gap=gap,
            talk=round(talk, 3),
            patience=round(patience, 3) if abandons else None,
        )
