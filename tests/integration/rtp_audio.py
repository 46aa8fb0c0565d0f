"""Real audio for tests: a pure-Python RTP endpoint, G.711 µ-law, tone analysis and SDP.

`RtpEndpoint` is one UDP socket on 127.0.0.1 (an ephemeral port) that sends PCMU (RTP
payload type 0, 8 kHz, one packet of 160 samples every 20 ms, with a proper RTP header:
sequence number, timestamp and SSRC) of a sine tone, of silence, of given samples, or
nothing, to a remote address that may change at any time (`set_remote`, from the other
side's SDP; or, `symmetric=True`, the address its packets come from). It records every
audio packet it receives (payload, arrival time, source), decodes RFC 4733 DTMF events
(payload type 101, `telephone-event/8000`) and counts, without keeping, every other
packet (`ignored`). `send_dtmf(digit)` sends one event: the packets of its duration, the
first with the marker bit, then the usual three end packets.

    a, b = RtpEndpoint(), RtpEndpoint()
    await a.start(); await b.start()
    a.set_remote(*b.address); b.set_remote(*a.address)
    a.play_tone(700); b.play_tone(1300)
    await asyncio.sleep(0.5)
    assert abs(dominant_frequency(b.samples()) - 700) < 20

Analysis: `dominant_frequency` (numpy rfft over a Hann window, refined between bins),
`tone_power_ratio` (the share of the signal's power within a band around a frequency),
`has_tone`, `rms_dbfs` and `is_silent`. `received_since(t)` (or `samples(since, until)`)
gives the audio that arrived in a time window, in arrival order, decoded; `clear()`
forgets what arrived so far.

G.711 µ-law (`ulaw_encode`, `ulaw_decode`) is table based: 65536 entries for encoding,
256 for decoding, built once from the segment/mantissa definition of the standard.

SDP: `sdp_offer` (PCMU/8000 and telephone-event/8000 as PT 101, a direction attribute),
`sdp_answer` (the mirrored direction, the payload types both sides have) and
`parse_media` (where the first audio stream goes, its direction and payload types).
`write_tone_wav` writes a known tone as an 8 kHz mono 16-bit WAV file (a prompt or
music on hold whose content a test can recognise); `read_wav` reads one back.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import struct
import wave
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

RATE = 8000  # samples per second (PCMU)
PTIME = 0.02  # seconds per packet
SAMPLES_PER_PACKET = 160
PCMU = 0  # RTP payload type of G.711 µ-law
TELEPHONE_EVENT = 101  # RTP payload type we use for RFC 4733 events
RTP_HEADER = struct.Struct("!BBHII")
SILENCE_BYTE = 0xFF  # µ-law code of 0
DEFAULT_AMPLITUDE = 0.4  # of full scale: about -8 dBFS, far from clipping
DTMF_EVENTS = "0123456789*#ABCD"  # RFC 4733 §3.2: events 0-15

Samples = npt.NDArray[np.int16]

# -- G.711 µ-law ------------------------------------------------------------------------------

_BIAS = 0x84  # 132: added to the magnitude so each segment starts at a power of two
_CLIP = 8158  # the largest 14-bit magnitude that still fits segment 7 once biased


def _ulaw_byte(value: int) -> int:
    """The µ-law code of one linear 16-bit sample (the definition the table is built from).

    G.711 codes 14-bit samples: the 16-bit value's top 14 bits (an arithmetic shift, so
    a negative value's magnitude rounds up), biased by 33, in one of 8 segments (the
    position of its top bit) with 4 mantissa bits below it; the code is inverted."""
    v14 = value >> 2
    sign = 0x80 if v14 < 0 else 0
    magnitude = min(abs(v14), _CLIP) + (_BIAS >> 2)
    exponent = magnitude.bit_length() - 6  # segment 0-7: the top bit is bit 5 … bit 12
    mantissa = (magnitude >> (exponent + 1)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _linear(code: int) -> int:
    """The linear value of one µ-law code: the middle of its quantization interval."""
    inverted = ~code & 0xFF
    exponent = (inverted >> 4) & 0x07
    magnitude = ((((inverted & 0x0F) << 3) + _BIAS) << exponent) - _BIAS
    return -magnitude if inverted & 0x80 else magnitude


_ENCODE = np.array([_ulaw_byte(v) for v in range(-32768, 32768)], dtype=np.uint8)
_DECODE = np.array([_linear(c) for c in range(256)], dtype=np.int16)


def ulaw_encode(samples: npt.ArrayLike) -> bytes:
    """16-bit linear samples (values outside int16 are clipped) → µ-law bytes."""
    values = np.clip(np.asarray(samples, dtype=np.int64), -32768, 32767)
    return _ENCODE[values + 32768].tobytes()


def ulaw_decode(data: bytes) -> Samples:
    """µ-law bytes → 16-bit linear samples."""
    return _DECODE[np.frombuffer(data, dtype=np.uint8)]


# -- signals and their analysis -------------------------------------------------------------


def tone(freq: float, count: int, *, start: int = 0, amplitude: float = DEFAULT_AMPLITUDE,
         rate: int = RATE) -> Samples:
    """`count` samples of a sine at `freq` Hz, from sample number `start` (phase continues
    across calls), `amplitude` a fraction of full scale."""
    n = np.arange(start, start + count, dtype=np.float64)
    return np.round(amplitude * 32767 * np.sin(2 * np.pi * freq * n / rate)).astype(np.int16)


def _spectrum(samples: npt.ArrayLike, rate: int) -> tuple[npt.NDArray[np.float64], float]:
    """The power spectrum of `samples` (mean removed, Hann window) and its bin width."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size < 16:
        raise ValueError(f"{x.size} samples are too few to analyse")
    x = x - x.mean()
    power = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    return power, rate / x.size


