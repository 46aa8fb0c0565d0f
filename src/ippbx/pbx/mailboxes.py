"""Voicemail mailboxes: each extension's messages as WAV files in a directory of its own,
with a row per message in the store that says who left it, when, how long it is and
whether it has been heard.

Layout: `<directory>/<mailbox>/msgNNNN.wav`, numbered from `msg0000.wav` as Asterisk
names them (a new message takes the number after the highest in use, or the lowest free
one once 9999 is taken), and the mailbox's own greeting as `greeting.wav` beside them.
`deposit` moves a recorded WAV in and adds its row; a full mailbox (`max_messages`)
refuses the message and deletes the file.

The file is the message: one that vanished from the disk (deleted by hand, a disk
replaced) is dropped from every listing and its row deleted. Every change that alters a
mailbox's counts of new and old messages calls `on_change(mailbox)`, which the PBX points
at its message-waiting NOTIFYs. Only plain names are looked up: a mailbox or file name
with a path separator, `.` or `..` is no mailbox and no message.
"""

from __future__ import annotations

import re
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ippbx.store.sqlite import Store

GREETING = "greeting.wav"
MAX_NUMBER = 9999  # msg9999.wav: the last four-digit name
_MESSAGE_NAME = re.compile(r"msg([0-9]{4})\.wav")


@dataclass(frozen=True, slots=True)
class Message:
    """One voicemail message (`file` is its name inside the mailbox's directory)."""

    mailbox: str
    file: str
    caller: str
    received_at: float  # unix seconds
    seconds: int
    heard: bool


