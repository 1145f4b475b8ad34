"""The director: runs a show until told to stop, then shuts everything down in order."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from pxcontrol.app import App, LoadedShow
from pxcontrol.events import Event


async def run_director(
    loaded: LoadedShow,
    stop: asyncio.Event,
    on_started: Callable[[App], None] | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> App:
    """Start the show's modules, serve until `stop` is set, then stop modules and close sockets."""
    app = App(loaded)
    if on_event is not None:
        app.events.listen(on_event)
    try:
        await app.start()
        app.emit(
            "show.loaded",
            file=str(loaded.path),
            clients=len(loaded.show.clients),
            modules=len(loaded.show.modules),
            mappings=len(loaded.show.mappings),
        )
        if on_started is not None:
            on_started(app)
        await stop.wait()
    finally:
        await app.stop()
    return app


def stop_on_signals(stop: asyncio.Event) -> None:
    """Ctrl-C and SIGTERM end the show cleanly: modules stopped, sockets closed."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
