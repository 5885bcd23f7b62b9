"""Latency histogram, percentiles, and alerts."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringcore.telemetry import (
    DROP_ALERT_RATIO,
    LATENCY_ALERT_US,
    KernelMetrics,
    LatencyHistogram,
    Telemetry,
)

US = 1000  # ns


def bucket_of(ns: int) -> tuple[float, float]:
    h = LatencyHistogram()
    h.record_ns(ns)
    ((low, high, count),) = h.buckets()
    assert count == 1
    return low, high


@pytest.mark.parametrize(
    "ns, low, high",
    [
        (0, 0.0, 1.0),
        (999, 0.0, 1.0),
        (1 * US, 1.0, 2.0),
        (1999, 1.0, 2.0),
        (2 * US, 2.0, 4.0),
        (3 * US + 999, 2.0, 4.0),
        (10 * US, 8.0, 16.0),
        (1023 * US, 512.0, 1024.0),
        (1024 * US, 1024.0, 2048.0),
        (500_000 * US, 2.0**18, 2.0**19),
        (2**20 * US - 1, 2.0**19, 2.0**20),  # just under ~1 s
    ],
)
def test_log2_buckets_from_one_microsecond(ns, low, high):
    assert bucket_of(ns) == (low, high)


@pytest.mark.parametrize("ns", [2**20 * US, 1_500_000 * US, 10**12])
def test_last_bucket_holds_everything_from_about_one_second(ns):
    low, high = bucket_of(ns)
    assert low == 2.0**20 and high == float("inf")
    assert 1e6 <= low <= 1.1e6  # "about 1 s", in µs


def test_negative_latencies_count_as_zero():
    h = LatencyHistogram()
    h.record_ns(-5)
    h.record_one_ns(-5)
    assert h.buckets() == [(0.0, 1.0, 2)]
    assert h.max_ns == 0 and h.total_ns == 0


def test_record_arrays_and_empty():
    h = LatencyHistogram()
    h.record_ns(np.array([], dtype=np.int64))
    assert h.count == 0 and h.buckets() == []
    h.record_ns(np.array([500, 1500, 1700, 5000, 3_000_000]))
    h.record_ns([2500])
    assert h.count == 6
    assert h.buckets() == [
        (0.0, 1.0, 1), (1.0, 2.0, 2), (2.0, 4.0, 1), (4.0, 8.0, 1), (2048.0, 4096.0, 1)
    ]
    assert h.total_ns == 500 + 1500 + 1700 + 5000 + 3_000_000 + 2500
    assert h.max_ns == 3_000_000
    assert h.mean_us() == pytest.approx(h.total_ns / 6 / 1000)


latencies = st.lists(st.integers(-1000, 5 * 10**9), max_size=50)


@settings(max_examples=200, deadline=None)
@given(latencies)
def test_record_one_ns_agrees_with_record_ns(values):
    bulk, one = LatencyHistogram(), LatencyHistogram()
    bulk.record_ns(np.array(values, dtype=np.int64))
    for v in values:
        one.record_one_ns(v)
    assert bulk.counts.tolist() == one.counts.tolist()
    assert (bulk.total_ns, bulk.max_ns) == (one.total_ns, one.max_ns)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 3 * 10**9), min_size=1, max_size=60))
def test_percentiles_are_monotonic_and_within_the_right_bucket(values):
    h = LatencyHistogram()
    h.record_ns(values)
    ps = [0, 1, 25, 50, 75, 90, 99, 99.9, 100]
    got = [h.percentile_us(p) for p in ps]
    assert all(a <= b for a, b in zip(got, got[1:]))
    assert got[-1] <= max(values) / 1000  # never beyond the largest latency seen
    # the p-th percentile lies in the bucket of the sample of that rank
    ordered = sorted(values)
    for p, v in zip(ps, got):
        k = max(1, int(np.ceil(p / 100 * len(values))))
        low, high = bucket_of(ordered[k - 1])
        assert low <= v <= high


def test_percentiles_of_a_mixture():
    h = LatencyHistogram()
    h.record_ns([1500] * 99 + [50_000 * US])
    assert 1.0 <= h.percentile_us(50) <= 2.0
    assert 1.0 <= h.percentile_us(99) <= 2.0
    assert 32768 <= h.percentile_us(99.5) <= 50_000
    assert h.percentile_us(100) == pytest.approx(50_000)


def test_percentile_of_empty_and_invalid_p():
    h = LatencyHistogram()
    assert h.percentile_us(50) == 0.0 and h.mean_us() == 0.0
    h.record_one_ns(5000)
    for bad in (-1, 100.5, 1000):
        with pytest.raises(ValueError, match="percentile"):
            h.percentile_us(bad)


def test_concurrent_recording_loses_nothing():
    h = LatencyHistogram()

    def work(i):
        for k in range(2000):
            if k % 2:
                h.record_one_ns(k * 10 + i)
            else:
                h.record_ns(np.array([k * 10 + i, 1]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert h.count == 4 * (1000 + 2000)


# -- alerts ----------------------------------------------------------------------------


def test_thresholds():
    assert DROP_ALERT_RATIO == 0.01
    assert LATENCY_ALERT_US == 10_000.0


def test_no_alerts_when_healthy_or_idle():
    assert Telemetry.alerts(0, 0, 0.0) == ()
    assert Telemetry.alerts(1000, 0, 9000.0) == ()
    assert Telemetry.alerts(990, 10, 10_000.0) == ()  # exactly 1% and exactly 10 ms: not beyond


def test_drop_alert_above_one_percent():
    (alert,) = Telemetry.alerts(989, 11, 5.0)
    assert "dropped 11 of 1000" in alert and "1.1%" in alert
    (alert,) = Telemetry.alerts(0, 1, 0.0)
    assert "dropped 1 of 1" in alert


def test_latency_alert_above_ten_ms():
    (alert,) = Telemetry.alerts(100, 0, 10_001.0)
    assert "p99" in alert and "10001" in alert


def test_both_alerts():
    assert len(Telemetry.alerts(10, 10, 1e6)) == 2


def test_telemetry_starts_empty():
    t = Telemetry()
    assert t.latency.count == 0 and t.k2k_failed == 0


def test_kernel_metrics_as_dict():
    m = KernelMetrics(
        kernel="k", state="active", processed=3, errors=0, last_error=0, dropped=0,
        input_depth=0, input_max_depth=2, output_depth=1, output_max_depth=1, enqueued=3, late_replies=0,
        latency_count=3, latency_mean_us=1.0, latency_p50_us=1.0, latency_p99_us=2.0,
        latency_max_us=2.0, uptime_s=1.0, throughput=3.0, alerts=("x",),
    )
    d = m.as_dict()
    assert d["alerts"] == ["x"] and d["processed"] == 3 and d["kernel"] == "k"
