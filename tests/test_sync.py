"""Doorbell, deadlines and polling."""

from __future__ import annotations

import threading
import time

import pytest

from ringcore._sync import Doorbell, deadline_after, poll_until, remaining


def test_unrung_doorbell_times_out():
    bell = Doorbell()
    assert bell.wait(0) is False
    assert bell.wait(0.001) is False
    assert bell.wait(-1) is False  # a negative timeout is a non-blocking check


def test_ring_before_wait_is_not_lost():
    bell = Doorbell()
    bell.ring()
    assert bell.wait(0) is True
    assert bell.wait(0) is False  # the ring was consumed


def test_ring_before_blocking_wait_is_not_lost():
    bell = Doorbell()
    bell.ring()
    assert bell.wait(None) is True  # returns at once instead of blocking forever


def test_rings_collapse_into_one():
    bell = Doorbell()
    for _ in range(5):
        bell.ring()
    assert bell.wait(0) is True
    assert bell.wait(0) is False


def test_ring_from_another_thread_wakes_a_waiter():
    bell, done = Doorbell(), Doorbell()
    results = []

    def waiter():
        results.append(bell.wait(60))
        done.ring()

    t = threading.Thread(target=waiter)
    t.start()
    bell.ring()
    assert done.wait(60)
    t.join(60)
    assert results == [True]


def test_ping_pong_between_threads_loses_no_ring():
    ping, pong = Doorbell(), Doorbell()
    rounds = 2000
    count = []

    def responder():
        for _ in range(rounds):
            assert ping.wait(60)
            count.append(1)
            pong.ring()

    t = threading.Thread(target=responder)
    t.start()
    for _ in range(rounds):
        ping.ring()
        assert pong.wait(60)
    t.join(60)
    assert len(count) == rounds


def test_many_concurrent_rings_leave_one_pending():
    bell = Doorbell()
    threads = [threading.Thread(target=lambda: [bell.ring() for _ in range(500)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert bell.wait(0) is True
    assert bell.wait(0) is False


def test_deadlines():
    assert deadline_after(None) is None
    assert remaining(None) is None
    d = deadline_after(0)
    assert d <= time.monotonic()
    assert remaining(d) == 0.0
    assert remaining(time.monotonic() - 5) == 0.0  # never negative
    assert 0 < remaining(deadline_after(100)) <= 100
    with pytest.raises(ValueError, match="timeout"):
        deadline_after(-0.5)


def test_poll_until_ready_at_once():
    calls = []
    assert poll_until(lambda: calls.append(1) or True, deadline_after(0)) is True
    assert len(calls) == 1


def test_poll_until_becomes_ready():
    calls = []

    def ready():
        calls.append(1)
        return len(calls) >= 5

    assert poll_until(ready, None) is True
    assert len(calls) == 5


def test_poll_until_times_out():
    assert poll_until(lambda: False, deadline_after(0)) is False
    assert poll_until(lambda: False, deadline_after(0.002)) is False


def test_poll_until_checks_once_more_at_the_deadline():
    calls = []

    def ready():
        calls.append(1)
        return len(calls) >= 2

    assert poll_until(ready, deadline_after(0)) is True  # the final check after the deadline counts
    assert len(calls) == 2


def test_poll_until_sees_another_threads_update():
    flag = []
    t = threading.Thread(target=lambda: flag.append(1))
    assert poll_until(lambda: not t.is_alive(), deadline_after(0)) is True  # not started: not alive
    t.start()
    assert poll_until(lambda: bool(flag), deadline_after(60)) is True
    t.join(60)