def dominant_frequency(samples: npt.ArrayLike, rate: int = RATE) -> float:
    """The frequency (Hz) of the strongest spectral peak (DC excluded), refined between
    bins by a parabola through the log power of the peak bin and its neighbours."""
    power, width = _spectrum(samples, rate)
    power[0] = 0.0
    k = int(np.argmax(power))
    if 0 < k < power.size - 1 and power[k] > 0:
        a, b, c = (math.log(max(p, 1e-300)) for p in power[k - 1 : k + 2])
        denominator = a - 2 * b + c
        offset = 0.5 * (a - c) / denominator if denominator else 0.0
        return (k + offset) * width
    return k * width


def tone_power_ratio(samples: npt.ArrayLike, freq: float, rate: int = RATE,
                     band: float = 20.0) -> float:
    """The share (0-1) of the signal's power (DC excluded) within ±`band` Hz of `freq`
    (at least ±3 bins, the Hann window's main lobe and a little); 0 for a silent signal."""
    power, width = _spectrum(samples, rate)
    power[0] = 0.0
    total = float(power.sum())
    if total <= 0:
        return 0.0
    reach = max(band, 3 * width)
    freqs = np.arange(power.size) * width
    return float(power[np.abs(freqs - freq) <= reach].sum()) / total


def has_tone(samples: npt.ArrayLike, freq: float, rate: int = RATE, *,
             min_ratio: float = 0.5, band: float = 20.0) -> bool:
    """Does a tone at `freq` dominate `samples` (at least `min_ratio` of the power), and is
    there a signal at all?"""
    x = np.asarray(samples)
    return (x.size >= 16 and not is_silent(x)
            and tone_power_ratio(x, freq, rate, band) >= min_ratio)


