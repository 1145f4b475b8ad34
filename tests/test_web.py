"""The Live Systems page in a real browser: Debian's chromium, driven by Playwright.

The director and the agents are real subprocesses (the demo show, with faster
detection); the page is loaded over HTTP from the director, gets its updates
over the director's websocket, and its buttons press the real backup manager.
Every wait is on the page's DOM or the director's events, never a fixed sleep.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from pxcontrol.loader import DEMO_SHOW
from pxcontrol.status import summarise_names
from pxcontrol.testing import Rig, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

# The demo show, on ports of its own, with clients online 0.6 s after their first heartbeat.
DEMO = (
    DEMO_SHOW.read_text()
    .replace("heartbeat_port = 7401", "heartbeat_port = {heartbeat_port}")
    .replace("osc_port = 7400", "osc_port = {osc_port}")
    .replace("http_port = 7480", "http_port = {http_port}")
    .replace("online_after = 3.0", "online_after = 0.6")
)
TOKEN = "stage-left-7"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK) and shutil.which("chromium") is None:
        raise RuntimeError("chromium is missing: apt-get install chromium (scripts/test does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1500, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def start(rig: Rig, *agents: str) -> Rig:
    director = rig.start_director()
    assert director.of_kind("show.loaded")[0]["web_port"] == rig.http_port
    ips = {"Playout1": "127.0.0.11", "Backup1": "127.0.0.21"}
    rig.start_clients(**{name: ips[name] for name in agents})
    return rig


@pytest.fixture
def demo(tmp_path) -> Iterator[Rig]:
    rig = Rig(tmp_path, DEMO)
    yield start(rig, "Playout1", "Backup1")
    rig.close()


def url(rig: Rig, path: str = "/") -> str:
    return f"http://127.0.0.1:{rig.http_port}{path}"


def row(page: Page, client: str):
    return page.locator(f'tr[data-client="{client}"]')


def open_live(page: Page, address: str) -> None:
    page.goto(address)
    expect(page.locator("#link")).to_have_class("link live")


def test_the_page_lists_the_demo_clients_with_state_role_and_figures(demo: Rig, page: Page):
    assert any(f"Live Systems page: {url(demo)}" in line for line in demo.director.output)
    open_live(page, url(demo))
    playout, backup = row(page, "Playout1"), row(page, "Backup1")
    expect(playout).to_have_attribute("data-state", "online")
    expect(backup).to_have_attribute("data-state", "online")
    expect(playout.locator(".pill")).to_have_text("ONLINE")
    expect(playout.locator(".c-ip")).to_have_text("127.0.0.11")
    expect(playout.locator(".role")).to_have_text("playout")
    expect(backup.locator(".role")).to_have_text("backup")
    expect(backup.locator(".sub")).to_have_text("covers Playout1")
    # The backup icon on the client that has a backup, not on the backup itself.
    expect(playout.locator(".shield")).to_be_visible()
    expect(backup.locator(".shield")).to_be_hidden()
    expect(playout.locator(".plays")).to_have_text("Playout1")
    expect(playout.get_by_role("button", name="Switch to Backup")).to_be_enabled()
    expect(playout.get_by_role("switch")).to_be_checked()  # the demo's auto_backup = true
    # Live figures from the agents' heartbeats, and a sparkline growing from the pushes.
    expect(playout.locator('[data-metric="cpu"] .value')).to_have_text(re.compile(r"^\d+%$"))
    expect(playout.locator('[data-metric="memory"] .spark .line')).to_have_attribute(
        "d", re.compile(r"^M.*L")
    )
    # Modules with their connection status, and the event log, newest first.
    expect(page.locator('#modules [data-module="Log"] .status')).to_have_text("ok")
    expect(page.locator('#modules [data-module="Console"]')).to_be_visible()
    seqs = [int(s) for s in page.locator("#events li.event").evaluate_all(
        "items => items.map(i => i.dataset.seq)"
    )]  # fmt: skip
    assert seqs == sorted(seqs, reverse=True) and len(seqs) >= 3
    expect(page.locator('#events [data-kind="client.online"]').first).to_be_visible()


def test_switch_to_backup_and_move_to_from_the_page(demo: Rig, page: Page):
    director = demo.director
    open_live(page, url(demo))
    playout = row(page, "Playout1")

    # Cancelled: nothing happens.
    playout.get_by_role("button", name="Switch to Backup").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Switch Playout1 to backup?")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()

    playout.get_by_role("button", name="Switch to Backup").click()
    dialog.get_by_role("button", name="Switch to Backup").click()
    activated = director.wait_event("backup.activated", client="Playout1")
    assert activated["reason"] == "web" and activated["by"] == "127.0.0.1"
    assert activated["backup"] == "Backup1"
    assert director.of_kind("backup.activated") == [activated], "the cancel sent nothing"
    # The page shows it: where the outputs play, who carries them, the refusal reason.
    expect(playout).to_have_attribute("data-plays-on", "Backup1")
    expect(playout.locator(".plays")).to_have_text("Backup1")
    expect(row(page, "Backup1").locator(".plays")).to_have_text("carrying Playout1")
    expect(playout.get_by_role("button", name="Switch to Backup")).to_be_disabled()
    expect(playout.locator(".why")).to_have_text("Playout1 already plays on Backup1")
    expect(page.locator(".toast.ok")).to_contain_text("Playout1 is on Backup1")
    # The mapped actions' trace, each with its result and duration.
    trace = page.locator('#events [data-kind="mapping.done"]').first.locator(".trace li")
    expect(trace.first).to_contain_text("Console.Send")
    expect(trace.first).to_contain_text("ms")
    expect(page.locator("#calls")).to_contain_text("Log.Entry")

    playout.get_by_role("button", name="Move To…").click()
    expect(dialog.get_by_role("radio", name="Playout1 (home)")).to_be_checked()
    dialog.get_by_role("button", name="Move").click()
    moved = director.wait_event("backup.moved", client="Playout1")
    assert moved["from"] == "Backup1" and moved["to"] == "Playout1" and moved["reason"] == "web"
    expect(playout).to_have_attribute("data-plays-on", "Playout1")
    expect(playout.get_by_role("button", name="Switch to Backup")).to_be_enabled()

    # The automatic-backup switch goes through the same backup manager.
    playout.get_by_role("switch").uncheck(force=True)
    auto = director.wait_event("backup.auto", client="Playout1")
    assert auto["on"] is False and auto["reason"] == "web"


# The properties that running CSS animations and transitions change.
ANIMATED = """() => [...new Set(document.getAnimations()
  .filter((a) => a.playState === "running")
  .flatMap((a) => a.effect.getKeyframes())
  .flatMap((k) => Object.keys(k))
  .filter((p) => !["offset", "computedOffset", "easing", "composite"].includes(p)))]"""


OFFLINE_WATCH = """() => {
  window.notReloaded = true;
  const row = document.querySelector('tr[data-client="Playout1"]');
  new MutationObserver(() => {
    if (row.dataset.state === "offline" && !window.offlineAt) window.offlineAt = Date.now();
  }).observe(row, { attributes: true });
}"""


def test_a_killed_playout_turns_its_row_offline_without_reloading(demo: Rig, page: Page):
    open_live(page, url(demo))
    playout = row(page, "Playout1")
    expect(playout).to_have_attribute("data-state", "online")
    # The page notes when the row changes (Playwright's own polling would add its lag).
    page.evaluate(OFFLINE_WATCH)
    killed = time.time()  # the browser's Date.now() and this are the same machine's clock
    demo.agents["Playout1"].signal(signal.SIGKILL)
    expect(playout).to_have_attribute("data-state", "offline")
    shown = page.evaluate("window.offlineAt") / 1000 - killed
    assert shown > 0, "the row turned offline after the kill, from the feed"
    print(f"the row turned offline {shown:.3f} s after the kill (bench/page500.py measures it)")
    expect(playout.locator(".pill")).to_have_text("OFFLINE")
    assert page.evaluate("window.notReloaded") is True
    # The demo takes over automatically; losing the backup too is an alarm, shown on top.
    expect(playout).to_have_attribute("data-plays-on", "Backup1")
    demo.agents["Backup1"].signal(signal.SIGKILL)
    alarms = page.locator("#alarms")
    expect(alarms).to_be_visible()
    expect(alarms).to_contain_text("backup Backup1 went offline while playing the outputs of")
    # What moves on the page (the alarm's pulse, new events) moves on the compositor: an
    # animation of anything but opacity or transform repaints the page every frame.
    animated = page.evaluate(ANIMATED)
    assert "opacity" in animated, f"the alarm sign pulses: {animated}"
    assert set(animated) <= {"opacity", "transform"}, f"painted every frame: {animated}"
    page.get_by_role("button", name="Acknowledge").click()
    expect(alarms).to_be_hidden()


@pytest.fixture
def guarded(tmp_path) -> Iterator[Rig]:
    rig = Rig(tmp_path, DEMO.replace("[director]", f'[director]\ntoken = "{TOKEN}"', 1))
    yield start(rig)
    rig.close()


def test_without_the_token_every_request_and_the_websocket_are_refused(guarded: Rig, page: Page):
    with httpx.Client() as http:
        asked = http.get(url(guarded), headers={"accept": "text/html"})
        assert asked.status_code == 401 and 'name="token"' in asked.text
        assert http.get(url(guarded, "/api/status")).status_code == 401
        assert http.get(url(guarded, "/static/app.js")).status_code == 401
        switch = http.post(url(guarded, "/api/backup/switch"), json={"client": "Playout1"})
        assert switch.status_code == 401 and switch.json()["message"] == "token required"
        wrong = {"authorization": "Bearer nope"}
        assert http.get(url(guarded, "/api/status"), headers=wrong).status_code == 403
        right = {"authorization": f"Bearer {TOKEN}"}
        assert http.get(url(guarded, "/api/status"), headers=right).status_code == 200
    assert guarded.director.of_kind("backup.failed") == [], "nothing reached the backup manager"
    with httpx.Client() as http:
        # A script's token in the query (or header) reaches the backup manager; bodies are strict.
        dry = http.post(
            url(guarded, f"/api/backup/switch?token={TOKEN}"), json={"client": "Playout1"}
        )
        assert dry.status_code == 409
        assert dry.json() == {
            "ok": False,
            "message": "backup Backup1 is dry (declared, never heard from): nothing can move",
            "epoch": 0,
            "reason": "backup dry",  # the refusal as data, as in backup.failed
        }
        extra = http.post(
            url(guarded, "/api/backup/switch"),
            json={"client": "Playout1", "now": True},
            headers=right,
        )
        assert (
            extra.status_code == 422
            and extra.json()["message"] == "now: Extra inputs are not permitted"
        )

    ws = f"ws://127.0.0.1:{guarded.http_port}/ws"
    with connect(ws) as refused, pytest.raises(ConnectionClosed) as closed:
        refused.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert closed.value.rcvd.reason == "token required"
    with connect(ws, additional_headers=right) as allowed:
        assert '"type": "status"' in allowed.recv(timeout=5)

    # A browser is asked for the token, and keeps it (a cookie) once given.
    page.goto(url(guarded))
    expect(page.locator("#refusal")).to_contain_text("token required")
    page.get_by_label("token").fill(TOKEN)
    page.get_by_role("button", name="Open").click()
    expect(page.locator("#link")).to_have_class("link live")
    assert page.url == url(guarded), "the token is not left in the address bar"
    expect(row(page, "Playout1")).to_have_attribute("data-state", "dry")


def test_the_page_shows_the_directors_own_health_and_its_stalls(demo: Rig, page: Page):
    open_live(page, url(demo))
    health = page.locator("#director-health")
    expect(health).to_have_attribute("title", re.compile(r"detector ticking"))
    expect(health).to_have_attribute("title", re.compile(r"stalled 0 time\(s\)"))
    director = demo.director
    assert director is not None
    director.signal(signal.SIGSTOP)  # the director itself is paused past offline_after
    try:
        # The connection stays open with nothing on it: the page says the director is silent.
        expect(page.locator("#link-text")).to_have_text(
            re.compile("director not answering"), timeout=5000
        )
    finally:
        director.signal(signal.SIGCONT)
    expect(page.locator("#link")).to_have_class("link live")
    expect(page.locator("#alarms")).to_contain_text("the director was stopped for")
    expect(health).to_have_attribute("title", re.compile(r"stalled 1 time\(s\)"))
    # The worst lag of the last 10 s is shown in red, while the detector ticks on.
    expect(health).to_have_text(re.compile(r"director loop lag \d{4} ms"))
    expect(health).to_have_class("health bad")
    expect(health).to_have_attribute("title", re.compile(r"detector ticking"))


def test_the_page_reconnects_by_itself_when_the_director_restarts(demo: Rig, page: Page):
    open_live(page, url(demo))
    page.evaluate("window.notReloaded = true")
    assert demo.director.stop() == 0
    expect(page.locator("#link")).to_have_class("link lost")
    expect(row(page, "Playout1").get_by_role("button", name="Switch to Backup")).to_be_disabled()
    demo.start_director()
    expect(page.locator("#link")).to_have_class("link live")
    expect(row(page, "Playout1")).to_have_attribute("data-state", "online")
    expect(row(page, "Playout1").get_by_role("button", name="Switch to Backup")).to_be_enabled()
    assert page.evaluate("window.notReloaded") is True
    # The event log came back with the restart in it.
    expect(page.locator('#events [data-kind="show.loaded"]')).to_have_count(2)


def test_a_takeover_the_backup_has_not_confirmed_is_marked_until_it_does(tmp_path, page: Page):
    # A backup agent that stalls for seconds (SIGSTOP) without being declared offline.
    rig = start(Rig(tmp_path, DEMO.replace("offline_after = 0.5", "offline_after = 5.0")),
                "Playout1", "Backup1")  # fmt: skip
    try:
        open_live(page, url(rig))
        playout = row(page, "Playout1")
        expect(playout.locator(".unconfirmed")).to_be_hidden()
        rig.agents["Backup1"].signal(signal.SIGSTOP)
        playout.get_by_role("button", name="Switch to Backup").click()
        page.get_by_role("dialog").get_by_role("button", name="Switch to Backup").click()
        expect(playout).to_have_attribute("data-plays-on", "Backup1")
        expect(playout.locator(".unconfirmed")).to_be_visible()
        expect(playout.locator(".unconfirmed")).to_have_text("NOT CONFIRMED")
        expect(page.locator("#alarms")).to_contain_text("has not confirmed")
        rig.agents["Backup1"].signal(signal.SIGCONT)
        expect(playout.locator(".unconfirmed")).to_be_hidden()
        assert rig.director is not None
        assert rig.director.wait_event("backup.confirmed", client="Playout1")["alarmed"] is True
    finally:
        rig.close()


# --- 500 clients: simulated agents on 127.0.X.Y (bench/_heartbeat_sim.py) ---

BENCH = Path(__file__).resolve().parent.parent / "bench"
_sim_spec = importlib.util.spec_from_file_location("_heartbeat_sim", BENCH / "_heartbeat_sim.py")
assert _sim_spec is not None and _sim_spec.loader is not None
heartbeat_sim = importlib.util.module_from_spec(_sim_spec)
_sim_spec.loader.exec_module(heartbeat_sim)

MANY = 500  # every 5th client backs up the 4 before it, automatically: C004 covers C000–C003


class Simulator:
    """The heartbeat simulator as a subprocess that stops clients on command."""

    def __init__(self, port: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "_heartbeat_sim.py"), "--director",
             f"127.0.0.1:{port}", "--clients", str(MANY), "--seconds", "300", "--control"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        )  # fmt: skip

    def stop(self, *names: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("".join(f"stop {n}\n" for n in names))
        self.proc.stdin.flush()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Iterator[tuple[Rig, Simulator]]:
    # Offline after 1.5 s: this machine's other work (chromium starting) must not look like
    # 500 clients failing; the clients the tests stop go offline all the same.
    show = heartbeat_sim.show_toml(MANY, 5, online_after=0.3, auto=True, offline_after=1.5)
    rig = Rig(tmp_path_factory.mktemp("many"), show)
    simulator = None
    try:
        director = rig.start_director()
        simulator = Simulator(rig.heartbeat_port)
        wait_for(lambda: len(director.of_kind("client.online")) >= MANY, 30, "500 clients online")
        yield rig, simulator
    finally:
        if simulator is not None:
            simulator.close()
        rig.close()


def group_of(name: str) -> set[str]:
    """The clients whose rows depend on `name`'s: its backup and the clients that share it."""
    first = int(name[1:]) // 5 * 5
    return {f"C{i:03d}" for i in range(first, first + 5)}


