"""The OSC bridge with OSC peers we did not write: liblo's oscsend/oscdump, python-osc's TCP client."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator

import pytest
from pythonosc.tcp_client import SimpleTCPClient

from pxcontrol.testing import Rig

from .conftest import OscDump, free_port, wait_for

SHOW = """
[director]
heartbeat_port = {heartbeat_port}
osc_port = {osc_port}
allow = ["127.0.0.1"]

[detection]
heartbeat_interval = 0.05
offline_after = 0.4
online_after = 0.4

[[osc.feedback]]
host = "127.0.0.1"
port = {feedback_port}
protocol = "tcp"
framing = "length"

[[clients]]
name = "Playout1"
ip = "127.0.0.11"
outputs = ["Output 1"]

[[clients]]
name = "Backup1"
ip = "127.0.0.21"
outputs = ["Output 1"]
backup_for = ["127.0.0.11"]

[modules.Log]
type = "log"
"""


@pytest.fixture
def console(osc_receiver) -> OscDump:
    """A lighting console's OSC input: liblo's oscdump on a UDP port."""
    return osc_receiver()


@pytest.fixture
def tcp_console(osc_receiver) -> OscDump:
    """A console that listens over TCP (liblo: OSC 1.0 length-prefix framing)."""
    return osc_receiver(tcp=True)


@pytest.fixture
def rig(tmp_path, tcp_console) -> Iterator[Rig]:
    rig = Rig(tmp_path, SHOW.replace("{feedback_port}", str(tcp_console.port)))
    rig.start_director()
    rig.start_clients(Playout1="127.0.0.11", Backup1="127.0.0.21")
    yield rig
    rig.close()


def oscsend(rig: Rig, address: str, types: str = "", *values: str, tcp: bool = False) -> None:
    target = f"osc.tcp://127.0.0.1:{rig.osc_port}" if tcp else f"osc.udp://127.0.0.1:{rig.osc_port}"
    subprocess.run(["oscsend", target, address, types, *values], check=True, timeout=10)


def test_a_console_switches_moves_and_runs_actions_over_udp(rig: Rig, console: OscDump):
    oscsend(rig, "/pxcontrol/subscribe", "i", str(console.port))
    console.wait_line(
        f'/pxcontrol/reply/pxcontrol/subscribe ss "ok" "subscribed 127.0.0.1:{console.port}'
    )

    oscsend(rig, "/pxcontrol/backup/switch", "s", "Playout1")
    console.wait_line('/pxcontrol/reply/pxcontrol/backup/switch ss "ok" "Playout1 is on Backup1"')
    console.wait_line('/pxcontrol/backup/Playout1/active is 1 "Backup1"')
    activated = rig.director.wait_event("backup.activated", client="Playout1")
    assert activated["reason"] == "osc" and activated["by"].startswith("osc udp 127.0.0.1:")

    oscsend(rig, "/pxcontrol/backup/move", "s", "Playout1")
    console.wait_line(
        '/pxcontrol/reply/pxcontrol/backup/move ss "ok" "Playout1\'s outputs are back on Playout1"'
    )
    console.wait_line('/pxcontrol/backup/Playout1/active is 0 "Playout1"')

    oscsend(rig, "/pxcontrol/action", "ss", "Log.Entry", "message=go from the console")
    console.wait_line('/pxcontrol/reply/pxcontrol/action ss "ok" "go from the console"')
    oscsend(rig, "/pxcontrol/backup/auto", "si", "Playout1", "0")
    console.wait_line(
        '/pxcontrol/reply/pxcontrol/backup/auto ss "ok" "automatic backup for Playout1 is off"'
    )


def test_wrong_commands_are_answered_with_what_was_wrong(rig: Rig, console: OscDump):
    oscsend(rig, "/pxcontrol/subscribe", "i", str(console.port))
    oscsend(rig, "/pxcontrol/backup/switch", "s", "Playout9")
    console.wait_line(
        '/pxcontrol/reply/pxcontrol/backup/switch ss "error" "no client is called \'Playout9\' '
        '(clients: Playout1, Backup1)"'
    )
    oscsend(rig, "/pxcontrol/backup/switch", "i", "1")
    console.wait_line(
        '/pxcontrol/reply/pxcontrol/backup/switch ss "error" "/pxcontrol/backup/switch takes a client name (a string) first"'
    )
    oscsend(rig, "/pxcontrol/action", "sss", "Log.Entry", "hello", "loud")
    console.wait_line("Input should be 'info', 'warning' or 'error'")
    oscsend(rig, "/pxcontrol/action", "s", "Lights.Go")
    console.wait_line("Lights.Go: no module 'Lights' is running")
    oscsend(rig, "/pxcontrol/lights/go")
    console.wait_line(
        '/pxcontrol/reply/pxcontrol/lights/go ss "error" "unknown address /pxcontrol/lights/go'
    )
    rig.agents["Backup1"].signal(signal.SIGKILL)
    rig.director.wait_event("client.offline", client="Backup1")
    oscsend(rig, "/pxcontrol/backup/switch", "s", "Playout1")
    console.wait_line(
        '/pxcontrol/reply/pxcontrol/backup/switch ss "error" "backup Backup1 is offline: nothing can move"'
    )
    console.wait_line('/pxcontrol/backup/Playout1/failed ss "backup offline"')


def test_status_is_one_message_per_client_then_the_count(rig: Rig, console: OscDump):
    oscsend(rig, "/pxcontrol/subscribe", "i", str(console.port))
    oscsend(rig, "/pxcontrol/status")
    console.wait_line('/pxcontrol/status/client sssffisssi "Playout1" "online" "Playout1"')
    console.wait_line('/pxcontrol/status/client sssffisssi "Backup1" "online" "Backup1"')
    # The director's own health, before the end: lag, tick age, queue, stalls, restarts, shed.
    console.wait_line("/pxcontrol/status/director ffiiii ")
    console.wait_line("/pxcontrol/status/end iii 2 2 0")  # count, the show's total, offset


def test_status_of_one_client_and_of_a_page(rig: Rig, console: OscDump):
    oscsend(rig, "/pxcontrol/subscribe", "i", str(console.port))
    console.wait_line("/pxcontrol/reply/pxcontrol/subscribe")
    oscsend(rig, "/pxcontrol/status", "s", "Backup1")
    console.wait_line('/pxcontrol/status/client sssffisssi "Backup1" "online" "Backup1"')
    console.wait_line("/pxcontrol/status/end iii 1 2 1")
    assert not any('"Playout1" "online"' in line for line in console.lines)
    oscsend(rig, "/pxcontrol/status", "ii", "0", "1")
    console.wait_line('/pxcontrol/status/client sssffisssi "Playout1" "online" "Playout1"')
    console.wait_line("/pxcontrol/status/end iii 1 2 0")
    oscsend(rig, "/pxcontrol/status", "s", "Playout9")
    console.wait_line(
        '/pxcontrol/reply/pxcontrol/status ss "error" "no client is called \'Playout9\' '
        '(clients: Playout1, Backup1)"'
    )


def test_a_console_gets_every_row_of_a_500_client_status(tmp_path, console: OscDump):
    """liblo's oscdump with its default receive buffer: the paced answer fits."""
    rig = Rig(
        tmp_path,
        '[director]\nallow = ["127.0.0.1"]\n\n'
        + "".join(
            f'[[clients]]\nname = "Client{i:03}"\nip = "127.0.{1 + i // 250}.{1 + i % 250}"\n\n'
            for i in range(500)
        ),
    )
    try:
        rig.start_director()
        oscsend(rig, "/pxcontrol/subscribe", "i", str(console.port))
        console.wait_line("/pxcontrol/reply/pxcontrol/subscribe")
        oscsend(rig, "/pxcontrol/status")  # the answer's copy goes to the subscribed port
        console.wait_line("/pxcontrol/status/end iii 500 500 0")
        rows = [line for line in console.lines if "/pxcontrol/status/client" in line]
        assert len(rows) == 500
        oscsend(rig, "/pxcontrol/status", "ii", "450", "100")  # the last page: 50 rows
        console.wait_line("/pxcontrol/status/end iii 50 500 450")
    finally:
        rig.close()


