"""The failure detector with a fake clock: exact sequences, no sleeping."""

from __future__ import annotations

import pytest

from pxcontrol.detection import Change, ClientState, Detector, Timing

DEFAULT = Timing(
    heartbeat_interval=0.1, offline_after=0.5, online_after=3.0, mass_failure_guard=0.5
)


class Clock:
    """Drives a detector the way the director does: heartbeats in, check() every tick."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.now = 1000.0
        self.changes: list[Change] = []

    def run(self, seconds: float, beating: set[str], tick: float = 0.005) -> None:
        """Advance time; clients in `beating` send a heartbeat every interval."""
        interval = self.detector.timing.heartbeat_interval
        end = self.now + seconds
        next_beat = {name: self.now for name in beating}
        while self.now < end - 1e-9:
            self.now = round(self.now + tick, 6)
            for name in beating:
                if self.now >= next_beat[name] - 1e-9:
                    self.changes += self.detector.heard(name, self.now)
                    next_beat[name] += interval
            self.changes += self.detector.check(self.now)

    def kinds(self, client: str | None = None) -> list[str]:
        return [c.kind for c in self.changes if client is None or c.client == client]


def started(names=("A", "B"), timing=DEFAULT) -> Clock:
    clock = Clock(Detector.for_clients(timing, names))
    clock.run(3.2, set(names))
    return clock


def test_a_client_is_dry_until_heard_and_online_after_a_steady_run():
    clock = Clock(Detector.for_clients(DEFAULT, ["A"]))
    assert clock.detector.clients["A"].state is ClientState.DRY
    clock.run(2.9, {"A"})
    assert clock.kinds() == [] and clock.detector.clients["A"].state is ClientState.DRY
    clock.run(0.2, {"A"})
    assert clock.kinds() == ["online"]


def test_silence_makes_a_client_late_then_offline_exactly_once():
    clock = started()
    clock.changes.clear()
    silent_from = clock.detector.clients["A"].last_heard
    clock.run(2.0, {"B"})
    assert clock.kinds("A") == ["late", "offline"]
    late, offline = [c for c in clock.changes if c.client == "A"]
    assert late.at - silent_from == pytest.approx(DEFAULT.late_after, abs=0.006)
    assert offline.at - silent_from == pytest.approx(DEFAULT.offline_after, abs=0.006)
    assert offline.eligible and offline.why_not == ""
    assert clock.kinds("B") == []


def test_a_pause_shorter_than_offline_after_is_only_late():
    clock = started()
    clock.changes.clear()
    clock.run(0.45, {"B"})  # A stalls (SIGSTOP) for less than offline_after
    clock.run(1.0, {"A", "B"})
    assert clock.kinds("A") == ["late", "on_time"]


def test_a_returning_client_must_be_steady_for_online_after():
    clock = started()
    clock.run(1.0, {"B"})
    clock.changes.clear()
    clock.run(2.9, {"A", "B"})
    assert clock.kinds("A") == []
    assert clock.detector.clients["A"].state is ClientState.OFFLINE
    clock.run(0.2, {"A", "B"})
    assert clock.kinds("A") == ["online"]


def test_a_flapping_client_goes_offline_once_and_does_not_oscillate():
    clock = started()
    clock.changes.clear()
    for _ in range(10):  # on 1 s, off 1 s: faster than online_after
        clock.run(1.0, {"B"})
        clock.run(1.0, {"A", "B"})
    assert clock.kinds("A").count("offline") == 1
    assert "online" not in clock.kinds("A")


def test_a_client_never_seen_online_is_not_eligible_for_automatic_takeover():
    clock = Clock(Detector.for_clients(DEFAULT, ["A", "B"]))
    clock.run(3.2, {"B"})
    clock.run(1.0, {"A", "B"})  # A reports for a second, never long enough to be online
    clock.changes.clear()
    clock.run(1.0, {"B"})
    # Heard, then silent: offline (not "never heard"), and under the startup guard.
    assert clock.detector.clients["A"].state is ClientState.OFFLINE
    (offline,) = [c for c in clock.changes if c.client == "A"]
    assert offline.kind == "offline" and not offline.eligible
    assert offline.why_not.startswith("startup guard")


def test_startup_guard_after_the_client_came_back_once():
    clock = started(("A", "B", "C"))
    assert all(w.seen_online for w in clock.detector.clients.values())
    clock.changes.clear()
    clock.run(1.0, {"B", "C"})
    (offline,) = [c for c in clock.changes if c.kind == "offline"]
    assert offline.eligible


def test_mass_failure_no_automatic_takeover_and_one_alarm():
    clock = started(("A", "B", "C", "D"))
    clock.changes.clear()
    clock.run(1.0, {"D"})  # three of four fall silent at once: our own network?
    kinds = clock.kinds()
    assert kinds.count("mass_failure") == 1
    alarm = next(c for c in clock.changes if c.kind == "mass_failure")
    assert sorted(alarm.clients) == ["A", "B", "C"]
    offline = [c for c in clock.changes if c.kind == "offline"]
    assert sorted(c.client for c in offline) == ["A", "B", "C"]
    assert not any(c.eligible for c in offline)
    assert all("mass failure guard" in c.why_not for c in offline)


def test_clients_that_die_one_after_another_are_not_a_mass_failure():
    clock = started(("A", "B", "C", "D"))
    clock.changes.clear()
    clock.run(1.0, {"B", "C", "D"})
    clock.run(1.0, {"C", "D"})
    offline = [c for c in clock.changes if c.kind == "offline"]
    assert [(c.client, c.eligible) for c in offline] == [("A", True), ("B", True)]
    assert "mass_failure" not in clock.kinds()


def test_guard_share_is_more_than_not_equal():
    clock = started(("A", "B", "C", "D"))
    clock.changes.clear()
    clock.run(1.0, {"C", "D"})  # exactly half: not more than 0.5
    assert "mass_failure" not in clock.kinds()
    assert all(c.eligible for c in clock.changes if c.kind == "offline")


def test_a_guarded_client_that_returns_is_judged_afresh_next_time():
    clock = started(("A", "B", "C"))
    clock.run(1.0, {"C"})
    assert "mass_failure" in clock.kinds()
    clock.run(3.2, {"A", "B", "C"})
    assert not clock.detector.clients["A"].guarded
    clock.changes.clear()
    clock.run(1.0, {"B", "C"})
    (offline,) = [c for c in clock.changes if c.kind == "offline"]
    assert offline.client == "A" and offline.eligible


def test_fast_profile_detects_within_offline_after_and_a_tick():
    fast = Timing(
        heartbeat_interval=0.02, offline_after=0.1, online_after=1.0, mass_failure_guard=0.5
    )
    clock = started(("A", "B"), fast)
    clock.changes.clear()
    silent_from = clock.detector.clients["A"].last_heard
    clock.run(0.5, {"B"}, tick=clock.detector.check_every)
    (offline,) = [c for c in clock.changes if c.kind == "offline"]
    assert offline.at - silent_from <= fast.offline_after + clock.detector.check_every + 1e-6
    assert fast.late_after == pytest.approx(0.07)


# --- the director's own stalls and clock jumps (issue: never disarmed silently) ---


def test_every_client_silent_in_one_check_is_judged_not_a_crash():
    """The fault review's reproduction: every online client silent at the first check
    after a pause once divided by zero and ended detection for good."""
    d = Detector.for_clients(Timing(0.1, 0.5, 3.0, 0.5), ["Playout1", "Backup1"])
    t = 0.0
    while t < 3.2:
        d.heard("Playout1", t)
        d.heard("Backup1", t + 0.05)
        t += 0.1
    changes = d.check(t + 0.70)  # no check ran before: nothing to call a stall
    assert [c.kind for c in changes] == ["mass_failure", "offline", "offline"]
    assert not any(c.eligible for c in changes if c.kind == "offline")


def stalled(clock: Clock, seconds: float) -> None:
    """The director is stopped for `seconds`: no heartbeat read, no check."""
    clock.now = round(clock.now + seconds, 6)


def test_a_stall_of_the_director_declares_nobody_offline_and_is_reported():
    clock = started(("A", "B", "C"))
    clock.changes.clear()
    stalled(clock, 1.5)
    clock.run(1.0, {"A", "B", "C"})
    assert clock.kinds() == ["stalled"]
    (stall,) = clock.changes
    assert stall.seconds == pytest.approx(1.5, abs=0.01) and stall.client == ""


def test_after_a_stall_a_kill_is_detected_on_time():
    clock = started(("A", "B", "C"))
    stalled(clock, 1.5)
    clock.run(1.0, {"A", "B", "C"})
    clock.changes.clear()
    silent_from = clock.detector.clients["A"].last_heard
    clock.run(1.0, {"B", "C"})
    (offline,) = [c for c in clock.changes if c.kind == "offline"]
    assert offline.client == "A" and offline.eligible
    assert offline.at - silent_from == pytest.approx(DEFAULT.offline_after, abs=0.006)


def test_a_client_killed_during_a_stall_is_judged_by_silence_after_it():
    clock = started(("A", "B", "C"))
    stalled(clock, 1.5)  # A died during the pause: nothing arrives from it after
    resumed = clock.now
    clock.run(1.0, {"B", "C"})
    (offline,) = [c for c in clock.changes if c.kind == "offline"]
    assert offline.client == "A" and offline.eligible
    assert offline.at - resumed == pytest.approx(DEFAULT.offline_after, abs=0.006)


@pytest.mark.parametrize("jump", [3600.0, -3600.0])
def test_a_clock_jump_keeps_every_client_watched(jump):
    clock = started(("A", "B", "C"))
    clock.changes.clear()
    clock.now += jump  # both ways: a client's silence must never be negative for an hour
    clock.run(1.0, {"A", "B", "C"})
    assert clock.kinds() == ["stalled"]
    clock.changes.clear()
    clock.run(1.0, {"B", "C"})
    (offline,) = [c for c in clock.changes if c.kind == "offline"]
    assert offline.client == "A" and offline.eligible


def test_a_pause_shorter_than_stall_after_is_no_stall():
    clock = started(("A", "B"))
    clock.changes.clear()
    stalled(clock, DEFAULT.stall_after - 0.01)
    clock.run(1.0, {"A", "B"})
    assert "stalled" not in clock.kinds()


def test_heartbeats_stamped_before_a_stall_do_not_move_a_client_back():
    clock = started(("A", "B"))
    stalled(clock, 1.0)
    clock.detector.check(clock.now)  # the stall is seen: silence counts from now
    late_stamp = clock.now - 0.5  # read after the stall, arrived during it
    clock.detector.heard("A", late_stamp)
    assert clock.detector.clients["A"].last_heard == clock.now


def test_mass_failure_counts_by_arrival_whatever_order_they_are_judged_in():
    """Clients whose last heartbeats arrived together dropped together, even when one of
    them is judged offline before the others (different phases, different checks)."""
    d = Detector.for_clients(DEFAULT, ["A", "B", "C", "D"])
    phase = {"A": 0.0, "B": 0.03, "C": 0.06, "D": 0.09}
    changes: list[Change] = []
    t, died = 0.0, 3.5
    while t < 5.0:
        t = round(t + 0.005, 6)
        for name, offset in phase.items():
            beat = round(t - offset, 6)
            if beat >= 0 and abs(beat / 0.1 - round(beat / 0.1)) < 1e-6:
                if name == "D" or t < died:
                    changes += d.heard(name, t)
        changes += d.check(t)
    offline = [c for c in changes if c.kind == "offline"]
    assert [c.client for c in offline] == ["A", "B", "C"]  # judged one after another
    assert offline[0].at < offline[1].at < offline[2].at
    (alarm,) = [c for c in changes if c.kind == "mass_failure"]
    assert sorted(alarm.clients) == ["A", "B", "C"]
    assert alarm.seconds == pytest.approx(0.06, abs=1e-6)
    assert not any(c.eligible for c in offline)


# --- health: a client is FAILED while its heartbeats say a check failed ---


class Failed:
    """A failed check as the wire carries it (pxcontrol.heartbeat.FailedCheck)."""

    def __init__(self, check: str = "process mpv", message: str = "exited") -> None:
        self.check, self.message = check, message


def report(clock: Clock, name: str, failed: Failed | None) -> None:
    """A heartbeat of `name` at the clock's time, saying `failed` of its checks."""
    clock.changes += clock.detector.heard(name, clock.now)
    clock.changes += clock.detector.health(name, failed, clock.now)


