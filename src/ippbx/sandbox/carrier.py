"""The simulated carrier: a SIP endpoint bound to the address of the demo's peer trunk.

ippbx sends the calls its extensions dial out (route prefix 9) to the trunk's host:port
and recognises calls coming in on that trunk by their source ip:port, so the carrier
binds exactly that address (127.0.0.1:5080 in the demo) and places its own calls from
it. For each call the PBX sends it, the carrier draws (from its own seeded RNG, five
draws per call) one of:

- busy: 486 after a short post-dial delay (`busy_rate`);
- no answer: 180 and ringing until the PBX's no-answer timer CANCELs (`no_answer_rate`);
- answer: 180, 1-4 s of ringing, 200 with SDP; the far party then either waits for the
  caller's BYE or, now and then (`hangup_rate`), hangs up first after a random time.

`call(caller, did, …)` places an inbound call to a DID, like a caller out in the world.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ippbx.sandbox.endpoint import SDP_HEADERS, AnswerPlan, CallOutcome, Endpoint
from ippbx.sip.message import Request
from ippbx.sip.ua import ServerRequest, TransportFactory
from ippbx.sip.wire import Peer

__all__ = ["Carrier", "CarrierBehaviour"]

USER_AGENT = "ippbx-sandbox-carrier/0.1"


@dataclass(frozen=True, slots=True)
class CarrierBehaviour:
    """How the world beyond the carrier answers the calls sent to it."""

    busy_rate: float = 0.15
    no_answer_rate: float = 0.10
    ring: tuple[float, float] = (1.0, 4.0)  # seconds of ringing before the answer
    post_dial: tuple[float, float] = (0.2, 0.8)  # seconds before a busy signal
    hangup_rate: float = 0.3  # the called party hangs up first…
    hold: tuple[float, float] = (3.0, 25.0)  # …after this much talk

    def __post_init__(self) -> None:
        for name in ("busy_rate", "no_answer_rate", "hangup_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.busy_rate + self.no_answer_rate > 1.0:
            raise ValueError("busy_rate + no_answer_rate must not exceed 1")

    def draw(self, rng: random.Random) -> AnswerPlan:
        """The plan for one call (always five draws)."""
        choice = rng.random()
        ring = rng.uniform(*self.ring)
        post_dial = rng.uniform(*self.post_dial)
        hangs_up = rng.random() < self.hangup_rate
        hold = rng.uniform(*self.hold)
        if choice < self.busy_rate:
            return AnswerPlan(ring=post_dial, final=486, alert=False)
        if choice < self.busy_rate + self.no_answer_rate:
            return AnswerPlan(ring=ring, final=0)
        return AnswerPlan(ring=ring, final=200, hold=hold if hangs_up else None)


class Carrier(Endpoint):
    """The carrier on the trunk's address; see the module docstring."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5080,
        *,
        seed: int | str = 0,
        behaviour: CarrierBehaviour | None = None,
        transport: TransportFactory | None = None,
    ) -> None:
        super().__init__("carrier", host, port, user_agent=USER_AGENT, transport=transport)
        self.behaviour = behaviour or CarrierBehaviour()
        self.rng = random.Random(f"ippbx-sandbox-carrier:{seed}")
        self.pbx: Peer | None = None  # set by `connect` once the PBX is up
        self.received = 0  # calls the PBX sent us

    def connect(self, pbx: Peer) -> None:
        """Where the PBX is (the trunk's far end), for the calls the carrier places."""
        self.pbx = pbx

    async def incoming(self, sr: ServerRequest) -> None:
        self.received += 1
        await self.answer(sr, self.behaviour.draw(self.rng))

    async def call(self, caller: str, did: str, *, talk: float,
                   patience: float | None = None) -> CallOutcome:
        """Call `did` at the PBX, presenting `caller`, from the trunk's own address."""
        if self.pbx is None:
            raise RuntimeError("Carrier.connect(pbx) first")
        pbx = self.pbx
        host = f"[{pbx.host}]" if ":" in pbx.host else pbx.host
        uri = f"sip:{did}@{host}:{pbx.port}"
        me = f"{self.ua.advertised_host}:{self.port}"
        call_id = self.ua.new_call_id()
        tag = self.ua.new_tag()
        body = self.sdp()

        def build(cseq: int, authorization: tuple[str, str] | None) -> Request:
            headers = [
                ("From", f"<sip:{caller}@{me}>;tag={tag}"),
                ("To", f"<sip:{did}@{host}>"),
                ("Call-ID", call_id),
                ("CSeq", f"{cseq} INVITE"),
                ("Contact", f"<{self.ua.contact_uri(caller)}>"),
                *SDP_HEADERS,
            ]
            if authorization is not None:
                headers.append(authorization)
            return Request("INVITE", uri, headers, body)

        return await self.place_call(build, pbx, talk=talk, patience=patience)
