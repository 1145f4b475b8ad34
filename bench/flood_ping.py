"""Pings from a console while that same console floods the director with actions.

    python bench/flood_ping.py                      # 20,000 and 50,000 actions/s
    python bench/flood_ping.py --rates 8000 200000 --pings 60

A real director (`pxcontrol run`, the show below) allows 127.0.0.1. One thread
sends `/pxcontrol/action Log.Entry message=flood` from 127.0.0.1 at the rate
asked (as fast as it can past what one Python thread sends); meanwhile the same
host sends a `/pxcontrol/ping` every 0.1 s and waits up to 2 s for its pong.
Prints, per rate, the flood's real rate, pongs answered and lost, and the
slowest answer. The action budget (2,000/s) lets the rest of the flood be
refused before it is parsed (docs/osc.md, "How much one sender may send").
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path

from pythonosc.osc_message_builder import OscMessageBuilder

from pxcontrol.testing import Rig

SHOW = """
[director]
heartbeat_port = {heartbeat_port}
allow = ["127.0.0.1"]

[modules.Log]
type = "log"

[[clients]]
name = "Playout1"
ip = "127.0.0.11"
outputs = ["Output 1"]
"""


def build(address: str, *args: str) -> bytes:
    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build().dgram


def one_rate(port: int, rate: float, pings: int) -> str:
    action = build("/pxcontrol/action", "Log.Entry", "message=flood")
    ping = build("/pxcontrol/ping")
    stop = threading.Event()
    sent = 0

    def flood() -> None:
        nonlocal sent
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            began = time.monotonic()
            while not stop.is_set():
                for _ in range(100):
                    s.sendto(action, ("127.0.0.1", port))
                sent += 100
                ahead = sent / rate - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)

    flooder = threading.Thread(target=flood, daemon=True)
    began = time.monotonic()
    flooder.start()
    answered, lost, slowest = 0, 0, 0.0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as console:
        console.bind(("127.0.0.1", 0))
        console.settimeout(2.0)
        for _ in range(pings):
            asked = time.monotonic()
            console.sendto(ping, ("127.0.0.1", port))
            try:
                while b"/pxcontrol/pong" not in console.recv(65_536):
                    pass  # rate-limit answers to the flood's own actions may come first
                answered += 1
                slowest = max(slowest, time.monotonic() - asked)
            except TimeoutError:
                lost += 1
            time.sleep(0.1)
    stop.set()
    flooder.join(5)
    real = sent / (time.monotonic() - began)
    return (
        f"flood {real:>9,.0f} actions/s: pongs {answered}/{pings}, lost {lost}, "
        f"slowest {slowest * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[20_000, 50_000])
    parser.add_argument("--pings", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pxbench-flood-") as folder:
        rig = Rig(Path(folder), SHOW)
        try:
            rig.start_director()
            for rate in args.rates:
                print(one_rate(rig.osc_port, rate, args.pings), flush=True)
        finally:
            rig.close()


if __name__ == "__main__":
    main()
