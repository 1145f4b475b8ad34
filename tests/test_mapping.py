"""Mappings: which events run which actions, in what order, with what arguments."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from pxcontrol.app import App
from pxcontrol.loading import load_show
from pxcontrol.mapping import MappingRunner, mappings_of
from pxcontrol.problems import ShowInvalid

from .conftest import async_wait_for

RECORDER = '''
import asyncio
import time
from pxcontrol import Module, action, hookimpl

class Recorder(Module):
    """Remembers every call, with when it started and ended."""

    async def start(self):
        self.calls = []
        await super().start()

    @action
    async def note(self, text: str = "", delay: float = 0.0, items: list[str] = []) -> None:
        began = time.monotonic()
        await asyncio.sleep(delay)
        self.calls.append((text, began, time.monotonic(), items))

    @action
    async def fail(self) -> None:
        raise RuntimeError("lamp out")

@hookimpl
def register_module_types(register):
    register(Recorder)
'''

CLIENTS = """
[[clients]]
name = "Playout1"
ip = "10.0.0.11"
outputs = ["Output 1", "Output 2"]

[[clients]]
name = "Playout2"
ip = "10.0.0.12"
outputs = ["Output 1"]

[[clients]]
name = "Backup1"
ip = "10.0.0.21"
outputs = ["Output 1", "Output 2"]
backup_for = ["10.0.0.11", "10.0.0.12"]
on_backup = [{ action = "Rec.Note", args = { text = "backup on_backup for {client}" } }]
"""


class Show:
    def __init__(self, app: App, runner: MappingRunner) -> None:
        self.app = app
        self.runner = runner

    @property
    def calls(self) -> list:
        return self.app.modules["Rec"].calls

    def texts(self) -> list[str]:
        return [c[0] for c in self.calls]

    async def event(self, kind: str, **fields) -> list:
        """Raise an event and wait for every mapping it started to finish."""
        self.app.emit(kind, **fields)
        await async_wait_for(lambda: not self.runner.running, what="mappings to finish")
        return [e for e in self.app.events if e.kind == "mapping.done"]


@pytest.fixture
async def make_show(write_show):
    made: list[App] = []

    async def make(mappings: str) -> Show:
        path = write_show(
            '[modules.Rec]\ntype = "recorder"\n' + CLIENTS + mappings,
            {"recorder.py": RECORDER},
        )
        loaded = load_show(path)
        app = App(loaded)
        runner = MappingRunner(app, mappings_of(loaded.show))
        runner.attach()
        await app.start()
        made.append(app)
        return Show(app, runner)

    yield make
    for app in made:
        await app.stop()


@pytest.fixture
async def show(make_show) -> AsyncIterator[Show]:
    yield await make_show(
        """
[[mappings]]
on = "backup.activated"
client = "Playout1"
do = [
  { action = "Rec.Note", args = { text = "router first", delay = 0.05 } },
  { action = "Rec.Note", args = { text = "then the log: {client} on {backup} ({reason})" } },
  { action = "Rec.Note", args = { items = "{outputs}" } },
]
"""
    )


async def test_actions_of_a_mapping_run_in_order(show: Show):
    await show.event(
        "backup.activated", client="Playout1", backup="Backup1", outputs=["Output 1"], reason="auto"
    )
    texts = show.texts()
    mapped = [t for t in texts if not t.startswith("backup on_backup")]
    assert mapped == ["router first", "then the log: Playout1 on Backup1 (auto)", ""]
    first, second = show.calls[texts.index("router first")], show.calls[texts.index(mapped[1])]
    assert first[2] <= second[1], "the second starts after the first ended"
    assert show.calls[texts.index("")][3] == ["Output 1"], "a whole placeholder keeps its type"


async def test_filters_and_the_on_backup_shorthand(show: Show):
    done = await show.event("backup.activated", client="Playout2", backup="Backup1", outputs=[])
    assert show.texts() == ["backup on_backup for Playout2"], "the client filter held"
    assert [d.fields["mapping"] for d in done] == ["Backup1.on_backup"]


async def test_each_run_is_recorded_as_a_trace(show: Show):
    (trace, _) = sorted(
        await show.event(
            "backup.activated", client="Playout1", backup="Backup1", outputs=[], reason="manual"
        ),
        key=lambda e: e.fields["mapping"] != "mappings[0]",
    )
    fields = trace.fields
    assert fields["mapping"] == "mappings[0]" and fields["on"] == "backup.activated"
    assert fields["ok"] is True and fields["client"] == "Playout1"
    assert [a["action"] for a in fields["actions"]] == ["Rec.Note"] * 3
    assert all(a["ok"] and a["duration"] >= 0 for a in fields["actions"])
    assert fields["actions"][0]["duration"] >= 0.05


async def test_parallel_runs_them_at_once(make_show):
    show = await make_show(
        """
