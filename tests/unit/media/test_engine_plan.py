"""The decisions of ippbx.media.engine that need no process: which engine runs, the
rtpengine command line, and the DTMF event datagrams."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ippbx.config import parse_config
from ippbx.media.engine import (
    DtmfEvent,
    MediaEngine,
    parse_dtmf_event,
    resolve_engine,
)
from ippbx.media.rtpengine import MediaError

EXAMPLE = (b'{"callid":"d1","source_tag":"A","tags":["A","B"],"type":"DTMF",'
           b'"timestamp":1796213966,"source_ip":"127.0.0.1","event":5,"duration":200,'
           b'"volume":10}')


def test_resolve_engine(caplog: pytest.LogCaptureFixture) -> None:
    assert resolve_engine("auto", "", "/usr/bin/rtpengine") == "rtpengine"
    assert resolve_engine("rtpengine", "", "/usr/bin/rtpengine") == "rtpengine"
    assert resolve_engine("none", "", "/usr/bin/rtpengine") == "none"
    assert resolve_engine("none", "127.0.0.1:2223", "") == "none"
    # external engines need no local binary
    assert resolve_engine("auto", "10.0.0.5:2223", "") == "rtpengine"
    assert resolve_engine("rtpengine", ["10.0.0.5:2223"], "") == "rtpengine"
    with caplog.at_level(logging.INFO, logger="ippbx.media"):
        assert resolve_engine("auto", "", "") == "none"
        assert resolve_engine("auto", ["", " "], "") == "none"
    lines = [r for r in caplog.records if r.name.startswith("ippbx.media")]
    assert len(lines) == 2 and "rtpengine not found" in lines[0].getMessage()
    with pytest.raises(MediaError, match="rtpengine-daemon"):
        resolve_engine("rtpengine", "", "")
    with pytest.raises(MediaError):
        resolve_engine("asterisk", "", "/usr/bin/rtpengine")


def test_command_line(tmp_path: Path) -> None:
    engine = MediaEngine(binary="/usr/bin/rtpengine", interface="192.0.2.1",
                         port_min=41000, port_max=41010, recording_dir=tmp_path / "rec",
                         dtmf_log_dest=("127.0.0.1", 5555), extra_args=["--num-threads=2"])
    argv = engine.command(2223)
    assert argv[0] == "/usr/bin/rtpengine"
    for arg in ("--config-file=none", "--table=-1", "--interface=192.0.2.1",
                "--listen-ng=127.0.0.1:2223", "--foreground", "--log-stderr",
                "--port-min=41000", "--port-max=41010", f"--recording-dir={tmp_path}/rec",
                "--recording-method=pcap", "--dtmf-log-dest=127.0.0.1:5555"):
        assert arg in argv
    assert argv[-1] == "--num-threads=2"
    no_dtmf = MediaEngine(binary="/x/rtpengine").command(1)
    assert not any(a.startswith("--dtmf-log-dest") for a in no_dtmf)
    assert MediaEngine(recording_dir="rel").recording_dir.is_absolute()


def test_engine_arguments() -> None:
    with pytest.raises(ValueError):
        MediaEngine(port_min=5000, port_max=5000)
    with pytest.raises(ValueError):
        MediaEngine(ng="no-port")
    external = MediaEngine(ng=["127.0.0.1:1", "127.0.0.1:2"])
    assert external.external == ["127.0.0.1:1", "127.0.0.1:2"]
    assert external.ng_addresses == ["127.0.0.1:1", "127.0.0.1:2"]
    assert MediaEngine(ng="").ng_addresses == [] and MediaEngine(ng="").pid is None


def test_from_config() -> None:
    api = '[api]\npassword = "x"\n'
    media = parse_config(api + '[media]\nengine = "none"\n').media
    assert MediaEngine.from_config(media, binary="/usr/bin/rtpengine") is None
    media = parse_config(api + '[media]\nport_min = 42000\nport_max = 42100\n'
                         'interface = "127.0.0.1"\nrecordings = "rec"\n').media
    engine = MediaEngine.from_config(media, binary="/usr/bin/rtpengine")
    assert engine is not None and not engine.external
    assert (engine.port_min, engine.port_max, engine.recording_dir.name) == (42000, 42100,
                                                                              "rec")
    media = parse_config(api + '[media]\nng = "127.0.0.1:2223"\n').media
    engine = MediaEngine.from_config(media, binary="")
    assert engine is not None and engine.external == ["127.0.0.1:2223"]


def test_parse_dtmf_event() -> None:
    event = parse_dtmf_event(EXAMPLE)
    assert event == DtmfEvent(call_id="d1", source_tag="A", tags=("A", "B"), event=5,
                              duration=200, volume=10, timestamp=1796213966.0,
                              source_ip="127.0.0.1")
    assert event.digit == "5"
    data = json.loads(EXAMPLE)
    for number, digit in ((10, "*"), (11, "#"), (0, "0"), (12, "A"), (15, "D"), (16, "")):
        data["event"] = number
        assert parse_dtmf_event(json.dumps(data).encode()).digit == digit
    minimal = parse_dtmf_event(b'{"type":"DTMF","callid":"c","event":1}')
    assert minimal.tags == () and minimal.duration == 0 and minimal.source_tag == ""


@pytest.mark.parametrize("bad", [
    b"", b"not json", b"[]", b'"DTMF"', b'{"type":"DTMF"}',
    b'{"type":"RTCP","callid":"c","event":1}',
    b'{"type":"DTMF","callid":"","event":1}',
    b'{"type":"DTMF","callid":"c","event":"5"}',
    b'{"type":"DTMF","callid":"c","event":true}',
    b'{"type":"DTMF","callid":"c","event":300}',
    b'{"type":"DTMF","callid":"c","event":-1}',
    b'{"type":"DTMF","callid":7,"event":1}',
    b'{"type":"DTMF","callid":"c","event":1,"tags":"A"}',
    b'{"type":"DTMF","callid":"c","event":1,"tags":[1]}',
    b'{"type":"DTMF","callid":"c","event":1,"duration":1.5}',
    b'{"type":"DTMF","callid":"c","event":1,"timestamp":"now"}',
    b'{"type":"DTMF","callid":"c","event":1,"source_ip":null}',
    b"[" * 100_000,
    b'{"type":"DTMF","callid":"' + b"x" * 5000 + b'","event":1}',
    b"\xff\xfe",
])
def test_parse_dtmf_event_refuses(bad: bytes) -> None:
    with pytest.raises(ValueError):
        parse_dtmf_event(bad)


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_dtmf_parser_only_raises_value_error(data: bytes) -> None:
    try:
        parse_dtmf_event(data)
    except ValueError:
        pass
