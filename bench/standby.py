"""The active director SIGKILLed → the standby in charge, on a real three-member etcd.

    python bench/standby.py              # 20 runs, a 1 s lease
    python bench/standby.py --runs 50

A three-member etcd 3.4 on loopback (Debian etcd-server; heartbeat 20 ms, election
200 ms) and two directors, `pxcontrol run --as DirA` and `--as DirB`. Each run: the
director in charge is SIGKILLed; the figure is the time from the kill to the line in
which the other says `director.active`, both on this process's monotonic clock (the
line is stamped as it is read). The killed director then starts again and stands by,
and the next run kills the other one. What the figure holds: etcd noticing the lease
expired (the lease, counted from the last renewal, plus up to its 0.5 s check), and the
standby's next look at the key (every tenth of the lease), then its read of the show's
state from etcd, after which it says `director.active`. The issue's goal: p99 ≤ 2.5 s.
"""

from __future__ import annotations

import argparse
import signal
import socket
import tempfile
import time
from pathlib import Path

from _common import interrupt_on_term, quantiles

from pxcontrol.etcd_cluster import EtcdCluster
from pxcontrol.standby_rig import Directors

GOAL = 2.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--lease", type=int, default=1, help="seconds")
    args = parser.parse_args()
    interrupt_on_term()
    with tempfile.TemporaryDirectory(prefix="pxbench-standby-") as folder:
        root = Path(folder)
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the router: nothing is sent
        sink.bind(("127.0.0.1", 0))
        cluster = EtcdCluster(root / "etcd", ("127.0.0.81", "127.0.0.82", "127.0.0.83"))
        directors: Directors | None = None
        try:
            cluster.start()
            (root / "show").mkdir()
            directors = Directors(root / "show", cluster, sink.getsockname()[1], args.lease)
            active = directors.start("DirA")
            active.wait_event("director.active", director="DirA", timeout=30)
            standby = directors.start("DirB")
            standby.wait_event("director.standby", director="DirB", active="DirA")
            names = {"DirA": "DirB", "DirB": "DirA"}
            active_name = "DirA"
            samples: list[float] = []
            for run in range(args.runs):
                standby_name = names[active_name]
                seen = len(standby.events)
                killed = time.monotonic()
                active.signal(signal.SIGKILL)
                active.wait_exit()
                taken = standby.wait_event(
                    "director.active", timeout=30, director=standby_name, after=_seq(standby, seen)
                )
                samples.append(taken["_seen"] - killed)
                print(f"run {run + 1:3d}: {standby_name} in charge after {samples[-1]:.3f} s")
                restarted = directors.start(active_name)
                restarted.wait_event("director.standby", director=active_name, active=standby_name)
                active, standby = standby, restarted
                active_name = standby_name
            q = quantiles(samples)
            print(
                f"\nactive SIGKILLed → standby in charge, {len(samples)} runs, lease "
                f"{args.lease} s: p50 {q['p50']:.3f} s  p90 {q['p90']:.3f} s  p99 "
                f"{q['p99']:.3f} s  max {q['max']:.3f} s  min {q['min']:.3f} s"
            )
            verdict = "met" if q["p99"] <= GOAL else "MISSED"
            print(f"goal p99 ≤ {GOAL} s: {verdict}")
        finally:
            if directors is not None:
                directors.close()
            cluster.close()
            sink.close()


def _seq(process, index: int) -> int:
    """The sequence number of the last event read before `index` (0 if none)."""
    events = process.events[:index]
    return max((e.get("seq", 0) for e in events), default=0)


if __name__ == "__main__":
    main()
