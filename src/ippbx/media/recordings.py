"""Call recordings: rtpengine's pcap of a call turned into one WAV both parties are heard in,
named as the vendors name theirs, kept in a recordings directory.

rtpengine (`--recording-method=pcap --recording-dir=DIR`) writes, per recorded call, the
RTP it receives from both sides into `DIR/pcaps/<call-id>-<16 hex>.pcap` (classic libpcap,
link type 101: raw IP, no link header; `--recording-format=eth` gives Ethernet) where
the call-id is percent-encoded (`urllib.parse.quote(call_id, safe="")`), and its metadata
into `DIR/tmp/rtpengine-meta-<same>.tmp`, moved to `DIR/metadata/rtpengine-meta-<same>.txt`
when the call is deleted (the pcap is complete then).

`pcap_to_wav` reads such a pcap (any classic pcap: raw IPv4/IPv6, Ethernet with VLAN
tags, Linux cooked v1/v2, BSD loopback), keeps the UDP packets that are RTP version 2
with G.711 audio (payload type 0, µ-law, or 8, A-law; telephone-event, comfort noise and
every other type are skipped), groups them into streams by source address and SSRC and
places each packet on one 8 kHz timeline by its RTP timestamp: a stream starts where
its first packet was captured and follows its own timestamps from there (wrapping at 2**32,
reordered packets land in their slot, lost packets and gaps stay silent). A timestamp
that disagrees with the capture clock by more than `MAX_SKEW` (a garbage timestamp, a
sender that restarted its clock) places that packet by its capture time instead, and
two such packets in a row that agree re-anchor the stream; so no packet lands far from
when it was captured, and the length is bounded by the capture span (and `max_seconds`).

The streams are mixed by summing with saturation (as Asterisk's MixMonitor does): each
party keeps its own level, and only where both are loud at once does the sum clip at
full scale. Mixing works on windows of `WINDOW` samples with whole-buffer operations of
the standard library (`bytes.translate`, extended slices, and big-integer arithmetic
on packed 32-bit lanes), so an hour-long call converts in a few seconds in bounded memory;
the WAV (8 kHz, 16-bit, mono) is written to a temporary file and renamed into place.

`Recordings` is the recordings directory of the API (`recording/get_random`,
`recording/download`): names of the form `recording_name` gives, a look-up that only
ever returns a regular file inside the directory, `finish` (convert a call's pcap, then
delete the pcap and its metadata) and `prune`.
"""

from __future__ import annotations

import mmap
import os
import re
import stat
import struct
import tempfile
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

RATE = 8000  # samples per second of G.711 and of the WAV
PCMU = 0  # RTP payload type of G.711 µ-law
PCMA = 8  # RTP payload type of G.711 A-law
MAX_SECONDS = 24 * 3600  # the longest recording written (later audio is dropped)
MAX_SKEW = RATE // 2  # samples a packet's RTP time may differ from its capture time
MAX_STREAMS = 64  # streams mixed at most (packets of further streams are skipped)
WINDOW = RATE * 8  # samples mixed at a time
DAY = 86400.0


class RecordingError(Exception):
    """The file is not a pcap this module reads, cannot be read, or the WAV not written."""


@dataclass(frozen=True, slots=True)
class Conversion:
    """What `pcap_to_wav` wrote."""

    samples: int  # length of the WAV in 8 kHz samples
    streams: int  # RTP audio streams mixed into it
    packets: int  # audio packets placed
    skipped: int  # RTP packets left out: other payload types, extra streams, too late

    @property
    def seconds(self) -> float:
        return self.samples / RATE


# -- G.711 ----------------------------------------------------------------------------------


