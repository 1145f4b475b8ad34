"""Ending background tasks, including ones whose code refuses to be cancelled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("pxcontrol")


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], timeout: float = 1.0) -> None:
    """Cancel tasks and wait up to `timeout`; force the ones that swallow their cancellation.

    Device code that catches CancelledError and carries on would otherwise keep
    the director from ever exiting: asyncio waits for every task at shutdown.
    """
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    if not pending:
        return
    _, stubborn = await asyncio.wait(pending, timeout=timeout)
    for task in stubborn:
        log.warning("%s ignored cancellation; abandoning it", task.get_name())
        coro = task.get_coro()
        if coro is not None and hasattr(coro, "close"):
            coro.close()  # GeneratorExit at its await point: CancelledError handlers miss it
        task.cancel()
    if stubborn:
        await asyncio.wait(stubborn, timeout=timeout)
