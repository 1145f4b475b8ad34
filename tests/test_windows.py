"""pxcontrol on Windows: a real agent and a real director on Windows CPython 3.12, under Wine.

No Windows machine exists here; Wine runs the Windows build of Python with the Windows wheels
of every dependency, and the Windows code paths of pxcontrol: the Proactor event loop (no
add_reader, no add_signal_handler), msvcrt's file lock, the process check's waiter thread.
What Wine 8 itself cannot do is listed in tests/wine.py and docs/running.md; each test says
where it works around one. The Windows processes are slow to start (seconds), so there are few
tests and each checks much.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from pxcontrol.testing import Process, Rig, free_port, wait_for

from .wine import LEFT_OUT, WindowsPython, windows_path

#: A Windows process needs seconds to start under Wine (more on a first run).
START = 90


@pytest.fixture(scope="module")
def windows(tmp_path_factory) -> Iterator[WindowsPython]:
    python = WindowsPython(tmp_path_factory.mktemp("windows"))
    try:
        yield python
    finally:
        python.stop_all()


AGENT_SHOW = """
[director]
heartbeat_port = {heartbeat_port}

[detection]
heartbeat_interval = 0.1
offline_after = 1.0
online_after = 0.5

[[clients]]
name = "Playout1"
ip = "127.0.0.1"  # Wine sends from 127.0.0.1 whatever loopback alias a socket is bound to
outputs = ["Output 1"]
checks = [
  { process = "mediaserver.exe", interval = 0.1, fall = 1, rise = 1 },
  { tcp = "127.0.0.1:TCP_PORT", interval = 0.1, fall = 1, rise = 1 },
  { command = ["cmd.exe", "/c", 'if exist FLAG exit 3'], interval = 0.1, fall = 1, rise = 1 },
]

[[clients]]
name = "Backup1"
ip = "127.0.0.21"
outputs = ["Output 1"]
backup_for = ["127.0.0.1"]
auto_backup = true
"""


def test_an_agent_on_windows_comes_online_runs_its_checks_and_its_loss_is_taken_over(
    windows: WindowsPython, tmp_path: Path
):
    """The agent on Windows: heartbeats, the show's checks (a process, a port, a command), a
    takeover when its media server dies, offline when it is gone."""
    port = socket.socket()  # the media server's port, on this machine as on the client
    port.bind(("127.0.0.1", 0))
    port.listen()
    number = port.getsockname()[1]
    flag = tmp_path / "outputs-dark"  # the command check fails while this file exists
    show = AGENT_SHOW.replace("TCP_PORT", str(number)).replace("FLAG", windows_path(flag))
    rig = Rig(tmp_path, show)
    server = windows.program("mediaserver.exe", "-c", "import time; time.sleep(600)")
    agent = None
    try:
        director = rig.start_director()
        rig.start_clients(Backup1="127.0.0.21")
        agent = windows.pxcontrol(
            "agent", "--name", "Playout1", "--director", f"127.0.0.1:{rig.heartbeat_port}",
            "--bind", "127.0.0.1", "--json-events",
        )  # fmt: skip
        rig.agents["Playout1"] = agent
        director.wait_event("client.online", timeout=START, client="Playout1")
        # Both checks pass; the media server's exit is watched by a thread (no pidfd there).
        agent.wait_line(r"process 'mediaserver.exe' found: pid \d+, its exit watched by a thread")
        assert not agent.of_kind("check.failed")
        ready = director.wait_event("client.online", client="Playout1")

        server.kill()  # the media server dies; the machine and the agent run on
        failed = director.wait_event("client.failed", client="Playout1")
        assert failed["check"] == "process mediaserver.exe"
        assert agent.wait_event("check.failed")["check"] == "process mediaserver.exe"
        activated = director.wait_event("backup.activated", client="Playout1")
        assert (activated["backup"], activated["reason"]) == ("Backup1", "auto")
        assert activated["seq"] > ready["seq"]
        # The notice reaches both agents: the backup plays now, the playout knows it.
        rig.agents["Backup1"].wait_event("backup.activated")
        told = agent.wait_event("backup.activated")
        assert (told["client"], told["backup"]) == ("Playout1", "Backup1")

        port.close()  # and its port stops answering: the tcp check runs there too
        tcp = agent.wait_event("check.failed", check=f"tcp 127.0.0.1:{number}")
        assert "refused" in tcp["message"]
        flag.touch()  # and the site's own script says no: the command check runs there too
        command = wait_for(
            lambda: [e for e in agent.of_kind("check.failed") if e["check"].startswith("command")],
            what="the command check to fail",
        )[0]
        assert command["message"] == "exited with 3", command

        agent.kill()  # the whole client goes
        director.wait_event("client.offline", client="Playout1")
    finally:
        server.kill()
        port.close()
        rig.close()


DIRECTOR_SHOW = """
[director]
heartbeat_port = HEARTBEAT_PORT
osc_port = OSC_PORT
http_port = HTTP_PORT