def test_the_feed_sends_the_whole_show_once_then_only_the_rows_that_changed(many):
    rig, simulator = many
    director = rig.director
    assert director is not None
    with connect(f"ws://127.0.0.1:{rig.http_port}/ws", max_size=None) as feed:
        first = json.loads(feed.recv(timeout=10))
        assert first["type"] == "status" and len(first["status"]["clients"]) == MANY
        assert json.loads(feed.recv(timeout=5))["type"] == "log"
        since = len(director.events)
        simulator.stop("C007")
        rows: dict[str, dict] = {}
        updates = []
        deadline = time.monotonic() + 10
        while not (
            rows.get("C007", {}).get("plays_on") == "C009"
            and rows.get("C009", {}).get("carrying") == "C007"
            and rows.get("C005", {}).get("can_switch") is False
        ):
            assert time.monotonic() < deadline, f"rows seen: {sorted(rows)}"
            message = json.loads(feed.recv(timeout=5))
            assert message["type"] == "update", "after connecting, only updates"
            updates.append(message)
            rows.update({c["name"]: c for c in message.get("clients", [])})
    assert rows["C007"]["state"] == "offline"
    # The takeover's own update carries C005's new row (not a later sweep over the rows).
    carried = next(
        u for u in updates if any(c.get("carrying") == "C007" for c in u.get("clients", []))
    )
    assert any(c["name"] == "C005" and not c["can_switch"] for c in carried["clients"])
    # C005 raised no event: its backup became busy, so it cannot be switched now.
    assert (
        rows["C005"]["why_not_switch"]
        == "backup C009 already plays the outputs of C007; move C007 back first"
    )
    # Only rows that changed: clients named by an event since, and the clients sharing
    # their backup; never the whole show again.
    named = {e["client"] for e in director.events[since:] if "client" in e}
    assert set(rows) <= set().union(*(group_of(n) for n in named))
    assert all(len(u.get("clients", [])) <= 10 for u in updates)
    events = [e for u in updates for e in u.get("events", [])]
    assert [e["kind"] for e in events if e.get("client") == "C007"][:2] == [
        "client.late",
        "client.offline",
    ]