def is_plain_name(name: str) -> bool:
    """A name that stays inside its directory: no separator, not `.`/`..`, no NUL."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def message_name(number: int) -> str:
    return f"msg{number:04d}.wav"


class MailboxFull(Exception):
    """No message name is free (every one from msg0000 to msg9999 is taken)."""


class Mailboxes:
    """The mailboxes under `directory`, their messages listed in `store`."""

    def __init__(
        self,
        directory: str | Path,
        store: Store,
        clock: Callable[[], float] = time.time,
        *,
        max_messages: int = 100,
    ) -> None:
        self.directory = Path(directory)
        self.store = store
        self.clock = clock
        self.max_messages = max_messages
        self.on_change: Callable[[str], None] | None = None

    # -- messages -----------------------------------------------------------------------
    def deposit(self, mailbox: str, caller: str, wav: Path, seconds: int) -> Message | None:
        """Move `wav` into the mailbox as its next message; None (and `wav` deleted) when
        the mailbox is full. ValueError for a mailbox name that is not plain."""
        folder = self._folder(mailbox)
        if len(self.messages(mailbox)) >= self.max_messages:
            Path(wav).unlink(missing_ok=True)
            return None
        folder.mkdir(parents=True, exist_ok=True)
        try:
            name = self._next_name(mailbox, folder)
        except MailboxFull:
            Path(wav).unlink(missing_ok=True)
            return None
        shutil.move(wav, folder / name)
        message = Message(mailbox, name, caller, self.clock(), max(0, int(seconds)), False)
        self.store.voicemail_add(message)
        self._changed(mailbox)
        return message

    def messages(self, mailbox: str) -> list[Message]:
        """The mailbox's messages, oldest first."""
        if not is_plain_name(mailbox):
            return []
        return self._present(self.store.voicemail_list(mailbox))

    def all_messages(self) -> dict[str, list[Message]]:
        """Every mailbox that has messages, with them (oldest first)."""
        out: dict[str, list[Message]] = {}
        for message in self._present(self.store.voicemail_all()):
            out.setdefault(message.mailbox, []).append(message)
        return out

    def counts(self, mailbox: str) -> tuple[int, int]:
        """(new, old): messages not heard yet, and heard ones."""
        messages = self.messages(mailbox)
        new = sum(1 for m in messages if not m.heard)
        return new, len(messages) - new

    def path_of(self, mailbox: str, file: str) -> Path | None:
        """The WAV of message `file` of `mailbox`: a regular file listed in the store;
        None for anything else (`../x`, `a/b`, a name the mailbox has no message by)."""
        message = self._find(mailbox, file)
        return self._file(message) if message is not None else None

    def delete(self, mailbox: str, file: str) -> bool:
        """Delete one message (its file and row); False if the mailbox has no such one."""
        message = self._find(mailbox, file)
        if message is None:
            return False
        self._path(message).unlink(missing_ok=True)
        self.store.voicemail_delete(mailbox, file)
        self._changed(mailbox)
        return True

    def delete_all(self, mailbox: str) -> int:
        """Delete every message of the mailbox; how many there were."""
        messages = self.messages(mailbox)
        for message in messages:
            self._path(message).unlink(missing_ok=True)
        if messages:
            self.store.voicemail_delete_mailbox(mailbox)
            self._changed(mailbox)
        return len(messages)

    def mark_heard(self, mailbox: str, file: str) -> None:
        """Count the message as heard (old); nothing for a message the mailbox has not."""
        message = self._find(mailbox, file)
        if message is not None and not message.heard:
            self.store.voicemail_mark_heard(mailbox, file)
            self._changed(mailbox)

    # -- greetings ----------------------------------------------------------------------
    def greeting(self, mailbox: str) -> Path | None:
        """The mailbox's own greeting, if it recorded one."""
        if not is_plain_name(mailbox):
            return None
        path = self.directory / mailbox / GREETING
        return path if _is_regular(path) else None

    def save_greeting(self, mailbox: str, wav: Path) -> Path:
        """Move `wav` in as the mailbox's greeting (replacing the one it had)."""
        folder = self._folder(mailbox)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / GREETING
        shutil.move(wav, target)
        return target

    # -- inside -------------------------------------------------------------------------
    def _folder(self, mailbox: str) -> Path:
        if not is_plain_name(mailbox):
            raise ValueError(f"not a mailbox name: {mailbox!r}")
        return self.directory / mailbox

    def _path(self, message: Message) -> Path:
        return self.directory / message.mailbox / message.file

    def _file(self, message: Message) -> Path | None:
        path = self._path(message)
        return path if _is_regular(path) else None

    def _find(self, mailbox: str, file: str) -> Message | None:
        if not is_plain_name(file):
            return None
        return next((m for m in self.messages(mailbox) if m.file == file), None)

    def _present(self, messages: list[Message]) -> list[Message]:
        """`messages` without those whose file is gone (their rows are deleted)."""
        kept: list[Message] = []
        emptied: set[str] = set()
        for message in messages:
            if is_plain_name(message.file) and self._file(message) is not None:
                kept.append(message)
            else:
                self.store.voicemail_delete(message.mailbox, message.file)
                emptied.add(message.mailbox)
        for mailbox in sorted(emptied):
            self._changed(mailbox)
        return kept

    def _next_name(self, mailbox: str, folder: Path) -> str:
        """One above the highest message number in use (in the store or on the disk),
        else the lowest free one."""
        taken = {int(m[1]) for name in self._names(mailbox, folder)
                 if (m := _MESSAGE_NAME.fullmatch(name))}
        top = max(taken, default=-1)
        if top < MAX_NUMBER:
            return message_name(top + 1)
        free = next((n for n in range(MAX_NUMBER + 1) if n not in taken), None)
        if free is None:
            raise MailboxFull(mailbox)
        return message_name(free)

    def _names(self, mailbox: str, folder: Path) -> set[str]:
        names = {m.file for m in self.store.voicemail_list(mailbox)}
        try:
            names |= {entry.name for entry in folder.iterdir()}
        except OSError:
            pass
        return names

    def _changed(self, mailbox: str) -> None:
        if self.on_change is not None:
            self.on_change(mailbox)


def _is_regular(path: Path) -> bool:
    """A regular file, not a link (a link could point anywhere)."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except (OSError, ValueError):
        return False
