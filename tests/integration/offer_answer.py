"""What each party of an offer/answer test must have sent and received, message by message.

The sipp scenarios `tests/sipp/oa_*.xml` play callers and callees whose SDP tells them
apart: the caller's offer or answer is `o=caller 6000 1` with `m=audio 6000` (a later
one `o=caller 6000 2`, `m=audio 6002`), the callee's `o=callee 7000 1` with
`m=audio 7000` (later `o=callee 7000 2`, `m=audio 7002`). The same checks run on two
sipp's message logs (`trace_msg=True`) whether they talk to each other directly
(test_sipp_offer_answer_pairs.py, which proves the scenarios and these checks right) or
through ippbx (test_sip_offer_answer.py, where ippbx, a B2BUA, must pass each SDP on
unchanged).

`Party(result)` names every message of a log by its exchange: a request by its method
("INVITE", "reINVITE" for an INVITE inside a dialog, "PRACK", "UPDATE", "INFO", "BYE"),
a response by its request and status ("INVITE 180", "PRACK 200"), an ACK or CANCEL by its
INVITE ("INVITE ACK", "INVITE CANCEL", and "INVITE CANCEL 200" for the answer to the
CANCEL). An INVITE answered 401/407, its answers and its ACK are "challenged" and not
looked at (digest auth is not offer/answer). `Party.bodies({...})` then checks each
message of the log: a name mapped to a regular expression must have a body it matches, any
other message none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from sipp_harness import LoggedMessage, SippResult

CALLER_1 = r"o=caller 6000 1 .*\nm=audio 6000 "  # the caller's first offer or answer
CALLER_2 = r"o=caller 6000 2 .*\nm=audio 6002 "  # its second
CALLEE_1 = r"o=callee 7000 1 .*\nm=audio 7000 "
CALLEE_2 = r"o=callee 7000 2 .*\nm=audio 7002 "
HOLD = r"o=caller 6000 2 .*\nm=audio 6000 .*\na=sendonly"  # the caller's UPDATE (flow 4)
HELD = r"o=callee 7000 2 .*\nm=audio 7000 .*\na=recvonly"  # the callee's answer to it
DTMF = r"^Signal=\d\nDuration=\d+$"
# what ippbx answers an OPTIONS with (src/ippbx/pbx/capabilities.py)
ALLOWED = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "PRACK", "UPDATE", "INFO",
           "REFER")


def body(message: LoggedMessage) -> str:
    parts = message.text.split("\n\n", 1)
    return parts[1].strip("\n") if len(parts) == 2 else ""


def cseq(message: LoggedMessage) -> tuple[int, str]:
    number, method = (message.header("CSeq") or "0 ?").split()
    return int(number), method.upper()


def method_of(message: LoggedMessage) -> str | None:
    """The method of a request, None for a response."""
    first = message.first_line
    return None if first.startswith("SIP/2.0 ") else first.split(" ", 1)[0].upper()


def status_of(message: LoggedMessage) -> int:
    return int(message.first_line.split()[1])


def to_tag(message: LoggedMessage) -> str | None:
    m = re.search(r";\s*tag=([^;>\s]+)", message.header("To") or "")
    return m.group(1) if m else None


def tokens(value: str | None) -> list[str]:
    """A comma-separated header value as lower-case tokens."""
    return [t.strip().lower() for t in (value or "").split(",") if t.strip()]


def lines(messages: list[LoggedMessage]) -> str:
    return "\n".join(f"  {m.direction:8} {m.first_line}  [{m.header('CSeq')}]" for m in messages)


@dataclass(frozen=True)
class Named:
    name: str
    message: LoggedMessage


class Party:
    """One sipp's message log, each message named by its exchange (module docstring)."""

    def __init__(self, who: str, result: SippResult) -> None:
        self.who = who
        self.messages = result.messages()
        self.named = self._name_all()

    def _name_all(self) -> list[Named]:
        requests: dict[tuple[int, str, str], str] = {}  # (cseq, method, direction) → name
        challenged: set[tuple[int, str]] = set()  # (cseq, request direction)
        for m in self.messages:
            if method_of(m) is None and status_of(m) in (401, 407):
                other = "sent" if m.direction == "received" else "received"
                challenged.add((cseq(m)[0], other))
        for m in self.messages:
            method = method_of(m)
            if method is None or method in ("ACK", "CANCEL"):
                continue
            number, _ = cseq(m)
            name = method
            if method == "INVITE":
                if (number, m.direction) in challenged:
                    name = "challenged"
                elif to_tag(m) is not None:
                    name = "reINVITE"
            requests.setdefault((number, method, m.direction), name)
        out = []
        for m in self.messages:
            method = method_of(m)
            number, cseq_method = cseq(m)
            if method in ("ACK", "CANCEL"):
                invite = requests.get((number, "INVITE", m.direction), "INVITE")
                name = f"{invite} {method}"
            elif method is not None:
                name = requests[(number, method, m.direction)]
            else:
                other = "sent" if m.direction == "received" else "received"
                if cseq_method == "CANCEL":
                    invite = requests.get((number, "INVITE", other), "INVITE")
                    request = f"{invite} CANCEL"
                else:
                    request = requests.get((number, cseq_method, other), cseq_method)
                name = f"{request} {status_of(m)}"
            if name.startswith("challenged"):
                continue
            out.append(Named(name, m))
        return out

    def describe(self) -> str:
        return f"{self.who} saw:\n" + "\n".join(
            f"  {n.message.direction:8} {n.name:22} {n.message.first_line}" for n in self.named)

    def all(self, name: str, direction: str | None = None) -> list[LoggedMessage]:
        return [n.message for n in self.named
                if n.name == name and (direction is None or n.message.direction == direction)]

    def one(self, name: str, direction: str) -> LoggedMessage:
        """The only message `name` that went `direction` ("sent"/"received"): a second one
        (a retransmission) fails too."""
        found = self.all(name, direction)
        assert len(found) == 1, (f"{self.who}: {len(found)} {name} {direction}, expected 1\n"
                                 f"{self.describe()}")
        return found[0]

    def none(self, name: str) -> None:
        assert not self.all(name), f"{self.who}: unexpected {name}\n{self.describe()}"

    def index(self, message: LoggedMessage) -> int:
        return self.messages.index(message)

    def bodies(self, expected: Mapping[str, str | None]) -> None:
        """Every message named in `expected` occurred, and has a body matching the regular
        expression given (an SDP one as application/sdp), or none for None; every message
        not named has no body."""
        for name in expected:
            assert self.all(name), f"{self.who}: no {name}\n{self.describe()}"
        for n in self.named:
            text = body(n.message)
            pattern = expected.get(n.name)
            where = f"{self.who}: {n.message.direction} {n.name}:\n{n.message.text}"
            if pattern is None:
                assert text == "", f"{where}\n--- expected no body"
                continue
            assert re.search(pattern, text, re.M | re.S), f"{where}\n--- expected /{pattern}/"
            if text.startswith("v=0"):
                assert (n.message.header("Content-Type") or "").lower() == "application/sdp", where

    def distinct(self) -> None:
        """Nothing received twice (no retransmission reached this party)."""
        seen: set[str] = set()
        for m in self.messages:
            if m.direction == "received":
                assert m.text not in seen, f"{self.who} received twice:\n{m.text}"
                seen.add(m.text)


