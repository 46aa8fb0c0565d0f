"""Sessions: login, lockout, token lifetime and heartbeat, driven by a fake clock."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from ippbx.api.errors import ApiError, Errno
from ippbx.api.sessions import FORGET_AFTER, SessionManager, check_port, md5_hex
from ippbx.config import ApiSection

if TYPE_CHECKING:
    from conftest import FakeClock

GOOD = md5_hex("apipass")


def manager(clock: FakeClock, **api: object) -> SessionManager:
    return SessionManager(ApiSection(password="apipass", **api), clock=clock)  # type: ignore[arg-type]


def errno_of(fn: object, *args: object, **kwargs: object) -> Errno:
    with pytest.raises(ApiError) as info:
        fn(*args, **kwargs)  # type: ignore[operator]
    return info.value.errno


def test_md5_hex_is_lowercase() -> None:
    assert md5_hex("apipass") == "146079b602960d62e6df7c96b4502b32"
    assert md5_hex("123456") == "e10adc3949ba59abbe56e057f20f883e"


def test_login_gives_a_32_hex_token_and_stores_the_destination(clock: FakeClock) -> None:
    sessions = manager(clock)
    s = sessions.login("api", GOOD, "10.1.2.3", "openvox", port="8260", url="x:1/r",
                       urltag="1", version="1.0.2")
    assert re.fullmatch("[0-9a-f]{32}", s.token)
    assert (s.dialect, s.source_ip, s.port, s.url, s.urltag, s.version) == (
        "openvox", "10.1.2.3", "8260", "x:1/r", "1", "1.0.2")
    assert s.report_ip == "10.1.2.3"
    assert s.token not in repr(s)
    assert sessions.check(s.token) is s


@pytest.mark.parametrize(
    ("username", "password", "errno"),
    [("api", "APIPASS", Errno.BAD_CREDENTIALS), ("api", GOOD.upper(), Errno.BAD_CREDENTIALS),
     ("nobody", GOOD, Errno.BAD_CREDENTIALS), ("api", "", Errno.MISSING_PARAM),
     (None, GOOD, Errno.MISSING_PARAM), ("api", "é", Errno.BAD_CREDENTIALS)],
)
def test_login_refusals(
    clock: FakeClock, username: str | None, password: str, errno: Errno
) -> None:
    sessions = manager(clock)
    assert errno_of(sessions.login, username, password, "10.0.0.1", "openvox") == errno


def test_bad_port_is_20008(clock: FakeClock) -> None:
    sessions = manager(clock)
    for port in ("65536", "-1", "http", "８２６０"):
        assert errno_of(sessions.login, "api", GOOD, "1.1.1.1", "x", port=port) == Errno.BAD_PORT
    assert check_port(" 08260 ") == "8260"
    assert check_port("") == ""


def test_lockout_after_five_failures_for_ten_minutes(clock: FakeClock) -> None:
    sessions = manager(clock)
    for _ in range(5):
        assert errno_of(sessions.login, "api", "bad", "10.0.0.9", "o") == Errno.BAD_CREDENTIALS
    assert sessions.locked("10.0.0.9")
    assert errno_of(sessions.login, "api", GOOD, "10.0.0.9", "o") == Errno.IP_LOCKED
    sessions.login("api", GOOD, "10.0.0.10", "o")  # another address is not affected
    clock.advance(599)
    assert errno_of(sessions.login, "api", GOOD, "10.0.0.9", "o") == Errno.IP_LOCKED
    clock.advance(1)
    sessions.login("api", GOOD, "10.0.0.9", "o")
    # the count restarted: four failures do not lock
    for _ in range(4):
        errno_of(sessions.login, "api", "bad", "10.0.0.9", "o")
    assert not sessions.locked("10.0.0.9")


def test_success_resets_the_failure_count(clock: FakeClock) -> None:
    sessions = manager(clock)
    for _ in range(4):
        errno_of(sessions.login, "api", "bad", "10.0.0.9", "o")
    sessions.login("api", GOOD, "10.0.0.9", "o")
    for _ in range(4):
        errno_of(sessions.login, "api", "bad", "10.0.0.9", "o")
    assert not sessions.locked("10.0.0.9")
    errno_of(sessions.login, "api", "bad", "10.0.0.9", "o")
    assert sessions.locked("10.0.0.9")


def test_old_failures_are_forgotten(clock: FakeClock) -> None:
    sessions = manager(clock)
    for _ in range(4):
        errno_of(sessions.login, "api", "bad", "10.0.0.9", "o")
    clock.advance(600)
    errno_of(sessions.login, "api", "bad", "10.0.0.9", "o")
    assert not sessions.locked("10.0.0.9")


def test_lockout_values_come_from_config(clock: FakeClock) -> None:
    sessions = manager(clock, lockout_failures=2, lockout_seconds=30)
    for _ in range(2):
        errno_of(sessions.login, "api", "bad", "h", "o")
    assert errno_of(sessions.login, "api", GOOD, "h", "o") == Errno.IP_LOCKED
    clock.advance(30)
    sessions.login("api", GOOD, "h", "o")


def test_allowed_ips(clock: FakeClock) -> None:
    sessions = manager(clock, allowed_ips=["192.168.1.0/24", "2001:db8::/32", "10.9.9.9"])
    sessions.login("api", GOOD, "192.168.1.77", "o")
    sessions.login("api", GOOD, "::ffff:10.9.9.9", "o")
    sessions.login("api", GOOD, "2001:db8::5", "o")
    for ip in ("192.168.2.1", "127.0.0.1", "not-an-ip", ""):
        assert errno_of(sessions.login, "api", GOOD, ip, "o") == Errno.IP_LOCKED
    assert manager(clock).ip_allowed("203.0.113.1")


def test_token_errors(clock: FakeClock) -> None:
    sessions = manager(clock)
    assert errno_of(sessions.check, None) == Errno.TOKEN_MISSING
    assert errno_of(sessions.check, "") == Errno.TOKEN_MISSING
    assert errno_of(sessions.check, "0" * 32) == Errno.NO_SUCH_TOKEN


def test_sliding_expiry_then_forgotten(clock: FakeClock) -> None:
    sessions = manager(clock)
    token = sessions.login("api", GOOD, "h", "o").token
    for _ in range(10):  # used every 29 minutes: stays valid for hours
        clock.advance(1799)
        sessions.check(token)
    clock.advance(1800)
    assert errno_of(sessions.check, token) == Errno.TOKEN_EXPIRED
    assert sessions.live() == ()
    clock.advance(FORGET_AFTER)
    assert errno_of(sessions.check, token) == Errno.NO_SUCH_TOKEN
    assert len(sessions) == 0


def test_touch_renews_only_live_sessions(clock: FakeClock) -> None:
    sessions = manager(clock)
    token = sessions.login("api", GOOD, "h", "o").token
    clock.advance(1700)
    assert sessions.touch(token)
    clock.advance(1700)
    sessions.check(token)
    clock.advance(1800)
    assert not sessions.touch(token)
    assert not sessions.touch("nope")
    assert errno_of(sessions.check, token) == Errno.TOKEN_EXPIRED


def test_sessions_coexist_and_logout_ends_only_its_own(clock: FakeClock) -> None:
    sessions = manager(clock)
    a = sessions.login("api", GOOD, "h", "openvox").token
    b = sessions.login("api", GOOD, "h", "yeastar").token
    assert a != b
    sessions.logout(a)
    assert errno_of(sessions.check, a) == Errno.NO_SUCH_TOKEN
    assert sessions.check(b).dialect == "yeastar"
    assert errno_of(sessions.logout, a) == Errno.NO_SUCH_TOKEN


def test_heartbeat_updates_given_fields_and_keeps_the_rest(clock: FakeClock) -> None:
    sessions = manager(clock)
    s = sessions.login("api", GOOD, "10.0.0.1", "o", port="8260", url="/r", urltag="0")
    clock.advance(1799)
    sessions.heartbeat(s.token, ipaddr="172.16.6.150", port="8280")
    assert (s.report_ip, s.source_ip, s.port, s.url, s.urltag) == (
        "172.16.6.150", "10.0.0.1", "8280", "/r", "0")
    clock.advance(1799)
    sessions.heartbeat(s.token, url="172.16.6.150:8280", urltag="1")
    assert (s.port, s.url, s.urltag) == ("8280", "172.16.6.150:8280", "1")
    clock.advance(1799)
    sessions.heartbeat(s.token)  # nothing given: only renews
    assert errno_of(sessions.heartbeat, s.token, port="x") == Errno.BAD_PORT
    clock.advance(1800)
    assert errno_of(sessions.heartbeat, s.token) == Errno.TOKEN_EXPIRED


def test_live_sessions_follow_every_change(clock: FakeClock) -> None:
    """`live()` answers the same tuple while nothing changed (the report path keeps the
    destinations it worked out from it), and a new one after any change or expiry."""
    sessions = manager(clock)
    assert sessions.live() == ()
    a = sessions.login("api", GOOD, "10.0.0.1", "openvox", port="8260")
    first = sessions.live()
    assert first == (a,) and sessions.live() is first
    clock.advance(1000)
    b = sessions.login("api", GOOD, "10.0.0.2", "openvox", port="8260")
    assert sessions.live() == (a, b)
    kept = sessions.live()
    sessions.heartbeat(b.token, port="9000")  # (moves b's destination)
    assert sessions.live() is not kept and b.port == "9000"
    clock.advance(800)  # a, unused for 1800 s, expires; b was renewed 800 s ago
    assert sessions.live() == (b,)
    sessions.logout(b.token)
    assert sessions.live() == ()


def test_each_api_user_logs_in_with_its_own_password_and_role(clock: FakeClock) -> None:
    sessions = manager(clock, users=[{"username": "crm", "password": "crmpass"},
                                     {"username": "ops", "password": "opspass",
                                      "role": "admin"}])
    first = sessions.login("api", GOOD, "10.0.0.1", "openvox")
    crm = sessions.login("crm", md5_hex("crmpass"), "10.0.0.1", "openvox")
    ops = sessions.login("ops", md5_hex("opspass"), "10.0.0.1", "openvox")
    assert [sessions.is_admin(s) for s in (first, crm, ops)] == [True, False, True]
    assert sessions.role(crm) == "readonly" and not sessions.is_admin(None)
    # another user's password is not this one's
    assert errno_of(sessions.login, "crm", md5_hex("opspass"), "10.0.0.1",
                    "openvox") == Errno.BAD_CREDENTIALS
    assert errno_of(sessions.login, "crm", GOOD, "10.0.0.1", "openvox") == Errno.BAD_CREDENTIALS
    # a user removed from the configuration: its session can change nothing
    fewer = manager(clock)
    assert fewer.role(crm) == "readonly" and not fewer.is_admin(ops)
    assert fewer.is_admin(first)


def test_an_api_user_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="API user 'api' is listed twice"):
        ApiSection(password="x", users=[{"username": "api", "password": "y"}])  # type: ignore[list-item]
