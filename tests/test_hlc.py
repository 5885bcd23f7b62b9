"""Hybrid logical clocks: tick, update rules, drift, ordering, threads, bulk stamping."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from ringcore.errors import ClockSkewError
from ringcore.hlc import DEFAULT_MAX_DRIFT_US, HlcClock, HlcTimestamp


class FakeWall:
    """A wall clock the test sets, in microseconds."""

    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def clock_at(now: int = 1_000_000, **kw) -> tuple[HlcClock, FakeWall]:
    wall = FakeWall(now)
    return HlcClock(wall_clock=wall, **kw), wall


# -- timestamps ----------------------------------------------------------------------


def test_timestamp_fields_and_str():
    ts = HlcTimestamp(5, 2, 7)
    assert (ts.physical, ts.logical, ts.node_id) == (5, 2, 7)
    assert HlcTimestamp(5, 2).node_id == 0
    assert str(ts) == "5.2@7"


def test_timestamp_total_order():
    stamps = [
        HlcTimestamp(2, 0, 0),
        HlcTimestamp(1, 5, 9),
        HlcTimestamp(1, 5, 3),
        HlcTimestamp(1, 6, 0),
        HlcTimestamp(0, 99, 99),
    ]
    assert sorted(stamps) == [
        HlcTimestamp(0, 99, 99),
        HlcTimestamp(1, 5, 3),
        HlcTimestamp(1, 5, 9),
        HlcTimestamp(1, 6, 0),
        HlcTimestamp(2, 0, 0),
    ]
    assert HlcTimestamp(1, 0) < HlcTimestamp(1, 1) < HlcTimestamp(2, 0)
    assert HlcTimestamp(3, 1, 1) == HlcTimestamp(3, 1, 1)
    assert HlcTimestamp(3, 1, 1) != HlcTimestamp(3, 1, 2)  # node id breaks ties: a total order


# -- tick ----------------------------------------------------------------------------


def test_tick_with_real_clock_is_strictly_increasing():
    clock = HlcClock(node_id=4)
    stamps = [clock.tick() for _ in range(5000)]
    assert all(a < b for a, b in zip(stamps, stamps[1:]))
    assert all(s.node_id == 4 for s in stamps)
    assert stamps[-1] == clock.now()


def test_tick_uses_wall_time_when_it_advanced():
    clock, wall = clock_at(1000)
    assert clock.tick() == HlcTimestamp(1000, 0, 0)
    wall.now = 1005
    assert clock.tick() == HlcTimestamp(1005, 0, 0)


def test_tick_counts_logically_within_one_microsecond():
    clock, wall = clock_at(1000, node_id=2)
    assert [clock.tick() for _ in range(4)] == [HlcTimestamp(1000, i, 2) for i in range(4)]
    wall.now = 1001
    assert clock.tick() == HlcTimestamp(1001, 0, 2)


def test_tick_never_goes_back_when_wall_time_does():
    clock, wall = clock_at(1000)
    clock.tick()
    clock.tick()
    wall.now = 400
    assert clock.tick() == HlcTimestamp(1000, 2, 0)
    wall.now = 1000
    assert clock.tick() == HlcTimestamp(1000, 3, 0)


def test_now_does_not_advance():
    clock, _ = clock_at(1000)
    assert clock.now() == HlcTimestamp(0, 0, 0)
    t = clock.tick()
    assert clock.now() == t and clock.now() == t


def test_negative_max_drift_is_refused():
    with pytest.raises(ValueError, match="max_drift_us"):
        HlcClock(max_drift_us=-1)
    assert DEFAULT_MAX_DRIFT_US == 60_000_000


# -- update --------------------------------------------------------------------------


def prime(clock: HlcClock, wall: FakeWall, physical: int, ticks: int) -> HlcTimestamp:
    """Put the clock at (physical, ticks - 1) and the wall back at its original time."""
    saved = wall.now
    wall.now = physical
    for _ in range(ticks):
        ts = clock.tick()
    wall.now = saved
    return ts


def test_update_received_ahead_of_everything():
    clock, wall = clock_at(1000)
    prime(clock, wall, 1000, 3)  # local (1000, 2)
    assert clock.update(HlcTimestamp(1500, 7, 9)) == HlcTimestamp(1500, 8, 0)


def test_update_local_ahead_of_everything():
    clock, wall = clock_at(1000)
    prime(clock, wall, 2000, 4)  # local (2000, 3); wall back at 1000
    assert clock.update(HlcTimestamp(1500, 50)) == HlcTimestamp(2000, 4, 0)


def test_update_wall_ahead_of_everything():
    clock, wall = clock_at(1000)
    prime(clock, wall, 900, 5)  # local (900, 4)
    assert clock.update(HlcTimestamp(950, 30)) == HlcTimestamp(1000, 0, 0)


@pytest.mark.parametrize(
    "local_ticks, received_logical, expected", [(3, 10, 11), (8, 2, 8), (5, 4, 5)]
)
def test_update_local_and_received_equal_take_max_logical_plus_one(
    local_ticks, received_logical, expected
):
    clock, wall = clock_at(1000)
    prime(clock, wall, 3000, local_ticks)  # local (3000, local_ticks - 1)
    assert clock.update(HlcTimestamp(3000, received_logical)) == HlcTimestamp(3000, expected, 0)


def test_update_all_three_equal():
    clock, wall = clock_at(1000)
    prime(clock, wall, 1000, 3)  # local (1000, 2), wall 1000
    assert clock.update(HlcTimestamp(1000, 6)) == HlcTimestamp(1000, 7, 0)
    assert clock.update(HlcTimestamp(1000, 1)) == HlcTimestamp(1000, 8, 0)


def test_update_wall_equals_local_ahead_of_received():
    clock, wall = clock_at(1000)
    prime(clock, wall, 1000, 2)  # local (1000, 1)
    assert clock.update(HlcTimestamp(999, 40)) == HlcTimestamp(1000, 2, 0)


def test_update_wall_equals_received_ahead_of_local():
    clock, wall = clock_at(1000)
    prime(clock, wall, 900, 2)  # local (900, 1)
    assert clock.update(HlcTimestamp(1000, 40)) == HlcTimestamp(1000, 41, 0)


def test_update_result_follows_both_inputs_and_later_ticks_follow_it():
    clock, wall = clock_at(1000)
    before = clock.tick()
    received = HlcTimestamp(1200, 3, 5)
    merged = clock.update(received)
    assert merged > before and merged[:2] > received[:2]
    assert clock.tick() > merged
    wall.now = 1300
    assert clock.tick() == HlcTimestamp(1300, 0, 0)


def test_update_accepts_plain_tuples():
    clock, _ = clock_at(1000)
    assert clock.update((1100, 4)) == HlcTimestamp(1100, 5, 0)
    assert clock.update((1100, 9, 3)) == HlcTimestamp(1100, 10, 0)


def test_update_beyond_max_drift_raises_and_leaves_the_clock_unchanged():
    clock, wall = clock_at(1_000_000, max_drift_us=500)
    prime(clock, wall, 1_000_000, 3)
    before = clock.now()
    with pytest.raises(ClockSkewError) as info:
        clock.update(HlcTimestamp(1_000_501, 0))
    assert isinstance(info.value, ValueError)
    assert "501" in str(info.value) and "500" in str(info.value)
    assert clock.now() == before
    assert clock.tick() == HlcTimestamp(1_000_000, 3, 0)
    # exactly the allowed drift is fine
    assert clock.update(HlcTimestamp(1_000_500, 0)) == HlcTimestamp(1_000_500, 1, 0)


def test_default_max_drift_is_sixty_seconds():
    clock, wall = clock_at(10**12)
    with pytest.raises(ClockSkewError):
        clock.update((10**12 + 60_000_001, 0))
    assert clock.now() == HlcTimestamp(0, 0, 0)
    assert clock.update((10**12 + 60_000_000, 0)).physical == 10**12 + 60_000_000


# -- observe ----------------------------------------------------------------------------


def test_observe_moves_forward_only():
    clock, _ = clock_at(1000)
    clock.observe(5000, 3)  # no drift check: restoring saved device state
    assert clock.now() == HlcTimestamp(5000, 3, 0)
    clock.observe(4000, 99)
    clock.observe(5000, 2)
    assert clock.now() == HlcTimestamp(5000, 3, 0)
    assert clock.tick() == HlcTimestamp(5000, 4, 0)


# -- stamp_many ---------------------------------------------------------------------------


def test_stamp_many_is_strictly_increasing_and_after_everything_before():
    clock, wall = clock_at(1000)
    prime(clock, wall, 1000, 4)  # (1000, 3)
    before = clock.now()
    phys, log = clock.stamp_many(5)
    assert phys.dtype == np.uint64 and log.dtype == np.uint64
    assert phys.tolist() == [1000] * 5 and log.tolist() == [4, 5, 6, 7, 8]
    stamps = [HlcTimestamp(int(p), int(lg)) for p, lg in zip(phys, log)]
    assert stamps[0] > before
    assert clock.tick() == HlcTimestamp(1000, 9, 0)  # after all of them


def test_stamp_many_starts_at_zero_when_wall_time_advanced():
    clock, wall = clock_at(1000)
    clock.tick()
    wall.now = 2000
    phys, log = clock.stamp_many(3)
    assert phys.tolist() == [2000] * 3 and log.tolist() == [0, 1, 2]
    assert clock.now() == HlcTimestamp(2000, 2, 0)


def test_stamp_many_with_real_clock_interleaved_with_ticks():
    clock = HlcClock()
    seen = [clock.tick()]
    for n in (1, 10, 1000):
        phys, log = clock.stamp_many(n)
        seen += [HlcTimestamp(int(p), int(lg)) for p, lg in zip(phys, log)]
        seen.append(clock.tick())
    assert len(seen) == 1 + 1011 + 3
    assert all(a < b for a, b in zip(seen, seen[1:]))


def test_stamp_many_zero_and_negative():
    clock, _ = clock_at(1000)
    t = clock.tick()
    phys, log = clock.stamp_many(0)
    assert len(phys) == len(log) == 0
    assert clock.now() == t
    with pytest.raises(ValueError, match="negative"):
        clock.stamp_many(-1)


# -- threads ------------------------------------------------------------------------------


def run_threads(works: list) -> list:
    """Run each callable in its own thread, all released at once; return their results."""
    results: list = [None] * len(works)
    barrier = threading.Barrier(len(works))

    def run(i):
        barrier.wait()
        results[i] = works[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(works))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    return results


@pytest.mark.parametrize("frozen", [False, True], ids=["real-clock", "frozen-clock"])
def test_concurrent_ticks_are_distinct_and_ordered_per_thread(frozen):
    clock = HlcClock(wall_clock=FakeWall(1000)) if frozen else HlcClock()
    per_thread = run_threads([lambda: [clock.tick() for _ in range(5000)]] * 4)
    for stamps in per_thread:
        assert all(a < b for a, b in zip(stamps, stamps[1:]))
    everything = [s for stamps in per_thread for s in stamps]
    assert len(set(everything)) == len(everything) == 20_000
    if frozen:  # one atomic step per tick: the counter has no gaps and no repeats
        assert sorted(s.logical for s in everything) == list(range(20_000))


def test_concurrent_ticks_and_bulk_stamps_never_overlap():
    clock = HlcClock(wall_clock=FakeWall(1000))

    def bulk():
        out = []
        for _ in range(200):
            phys, log = clock.stamp_many(7)
            out += list(zip(phys.tolist(), log.tolist()))
        return out

    def single():
        return [tuple(clock.tick()[:2]) for _ in range(1400)]

    results = run_threads([bulk, single, bulk, single])
    everything = [s for r in results for s in r]
    assert len(everything) == 4 * 1400
    assert sorted(everything) == [(1000, i) for i in range(4 * 1400)]
