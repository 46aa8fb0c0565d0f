"""Every RFC 4475 torture message and the answer ippbx owes it, for the stack-level tests.

The messages are the files of tests/unit/sip/torture (valid/ §3.1.1, invalid/ §3.1.2,
semantic/ §3.2-§3.4; see its README). `ANSWERS` says, for each, which responses a server
sends back when the message arrives over UDP and over TCP from an address ippbx does not
know (no trunk there, no credentials): the statuses in the order they go out, () for
none. Used by tests/unit/sip/test_torture_answers.py (the SIP core and the B2BUA fed the
bytes, sans-IO) and tests/integration/test_sip_torture.py (a running ippbx on loopback).

Why each answer (RFC 4475 section, then RFC 3261 unless said otherwise):

- A request we cannot parse gets 400 when a Via and a CSeq can be read (§8.2.6, §18.3),
  505 for an unknown SIP version (§8.2.6 / RFC 4475 §3.1.2.16), 501 for an unknown
  method whose CSeq disagrees (RFC 4475 §3.1.2.18). A response is never answered, nor
  an ACK.
- A request the SIP core can parse meets the UAS checks of §8.2 in their order: method
  (501 for one ippbx implements for no one, §8.2.1), Request-URI scheme (416,
  §8.2.2.1), Require (420 + Unsupported, §8.2.2.3), then what the PBX does with it: an
  OPTIONS is answered 200 with Allow (§11.2), a request whose To tag names no dialog
  481 (§12.2.2), a REGISTER challenged 401 and an INVITE 407 (§22: authentication
  comes before content processing, §8.2 and §10.3; so the 415 an unknown body type gets,
  §8.2.3, and the 406 an impossible Accept gets, are only due once the caller proved
  who it is).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["TORTURE", "ANSWERS", "Answer", "load", "fixture_names"]

TORTURE = Path(__file__).resolve().parent / "unit" / "sip" / "torture"


@dataclass(frozen=True)
class Answer:
    """What a message of RFC 4475 `section` gets over UDP and over TCP, and why."""

    section: str
    udp: tuple[int, ...]
    tcp: tuple[int, ...]
    why: str


def both(section: str, statuses: tuple[int, ...], why: str) -> Answer:
    return Answer(section, statuses, statuses, why)


ANSWERS: dict[str, Answer] = {
    # §3.1.1 valid messages
    "wsinv": both("3.1.1.1", (481,), "valid INVITE whose To tag names no dialog: 481"),
    "intmeth": both("3.1.1.2", (501,), "valid; a method ippbx does not implement: 501"),
    "esc01": both("3.1.1.3", (407,), "valid INVITE from an unknown caller: challenged"),
    "escnull": both("3.1.1.4", (401,), "valid REGISTER (escaped NULs): challenged"),
    "esc02": both("3.1.1.5", (501,), "RE%47IST%45R is not REGISTER: unknown method, 501"),
    "lwsdisp": both("3.1.1.6", (200,), "valid OPTIONS: 200"),
    "longreq": both("3.1.1.7", (407,), "valid (long) INVITE: challenged"),
    "dblreq": Answer("3.1.1.8", (401,), (401, 407),
                     "UDP: the octets past Content-Length are ignored (REGISTER: 401); "
                     "TCP: they are the next message (INVITE: 407)"),
    "semiuri": both("3.1.1.9", (200,), "valid OPTIONS (';' in the user part): 200"),
    "transports": both("3.1.1.10", (200,), "valid OPTIONS (unknown transports): 200"),
    "mpart01": both("3.1.1.11", (501,), "valid MESSAGE, a method ippbx does not serve: 501"),
    "unreason": both("3.1.1.12", (), "a response: never answered"),
    "noreason": both("3.1.1.13", (), "a response: never answered"),
    # §3.1.2 invalid messages
    "badinv01": both("3.1.2.1", (400,), "empty Via/Contact parameters: 400"),
    "clerr": Answer("3.1.2.2", (400,), (),
                    "UDP: body shorter than Content-Length, 400; TCP: the server can "
                    "only wait for the missing octets (the idle timeout closes it)"),
    "ncl": both("3.1.2.3", (400,), "negative Content-Length: 400"),
    "scalar02": both("3.1.2.4", (400,), "CSeq number over 2**31-1: 400"),
    "scalarlg": both("3.1.2.5", (), "a malformed response: dropped"),
    "quotbal": both("3.1.2.6", (400,), "unterminated quoted string in To: 400"),
    "ltgtruri": both("3.1.2.7", (400,), "Request-URI in <>: 400"),
    "lwsruri": both("3.1.2.8", (400,), "LWS in the Request-URI: 400"),
    "lwsstart": both("3.1.2.9", (400,), "several SP between Request-Line elements: 400"),
    "trws": both("3.1.2.10", (400,), "SP after the SIP version: 400 (the RFC allows it)"),
    "escruri": both("3.1.2.11", (400,), "?headers in a SIP Request-URI: 400"),
    "baddate": both("3.1.2.12", (407,), "a non-GMT Date must not be rejected: challenged"),
    "regbadct": both("3.1.2.13", (400,), "Contact URI with '?' outside <>: 400"),
    "badaspec": both("3.1.2.14", (400,), "spaces inside <> of To: 400"),
    "baddn": both("3.1.2.15", (400,), "unquoted display name with ',': 400"),
    "badvers": both("3.1.2.16", (505,), "SIP/7.0: 505 Version Not Supported"),
    "mismatch01": both("3.1.2.17", (400,), "CSeq method differs from a known method: 400"),
    "mismatch02": both("3.1.2.18", (501,), "unknown method, CSeq differs: 501"),
    "bigcode": both("3.1.2.19", (), "a response with a 10-digit code: dropped"),
    # §3.2 transaction layer
    "badbranch": both("3.2.1", (200,), "branch is the bare magic cookie: matched the "
                      "RFC 2543 way, the OPTIONS answered 200"),
    # §3.3 application layer
    "insuf": both("3.3.1", (400,), "no Call-ID, From or To: 400 (the RFC's ideal), "
                  "copying the Via and CSeq the client matches responses with"),
    "unkscm": both("3.3.2", (416,), "Request-URI scheme nobody knows: 416"),
    "novelsc": both("3.3.3", (416,), "soap.beep Request-URI, a scheme ippbx never "
                    "serves: 416"),
    "unksm2": both("3.3.4", (400,), "a registrar rejects a REGISTER whose To is not a "
                   "SIP URI with 400 (the AOR must be sip:/sips:)"),
    "bext01": both("3.3.5", (420,), "Require of unsupported options: 420 with "
                   "Unsupported listing them (a UAS ignores Proxy-Require)"),
    "invut": both("3.3.6", (407,), "unknown body type: 415 only after authentication; "
                  "an unknown caller is challenged first"),
    "regaut01": both("3.3.7", (401,), "an Authorization in a scheme nobody knows proves "
                     "nothing: a fresh challenge, not a failure"),
    "multi01": both("3.3.8", (400,), "several Call-ID/To/From/CSeq/Max-Forwards: 400"),
    "mcl01": both("3.3.9", (400,), "two Content-Length values: 400"),
    "bcast": both("3.3.10", (), "a response (broadcast second Via): never answered"),
    "zeromf": both("3.3.11", (200,), "Max-Forwards 0: an endpoint still answers its "
                   "OPTIONS (only a proxy says 483)"),
    "cparam01": both("3.3.12", (401,), "valid REGISTER (Contact parameter): challenged"),
    "cparam02": both("3.3.13", (401,), "valid REGISTER (URI parameter): challenged"),
    "regescrt": both("3.3.14", (401,), "valid REGISTER (escaped URI header): challenged"),
    "sdp01": both("3.3.15", (407,), "Accept without SDP: 406 only after authentication; "
                  "an unknown caller is challenged first"),
    # §3.4 backward compatibility
    "inv2543": Answer("3.4.1", (407,), (400,),
                      "RFC 2543 INVITE: UDP, processed (challenged); TCP, no "
                      "Content-Length cannot be framed on a stream (§18.3): 400"),
}


def fixture_names() -> set[str]:
    return {p.stem for p in TORTURE.glob("*/*.sip")}


def load(name: str) -> bytes:
    [path] = TORTURE.glob(f"*/{name}.sip")
    return path.read_bytes()
