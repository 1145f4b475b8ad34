"""The agent's checks: a player killed → the heartbeat saying so, and the agent's CPU with checks.

Part 1 (`crash`): an agent (a real `pxcontrol agent` process) watches a player (a copy of
`sleep`, or Debian's mpv with `--mpv`) with a `process` check at default settings; the
player is SIGKILLed and the time until the agent's heartbeat carrying `failed` arrives at
this script's UDP socket (standing in for the director) is measured, --runs times.

Part 2 (`cpu`): the agent's CPU over --seconds, with no checks and with five checks at
default rates (the show's `[detection]` defaults: process, tcp, http, osc, figure) against
live local targets, with the heartbeat at its default 10 per second.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from _common import ENV, ms, quantiles

from pxcontrol.checks.kind import DEFAULT_FALL, DEFAULT_INTERVAL, DEFAULT_RISE
from pxcontrol.heartbeat import (
    ACK,
    HEARTBEAT,
    PLACEMENT,
    Ack,
    Heartbeat,
    Placement,
    decode,
    encode,
)
from pxcontrol.processes import Process, wait_for


class Director:
    """A UDP socket standing in for the director: it answers every heartbeat with a notice
    naming the checks, and stamps each heartbeat as it arrives."""

    def __init__(self, checks: list[dict]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.notice = Placement(epoch=1, interval=0.1, placement={}, session="b", checks=checks)
        self.beats: list[tuple[float, Heartbeat]] = []
        self._stop = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            arrived = time.monotonic()
            beat = decode(data, HEARTBEAT, Heartbeat, None)
            self.beats.append((arrived, beat))
            if beat.ask:
                ack = Ack(session="b", boot=beat.boot, seq=beat.seq)
                self.sock.sendto(encode(ACK, ack, None), addr)
            if beat.session != "b":
                answer = self.notice.model_copy(update={"boot": beat.boot, "seq": beat.seq})
                self.sock.sendto(encode(PLACEMENT, answer, None), addr)

    def close(self) -> None:
        self._stop = True


def agent(port: int) -> Process:
    return Process(
        ["agent", "--name", "P", "--director", f"127.0.0.1:{port}", "--json-events"], ENV
    )


def _placed(watcher: Process) -> bool:
    return any(e["kind"] == "agent.placement" for e in watcher.events)


def _failed_after(director: Director, killed: float) -> float | None:
    return next((t for t, b in list(director.beats) if t > killed and b.failed), None)


def crash(runs: int, use_mpv: bool) -> None:
    folder = Path(tempfile.mkdtemp(prefix="pxbench"))
    name = f"pxb{os.getpid() % 100000}"
    binary = folder / name
    shutil.copy(shutil.which("mpv" if use_mpv else "sleep") or "/bin/sleep", binary)
    argv = (
        [
            str(binary),
            "--vo=null",
            "--ao=null",
            "--really-quiet",
            "av://lavfi:testsrc2=size=320x240:rate=25",
        ]
        if use_mpv
        else [str(binary), "600"]
    )
    director = Director([{"process": name, "interval": 0.1, "fall": 2, "rise": 5}])
    watcher = agent(director.port)
    player = subprocess.Popen(argv)
    samples = []
    messages: list[str] = []
    try:
        for _ in range(runs):
            wait_for(lambda: any(e["kind"] == "agent.placement" for e in watcher.events), 10)
            wait_for(lambda: director.beats and director.beats[-1][1].failed is None, 10)
            # Found and watched: the agent's log names the check once it ran a probe.
            time.sleep(0.3)  # let the first probe find the new player (a bench, not a test)
            killed = time.monotonic()
            player.kill()
            found = wait_for(lambda k=killed: _failed_after(director, k), 10)
            samples.append(found - killed)
            messages.append(
                next(b.failed.message for t, b in director.beats if t >= found and b.failed)
            )
            player.wait()
            player = subprocess.Popen(argv)
        print(f"player SIGKILL → heartbeat with failed ({runs} runs, ms): {ms(quantiles(samples))}")
        slow = [m for s, m in zip(samples, messages, strict=True) if s > 0.05]
        if slow:
            print(f"  {len(slow)} slower than 50 ms: {slow[:3]}")
    finally:
        player.kill()
        watcher.kill()
        director.close()
        shutil.rmtree(folder, ignore_errors=True)


async def _targets(stop: threading.Event, ready: list) -> None:
    async def http(reader, writer):  # keeps the connection, as a media server's API does
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    tcp = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    web = await asyncio.start_server(http, "127.0.0.1", 0)

    class Pong(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(b"/pong\x00\x00\x00,\x00\x00\x00", addr)

    osc, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        Pong, local_addr=("127.0.0.1", 0)
    )
    ready.extend(
        [
            tcp.sockets[0].getsockname()[1],
            web.sockets[0].getsockname()[1],
            osc.get_extra_info("sockname")[1],
        ]
    )
    await asyncio.to_thread(stop.wait)


def cpu(seconds: float) -> None:
    stop = threading.Event()
    ports: list[int] = []
    threading.Thread(target=lambda: asyncio.run(_targets(stop, ports)), daemon=True).start()
    wait_for(lambda: len(ports) == 3, 5)
    tcp, web, osc = ports
    player = subprocess.Popen(["sleep", "600"])
    five = [
        {"process": "sleep"},
        {"tcp": f"127.0.0.1:{tcp}"},
        {"http": f"http://127.0.0.1:{web}/"},
        {"osc": f"127.0.0.1:{osc}", "address": "/ping", "expect": "/pong"},
        {"figure": "cpu_none", "min": 0},
    ]
    try:
        fast = [{**c, "interval": 0.1} for c in five]
        variants = [
            ("no checks", []),
            *[(next(iter(c)), [c]) for c in five],
            ("five checks", five),
            ("five checks probed every 0.1 s", fast),
        ]
        for label, checks in variants:
            defaults = {"interval": DEFAULT_INTERVAL, "fall": DEFAULT_FALL, "rise": DEFAULT_RISE}
            declared = [{**defaults, **c} for c in checks]
            director = Director(declared)
            watcher = agent(director.port)
            try:
                wait_for(lambda w=watcher: _placed(w), 10)
                time.sleep(1.0)  # warm up
                proc = psutil.Process(watcher.proc.pid)
                before, started = proc.cpu_times(), time.monotonic()
                time.sleep(seconds)
                after, took = proc.cpu_times(), time.monotonic() - started
                used = (after.user + after.system - before.user - before.system) / took
                failed = {b.failed.check for _, b in director.beats[-20:] if b.failed}
                print(
                    f"agent CPU, {label}: {100 * used:.2f} % of one core (failing: {failed or 'none'})"
                )
            finally:
                watcher.kill()
                director.close()
    finally:
        stop.set()
        player.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=["crash", "cpu"])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--mpv", action="store_true", help="a real mpv as the player")
    args = parser.parse_args()
    if args.only in (None, "crash"):
        crash(args.runs, args.mpv)
    if args.only in (None, "cpu"):
        cpu(args.seconds)


if __name__ == "__main__":
    main()
