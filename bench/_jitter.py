"""A userspace jitter wire: every IP datagram routed through a TUN device is held 0–N ms, then sent on.

    ip netns exec NS python bench/_jitter.py --tun jit --max-delay 0.02 --port 7401 --seconds 700

bench/soak.py runs it in the router namespace it creates, with policy routing that
sends every packet between the agents' and the director's networks into the TUN
device and forwards what comes back out of it. Unlike a UDP relay this keeps
source addresses and ports intact, which the director requires (it checks that a
heartbeat comes from the client's declared address), and it delays both ways.

Datagrams from the same flow can overtake each other if the delay exceeds their
spacing; at 10 Hz heartbeats and ≤ 20 ms it cannot happen.

For heartbeats (UDP to --port) it records, per source address, the largest gap
between consecutive ones as they enter (after any loss on the agent's side) and
as they leave towards the director. Prints a JSON line of figures every
--report seconds and once more on exit (SIGTERM, SIGINT or --seconds).
"""

from __future__ import annotations

import argparse
import fcntl
import heapq
import json
import os
import random
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def udp_ports(packet: bytes) -> tuple[str, int, int] | None:
    """(source address, source port, destination port) of an IPv4 UDP packet, else None."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 17:
        return None
    ihl = (packet[0] & 0x0F) * 4
    sport, dport = struct.unpack_from("!HH", packet, ihl)
    return ".".join(str(b) for b in packet[12:16]), sport, dport


class Gaps:
    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self.count: dict[str, int] = {}
        self.max_gap: dict[str, float] = {}

    def saw(self, source: str, now: float) -> None:
        if source in self.last:
            gap = now - self.last[source]
            if gap > self.max_gap.get(source, 0.0):
                self.max_gap[source] = gap
        self.last[source] = now
        self.count[source] = self.count.get(source, 0) + 1

    def reset_max(self) -> None:
        self.max_gap.clear()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tun", required=True)
    parser.add_argument("--max-delay", type=float, default=0.02, help="seconds, uniform 0..max")
    parser.add_argument("--port", type=int, default=7401, help="the director's heartbeat port")
    parser.add_argument("--seconds", type=float, default=3600.0, help="stop after this long")
    parser.add_argument("--report", type=float, default=5.0, help="seconds between figure lines")
    args = parser.parse_args()

    stop = False

    def finish(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    # SIGUSR1: start the max-gap figures afresh (the soak calls it when all clients are online)
    reset = False

    def want_reset(signum, frame):
        nonlocal reset
        reset = True

    signal.signal(signal.SIGUSR1, want_reset)

    fd = open_tun(args.tun)
    pending: list[tuple[float, int, bytes, str | None]] = []
    counter = 0
    entering, leaving = Gaps(), Gaps()
    forwarded = notices = other = 0
    delays_max = 0.0
    late_max = 0.0  # how far past its due time a datagram left
    start = time.monotonic()
    end = start + args.seconds
    next_report = start + args.report

    def report(final: bool = False) -> None:
        print(
            json.dumps(
                {
                    "t": time.monotonic(),
                    "final": final,
                    "forwarded": forwarded,
                    "notices": notices,
                    "other": other,
                    "pending": len(pending),
                    "heartbeats_in": entering.count,
                    "heartbeats_out": leaving.count,
                    "max_gap_in": entering.max_gap,
                    "max_gap_out": leaving.max_gap,
                    "delay_max": delays_max,
                    "late_max": late_max,
                }
            ),
            flush=True,
        )

    try:
        # Bounded: ends at --seconds or on a signal.
        while not stop:
            now = time.monotonic()
            if now >= end:
                break
            if reset:
                entering.reset_max()
                leaving.reset_max()
                late_max = 0.0
                reset = False
            timeout = min(0.2, max(0.0, pending[0][0] - now)) if pending else 0.2
            try:
                ready, _, _ = select.select([fd], [], [], timeout)
            except InterruptedError:
                continue
            now = time.monotonic()
            if ready:
                for _ in range(1000):  # drain what is there, bounded
                    try:
                        packet = os.read(fd, 65536)
                    except BlockingIOError:
                        break
                    ports = udp_ports(packet)
                    heartbeat_from = None
                    if ports is not None and ports[2] == args.port:
                        heartbeat_from = ports[0]
                        entering.saw(ports[0], now)
                    elif ports is not None and ports[1] == args.port:
                        notices += 1
                    else:
                        other += 1
                    delay = random.uniform(0.0, args.max_delay)
                    delays_max = max(delays_max, delay)
                    counter += 1
                    heapq.heappush(pending, (now + delay, counter, packet, heartbeat_from))
            now = time.monotonic()
            while pending and pending[0][0] <= now:
                due, _, packet, heartbeat_from = heapq.heappop(pending)
                try:
                    os.write(fd, packet)
                except OSError:
                    continue
                forwarded += 1
                late_max = max(late_max, now - due)
                if heartbeat_from is not None:
                    leaving.saw(heartbeat_from, now)
            if now >= next_report:
                report()
                next_report += args.report
    finally:
        report(final=True)
        os.close(fd)
    sys.exit(0)


if __name__ == "__main__":
    main()
