"""pbx/security.py with an injected clock: expiry, bounded tables, per-address and
per-extension counts, lockout, the rate limit, trusted addresses, the ban log line."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest

from ippbx.config import ConfigError, SecuritySection, parse_config
from ippbx.pbx.security import ExpiringTable, Security

if TYPE_CHECKING:  # (the `clock` fixture is tests/conftest.py's)
    from conftest import FakeClock

EXTENSIONS = frozenset({"1001", "1002", "1003"})


def security(clock: FakeClock, **settings: Any) -> Security:
    return Security(SecuritySection(**settings), EXTENSIONS, known_seconds=3600, clock=clock)


# ------------------------------------------------------------------------ the table
def test_table_expires_entries_and_stays_bounded(clock: FakeClock) -> None:
    table: ExpiringTable[str, int] = ExpiringTable(3, clock)
    table.put("a", 1, clock.now + 10)
    table.put("b", 2, clock.now + 20)
    assert table.get("a") == 1 and "b" in table and len(table) == 2
    clock.now += 10
    assert table.get("a") is None and table.get("b") == 2
    for i in range(100):  # never more than the capacity, the newest kept
        table.put(f"k{i}", i, clock.now + 100)
    assert len(table) == 3 and list(table) == ["k97", "k98", "k99"]
    assert table.pop("k98") == 98 and table.pop("k98") is None
    clock.now += 100
    table.purge()
    assert len(table) == 0
    with pytest.raises(ValueError):
        ExpiringTable(0, clock)


def test_table_purges_expired_before_evicting_live_ones(clock: FakeClock) -> None:
    table: ExpiringTable[str, int] = ExpiringTable(2, clock)
    table.put("old", 1, clock.now + 1)
    table.put("live", 2, clock.now + 100)
    clock.now += 2
    table.put("new", 3, clock.now + 100)
    assert list(table) == ["live", "new"]


# ------------------------------------------------------------------------ addresses
def test_address_banned_at_ban_failures_and_logged_once(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ippbx.pbx.security")
    guard = security(clock, ban_failures=3, ban_seconds=60)
    guard.failed("203.0.113.5", "1002")
    guard.failed("203.0.113.5", "1002")
    assert guard.failures("203.0.113.5") == 2 and not guard.is_banned("203.0.113.5")
    guard.failed("203.0.113.5", "9999")  # no such extension: counts against the address
    assert guard.is_banned("203.0.113.5") and guard.failures("203.0.113.5") == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "SIP: banned 203.0.113.5 for 60 s after 3 failed authentications (extensions: 1002)"
    ]
    clock.now += 59
    assert guard.is_banned("203.0.113.5")
    clock.now += 1
    assert not guard.is_banned("203.0.113.5")


def test_success_forgets_only_that_extensions_failures(clock: FakeClock) -> None:
    """Finding 2a: a phone user registering their own extension between guesses at
    another extension's password is banned all the same."""
    guard = security(clock, ban_failures=10)
    ip = "198.51.100.7"
    guard.failed(ip, "1001")  # a typo at their own extension...
    guard.succeeded(ip, "1001")  # ...then the right password: that typo is forgiven
    assert guard.failures(ip) == 0
    for n in range(1, 10):
        guard.failed(ip, "1002")
        guard.succeeded(ip, "1001")
        assert guard.failures(ip) == n
    guard.failed(ip, "1002")
    assert guard.is_banned(ip)


def test_failures_are_forgotten_a_window_after_the_last_one(clock: FakeClock) -> None:
    guard = security(clock, ban_failures=3, failure_window=100)
    guard.failed("192.0.2.1", "1001")
    clock.now += 99
    guard.failed("192.0.2.1", "1001")
    clock.now += 99  # within the window of the last failure
    assert guard.failures("192.0.2.1") == 2
    clock.now += 1
    assert guard.failures("192.0.2.1") == 0
    assert guard.extension_failures("1001") == 0


