"""State that survives a restart: where outputs play, the epoch, the event log.

SQLite in the show's state folder, written from one worker thread so the
director's event loop never waits on the disk, and in order: a takeover is
committed (synchronous=FULL) before it is reported done.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pxcontrol.events import Event

SCHEMA = """
CREATE TABLE IF NOT EXISTS placement (
    client TEXT PRIMARY KEY,     -- a playout client
    plays_on TEXT NOT NULL       -- the client its outputs play on now
);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    fields TEXT NOT NULL
);
"""
KEEP_EVENTS = 100_000


@dataclass
class SavedState:
    epoch: int = 0
    placement: dict[str, str] = field(default_factory=dict)
    auto: dict[str, bool] = field(default_factory=dict)  # operator overrides per client
    events: list[Event] = field(default_factory=list)


class StateInUse(Exception):
    """Another director holds this show's state: two deciders would undo each other."""


def _hold_lock(path: Path) -> IO[str]:
    lock = open(path, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise StateInUse(
            f"another director ({holder}) is running this show: its state in "
            f"{path.parent.resolve()} is "
            "in use. Stop it first, or give this one another --state folder"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}\n")
    lock.flush()
    return lock


class StateStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pxcontrol-state")
        self._db: sqlite3.Connection | None = None
        self._lock_file: IO[str] | None = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self, recent_events: int = 2000) -> SavedState:
        return await self._run(self._open, recent_events)

    def _open(self, recent_events: int) -> SavedState:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = _hold_lock(self.path.with_suffix(".lock"))
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(SCHEMA)
        self._db = db
        settings = dict(db.execute("SELECT key, value FROM settings"))
        rows = db.execute(
            "SELECT seq, time, kind, fields FROM events ORDER BY seq DESC LIMIT ?",
            (recent_events,),
        ).fetchall()
        return SavedState(
            epoch=int(settings.get("epoch", 0)),
            placement=dict(db.execute("SELECT client, plays_on FROM placement")),
            auto=json.loads(settings.get("auto", "{}")),
            events=[
                Event(kind=k, fields=json.loads(f), time=t, seq=s) for s, t, k, f in reversed(rows)
            ],
        )

    async def save(self, epoch: int, placement: dict[str, str], auto: dict[str, bool]) -> None:
        """Durably record a decision; returns once it is on disk."""
        await self._run(self._save, epoch, dict(placement), dict(auto))

    def _save(self, epoch: int, placement: dict[str, str], auto: dict[str, bool]) -> None:
        assert self._db is not None
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM placement")
            self._db.executemany("INSERT INTO placement VALUES (?, ?)", placement.items())
            self._db.execute("INSERT OR REPLACE INTO settings VALUES ('epoch', ?)", (str(epoch),))
            self._db.execute(
                "INSERT OR REPLACE INTO settings VALUES ('auto', ?)", (json.dumps(auto),)
            )

    def append(self, event: Event) -> asyncio.Future[None]:
        """Queue an event for the log; writes stay in order with decisions."""
        fields = json.dumps(event.fields, default=str)
        return asyncio.get_running_loop().run_in_executor(
            self._executor, self._append, event.seq, event.time, event.kind, fields
        )

    def _append(self, seq: int, time: float, kind: str, fields: str) -> None:
        assert self._db is not None
        self._db.execute(
            "INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?)", (seq, time, kind, fields)
        )
        if seq % 1000 == 0:
            self._db.execute("DELETE FROM events WHERE seq <= ?", (seq - KEEP_EVENTS,))

    async def flush(self) -> None:
        """Wait until everything queued before this call is written."""
        await self._run(lambda: None)

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)
        if self._lock_file is not None:
            self._lock_file.close()  # releases the lock
            self._lock_file = None