def test_a_page_of_500_clients_searches_filters_and_puts_problems_first(many, page: Page):
    rig, simulator = many
    director = rig.director
    assert director is not None
    open_live(page, url(rig))
    clients = page.locator("#clients tbody tr.client")
    expect(page.locator("#shown-count")).to_have_text(f"{MANY} of {MANY}")
    expect(clients.first).to_be_visible()
    in_document = clients.count()
    assert 10 <= in_document <= 60, f"{in_document} rows in the document for {MANY} clients"

    # A backup goes, then the four clients it covers: their automatic takeovers are refused
    # together, and the page shows that as one alarm, not four.
    simulator.stop("C104")
    director.wait_event("client.offline", client="C104")
    simulator.stop("C100", "C101", "C102", "C103")
    for name in ("C100", "C101", "C102", "C103"):
        director.wait_event("backup.failed", client=name)
    offline = {e["client"] for e in director.of_kind("client.offline")}
    expect(page.locator('#summary [data-count="offline"] b')).to_have_text(str(len(offline)))
    alarm = page.locator('#alarm-list li[data-kind="backup.failed"]').first
    expect(alarm).to_have_attribute("data-count", "4")
    expect(alarm).to_contain_text("4 × within")
    expect(alarm).to_contain_text("C100, C101, C102, C103")
    # Problems first: the offline clients head the table, in show order.
    names = lambda: clients.evaluate_all("rows => rows.map(r => r.dataset.client)")  # noqa: E731
    wait_for(lambda: set(names()[: len(offline)]) == offline, 10, "offline clients first")
    first = clients.first
    expect(first).to_have_attribute("data-state", "offline")
    expect(first.locator(".c-heard")).to_contain_text("s ago")

    # Search by name and by address.
    page.locator("#search").fill("C49")
    expect(page.locator("#shown-count")).to_have_text(f"10 of {MANY}")
    assert names() == [f"C49{i}" for i in range(10)]
    page.locator("#search").fill("127.0.2.250")
    expect(page.locator("#shown-count")).to_have_text(f"1 of {MANY}")
    expect(clients).to_have_count(1)
    page.locator("#search").fill("")

    # Filter by role, then by state; the document keeps a bounded number of rows.
    page.locator("#role-filter").select_option("backup")
    expect(page.locator("#shown-count")).to_have_text(f"{MANY // 5} of {MANY}")
    assert set(clients.locator(".role").all_text_contents()) == {"backup"}
    assert clients.count() <= 60
    page.locator("#role-filter").select_option("")
    page.locator("#state-filter").select_option("offline")
    expect(page.locator("#shown-count")).to_have_text(f"{len(offline)} of {MANY}")
    assert set(names()) == offline
    page.locator("#state-filter").select_option("")

    # Scrolled to the end, the last rows are drawn and the first ones left the document.
    expect(page.locator("#shown-count")).to_have_text(f"{MANY} of {MANY}")
    page.locator("#clients-scroll").evaluate("s => { s.scrollTop = s.scrollHeight; }")
    expect(row(page, "C499")).to_be_attached()
    expect(row(page, "C100")).not_to_be_attached()
    assert clients.count() <= 60

    # Grouped by backup: the group with problems first, each backup heading its group.
    page.locator("#clients-scroll").evaluate("s => { s.scrollTop = 0; }")
    page.locator("#group").check()
    groups = page.locator("#clients tbody tr.group")
    expect(groups.first).to_have_attribute("data-group", re.compile("C104|C009"))
    expect(groups.first).to_contain_text("with problems")


