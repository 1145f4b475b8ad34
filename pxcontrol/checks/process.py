"""`{ process = "Pixera.exe" }`: a process of that name (or executable path) runs.

The process is found once (psutil, in a thread) and then watched: on Linux its exit
is a readable pidfd on the event loop, elsewhere (no `os.pidfd_open`, or no
`add_reader` as on Windows' Proactor loop) a waiter thread blocks in
`psutil.Process.wait`. Either way the exit is noticed at once, not at the next
probe, and fails the check at once (an exit is certain, not slow). Probes while
the process runs cost nothing; once it is gone they look for it again.
"""

from __future__ import annotations

import asyncio
import logging
import ntpath
import os
import posixpath
import threading
import time

import psutil
from pydantic import Field

from pxcontrol.checks.kind import Check, CheckContext, CheckFailed, CheckSettings

log = logging.getLogger("pxcontrol.checks")

#: Where a process cannot be waited for (not ours to open), how often it is looked for.
POLL = 0.02


class ProcessCheck(Check):
    kind = "process"

    class Settings(CheckSettings):
        process: str = Field(min_length=1, description="process name, or executable path")

    def __init__(self, settings: Settings, context: CheckContext) -> None:
        super().__init__(settings, context)
        self.pid: int | None = None  # the process watched now
        self._pidfd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.watcher = ""  # "pidfd" or "thread": how its exit is noticed

    async def probe(self) -> None:
        if self.pid is not None:
            return  # watched: its exit would have been noticed
        pid = await asyncio.to_thread(find_process, self.target)
        if pid is None:
            raise CheckFailed(f"no process {self.target!r} is running")
        self._watch(pid)
        log.info(
            "process %r found: pid %d, its exit watched by a %s", self.target, pid, self.watcher
        )

    def _watch(self, pid: int) -> None:
        self._loop = asyncio.get_running_loop()
        self.pid = pid
        if hasattr(os, "pidfd_open"):
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                self._exited(pid)
                return
            except OSError:
                fd = None  # a kernel without pidfd: a thread instead
            if fd is not None:
                try:
                    self._loop.add_reader(fd, self._pidfd_readable, pid)
                except NotImplementedError:
                    os.close(fd)
                else:
                    self._pidfd, self.watcher = fd, "pidfd"
                    return
        self.watcher = "thread"
        threading.Thread(target=self._wait, args=(pid,), daemon=True, name=f"wait {pid}").start()

    def _pidfd_readable(self, pid: int) -> None:
        self._stop_pidfd()
        self._exited(pid)

    def _wait(self, pid: int) -> None:
        try:
            psutil.Process(pid).wait()
        except psutil.NoSuchProcess:
            pass  # gone already: that is the exit
        except psutil.Error as exc:  # AccessDenied (an elevated process on Windows): not an exit
            log.warning(
                "cannot wait for %s (pid %d): %s; looking for it every %g s instead",
                self.target, pid, exc, POLL,
            )  # fmt: skip
            while self.pid == pid and _alive(pid):
                time.sleep(POLL)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._exited, pid)

    def _exited(self, pid: int) -> None:
        if self.pid != pid:
            return  # a watcher of a process given up already
        self.pid = None
        self.context.ended(f"process {self.target!r} (pid {pid}) exited")

    def _stop_pidfd(self) -> None:
        if self._pidfd is not None and self._loop is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
        self._pidfd = None

    async def close(self) -> None:
        self._stop_pidfd()
        self.pid = None  # a waiter thread that returns later finds nothing to tell


def find_process(wanted: str) -> int | None:
    """The pid of a running process named `wanted` (or with that executable), if any."""
    by_path = "/" in wanted or "\\" in wanted
    me = os.getpid()
    for proc in psutil.process_iter(["status"]):
        if proc.pid == me or proc.info.get("status") == psutil.STATUS_ZOMBIE:
            continue  # a zombie has exited; only its parent has not looked yet
        try:
            if by_path:
                exe = _exe_of(proc)
                if exe and _same_path(exe, wanted):
                    return proc.pid
            elif _same_name(_name_of(proc), wanted):
                return proc.pid
        except psutil.Error:
            continue  # gone since, or not ours to look into
    return None


def _name_of(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        raise
    except OSError:  # Wine: it lacks the query psutil asks Windows for names and paths
        return os.path.basename(_program_of(proc))


def _exe_of(proc: psutil.Process) -> str:
    try:
        return proc.exe()
    except psutil.Error:
        raise
    except OSError:  # Wine, as above
        return _program_of(proc)


def _program_of(proc: psutil.Process) -> str:
    """The program its command line names (first word), where the name cannot be read."""
    command = proc.cmdline()
    return command[0] if command else ""


def _alive(pid: int) -> bool:
    """Runs, and has not exited (a zombie has: only its parent has not looked yet)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # not ours to look into: there, at least
        return psutil.pid_exists(pid)


def _same_name(name: str, wanted: str) -> bool:
    if os.name == "nt":  # Pixera.exe and pixera.EXE are one program there
        return name.lower() == wanted.lower()
    return name == wanted


def _same_path(path: str, wanted: str) -> bool:
    if os.name == "nt":
        return ntpath.normcase(path) == ntpath.normcase(wanted)
    return posixpath.normpath(path) == posixpath.normpath(wanted)