def passed_on(sender: Party, receiver: Party, name: str) -> LoggedMessage:
    """`sender` sent `name` once and `receiver` got it once, with the same body (and
    Content-Type): what a B2BUA must pass on unchanged. The received message."""
    sent = sender.one(name, "sent")
    got = receiver.one(name, "received")
    assert body(got) == body(sent), (
        f"{name}: {receiver.who} got a body other than {sender.who} sent\n"
        f"--- sent\n{body(sent)}\n--- received\n{body(got)}")
    if body(sent):
        assert (got.header("Content-Type") or "").lower() == \
            (sent.header("Content-Type") or "").lower(), (sent.text, got.text)
    return got


# -- the checks of each flow (both parties; `caller` is the UAC, `callee` the UAS) --------
def check_late_offer(caller: Party, callee: Party) -> None:
    """1/2: INVITE without SDP; the 200 offers, the ACK answers."""
    expected = {"INVITE": None, "INVITE 200": CALLEE_1, "INVITE ACK": CALLER_1, "BYE": None,
                "BYE 200": None}
    caller.bodies(expected)
    callee.bodies(expected)
    passed_on(callee, caller, "INVITE 200")
    passed_on(caller, callee, "INVITE ACK")


def check_basic(caller: Party, callee: Party) -> None:
    """An ordinary call: the INVITE offers, the 200 answers; 180 without SDP."""
    expected = {"INVITE": CALLER_1, "INVITE 180": None, "INVITE 200": CALLEE_1,
                "INVITE ACK": None, "BYE": None, "BYE 200": None}
    caller.bodies(expected)
    callee.bodies(expected)
    passed_on(caller, callee, "INVITE")
    passed_on(callee, caller, "INVITE 200")