def test_many_names_are_summarised():
    assert summarise_names(["A", "B"], 3) == "A, B"
    names = [f"C{i:03d}" for i in range(37)]
    assert summarise_names(names, 3) == "C000, C001, C002 and 34 more"  # ASCII, for OSC


def test_a_failed_client_is_red_with_its_check_and_counted(tmp_path, page: Page):
    from .heartbeat_sender import Sender

    rig = Rig(tmp_path, DEMO)
    director = rig.start_director()
    senders = [
        Sender(name, ip, rig.heartbeat_port, "Demo GPU", interval=0.1)
        for name, ip in (("Playout1", "127.0.0.11"), ("Backup1", "127.0.0.21"))
    ]
    try:
        for sender in senders:
            director.wait_event("client.online", client=sender.name)
        open_live(page, url(rig))
        backup = row(page, "Backup1")
        expect(backup).to_have_attribute("data-state", "online")
        senders[1].fail("process mpv", "exited with signal 9")
        expect(backup).to_have_attribute("data-state", "failed")
        expect(backup.locator(".pill")).to_have_text("FAILED")
        expect(backup.locator(".pill")).to_have_attribute(
            "title", "process mpv: exited with signal 9"
        )
        expect(backup.locator(".sub")).to_have_text("process mpv: exited with signal 9")
        expect(page.locator('#summary [data-count="failed"] b')).to_have_text("1")
        expect(page.locator('#events [data-kind="client.failed"]').first).to_contain_text(
            "Backup1 (127.0.0.21) failed: process mpv — exited with signal 9"
        )
        # Its playout cannot be switched to it, and the button says why.
        expect(
            row(page, "Playout1").get_by_role("button", name="Switch to Backup")
        ).to_be_disabled()
        senders[1].recover()
        expect(backup).to_have_attribute("data-state", "online")
        expect(backup.locator(".sub")).to_have_text("covers Playout1")
        expect(page.locator('#summary [data-count="failed"] b')).to_have_text("0")
    finally:
        for sender in senders:
            sender.stop()
        rig.close()


