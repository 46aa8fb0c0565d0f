"""ippbx's built-in music on hold: a short tune computed here, so it is ours to ship.

A held party hears `[media] moh` (a WAV the media engine plays, looped). Without one,
ippbx writes this tune once to a file beside its store and uses that: a slow arpeggio
of soft sine notes (fundamental and a quiet octave, a gentle attack and release), 8 kHz
mono 16-bit, the format telephone audio ends up in anyway. No sample of anyone's music
is in it.
"""

from __future__ import annotations

import math
import os
import sys
import wave
from array import array
from pathlib import Path

RATE = 8000
# (semitones from A4 = 440 Hz, beats): C major, then A minor, F, G, each arpeggiated
_TUNE = (
    (-9, 1), (-5, 1), (-2, 1), (3, 1), (-2, 1), (-5, 1),
    (-12, 1), (-9, 1), (-5, 1), (0, 1), (-5, 1), (-9, 1),
    (-16, 1), (-12, 1), (-9, 1), (-4, 1), (-9, 1), (-12, 1),
    (-14, 1), (-10, 1), (-7, 1), (-2, 1), (-7, 1), (-10, 2),
)
BEAT = 0.3  # seconds
LEVEL = 0.3  # peak amplitude, of full scale


def tune_samples() -> array:
    """The tune as 16-bit samples at RATE."""
    out = array("h")
    for semitones, beats in _TUNE:
        freq = 440.0 * 2 ** (semitones / 12)
        count = int(RATE * BEAT * beats)
        attack, release = int(RATE * 0.02), int(RATE * 0.12)
        for i in range(count):
            envelope = min(1.0, i / attack, (count - i) / release)
            t = i / RATE
            value = math.sin(2 * math.pi * freq * t) + 0.25 * math.sin(4 * math.pi * freq * t)
            out.append(int(32767 * LEVEL * envelope * value / 1.25))
    if sys.byteorder == "big":
        out.byteswap()  # (WAV samples are little-endian)
    return out


def write_default(path: Path) -> Path:
    """Write the tune as a WAV at `path` (atomically) unless a file is there already."""
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with wave.open(str(tmp), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(tune_samples().tobytes())
    os.replace(tmp, path)
    return path
