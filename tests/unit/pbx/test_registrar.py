"""The registrar's bindings: expiry and the `max_contacts` limit (newest wins)."""

from __future__ import annotations

from ippbx.config import parse_config
from ippbx.pbx.registrar import Registrar
from ippbx.sip.message import Request, parse_message
from ippbx.sip.wire import Peer

CONFIG = """
[sip]
listen = "127.0.0.1:5060"
[api]
password = "apipass"
[[extensions]]
number = "1001"
password = "secret1001"
[[extensions]]
number = "1002"
password = "secret1002"
max_contacts = 2
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def register(ext: str, *contacts: str, expires: int | None = None, call_id: str = "c",
             cseq: int = 1) -> Request:
    lines = ["REGISTER sip:ippbx.local SIP/2.0",
             f"Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK{call_id}{cseq}",
             f"From: <sip:{ext}@ippbx.local>;tag=1", f"To: <sip:{ext}@ippbx.local>",
             f"Call-ID: {call_id}", f"CSeq: {cseq} REGISTER"]
    lines += [f"Contact: {c}" for c in contacts]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    message = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def listed(reply_headers: tuple[tuple[str, str], ...]) -> list[str]:
    return [v for n, v in reply_headers if n == "Contact"]


def setup() -> tuple[Registrar, Clock]:
    clock = Clock()
    return Registrar(parse_config(CONFIG), None, clock=clock), clock


def test_second_contact_with_shorter_expires_replaces_the_first() -> None:
    registrar, clock = setup()
    source = Peer("10.0.0.9", 5060)
    assert registrar.register(register("1001", "<sip:1001@10.0.0.9>", expires=3600),
                              source, "1001").status == 200
    clock.now += 10
    reply = registrar.register(register("1001", "<sip:1001@10.0.0.10>", expires=120,
                                        call_id="other"), Peer("10.0.0.10", 5060), "1001")
    assert reply.status == 200
    assert listed(reply.headers) == ["<sip:1001@10.0.0.10>;expires=120"]
    [binding] = registrar.contacts("1001")
    assert binding.contact == "sip:1001@10.0.0.10" and binding.source.host == "10.0.0.10"


def test_one_request_with_more_contacts_than_allowed_keeps_the_last() -> None:
    registrar, _ = setup()
    reply = registrar.register(register("1001", "<sip:1001@a>", "<sip:1001@b>", expires=600),
                               Peer("10.0.0.9", 5060), "1001")
    assert listed(reply.headers) == ["<sip:1001@b>;expires=600"]


def test_over_the_limit_the_oldest_registration_goes() -> None:
    registrar, clock = setup()
    source = Peer("10.0.0.9", 5060)
    registrar.register(register("1002", "<sip:1002@a>", expires=60, call_id="a"), source, "1002")
    registrar.register(register("1002", "<sip:1002@b>", expires=3600, call_id="b"), source,
                       "1002")
    clock.now += 1
    # a refreshes (now the newest), then c arrives: b, registered longest ago, goes
    registrar.register(register("1002", "<sip:1002@a>", expires=60, call_id="a", cseq=2),
                       source, "1002")
    reply = registrar.register(register("1002", "<sip:1002@c>", expires=60, call_id="c"),
                               source, "1002")
    assert sorted(listed(reply.headers)) == ["<sip:1002@a>;expires=60",
                                             "<sip:1002@c>;expires=60"]
