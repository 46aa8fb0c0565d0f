"""Configuration of SIP over TLS, TLS trunks, overload control and call lifetime."""

from __future__ import annotations

from pathlib import Path

import pytest

from ippbx.config import ConfigError, parse_config

API = '[api]\npassword = "x"\n'


def test_sip_tls_settings(tmp_path: Path) -> None:
    assert parse_config(API).sip.tls_address is None  # off by default
    config = parse_config('[sip]\ntls_listen = "127.0.0.1"\n' + API)
    assert config.sip.tls_address == ("127.0.0.1", 5061)
    assert config.sip.tls_verify and config.sip.tls_ca == ""
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    bad = {
        'tls_listen = "127.0.0.1:5060"': "sip: tls_listen is the same address as listen",
        f'tls_cert = "{cert}"': "sip: tls_cert and tls_key go together",
        f'tls_ca = "{tmp_path / "absent.pem"}"': "sip.tls_ca: no such file",
        'tls_listen = "127.0.0.1:99999"': "sip.tls_listen: bad listen address",
    }
    for extra, message in bad.items():
        with pytest.raises(ConfigError) as info:
            parse_config(f'[sip]\nlisten = "127.0.0.1:5060"\n{extra}\n' + API, "x.toml")
        assert str(info.value).startswith(f"x.toml: {message}"), str(info.value)


def test_tls_trunk_defaults_to_5061() -> None:
    trunks = parse_config(API + '[[trunks]]\nname = "t"\nhost = "sip.example"\n'
                          'transport = "tls"\n[[trunks]]\nname = "u"\nhost = "h"\n'
                          'transport = "tls"\nport = 5071\n[[trunks]]\nname = "v"\n'
                          'host = "h"\n').trunks
    assert [(t.transport, t.port) for t in trunks] == [("tls", 5061), ("tls", 5071),
                                                        ("udp", 5060)]


def test_overload_and_call_lifetime_settings() -> None:
    config = parse_config(API)
    assert config.sip.overload_control and config.sip.overload_backlog_kib == 512
    assert config.calls.session_expires == 1800 and config.calls.max_duration == 0
    assert parse_config(API + "[calls]\nsession_expires = 0\n").calls.session_expires == 0
    assert parse_config(API + "[calls]\nsession_expires = 90\n").calls.session_expires == 90
    for extra, message in {
        "[calls]\nsession_expires = 60": "calls.session_expires: must be 0 (off) or at least 90",
        "[calls]\nmax_duration = -1": "calls.max_duration",
        "[sip]\noverload_lag_ms = 0": "sip.overload_lag_ms",
    }.items():
        with pytest.raises(ConfigError) as info:
            parse_config(API + extra + "\n", "x.toml")
        assert str(info.value).startswith(f"x.toml: {message}"), str(info.value)


def test_udp_max_request() -> None:
    assert parse_config(API).sip.udp_max_request == 1300  # RFC 3261 §18.1.1's figure
    assert parse_config("[sip]\nudp_max_request = 0\n" + API).sip.udp_max_request == 0
    assert parse_config("[sip]\nudp_max_request = 8800\n" + API).sip.udp_max_request == 8800
    for value in ("-1", "65508", '"big"'):
        with pytest.raises(ConfigError) as info:
            parse_config(f"[sip]\nudp_max_request = {value}\n" + API, "x.toml")
        assert str(info.value).startswith("x.toml: sip.udp_max_request"), str(info.value)


def test_redirects_setting() -> None:
    assert parse_config(API).calls.redirects == "follow"
    assert parse_config(API + '[calls]\nredirects = "relay"\n').calls.redirects == "relay"
    with pytest.raises(ConfigError) as info:
        parse_config(API + '[calls]\nredirects = "ignore"\n', "x.toml")
    assert str(info.value).startswith("x.toml: calls.redirects"), str(info.value)


def test_node_name() -> None:
    assert parse_config(API).calls.node == ""
    assert parse_config(API + '[calls]\nnode = "pbx_2"\n').calls.node == "pbx_2"
    for bad in ('"pbx-2"', '"a b"', '"' + "x" * 33 + '"'):
        with pytest.raises(ConfigError) as info:
            parse_config(API + f"[calls]\nnode = {bad}\n", "x.toml")
        assert str(info.value).startswith("x.toml: calls.node"), str(info.value)
