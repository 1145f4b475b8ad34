"""Ctrl-C and a service manager's stop end a director or an agent cleanly, on every system.

On Linux and macOS the loop handles SIGINT and SIGTERM itself. Windows' Proactor
loop has no `add_signal_handler`: there Python's own handlers take Ctrl-C (SIGINT,
also what NSSM sends to stop a service) and Ctrl-Break (SIGBREAK), and pass them to the
loop, which a signal wakes (asyncio's Proactor loop listens on a wake-up socket).
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

#: What stops the run: Ctrl-C, a service manager's stop, and on Windows Ctrl-Break.
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM) + (
    (signal.SIGBREAK,) if hasattr(signal, "SIGBREAK") else ()
)


def stop_on_signals(stop: asyncio.Event) -> str:
    """Set `stop` on Ctrl-C and the like; says how: "loop" or "handlers" (Windows)."""
    loop = asyncio.get_running_loop()
    how = "loop"
    for sig in STOP_SIGNALS:
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # Windows' Proactor loop
            how = "handlers"

            def handler(_sig: int, _frame: Any) -> None:
                loop.call_soon_threadsafe(stop.set)

            signal.signal(sig, handler)
    return how
