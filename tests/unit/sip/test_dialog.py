"""RFC 3261 §12 dialogs: creation, in-dialog requests, CSeq checks, routing, 2xx timer."""

from __future__ import annotations

import pytest

from ippbx.sip.dialog import (
    CONFIRMED,
    EARLY,
    Dialog,
    DialogError,
    DialogStore,
    Retransmit2xx,
)
from ippbx.sip.message import Request, Response, make_response


def invite(record_route: list[str] | None = None, uri: str = "sip:bob@b.example") -> Request:
    headers = [
        ("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1"),
        ("From", '"Alice" <sip:alice@a.example>;tag=atag'),
        ("To", "<sip:bob@b.example>"),
        ("Call-ID", "c1@a"),
        ("CSeq", "7 INVITE"),
        ("Contact", "<sip:alice@10.0.0.1:5060>"),
    ]
    headers += [("Record-Route", r) for r in record_route or []]
    return Request("INVITE", uri, headers, b"v=0")


def answer(req: Request, status: int = 200, contact: str = "<sip:bob@10.0.0.2:5070>",
           tag: str = "btag") -> Response:
    resp = make_response(req, status, to_tag=tag)
    for rr in req.get_all("Record-Route"):
        resp.add("Record-Route", rr)
    resp.add("Contact", contact)
    return resp


def test_uac_dialog_from_2xx() -> None:
    req = invite(["<sip:p2.example;lr>", "<sip:p1.example;lr>"])
    d = Dialog.from_uac(req, answer(req), peer="peer")
    assert d.id == ("c1@a", "atag", "btag")
    assert d.is_uac and d.state == CONFIRMED and not d.secure
    assert d.local_uri == "sip:alice@a.example" and d.remote_uri == "sip:bob@b.example"
    assert d.remote_target == "sip:bob@10.0.0.2:5070"
    assert d.route_set == ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]  # reversed
    assert d.local_cseq == 7 and d.remote_cseq is None and d.peer == "peer"


def test_uas_dialog_from_2xx() -> None:
    req = invite(["<sip:p2.example;lr>", "<sip:p1.example;lr>"])
    d = Dialog.from_uas(req, answer(req, contact="<sip:me@10.0.0.2>"))
    assert d.id == ("c1@a", "btag", "atag")
    assert not d.is_uac and d.remote_cseq == 7 and d.local_cseq == 0
    assert d.remote_target == "sip:alice@10.0.0.1:5060"
    assert d.route_set == ["<sip:p2.example;lr>", "<sip:p1.example;lr>"]  # as received
    assert d.local_contact == "<sip:me@10.0.0.2>"
    bye = d.create_request("BYE")
    assert bye.cseq == (1, "BYE")
    assert bye.get("From") == "<sip:bob@b.example>;tag=btag"
    assert bye.get("To") == '"Alice" <sip:alice@a.example>;tag=atag'


def test_sips_is_secure() -> None:
    req = invite(uri="sips:bob@b.example")
    assert Dialog.from_uac(req, answer(req)).secure


def test_no_dialog_without_tags_or_from_errors() -> None:
    req = invite()
    with pytest.raises(DialogError):
        Dialog.from_uac(req, answer(req, tag=None))  # type: ignore[arg-type]
    with pytest.raises(DialogError):
        Dialog.from_uac(req, answer(req, 486))


def test_create_request_loose_routing_and_cseq() -> None:
    req = invite(["<sip:p2.example;lr>", "<sip:p1.example;lr>"])
    d = Dialog.from_uac(req, answer(req))
    bye = d.create_request("BYE", headers=[("Reason", "Q.850;cause=16")])
    assert bye.method == "BYE" and bye.uri == "sip:bob@10.0.0.2:5070"
    assert bye.get_all("Route") == ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
    assert bye.cseq == (8, "BYE") and bye.call_id == "c1@a"
    assert bye.from_.tag == "atag" and bye.to.tag == "btag"
    assert bye.from_.display == '"Alice"'
    assert bye.get("Contact") is None and bye.get("Reason") == "Q.850;cause=16"
    reinvite = d.create_request("INVITE", b"sdp", [("Content-Type", "application/sdp")])
    assert reinvite.cseq == (9, "INVITE") and reinvite.body == b"sdp"
    assert reinvite.get("Contact") == "<sip:alice@10.0.0.1:5060>"
    ack = d.create_ack()
    assert ack.cseq == (9, "ACK") and ack.uri == "sip:bob@10.0.0.2:5070"
    assert ack.get_all("Route") == bye.get_all("Route")
    assert d.create_request("INFO").cseq == (10, "INFO")
    with pytest.raises(DialogError):
        d.create_request("ACK")


