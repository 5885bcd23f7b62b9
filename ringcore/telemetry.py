"""Per-kernel telemetry: counters, a latency histogram, and alerts."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import numpy as np

__all__ = ["LatencyHistogram", "KernelMetrics", "Telemetry", "DROP_ALERT_RATIO", "LATENCY_ALERT_US"]

#: Raise an alert when more than this fraction of messages were dropped.
DROP_ALERT_RATIO = 0.01
#: Raise an alert when the p99 latency exceeds this many microseconds.
LATENCY_ALERT_US = 10_000.0

_BUCKETS = 22  # bucket 0: < 1 µs; bucket b: [2**(b-1), 2**b) µs; the last: >= ~1 s


class LatencyHistogram:
    """A log2 histogram of latencies from 1 µs to about 1 s (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts = np.zeros(_BUCKETS, dtype=np.int64)
        self.total_ns = 0
        self.max_ns = 0

    def record_ns(self, ns: np.ndarray | int) -> None:
        """Add one latency or an array of latencies, in nanoseconds."""
        arr = np.asarray(ns, dtype=np.int64).reshape(-1)
        if arr.size == 0:
            return
        arr = np.maximum(arr, 0)
        us = arr // 1000
        # bucket = bit_length(us): 0 for < 1 µs, b for [2**(b-1), 2**b) µs
        buckets = np.minimum(np.where(us > 0, np.floor(np.log2(np.maximum(us, 1))).astype(np.int64) + 1, 0),
                             _BUCKETS - 1)
        binc = np.bincount(buckets, minlength=_BUCKETS)
        with self._lock:
            self.counts += binc
            self.total_ns += int(arr.sum())
            self.max_ns = max(self.max_ns, int(arr.max()))

    def record_one_ns(self, ns: int) -> None:
        """Add one latency in nanoseconds (cheaper than :meth:`record_ns` for single values)."""
        ns = max(int(ns), 0)
        b = min((ns // 1000).bit_length(), _BUCKETS - 1)
        with self._lock:
            self.counts[b] += 1
            self.total_ns += ns
            if ns > self.max_ns:
                self.max_ns = ns

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def percentile_us(self, p: float) -> float:
        """The ``p``-th percentile (0-100), in µs, interpolated within its bucket."""
        if not 0 <= p <= 100:
            raise ValueError(f"percentile must be between 0 and 100, got {p}")
        with self._lock:
            counts = self.counts.copy()
            max_us = self.max_ns / 1000
        n = int(counts.sum())
        if n == 0:
            return 0.0
        rank = p / 100 * n
        cum = np.cumsum(counts)
        b = int(np.searchsorted(cum, max(rank, 1e-9)))
        lo = 0.0 if b == 0 else float(2 ** (b - 1))
        hi = 1.0 if b == 0 else float(2**b)
        before = 0 if b == 0 else int(cum[b - 1])
        frac = (rank - before) / max(int(counts[b]), 1)
        return min(lo + (hi - lo) * frac, max_us) if max_us else lo

    def mean_us(self) -> float:
        n = self.count
        return self.total_ns / n / 1000 if n else 0.0

    def buckets(self) -> list[tuple[float, float, int]]:
        """``(low_us, high_us, count)`` for every non-empty bucket."""
        out = []
        with self._lock:
            counts = self.counts.copy()
        for b, c in enumerate(counts):
            if c:
                out.append((0.0 if b == 0 else float(2 ** (b - 1)), float(2**b) if b < _BUCKETS - 1 else float("inf"), int(c)))
        return out


@dataclasses.dataclass(frozen=True)
class KernelMetrics:
    """A snapshot of one kernel's metrics."""

    kernel: str
    state: str
    processed: int
    errors: int
    last_error: int
    dropped: int
    """Messages refused under a drop policy plus kernel-to-kernel sends not delivered."""
    input_depth: int
    input_max_depth: int
    output_depth: int
    output_max_depth: int
    enqueued: int
    late_replies: int
    """Replies that arrived after their call was answered or timed out (dropped)."""
    latency_count: int
    latency_mean_us: float
    latency_p50_us: float
    latency_p99_us: float
    latency_max_us: float
    uptime_s: float
    throughput: float
    """Messages processed per second since launch."""
    alerts: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["alerts"] = list(self.alerts)
        return d


class Telemetry:
    """Live counters for one kernel, kept by the host side."""

    def __init__(self) -> None:
        self.latency = LatencyHistogram()
        self.k2k_failed = 0
        self.started = time.monotonic()

    @staticmethod
    def alerts(processed: int, dropped: int, p99_us: float) -> tuple[str, ...]:
        out = []
        seen = processed + dropped
        if seen and dropped / seen > DROP_ALERT_RATIO:
            out.append(f"dropped {dropped} of {seen} messages ({dropped / seen:.1%} > {DROP_ALERT_RATIO:.0%})")
        if p99_us > LATENCY_ALERT_US:
            out.append(f"p99 latency {p99_us:.0f} µs > {LATENCY_ALERT_US:.0f} µs")
        return tuple(out)
