"""Queue membership as it changes at run time, kept over restarts: the dynamic agents
signed in (API `queue/add_dynamicagent`, feature code `*71`) and which agents, static or
dynamic, are paused. A row is one (queue, extension); the configuration's static agents
have a row only while one says something the file does not (paused)."""

from __future__ import annotations

from ippbx.store.batch import WriteQueue

SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_agents (
    queue     TEXT NOT NULL,
    extension TEXT NOT NULL,
    dynamic   INTEGER NOT NULL,
    paused    INTEGER NOT NULL,
    PRIMARY KEY (queue, extension)
);
"""

_SAVE = "INSERT OR REPLACE INTO queue_agents VALUES (?,?,?,?)"
_DELETE = "DELETE FROM queue_agents WHERE queue = ? AND extension = ?"


class QueueAgentTable(WriteQueue):
    """Mixin of `Store`: the run-time members of each queue."""

    def queue_agent_save(self, queue: str, extension: str, dynamic: bool,
                         paused: bool) -> None:
        self._write(_SAVE, (queue, extension, int(dynamic), int(paused)))

    def queue_agent_delete(self, queue: str, extension: str) -> None:
        self._write(_DELETE, (queue, extension))

    def queue_agents_load(self) -> list[tuple[str, str, bool, bool]]:
        """Every row: (queue, extension, dynamic, paused), in the order they were made."""
        self.flush()
        rows = self._db.execute(
            "SELECT queue, extension, dynamic, paused FROM queue_agents ORDER BY rowid")
        return [(queue, ext, bool(dynamic), bool(paused))
                for queue, ext, dynamic, paused in rows.fetchall()]
