"""State that survives a restart: where outputs play, the epoch, takeovers' actions, the event log.

Two SQLite files in the show's state folder, each written from a thread of its
own so the director's event loop never waits on the disk:

- `state.sqlite` holds the decisions (placement, epoch, the operator's automatic
  backup switches, which clients were seen online) and the intent and outcome of
  every takeover's mapped actions. It is written in order (synchronous=FULL): a
  decision is on disk before it is announced.
- `events.sqlite` holds the event log. Events wait in a bounded queue and are
  written in batches; when the queue is full, events are shed (counted, one alarm
  per episode) rather than ever making a decision wait.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import json
import logging
import os
import sqlite3
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pxcontrol.events import KEPT_LONGER, Event

log = logging.getLogger("pxcontrol.state")

SCHEMA = """
CREATE TABLE IF NOT EXISTS placement (
    client TEXT PRIMARY KEY,     -- a playout client
    plays_on TEXT NOT NULL       -- the client its outputs play on now
);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS intents (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    kind TEXT NOT NULL,          -- the event that started the mapping: backup.activated/moved
    event_seq INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    client TEXT NOT NULL,        -- the playout client
    backup TEXT NOT NULL,        -- where its outputs went
    mapping TEXT NOT NULL,       -- "mappings[0]" or "Backup1.on_backup"
    calls TEXT NOT NULL,         -- JSON: the actions with their filled-in arguments
    state TEXT NOT NULL,         -- running, done, replaying, reported
    results TEXT NOT NULL DEFAULT '[]'   -- JSON: each action's ok, once done
);
"""
EVENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    fields TEXT NOT NULL
);
"""
KEEP_EVENTS = 100_000
KEEP_INTENTS = 1000
EVENT_QUEUE_LIMIT = 10_000  # events waiting for the disk; past this they are shed
EVENT_BATCH = 500  # events written per transaction
FILE_CHECK_INTERVAL = 1.0  # seconds between checks that the state files are still ours

#: Intent states: what a restart finds tells it what to do.
RUNNING, DONE, REPLAYING, REPORTED = "running", "done", "replaying", "reported"


@dataclass
class Intent:
    """A takeover's mapping, recorded before its actions ran."""

    id: int
    kind: str
    event_seq: int
    epoch: int
    client: str
    backup: str
    mapping: str
    calls: list[dict[str, Any]]  # {"action", "args", "timeout"}
    state: str

    @property
    def actions(self) -> list[str]:
        return [c["action"] for c in self.calls]


@dataclass
class SavedState:
    epoch: int = 0
    placement: dict[str, str] = field(default_factory=dict)
    auto: dict[str, bool] = field(default_factory=dict)  # operator overrides per client
    events: list[Event] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)  # clients seen online by any run
    unfinished: list[Intent] = field(default_factory=list)  # actions never confirmed


class StateInUse(Exception):
    """Another director holds this show's state: two deciders would undo each other."""


class StateUnusable(Exception):
    """The state folder cannot be used, or a state file is damaged: refused at start,
    with the way to recover."""


