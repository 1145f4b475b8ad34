"""A failed check → the router command on the wire: the director's part of an application crash.

    python bench/failed_takeover.py              # 30 runs
    python bench/failed_takeover.py --runs 100

A real director (default detection: heartbeat_interval 0.1 s, offline_after 0.5 s)
with Playout1 and Backup1 (auto_backup on); their heartbeats come from the tests'
heartbeat sender (tests/heartbeat_sender.py: each from its client's own loopback
address, welcomed by the director as an agent is). The show maps `backup.activated`
to an `osc` module that sends one UDP datagram to a socket this script listens on.
Each run: Playout1's heartbeat says a check failed (the extra heartbeat an agent
sends at once); the figure is the time from that send to the datagram's arrival,
both on this process's monotonic clock. It includes the 25 ms the director waits
for other clients failing at the same moment (the mass-failure guard). Between
runs the check recovers and the outputs are moved home over OSC.

What an agent adds before the send (noticing the crash: a process check within
20 ms) is the agent's part and is not in this figure.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from pathlib import Path

from _common import interrupt_on_term, ms, quantiles
from pythonosc.udp_client import SimpleUDPClient

from pxcontrol.testing import Rig, free_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' sender
from tests.heartbeat_sender import Sender

GOAL = 0.060  # the goal for the whole crash → router command, agent included

SHOW = """
[director]
heartbeat_port = {heartbeat_port}
allow = ["127.0.0.1"]

[[clients]]
name = "Playout1"
ip = "127.0.0.11"
outputs = ["Output 1"]

[[clients]]
name = "Backup1"
ip = "127.0.0.21"
outputs = ["Output 1"]
backup_for = ["127.0.0.11"]
auto_backup = true

[modules.Router]
type = "osc"
port = {router_port}

[[mappings]]
on = "backup.activated"
do = [{ action = "Router.Send", args = { address = "/router/salvo", args = ["{backup}"] } }]
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    interrupt_on_term()
    router = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    router.bind(("127.0.0.1", free_port()))
    router.settimeout(5)
    samples: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        rig = Rig(Path(folder), SHOW.replace("{router_port}", str(router.getsockname()[1])))
        senders: list[Sender] = []
        try:
            director = rig.start_director()
            senders = [
                Sender("Playout1", "127.0.0.11", rig.heartbeat_port, interval=0.1),
                Sender("Backup1", "127.0.0.21", rig.heartbeat_port, interval=0.1),
            ]
            for name in ("Playout1", "Backup1"):
                director.wait_event("client.online", timeout=30, client=name)
            console = SimpleUDPClient("127.0.0.1", rig.osc_port)
            playout = senders[0]
            for run in range(args.runs):
                sent = time.monotonic()
                playout.fail("process mpv", f"exited (run {run})")
                router.recv(65_535)
                samples.append(time.monotonic() - sent)
                playout.recover()  # then home again, confirmed, before the next run
                _wait(lambda n=run: len(director.of_kind("client.recovered")) > n)
                console.send_message("/pxcontrol/backup/move", "Playout1")
                _wait(lambda n=run: len(director.of_kind("backup.moved")) > n)
                home = director.of_kind("backup.moved")[-1]["epoch"]
                _wait(lambda e=home: director.of_kind("backup.confirmed", epoch=e))
        finally:
            for sender in senders:
                sender.stop()
            rig.close()
            router.close()
    figures = quantiles(samples)
    print(f"failed check → router datagram, {len(samples)} runs (ms): {ms(figures)}")
    verdict = "met" if figures["p99"] <= GOAL else "missed"
    print(
        f"goal p99 ≤ {GOAL * 1000:.0f} ms for the whole crash → router (agent included): "
        f"the director's part alone {verdict}"
    )


def _wait(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for the director ({condition.__name__})")
        time.sleep(0.002)


if __name__ == "__main__":
    main()
