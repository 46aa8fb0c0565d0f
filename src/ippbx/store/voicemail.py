"""The voicemail table: one row per message left in a mailbox, the WAV itself being a file
of the mailbox's directory (`ippbx.pbx.mailboxes` keeps the two together).

A row is keyed by its mailbox (the extension number) and its file name (`msg0000.wav`);
it says who left the message, when (unix seconds), how long it is and whether it has been
heard. Writes go through the store's write queue (`ippbx.store.batch`); reads flush first.
"""

from __future__ import annotations

from ippbx.pbx.mailboxes import Message
from ippbx.store.batch import WriteQueue

SCHEMA = """
CREATE TABLE IF NOT EXISTS voicemail (
    mailbox     TEXT NOT NULL,
    file        TEXT NOT NULL,
    caller      TEXT NOT NULL,
    received_at REAL NOT NULL,
    seconds     INTEGER NOT NULL,
    heard       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (mailbox, file)
);
"""

_COLUMNS = "mailbox, file, caller, received_at, seconds, heard"
_ADD = f"INSERT OR REPLACE INTO voicemail ({_COLUMNS}) VALUES (?,?,?,?,?,?)"
_DELETE = "DELETE FROM voicemail WHERE mailbox=? AND file=?"
_DELETE_MAILBOX = "DELETE FROM voicemail WHERE mailbox=?"
_MARK_HEARD = "UPDATE voicemail SET heard=1 WHERE mailbox=? AND file=?"
_ORDER = " ORDER BY received_at, file"


def _message(row: tuple[str, str, str, float, int, int]) -> Message:
    mailbox, file, caller, received_at, seconds, heard = row
    return Message(mailbox, file, caller, float(received_at), int(seconds), bool(heard))


class VoicemailTable(WriteQueue):
    """Mixin of `Store`: the voicemail messages."""

    def voicemail_add(self, m: Message) -> None:
        """Queue the row of a new message (one of the same name is replaced)."""
        self._write(_ADD, (m.mailbox, m.file, m.caller, m.received_at, m.seconds, int(m.heard)))

    def voicemail_list(self, mailbox: str) -> list[Message]:
        """The mailbox's messages, oldest first."""
        self.flush()
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM voicemail WHERE mailbox=?" + _ORDER,
                                (mailbox,))
        return [_message(row) for row in rows]

    def voicemail_all(self) -> list[Message]:
        """Every message of every mailbox, by mailbox, each mailbox's oldest first."""
        self.flush()
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM voicemail ORDER BY mailbox, "
                                "received_at, file")
        return [_message(row) for row in rows]

    def voicemail_delete(self, mailbox: str, file: str) -> None:
        self._write(_DELETE, (mailbox, file))

    def voicemail_delete_mailbox(self, mailbox: str) -> None:
        self._write(_DELETE_MAILBOX, (mailbox,))

    def voicemail_mark_heard(self, mailbox: str, file: str) -> None:
        self._write(_MARK_HEARD, (mailbox, file))
