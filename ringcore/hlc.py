"""Hybrid logical clocks.

A timestamp is ``(physical, logical, node_id)``: wall-clock microseconds since
the Unix epoch, a counter that orders events within one microsecond, and the
node that stamped it. Timestamps compare lexicographically in that order, so
every event in a ringcore system has a total order consistent with causality.

Each :meth:`HlcClock.tick` is one atomic step under the clock's lock, so two
threads ticking at once always get distinct, ordered timestamps.
"""

from __future__ import annotations

import threading
import time
from typing import NamedTuple

import numpy as np

from .errors import ClockSkewError

__all__ = ["HlcTimestamp", "HlcClock", "DEFAULT_MAX_DRIFT_US"]

#: The default bound on how far a received timestamp may run ahead of wall time.
DEFAULT_MAX_DRIFT_US = 60_000_000


class HlcTimestamp(NamedTuple):
    """A hybrid logical clock timestamp; ordered by (physical, logical, node_id)."""

    physical: int
    """Microseconds since the Unix epoch."""
    logical: int
    """Counter distinguishing events within one physical microsecond."""
    node_id: int = 0
    """The clock (kernel or host) that produced the timestamp."""

    def __str__(self) -> str:
        return f"{self.physical}.{self.logical}@{self.node_id}"


_new_ts = tuple.__new__


def _wall_us() -> int:
    return time.time_ns() // 1000


class HlcClock:
    """A thread-safe hybrid logical clock for one node.

    :param node_id: the node stamped into every timestamp (a kernel's id, 0 for the host).
    :param max_drift_us: :meth:`update` rejects timestamps further ahead of wall time.
    :param wall_clock: a function returning wall time in microseconds (tests inject one).
    """

    def __init__(
        self,
        node_id: int = 0,
        *,
        max_drift_us: int = DEFAULT_MAX_DRIFT_US,
        wall_clock=_wall_us,
    ) -> None:
        if max_drift_us < 0:
            raise ValueError(f"max_drift_us must be >= 0, got {max_drift_us}")
        self.node_id = int(node_id)
        self.max_drift_us = int(max_drift_us)
        self._wall = wall_clock
        self._lock = threading.Lock()
        self._physical = 0
        self._logical = 0

    def now(self) -> HlcTimestamp:
        """Return the last timestamp issued (or observed), without advancing the clock."""
        with self._lock:
            return HlcTimestamp(self._physical, self._logical, self.node_id)

    def tick(self) -> HlcTimestamp:
        """Advance the clock for a local or send event and return the new timestamp."""
        wall = time.time_ns() // 1000 if self._wall is _wall_us else self._wall()
        with self._lock:
            if wall > self._physical:
                self._physical = wall
                self._logical = 0
            else:
                self._logical += 1
            # tuple.__new__ skips NamedTuple's argument parsing: this is the hot path of every send.
            return _new_ts(HlcTimestamp, (self._physical, self._logical, self.node_id))

    def update(self, received: HlcTimestamp | tuple[int, int] | tuple[int, int, int]) -> HlcTimestamp:
        """Merge a timestamp received from another node and return the new local timestamp.

        :raises ClockSkewError: when ``received`` is more than ``max_drift_us`` ahead of
            wall time; the clock is left unchanged.
        """
        r_phys, r_log = int(received[0]), int(received[1])
        wall = self._wall()
        if r_phys - wall > self.max_drift_us:
            raise ClockSkewError(
                f"received HLC timestamp {r_phys}.{r_log} is {r_phys - wall} µs ahead of wall time "
                f"(max drift {self.max_drift_us} µs); the sender's clock is wrong, or raise max_drift_us"
            )
        with self._lock:
            l_phys, l_log = self._physical, self._logical
            phys = max(wall, l_phys, r_phys)
            if phys == l_phys and phys == r_phys:
                log = max(l_log, r_log) + 1
            elif phys == l_phys:
                log = l_log + 1
            elif phys == r_phys:
                log = r_log + 1
            else:
                log = 0
            self._physical, self._logical = phys, log
            return HlcTimestamp(phys, log, self.node_id)

    def stamp_many(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Reserve ``n`` consecutive timestamps in one atomic step.

        Returns ``(physical, logical)`` as two uint64 arrays of length ``n``; the
        timestamps are strictly increasing and all greater than any issued before.
        """
        if n < 0:
            raise ValueError(f"cannot stamp a negative number of timestamps ({n})")
        wall = self._wall()
        with self._lock:
            if n == 0:
                return np.empty(0, np.uint64), np.empty(0, np.uint64)
            if wall > self._physical:
                self._physical = wall
                first = 0
            else:
                first = self._logical + 1
            self._logical = first + n - 1
            phys = self._physical
        physical = np.full(n, phys, dtype=np.uint64)
        logical = np.arange(first, first + n, dtype=np.uint64)
        return physical, logical

    def observe(self, physical: int, logical: int) -> None:
        """Move the clock forward to at least ``(physical, logical)`` without drift checks.

        Used to restore a clock from a ControlBlock or a device; never moves it backwards.
        """
        with self._lock:
            if (physical, logical) > (self._physical, self._logical):
                self._physical, self._logical = int(physical), int(logical)
