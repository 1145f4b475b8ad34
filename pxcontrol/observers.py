"""Calling plugins' hooks the way pluggy means them, one implementation at a time.

pluggy calls every implementation of a hook with only the arguments it names (an
implementation may leave out arguments it does not need) and stops at the first one that
raises. The runtime keeps the first rule and not the second: one failing plugin must not
keep the others from hearing an event, so each implementation is called apart, in
pluggy's own order (tryfirst first, then the newest registered).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

import pluggy

from pxcontrol.events import Event
from pxcontrol.plugins import hook_order
from pxcontrol.tasks import cancel_and_wait

log = logging.getLogger("pxcontrol.plugins")

#: An async `observe_event` implementation is cut off after this long (director and agent).
OBSERVER_TIMEOUT = 2.0

Failed = Callable[[pluggy.HookImpl, Exception], None]


def call_each(hook: pluggy.HookCaller, failed: Failed, /, **kwargs: Any) -> list[tuple[str, Any]]:
    """Call each implementation of `hook` with the arguments it names; return each one's
    (plugin name, result). One that raises is given to `failed`, and the rest still run.

    Hook wrappers are left out: they wrap one call of every implementation together,
    which is exactly what calling them apart does not do.
    """
    results = []
    for impl in hook_order(hook):
        if impl.hookwrapper or impl.wrapper:
            continue
        try:
            result = impl.function(*[kwargs[name] for name in impl.argnames])
        except Exception as exc:
            failed(impl, exc)
            continue
        results.append((impl.plugin_name, result))
    return results


class Observers:
    """Tells every `observe_event` implementation of each event, without waiting for them.

    An async implementation runs as a task of its own, cut off at OBSERVER_TIMEOUT; the
    tasks are kept (a task nobody holds may be collected mid-run) until they end or
    `close()` ends them.
    """

    def __init__(self, plugins: Callable[[], pluggy.PluginManager]) -> None:
        self.plugins = plugins  # the plugins now: a reload may bring others
        self.tasks: set[asyncio.Task[None]] = set()

    def tell(self, event: Event) -> None:
        hook = self.plugins().hook.observe_event
        if not hook.get_hookimpls():
            return

        def failed(impl: pluggy.HookImpl, exc: Exception) -> None:
            log.error("plugin %s failed observing %s", impl.plugin_name, event.kind, exc_info=exc)

        for plugin, result in call_each(hook, failed, event=event):
            if not inspect.isawaitable(result):
                continue
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a command-line call): nothing can await it
                if inspect.iscoroutine(result):
                    result.close()
                continue
            task = loop.create_task(_bounded(result, plugin, event.kind))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        await cancel_and_wait(set(self.tasks))


async def _bounded(awaitable: Any, plugin: str, kind: str) -> None:
    try:
        await asyncio.wait_for(awaitable, OBSERVER_TIMEOUT)
    except TimeoutError:
        log.error(
            "plugin %s took longer than %g s observing %s: cut off", plugin, OBSERVER_TIMEOUT, kind
        )
    except Exception:
        log.exception("plugin %s failed observing %s", plugin, kind)
