"""pxcontrol: vendor-neutral show control for media-server rigs.

The names a module author imports live here.
"""

from pxcontrol.actions import ActionSpec, action
from pxcontrol.connection import TcpConnection
from pxcontrol.events import Event
from pxcontrol.hookspecs import hookimpl
from pxcontrol.module import Backoff, Module, ModuleStatus

__all__ = [
    "ActionSpec",
    "Backoff",
    "Event",
    "Module",
    "ModuleStatus",
    "TcpConnection",
    "action",
    "hookimpl",
]
__version__ = "0.1.0"
