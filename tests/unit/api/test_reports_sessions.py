"""Sessions kept in SQLite: they survive a restart with their destination and lifetime;
CDR download tickets are valid 30 s and once."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ippbx.api.downloads import DownloadTickets
from ippbx.api.errors import ApiError, Errno
from ippbx.api.sessions import SessionManager
from ippbx.config import load_config
from ippbx.store.sqlite import Store

MD5 = hashlib.md5(b"apipass").hexdigest()


class Clocks:
    """A monotonic and a wall clock that move together (the monotonic one restarts)."""

    def __init__(self) -> None:
        self.mono = 500.0
        self.wall = 1_700_000_000.0

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds

    def reboot(self, downtime: float) -> None:
        self.mono = 7.0
        self.wall += downtime


def manager(store: Store, clocks: Clocks) -> SessionManager:
    return SessionManager(load_config(None).api, clock=lambda: clocks.mono, store=store,
                          wall_clock=lambda: clocks.wall)


def test_sessions_survive_a_restart(tmp_path: Path) -> None:
    clocks, path = Clocks(), tmp_path / "db.sqlite3"
    store = Store(path)
    first = manager(store, clocks)
    s = first.login("api", MD5, "10.0.0.5", "yeastar", port="8260", url="r", urltag="0",
                    version="1.0.2")
    gone = first.login("api", MD5, "10.0.0.6", "openvox", port="1")
    first.heartbeat(s.token, ipaddr="10.0.0.9", port="8280")
    first.logout(gone.token)
    clocks.advance(100)
    store.close()

    clocks.reboot(downtime=200)
    store = Store(path)
    second = manager(store, clocks)
    [back] = second.live()
    assert (back.token, back.dialect, back.source_ip, back.ipaddr, back.port, back.url,
            back.urltag, back.version) == (s.token, "yeastar", "10.0.0.5", "10.0.0.9", "8280",
                                           "r", "0", "1.0.2")
    assert clocks.mono - back.last_seen == pytest.approx(300)
    clocks.advance(1800 - 300 - 1)
    assert second.check(s.token) is back  # 1 s left: still valid, renewed
    clocks.advance(1800)
    with pytest.raises(ApiError) as err:
        second.check(s.token)
    assert err.value.errno is Errno.TOKEN_EXPIRED
    with pytest.raises(ApiError) as err:
        second.check(gone.token)
    assert err.value.errno is Errno.NO_SUCH_TOKEN


def test_long_forgotten_sessions_are_deleted_at_start(tmp_path: Path) -> None:
    clocks, store = Clocks(), Store(tmp_path / "db.sqlite3")
    manager(store, clocks).login("api", MD5, "10.0.0.5", "openvox", port="1")
    clocks.reboot(downtime=1800 + 6 * 3600)
    assert len(manager(store, clocks)) == 0
    assert store.load_sessions() == []


def test_use_is_written_at_most_once_a_minute() -> None:
    clocks, store = Clocks(), Store(":memory:")
    sessions = manager(store, clocks)
    s = sessions.login("api", MD5, "10.0.0.5", "openvox", port="1")
    written = store.load_sessions()[0].last_seen
    clocks.advance(30)
    sessions.check(s.token)
    assert store.load_sessions()[0].last_seen == written
    clocks.advance(31)
    assert sessions.touch(s.token)
    assert store.load_sessions()[0].last_seen == written + 61


def test_download_tickets_are_valid_30_seconds_and_once() -> None:
    now = [0.0]
    tickets = DownloadTickets(clock=lambda: now[0])
    r1 = tickets.issue("tok", "cdr", {"a": 1}, frozenset({"1.2.3.4"}))
    r2 = tickets.issue("tok", "cdr", {}, frozenset())
    r3 = tickets.issue("tok", "cdr", {}, frozenset())
    assert len(r1) == 32 and len({r1, r2, r3}) == 3
    ticket = tickets.redeem(r1, "tok", "cdr")
    assert ticket is not None and ticket.params == {"a": 1}
    assert tickets.redeem(r1, "tok", "cdr") is None  # once
    assert tickets.redeem(r2, "other", "cdr") is None  # another session's
    assert tickets.redeem(r2, "tok", "cdr") is None  # and used up by that try
    now[0] = 30.0
    assert tickets.redeem(r3, "tok", "cdr") is None  # expired