def rms_dbfs(samples: npt.ArrayLike) -> float:
    """The RMS level relative to full scale (dBFS); -inf for no samples or all zero."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return -math.inf
    rms = math.sqrt(float(np.mean(x * x)))
    return 20 * math.log10(rms / 32768) if rms > 0 else -math.inf


def is_silent(samples: npt.ArrayLike, threshold_dbfs: float = -50.0) -> bool:
    """True if `samples` are empty or their RMS level is below `threshold_dbfs`."""
    return rms_dbfs(samples) < threshold_dbfs


def write_tone_wav(path: str | Path, freq: float, seconds: float, *,
                   amplitude: float = DEFAULT_AMPLITUDE) -> Path:
    """Write `seconds` of a sine at `freq` Hz as an 8 kHz mono 16-bit WAV file."""
    target = Path(path)
    samples = tone(freq, round(seconds * RATE), amplitude=amplitude)
    with wave.open(str(target), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(samples.astype("<i2").tobytes())
    return target


def read_wav(path: str | Path) -> Samples:
    """The samples of an 8 kHz mono 16-bit WAV file (anything else: ValueError)."""
    with wave.open(str(path), "rb") as src:
        if (src.getnchannels(), src.getsampwidth(), src.getframerate()) != (1, 2, RATE):
            raise ValueError(f"{path}: not 8 kHz mono 16-bit")
        data = src.readframes(src.getnframes())
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


# -- SDP ------------------------------------------------------------------------------------

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_MIRROR = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly",
           "inactive": "inactive"}


class Media(NamedTuple):
    """The first audio stream of an SDP: where it goes, its direction, its payload types."""

    ip: str
    port: int
    direction: str
    payload_types: tuple[int, ...]


def sdp_offer(ip: str, port: int, session_version: int, direction: str = "sendrecv", *,
              session_id: int = 1, payload_types: tuple[int, ...] = (PCMU, TELEPHONE_EVENT),
              name: str = "ippbx-test") -> bytes:
    """An SDP for one audio stream at `ip:port`: PCMU/8000 (PT 0) and telephone-event/8000
    (PT 101, events 0-16), 20 ms packets, `direction`."""
    if direction not in DIRECTIONS:
        raise ValueError(f"bad direction {direction!r}")
    lines = [
        "v=0",
        f"o=- {session_id} {session_version} IN IP4 {ip}",
        f"s={name}",
        f"c=IN IP4 {ip}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(str(pt) for pt in payload_types)}",
    ]
    if PCMU in payload_types:
        lines.append(f"a=rtpmap:{PCMU} PCMU/{RATE}")
    if TELEPHONE_EVENT in payload_types:
        lines += [f"a=rtpmap:{TELEPHONE_EVENT} telephone-event/{RATE}",
                  f"a=fmtp:{TELEPHONE_EVENT} 0-16"]
    lines += [f"a=ptime:{round(PTIME * 1000)}", f"a={direction}"]
    return ("\r\n".join(lines) + "\r\n").encode()


def mirrored(direction: str) -> str:
    """The direction that answers an offered one (RFC 3264 §6.1)."""
    return _MIRROR[direction]


def sdp_answer(offer: bytes, ip: str, port: int, session_version: int, *,
               session_id: int = 1, hold: bool = False) -> bytes:
    """Our answer to `offer`: the mirrored direction (or, `hold`, at most sendonly), the
    payload types among PCMU and telephone-event that the offer has, in its order."""
    offered = parse_media(offer)
    direction = mirrored(offered.direction)
    if hold:
        direction = {"sendrecv": "sendonly", "recvonly": "inactive"}.get(direction, direction)
    common = tuple(pt for pt in offered.payload_types if pt in (PCMU, TELEPHONE_EVENT))
    return sdp_offer(ip, port, session_version, direction, session_id=session_id,
                     payload_types=common or (PCMU,))


def parse_media(sdp: bytes) -> Media:
    """The first audio m= line of `sdp`: its connection address (media-level c= over the
    session's), port, direction (media-level attribute over the session's, "sendrecv"
    by default) and payload types. ValueError if there is no audio stream."""
    session_ip, session_direction = "", "sendrecv"
    media: Media | None = None
    media_ip, media_direction = "", ""
    section = "session"  # or "audio" (the stream we describe) or "other" (any other m=)
    for raw in sdp.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if line.startswith("m="):
            parts = line[2:].split()
            if media is None and len(parts) >= 3 and parts[0] == "audio":
                pts = tuple(int(p) for p in parts[3:] if p.isdigit())
                media = Media("", int(parts[1]), "", pts)
                section = "audio"
            else:
                section = "other"
            continue
        if section == "other":
            continue
        if line.startswith("c="):
            parts = line[2:].split()
            address = parts[2].split("/")[0] if len(parts) >= 3 else ""
            if section == "audio":
                media_ip = address
            else:
                session_ip = address
        elif line.startswith("a=") and line[2:] in DIRECTIONS:
            if section == "audio":
                media_direction = line[2:]
            else:
                session_direction = line[2:]
    if media is None:
        raise ValueError("no audio stream in the SDP")
    return media._replace(ip=media_ip or session_ip,
                          direction=media_direction or session_direction)


# -- RTP --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RtpPacket:
    """One RTP packet: the header fields we use and the payload."""

    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    def to_bytes(self) -> bytes:
        first = 0x80  # version 2, no padding, no extension, no CSRC
        second = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        return RTP_HEADER.pack(first, second, self.seq & 0xFFFF, self.timestamp & 0xFFFFFFFF,
                               self.ssrc) + self.payload

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket | None:
        """The packet in `data`, or None if it is not RTP version 2 (or is cut short)."""
        if len(data) < RTP_HEADER.size:
            return None
        first, second, seq, timestamp, ssrc = RTP_HEADER.unpack_from(data)
        if first >> 6 != 2:
            return None
        start = RTP_HEADER.size + 4 * (first & 0x0F)
        if first & 0x10:  # a header extension: 4 bytes, then its length in words
            if len(data) < start + 4:
                return None
            start += 4 + 4 * struct.unpack_from("!H", data, start + 2)[0]
        end = len(data)
        if first & 0x20 and end > start:  # padding: its count is the last byte
            end -= data[-1]
        if end < start:
            return None
        return cls(second & 0x7F, seq, timestamp, ssrc, data[start:end], bool(second & 0x80))


def dtmf_payload(event: int, end: bool, volume: int, duration: int) -> bytes:
    """The 4 bytes of an RFC 4733 §2.3 event: event, E bit + volume, duration."""
    return struct.pack("!BBH", event, (0x80 if end else 0) | (volume & 0x3F),
                       min(duration, 0xFFFF))


@dataclass(frozen=True)
class Received:
    """An audio (PCMU) packet that arrived."""

    time: float  # loop time of arrival
    source: tuple[str, int]
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes


@dataclass(frozen=True)
class DtmfPacket:
    """An RFC 4733 telephone-event packet that arrived."""

    time: float
    source: tuple[str, int]
    seq: int
    timestamp: int  # the event's start (the same in all its packets)
    marker: bool
    digit: str
    end: bool
    volume: int
    duration: int  # in timestamp units (1/8000 s)


@dataclass
class _Dtmf:
    """An event being sent: where it is, and who waits for its end."""

    event: int
    ticks: int  # packets before the end packets
    volume: int
    done: asyncio.Future[None]
    timestamp: int = -1
    sent: int = 0  # packets sent so far (end packets included)


END_PACKETS = 3  # RFC 4733 §2.5.1.4: the end packet is sent three times


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.on_datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable
        pass


class RtpEndpoint:
    """One RTP stream endpoint on 127.0.0.1 (see the module docstring)."""

    def __init__(self, *, symmetric: bool = False, ssrc: int | None = None,
                 host: str = "127.0.0.1", telephone_event: int = TELEPHONE_EVENT) -> None:
        self.host = host
        self.symmetric = symmetric  # send to wherever RTP last came from
        self.ssrc = ssrc if ssrc is not None else secrets.randbits(32)
        self.telephone_event = telephone_event
        self.remote: tuple[str, int] | None = None
        self.sending = True  # False: send nothing at all (e.g. the SDP says recvonly)
        self.received: list[Received] = []
        self.dtmf: list[DtmfPacket] = []
        self.ignored: Counter[int] = Counter()  # packets not kept, by payload type (-1: not RTP)
        self.sent = 0  # packets sent
        self._seq = secrets.randbits(16)
        self._timestamp = secrets.randbits(32)
        self._sample = 0  # samples of the source played so far
        self._source: Callable[[int, int], bytes | None] = self._nothing
        self._dtmf_queue: list[_Dtmf] = []
        self._transport: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> RtpEndpoint:
        """Bind the socket (an ephemeral port) and start the 20 ms send clock."""
        self._loop = loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self._datagram), local_addr=(self.host, 0))
        self._transport = transport  # type: ignore[assignment]
        self._task = asyncio.ensure_future(self._clock())
        return self

    async def stop(self) -> None:
        """Stop sending and close the socket; DTMF still queued is abandoned."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for item in self._dtmf_queue:
            if not item.done.done():
                item.done.cancel()
        self._dtmf_queue.clear()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def rebind(self) -> tuple[str, int]:
        """Move to a fresh socket (a new ephemeral port), keeping everything else: the
        stream (SSRC, sequence, timestamps), what is sent and where, what was received.
        The new address (for a new SDP offer, as a media relay would change ports)."""
        assert self._transport is not None and self._loop is not None, "not started"
        old = self._transport
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _Protocol(self._datagram), local_addr=(self.host, 0))
        self._transport = transport  # type: ignore[assignment]
        old.close()
        return self.address

    @property
    def address(self) -> tuple[str, int]:
        """Our (host, port)."""
        assert self._transport is not None, "not started"
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        return self.address[1]

    def now(self) -> float:
        """The loop time, the clock of `Received.time` and `received_since`."""
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()

    # -- what to send --------------------------------------------------------------------
    def set_remote(self, host: str | None, port: int = 0) -> None:
        """Send to `host:port` from now on (None, port 0 or 0.0.0.0: nowhere)."""
        if host is None or port == 0 or host == "0.0.0.0":
            self.remote = None
        else:
            self.remote = (host, port)

    def play_tone(self, freq: float, amplitude: float = DEFAULT_AMPLITUDE) -> None:
        """Send a continuous sine at `freq` Hz."""
        self._source = lambda start, count: ulaw_encode(
            tone(freq, count, start=start, amplitude=amplitude))

    def play_silence(self) -> None:
        """Send packets of digital silence."""
        self._source = lambda start, count: bytes([SILENCE_BYTE]) * count

    def play_samples(self, samples: npt.ArrayLike, loop: bool = True) -> None:
        """Send these samples (e.g. `read_wav(...)`), over and over if `loop`, else once
        and then silence."""
        encoded = ulaw_encode(samples)
        if not encoded:
            raise ValueError("no samples to play")
        first = self._sample

        def source(start: int, count: int) -> bytes:
            offset = start - first
            if loop:
                offset %= len(encoded)
                chunk = (encoded[offset:] + encoded * (count // len(encoded) + 1))[:count]
                return chunk
            chunk = encoded[offset : offset + count]
            return chunk + bytes([SILENCE_BYTE]) * (count - len(chunk))

        self._source = source

    def play_nothing(self) -> None:
        """Send no audio packets (DTMF events still go out)."""
        self._source = self._nothing

    @staticmethod
    def _nothing(start: int, count: int) -> None:
        return None

    async def send_dtmf(self, digit: str, duration_ms: int = 100, volume: int = 10) -> None:
        """Send one RFC 4733 event (PT 101) in place of audio: a packet every 20 ms over
        `duration_ms` (the first with the marker bit, all with the event's start
        timestamp and a growing duration), then three end packets; returns once the last
        end packet went out. Nothing goes out while there is no remote address."""
        event = DTMF_EVENTS.index(digit.upper())
        loop = asyncio.get_running_loop()
        item = _Dtmf(event, max(1, round(duration_ms / 1000 / PTIME)), volume,
                     loop.create_future())
        self._dtmf_queue.append(item)
        await item.done

    # -- the send clock --------------------------------------------------------------------
    async def _clock(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tick = 0
        while True:
            tick += 1
            late = loop.time() - (start + tick * PTIME)
            if late > 10 * PTIME:  # the loop was busy for long: restart the clock
                start, tick = loop.time(), 0
            else:
                await asyncio.sleep(max(0.0, -late))
            self._tick()

    def _tick(self) -> None:
        """One 20 ms period: a DTMF packet if an event is on, else a packet of audio."""
        count = SAMPLES_PER_PACKET
        if self._dtmf_queue:
            self._send_dtmf_packet(self._dtmf_queue[0])
        else:
            payload = self._source(self._sample, count)
            if payload is not None:
                self._send(PCMU, payload)
        self._sample += count
        self._timestamp = (self._timestamp + count) & 0xFFFFFFFF

    def _send_dtmf_packet(self, item: _Dtmf) -> None:
        first = item.timestamp < 0
        if first:
            item.timestamp = self._timestamp
        item.sent += 1
        end = item.sent > item.ticks
        duration = SAMPLES_PER_PACKET * min(item.sent, item.ticks)
        self._send(self.telephone_event, dtmf_payload(item.event, end, item.volume, duration),
                   timestamp=item.timestamp, marker=first)
        if item.sent >= item.ticks + END_PACKETS:
            self._dtmf_queue.pop(0)
            if not item.done.done():
                item.done.set_result(None)

    def _send(self, payload_type: int, payload: bytes, *, timestamp: int | None = None,
              marker: bool = False) -> None:
        if not self.sending or self.remote is None or self._transport is None:
            return
        packet = RtpPacket(payload_type, self._seq, self._timestamp if timestamp is None
                           else timestamp, self.ssrc, payload, marker)
        self._seq = (self._seq + 1) & 0xFFFF
        self._transport.sendto(packet.to_bytes(), self.remote)
        self.sent += 1

    # -- receiving -------------------------------------------------------------------------
    def _datagram(self, data: bytes, source: tuple[str, int]) -> None:
        now = self.now()
        packet = RtpPacket.parse(data)
        if packet is None:
            self.ignored[-1] += 1
            return
        if self.symmetric:
            self.remote = source
        if packet.payload_type == PCMU:
            self.received.append(Received(now, source, packet.seq, packet.timestamp,
                                          packet.ssrc, packet.payload))
        elif packet.payload_type == self.telephone_event and len(packet.payload) >= 4:
            event, flags, duration = struct.unpack_from("!BBH", packet.payload)
            digit = DTMF_EVENTS[event] if event < len(DTMF_EVENTS) else f"<{event}>"
            self.dtmf.append(DtmfPacket(now, source, packet.seq, packet.timestamp,
                                        packet.marker, digit, bool(flags & 0x80),
                                        flags & 0x3F, duration))
        else:
            self.ignored[packet.payload_type] += 1

    def samples(self, since: float | None = None, until: float | None = None) -> Samples:
        """The decoded audio that arrived in [since, until) (loop time; None: no bound),
        packets in arrival order."""
        payloads = [r.payload for r in self.received
                    if (since is None or r.time >= since) and (until is None or r.time < until)]
        return ulaw_decode(b"".join(payloads))

    def received_since(self, t: float) -> Samples:
        """The decoded audio that arrived since loop time `t`."""
        return self.samples(since=t)

    def packets_since(self, t: float) -> list[Received]:
        return [r for r in self.received if r.time >= t]

    def sources(self, since: float | None = None) -> set[tuple[str, int]]:
        """The addresses audio came from (since loop time `since`)."""
        return {r.source for r in self.received if since is None or r.time >= since}

    def dtmf_digits(self) -> str:
        """The digits of the events whose end arrived, one per event (its timestamp)."""
        digits: list[str] = []
        seen: set[tuple[tuple[str, int], int]] = set()
        for p in self.dtmf:
            key = (p.source, p.timestamp)
            if p.end and key not in seen:
                seen.add(key)
                digits.append(p.digit)
        return "".join(digits)

    def clear(self) -> None:
        """Forget everything received so far (audio, DTMF, the ignored counts)."""
        self.received.clear()
        self.dtmf.clear()
        self.ignored.clear()

    async def record(self, seconds: float) -> Samples:
        """The decoded audio that arrives over the next `seconds` (maybe none)."""
        since = self.now()
        await asyncio.sleep(seconds)
        return self.samples(since=since)

    async def wait_audio(self, seconds: float, timeout: float = 3.0) -> Samples:
        """Wait (at most `timeout` s) until `seconds` of audio arrived after now; return
        those samples. AssertionError if they did not come in time."""
        loop = asyncio.get_running_loop()
        since = loop.time()
        end = since + timeout
        want = round(seconds * RATE)
        while True:
            samples = self.samples(since=since)
            if samples.size >= want:
                return samples[:want]
            if loop.time() > end:
                raise AssertionError(f"only {samples.size / RATE:.2f} s of audio arrived in "
                                     f"{timeout} s (wanted {seconds} s)")
            await asyncio.sleep(PTIME)
