"""The application object: action calls never take the runtime down."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from pxcontrol.app import App
from pxcontrol.loading import load_show
from pxcontrol.module import ModuleStatus

from .conftest import async_wait_for

DEVICE = '''
import asyncio
from pxcontrol import Module, ModuleStatus, action, hookimpl

class Device(Module):
    """A device that misbehaves on request."""

    class Settings(Module.Settings):
        fail_start: bool = False
        label: str = ""

    async def start(self):
        if self.settings.fail_start:
            raise ConnectionRefusedError("no route to device")
        self.seen = []
        self.set_status(ModuleStatus.OK)

    async def stop(self):
        self.stopped_after = len(self.seen)  # set up by start(): would raise after a failed one

    @action
    async def ok(self, value: int = 1) -> int:
        self.seen.append(value)
        return value * 2

    @action
    async def boom(self) -> None:
        raise RuntimeError("projector lamp is out")

    @action
    async def hang(self) -> None:
        await asyncio.sleep(3600)

    @action(timeout=0.2)
    async def stubborn(self) -> None:
        while True:  # swallows cancellation, as badly written device code does
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass

    @action(timeout=0.1)
    async def late(self) -> str:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass  # ignores its time limit, then answers anyway
        self.answered_late = True
        return "too late"

@hookimpl
def register_module_types(register):
    register(Device)

events = []

@hookimpl
def observe_event(event):
    events.append(event.kind)
    if event.kind == "log.entry":
        raise RuntimeError("an observer that breaks must not break the show")
'''

SHOW = """
[director]
action_timeout = 0.3

[modules.Dev]
type = "device"

[modules.Broken]
type = "device"
fail_start = true

