"""The `pxcontrol` command as a user types it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading

import pytest

from .conftest import free_port, pxcontrol, wait_for

COMMANDS = ["run", "check", "modules", "call", "version"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = pxcontrol(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: pxcontrol " + command in re.sub(r"\s+", " ", result.stdout)


def test_modules_lists_the_essential_types_with_actions_and_parameters():
    result = pxcontrol("modules")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for name, action, param in [
        ("log", "Entry", "message"),
        ("osc", "Send", "address"),
        ("udp", "Send", "expect"),
        ("tcp", "Send", "hex"),
        ("http", "Request", "expect_status"),
    ]:
        block = re.search(rf"^{name} .*?(?=^\S|\Z)", text, re.M | re.S)
        assert block, f"{name} is listed"
        assert re.search(rf"^  {action} ", block.group(0), re.M)
        assert param in block.group(0)
    assert re.search(r"address\s+str\s+required\s+OSC address", text)
    assert re.search(r"level\s+'info' \| 'warning' \| 'error'\s+= 'info'\s+severity", text)


def test_modules_json_carries_each_actions_schema():
    data = json.loads(pxcontrol("modules", "--json").stdout)
    schema = data["osc"]["actions"]["Send"]
    assert schema["required"] == ["address"]
    assert schema["properties"]["address"]["description"].startswith("OSC address")
    assert data["osc"]["settings"]["properties"]["port"]["default"] == 8000


def test_call_with_wrong_arguments_says_what_is_wrong(tmp_path):
    (tmp_path / "show.toml").write_text('[modules.Log]\ntype = "log"\n')
    result = pxcontrol("call", "--show", str(tmp_path), "Log.Entry", "level=loud")
    assert result.returncode == 1
    assert "wrong arguments for Log.Entry: level: Input should be 'info', 'warning' or 'error'" in (
        result.stderr
    )
    assert result.stderr.count("wrong arguments for Log.Entry") == 1, "said once, not logged too"
    result = pxcontrol("call", "--show", str(tmp_path), "Lights.Go")
    assert result.returncode == 1
    assert "has no module 'Lights' (modules: Log, Show)" in result.stderr
    result = pxcontrol("call", "--show", str(tmp_path), "Log.Entry", "a", "info", "extra")
    assert "Entry takes 2 argument(s) (message, level); got one more: 'extra'" in result.stderr


def run_director(*args: str, cwd=None) -> tuple[subprocess.Popen, list[str]]:
    # Ports of our own: a director the user runs on this machine keeps the defaults.
    ports = [
        *("--heartbeat-port", str(free_port())),
        *("--osc-port", str(free_port())),
        *("--http-port", str(free_port(socket.SOCK_STREAM))),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pxcontrol", "run", *args, *ports],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
    )
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


def test_run_starts_the_demo_show_and_ctrl_c_stops_it_cleanly(tmp_path):
    proc, lines = run_director(cwd=tmp_path)  # no show.toml here: the built-in demo
    try:
        wait_for(lambda: any("pxcontrol running" in x for x in lines), what=f"start: {lines}")
        assert any("no show.toml in" in x and "running the built-in demo show" in x for x in lines)
        assert any("demo/show.toml" in line for line in lines)
        assert any(re.match(r"\d\d:\d\d:\d\d\.\d{3} show\.loaded ", line) for line in lines)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        wait_for(lambda: any("stopped: modules stopped, sockets closed" in x for x in lines))
    finally:
        proc.kill()


def test_run_uses_show_toml_in_the_current_folder(tmp_path):
    (tmp_path / "show.toml").write_text('[modules.House]\ntype = "log"\n')
    proc, lines = run_director(cwd=tmp_path)
    try:
        wait_for(lambda: any("pxcontrol running" in x for x in lines), what=f"start: {lines}")
        assert any(str(tmp_path / "show.toml") in line for line in lines)
        proc.terminate()
        assert proc.wait(10) == 0
    finally:
        proc.kill()


def test_run_refuses_a_broken_show_and_starts_nothing(tmp_path):
    (tmp_path / "show.toml").write_text('[modules.House]\ntype = "lgo"\n')
    result = pxcontrol("run", str(tmp_path))
    assert result.returncode == 1
    assert "show.toml:2: error: modules.House.type: unknown module type 'lgo'" in result.stderr
    assert "nothing was started" in result.stderr


def test_the_scripted_demo_shows_a_failover_end_to_end():
    osc, http = free_port(), free_port(socket.SOCK_STREAM)  # moved off 7400 and 7480
    result = pxcontrol(
        "demo", "--scripted", "--osc-port", str(osc), "--http-port", str(http), timeout=90
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout
    assert f"Live Systems page: http://127.0.0.1:{http}/" in text
    assert f"pxcontrol backup move Playout1 --director 127.0.0.1:{osc}" in text
    taken_over = [
        "backup.activated  client=Playout1 backup=Backup1",
        "videohub.routed   module=Router output=1 input=3 output_label=LED Wall input_label=Backup1 Out 1",
        "action Router.Salvo: ok",
        "Backup1's agent was told: it now plays Playout1's Output 1, Output 2, Cam 1",
    ]
    moved_back = [
        "ok: Playout1's outputs are back on Playout1",
        "backup.moved      client=Playout1 from=Backup1 to=Playout1",
        "input_label=Playout1 Out 1",
    ]
    order = [
        "media servers: mpv playing a test picture on each client",  # scripts/test installs mpv
        "client.online     client=Playout1",
        # The application crashes; the machine and its agent run on.
        "killing Playout1's media server (SIGKILL)",
        "client.failed     client=Playout1 check=player process message=process",
        *taken_over,
        "restarting Playout1's media server",
        "client.recovered  client=Playout1",
        "its outputs stay on Backup1",
        *moved_back,
        # The machine goes.
        "killing Playout1's agent (SIGKILL)",
        "client.offline    client=Playout1 automatic=True",
        *taken_over,
        "client.online     client=Playout1",
        "its outputs stay on Backup1",
        *moved_back,
        "demo over: every process stopped",
    ]
    assert "action Console.Send: ok" in text
    at = 0
    for line in order:  # each in turn, after the one before
        found = text.find(line, at)
        assert found != -1, f"{line!r} not found after position {at} in:\n{text}"
        at = found + len(line)


def test_user_text_is_printed_as_it_is_never_as_markup(tmp_path):
    (tmp_path / "show.toml").write_text('[modules.Log]\ntype = "log"\nprefix = "[demo] "\n')
    result = pxcontrol("call", "--show", str(tmp_path), "Log.Entry", "[/bold] lights")
    assert result.returncode == 0, result.stderr
    assert "'[demo] [/bold] lights'" in result.stdout


def test_call_reaches_the_built_in_show_module(tmp_path):
    (tmp_path / "show.toml").write_text("")
    result = pxcontrol("call", "--show", str(tmp_path), "Show.Wait", "0.01")
    assert result.returncode == 0, result.stderr
    assert "ok Show.Wait" in result.stdout


def test_a_port_in_use_is_named_with_the_setting_to_change(tmp_path):
    (tmp_path / "show.toml").write_text('[modules.House]\ntype = "log"\n')
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = pxcontrol(
            "run",
            str(tmp_path),
            "--heartbeat-port",
            "0",
            "--osc-port",
            str(port),
            "--http-port",
            "0",
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port} (director.osc_port)" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_demo_stopped_with_sigterm_leaves_no_process_behind():
    demo = subprocess.Popen(
        [sys.executable, "-m", "pxcontrol", "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a failed test ends the whole group, not just the demo
    )
    lines: list[str] = []
    threading.Thread(target=lambda: [lines.append(x) for x in demo.stdout], daemon=True).start()
    try:
        wait_for(lambda: any("try it: kill -9" in x for x in lines), 60, f"the demo: {lines}")
        children = subprocess.run(
            ["pgrep", "-P", str(demo.pid)], capture_output=True, text=True
        ).stdout.split()
        assert len(children) == 6, "router, director, two agents, two media servers"
        demo.terminate()
        assert demo.wait(20) == 0
        wait_for(lambda: any("demo over: every process stopped" in x for x in lines))
        for pid in children:
            wait_for(lambda pid=pid: not os.path.exists(f"/proc/{pid}"), 10, f"{pid} to end")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(demo.pid, signal.SIGKILL)
        demo.wait(10)


def test_commands_to_a_director_say_when_they_fall_back_to_the_demo(tmp_path, monkeypatch, capsys):
    from pxcontrol.cli import _director_of

    monkeypatch.chdir(tmp_path)  # no show.toml here
    assert _director_of(None, None, None) == ("127.0.0.1:7400", None)
    assert "no show.toml here: talking to the built-in demo's director" in capsys.readouterr().err
    (tmp_path / "show.toml").write_text('[director]\nosc_port = 17999\npasscode = "1"\n')
    assert _director_of(None, None, None) == ("127.0.0.1:17999", "1")
    assert "demo" not in capsys.readouterr().err


def test_status_reaches_a_running_director_while_its_show_is_mid_edit(tmp_path):
    show = tmp_path / "show.toml"
    show.write_text('[[clients]]\nname = "Playout1"\nip = "127.0.0.11"\n')
    proc, lines = run_director(cwd=tmp_path)  # on an --osc-port the show does not name
    try:
        wait_for(lambda: any("pxcontrol running" in x for x in lines), what=f"start: {lines}")
        show.write_text('[[clients]]\nname = "Playout1\n')  # saved half-way: not TOML
        env = {**os.environ, "COLUMNS": "200"}
        result = pxcontrol("status", cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
        assert "Playout1" in result.stdout
        assert "cannot read [director] of" in result.stderr
        assert "talking to the director that runs it, at 127.0.0.1:" in result.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)


# --- pxcontrol status at 500 clients ---


def _clients(count: int) -> str:
    return "".join(
        f'[[clients]]\nname = "Client{i:03}"\nip = "127.0.{1 + i // 250}.{1 + i % 250}"\n\n'
        for i in range(count)
    )


def _rows(table: str) -> list[str]:
    return re.findall(r"^│ (Client\d{3})", table, re.M)


def test_status_of_500_clients_arrives_whole_over_tcp_and_over_udp(tmp_path):
    from pxcontrol.testing import Rig

    rig = Rig(tmp_path, '[director]\nallow = ["127.0.0.1"]\n\n' + _clients(500))
    try:
        rig.start_director()
        at = ("--director", f"127.0.0.1:{rig.osc_port}")
        asked = {  # at once, as several operators might: each gets its own whole answer
            how: subprocess.Popen(
                [sys.executable, "-m", "pxcontrol", "status", *at, *how],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for how in [(), ("--udp",), ("--client", "Client321"), ("--client", "Playout9")]
        }
        answers = {how: (proc, *proc.communicate(timeout=30)) for how, proc in asked.items()}
        for how in [(), ("--udp",)]:
            proc, table, error = answers[how]
            assert proc.returncode == 0, error
            assert _rows(table) == [f"Client{i:03}" for i in range(500)], how
            assert ("(UDP)" in table) == bool(how)
            # The director's own health, on one line under the table.
            assert re.search(r"director: loop lag [\d.]+ ms, detector ticked \d+ ms ago", table)
        proc, one, error = answers[("--client", "Client321")]
        assert proc.returncode == 0, error
        assert _rows(one) == ["Client321"]
        assert re.search(r"Client321\s*│\s*dry\s*│\s*Client321", one), one
        proc, _, error = answers[("--client", "Playout9")]
        assert proc.returncode == 1
        assert (
            "no client is called 'Playout9' (clients: Client000, Client001, Client002, "
            "Client003, Client004, Client005, Client006, Client007, Client008, Client009 and "
            "490 more)" in re.sub(r"\s+", " ", error)
        ), error
    finally:
        rig.close()


class _ShortDirector:
    """A fake director on sockets the test owns: it answers /pxcontrol/status with 314 of
    500 rows, as a UDP answer that overflowed the receiver's buffer would arrive."""

    def __init__(self, transport: str, end: bool) -> None:
        self.transport, self.end = transport, end
        for attempt in range(10):  # one port number for both: free for UDP, maybe not for TCP
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind(("127.0.0.1", 0))
            self.port = self.udp.getsockname()[1]
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
            try:
                self.tcp.bind(("127.0.0.1", self.port))  # listening only as a TCP director
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
                if attempt == 9:
                    raise
        if transport == "tcp":
            self.tcp.listen()
        self.thread = threading.Thread(target=self._answer, daemon=True)
        self.thread.start()

    def _packets(self) -> list[bytes]:
        from pxcontrol.osc_bridge import build

        rows = [
            build("/pxcontrol/status/client", f"Client{i:03}", "dry", f"Client{i:03}", -1.0, -1.0)
            for i in range(314)
        ]
        return rows + ([build("/pxcontrol/status/end", 500, 500, 0)] if self.end else [])

    def _answer(self) -> None:
        if self.transport == "udp":
            request, sender = self.udp.recvfrom(65536)
            assert request.startswith(b"/pxcontrol/status\0")
            for packet in self._packets():
                self.udp.sendto(packet, sender)
            return
        connection, _ = self.tcp.accept()
        with connection:
            size = int.from_bytes(connection.recv(4), "big")
            assert connection.recv(size).startswith(b"/pxcontrol/status\0")
            for packet in self._packets():
                connection.sendall(len(packet).to_bytes(4, "big") + packet)
            connection.recv(1)  # until the command line closes it

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


@pytest.mark.parametrize(
    ("transport", "end", "says", "then"),
    [
        (
            "udp",
            True,
            "incomplete: 314 of 500 clients answered",
            "the rest was lost on the way over UDP (TCP to 127.0.0.1:{port}: Connection refused):"
            " run it again, or let TCP through to 127.0.0.1:{port}",
        ),
        (
            "udp",
            False,
            "incomplete: 314 clients answered and the end of the answer never came",
            "run it again",
        ),
        (
            "tcp",
            True,
            "incomplete: 314 of 500 clients answered",
            "the director cut its answer short: run it again",
        ),
    ],
    ids=["udp", "udp-no-end", "tcp"],
)
def test_a_short_status_answer_says_incomplete_and_exits_1(tmp_path, transport, end, says, then):
    fake = _ShortDirector(transport, end)
    try:
        result = pxcontrol("status", "--director", f"127.0.0.1:{fake.port}", cwd=tmp_path)
    finally:
        fake.close()
    assert result.returncode == 1, result.stdout + result.stderr
    assert says in result.stderr
    assert then.format(port=fake.port) in re.sub(r"\s+", " ", result.stderr), result.stderr
    assert len(_rows(result.stdout)) == 314  # what did arrive is shown
