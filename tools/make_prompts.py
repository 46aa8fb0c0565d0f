#!/usr/bin/env python3
"""Make ippbx's built-in voice prompts: speech from espeak-ng, tones computed here.

Every prompt is an 8 kHz mono 16-bit PCM WAV (what rtpengine's `play media` plays and
what telephone audio ends up as anyway), written to `src/ippbx/prompts/` (or the
directory given as the only argument). Speech is espeak-ng's synthetic en-us voice at
150 words a minute, taken by sox down to 8 kHz, with its leading and trailing silence
trimmed and its peak normalised to -3 dBFS; nobody's recorded voice is in it, so the
set is ours to ship. The beep and the ringback are sines computed below. Needs
`espeak-ng` and `sox` on the PATH; `make prompts` runs it.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import tempfile
import wave
from array import array
from pathlib import Path

RATE = 8000
PEAK_DBFS = -3.0
VOICE, SPEED = "en-us", 150  # espeak-ng's voice and words per minute
SILENCE = "0.2%"  # what sox's trim at either end counts as silence
OUT = Path(__file__).resolve().parents[1] / "src" / "ippbx" / "prompts"

_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

SPEECH: dict[str, str] = {
    "welcome": "Welcome. Please enter the extension you want, or wait for an operator.",
    "please-hold": "Please hold while we connect your call.",
    "leave-message": "The person you are calling is not available. Please leave a message"
                     " after the tone. Press pound when finished.",
    "invalid": "That is not a valid option.",
    "goodbye": "Goodbye.",
    "vm-enter-mailbox": "Please enter your mailbox number, followed by pound.",
    "vm-enter-pin": "Please enter your password, followed by pound.",
    "vm-wrong-pin": "Login incorrect.",
    "vm-you-have": "You have",
    "vm-new-messages": "new messages.",
    "vm-no-messages": "You have no messages.",
    "vm-message": "Message",
    "vm-menu": "Press 1 to play the message again, 7 to delete it, 9 for the next message,"
               " 5 to record your greeting, or star to exit.",
    "vm-deleted": "Message deleted.",
    "vm-no-more": "No more messages.",
    "vm-record-greeting": "Record your greeting after the tone, then press pound.",
    "vm-greeting-saved": "Your greeting has been saved.",
    "dnd-on": "Do not disturb is on.",
    "dnd-off": "Do not disturb is off.",
    "forward-on": "Call forwarding is on.",
    "forward-off": "Call forwarding is off.",
    "queue-position": "You are caller number",
    "queue-in-line": "in line.",
    "agent-login": "Agent logged in.",
    "agent-logout": "Agent logged out.",
    "agent-paused": "Agent paused.",
    "agent-unpaused": "Agent unpaused.",
    "conf-enter-pin": "Please enter the conference password, followed by pound.",
    "conf-wrong-pin": "That password is not correct.",
    "conf-full": "This conference is full.",
    "conf-waiting": "The conference will begin when the moderator arrives.",
    "conf-only": "You are the only person in this conference.",
    "conf-muted": "You are muted.",
    "conf-unmuted": "You are no longer muted.",
    **{f"digit-{n}": word for n, word in enumerate(_DIGITS)},
}
# name -> (frequency in Hz, seconds, fade in and out in seconds, silence after it)
TONES: dict[str, tuple[float, float, float, float]] = {
    "beep": (1000.0, 0.4, 0.01, 0.0),
    # the ringback a caller hears while ippbx rings a party for it (ETSI: 425 Hz, 1 s on,
    # 4 s off), played over and over
    "ringback": (425.0, 1.0, 0.01, 4.0),
    # a member joins / leaves a conference room: what the others hear
    "conf-join": (880.0, 0.25, 0.01, 0.0),
    "conf-leave": (440.0, 0.25, 0.01, 0.0),
}
NAMES = frozenset(SPEECH) | frozenset(TONES)


def tone_samples(freq: float, seconds: float, fade: float) -> array:
    """A sine at `freq` Hz, `seconds` long, peaking at PEAK_DBFS, with linear fades."""
    count, ramp = round(RATE * seconds), max(1, round(RATE * fade))
    level = 32767 * 10 ** (PEAK_DBFS / 20)
    out = array("h")
    for i in range(count):
        envelope = min(1.0, i / ramp, (count - 1 - i) / ramp)
        out.append(round(level * envelope * math.sin(2 * math.pi * freq * i / RATE)))
    if sys.byteorder == "big":
        out.byteswap()  # (WAV samples are little-endian)
    return out


def write_tone(path: Path, freq: float, seconds: float, fade: float,
               silence: float = 0.0) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(tone_samples(freq, seconds, fade).tobytes()
                        + bytes(2 * round(RATE * silence)))


def write_speech(path: Path, text: str, scratch: Path) -> None:
    """Say `text` with espeak-ng and have sox make it a trimmed, normalised 8 kHz WAV."""
    raw = scratch / "espeak.wav"
    with raw.open("wb") as out:
        subprocess.run(["espeak-ng", "--stdout", "-v", VOICE, "-s", str(SPEED), text],
                       stdout=out, check=True)
    trim = ["silence", "1", "0.01", SILENCE]
    subprocess.run(
        ["sox", "-D", str(raw), "-c", "1", "-b", "16", "-e", "signed-integer", str(path),
         *trim, "reverse", *trim, "reverse", "rate", "-h", str(RATE), "norm", str(PEAK_DBFS)],
        check=True)


def check(path: Path) -> None:
    """Refuse a file that is not 8 kHz mono 16-bit or has no audio at all."""
    with wave.open(str(path), "rb") as wav:
        shape = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
        frames = wav.getnframes()
    if shape != (1, 2, RATE) or frames == 0:
        raise SystemExit(f"{path}: {shape}, {frames} frames: not a usable prompt")


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else OUT
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        print(f"make_prompts: {' and '.join(missing)} not found (Debian: apt-get install "
              f"{' '.join(missing)})", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    total = 0
    with tempfile.TemporaryDirectory(prefix="ippbx-prompts-") as tmp:
        scratch = Path(tmp)
        for name in sorted(NAMES):
            made = scratch / f"{name}.wav"
            if name in TONES:
                write_tone(made, *TONES[name])
            else:
                write_speech(made, SPEECH[name], scratch)
            check(made)
            target = out / made.name
            shutil.move(made, target)
            total += target.stat().st_size
    print(f"make_prompts: {len(NAMES)} prompts in {out}, {total / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
