"""CPU per packet of the OSC bridge's handler in-process, sockets left out.

    python bench/bridge.py [--packets 100000] [--rounds 5]

A Director runs in this process (ports chosen by the kernel, state in a
temporary folder) with a drop-in no-op module `Dev.Nothing`. Packets go
straight into `OscBridge.handle_packet` with a peer whose `send` only counts,
32 at a time with the loop run in between, so actions get their turn as they
would under load. Printed: process CPU time per packet for ping, the action,
and an action with two int arguments, each the median of --rounds; then, for
reference, python-osc's own Dispatcher doing the same ping and action answers
(parse, dispatch, build the reply) on the same packets.

Complements bench/osc.py: that one measures whole servers with their
syscalls; this one shows where the bridge's own Python time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_message_builder import build_msg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import NOOP

from pxcontrol.director import Director
from pxcontrol.loading import load_show
from pxcontrol.osc_bridge import build
from pxcontrol.osc_transport import Peer

SHOW = """
# The bridge's own speed: the per-sender budgets (docs/osc.md) lifted out of the way.
[osc]
action_rate = 1e9
action_burst = 1000000000
command_rate = 1e9
command_burst = 1000000000

[modules.Dev]
type = "noop"
"""

PACKETS = {
    "ping": build("/pxcontrol/ping"),
    'action "Dev.Nothing"': build("/pxcontrol/action", "Dev.Nothing"),
    'action "Dev.Route" 2 3': build("/pxcontrol/action", "Dev.Route", 2, 3),
}


async def bridge_cpu(director: Director, packet: bytes, count: int) -> tuple[float, int]:
    """CPU seconds per packet, and how many answers went out."""
    answers = 0

    def send(_: bytes) -> None:
        nonlocal answers
        answers += 1

    peer = Peer("udp", "127.0.0.1", 9, send)
    handle = director.osc.handle_packet
    began = time.process_time()
    for i in range(count):  # bounded
        handle(packet, peer)
        if i % 32 == 31:
            for _ in range(3):  # the actions' tasks run and answer
                await asyncio.sleep(0)
    for _ in range(1000):  # the last few; bounded
        if answers >= count:
            break
        await asyncio.sleep(0)
    return (time.process_time() - began) / count, answers


def bare_cpu(packet: bytes, count: int) -> float:
    dispatcher = Dispatcher()
    dispatcher.map("/pxcontrol/ping", lambda address, *args: "/pxcontrol/pong")
    dispatcher.map(
        "/pxcontrol/action", lambda address, *args: ("/pxcontrol/reply/pxcontrol/action", "ok", "")
    )
    sent = 0
    began = time.process_time()
    for _ in range(count):  # what AsyncIOOSCUDPServer does for each datagram, minus the socket
        for reply in dispatcher.call_handlers_for_packet(packet, ("127.0.0.1", 9)):
            reply = reply if isinstance(reply, tuple) else (reply,)
            sent += len(build_msg(reply[0], list(reply[1:])).dgram)
    assert sent > 0
    return (time.process_time() - began) / count


async def main(count: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="pxbench-bridge-") as folder:
        root = Path(folder)
        (root / "modules").mkdir()
        (root / "modules" / "noop.py").write_text(NOOP)
        (root / "show.toml").write_text(SHOW)
        director = Director(
            load_show(root / "show.toml"), root / "state", heartbeat_port=0, osc_port=0, http_port=0
        )
        await director.start()
        try:
            print(f"{count:,} packets per round, median of {rounds} rounds, CPU µs per packet")
            for name, packet in PACKETS.items():
                await bridge_cpu(director, packet, min(count, 2000))  # warm up
                runs = []
                for _ in range(rounds):
                    per, answers = await bridge_cpu(director, packet, count)
                    if answers != count:
                        print(f"  NOTE {name}: {answers:,} answers for {count:,} packets")
                    runs.append(per)
                each = " ".join(f"{r * 1e6:5.2f}" for r in runs)
                print(f"  bridge {name:<24} {statistics.median(runs) * 1e6:6.2f}   ({each})")
            for name in ("ping", 'action "Dev.Nothing"'):
                runs = [bare_cpu(PACKETS[name], count) for _ in range(rounds)]
                print(f"  python-osc {name:<31} {statistics.median(runs) * 1e6:6.2f}")
            failed = director.app.events.of_kind("action.failed")
            if failed:
                print(f"action.failed events: {len(failed)}, first: {failed[0].fields}")
        finally:
            await director.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=100_000, help="packets per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not 100 <= args.packets <= 10_000_000 or not 1 <= args.rounds <= 50:
        parser.error("--packets 100..10000000, --rounds 1..50")
    asyncio.run(main(args.packets, args.rounds))
