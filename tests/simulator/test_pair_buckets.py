"""The simulator's per-pair rate buckets stay bounded however many users are written to."""

from __future__ import annotations

from alfred.simulator import state as state_module


def test_pair_buckets_stay_bounded_and_keep_the_busy_pair(monkeypatch):
    monkeypatch.setattr(state_module, "MAX_PAIR_BUCKETS", 50)
    sim = state_module.SimState.__new__(state_module.SimState)
    sim.pairs = {}
    sim.config = type("C", (), {"pair_interval_s": 6.0, "pair_burst": 1})()

    assert sim.take_pair("pn", "busy", 0.0)
    for n in range(500):
        sim.take_pair("pn", f"user{n}", 1.0)
        # The busy pair writes again now and then: it stays known, its budget spent.
        if n % 10 == 0:
            assert not sim.take_pair("pn", "busy", 1.0)

    assert len(sim.pairs) <= 50
    assert ("pn", "busy") in sim.pairs
