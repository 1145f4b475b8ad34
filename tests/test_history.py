"""The director's ten minutes of figures: a fixed ring per client, oldest first."""

from __future__ import annotations

from pxcontrol.history import SAMPLES, PerformanceHistory


def test_the_ring_keeps_the_newest_samples_in_order_and_unknown_as_none():
    history = PerformanceHistory()
    for i in range(SAMPLES + 5):  # past the ring's length: the oldest five are gone
        history.sample(float(i), [("Playout1", (float(i % 100), 50.0, None, 60.0))])
    found = history.of("Playout1")
    assert found is not None and found["last"] == float(SAMPLES + 4)
    assert len(found["cpu"]) == SAMPLES
    assert found["cpu"][0] == 5.0 and found["cpu"][-1] == float((SAMPLES + 4) % 100)
    assert found["gpu"] == [None] * SAMPLES and found["fps"][-1] == 60.0


def test_a_client_removed_by_a_reload_is_forgotten():
    history = PerformanceHistory()
    history.sample(0.0, [("Playout1", (1.0, 2.0, 3.0, 4.0)), ("Old", (1.0, 2.0, 3.0, 4.0))])
    history.keep_only({"Playout1"})
    assert history.of("Old") is None and history.of("Playout1") is not None
