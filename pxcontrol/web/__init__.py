"""The Live Systems web page: every client, its performance, the backup buttons, the event log.

Served by the director itself (uvicorn in its event loop) on `director.http_port`.
"""

from pxcontrol.web.server import WebServer

__all__ = ["WebServer"]