[detection]
heartbeat_interval = 0.1
offline_after = 1.0
online_after = 0.5

[[clients]]
name = "Playout1"
ip = "127.0.0.11"
outputs = ["Output 1"]

[modules.Console]
type = "udp"
port = CONSOLE_PORT

[[mappings]]
on = "client.online"
client = "Playout1"
do = [{ action = "Console.Send", args = { data = "Playout1 is online" } }]
"""


def test_a_director_on_windows_answers_takes_heartbeats_runs_a_mapping_and_stops_on_ctrl_c(
    windows: WindowsPython, tmp_path: Path
):
    console = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # where the mapping sends
    console.bind(("127.0.0.1", 0))
    console.settimeout(START)
    osc_port, http_port = free_port(), free_port(socket.SOCK_STREAM)
    show = (
        DIRECTOR_SHOW.replace("HEARTBEAT_PORT", str(free_port()))
        .replace("OSC_PORT", str(osc_port))
        .replace("HTTP_PORT", str(http_port))
        .replace("CONSOLE_PORT", str(console.getsockname()[1]))
    )
    (tmp_path / "show.toml").write_text(show)
    heartbeat_port = int(show.split("heartbeat_port = ")[1].split()[0])
    state = windows_path(tmp_path / "state")
    run = ("run", windows_path(tmp_path), "--state", state, "--json-events")
    director = windows.pxcontrol(*run)
    second = agent = None
    try:
        wait_for(
            lambda: director.of_kind("show.loaded") or director.proc.poll() is not None,
            START,
            "the director on Windows to start",
        )
        assert director.of_kind("show.loaded"), director.output
        director.wait_line("Live Systems page: http://127.0.0.1:")

        # /pxcontrol/ping over UDP: the OSC bridge reads on the Proactor loop.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as osc:
            osc.settimeout(10)
            osc.sendto(OscMessageBuilder("/pxcontrol/ping").build().dgram, ("127.0.0.1", osc_port))
            assert OscMessage(osc.recv(65535)).address == "/pxcontrol/pong"

        # An agent's heartbeats, and the mapping its coming online starts.
        agent = Process(
            [
                "agent",
                "--name",
                "Playout1",
                "--director",
                f"127.0.0.1:{heartbeat_port}",
                "--bind",
                "127.0.0.11",
                "--json-events",
            ]
        )
        director.wait_event("client.online", client="Playout1")
        assert console.recv(65535) == b"Playout1 is online"
        director.wait_event("mapping.done")

        # A saved edit of the show is picked up (watchfiles on Windows).
        if "watchfiles" in LEFT_OUT:  # by hand on 3.13: no watchfiles build loads under Wine
            director.wait_line("reload on save is off: watchfiles cannot be loaded here")
        else:
            show_file = tmp_path / "show.toml"
            edited = show_file.read_text().replace('["Output 1"]', '["Output 1", "Output 2"]')
            show_file.write_text(edited)
            director.wait_event("show.reloaded")

        # The Live Systems page.
        page = httpx.get(f"http://127.0.0.1:{http_port}/", timeout=10)
        assert page.status_code == 200 and "Live Systems" in page.text

        # The state lock holds on Windows too: a second director on the same state is refused.
        second = windows.pxcontrol(*run)
        assert second.wait_exit(START) == 1
        assert any("another director (pid " in line for line in second.output), second.output

        # The demo, which is not for Windows, says so and what to run instead.
        demo = windows.pxcontrol("demo", "--scripted")
        assert demo.wait_exit(START) == 1
        assert any("pxcontrol demo runs on Linux and macOS" in line for line in demo.output)

        # Seconds of running on Windows raised no alarm (its state files are still its own,
        # its loop and its detector keep time).
        assert not director.of_kind("alarm"), director.of_kind("alarm")

        # Ctrl-C (Wine turns SIGINT into the console's Ctrl-C event): a clean stop.
        director.signal(signal.SIGINT)
        assert director.wait_exit(30) == 0
        assert "stopped: modules stopped, sockets closed" in director.output
    finally:
        console.close()
        for process in (director, second, agent):
            if process is not None:
                process.kill()
