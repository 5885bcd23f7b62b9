"""``ringcore cuda bench``: the CUDA backend's figures, each next to a baseline measured in the same run.

- **Persistent round trip** (target p50 <= 10 µs): ``call`` of one vector-add message on a resident
  kernel, p50 and p99; baseline: one CuPy kernel launch plus a stream synchronisation per message, the
  same addition done by a plain ``RawKernel`` on one message already in device memory.
- **Batched throughput** (target >= 50 M msg/s): ``rc_batch`` of vector add (16 float32 per message)
  over :data:`BIG_BATCH` messages in mapped memory, replies decoded; baseline: the same addition as one
  CuPy elementwise operation over ``(n, 16)`` device arrays.
- The figures every device backend prints (``ringcore.bench.device_figures``: the kernel loop and the
  one-message dispatch next to the cpu backend) and the persistent-mode figures next to the same kernel
  event-driven (``ringcore.bench.resident_figures``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ringcore.bench import Figure, device_figures, resident_figures, vector_add_requests

__all__ = ["bench_cuda", "BIG_BATCH"]

#: Messages per batch of the throughput figure.
BIG_BATCH = 1 << 20

_BASELINE_ADD = r"""
extern "C" __global__ void add16(const float *a, const float *b, float *c) {
    unsigned int i = threadIdx.x;
    if (i < 16u) c[i] = a[i] + b[i];
}
"""


def _launch_baseline_us(calls: int) -> list[float]:
    """One CuPy RawKernel launch plus a synchronisation per message (16-float add), in µs each."""
    import cupy

    req, _ = vector_add_requests(1)
    a, b = cupy.asarray(req["a"][0]), cupy.asarray(req["b"][0])
    c = cupy.empty_like(a)
    k = cupy.RawKernel(_BASELINE_ADD, "add16")
    stream = cupy.cuda.Stream(non_blocking=True)
    k((1,), (16,), (a, b, c), stream=stream)
    stream.synchronize()
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        k((1,), (16,), (a, b, c), stream=stream)
        stream.synchronize()
        out.append((time.perf_counter() - t0) * 1e6)
    return out


def _batch_rate(device_index: int | None, n: int, reps: int) -> tuple[float, bool]:
    """``rc_batch`` of vector add over ``n`` messages through the executor (msg/s, median; replies checked)."""
    from ringcore.demo.vector_add import vector_add

    from .backend import CudaRuntime

    req, expected = vector_add_requests(n)
    with CudaRuntime(device_index=device_index) as rt:
        h = rt.launch(vector_add, mode="event_driven", input_capacity=n, output_capacity=1024, max_batch=n)
        ex = h.loop.executor
        batch = ex.batch_buffer(n)
        batch["header"] = 0
        batch["header"]["type_id"] = h.in_spec.type_id
        batch["payload"] = req
        rates, ok = [], True
        for _ in range(reps):
            with ex.lock, ex.gpu:
                t0 = time.perf_counter()
                res = ex._run_batch(batch)
                rates.append(n / (time.perf_counter() - t0))
            ok = ok and bool(res.has_reply.all()) and np.array_equal(res.replies["c"], expected)
    return float(np.median(rates)), ok


def _elementwise_rate(n: int, reps: int) -> float:
    """The same additions as one CuPy elementwise operation over device arrays (msg/s, median)."""
    import cupy

    req, _ = vector_add_requests(n)
    a, b = cupy.asarray(req["a"]), cupy.asarray(req["b"])
    c = a + b
    cupy.cuda.Stream.null.synchronize()
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        cupy.add(a, b, out=c)
        cupy.cuda.Stream.null.synchronize()
        rates.append(n / (time.perf_counter() - t0))
    return float(np.median(rates))


def bench_cuda(quick: bool = False, device_index: int | None = None, **_: Any) -> list[Figure]:
    """The CUDA backend's figures (see the module docstring)."""
    from .backend import CudaRuntime

    with CudaRuntime(device_index=device_index) as rt:
        dev = rt.device
        slots = rt.persistent_slots
    where = f"{dev.name} ({dev.kind})" if dev is not None else "cuda"
    make = lambda: CudaRuntime(device_index=device_index)  # noqa: E731
    out = device_figures("cuda", make, where, quick=quick, loop_target=None, dispatch_target=None,
                         what="one launch")
    calls = 300 if quick else 3000
    base = _launch_baseline_us(calls)
    if slots:
        res = resident_figures("cuda", make, where, quick=quick, p50_target=10.0)
        for f in res[:2]:  # the round trips: next to one CuPy launch + synchronize per message
            q = 50 if "p50" in f.name else 99
            f.details["event_driven_us"] = f.baseline
            f.baseline = float(np.percentile(base, q))
            f.baseline_name = "one CuPy RawKernel launch + stream synchronize per message"
        out += res
    n = BIG_BATCH >> 4 if quick else BIG_BATCH
    reps = 3 if quick else 9
    rate, ok = _batch_rate(device_index, n, reps)
    out.append(Figure("cuda", f"batched throughput, vector add (16 f32/msg, {n:,} per launch) on {where}", rate,
                      "msg/s", _elementwise_rate(n, reps), "one CuPy elementwise add over (n, 16) device arrays",
                      target=50e6, note="one rc_batch launch over messages in mapped pinned memory, status words "
                                        "and replies decoded" + ("" if ok else " -- WRONG REPLIES"),
                      details={"batch": n, "replies_correct": ok}))
    return out