class StateNotSaved(Exception):
    """A decision could not be written; `message` says why and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _hold_lock(path: Path) -> IO[str]:
    lock = open(path, "a+")
    if not _try_lock(lock):
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


#: Windows locks a byte range, and a locked range cannot be read by others: the lock
#: sits far past the text (allowed beyond the end of a file), so the holder's pid stays readable.
_WINDOWS_LOCK_AT = 1 << 30


def _try_lock(lock: IO[str]) -> bool:
    """Take the lock without waiting; False if another process (or handle) holds it.

    The operating system drops it when the holder exits, however it exits.
    """
    if sys.platform == "win32":
        import msvcrt

        lock.seek(_WINDOWS_LOCK_AT)
        try:
            msvcrt.locking(lock.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _damaged(path: Path, error: str, lost: str) -> StateUnusable:
    return StateUnusable(
        f"the state file {path} is damaged ({error}); the director does not start on it. "
        f"Move it aside (mv {path} {path}.damaged, and {path.name}-wal and "
        f"{path.name}-shm if present) and start again: {lost}"
    )


def _open_db(path: Path, schema: str, lost: str) -> sqlite3.Connection:
    """Open a database and make sure it is whole; StateUnusable if it is not."""
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        (verdict,) = db.execute("PRAGMA quick_check").fetchone()
        if verdict != "ok":
            db.close()
            raise _damaged(path, verdict, lost)
        db.executescript(schema)
    except sqlite3.OperationalError:
        raise  # the disk or the folder, not the file: the caller says so
    except sqlite3.DatabaseError as exc:
        raise _damaged(path, str(exc), lost) from None
    return db


class EventWriter:
    """The event log's own path to the disk: a bounded queue, written in batches by a thread."""

    def __init__(self, path: Path, limit: int, batch: int) -> None:
        self.path = path
        self.limit = limit
        self.batch = batch
        self.queue: collections.deque[Event | concurrent.futures.Future[None] | None] = (
            collections.deque()
        )
        self.shed = 0  # events never written, since start
        self.episode = 0  # shed in the current episode (0: not shedding)
        self.failure = ""  # the write error while the disk refuses batches, else ""
        self.failure_told = False  # the operator heard of this failure
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._db: sqlite3.Connection | None = None

    def open(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._thread = threading.Thread(target=self._run, name="pxcontrol-events", daemon=True)
        self._thread.start()

    def put(self, item: Event | concurrent.futures.Future[None] | None) -> None:
        self.queue.append(item)
        self._wake.set()

    def _run(self) -> None:
        """The writer thread: it never dies of one bad batch (logged, counted, carries on)."""
        while True:
            try:
                if self._drain():
                    return
            except Exception as exc:  # a bug here must not end the event log silently
                log.exception("the event log writer failed; it carries on")
                self.failure = f"{type(exc).__name__}: {exc}"

    def _drain(self) -> bool:
        """Write what is queued; True when told to stop."""
        self._wake.wait()
        self._wake.clear()
        while self.queue:
            batch: list[Event] = []
            markers: list[concurrent.futures.Future[None] | None] = []
            while self.queue and len(batch) < self.batch:
                item = self.queue.popleft()
                if isinstance(item, Event):
                    batch.append(item)
                else:
                    markers.append(item)
                    break  # a flush or the end: everything before it is written first
            if batch:
                self._write(batch)
            for marker in markers:
                if marker is None:
                    assert self._db is not None
                    self._db.close()
                    return True
                if not marker.done():
                    marker.set_result(None)
        return False

    def _write(self, batch: list[Event]) -> None:
        assert self._db is not None
        rows = [(e.seq, e.time, e.kind, json.dumps(e.fields, default=str)) for e in batch]
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?)", rows)
                last = batch[-1].seq
                if last // 1000 != batch[0].seq // 1000 or last % 1000 == 0:
                    self._db.execute("DELETE FROM events WHERE seq <= ?", (last - KEEP_EVENTS,))
        except sqlite3.Error as exc:
            self.shed += len(batch)  # lost all the same: counted with the shed ones
            self.failure = str(exc)
            log.error("could not write %d events to %s: %s", len(batch), self.path, exc)
        else:
            self.failure = ""

    def close(self) -> None:
        if self._thread is not None:
            self.put(None)
            self._thread.join()
            self._thread = None


