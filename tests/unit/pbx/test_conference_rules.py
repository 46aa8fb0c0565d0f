"""The pure parts of conference rooms: their settings, the dial plan's numbers, and the
SDP that points a member's engine side at the mixer."""

from __future__ import annotations

import pytest

from ippbx.config import ConfigError, parse_config
from ippbx.media.janus import RtpAddress
from ippbx.pbx.conferences import engine_side, mixer_answer
from ippbx.pbx.dialplan import Dialplan, Refused, ToConference

BASE = """
[api]
password = "x"
[[extensions]]
number = "1001"
password = "p"
"""

ENGINE_OFFER = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                b"m=audio 30010 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\n"
                b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")


def config(rooms: str):  # type: ignore[no-untyped-def]
    return parse_config(BASE + rooms)


def test_rooms_share_the_number_space_and_are_destinations() -> None:
    c = config('[[conferences]]\nnumber = "6600"\n[[inbound_routes]]\nname = "r"\n'
               'destination = "conference:6600"\n')
    plan = Dialplan(c)
    assert plan.local("6600") == ToConference("6600")
    assert plan.route_from_extension("1001", "6600") == ToConference("6600")
    assert plan.route_inbound("t", "123", "555") == ToConference("6600", "r")
    assert isinstance(plan.resolve("conference:6601"), Refused)
    with pytest.raises(ConfigError, match="already"):
        config('[[conferences]]\nnumber = "1001"\n')
    with pytest.raises(ConfigError, match="no conference"):
        config('[[inbound_routes]]\nname = "r"\ndestination = "conference:6600"\n')


@pytest.mark.parametrize(("room", "error"), [
    ('pin = "12a"', "pin"),
    ('pin = "1234"\nmoderator_pin = "1234"', "differ"),
    ("max_members = 1", "max_members"),
])
def test_bad_rooms_are_refused(room: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        config(f'[[conferences]]\nnumber = "6600"\n{room}\n')


@pytest.mark.parametrize(("media", "error"), [
    ('janus = "localhost:8088"', "janus"),
    ("janus_port_min = 50000\njanus_port_max = 49000", "janus_port_min"),
])
def test_bad_mixer_settings_are_refused(media: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse_config(BASE + f"[media]\n{media}\n")


def test_the_engine_side_takes_the_first_codec_the_mixer_takes() -> None:
    assert engine_side(ENGINE_OFFER) == RtpAddress("127.0.0.1", 30010, 8)
    g722 = ENGINE_OFFER.replace(b"RTP/AVP 8 0 101", b"RTP/AVP 9 101")
    assert engine_side(g722) is None  # (no codec in common: the member cannot join)
    assert engine_side(b"v=0\r\n") is None


def test_the_answer_points_at_the_mixer_with_one_codec_and_the_keys() -> None:
    answer = mixer_answer(ENGINE_OFFER, RtpAddress("127.0.0.2", 41002, 8), 8).decode()
    assert "c=IN IP4 127.0.0.2\r\n" in answer
    assert "m=audio 41002 RTP/AVP 8 101\r\n" in answer
    assert "a=rtpmap:8 PCMA/8000" in answer and "a=rtpmap:101 telephone-event/8000" in answer
    assert "PCMU" not in answer
    no_keys = ENGINE_OFFER.replace(b" 101", b"").replace(
        b"a=rtpmap:101 telephone-event/8000\r\n", b"")
    assert "telephone-event" not in mixer_answer(no_keys, RtpAddress("::1", 41002, 0), 0).decode()
    assert "c=IN IP6 ::1" in mixer_answer(no_keys, RtpAddress("::1", 41002, 0), 0).decode()
