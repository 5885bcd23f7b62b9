"""Small synchronisation primitives shared by queues, handles and host loops."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Doorbell", "deadline_after", "remaining", "poll_until"]


class Doorbell:
    """A wake-up signal that is never lost: ``ring()`` before ``wait()`` still wakes it.

    One ring wakes one waiter; rings while nobody waits collapse into one. Built
    on a bare lock used as a binary semaphore, which is the cheapest thread
    wake-up CPython offers (one futex, no allocation per wait).
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()  # held means "not rung"

    def ring(self) -> None:
        """Wake a waiter (now, or the next one to wait)."""
        if not self._lock.locked():  # already rung: skip the costly raise below
            return
        try:
            self._lock.release()
        except RuntimeError:  # already rung and not yet consumed
            pass

    def wait(self, timeout: float | None = None) -> bool:
        """Block until rung or ``timeout`` seconds pass; consume the ring. True if rung."""
        if timeout is None:
            return self._lock.acquire()
        if timeout <= 0:
            return self._lock.acquire(blocking=False)
        return self._lock.acquire(timeout=timeout)


def deadline_after(timeout: float | None) -> float | None:
    """The monotonic deadline ``timeout`` seconds from now (None: wait forever)."""
    if timeout is None:
        return None
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, got {timeout}")
    return time.monotonic() + timeout


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (never negative; None: forever)."""
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


def poll_until(ready: Callable[[], bool], deadline: float | None, *, max_sleep: float = 0.001) -> bool:
    """Poll ``ready()`` with exponential backoff (20 µs up to ``max_sleep``) until the deadline.

    For waits on memory that another device updates and cannot signal.
    """
    sleep = 20e-6
    while True:
        if ready():
            return True
        left = remaining(deadline)
        if left is not None and left <= 0:
            return ready()
        time.sleep(sleep if left is None else min(sleep, left))
        sleep = min(sleep * 2, max_sleep)