class StateStore:
    def __init__(
        self,
        path: Path,
        event_limit: int = EVENT_QUEUE_LIMIT,
        event_batch: int = EVENT_BATCH,
    ) -> None:
        self.path = path
        self.events_path = path.with_name("events.sqlite")
        self.lock_path = path.with_suffix(".lock")
        # Decisions and intents: one thread, in order; never behind the event log.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pxcontrol-state")
        self._db: sqlite3.Connection | None = None
        self._lock_file: IO[str] | None = None
        self._events = EventWriter(self.events_path, event_limit, event_batch)
        self._identities: dict[Path, tuple[int, int] | None] = {}
        self._files_alarmed = False
        self._watch: asyncio.Task[None] | None = None
        #: Called with (alarm, message) when the store needs the operator; the director emits it.
        self.alarm: Callable[[str, str], None] = lambda alarm, message: log.error("%s", message)

    # --- figures for the director's health ---

    @property
    def queue_depth(self) -> int:
        """Events waiting for the disk."""
        return len(self._events.queue)

    @property
    def shed(self) -> int:
        """Events never written to the event log since start (queue full, or the disk refused)."""
        return self._events.shed

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # --- start ---

    async def open(self, recent_events: int = 2000) -> SavedState:
        saved = await self._run(self._open, recent_events)
        self._watch = asyncio.get_running_loop().create_task(
            self._watch_files(), name="state files check"
        )
        return saved

    def _open(self, recent_events: int) -> SavedState:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_file = _hold_lock(self.lock_path)
            db = _open_db(
                self.path,
                SCHEMA,
                "the director then starts with every client's outputs at home and epoch 0: "
                "check where outputs really play and move them by hand where needed",
            )
            self._db = db
            events_db = _open_db(
                self.events_path,
                EVENTS_SCHEMA,
                "the event log is lost; where outputs play is kept",
            )
        except (sqlite3.OperationalError, OSError) as exc:
            raise StateUnusable(
                f"cannot use the state folder {self.path.parent}: {exc}. Make it writable for "
                "the director (a full disk, a read-only mount?) or give it another --state folder"
            ) from None
        settings = dict(db.execute("SELECT key, value FROM settings"))
        rows = events_db.execute(
            "SELECT seq, time, kind, fields FROM events ORDER BY seq DESC LIMIT ?",
            (recent_events,),
        ).fetchall()
        unfinished = [
            Intent(i, k, s, e, c, b, m, json.loads(calls), st)
            for i, k, s, e, c, b, m, calls, st in db.execute(
                "SELECT id, kind, event_seq, epoch, client, backup, mapping, calls, state "
                "FROM intents WHERE state IN (?, ?) ORDER BY id",
                (RUNNING, REPLAYING),
            )
        ]
        self._events.open(events_db)
        for path in (self.path, self.lock_path, self.events_path):
            self._identities[path] = _identity(path)
        return SavedState(
            epoch=int(settings.get("epoch", 0)),
            placement=dict(db.execute("SELECT client, plays_on FROM placement")),
            auto=json.loads(settings.get("auto", "{}")),
            events=[
                Event(kind=k, fields=json.loads(f), time=t, seq=s) for s, t, k, f in reversed(rows)
            ],
            seen=set(json.loads(settings.get("seen", "[]"))),
            unfinished=unfinished,
        )

    # --- decisions: their own path, first ---

    async def save(self, epoch: int, placement: dict[str, str], auto: dict[str, bool]) -> None:
        """Durably record a decision; returns once it is on disk, or raises StateNotSaved."""
        await self._run(self._save, epoch, dict(placement), dict(auto))

    def _write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run a write on the decision connection: StateNotSaved if it is not on disk."""
        assert self._db is not None
        moved = self._files_moved()
        if moved:
            raise StateNotSaved(moved)
        try:
            with self._db:
                self._db.execute("BEGIN")
                return fn(self._db)
        except (sqlite3.Error, OSError) as exc:
            raise StateNotSaved(
                f"could not write {self.path}: {exc}. Free space on its disk or make the "
                f"state folder {self.path.parent} writable again; until then no takeover or "
                "move can be saved, and none is done"
            ) from None

    def _save(self, epoch: int, placement: dict[str, str], auto: dict[str, bool]) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM placement")
            db.executemany("INSERT INTO placement VALUES (?, ?)", placement.items())
            db.execute("INSERT OR REPLACE INTO settings VALUES ('epoch', ?)", (str(epoch),))
            db.execute("INSERT OR REPLACE INTO settings VALUES ('auto', ?)", (json.dumps(auto),))

        self._write(write)

    async def remember_seen(self, names: set[str]) -> None:
        """These clients were seen online: after a restart, their silence is a failure."""
        value = json.dumps(sorted(names))
        await self._run(
            self._write,
            lambda db: db.execute("INSERT OR REPLACE INTO settings VALUES ('seen', ?)", (value,)),
        )

    async def record_intents(
        self,
        kind: str,
        event_seq: int,
        epoch: int,
        client: str,
        backup: str,
        when: float,
        mappings: list[tuple[str, list[dict[str, Any]]]],
    ) -> list[int]:
        """Before a takeover's mapped actions run: what is about to run, on disk, in one
        write for every mapping of the takeover; the intents' ids in order."""

        def write(db: sqlite3.Connection) -> list[int]:
            ids = []
            for mapping, calls in mappings:
                cursor = db.execute(
                    "INSERT INTO intents (time, kind, event_seq, epoch, client, backup, "
                    "mapping, calls, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (when, kind, event_seq, epoch, client, backup, mapping, _json(calls), RUNNING),
                )
                assert cursor.lastrowid is not None
                ids.append(cursor.lastrowid)
            if ids:
                db.execute(
                    "DELETE FROM intents WHERE id <= ? AND state NOT IN (?, ?)",
                    (ids[-1] - KEEP_INTENTS, RUNNING, REPLAYING),
                )
            return ids

        return await self._run(self._write, write)

    async def finish_intent(
        self, intent: int, state: str, results: list[dict[str, Any]] | None = None
    ) -> None:
        """Mark an intent done (with each action's ok), replaying or reported."""

        def write(db: sqlite3.Connection) -> None:
            if results is None:
                db.execute("UPDATE intents SET state = ? WHERE id = ?", (state, intent))
            else:
                db.execute(
                    "UPDATE intents SET state = ?, results = ? WHERE id = ?",
                    (state, _json(results), intent),
                )

        await self._run(self._write, write)

    # --- the state files are still ours ---

    def _files_moved(self) -> str:
        """A message if the state files were deleted or replaced since they were opened."""
        for path, known in self._identities.items():
            now = _identity(path)
            if now != known:
                what = "deleted" if now is None else "replaced"
                return (
                    f"the state file {path} was {what} while the director runs: decisions "
                    "cannot be saved there, so no takeover or move is done. Restore the state "
                    f"folder {self.path.parent}, or restart the director (it starts from the "
                    "folder as it is then: check where outputs play)"
                )
        return ""

    async def check_files(self) -> str:
        """Check, from the state writer's side, that the files are still ours; alarm once."""
        moved = await self._run(self._files_moved)
        if moved and not self._files_alarmed:
            self._files_alarmed = True
            self.alarm("state folder moved", moved)
        elif not moved:
            self._files_alarmed = False
        return moved

    async def _watch_files(self) -> None:
        while True:
            await asyncio.sleep(FILE_CHECK_INTERVAL)
            try:
                await self.check_files()
            except Exception:
                log.exception("checking the state files failed")

    # --- the event log: its own path, bounded ---

    def append(self, event: Event) -> None:
        """Queue an event for the log; never waits. Sheds it if the queue is full."""
        writer = self._events
        if writer.failure and not writer.failure_told:
            writer.failure_told = True
            asyncio.get_running_loop().call_soon(
                self.alarm,
                "event log not written",
                f"could not write the event log {self.events_path}: {writer.failure}. Events "
                "are lost until it can be written again (free space on its disk?); decisions "
                "are saved in state.sqlite as always",
            )
        elif not writer.failure:
            writer.failure_told = False
        depth = len(writer.queue)
        if writer.episode and depth <= writer.limit // 2:
            writer.episode = 0  # the writer caught up: a new shedding is a new alarm
        # What an operator must be able to look back on gets room past the limit.
        limit = writer.limit * 2 if _kept_longer(event.kind) else writer.limit
        if depth >= limit:
            writer.shed += 1
            writer.episode += 1
            if writer.episode == 1:
                asyncio.get_running_loop().call_soon(self._alarm_shedding)
            return
        writer.put(event)

    def _alarm_shedding(self) -> None:
        writer = self._events
        self.alarm(
            "event log shedding",
            f"the event log cannot keep up: {writer.episode} events were not written to "
            f"{self.events_path} ({writer.shed} since start). Decisions are saved and "
            "announced as always; only the log on disk misses them. Look for what floods "
            "events (an OSC sender calling actions in a loop?)",
        )

    async def flush(self) -> None:
        """Wait until every event queued before this call is written."""
        if self._events._thread is None:
            return  # never opened, or closed: nothing waits
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._events.put(done)
        await asyncio.wrap_future(done)

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        await asyncio.to_thread(self._events.close)
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)
        if self._lock_file is not None:
            self._lock_file.close()  # releases the lock
            self._lock_file = None


def _kept_longer(kind: str) -> bool:
    return kind.startswith(KEPT_LONGER)


def _json(value: Any) -> str:
    return json.dumps(value, default=str)
