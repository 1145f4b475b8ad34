"""Two real directors (`pxcontrol run --as`) on a real three-member etcd: never two in charge.

The directors are subprocesses; the video router is liblo's oscdump, so anything a
director sends to it is seen from outside. Consoles are oscdump too, subscribed for the
directors' replies.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from pxcontrol.etcd_cluster import EtcdCluster
from pxcontrol.processes import Process, wait_for
from pxcontrol.standby_rig import Directors

from .conftest import OscDump, pxcontrol
from .etcd_fixtures import etcd, fresh_etcd
from .test_web import browser, page

__all__ = ["browser", "etcd", "fresh_etcd", "page"]


@pytest.fixture
def router(osc_receiver) -> OscDump:
    return osc_receiver()


@pytest.fixture
def console_a(osc_receiver) -> OscDump:
    return osc_receiver()


@pytest.fixture
def console_b(osc_receiver) -> OscDump:
    return osc_receiver()


def subscribe(directors: Directors, name: str, console: OscDump) -> None:
    directors.send(name, "/pxcontrol/subscribe", "i", str(console.port))
    console.wait_line(
        f'/pxcontrol/reply/pxcontrol/subscribe ss "ok" "subscribed 127.0.0.1:{console.port}'
    )


@pytest.fixture
def pair(tmp_path, etcd, router) -> Iterator[Directors]:
    directors = Directors(tmp_path, etcd, router.port)
    yield directors
    directors.close()


def start_both(directors: Directors) -> tuple[Process, Process]:
    a = directors.start("DirA")
    active = a.wait_event("director.active", director="DirA")
    b = directors.start("DirB")
    standing = b.wait_event("director.standby", director="DirB", active="DirA")
    assert standing["term"] == active["term"] > 0
    assert standing["address"] == f"127.0.0.1:{directors.osc_port('DirA')}"
    return a, b


def test_the_standby_refuses_commands_naming_the_active_and_takes_charge_when_it_is_killed(
    pair: Directors, router: OscDump, console_a: OscDump, console_b: OscDump
):
    a, b = start_both(pair)
    subscribe(pair, "DirB", console_b)
    pair.send("DirB", "/pxcontrol/action", "ss", "Router.Send", "/router/from-b")
    console_b.wait_line(
        '/pxcontrol/reply/pxcontrol/action ss "error" "standby: DirA at '
        f'127.0.0.1:{pair.osc_port("DirA")} is in charge"'
    )
    subscribe(pair, "DirA", console_a)
    pair.send("DirA", "/pxcontrol/action", "ss", "Router.Send", "/router/from-a")
    router.wait_line("/router/from-a")
    first_term = a.of_kind("director.active")[0]["term"]

    # Operators see who is in charge: OSC status, `pxcontrol status`, the page's data.
    address_a = f"127.0.0.1:{pair.osc_port('DirA')}"
    pair.send("DirB", "/pxcontrol/status")
    console_b.wait_line("/pxcontrol/status/director ffiiiissssi ")
    row = next(line for line in console_b.lines if "/pxcontrol/status/director" in line)
    assert row.endswith(f'"standby" "DirB" "DirA" "{address_a}" {first_term}'), row
    shown = pxcontrol("status", "--director", f"127.0.0.1:{pair.osc_port('DirB')}", "--udp")
    assert f"DirB: standby — DirA at {address_a} is in charge (term {first_term})" in shown.stdout
    page = httpx.get(f"http://127.0.0.1:{pair.http_port('DirB')}/api/status", timeout=5).json()
    health = page["status"]["director"]
    assert (health["role"], health["in_charge"], health["others"]) == ("standby", "DirA", ["DirA"])
    refused = httpx.post(
        f"http://127.0.0.1:{pair.http_port('DirB')}/api/backup/switch",
        json={"client": "Playout1"},
        timeout=5,
    )
    assert refused.status_code == 409
    assert refused.json()["reason"] == "standby"  # the decision as data, for scripts
    assert refused.json()["message"] == f"standby: DirA at {address_a} is in charge"

    a.signal(signal.SIGKILL)
    taken = b.wait_event("director.active", director="DirB")
    assert taken["term"] > first_term
    address_b = f"127.0.0.1:{pair.osc_port('DirB')}"
    console_b.wait_line(
        f'/pxcontrol/director/role ssssi "active" "DirB" "DirB" "{address_b}" {taken["term"]}'
    )
    pair.send("DirB", "/pxcontrol/action", "ss", "Router.Send", "/router/from-b-now")
    router.wait_line("/router/from-b-now")
    # Refused while it stood by: its first command never reached the router.
    assert not any(
        "/router/from-b " in line or line.endswith("/router/from-b") for line in router.lines
    )


def test_a_director_paused_past_its_lease_sends_nothing_once_the_standby_took_charge(
    pair: Directors, router: OscDump, console_a: OscDump
):
    a, b = start_both(pair)
    subscribe(pair, "DirA", console_a)
    a.signal(signal.SIGSTOP)
    try:
        b.wait_event("director.active", director="DirB")
        # Waiting in the paused director's socket: a console's command, as it wakes.
        pair.send("DirA", "/pxcontrol/action", "ss", "Router.Send", "/router/stale")
    finally:
        a.signal(signal.SIGCONT)
    # Out of charge the moment it woke: it did not yet know who is in charge, and said so.
    console_a.wait_line(
        '/pxcontrol/reply/pxcontrol/action ss "error" "standby: DirA is not in charge and does '
        "not know which director is"
    )
    a.wait_event("director.standby", director="DirA", active="DirB")
    pair.send("DirA", "/pxcontrol/action", "ss", "Router.Send", "/router/stale-again")
    console_a.wait_line(
        '/pxcontrol/reply/pxcontrol/action ss "error" "standby: DirB at '
        f'127.0.0.1:{pair.osc_port("DirB")} is in charge"'
    )
    # A later command to look back from: the router heard DirB's, never DirA's.
    pair.send("DirB", "/pxcontrol/action", "ss", "Router.Send", "/router/fresh")
    router.wait_line("/router/fresh")
    assert not any("/router/stale" in line for line in router.lines)
    assert len(b.of_kind("director.active")) == 1
    assert len(a.of_kind("director.active")) == 1  # its first tenure only


@pytest.fixture
def own_pair(tmp_path, fresh_etcd, router) -> Iterator[Directors]:
    directors = Directors(tmp_path, fresh_etcd, router.port)
    yield directors
    directors.close()


def test_losing_the_etcd_leader_changes_nothing(own_pair: Directors, router: OscDump):
    a, b = start_both(own_pair)
    cluster: EtcdCluster = own_pair.cluster
    key = own_pair.key
    held = cluster.get(key)
    assert held is not None and '"DirA"' in held["value"]
    killed = cluster.leader()
    cluster.kill(killed)
    # Three leases, looked at all along: the key stays DirA's, of the same term.
    start = time.monotonic()
    while time.monotonic() - start < 3.0:
        assert cluster.get(key) == held
    own_pair.send("DirA", "/pxcontrol/action", "ss", "Router.Send", "/router/still-a")
    router.wait_line("/router/still-a")
    assert a.of_kind("director.standby") == [] and b.of_kind("director.active") == []
    # Each director says the member is lost, and nothing else.
    lost = cluster.members[killed].client_url
    for director in (a, b):
        alarm = director.wait_event("alarm", alarm="etcd member lost", endpoint=lost)
        assert "2 of 3 answer. The show goes on, and survives no further loss" in alarm["message"]
        assert [e["alarm"] for e in director.of_kind("alarm")] == ["etcd member lost"]
    cluster.restart(killed)
    for director in (a, b):
        director.wait_event("alarm", alarm="etcd member back", endpoint=lost)


def test_no_quorum_no_director_in_charge_then_exactly_one(own_pair: Directors):
    a, b = start_both(own_pair)
    cluster: EtcdCluster = own_pair.cluster
    cluster.kill(0)
    cluster.kill(1)
    a.wait_event("director.standby", director="DirA", active="")
    for director in (a, b):
        alarm = director.wait_event("alarm", alarm="no director in charge")
        assert "no director is in charge of the show" in alarm["message"]
    after = {name: d.events[-1]["seq"] for name, d in (("DirA", a), ("DirB", b))}
    cluster.restart(1)
    back = wait_for(
        lambda: (
            a.of_kind("director.active", after["DirA"])
            + b.of_kind("director.active", after["DirB"])
        ),
        20,
        "a director in charge again",
    )
    name = back[0]["director"]
    other, other_name = (b, "DirB") if name == "DirA" else (a, "DirA")
    other.wait_event("director.standby", after=after[other_name], active=name)
    for director in (a, b):
        director.wait_event("alarm", alarm="director in charge again")
    # Exactly one took charge.
    assert (
        len(a.of_kind("director.active", after["DirA"]))
        + len(b.of_kind("director.active", after["DirB"]))
        == 1
    )


def test_the_page_top_bar_names_the_director_in_charge(pair: Directors, page: Page):
    a, b = start_both(pair)
    page.goto(f"http://127.0.0.1:{pair.http_port('DirB')}/")
    role = page.locator("#director-role")
    expect(role).to_have_text(
        f"DirB STANDBY · DirA at 127.0.0.1:{pair.osc_port('DirA')} is in charge"
    )
    a.signal(signal.SIGKILL)
    taken = b.wait_event("director.active", director="DirB")
    expect(role).to_have_text(f"DirB active · term {taken['term']} · standby: DirA")


def test_an_edit_of_the_directors_or_etcd_asks_for_a_restart(pair: Directors):
    a = pair.start("DirA")
    a.wait_event("director.active", director="DirA")
    show = pair.folder / "show.toml"
    edited = show.read_text().replace("lease = 1", "lease = 2")
    written = [0.0]

    def saved_and_reloaded() -> list:
        # The watcher starts just after the show loads, with no sign outside: save again
        # now and then until it has seen a save.
        if time.monotonic() - written[0] > 0.5:
            show.write_text(edited)
            written[0] = time.monotonic()
        return a.of_kind("show.reloaded")

    reloaded = wait_for(saved_and_reloaded, 10, "show.reloaded")[0]
    assert "restart the director to apply: redundancy" in reloaded["message"]
    assert a.of_kind("director.standby") == []  # the running election goes on as it was


def test_a_lost_standby_is_an_alarm_on_the_active_and_so_is_its_return(pair: Directors):
    a, b = start_both(pair)
    # Heard before it is lost: its presence key lasts two leases, and the active looks
    # every lease, so the active sees it at least once.
    wait_for(lambda: pair.cluster.get(f"{pair.key}/present/DirB"), 10, "DirB's presence")
    b.signal(signal.SIGKILL)
    alarm = a.wait_event("alarm", alarm="director lost", director="DirB")
    assert "director DirB is no longer heard by etcd" in alarm["message"]
    b = pair.start("DirB")
    b.wait_event("director.standby", director="DirB", active="DirA")
    a.wait_event("alarm", alarm="director back", director="DirB")
    assert a.of_kind("director.standby") == []


CLIENTS = """
[detection]
heartbeat_interval = 0.05
offline_after = 0.4
online_after = 0.3