def test_a_failed_check_makes_an_online_client_failed_and_its_takeover_is_judged_after_the_window():
    clock = started(("A", "B", "C"))
    clock.changes.clear()
    report(clock, "A", Failed("process mpv", "exited with signal 9"))
    assert clock.detector.clients["A"].state is ClientState.FAILED
    failed = clock.changes[-1]
    assert (failed.kind, failed.check, failed.message) == (
        "failed",
        "process mpv",
        "exited with signal 9",
    )
    assert clock.detector.due_in(clock.now) == pytest.approx(DEFAULT.failed_together)
    clock.run(0.02, {"A", "B", "C"})
    assert "failed_decision" not in clock.kinds()
    clock.run(0.01, {"A", "B", "C"})
    decision = next(c for c in clock.changes if c.kind == "failed_decision")
    assert decision.client == "A" and decision.eligible
    assert clock.detector.due_in(clock.now) is None
    assert clock.kinds().count("failed_decision") == 1


def test_unchanged_health_is_no_change():
    clock = started(("A",))
    clock.changes.clear()
    for _ in range(3):
        report(clock, "A", None)
    report(clock, "A", Failed())
    report(clock, "A", Failed("process mpv", "still gone"))
    assert clock.kinds() == ["failed"]
    assert clock.detector.clients["A"].failed.message == "still gone"