def test_ack_for_initial_invite_uses_its_cseq() -> None:
    req = invite()
    d = Dialog.from_uac(req, answer(req))
    assert d.create_ack(b"late-sdp").cseq == (7, "ACK")
    assert d.create_ack().get("Route") is None
    uas = Dialog.from_uas(req, answer(req))
    with pytest.raises(DialogError):
        uas.create_ack()


def test_strict_routing() -> None:
    req = invite(["<sip:p2.example;lr>", "<sip:p1.example;method=INVITE>"])
    d = Dialog.from_uac(req, answer(req))
    bye = d.create_request("BYE")
    assert bye.uri == "sip:p1.example"
    assert bye.get_all("Route") == ["<sip:p2.example;lr>", "<sip:bob@10.0.0.2:5070>"]


def test_receive_request_checks_cseq_and_refreshes_target() -> None:
    req = invite()
    d = Dialog.from_uas(req, answer(req))
    ok = d.receive_request(Request("INFO", "sip:x", [("CSeq", "8 INFO")]))
    assert ok is None and d.remote_cseq == 8
    assert d.receive_request(Request("BYE", "sip:x", [("CSeq", "5 BYE")])) == 500
    assert d.remote_cseq == 8
    assert d.receive_request(Request("ACK", "sip:x", [("CSeq", "7 ACK")])) is None
    reinv = Request("INVITE", "sip:x", [("CSeq", "9 INVITE"), ("Contact", "<sip:new@10.9.9.9>")])
    assert d.receive_request(reinv) is None
    assert d.remote_target == "sip:new@10.9.9.9"
    bye = Request("BYE", "sip:x", [("CSeq", "10 BYE"), ("Contact", "<sip:no@x>")])
    d.receive_request(bye)
    assert d.remote_target == "sip:new@10.9.9.9"  # BYE does not refresh


def test_uac_remote_cseq_starts_empty() -> None:
    req = invite()
    d = Dialog.from_uac(req, answer(req))
    assert d.receive_request(Request("BYE", "sip:x", [("CSeq", "1 BYE")])) is None
    assert d.remote_cseq == 1


def test_early_dialog_confirmed_by_2xx() -> None:
    req = invite(["<sip:p1.example;lr>"])
    ringing = answer(req, 180, contact="<sip:early@10.0.0.3>")
    d = Dialog.from_uac(req, ringing)
    assert d.state == EARLY and d.remote_target == "sip:early@10.0.0.3"
    ok = answer(req, 200)
    ok.remove("Record-Route")
    ok.add("Record-Route", "<sip:p9.example;lr>")
    d.receive_response(ok)
    assert d.state == CONFIRMED and d.remote_target == "sip:bob@10.0.0.2:5070"
    assert d.route_set == ["<sip:p9.example;lr>"]


def test_receive_response_target_refresh_only_on_2xx() -> None:
    req = invite()
    d = Dialog.from_uac(req, answer(req))
    reinv = d.create_request("INVITE")
    d.receive_response(answer(reinv, 488, contact="<sip:x@1.1.1.1>"))
    assert d.remote_target == "sip:bob@10.0.0.2:5070"
    d.receive_response(answer(reinv, 200, contact="<sip:moved@1.1.1.1>"))
    assert d.remote_target == "sip:moved@1.1.1.1"


def test_store_lookup_both_directions() -> None:
    req = invite()
    ok = answer(req)
    uac = Dialog.from_uac(req, ok)
    uas = Dialog.from_uas(req, ok)  # both ends in one store (a call to ourselves)
    store = DialogStore()
    store.add(uac)
    store.add(uas)
    assert len(store) == 2
    bye_from_b = uas.create_request("BYE")
    assert store.match_request(bye_from_b) is uac
    bye_from_a = uac.create_request("BYE")
    assert store.match_request(bye_from_a) is uas
    assert store.match_response(make_response(bye_from_a, 200)) is uac
    assert store.get("c1@a", "atag", "btag") is uac
    assert uac in store
    assert store.remove(uac) and not store.remove(uac)
    assert store.match_request(bye_from_b) is None
    assert list(store) == [uas]


def test_retransmit_2xx_schedule_and_give_up() -> None:
    ok = Response(200)
    r = Retransmit2xx(ok, "dest", 10.0)
    times = []
    result = ""
    while r.deadline is not None:
        now = r.deadline
        assert r.on_timer(now - 0.01) == "idle"
        result = r.on_timer(now)
        if result == "resend":
            times.append(round(now - 10.0, 6))
    assert result == "give_up" and r.done
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]


def test_retransmit_2xx_stops_on_ack() -> None:
    r = Retransmit2xx(Response(200), "dest", 0.0, t1=0.01, t2=0.04)
    assert r.on_timer(0.01) == "resend"
    r.acknowledge()
    assert r.done and r.on_timer(100.0) == "idle"