def test_pushes_reach_a_tcp_feedback_receiver_and_tcp_commands_work(rig: Rig, tcp_console: OscDump):
    oscsend(rig, "/pxcontrol/backup/switch", "s", "Playout1", tcp=True)  # liblo: length-prefix
    tcp_console.wait_line('/pxcontrol/backup/Playout1/active is 1 "Backup1"')
    rig.agents["Playout1"].signal(signal.SIGKILL)
    tcp_console.wait_line('/pxcontrol/client/Playout1/state s "offline"')
    tcp_console.wait_line("/pxcontrol/client/Playout1/late i 0")  # its "late" lamp goes out


@pytest.mark.parametrize("mode", ["1.0", "1.1"], ids=["length-prefix", "slip"])
def test_replies_come_back_on_the_tcp_connection_in_its_framing(rig: Rig, mode: str):
    client = SimpleTCPClient("127.0.0.1", rig.osc_port, mode=mode)
    try:
        # get_messages(timeout) collects for the whole timeout: read in short rounds instead.
        messages: list = []

        def arrived(address: str) -> bool:
            messages.extend(client.get_messages(timeout=0.1))
            return any(m.address == address for m in messages)

        client.send_message("/pxcontrol/ping", [])
        wait_for(lambda: arrived("/pxcontrol/pong"), what="the pong")
        assert [m.address for m in messages] == ["/pxcontrol/pong"]
        messages.clear()
        client.send_message("/pxcontrol/status", [])
        wait_for(lambda: arrived("/pxcontrol/status/end"), what="the end of the status")
        clients = [m.params[0] for m in messages if m.address == "/pxcontrol/status/client"]
        assert clients == ["Playout1", "Backup1"]
    finally:
        client.close()


