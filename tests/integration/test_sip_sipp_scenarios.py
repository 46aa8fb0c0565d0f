"""The sipp harness and our scenario files, checked sipp against sipp on loopback.

If one of these fails, the scenario (or the harness) is broken, not ippbx.
"""

from __future__ import annotations

import pytest
from sipp_harness import LoggedMessage, SippError, SippFactory, free_port


def branch(message: LoggedMessage) -> str:
    via = message.header("Via") or ""
    return via.split("branch=", 1)[1].split(";", 1)[0]


def sent(messages: list[LoggedMessage], start: str) -> list[LoggedMessage]:
    return [m for m in messages if m.direction == "sent" and m.first_line.startswith(start)]


def test_harness_uac_to_uas_20_calls(sipp: SippFactory) -> None:
    uas_port = free_port()
    uas = sipp("uas.xml", port=uas_port, calls=20).start()
    uac = sipp("uac.xml", remote=f"127.0.0.1:{uas_port}", calls=20, rate=10,
               recv_timeout_ms=5000).start()
    result = uac.wait(timeout=30).assert_ok(calls=20, retransmissions=0)
    assert result.current_calls == 0
    uas.wait(timeout=10).assert_ok(calls=20, retransmissions=0)


def test_uac_uas_over_tcp(sipp: SippFactory) -> None:
    uas_port = free_port()
    uas = sipp("uas.xml", port=uas_port, calls=3, transport="tcp").start()
    uac = sipp("uac.xml", remote=f"127.0.0.1:{uas_port}", calls=3, rate=20,
               transport="tcp", recv_timeout_ms=5000).start()
    uac.wait(timeout=20).assert_ok(calls=3)
    # the UAC closes its connection on exit while the UAS still holds its last call in
    # <timewait>: sipp counts that call as FailedTcpClosed
    result = uas.wait(timeout=10)
    closed = result.counter("FailedTcpClosed(C)")
    assert result.successful + closed == 3 and closed <= 1, result.describe()


def test_busy(sipp: SippFactory) -> None:
    uas_port = free_port()
    uas = sipp("uas_busy.xml", port=uas_port, calls=3).start()
    uac = sipp("uac_busy.xml", remote=f"127.0.0.1:{uas_port}", calls=3, rate=20,
               trace_msg=True, recv_timeout_ms=5000).start()
    result = uac.wait(timeout=20).assert_ok(calls=3)
    uas.wait(timeout=10).assert_ok(calls=3)
    messages = result.messages()
    invites, acks = sent(messages, "INVITE"), sent(messages, "ACK")
    assert len(invites) == len(acks) == 3
    assert [branch(m) for m in invites] == [branch(m) for m in acks]


def test_cancel_a_ringing_call(sipp: SippFactory) -> None:
    uas_port = free_port()
    uas = sipp("uas_ring_forever.xml", port=uas_port, calls=3, trace_msg=True).start()
    uac = sipp("uac_cancel.xml", remote=f"127.0.0.1:{uas_port}", calls=3, rate=20,
               duration_ms=100, trace_msg=True, recv_timeout_ms=5000).start()
    result = uac.wait(timeout=20).assert_ok(calls=3)
    uas.wait(timeout=10).assert_ok(calls=3)
    messages = result.messages()
    invites, cancels, acks = (sent(messages, m) for m in ("INVITE", "CANCEL", "ACK"))
    assert [branch(m) for m in invites] == [branch(m) for m in cancels]
    assert [branch(m) for m in invites] == [branch(m) for m in acks]
    # the 487 carries the INVITE's CSeq, not the CANCEL's
    terminated = [m for m in uas.result.messages()  # type: ignore[union-attr]
                  if m.direction == "sent" and m.first_line.startswith("SIP/2.0 487")]
    assert terminated and all(m.header("CSeq") == "1 INVITE" for m in terminated)


@pytest.mark.parametrize("password", ["s3cret", "wrong"])
def test_digest_register_and_invite(sipp: SippFactory, password: str) -> None:
    uas_port = free_port()
    keys = {"user": "1001", "password": "s3cret"}
    uas = sipp("uas_auth.xml", port=uas_port, calls=2, keys=keys).start()
    uac = sipp("uac_auth.xml", remote=f"127.0.0.1:{uas_port}", calls=2, rate=20,
               auth=("1001", password), keys={"user": "1001"}, service="1002",
               trace_msg=True, recv_timeout_ms=3000).start()
    result = uac.wait(timeout=20)
    uas_result = uas.wait(timeout=10)
    if password == "wrong":
        assert result.returncode == 1 and result.failed == 2, result.describe()
        return
    result.assert_ok(calls=2)
    uas_result.assert_ok(calls=2)
    messages = result.messages()
    invites = sent(messages, "INVITE")
    acks = sent(messages, "ACK")
    assert len(invites) == 4 and len(acks) == 4
    # the challenged INVITE and its ACK share a branch; the second INVITE has credentials
    assert branch(invites[0]) == branch(acks[0])
    assert invites[1].header("Authorization") is not None
    assert 'username="1001"' in (invites[1].header("Authorization") or "")


def test_no_ack_retransmissions_counted(sipp: SippFactory) -> None:
    uas_port = free_port()
    uas = sipp("uas_no_ack.xml", port=uas_port, calls=1).start()
    uac = sipp("uac_no_ack.xml", remote=f"127.0.0.1:{uas_port}", calls=1,
               duration_ms=2500, trace_msg=True, recv_timeout_ms=5000).start()
    result = uac.wait(timeout=20).assert_ok(calls=1, retransmissions=0)
    uas.wait(timeout=10)  # sipp counts its own retransmissions; 1 call, given up on time
    # 100 ms doubling until the UAS gives up at 2 s: 100, 300, 700, 1500 ms
    assert result.count("4_200_Recv") == 1
    assert result.count("4_200_Retrans") == 4
    oks = [m for m in result.messages()
           if m.direction == "received" and m.first_line.startswith("SIP/2.0 200")]
    gaps = [round(b.time - a.time, 1) for a, b in zip(oks, oks[1:], strict=False)]
    assert gaps == [0.1, 0.2, 0.4, 0.8], gaps


def test_stop_a_uas_without_call_limit(sipp: SippFactory) -> None:
    uas_port = free_port()
    uas = sipp("uas.xml", port=uas_port).start()
    uac = sipp("uac.xml", remote=f"127.0.0.1:{uas_port}", calls=2, rate=20).start()
    uac.wait(timeout=20).assert_ok(calls=2)
    result = uas.stop(timeout=10)
    assert result.successful == 2 and not result.killed, result.describe()


def test_hung_sipp_is_killed_with_its_logs_in_the_error(sipp: SippFactory) -> None:
    lonely = sipp("uac.xml", remote=f"127.0.0.1:{free_port()}", calls=1, rate=1).start()
    with pytest.raises(SippError) as info:
        lonely.wait(timeout=1)
    assert "still running" in str(info.value) and "command:" in str(info.value)
    assert not lonely.running