def test_a_failed_client_that_recovers_is_online_again_and_no_takeover_is_judged():
    clock = started(("A", "B", "C"))
    clock.changes.clear()
    report(clock, "A", Failed())
    clock.now += 0.01
    report(clock, "A", None)
    clock.run(0.5, {"A", "B", "C"})
    assert clock.kinds("A") == ["failed", "recovered"]
    assert clock.detector.clients["A"].state is ClientState.ONLINE


def test_a_failed_client_that_goes_silent_goes_offline_on_the_same_timing():
    clock = started(("A", "B", "C"))
    report(clock, "A", Failed())
    clock.run(0.1, {"A", "B", "C"})
    clock.changes.clear()
    silent_from = clock.detector.clients["A"].last_heard
    clock.run(1.0, {"B", "C"})
    assert clock.kinds("A") == ["late", "offline"]
    late, offline = [c for c in clock.changes if c.client == "A"]
    assert late.at - silent_from == pytest.approx(DEFAULT.late_after, abs=0.006)
    assert offline.at - silent_from == pytest.approx(DEFAULT.offline_after, abs=0.006)
    assert offline.eligible
    assert clock.detector.clients["A"].state is ClientState.OFFLINE  # offline wins


def test_offline_wins_over_a_failure_not_yet_judged():
    slow = Timing(0.1, 0.5, 3.0, 0.5, failed_together=1.0)  # the window outlasts offline_after
    clock = started(("A", "B", "C"), slow)
    clock.changes.clear()
    report(clock, "A", Failed())
    # Its last heartbeat said failed, silence follows: the silence is judged (offline_after),
    # the failure's own takeover never is.
    clock.run(2.0, {"B", "C"})
    assert clock.kinds("A") == ["failed", "late", "offline"]
    assert clock.detector.undecided == {} and clock.detector.failing == {}


