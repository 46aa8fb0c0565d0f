"""The dialog journal: what reaches the store, and when (batched, short calls never)."""

from __future__ import annotations

from ippbx.pbx.leftover_dialogs import CSEQ_MARGIN, DialogJournal, _dialog
from ippbx.sip.dialog import Dialog
from ippbx.sip.wire import Peer
from ippbx.store.sqlite import Store


def dialog(n: int) -> Dialog:
    return Dialog(call_id=f"c{n}", local_tag=f"l{n}", remote_tag=f"r{n}",
                  local_addr=f"<sip:1001@pbx>;tag=l{n}", remote_addr=f"<sip:x@h>;tag=r{n}",
                  local_cseq=7, remote_cseq=1, remote_target="sip:x@127.0.0.9:5070",
                  route_set=["<sip:proxy;lr>"], secure=False, is_uac=True,
                  peer=Peer("127.0.0.9", 5070, "udp"))


def test_only_flushes_write_and_a_call_shorter_than_a_flush_is_never_written() -> None:
    store = Store(":memory:")
    journal = DialogJournal(store, clock=lambda: 1000.0)
    a, b = dialog(1), dialog(2)
    journal.saved(a)
    journal.saved(b)
    journal.ended(b)  # over before the next flush
    assert store.dialogs_load() == []
    journal.flush()
    [row] = store.dialogs_load()
    assert (row.key, row.host, row.port, row.route_set, row.local_cseq) == (
        ("c1", "l1", "r1"), "127.0.0.9", 5070, ("<sip:proxy;lr>",), 7)
    journal.ended(a)
    journal.flush()
    assert store.dialogs_load() == []


def test_a_journalled_dialog_rebuilds_for_its_bye() -> None:
    store = Store(":memory:")
    journal = DialogJournal(store)
    journal.saved(dialog(3))
    journal.flush()
    [row] = store.dialogs_load()
    again = _dialog(row)
    bye = again.create_request("BYE")
    assert bye.uri == "sip:x@127.0.0.9:5070"  # (loose routing: the remote target)
    assert bye.get("Route") == "<sip:proxy;lr>"
    assert bye.cseq == (7 + CSEQ_MARGIN + 1, "BYE")
    assert bye.get("Call-ID") == "c3" and "tag=l3" in (bye.get("From") or "")
    assert again.peer == Peer("127.0.0.9", 5070, "udp")