[[clients]]
name = "Playout1"
ip = "127.0.0.11"
outputs = ["Output 1"]

[[clients]]
name = "Backup1"
ip = "127.0.0.21"
outputs = ["Output 1"]
backup_for = ["127.0.0.11"]

[[mappings]]
on = "backup.activated"
do = [{ action = "Router.Send", args = { address = "/router/salvo", args = ["Backup1"] } }]
"""


@pytest.fixture
def show_pair(tmp_path, etcd, router) -> Iterator[Directors]:
    directors = Directors(tmp_path, etcd, router.port, extra=CLIENTS)
    yield directors
    directors.close()


def test_the_standby_takes_charge_with_the_state_intact_and_runs_no_action_again(
    show_pair: Directors, router: OscDump
):
    a, b = start_both(show_pair)
    show_pair.start_agent("Playout1", "127.0.0.11", "DirA")
    show_pair.start_agent("Backup1", "127.0.0.21", "DirA")
    a.wait_event("client.online", client="Backup1")
    show_pair.send("DirA", "/pxcontrol/backup/switch", "s", "Playout1")
    activated = a.wait_event("backup.activated", client="Playout1")
    router.wait_line('/router/salvo s "Backup1"')
    # The standby follows it, and says so in its own event log.
    mirrored = b.wait_event("director.mirrored", epoch=activated["epoch"])
    assert mirrored["by"] == "DirA"
    page = httpx.get(f"http://127.0.0.1:{show_pair.http_port('DirB')}/api/status", timeout=5)
    assert {c["name"]: c["plays_on"] for c in page.json()["status"]["clients"]}["Playout1"] == (
        "Backup1"
    )

    a.signal(signal.SIGKILL)
    b.wait_event("director.active", director="DirB")
    page = httpx.get(f"http://127.0.0.1:{show_pair.http_port('DirB')}/api/status", timeout=5)
    status = page.json()["status"]
    assert status["epoch"] == activated["epoch"]
    plays = {c["name"]: c["plays_on"] for c in status["clients"]}
    assert plays == {"Playout1": "Backup1", "Backup1": "Backup1"}
    # Its next decision goes past the epoch it took over, and is the state now.
    show_pair.send("DirB", "/pxcontrol/backup/auto", "si", "Playout1", "1")
    b.wait_event("backup.auto", client="Playout1")
    held = show_pair.cluster.get(f"{show_pair.key}/state")
    assert held is not None and '"by":"DirB"' in held["value"]
    # A later command to look back from: the salvo ran once, by DirA, never again.
    show_pair.send("DirB", "/pxcontrol/action", "ss", "Router.Send", "/router/later")
    router.wait_line("/router/later")
    assert sum("/router/salvo" in line for line in router.lines) == 1
    assert b.of_kind("mapping.done") == [] and b.of_kind("backup.activated") == []

    # Both directors restarted: the one that takes charge has the state from etcd (DirA's
    # own disk never saw DirB's switch).
    b.signal(signal.SIGKILL)
    a = show_pair.start("DirA")
    a.wait_event("director.active", director="DirA")
    page = httpx.get(f"http://127.0.0.1:{show_pair.http_port('DirA')}/api/status", timeout=5)
    rows = {c["name"]: c for c in page.json()["status"]["clients"]}
    assert rows["Playout1"]["plays_on"] == "Backup1" and rows["Playout1"]["auto_backup"] is True


AUTO = """
[detection]
heartbeat_interval = 0.05
offline_after = 0.4
online_after = 0.3