def test_three_of_four_failed_together_is_a_mass_failure_no_takeover():
    clock = started(("A", "B", "C", "D", "Backup"))
    clock.changes.clear()
    report(clock, "A", Failed())
    clock.now += 0.008
    report(clock, "B", Failed())
    clock.now += 0.012
    report(clock, "C", Failed())
    clock.run(0.5, {"A", "B", "C", "D", "Backup"})
    assert clock.kinds().count("mass_failure") == 1
    alarm = next(c for c in clock.changes if c.kind == "mass_failure")
    assert sorted(alarm.clients) == ["A", "B", "C"] and alarm.by_checks
    assert alarm.seconds == pytest.approx(0.02)
    decisions = [c for c in clock.changes if c.kind == "failed_decision"]
    assert sorted(c.client for c in decisions) == ["A", "B", "C"]
    assert not any(c.eligible for c in decisions)
    assert all("mass failure guard" in c.why_not for c in decisions)


def test_failures_one_after_another_are_each_taken_over():
    clock = started(("A", "B", "C", "D", "Backup"))
    clock.changes.clear()
    report(clock, "A", Failed())
    clock.run(0.2, {"A", "B", "C", "D", "Backup"})
    report(clock, "B", Failed())
    clock.run(0.2, {"A", "B", "C", "D", "Backup"})
    decisions = [(c.client, c.eligible) for c in clock.changes if c.kind == "failed_decision"]
    assert decisions == [("A", True), ("B", True)]
    assert "mass_failure" not in clock.kinds()