def test_a_page_opened_later_shows_the_last_minutes_of_a_clients_figures(demo: Rig, page: Page):
    # The director keeps them from the start: by the time the page opens there is history.
    def history() -> dict:
        with httpx.Client(timeout=5) as http:
            return http.get(url(demo, "/api/history/Playout1")).json()

    wait_for(lambda: history().get("ok") and sum(v is not None for v in history()["cpu"]) >= 2)
    open_live(page, url(demo))
    row(page, "Playout1").locator('[data-metric="cpu"]').click()
    dialog = page.locator("#history")
    expect(dialog).to_be_visible()
    expect(page.locator("#history-title")).to_have_text("Playout1: the last ten minutes")
    cpu = dialog.locator('figure[data-metric="cpu"]')
    assert int(cpu.get_attribute("data-points") or 0) >= 2, "samples from before the page opened"
    expect(cpu.locator("path.line")).to_have_attribute("d", re.compile(r"^M.*L"))
    # A client nobody declared: said plainly.
    with httpx.Client(timeout=5) as http:
        unknown = http.get(url(demo, "/api/history/Nobody"))
    assert (
        unknown.status_code == 404 and unknown.json()["message"] == "no client is called 'Nobody'"
    )


TABLETS = [(1024, 768, "landscape"), (768, 1024, "portrait")]


