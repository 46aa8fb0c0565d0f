"""Persistence: SQLite for what must survive a restart."""
