"""Building pcap files in tests: RTP over UDP over IPv4/IPv6, the link headers a capture
may have (none, as rtpengine writes them: link type 101, raw IP; Ethernet with an optional
VLAN tag; Linux cooked), and the classic libpcap file around them.

`tone_stream` makes a G.711 stream of a sine as a list of `Frame`s (capture time and RTP
fields); a test drops, swaps, jitters or rewrites frames, then `pcap_bytes` packs them.
G.711 A-law (`alaw_encode`) is here, built from the definition (rtp_audio has µ-law).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

RATE = 8000
PCMU, PCMA = 0, 8
LINK_ETHERNET, LINK_RAW, LINK_LINUX_SLL = 1, 101, 113


# -- G.711 A-law (the encoder of G.711 / Sun's g711.c, 13-bit magnitudes) ----------------------

_ALAW_SEGMENT_ENDS = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _alaw_byte(value: int) -> int:
    pcm = value >> 3
    if pcm >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm = -pcm - 1
    segment = next((i for i, end in enumerate(_ALAW_SEGMENT_ENDS) if pcm <= end), 8)
    if segment >= 8:
        return 0x7F ^ mask
    code = segment << 4
    code |= (pcm >> 1) & 0x0F if segment < 2 else (pcm >> segment) & 0x0F
    return code ^ mask


_ALAW = np.array([_alaw_byte(v) for v in range(-32768, 32768)], dtype=np.uint8)


def alaw_encode(samples: npt.ArrayLike) -> bytes:
    """16-bit linear samples → A-law bytes."""
    values = np.clip(np.asarray(samples, dtype=np.int64), -32768, 32767)
    return _ALAW[values + 32768].tobytes()


# -- packets --------------------------------------------------------------------------------


def rtp(payload_type: int, seq: int, timestamp: int, ssrc: int, payload: bytes, *,
        marker: bool = False, csrcs: int = 0, extension: bytes | None = None,
        padding: int = 0) -> bytes:
    """An RTP version 2 packet (optionally with CSRCs, a header extension, padding)."""
    first = 0x80 | csrcs | (0x10 if extension is not None else 0) | (0x20 if padding else 0)
    header = struct.pack("!BBHII", first, (0x80 if marker else 0) | payload_type,
                         seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)
    header += b"\x00\x00\x00\x01" * csrcs
    if extension is not None:
        header += struct.pack("!HH", 0xBEDE, len(extension) // 4) + extension
    pad = bytes(padding - 1) + bytes([padding]) if padding else b""
    return header + payload + pad


def udp_ip(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    """A UDP datagram in an IPv4 or IPv6 packet (by the addresses' form); checksums 0,
    as rtpengine writes them."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    if ":" in src:
        return (struct.pack("!IHBB", 6 << 28, len(udp), 17, 64)
                + socket.inet_pton(socket.AF_INET6, src)
                + socket.inet_pton(socket.AF_INET6, dst) + udp)
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                       socket.inet_aton(src), socket.inet_aton(dst)) + udp


def ethernet(ip: bytes, vlan: int | None = None) -> bytes:
    """`ip` in an Ethernet frame (with an 802.1Q tag if `vlan`)."""
    kind = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    tag = struct.pack("!HH", 0x8100, vlan) if vlan is not None else b""
    return b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02" + tag + struct.pack("!H", kind) + ip


def linux_sll(ip: bytes) -> bytes:
    """`ip` behind a Linux cooked (SLL v1) header."""
    kind = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    return struct.pack("!HHH8sH", 0, 772, 6, b"\x00" * 8, kind) + ip


def pcap_bytes(records: Iterable[tuple[float, bytes]], link: int = LINK_RAW, *,
               nanoseconds: bool = False, big_endian: bool = False) -> bytes:
    """A classic libpcap file of (capture time, frame) records."""
    order = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    scale = 1_000_000_000 if nanoseconds else 1_000_000
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, link)]
    for when, frame in records:
        ticks = round(when * scale)
        out.append(struct.pack(order + "IIII", ticks // scale, ticks % scale, len(frame),
                               len(frame)) + frame)
    return b"".join(out)


# -- streams --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """One RTP packet of a test stream and when it was captured."""

    time: float
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes
    src: tuple[str, int]
    dst: tuple[str, int]
    marker: bool = False

    def ip(self) -> bytes:
        packet = rtp(self.payload_type, self.seq, self.timestamp, self.ssrc, self.payload,
                     marker=self.marker)
        return udp_ip(*self.src, *self.dst, packet)

    def moved(self, **changes: object) -> Frame:
        return replace(self, **changes)  # type: ignore[arg-type]


def tone_samples(freq: float, start: int, count: int, amplitude: float = 0.4) -> npt.NDArray[
        np.int16]:
    """`count` samples of a sine at `freq` from sample number `start` (phase continues)."""
    n = np.arange(start, start + count, dtype=np.float64)
    return np.round(amplitude * 32767 * np.sin(2 * np.pi * freq * n / RATE)).astype(np.int16)


def tone_stream(freq: float, start: float, seconds: float,
                encode: Callable[[npt.ArrayLike], bytes], *, payload_type: int = PCMU,
                ssrc: int = 0x1234, first_timestamp: int = 0, first_seq: int = 0,
                src: tuple[str, int] = ("10.0.0.1", 4000),
                dst: tuple[str, int] = ("10.0.0.9", 30000)) -> list[Frame]:
    """A 20 ms G.711 stream of a sine from capture time `start` for `seconds`, `encode`d
    (rtp_audio's `ulaw_encode` for PCMU, `alaw_encode` for PCMA), the RTP timestamps
    counting samples from `first_timestamp` (wrapping at 2**32)."""
    frames = []
    for i in range(round(seconds / 0.02)):
        samples = tone_samples(freq, 160 * i, 160)
        frames.append(Frame(start + 0.02 * i, payload_type, first_seq + i,
                            (first_timestamp + 160 * i) & 0xFFFFFFFF, ssrc, encode(samples),
                            src, dst))
    return frames


def frames_pcap(frames: Iterable[Frame], link: int = LINK_RAW, **kwargs: bool) -> bytes:
    """The pcap of `frames` in the order given (capture order)."""
    def frame(f: Frame) -> bytes:
        ip = f.ip()
        if link == LINK_ETHERNET:
            return ethernet(ip, vlan=7)
        if link == LINK_LINUX_SLL:
            return linux_sll(ip)
        return ip
    return pcap_bytes(((f.time, frame(f)) for f in frames), link, **kwargs)