def check_reinvite_without_sdp(caller: Party, callee: Party) -> None:
    """3: after an ordinary set-up, a re-INVITE without SDP; its 200 offers anew
    (m=audio 7002), its ACK answers (m=audio 6002)."""
    expected = {"INVITE": CALLER_1, "INVITE 200": CALLEE_1, "INVITE ACK": None,
                "reINVITE": None, "reINVITE 200": CALLEE_2, "reINVITE ACK": CALLER_2,
                "BYE": None, "BYE 200": None}
    caller.bodies(expected)
    callee.bodies(expected)
    for sender, receiver, name in ((caller, callee, "INVITE"), (callee, caller, "INVITE 200"),
                                   (callee, caller, "reINVITE 200"),
                                   (caller, callee, "reINVITE ACK")):
        passed_on(sender, receiver, name)


def check_update(caller: Party, callee: Party) -> None:
    """4: an UPDATE in the confirmed dialog offers a=sendonly, its 200 answers
    a=recvonly."""
    expected = {"INVITE": CALLER_1, "INVITE 200": CALLEE_1, "INVITE ACK": None,
                "UPDATE": HOLD, "UPDATE 200": HELD, "BYE": None, "BYE 200": None}
    caller.bodies(expected)
    callee.bodies(expected)
    for sender, receiver, name in ((caller, callee, "INVITE"), (callee, caller, "INVITE 200"),
                                   (caller, callee, "UPDATE"), (callee, caller, "UPDATE 200")):
        passed_on(sender, receiver, name)
    update = callee.one("UPDATE", "received")
    assert to_tag(update) == to_tag(callee.one("INVITE 200", "sent")), update.text


def reliable(message: LoggedMessage) -> int:
    """The RSeq of a reliable provisional response (which must require 100rel)."""
    assert "100rel" in tokens(message.header("Require")), message.text
    rseq = message.header("RSeq") or ""
    assert rseq.isdigit(), message.text
    return int(rseq)


def check_prack(party: Party, provisional: str, side: str) -> LoggedMessage:
    """`party` got (side "received") or sent ("sent") the reliable `provisional` and the
    PRACK for it went the other way, in its early dialog (RFC 3262 §7.2); the PRACK."""
    other = "sent" if side == "received" else "received"
    response = party.one(provisional, side)
    rseq = reliable(response)
    invite = party.one("INVITE", other)
    prack = party.one("PRACK", other)
    assert prack.header("RAck") == f"{rseq} {cseq(invite)[0]} INVITE", (prack.text, invite.text)
    assert to_tag(prack) == to_tag(response) is not None, (prack.text, response.text)
    assert prack.header("Call-ID") == invite.header("Call-ID"), prack.text
    party.one("PRACK 200", side)
    # the PRACK was answered before the INVITE was
    assert party.index(prack) < party.index(party.one("INVITE 200", side)), party.describe()
    return prack


def check_reliable_180(caller: Party, callee: Party) -> None:
    """5: a reliable 180 without SDP, PRACKed, on both sides; the INVITE offers, the 200
    answers."""
    expected = {"INVITE": CALLER_1, "INVITE 180": None, "PRACK": None, "PRACK 200": None,
                "INVITE 200": CALLEE_1, "INVITE ACK": None, "BYE": None, "BYE 200": None}
    caller.bodies(expected)
    callee.bodies(expected)
    check_prack(caller, "INVITE 180", "received")
    check_prack(callee, "INVITE 180", "sent")
    passed_on(caller, callee, "INVITE")
    passed_on(callee, caller, "INVITE 200")


def check_unreliable_180(caller: Party) -> None:
    """5 (caller without 100rel): its 180 is not reliable and it sends no PRACK."""
    ringing = caller.one("INVITE 180", "received")
    assert "100rel" not in tokens(ringing.header("Require")), ringing.text
    assert ringing.header("RSeq") is None, ringing.text
    caller.none("PRACK")
    caller.bodies({"INVITE": CALLER_1, "INVITE 180": None, "INVITE 200": CALLEE_1,
                   "INVITE ACK": None, "BYE": None, "BYE 200": None})