[modules.Log]
type = "log"
"""


@pytest.fixture
async def app(write_show):
    loaded = load_show(write_show(SHOW, {"device.py": DEVICE}))
    app = App(loaded)
    await app.start()
    yield app
    await app.stop()


async def test_call_runs_the_action_and_records_it(app: App):
    record = await app.run_action("Dev.Ok", {"value": 21})
    assert record.ok and record.result == 42 and record.error == ""
    assert record.duration > 0
    assert app.last_calls["Dev.Ok"] is record
    assert app.modules["Dev"].seen == [21]


async def test_an_action_that_raises_becomes_action_failed(app: App):
    record = await app.run_action("Dev.Boom")
    assert not record.ok
    assert record.error == "Dev.Boom failed: projector lamp is out"
    failed = app.events.of_kind("action.failed")
    assert [e.fields["message"] for e in failed] == [record.error]
    assert (await app.run_action("Dev.Ok")).ok, "the runtime carries on"


async def test_a_hanging_action_is_cut_off_at_its_timeout(app: App):
    began = time.monotonic()
    record = await app.run_action("Dev.Hang")
    assert record.error == "Dev.Hang timed out after 0.3 s"
    assert 0.3 <= time.monotonic() - began < 2


async def test_an_action_that_swallows_cancellation_still_returns_at_its_timeout(app: App):
    began = time.monotonic()
    record = await app.run_action("Dev.Stubborn")
    assert record.error == "Dev.Stubborn timed out after 0.2 s"
    assert time.monotonic() - began < 2


async def test_one_failing_action_does_not_stop_the_others_of_the_same_event(app: App):
    records = await asyncio.gather(
        app.run_action("Dev.Hang"),
        app.run_action("Dev.Boom"),
        app.run_action("Dev.Ok", {"value": 3}),
    )
    assert [r.ok for r in records] == [False, False, True]
    assert app.modules["Dev"].seen == [3]


async def test_actions_in_flight_each_time_out_at_their_own_limit(app: App):
    ended: list[str] = []
    for limit in (0.4, 0.1, 0.2):  # a later-started, shorter limit must not wait for the longer
        app.start_action("Dev.Hang", timeout=limit, then=lambda r: ended.append(r.error))
    app.start_action("Dev.Ok", then=lambda r: ended.append(f"ok {r.result}"))
    await async_wait_for(lambda: len(ended) == 4, what="four answers")
    assert ended == [
        "ok 2",
        "Dev.Hang timed out after 0.1 s",
        "Dev.Hang timed out after 0.2 s",
        "Dev.Hang timed out after 0.4 s",
    ]


async def test_an_action_that_answers_after_its_time_limit_is_reported_once(app: App):
    answers = []
    app.start_action("Dev.Late", then=answers.append)
    device = app.modules["Dev"]
    await async_wait_for(lambda: getattr(device, "answered_late", False), what="the late answer")
    await asyncio.sleep(0)  # the action's task ends in this round
    assert [r.error for r in answers] == ["Dev.Late timed out after 0.1 s"]
    assert [r.action for r in app.calls] == ["Dev.Late"]


async def test_stopping_answers_the_actions_still_running_and_ends_them(write_show):
    app = App(load_show(write_show(SHOW, {"device.py": DEVICE})))
    await app.start()
    answers = []
    app.start_action("Dev.Hang", timeout=60, then=answers.append)
    app.start_action("Dev.Stubborn", timeout=60, then=answers.append)  # swallows cancellation
    waiting = app.run_action("Dev.Hang", timeout=60)
    await asyncio.sleep(0)  # one loop round: each action has started and is waiting
    await asyncio.wait_for(app.stop(), 10)
    assert sorted(r.error for r in answers) == [
        "Dev.Hang was cancelled: the show is stopping",
        "Dev.Stubborn was cancelled: the show is stopping",
    ]
    assert waiting.done() and waiting.result().error.endswith("the show is stopping")
    left = [t for t in asyncio.all_tasks() if t.get_name().startswith("Dev.")]
    assert not [t for t in left if not t.done()], "no action task outlives the show"


async def test_a_caller_whose_answer_fails_does_not_turn_the_action_into_a_failure(
    app: App, caplog
):
    def broken_answer(record) -> None:
        raise RuntimeError("a bug in the caller")

    with caplog.at_level(logging.ERROR, logger="pxcontrol"):
        app.start_action("Dev.Ok", {"value": 4}, then=broken_answer)
        await async_wait_for(lambda: "Dev.Ok" in app.last_calls, what="the call")
        await async_wait_for(lambda: "answering Dev.Ok failed" in caplog.text, what="the log line")
    assert app.last_calls["Dev.Ok"].ok and app.last_calls["Dev.Ok"].result == 8
    assert not app.events.of_kind("action.failed")


async def test_after_a_module_restarts_its_actions_run_on_the_new_one(app: App, write_show):
    before = app.modules["Dev"]
    assert (await app.run_action("Dev.Ok", {"value": 1})).ok
    changed = SHOW.replace(
        'type = "device"\n\n[modules.Broken]', 'type = "device"\nlabel = "B"\n\n[modules.Broken]'
    )
    assert changed != SHOW
    changes = await app.apply(load_show(write_show(changed, {"device.py": DEVICE})))
    assert "Dev" in changes.restarted
    assert (await app.run_action("Dev.Ok", {"value": 5})).ok
    assert app.modules["Dev"] is not before
    assert app.modules["Dev"].seen == [5] and before.seen == [1]


@pytest.mark.parametrize(
    ("ref", "args", "message"),
    [
        (
            "Dev.Ok",
            {"value": "many"},
            "wrong arguments for Dev.Ok: value: Input should be a valid integer",
        ),
        ("Dev.Ok", {"colour": 1}, "wrong arguments for Dev.Ok: colour: no such parameter"),
        ("Dev.Nope", {}, "Dev.Nope: Dev has no action 'Nope' (Ok, Boom, Hang, Stubborn, Late)"),
        ("Lights.Go", {}, "Lights.Go: no module 'Lights' is running"),
        (
            "not an action",
            {},
            "'not an action' is not an action: write it as ModuleName.ActionName",
        ),
    ],
)
async def test_wrong_calls_are_answered_not_raised(app: App, ref, args, message):
    record = await app.run_action(ref, args, source="osc")
    assert not record.ok
    assert message in record.error
    assert app.events.of_kind("action.failed")[-1].fields["source"] == "osc"


async def test_stop_is_not_called_for_a_module_whose_start_never_succeeded(write_show, caplog):
    app = App(load_show(write_show(SHOW, {"device.py": DEVICE})))
    await app.start()
    with caplog.at_level(logging.ERROR, logger="pxcontrol"):
        await app.stop()
    assert "did not stop cleanly" not in caplog.text


async def test_a_module_that_fails_to_start_is_reported_and_the_rest_run(app: App):
    broken = app.modules["Broken"]
    assert broken.status is ModuleStatus.UNKNOWN_ERROR
    assert "no route to device" in broken.status_message
    statuses = [e.fields for e in app.events.of_kind("module.status")]
    assert any(s["module"] == "Broken" and s["status"] == "unknown_error" for s in statuses)
    assert app.modules["Dev"].status is ModuleStatus.OK


async def test_every_event_reaches_the_observe_hook_and_a_broken_observer_is_contained(app: App):
    dropin = next(p for name, p in app.pm.list_name_plugin() if name.endswith("device.py"))
    record = await app.run_action("Log.Entry", {"message": "house lights"})
    assert record.ok and record.result == "house lights"
    assert "log.entry" in dropin.events
    assert app.events.of_kind("log.entry")[-1].fields["message"] == "house lights"
    assert (await app.run_action("Dev.Ok")).ok


FLAKY = """
from pxcontrol import Module, action, hookimpl

