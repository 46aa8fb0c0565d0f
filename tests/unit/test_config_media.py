"""Configuration of the media engine (`[media]`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ippbx.config import ConfigError, load_config, parse_config

API = '[api]\npassword = "x"\n'


def test_media_defaults() -> None:
    media = parse_config(API).media
    assert media.engine == "auto" and media.ng == "" and media.ng_addresses == []
    assert media.interface == "127.0.0.1"
    assert (media.port_min, media.port_max) == (30000, 40000)
    assert media.moh == "" and media.prompts == "prompts" and media.recordings == "recordings"
    assert media.keep_recordings_days == 30


def test_media_settings(tmp_path: Path) -> None:
    moh = tmp_path / "moh.wav"
    moh.write_bytes(b"RIFF")
    media = parse_config(API + f'[media]\nengine = "rtpengine"\nng = ["10.0.0.5:2223", '
                         f'"[2001:db8::5]:2223"]\ninterface = "10.0.0.1!203.0.113.1"\n'
                         f'port_min = 1024\nport_max = 65535\nmoh = "{moh}"\n'
                         'keep_recordings_days = 0\n').media
    assert media.ng_addresses == ["10.0.0.5:2223", "[2001:db8::5]:2223"]
    assert media.interface == "10.0.0.1!203.0.113.1" and media.moh == str(moh)
    assert parse_config(API + '[media]\nng = "127.0.0.1:2223"\n').media.ng_addresses == [
        "127.0.0.1:2223"]
    assert parse_config(API + '[media]\nengine = "none"\n').media.engine == "none"


@pytest.mark.parametrize("extra,message", [
    ('engine = "kamailio"', "media.engine: Input should be 'auto', 'rtpengine' or 'none'"),
    ('ng = "nope"', "media.ng: bad ng address 'nope'"),
    ('ng = "host:0"', "media.ng: bad ng address 'host:0'"),
    ('ng = ["127.0.0.1:2223", ""]', "media.ng: bad ng address ''"),
    ('ng = "::1:2223"', "media.ng: bad ng address '::1:2223' (IPv6 goes in brackets)"),
    ('interface = "eth0"', "media.interface: 'eth0' is not an IP address"),
    ('interface = "10.0.0.1!"', "media.interface:"),
    ('interface = "1.1.1.1!2.2.2.2!3.3.3.3"', "media.interface: "),
    ("port_min = 1023", "media.port_min: Input should be greater than or equal to 1024"),
    ("port_max = 65536", "media.port_max: Input should be less than or equal to 65535"),
    ("port_min = 40000\nport_max = 40000", "media: port_min must be below port_max"),
    ("port_min = 40001", "media: port_min must be below port_max"),
    ('moh = "/nonexistent/moh.wav"', "media.moh: no such file"),
    ("keep_recordings_days = -1", "media.keep_recordings_days: Input should be greater"),
    ("rtp_timeout = 5", "media.rtp_timeout: unknown key"),
])
def test_media_errors(extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(API + "[media]\n" + extra + "\n", "x.toml")
    assert str(info.value).startswith(f"x.toml: {message}"), str(info.value)


def test_demo_config_has_media() -> None:
    media = load_config(None).media
    assert media.engine == "auto" and media.ng_addresses == []