def test_a_subscriber_hears_client_state_without_asking(rig: Rig, console: OscDump):
    oscsend(rig, "/pxcontrol/subscribe", "i", str(console.port))
    console.wait_line("/pxcontrol/reply/pxcontrol/subscribe")
    rig.agents["Playout1"].signal(signal.SIGKILL)
    console.wait_line('/pxcontrol/client/Playout1/state s "offline"')
    oscsend(rig, "/pxcontrol/unsubscribe")
    console.wait_line('/pxcontrol/reply/pxcontrol/unsubscribe ss "ok" "1 subscription(s) ended"')


def test_a_subscription_survives_a_director_restart(rig: Rig, console: OscDump):
    oscsend(rig, "/pxcontrol/subscribe", "i", str(console.port))
    console.wait_line("/pxcontrol/reply/pxcontrol/subscribe")
    kept = rig.state / "subscriptions.json"  # written just after the answer, in a thread
    wait_for(lambda: kept.exists() and str(console.port) in kept.read_text(), 5, "kept")
    assert rig.director is not None
    rig.director.signal(signal.SIGKILL)  # no goodbye: what it kept on disk is all there is
    rig.director.wait_exit()
    director = rig.start_director()
    director.wait_event("client.online", client="Backup1")
    # The console never subscribed again, and hears the change that the new run pushes.
    rig.agents["Playout1"].signal(signal.SIGKILL)
    director.wait_event("client.offline", client="Playout1")
    console.wait_line('/pxcontrol/client/Playout1/state s "offline"')


def test_the_cli_talks_to_a_running_director_over_osc(rig: Rig, console: OscDump):
    from .conftest import pxcontrol

    at = f"127.0.0.1:{rig.osc_port}"
    table = pxcontrol("status", "--director", at)
    assert table.returncode == 0, table.stderr
    assert re.search(r"Playout1\s*│\s*online\s*│\s*Playout1", table.stdout), table.stdout
    switched = pxcontrol("backup", "switch", "Playout1", "--director", at)
    assert switched.returncode == 0 and "ok Playout1 is on Backup1" in switched.stdout
    table = pxcontrol("status", "--director", at)
    assert re.search(r"Playout1\s*│\s*online\s*│\s*Backup1", table.stdout), table.stdout
    # What the backup carries, as the page shows it.
    assert re.search(r"Backup1\s*│\s*online\s*│\s*Backup1\s*│\s*Playout1", table.stdout)
    oscsend(rig, "/pxcontrol/subscribe", "i", str(console.port))
    oscsend(rig, "/pxcontrol/status", "s", "Backup1")
    console.wait_line(
        '/pxcontrol/status/client sssffisssi "Backup1" "online" "Backup1" '
    )  # cpu and memory vary; carrying and armed at the end
    (row,) = [x for x in console.lines if "/pxcontrol/status/client" in x]
    assert row.endswith('1 "" "" "Playout1" 0'), row
    again = pxcontrol("backup", "switch", "Playout1", "--director", at)
    assert again.returncode == 1 and "Playout1 already plays on Backup1" in again.stderr
    moved = pxcontrol("backup", "move", "Playout1", "--director", at)
    assert moved.returncode == 0 and "ok Playout1's outputs are back on Playout1" in moved.stdout
    auto = pxcontrol("backup", "auto", "Playout1", "on", "--director", at)
    assert auto.returncode == 0 and "automatic backup for Playout1 is on" in auto.stdout
    table = pxcontrol("status", "--director", at, env={**os.environ, "COLUMNS": "200"})
    assert re.search(r"Playout1\s*│\s*online\s*│\s*Playout1\s*│\s*│\s*on\s*│", table.stdout), (
        table.stdout
    )
    nobody = pxcontrol("status", "--director", f"127.0.0.1:{free_port()}")
    # Said at once (the system's "refused"), not after the two-second wait for an answer.
    assert nobody.returncode == 2 and "nothing listens at 127.0.0.1:" in nobody.stderr
    assert "Connection refused" in nobody.stderr