def test_clients_failed_and_silent_at_the_same_moment_count_together():
    clock = started(("A", "B", "C", "D"))
    clock.changes.clear()
    report(clock, "A", Failed())  # judged alone 25 ms later: its takeover goes
    clock.run(1.0, {"A", "D"})  # B and C fell silent with it
    decision = next(c for c in clock.changes if c.kind == "failed_decision")
    assert decision.eligible
    masses = [c for c in clock.changes if c.kind == "mass_failure"]
    assert len(masses) == 1 and sorted(masses[0].clients) == ["A", "B", "C"]
    offline = [c for c in clock.changes if c.kind == "offline"]
    assert sorted(c.client for c in offline) == ["B", "C"]
    assert not any(c.eligible for c in offline)


def test_a_client_that_comes_online_already_failed_is_under_the_startup_guard():
    clock = Clock(Detector.for_clients(DEFAULT, ["A", "B", "C"]))
    clock.changes += clock.detector.health("A", Failed(), clock.now)  # before it was heard
    clock.run(3.2, {"A", "B", "C"})
    assert clock.kinds("A") == ["online", "failed", "failed_decision"]
    assert clock.detector.clients["A"].state is ClientState.FAILED
    decision = clock.changes[[c.kind for c in clock.changes].index("failed_decision")]
    assert not decision.eligible and "startup guard" in decision.why_not


def test_a_failed_client_keeps_its_late_timing():
    clock = started(("A", "B"))
    report(clock, "A", Failed())
    clock.changes.clear()
    clock.run(0.4, {"B"})  # silent for less than offline_after: late, not offline
    assert clock.kinds("A") == ["failed_decision", "late"]
    report(clock, "A", Failed())
    assert clock.kinds("A") == ["failed_decision", "late", "on_time"]
    assert clock.detector.clients["A"].state is ClientState.FAILED


def test_a_client_online_before_a_director_restart_and_heard_in_time_is_online_at_once():
    """After a restart the director remembers who was online: one heard again within
    offline_after is online at once, not dry for online_after (a backup that is "dry"
    cannot take over)."""
    clock = Clock(Detector.for_clients(DEFAULT, ["A", "B"]))
    for name in ("A", "B"):  # what LiveSystems.remember_seen does at start
        watch = clock.detector.clients[name]
        watch.seen_online = watch.remembered = True
        watch.last_heard = clock.now
    clock.run(0.2, {"A"})
    assert clock.kinds("A") == ["online"]
    assert clock.detector.clients["A"].state is ClientState.ONLINE
    clock.run(1.0, {"A"})  # B never comes back: offline, and a takeover may follow
    (offline,) = [c for c in clock.changes if c.client == "B"]
    assert offline.kind == "offline" and offline.eligible
    clock.changes.clear()
    clock.run(0.2, {"A", "B"})  # back after it was offline: the usual online_after again
    assert clock.kinds("B") == []