def test_a_flood_of_one_failure_addresses_does_not_push_out_a_guesser(clock: FakeClock) -> None:
    """Finding 2b: 10,000+ single failures (more than the table holds) do not reset the
    count of an address that keeps guessing."""
    guard = security(clock, ban_failures=10, lockout_failures=1_000_000)
    attacker = "198.51.100.66"
    for _ in range(5):
        guard.failed(attacker, "1002")
    for i in range(12_000):
        guard.failed(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", None)
    assert len(guard._probation) == 10_000  # bounded
    assert guard.failures(attacker) == 5
    for _ in range(5):
        guard.failed(attacker, "1002")
    assert guard.is_banned(attacker)


def test_more_bans_than_the_table_holds_still_ban_a_new_attacker(clock: FakeClock) -> None:
    """Finding 2c: expired bans are purged, and a full table of live bans makes room."""
    guard = security(clock, ban_failures=1, ban_seconds=60, table_size=100)
    for i in range(150):  # more than the table, all expire
        guard.failed(f"10.0.{i >> 8}.{i & 255}", None)
    assert len(guard._bans) == 100
    clock.now += 61
    guard.failed("198.51.100.1", None)
    assert guard.is_banned("198.51.100.1") and len(guard._bans) == 1
    for i in range(150):  # a table full of live bans: the oldest one gives way
        guard.failed(f"10.1.{i >> 8}.{i & 255}", None)
    guard.failed("198.51.100.2", None)
    assert guard.is_banned("198.51.100.2") and len(guard._bans) == 100


def test_ban_seconds_zero_bans_nobody(clock: FakeClock) -> None:
    guard = security(clock, ban_failures=1, ban_seconds=0)
    guard.failed("192.0.2.9", None)
    assert not guard.is_banned("192.0.2.9")


# ------------------------------------------------------------------------ extensions
def test_extension_locked_after_failures_from_anywhere_but_not_for_its_phone(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ippbx.pbx.security")
    guard = security(clock, ban_failures=10, lockout_failures=6, lockout_seconds=300)
    phone = "192.0.2.50"
    guard.succeeded(phone, "1002")  # 1002's own phone authenticated from here
    for i in range(5):  # a distributed guesser: two tries per address, never banned
        guard.failed(f"203.0.113.{i // 2}", "1002")
    assert guard.extension_failures("1002") == 5
    guard.succeeded(phone, "1002")  # the phone's refresh does not reset the count
    assert guard.extension_failures("1002") == 5
    assert not guard.is_locked("1002", "203.0.113.9")
    guard.failed("203.0.113.9", "1002")
    assert guard.is_locked("1002", "203.0.113.9")  # every new address is refused
    assert guard.is_locked("1002", "203.0.113.0")
    assert not guard.is_locked("1002", phone)  # its phone keeps working
    assert not guard.is_locked("1001", "203.0.113.9")  # other extensions unaffected
    assert [r.getMessage() for r in caplog.records] == [
        "SIP: extension 1002 locked for 300 s after 6 failed authentications "
        "(the last from 203.0.113.9)"
    ]
    clock.now += 300
    assert not guard.is_locked("1002", "203.0.113.9")


def test_known_address_is_forgotten_after_known_seconds(clock: FakeClock) -> None:
    guard = security(clock, lockout_failures=1, lockout_seconds=100_000)
    guard.succeeded("192.0.2.50", "1003")
    guard.failed("203.0.113.1", "1003")
    assert not guard.is_locked("1003", "192.0.2.50")
    clock.now += 3600
    assert guard.is_locked("1003", "192.0.2.50")


# ------------------------------------------------------------------------ rate limit
def test_rate_limit_is_a_token_bucket_per_address(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ippbx.pbx.security")
    guard = security(clock, rate_limit=2, rate_burst=5)
    assert [guard.over_limit("192.0.2.1") for _ in range(7)] == [False] * 5 + [True] * 2
    assert not guard.over_limit("192.0.2.2")  # another address has its own bucket
    clock.now += 0.5  # one token back
    assert not guard.over_limit("192.0.2.1")
    assert guard.over_limit("192.0.2.1")
    clock.now += 10  # full again (and the table has forgotten the bucket)
    assert [guard.over_limit("192.0.2.1") for _ in range(6)] == [False] * 5 + [True]
    limited = [r for r in caplog.records if "rate limit" in r.getMessage()]
    assert len(limited) == 3  # once per episode, not per request


# ------------------------------------------------------------------------ trusted
def test_trusted_addresses_are_never_banned_nor_limited(clock: FakeClock) -> None:
    guard = security(clock, ban_failures=2, lockout_failures=3, rate_limit=1, rate_burst=1,
                     trusted=["10.1.0.0/16", "2001:db8::/32"])
    for address in ("10.1.2.3", "2001:db8::5", "::ffff:10.1.9.9"):
        assert guard.is_trusted(address)
        for _ in range(3):
            assert not guard.over_limit(address)
    assert not guard.is_trusted("10.2.0.1") and not guard.is_trusted("not an address")
    for _ in range(2):
        guard.failed("10.1.2.3", "1001")
    assert not guard.is_banned("10.1.2.3") and guard.failures("10.1.2.3") == 0
    assert guard.extension_failures("1001") == 2  # still counted against the extension
    guard.failed("10.1.2.3", "1001")
    assert guard.is_locked("1001", "10.1.2.3")


def test_nothing_is_trusted_by_default(clock: FakeClock) -> None:
    guard = security(clock)
    assert not guard.is_trusted("127.0.0.1")


# ------------------------------------------------------------------------ configuration
def test_security_section_and_the_old_sip_keys() -> None:
    base = '[api]\npassword = "x"\n'
    assert parse_config(base).security == SecuritySection()
    moved = parse_config(base + "[sip]\nban_failures = 3\nban_seconds = 7\n").security
    assert (moved.ban_failures, moved.ban_seconds) == (3, 7)
    with pytest.raises(ConfigError, match="sip.ban_failures: also set in"):
        parse_config(base + "[sip]\nban_failures = 3\n[security]\nban_failures = 4\n")
    for bad, message in [
        ('trusted = ["10.0.0.0/33"]', "security.trusted"),
        ('digest_algorithms = ["SHA-512"]', "security.digest_algorithms"),
        ('digest_algorithms = ["MD5", "MD5"]', "listed twice"),
        ('digest_uri = "none"', "security.digest_uri"),
        ("rate_limit = 0", "security.rate_limit"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_config(base + "[security]\n" + bad + "\n")
