"""Running code that may never come back (a user's file at import) in a thread, with a time limit.

A Python thread cannot be stopped from outside. When the limit passes, the
thread is abandoned: it runs on until its code returns or the process exits,
and keeps whatever it holds. The threads are daemon threads, so an abandoned
one never keeps the process from exiting; restarting the process frees it.

Whatever the code raises comes back as an exception of the caller's, and
never as SystemExit or KeyboardInterrupt: a user's file that calls `sys.exit()`
must not end the director.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


class TookTooLong(Exception):
    """The code did not return within its limit; `stack` is where its thread was then."""

    def __init__(self, limit: float, stack: traceback.StackSummary) -> None:
        super().__init__(f"did not finish within {limit:g} s")
        self.limit = limit
        self.stack = stack

    def last_frame_in(self, files: set[str]) -> traceback.FrameSummary | None:
        """The innermost frame of the stuck thread that runs in one of `files` (resolved paths)."""
        return next((f for f in reversed(self.stack) if f.filename in files), None)


class Escaped(Exception):
    """The code raised a BaseException that is not an Exception (SystemExit, KeyboardInterrupt,
    a class of its own): carried as an ordinary exception, so it ends nothing."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(f"{type(original).__name__}: {original}")
        self.original = original


def original(exc: BaseException) -> BaseException:
    """What the code itself raised."""
    return exc.original if isinstance(exc, Escaped) else exc


@dataclass
class _Outcome:
    value: Any = None
    error: BaseException | None = None


def _run(fn: Callable[..., Any], args: tuple[Any, ...], outcome: _Outcome) -> None:
    try:
        outcome.value = fn(*args)
    except Exception as exc:
        outcome.error = exc
    except BaseException as exc:  # SystemExit in a thread would end it silently
        outcome.error = Escaped(exc).with_traceback(exc.__traceback__)


def _result(outcome: _Outcome) -> Any:
    if outcome.error is not None:
        raise outcome.error
    return outcome.value


def _stack_of(thread: threading.Thread) -> traceback.StackSummary:
    frame = sys._current_frames().get(thread.ident or -1)
    return traceback.extract_stack(frame) if frame is not None else traceback.StackSummary()


def call_in_thread(fn: Callable[..., T], *args: Any, limit: float, name: str) -> T:
    """`fn(*args)` in a daemon thread; its result, what it raised, or TookTooLong after `limit` s."""
    outcome = _Outcome()
    thread = threading.Thread(target=_run, args=(fn, args, outcome), name=name, daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        raise TookTooLong(limit, _stack_of(thread))
    return _result(outcome)


async def in_thread(fn: Callable[..., T], *args: Any, limit: float, name: str) -> T:
    """`call_in_thread` for the event loop: the loop runs on while the thread works."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    outcome = _Outcome()

    def work() -> None:
        _run(fn, args, outcome)
        try:
            loop.call_soon_threadsafe(_settle, done)
        except RuntimeError:  # the loop closed while we worked: nobody waits
            pass

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        await asyncio.wait_for(done, limit)
    except TimeoutError:
        raise TookTooLong(limit, _stack_of(thread)) from None
    return _result(outcome)


def _settle(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