[[clients]]
name = "Playout1"
ip = "127.0.0.11"
outputs = ["Output 1"]

[[clients]]
name = "Playout2"
ip = "127.0.0.12"
outputs = ["Output 1"]

[[clients]]
name = "Backup1"
ip = "127.0.0.21"
outputs = ["Output 1"]
backup_for = ["127.0.0.11"]
auto_backup = true

[[mappings]]
on = "backup.activated"
do = [{ action = "Router.Send", args = { address = "/router/salvo", args = ["Backup1"] } }]
"""


def test_a_playout_lost_while_no_director_is_in_charge_is_taken_over_once_when_one_is(
    tmp_path, fresh_etcd: EtcdCluster, router: OscDump
):
    directors = Directors(tmp_path, fresh_etcd, router.port, extra=AUTO)
    try:
        a = directors.start("DirA")
        a.wait_event("director.active", director="DirA")
        agents = {
            name: directors.start_agent(name, ip, "DirA")
            for name, ip in (
                ("Playout1", "127.0.0.11"),
                ("Playout2", "127.0.0.12"),
                ("Backup1", "127.0.0.21"),
            )
        }
        for name in agents:
            a.wait_event("client.online", client=name)
        fresh_etcd.kill(0)
        fresh_etcd.kill(1)
        a.wait_event("director.standby", director="DirA", active="")
        agents["Playout1"].signal(signal.SIGKILL)
        offline = a.wait_event("client.offline", client="Playout1")  # seen, in shadow
        assert a.of_kind("backup.activated") == []
        fresh_etcd.restart(1)
        back = a.wait_event("director.active", director="DirA", after=offline["seq"])
        activated = a.wait_event("backup.activated", client="Playout1", after=back["seq"])
        assert activated["by"] == "detector: waited for a director in charge"
        router.wait_line('/router/salvo s "Backup1"')
        # A later event to look back from: the salvo ran once.
        directors.send("DirA", "/pxcontrol/action", "ss", "Router.Send", "/router/later")
        router.wait_line("/router/later")
        assert sum("/router/salvo" in line for line in router.lines) == 1
        assert len(a.of_kind("backup.activated")) == 1
    finally:
        directors.close()
