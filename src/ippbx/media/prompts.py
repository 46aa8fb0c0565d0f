"""ippbx's built-in voice prompts, and finding a prompt's WAV by name.

ippbx ships a small set of prompts in the package (`ippbx/prompts/NAME.wav`, 8 kHz mono
16-bit): a greeting, hold, voicemail and conference phrases, the digits, a beep and
the tones of a conference's joins and leaves. They are made by
`tools/make_prompts.py` from espeak-ng's synthetic voice and computed tones, so they
are ours to ship. A user's own WAV of the same name in `[media] prompts` replaces one.
"""

from __future__ import annotations

import re
from pathlib import Path

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "prompts"
BUILTIN_PROMPTS = frozenset({
    "welcome", "please-hold", "leave-message", "beep", "ringback", "invalid", "goodbye",
    "vm-enter-mailbox", "vm-enter-pin", "vm-wrong-pin", "vm-you-have", "vm-new-messages",
    "vm-no-messages", "vm-message", "vm-menu", "vm-deleted", "vm-no-more",
    "vm-record-greeting", "vm-greeting-saved",
    "dnd-on", "dnd-off", "forward-on", "forward-off",
    "queue-position", "queue-in-line", "agent-login", "agent-logout", "agent-paused",
    "agent-unpaused",
    "conf-enter-pin", "conf-wrong-pin", "conf-full", "conf-waiting", "conf-only",
    "conf-muted", "conf-unmuted", "conf-join", "conf-leave",
    *(f"digit-{n}" for n in range(10)),
})
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def find_prompt(name: str, user_dir: Path | str) -> Path | None:
    """The WAV of prompt `name`: the user's `<user_dir>/<name>.wav` if that is a file,
    else the built-in one, else None. `name` must be a plain file name (letters, digits,
    `_.-`, no leading dot, no `..`); anything else is None."""
    if not _NAME.fullmatch(name) or ".." in name:
        return None
    user = Path(user_dir) / f"{name}.wav"
    if user.is_file():
        return user
    builtin = BUILTIN_DIR / f"{name}.wav"
    if name in BUILTIN_PROMPTS and builtin.is_file():
        return builtin
    return None