def test_the_cli_finds_the_director_and_its_passcode_in_the_show(tmp_path):
    from .conftest import pxcontrol

    rig = Rig(
        tmp_path,
        '[director]\nbind = "0.0.0.0"\ntoken = "a long random test token"\npasscode = "1234"\n\n'
        '[[clients]]\nname = "Playout1"\nip = "127.0.0.11"\noutputs = ["Output 1"]\n',
    )
    try:
        rig.start_director()
        at = f"127.0.0.1:{rig.osc_port}"
        # Told where, without the passcode: refused, and told how to give it (the unlock is
        # per host, so this comes before any command that gives the passcode).
        for command in (("status",), ("backup", "switch", "Playout1")):
            nowhere = pxcontrol(*command, "--show", str(tmp_path / "none"))
            assert nowhere.returncode == 1, nowhere.stderr
            assert "cannot read [director] of" in nowhere.stderr
            locked = pxcontrol(*command, "--director", at, cwd=rig.folder.parent)
            assert locked.returncode == 1, locked.stderr
            assert (
                "locked: the show sets director.passcode; give it with --passcode" in locked.stderr
            )
        # From the show's folder, as `pxcontrol run` would start it: port and passcode.
        table = pxcontrol("status", cwd=tmp_path)
        assert table.returncode == 0, table.stderr
        assert f"director 127.0.0.1:{rig.osc_port}" in table.stdout
        assert re.search(r"Playout1\s*│\s*dry", table.stdout), table.stdout
        auto = pxcontrol("backup", "auto", "Playout1", "on", "--show", str(tmp_path))
        assert auto.returncode == 1 and "Playout1 has no backup" in auto.stderr, auto.stderr
        wrong = pxcontrol("status", "--director", at, "--passcode", "4321")
        assert wrong.returncode == 1
        assert "the director refused the passcode: badpass" in wrong.stderr
    finally:
        rig.close()


def test_alarms_are_acknowledged_for_everyone_over_osc_and_from_the_cli(rig: Rig, console: OscDump):
    oscsend(rig, "/pxcontrol/subscribe", "i", str(console.port))
    console.wait_line("/pxcontrol/reply/pxcontrol/subscribe")
    assert rig.director is not None
    newest = rig.director.events[-1]["seq"]
    oscsend(rig, "/pxcontrol/alarm/acknowledge", "i", str(newest))
    console.wait_line(
        f'/pxcontrol/reply/pxcontrol/alarm/acknowledge ss "ok" "alarms up to event {newest}'
    )
    done = rig.director.wait_event("alarm.acknowledged", up_to=newest)
    assert done["by"].startswith("osc udp 127.0.0.1:")
    console.wait_line(f'/pxcontrol/alarm/acknowledged is {newest} "osc udp 127.0.0.1:')
    oscsend(rig, "/pxcontrol/alarm/acknowledge", "s", "all")  # a typo is answered, not alarmed
    console.wait_line('/pxcontrol/reply/pxcontrol/alarm/acknowledge ss "error"')
    from .conftest import pxcontrol

    cli = pxcontrol("alarms", "acknowledge", "--director", f"127.0.0.1:{rig.osc_port}")
    assert cli.returncode == 0, cli.stderr
    assert "alarms up to event" in cli.stdout and "acknowledged" in cli.stdout
    rig.director.wait_event("alarm.acknowledged", after=done["seq"])