@pytest.mark.parametrize(("width", "height", "held"), TABLETS, ids=[t[2] for t in TABLETS])
def test_on_a_tablet_every_button_and_auto_switch_is_on_screen(
    demo: Rig, browser: Browser, width: int, height: int, held: str, tmp_path
):
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        open_live(page, url(demo))
        expect(row(page, "Playout1").locator(".c-auto .label")).to_have_text(re.compile("ON|OFF"))
        # No sideways scrolling, of the page or of the clients' table.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        scroll = page.locator("#clients-scroll")
        assert scroll.evaluate("e => e.scrollWidth <= e.clientWidth"), "the table scrolls sideways"
        # Every client with a backup (Backup1 has none: no buttons, no switch).
        playout = row(page, "Playout1")
        parts = [playout.locator(".switch"), playout.locator(".move"), playout.locator(".toggle")]

        for part in parts:
            box = part.bounding_box()
            assert box is not None and box["width"] > 0, part
            assert 0 <= box["x"] and box["x"] + box["width"] <= width, (part, box)
            assert 0 <= box["y"] and box["y"] + box["height"] <= height, (part, box)
        # The top bar keeps its counters.
        for counter in ("#online-count", "#epoch", "#director-health"):
            expect(page.locator(counter)).to_be_visible()
        # What docs/images/live-systems-tablet-*.png show (copied from here by hand).
        page.screenshot(path=str(tmp_path / f"live-systems-tablet-{held}.png"))
    finally:
        context.close()


