"""One client's heartbeats from a test, as its agent would send them, with the health the test sets.

It binds the client's own loopback address, takes the director's session from
the welcome that answers it (as bench/_heartbeat_sim.py and an agent do), follows
the epochs it is told, and sends an extra heartbeat at once when its health changes.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time

from pxcontrol.heartbeat import (
    HEARTBEAT,
    PLACEMENT,
    FailedCheck,
    Heartbeat,
    Placement,
    WireError,
    decode,
    encode,
)

INTERVAL = 0.05


class Sender:
    """One client's heartbeats, from its own address, with the health the test sets."""

    def __init__(
        self, name: str, ip: str, port: int, gpu: str | None = None, interval: float = INTERVAL
    ) -> None:
        self.interval = interval
        self.name = name
        self.to = ("127.0.0.1", port)
        self.boot = secrets.token_hex(6)
        self.gpu = {"name": gpu, "load": 10.0} if gpu else None
        self.seq = 0
        self.session = ""
        self.epoch = 0
        self.failed: FailedCheck | None = None
        self.notices: list[Placement] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.sock.settimeout(interval / 5)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def fail(self, check: str, message: str) -> None:
        with self._lock:
            self.failed = FailedCheck(check=check, message=message)
        self.send()  # at once, not at the next scheduled heartbeat

    def recover(self) -> None:
        with self._lock:
            self.failed = None
        self.send()

    def send(self) -> None:
        with self._lock:
            beat = Heartbeat(
                name=self.name,
                boot=self.boot,
                seq=self.seq,
                interval=self.interval,
                epoch=self.epoch,
                session=self.session,
                cpu=10.0,
                memory=20.0,
                gpu=self.gpu,
                failed=self.failed,
            )
            self.seq += 1
        self.sock.sendto(encode(HEARTBEAT, beat, None), self.to)

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() >= due:
                self.send()
                due += self.interval
            try:
                packet = self.sock.recv(65_535)
            except (TimeoutError, OSError):
                continue
            try:
                notice = decode(packet, PLACEMENT, Placement, None)
            except WireError:
                continue
            with self._lock:
                if notice.boot == self.boot and notice.session:
                    self.session = notice.session  # the welcome: heartbeats count from now
                self.epoch = max(self.epoch, notice.epoch)
            self.notices.append(notice)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
