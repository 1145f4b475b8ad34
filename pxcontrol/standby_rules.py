"""The rules of a show with standby directors: `[[directors]]` and `[redundancy]` together."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pxcontrol.loader import Reporter
from pxcontrol.show import ShowFile
from pxcontrol.standby import director_ports

#: etcd keeps a quorum through one lost member only from three members on.
FAULT_TOLERANT_MEMBERS = 3


def check_standby(show: ShowFile, report: Reporter, data: dict[str, Any]) -> None:
    """`data` is the file as written: a table already refused is not reported again."""
    redundancy = show.redundancy
    if not show.directors:
        if redundancy is not None:
            report.error(
                ("redundancy",),
                "[redundancy] applies to standby directors, and the show lists none",
                "list them as [[directors]] (name, ip), or remove [redundancy]",
            )
        return
    if (redundancy is None and "redundancy" not in data) or (
        redundancy is not None and not redundancy.etcd
    ):
        report.error(
            ("redundancy",) if redundancy is not None else ("directors", 0),
            "standby directors need the etcd cluster that elects the one in charge",
            '[redundancy] etcd = ["http://10.0.0.1:2379", "http://10.0.0.2:2379", '
            '"http://10.0.0.30:2379"] (see docs/standby.md)',
        )
    names = Counter(d.name for d in show.directors)
    reached: Counter[tuple[str, str, int, int, int]] = Counter()
    for i, decl in enumerate(show.directors):
        if names[decl.name] > 1 and decl is not show.director_named(decl.name):
            report.error(("directors", i, "name"), f"two directors are called {decl.name!r}")
        ports = director_ports(show, decl.name)
        where = (str(decl.ip), ports.bind, ports.osc_port, ports.http_port, ports.heartbeat_port)
        reached[where] += 1
        if reached[where] == 2:
            report.error(
                ("directors", i, "ip"),
                f"director {decl.name} would listen on the same address and ports as another "
                f"({ports.bind}, OSC {ports.osc_port}, web {ports.http_port}, heartbeats "
                f"{ports.heartbeat_port})",
                "give each director its own ip (or bind), or its own ports",
            )
    if len(show.directors) == 1:
        report.warning(
            ("directors", 0),
            f"only one director is listed ({show.directors[0].name}): nothing stands by for it",
            "add the standby as a second [[directors]] entry",
        )
    if redundancy is not None and redundancy.etcd:
        if len(set(redundancy.etcd)) != len(redundancy.etcd):
            report.error(("redundancy", "etcd"), "an etcd endpoint is listed twice")
        if len(redundancy.etcd) < FAULT_TOLERANT_MEMBERS:
            report.warning(
                ("redundancy", "etcd"),
                f"{len(redundancy.etcd)} etcd member(s): losing one stops every director "
                "from being in charge",
                "run three members (the two directors and a witness machine): docs/standby.md",
            )
