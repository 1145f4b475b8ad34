"""A part that cannot run on this machine is said plainly at start; the rest runs."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pxcontrol.testing import Process, free_port

SHOW = """
[director]
heartbeat_port = {heartbeat_port}
osc_port = {osc_port}
http_port = {http_port}

[[clients]]
name = "Playout1"
ip = "127.0.0.11"
"""

#: As on a machine whose watchfiles build cannot load (Wine 8 and watchfiles >= 0.22: a DLL
#: function it lacks): the import fails.
NO_WATCHFILES = 'import sys\nsys.modules["watchfiles"] = None\n'


def test_without_watchfiles_the_director_runs_and_says_reload_is_off(tmp_path: Path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_WATCHFILES)
    show = tmp_path / "show"
    show.mkdir()
    (show / "show.toml").write_text(
        SHOW.format(
            heartbeat_port=free_port(),
            osc_port=free_port(),
            http_port=free_port(socket.SOCK_STREAM),
        )
    )
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    director = Process(["run", str(show), "--state", str(tmp_path / "state"), "--json-events"], env)
    try:
        director.wait_event("show.loaded", timeout=30)
        line = director.wait_line(r"reload on save is off: watchfiles cannot be loaded here")
        assert "take effect when the director starts again" in line.string
        director.wait_line("Live Systems page: http://127.0.0.1:")  # the rest runs
    finally:
        director.kill()