def check_prack_with_sdp(caller: Party, callee: Party) -> None:
    """6: INVITE without SDP, the reliable 183 offers, the PRACK answers; 200 and ACK
    without SDP."""
    expected = {"INVITE": None, "INVITE 183": CALLEE_1, "PRACK": CALLER_1, "PRACK 200": None,
                "INVITE 200": None, "INVITE ACK": None, "BYE": None, "BYE 200": None}
    caller.bodies(expected)
    callee.bodies(expected)
    check_prack(caller, "INVITE 183", "received")
    check_prack(callee, "INVITE 183", "sent")
    passed_on(callee, caller, "INVITE 183")
    passed_on(caller, callee, "PRACK")


def check_early_update(caller: Party, callee: Party) -> None:
    """7: the INVITE offers, the reliable 183 answers, PRACK; an UPDATE in the early
    dialog offers anew (m=audio 6002), its 200 answers (m=audio 7002); then the INVITE's
    200 (no SDP)."""
    expected = {"INVITE": CALLER_1, "INVITE 183": CALLEE_1, "PRACK": None, "PRACK 200": None,
                "UPDATE": CALLER_2, "UPDATE 200": CALLEE_2, "INVITE 200": None,
                "INVITE ACK": None, "BYE": None, "BYE 200": None}
    caller.bodies(expected)
    callee.bodies(expected)
    check_prack(caller, "INVITE 183", "received")
    check_prack(callee, "INVITE 183", "sent")
    for sender, receiver, name in ((caller, callee, "INVITE"), (callee, caller, "INVITE 183"),
                                   (caller, callee, "UPDATE"), (callee, caller, "UPDATE 200")):
        passed_on(sender, receiver, name)
    for party, side in ((caller, "sent"), (callee, "received")):
        update = party.one("UPDATE", side)
        early = party.one("INVITE 183", "received" if side == "sent" else "sent")
        final = party.one("INVITE 200", "received" if side == "sent" else "sent")
        assert to_tag(update) == to_tag(early), (update.text, early.text)  # the early dialog
        assert party.index(update) < party.index(final), party.describe()


def check_info(caller: Party, callee: Party) -> None:
    """8: an INFO each way (application/dtmf-relay), each passed on unchanged."""
    expected = {"INVITE": CALLER_1, "INVITE 200": CALLEE_1, "INVITE ACK": None,
                "INFO": DTMF, "INFO 200": None, "BYE": None, "BYE 200": None}
    caller.bodies(expected)
    callee.bodies(expected)
    passed_on(caller, callee, "INVITE")
    passed_on(callee, caller, "INVITE 200")
    for sender, receiver, digit in ((caller, callee, "5"), (callee, caller, "9")):
        info = passed_on(sender, receiver, "INFO")
        assert (info.header("Content-Type") or "").lower() == "application/dtmf-relay", info.text
        assert body(info).startswith(f"Signal={digit}\n"), info.text
        sender.one("INFO 200", "received")
        receiver.one("INFO 200", "sent")


def check_unsupported(caller: Party) -> None:
    """9: the INVITE with Require: foo got 420 with Unsupported: foo, and was ACKed."""
    caller.bodies({"INVITE": CALLER_1, "INVITE 420": None, "INVITE ACK": None})
    rejected = caller.one("INVITE 420", "received")
    assert tokens(rejected.header("Unsupported")) == ["foo"], rejected.text
    caller.none("INVITE 200")


def check_early_bye_caller(caller: Party) -> None:
    """10, the caller's side: 180 (To tag), BYE with that tag, 200 for the BYE, then 487
    for the INVITE, ACK."""
    caller.bodies({"INVITE": CALLER_1, "INVITE 180": None, "BYE": None, "BYE 200": None,
                   "INVITE 487": None, "INVITE ACK": None})
    ringing = caller.one("INVITE 180", "received")
    bye = caller.one("BYE", "sent")
    assert to_tag(bye) == to_tag(ringing) is not None, (bye.text, ringing.text)
    ok, terminated = caller.one("BYE 200", "received"), caller.one("INVITE 487", "received")
    assert caller.index(ok) < caller.index(terminated), caller.describe()
    caller.none("INVITE 200")


def check_options(answer: LoggedMessage) -> None:
    """11: the 200 to an OPTIONS lists what ippbx handles."""
    assert answer.first_line.startswith("SIP/2.0 200"), answer.text
    assert set(tokens(answer.header("Allow"))) >= {m.lower() for m in ALLOWED}, answer.text
    assert "application/sdp" in tokens(answer.header("Accept")), answer.text
    assert "100rel" in tokens(answer.header("Supported")), answer.text
    assert body(answer) == "", answer.text