class Flaky(Module):
    starts = 0

    async def start(self):
        type(self).starts += 1
        if type(self).starts < 3:
            raise ConnectionRefusedError("device still booting")
        await super().start()

    @action
    async def go(self) -> str:
        return "went"

@hookimpl
def register_module_types(register):
    register(Flaky)
"""


async def test_a_module_whose_start_fails_is_retried_and_refuses_actions_meanwhile(write_show):
    app = App(load_show(write_show('[modules.Dev]\ntype = "flaky"\n', {"flaky.py": FLAKY})))
    await app.start()
    try:
        record = await app.run_action("Dev.Go")
        assert record.error == (
            "Dev.Go: module Dev is not running (start failed: device still booting); "
            "its start is retried until the device answers"
        )
        await async_wait_for(lambda: app.modules["Dev"].status is ModuleStatus.OK, what="retry")
        assert type(app.modules["Dev"]).starts == 3
        assert (await app.run_action("Dev.Go")).result == "went"
    finally:
        await app.stop()


async def test_a_device_that_stays_away_is_one_status_not_a_flood_of_events(write_show):
    from pxcontrol.module import Backoff, Module

    attempts = []

    class Away(Module):
        async def start(self):
            self.spawn(self.maintain_connection(self.session, Backoff(first=0.005, maximum=0.01)))

        async def session(self):
            attempts.append(1)
            raise ConnectionRefusedError("nobody home")

    app = App(load_show(write_show("")))
    events = []
    app.events.listen(lambda e: events.append(e) if e.kind == "module.status" else None)
    module = Away("Away", Module.Settings(), host=app)
    await module.start()
    try:
        await async_wait_for(lambda: len(attempts) >= 10, what="ten attempts")
    finally:
        await module.stop_tasks()
    assert [e.fields["status"] for e in events] == ["connecting", "connection_failure"]


async def test_a_connection_that_worked_and_was_lost_says_disconnected_then_connecting(
    write_show,
):
    from pxcontrol.module import Backoff, Module

    attempts = []

    class Projector(Module):
        async def start(self):
            self.spawn(self.maintain_connection(self.session, Backoff(first=0.005, maximum=0.01)))

        async def session(self):
            attempts.append(1)
            if len(attempts) == 1:
                self.set_status(ModuleStatus.OK)
                raise ConnectionError("connection closed by the projector")  # lost mid-read
            if len(attempts) < 4:
                raise ConnectionRefusedError("nobody home")
            self.set_status(ModuleStatus.OK)
            await asyncio.sleep(3600)

    app = App(load_show(write_show("")))
    statuses = []
    app.events.listen(
        lambda e: statuses.append(e.fields["status"]) if e.kind == "module.status" else None
    )
    module = Projector("Projector", Module.Settings(), host=app)
    await module.start()
    try:
        await async_wait_for(lambda: module.status is ModuleStatus.OK and len(attempts) == 4)
    finally:
        await module.stop_tasks()
    assert statuses == [
        "connecting",
        "ok",
        "disconnected",
        "connecting",
        "connection_failure",
        "ok",
    ]


async def test_background_work_that_raises_is_logged_and_shown_in_the_module_status(
    write_show, caplog
):
    from pxcontrol.module import Module

    class Poller(Module):
        async def start(self):
            self.set_status(ModuleStatus.OK)
            self.spawn(self.poll())

        async def poll(self):
            await asyncio.sleep(0)
            raise KeyError("tally")  # a module's own bug, in its own loop

    app = App(load_show(write_show("")))
    statuses = []
    app.events.listen(lambda e: statuses.append(e.fields) if e.kind == "module.status" else None)
    module = Poller("Poller", Module.Settings(), host=app)
    await module.start()
    try:
        await async_wait_for(lambda: module.status is ModuleStatus.UNKNOWN_ERROR)
    finally:
        await module.stop_tasks()
    assert statuses[-1]["message"] == (
        "background work stopped: KeyError: 'tally' (its traceback is in the director's log)"
    )
    assert "Traceback" in caplog.text and "KeyError: 'tally'" in caplog.text