[[mappings]]
on = "client.offline"
parallel = true
do = [
  { action = "Rec.Note", args = { text = "a", delay = 0.2 } },
  { action = "Rec.Note", args = { text = "b", delay = 0.2 } },
]
"""
    )
    await show.event("client.offline", client="Playout1")
    assert sorted(show.texts()) == ["a", "b"]
    a, b = show.calls
    assert max(a[1], b[1]) < min(a[2], b[2]), "both were running at the same time"


async def test_a_failing_action_does_not_stop_the_rest_unless_stop_on_error(make_show):
    show = await make_show(
        """
[[mappings]]
on = "client.offline"
do = ["Rec.Fail", { action = "Rec.Note", args = { text = "after the failure" } }]

[[mappings]]
on = "client.online"
stop_on_error = true
do = ["Rec.Fail", { action = "Rec.Note", args = { text = "never" } }]
"""
    )
    (done,) = await show.event("client.offline", client="Playout1")
    assert show.texts() == ["after the failure"]
    assert done.fields["ok"] is False
    assert done.fields["actions"][0]["error"] == "Rec.Fail failed: lamp out"
    done = (await show.event("client.online", client="Playout1"))[-1]
    assert "never" not in show.texts()
    assert done.fields["ok"] is False and len(done.fields["actions"]) == 1


async def test_wait_and_a_per_action_timeout(make_show):
    show = await make_show(
        """
[[mappings]]
on = "alarm"
do = [
  { action = "Show.Wait", args = { seconds = 0.1 } },
  { action = "Rec.Note", args = { text = "late", delay = 5 }, timeout = 0.1 },
  { action = "Rec.Note", args = { text = "after" } },
]
"""
    )
    began = time.monotonic()
    (done,) = await show.event("alarm", client="Playout1", message="x")
    actions = done.fields["actions"]
    assert actions[0]["ok"] and actions[0]["duration"] >= 0.1
    assert actions[1]["error"] == "Rec.Note timed out after 0.1 s"
    assert actions[2]["ok"] and show.texts() == ["after"]
    assert time.monotonic() - began < 2


async def test_a_mapping_on_a_pattern(make_show):
    show = await make_show(
        """
[[mappings]]
on = "client.*"
do = [{ action = "Rec.Note", args = { text = "{kind} {client}" } }]
"""
    )
    await show.event("client.offline", client="Playout1", ip="10.0.0.11")
    await show.event("client.online", client="Playout2", ip="10.0.0.12")
    await show.event("backup.failed", client="Playout1")
    assert show.texts() == ["client.offline Playout1", "client.online Playout2"]


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        (
            'on = "backup.activated"\ndo = [{ action = "Rec.Note", args = { text = "{clinet}" } }]',
            "Rec.Note: {clinet} is not a field of this event\n    → did you mean 'client'?",
        ),
        (
            'on = "client.*"\ndo = [{ action = "Rec.Note", args = { text = "{backup}" } }]',
            "{backup} is not a field of this event",
        ),
        (
            'on = "backup.activated"\ndo = [{ action = "Rec.Note", args = { text = "{outputs}" } }]',
            "args.text: '{outputs}' gives list ['Output 1'] here: input should be a valid string",
        ),
    ],
)
async def test_placeholders_are_checked_when_the_show_loads(write_show, mapping, message):
    path = write_show(
        '[modules.Rec]\ntype = "recorder"\n' + CLIENTS + "\n[[mappings]]\n" + mapping + "\n",
        {"recorder.py": RECORDER},
    )
    with pytest.raises(ShowInvalid) as info:
        load_show(path)
    assert message in str(info.value)


async def test_a_failure_inside_an_action_failed_mapping_does_not_loop(make_show):
    show = await make_show(
        """
[[mappings]]
on = "action.failed"
do = ["Rec.Fail"]
"""
    )
    await show.app.run_action("Rec.Fail")
    await async_wait_for(lambda: not show.runner.running)
    failures = [e for e in show.app.events if e.kind == "action.failed"]
    assert len(failures) == 2, "the first failure, and the mapped one: no third"


async def test_a_named_mapping_is_traced_by_its_name(make_show):
    show = await make_show(
        """
[[mappings]]
name = "house lights down"
on = "client.offline"
do = ["Rec.Note"]
"""
    )
    (done,) = [e for e in await show.event("client.offline", client="Playout1") if e.fields]
    assert done.fields["mapping"] == "house lights down" and done.fields["ok"]


def test_two_mappings_may_not_share_a_name(write_show):
    text = '[modules.Log]\ntype = "log"\n' + 2 * (
        '[[mappings]]\nname = "cue"\non = "client.offline"\ndo = ["Log.Entry"]\n'
    )
    with pytest.raises(ShowInvalid) as info:
        load_show(write_show(text))
    (problem,) = info.value.problems
    assert (
        problem.key == "mappings[1].name" and "another mapping is called 'cue'" in problem.message
    )