def _ulaw_linear(code: int) -> int:
    """The linear value of a µ-law code (G.711: the code is inverted; sign, 3-bit segment
    and 4-bit mantissa; bias 0x84)."""
    u = ~code & 0xFF
    magnitude = ((((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)) - 0x84
    return -magnitude if u & 0x80 else magnitude


def _alaw_linear(code: int) -> int:
    """The linear value of an A-law code (G.711: even bits inverted; sign set = positive)."""
    a = code ^ 0x55
    segment = (a & 0x70) >> 4
    magnitude = ((a & 0x0F) << 4) + 8 if segment == 0 else (((a & 0x0F) << 4) + 0x108) << (
        segment - 1)
    return magnitude if a & 0x80 else -magnitude


_LINEAR = {PCMU: [_ulaw_linear(c) for c in range(256)],
           PCMA: [_alaw_linear(c) for c in range(256)]}
# Per law, code → the low byte and the high byte of the sample: signed (for decoding) and
# offset by 32768 (the unsigned lanes the mixer adds up).
_LOW = {pt: bytes(v & 0xFF for v in table) for pt, table in _LINEAR.items()}
_HIGH = {pt: bytes((v >> 8) & 0xFF for v in table) for pt, table in _LINEAR.items()}
_BIASED_HIGH = {pt: bytes(((v + 32768) >> 8) & 0xFF for v in table)
                for pt, table in _LINEAR.items()}
_LAWS = (PCMU, PCMA)  # index 0 and 1 in the packed packet keys


def decode_g711(payload: bytes, payload_type: int) -> bytes:
    """G.711 bytes (`payload_type` 0: µ-law, 8: A-law) → 16-bit little-endian samples."""
    if payload_type not in _LINEAR:
        raise ValueError(f"payload type {payload_type} is not G.711")
    out = bytearray(2 * len(payload))
    out[0::2] = payload.translate(_LOW[payload_type])
    out[1::2] = payload.translate(_HIGH[payload_type])
    return bytes(out)


# -- pcap -------------------------------------------------------------------------------------

_MAGICS = {  # magic as stored → byte order, fractions of a second in a record's time
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
_PCAPNG = b"\x0a\x0d\x0d\x0a"
_FILE_HEADER = 24
_MAX_RECORD = 256 * 1024  # a larger captured length means a corrupt file: stop there

LINK_NULL = 0  # BSD loopback: 4-byte address family in the writer's byte order
LINK_ETHERNET = 1
LINK_RAW = 101  # raw IP (what rtpengine writes by default)
LINK_LOOP = 108  # OpenBSD loopback: 4-byte address family, network order
LINK_LINUX_SLL = 113
LINK_IPV4 = 228
LINK_IPV6 = 229
LINK_LINUX_SLL2 = 276
_RAW_LINKS = frozenset({LINK_RAW, 12, 14, LINK_IPV4, LINK_IPV6})  # 12, 14: DLT_RAW elsewhere
_ETHER_IP = frozenset({0x0800, 0x86DD})
_ETHER_VLAN = frozenset({0x8100, 0x88A8, 0x9100})

_BE16 = struct.Struct("!H")
_BE32 = struct.Struct("!I")
_RTP = struct.Struct("!BBHII")


def _ip_start(link: int, data: mmap.mmap, start: int, end: int) -> int:
    """Where the IP header of the frame [start, end) begins; -1 when it carries no IP."""
    if link in _RAW_LINKS:
        return start
    if link == LINK_ETHERNET:
        at = start + 12
        while at + 2 <= end:
            kind = _BE16.unpack_from(data, at)[0]
            if kind in _ETHER_VLAN:
                at += 4
                continue
            return at + 2 if kind in _ETHER_IP else -1
        return -1
    if link == LINK_LINUX_SLL:
        if start + 16 > end:
            return -1
        return start + 16 if _BE16.unpack_from(data, start + 14)[0] in _ETHER_IP else -1
    if link == LINK_LINUX_SLL2:
        if start + 20 > end:
            return -1
        return start + 20 if _BE16.unpack_from(data, start)[0] in _ETHER_IP else -1
    if link in (LINK_NULL, LINK_LOOP):
        return start + 4  # the IP version nibble tells v4 from v6
    return -1


# One RTP packet of the file, as `_rtp_packets` yields it: (capture time in nanoseconds,
# source address and port packed, SSRC, payload type, RTP timestamp, payload offset in
# the file, payload length).
_Rtp = tuple[int, bytes, int, int, int, int, int]


def _udp_payload(data: mmap.mmap, ip: int, end: int) -> tuple[bytes, int, int] | None:
    """(source address + port, payload start, payload end) of a UDP datagram in IP at `ip`."""
    if ip + 1 > end:
        return None
    version = data[ip] >> 4
    if version == 4:
        header = (data[ip] & 0x0F) * 4
        if header < 20 or ip + header + 8 > end or data[ip + 9] != 17:
            return None
        if _BE16.unpack_from(data, ip + 6)[0] & 0x3FFF:  # a fragment: not a whole datagram
            return None
        total = _BE16.unpack_from(data, ip + 2)[0]
        if total:
            end = min(end, ip + total)
        source = data[ip + 12 : ip + 16]
        udp = ip + header
    elif version == 6:
        if ip + 48 > end or data[ip + 6] != 17:
            return None
        end = min(end, ip + 40 + _BE16.unpack_from(data, ip + 4)[0])
        source = data[ip + 8 : ip + 24]
        udp = ip + 40
    else:
        return None
    if udp + 8 > end:
        return None
    length = _BE16.unpack_from(data, udp + 4)[0]
    if length >= 8:
        end = min(end, udp + length)
    return source + data[udp : udp + 2], udp + 8, end


def _rtp_packets(data: mmap.mmap) -> Iterator[_Rtp]:
    """Every RTP version 2 packet in the pcap `data`, in file order. RecordingError if the
    file is not a classic pcap (or its link type is unknown); a truncated or corrupt
    record ends the iteration."""
    size = len(data)
    if size < _FILE_HEADER:
        raise RecordingError(f"{size} bytes: too short for a pcap header")
    magic = data[:4]
    if magic == _PCAPNG:
        raise RecordingError("pcapng is not supported (only classic libpcap files)")
    if magic not in _MAGICS:
        raise RecordingError(f"not a pcap file (magic {magic.hex()})")
    order, scale = _MAGICS[magic]
    to_ns = 1_000_000_000 // scale
    link = struct.unpack_from(order + "I", data, 20)[0] & 0xFFFF
    if link not in _RAW_LINKS and link not in (LINK_ETHERNET, LINK_LINUX_SLL,
                                                LINK_LINUX_SLL2, LINK_NULL, LINK_LOOP):
        raise RecordingError(f"pcap link type {link} is not supported")
    record = struct.Struct(order + "IIII")
    at = _FILE_HEADER
    while at + record.size <= size:
        seconds, fraction, captured, _ = record.unpack_from(data, at)
        start = at + record.size
        end = start + captured
        if captured > _MAX_RECORD or end > size or fraction >= scale:
            return  # truncated (a partly written last packet) or corrupt
        at = end
        ip = _ip_start(link, data, start, end)
        found = _udp_payload(data, ip, end) if ip >= 0 else None
        if found is None:
            continue
        source, rtp, stop = found
        if stop - rtp < _RTP.size:
            continue
        first, second, _, timestamp, ssrc = _RTP.unpack_from(data, rtp)
        if first >> 6 != 2:
            continue
        header = _RTP.size + 4 * (first & 0x0F)
        if first & 0x10:  # a header extension: 4 bytes, then its length in 32-bit words
            if rtp + header + 4 > stop:
                continue
            header += 4 + 4 * _BE16.unpack_from(data, rtp + header + 2)[0]
        if first & 0x20:  # padding: the last byte counts it
            stop -= data[stop - 1]
        if rtp + header >= stop:
            continue
        yield ((seconds * scale + fraction) * to_ns, source, ssrc, second & 0x7F, timestamp,
               rtp + header, stop - rtp - header)


# -- placing packets on the timeline ---------------------------------------------------------

# A placed packet is one int: position << 56 | payload offset << 17 | length << 1 | law.
_POS_SHIFT = 56
_OFFSET_SHIFT = 17
_MAX_OFFSET = 1 << (_POS_SHIFT - _OFFSET_SHIFT)


class _Stream:
    """One source's RTP (address, port, SSRC) and where its packets go."""

    __slots__ = ("last", "unwrapped", "offset", "pending", "keys")

    def __init__(self, timestamp: int, position: int) -> None:
        self.last = timestamp  # the previous packet's timestamp, as sent
        self.unwrapped = 0  # that timestamp, unwrapped, relative to the first packet's
        self.offset = position  # timeline position = unwrapped timestamp + offset
        self.pending: int | None = None  # the offset a packet that disagreed suggested
        self.keys: list[int] = []  # its placed packets (see above)

    def place(self, timestamp: int, captured: int) -> int:
        """The timeline position of a packet sent with `timestamp`, captured at `captured`."""
        delta = (timestamp - self.last) & 0xFFFFFFFF
        if delta >= 0x80000000:
            delta -= 0x100000000
        self.last = timestamp
        self.unwrapped += delta
        suggested = captured - self.unwrapped
        if abs(suggested - self.offset) <= MAX_SKEW:
            self.pending = None
        elif self.pending is not None and abs(suggested - self.pending) <= MAX_SKEW:
            self.offset, self.pending = self.pending, None  # the sender's clock jumped
        else:
            self.pending = suggested  # one packet off: placed where it was captured
            return captured
        return self.unwrapped + self.offset


@dataclass(slots=True)
class _Timeline:
    streams: list[_Stream]
    samples: int
    packets: int
    skipped: int


def _timeline(data: mmap.mmap, max_samples: int) -> _Timeline:
    streams: dict[tuple[bytes, int], _Stream] = {}
    origin: int | None = None
    total = packets = skipped = 0
    for ns, source, ssrc, payload_type, timestamp, offset, length in _rtp_packets(data):
        if payload_type not in _LINEAR:
            skipped += 1
            continue
        if origin is None:
            origin = ns
        captured = (ns - origin) * RATE // 1_000_000_000
        stream = streams.get((source, ssrc))
        if stream is None:
            if len(streams) >= MAX_STREAMS:
                skipped += 1
                continue
            stream = streams[source, ssrc] = _Stream(timestamp, captured)
        position = stream.place(timestamp, captured)
        if position < 0:  # (reordered) audio from before the first packet: cut
            offset, length, position = offset - position, length + position, 0
        length = min(length, max_samples - position, 0xFFFF)
        if length <= 0 or offset >= _MAX_OFFSET:
            skipped += 1
            continue
        law = _LAWS.index(payload_type)
        stream.keys.append(position << _POS_SHIFT | offset << _OFFSET_SHIFT | length << 1 | law)
        total = max(total, position + length)
        packets += 1
    mixed = [s for s in streams.values() if s.keys]
    for stream in mixed:
        stream.keys.sort()  # timsort: nearly sorted already
    return _Timeline(mixed, total, packets, skipped)


def _unpack(key: int) -> tuple[int, int, int, int]:
    """(position, payload offset, length, payload type) of a placed packet."""
    return (key >> _POS_SHIFT, (key >> _OFFSET_SHIFT) & (_MAX_OFFSET - 1),
            (key >> 1) & 0xFFFF, _LAWS[key & 1])


# -- mixing -----------------------------------------------------------------------------------

_SILENT_LANE = b"\x00\x80\x00\x00"  # 0 offset by 32768, in a 32-bit little-endian lane
_FLIP = bytes(b ^ 0x80 for b in range(256))


@lru_cache(maxsize=MAX_STREAMS)
def _clip_tables(n: int) -> tuple[bytes, bytes, bytes, bytes]:
    """For a sum of `n` offset lanes, by `lane >> 15` (the class byte): keep mask, low byte
    and high byte to use when clipped, and the high byte's sign flip."""
    keep = bytes(0xFF if c in (n - 1, n) else 0 for c in range(256))
    low = bytes(0xFF if c > n else 0 for c in range(256))
    high = bytes(0x80 if c < n - 1 else 0x7F if c > n else 0 for c in range(256))
    flip = _FLIP if n % 2 else bytes(range(256))
    return keep, low, high, flip


def _and_or(value: bytes, mask: bytes, extra: bytes) -> bytes:
    """Bytewise `value & mask | extra`."""
    result = (int.from_bytes(value, "little") & int.from_bytes(mask, "little")
              | int.from_bytes(extra, "little"))
    return result.to_bytes(len(value), "little")


def mix_lanes(lanes: list[bytearray], width: int) -> bytes:
    """`width` 16-bit little-endian samples: the saturated sum of the streams in `lanes`.

    Each lane buffer holds `width` samples as 32-bit little-endian lanes of the sample plus
    32768 (0…65535 in the low two bytes). Adding the buffers as big integers adds every
    lane at once without carries between lanes; bits 15-22 of each sum (one byte, so at
    most 127 streams) then tell, per sample, whether the sum is in range, too low or too
    high, and table translations turn that into the clipped 16-bit sample.
    """
    n = len(lanes)
    if n > 127:
        raise ValueError(f"{n} streams: at most 127 mix at once")
    out = bytearray(2 * width)
    if n == 0:
        return bytes(out)
    if n == 1:
        out[0::2] = lanes[0][0::4]
        out[1::2] = lanes[0][1::4].translate(_FLIP)
        return bytes(out)
    total = sum(int.from_bytes(lane, "little") for lane in lanes)
    raw = total.to_bytes(4 * width, "little")
    classes = (total >> 15).to_bytes(4 * width, "little")[0::4]
    keep_table, low_table, high_table, flip = _clip_tables(n)
    low, high = raw[0::4], raw[1::4].translate(flip)
    keep = classes.translate(keep_table)
    if 0 in keep:  # something clipped
        low = _and_or(low, keep, classes.translate(low_table))
        high = _and_or(high, keep, classes.translate(high_table))
    out[0::2] = low
    out[1::2] = high
    return bytes(out)


def _mix(data: mmap.mmap, timeline: _Timeline, out: wave.Wave_write) -> None:
    streams = timeline.streams
    cursors = [0] * len(streams)
    carried: list[list[int]] = [[] for _ in streams]
    for start in range(0, timeline.samples, WINDOW):
        end = min(start + WINDOW, timeline.samples)
        width = end - start
        lanes: list[bytearray] = []
        for i, stream in enumerate(streams):
            keys, j = stream.keys, cursors[i]
            todo, carried[i] = carried[i], []
            while j < len(keys) and keys[j] >> _POS_SHIFT < end:
                todo.append(keys[j])
                j += 1
            cursors[i] = j
            if not todo:
                continue
            lane = bytearray(_SILENT_LANE * width)
            for key in todo:
                position, offset, length, law = _unpack(key)
                first, last = max(position, start), min(position + length, end)
                if last > first:
                    chunk = data[offset + first - position : offset + last - position]
                    a, b = 4 * (first - start), 4 * (last - start)
                    lane[a:b:4] = chunk.translate(_LOW[law])
                    lane[a + 1 : b : 4] = chunk.translate(_BIASED_HIGH[law])
                if position + length > end:
                    carried[i].append(key)
            lanes.append(lane)
        out.writeframesraw(mix_lanes(lanes, width))


def pcap_to_wav(pcap: str | Path, wav: str | Path, *,
                max_seconds: float = MAX_SECONDS) -> Conversion:
    """Mix the G.711 RTP streams of `pcap` into `wav` (8 kHz, 16-bit, mono), written to a
    temporary file beside it and renamed into place. A pcap without audio gives an empty
    WAV. RecordingError if `pcap` is not a pcap or cannot be read, or `wav` not written."""
    source, target = Path(pcap), Path(wav)
    max_samples = max(0, int(max_seconds * RATE))
    try:
        with open(source, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < _FILE_HEADER:
                raise RecordingError(f"{size} bytes, too short for a pcap")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                timeline = _timeline(data, max_samples)
                _write_atomically(target, lambda out: _mix(data, timeline, out))
    except RecordingError as exc:
        raise RecordingError(f"{source}: {exc}") from None
    except (OSError, ValueError, EOFError, wave.Error) as exc:
        raise RecordingError(f"{source}: {exc}") from exc
    return Conversion(timeline.samples, len(timeline.streams), timeline.packets,
                      timeline.skipped)


def _write_atomically(target: Path, fill: Callable[[wave.Wave_write], None]) -> None:
    """Write a WAV at `target` through a temporary file in its directory; `fill(out)`
    writes the frames."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            with wave.open(f, "wb") as out:
                out.setnchannels(1)
                out.setsampwidth(2)
                out.setframerate(RATE)
                fill(out)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- names and the recordings directory ------------------------------------------------------

_UNSAFE = re.compile(r"[^0-9A-Za-z*#+_.-]")
_DOTS = re.compile(r"\.{2,}")
_NAME = re.compile(r"(?!\.)[0-9A-Za-z*#+_.-]{1,250}\.wav")
_PART_MAX = 64


def _clean(text: str) -> str:
    """`text` with characters outside [0-9A-Za-z*#+_.-] turned into `_`, runs of dots into
    one (a name never holds `..`), at most 64 characters; `unknown` when empty."""
    return _DOTS.sub(".", _UNSAFE.sub("_", text.strip()))[:_PART_MAX] or "unknown"


def recording_name(from_number: str, to_number: str, started: float, uniqueid: str,
                   tz: tzinfo | None = None) -> str:
    """The vendors' recording file name, `exten-<from>-<to>-<yyyymmdd>-<hhmmss>-<uniqueid>.wav`
    (OpenVox: `exten-101-106-20200505-042135-1588641695.1772.wav`), the time the call
    started in the PBX's local time (`tz`, else the process's local time zone)."""
    if tz is None:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    else:
        stamp = datetime.fromtimestamp(started, tz).strftime("%Y%m%d-%H%M%S")
    return f"exten-{_clean(from_number)}-{_clean(to_number)}-{stamp}-{_clean(uniqueid)}.wav"


def is_recording_name(name: str) -> bool:
    """A plain WAV file name: [0-9A-Za-z*#+_.-] only, no leading dot, no `..`, `.wav`."""
    return bool(_NAME.fullmatch(name)) and ".." not in name


def rtpengine_stem(call_id: str) -> str:
    """How rtpengine 10.5 writes a call-id in its file names (percent-encoded UTF-8, only
    letters, digits and `-._~` kept)."""
    return quote(call_id, safe="")


def metadata_files(pcap: Path) -> tuple[Path, Path]:
    """rtpengine's metadata file of `pcap`: while the call lives, then once it is deleted."""
    spool = pcap.parent.parent
    return (spool / "tmp" / f"rtpengine-meta-{pcap.stem}.tmp",
            spool / "metadata" / f"rtpengine-meta-{pcap.stem}.txt")


class Recordings:
    """The recordings directory (WAV files) and, when given, rtpengine's `--recording-dir`
    (`spool`) the pcaps come from."""

    def __init__(self, directory: str | Path, spool: str | Path | None = None, *,
                 max_seconds: float = MAX_SECONDS) -> None:
        self.directory = Path(directory)
        self.spool = Path(spool) if spool is not None else None
        self.max_seconds = max_seconds

    def path_of(self, name: str) -> Path | None:
        """The recording called `name`: a regular file (not a link) directly inside the
        directory, with a plain name (`is_recording_name`); None otherwise."""
        if not is_recording_name(name):
            return None
        path = self.directory / name
        try:
            mode = path.lstat().st_mode
        except (OSError, ValueError):
            return None
        return path if stat.S_ISREG(mode) else None

    def finish(self, pcap: str | Path, name: str) -> Path:
        """Convert `pcap` into the recording `name` (ValueError if it is not a plain name),
        then delete the pcap and its metadata file. RecordingError if the conversion
        failed (the pcap is left where it is)."""
        if not is_recording_name(name):
            raise ValueError(f"not a plain recording name: {name!r}")
        source = Path(pcap)
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.directory / name
        pcap_to_wav(source, target, max_seconds=self.max_seconds)
        for leftover in (source, *metadata_files(source)):
            leftover.unlink(missing_ok=True)
        return target

    def prune(self, keep_days: int, now: float | None = None) -> int:
        """Delete the recordings last modified more than `keep_days` days before `now`
        (0: keep them forever), and temporary files a crash left over a day ago.
        Returns how many recordings went."""
        now = time.time() if now is None else now
        removed = 0
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return 0
        for entry in entries:
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                modified = entry.stat(follow_symlinks=False).st_mtime
                if is_recording_name(entry.name):
                    if keep_days > 0 and modified < now - keep_days * DAY:
                        os.unlink(entry.path)
                        removed += 1
                elif entry.name.startswith(".") and entry.name.endswith(".tmp"):
                    if modified < now - DAY:
                        os.unlink(entry.path)
            except OSError:
                continue
        return removed

    def pcaps_for(self, call_id: str) -> list[Path]:
        """rtpengine's pcaps of the call `call_id` in the spool, oldest first (one per
        recording started for it; empty without a spool)."""
        if self.spool is None:
            return []
        pattern = re.compile(re.escape(rtpengine_stem(call_id)) + r"-[0-9a-f]{16}\.pcap")
        found: list[tuple[float, Path]] = []
        try:
            entries = list(os.scandir(self.spool / "pcaps"))
        except OSError:
            return []
        for entry in entries:
            if pattern.fullmatch(entry.name):
                try:
                    found.append((entry.stat().st_mtime, Path(entry.path)))
                except OSError:
                    continue
        return [path for _, path in sorted(found)]

    @staticmethod
    def is_closed(pcap: str | Path) -> bool:
        """Has rtpengine finished `pcap`? (Its metadata file moved to `metadata/`, which
        happens when the call is deleted.)"""
        return metadata_files(Path(pcap))[1].exists()
