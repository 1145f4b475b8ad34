"""`--log-file`: the log and every event as plain lines in a file, for a service manager."""

from __future__ import annotations

import re
import signal
import socket
from pathlib import Path

from pxcontrol.testing import Process, free_port, wait_for

SHOW = """
[director]
heartbeat_port = {heartbeat_port}
osc_port = {osc_port}
http_port = {http_port}

[[clients]]
name = "Playout1"
ip = "127.0.0.11"
"""


def test_the_director_appends_its_log_and_events_to_the_log_file(tmp_path: Path):
    heartbeat_port = free_port()
    show = SHOW.format(
        heartbeat_port=heartbeat_port,
        osc_port=free_port(),
        http_port=free_port(socket.SOCK_STREAM),
    )
    (tmp_path / "show.toml").write_text(show)
    log_file = tmp_path / "director.log"
    log_file.write_text("a line from an earlier run\n")
    director = Process(
        [
            "run",
            str(tmp_path),
            "--state",
            str(tmp_path / "state"),
            "--json-events",
            "--log-file",
            str(log_file),
        ]
    )
    try:
        director.wait_event("show.loaded", timeout=30)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stray:
            stray.sendto(b"not a heartbeat", ("127.0.0.1", heartbeat_port))
        wait_for(lambda: "dropped heartbeat" in log_file.read_text(), what="the warning")
        director.signal(signal.SIGINT)
        assert director.wait_exit(10) == 0
    finally:
        director.kill()
    lines = log_file.read_text().splitlines()
    assert lines[0] == "a line from an earlier run", "appended, never truncated"
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}"
    assert any(re.fullmatch(rf"{stamp} EVENT show\.loaded file=\S+ clients=1 .*", x) for x in lines)
    assert any(
        re.fullmatch(rf"{stamp} WARNING pxcontrol\.live: dropped heartbeat \(malformed.*", x)
        for x in lines
    ), lines
    # The terminal still has its own copy: the file is in addition, not instead.
    assert director.of_kind("show.loaded")


def test_a_log_file_that_cannot_be_opened_is_refused_at_start(tmp_path: Path):
    (tmp_path / "show.toml").write_text(SHOW.format(heartbeat_port=1, osc_port=2, http_port=3))
    agent = Process(
        [
            "agent",
            "--name",
            "Playout1",
            "--director",
            "127.0.0.1:9",
            "--log-file",
            str(tmp_path / "no such folder" / "agent.log"),
        ]
    )
    assert agent.wait_exit(30) == 1
    assert any("cannot open the log file" in line for line in agent.output), agent.output