def test_alarms_are_acknowledged_once_for_every_operator_and_stay_so_after_a_restart(
    demo: Rig, browser: Browser
):
    contexts = [browser.new_context(viewport={"width": 1500, "height": 900}) for _ in range(2)]
    try:
        first, second = (context.new_page() for context in contexts)
        for page in (first, second):
            page.set_default_timeout(10_000)
            open_live(page, url(demo))
        assert demo.director is not None
        # An operator's refused command is answered to them and logged: not a red band.
        with httpx.Client(timeout=5) as http:
            refused = http.post(url(demo, "/api/backup/switch"), json={"client": "Backup1"})
        assert refused.status_code == 409 and refused.json()["reason"] == "no backup"
        expect(second.locator("#events")).to_contain_text("takeover of Backup1 refused")
        expect(second.locator("#alarms")).to_be_hidden()
        demo.agents["Playout1"].signal(signal.SIGKILL)
        demo.director.wait_event("backup.activated", client="Playout1")
        demo.agents["Backup1"].signal(signal.SIGKILL)  # the backup lost too: an alarm
        demo.director.wait_event("alarm", alarm="backup lost")
        for page in (first, second):
            expect(page.locator("#alarms")).to_be_visible()
        first.get_by_role("button", name="Acknowledge").click()
        # For everyone: the other operator's page, too, and the event says who.
        expect(second.locator("#alarms")).to_be_hidden()
        done = demo.director.wait_event("alarm.acknowledged")
        assert (
            done["by"] == "127.0.0.1" and done["up_to"] >= demo.director.of_kind("alarm")[-1]["seq"]
        )
        expect(second.locator("#events")).to_contain_text("acknowledged for everyone by 127.0.0.1")
        # A restart keeps it: a page opened afterwards shows the alarm in the log, not on top.
        demo.start_agent("Playout1", "127.0.0.11")
        demo.start_agent("Backup1", "127.0.0.21")
        demo.director.wait_event("client.online", after=done["seq"], client="Backup1")
        demo.director.signal(signal.SIGTERM)
        demo.director.wait_exit()
        director = demo.start_director()
        director.wait_event("client.online", client="Backup1")
        later = contexts[1].new_page()
        open_live(later, url(demo))
        expect(later.locator("#events")).to_contain_text("went offline while playing the outputs")
        # (The restart may raise alarms of its own, e.g. the router's salvo it never saw
        # confirmed: those are new. The acknowledged one is not shown again.)
        expect(later.locator("#alarm-list")).not_to_contain_text("went offline while playing")
    finally:
        for context in contexts:
            context.close()
