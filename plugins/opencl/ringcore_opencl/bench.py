"""``ringcore opencl bench``: the OpenCL backend's figures, each next to a baseline measured in the same run.

- Vector add (16 float32 per message) on batches of 65,536 through the kernel's loop, and the
  per-dispatch overhead of a message that arrives alone, next to the CPU backend
  (``ringcore.bench.device_figures``, the figures every device backend prints).
- Where the device keeps kernels resident: ``call`` round trips and ``call_many`` through a persistent
  kernel, next to the same kernel event-driven.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from ringcore.bench import DEVICE_BATCH, Figure, device_figures, vector_add_requests

__all__ = ["bench_opencl"]


def _host_api(mode: str, calls: int, device_index: int | None) -> tuple[float, float]:
    """``call`` round trip p50 (µs) and ``call_many`` of a batch (msg/s) on a kernel launched in ``mode``."""
    from ringcore.demo.vector_add import Operands, vector_add

    from .backend import OpenclRuntime

    req, expected = vector_add_requests(DEVICE_BATCH)
    one = Operands(a=req["a"][0], b=req["b"][0])
    with OpenclRuntime(device_index=device_index) as rt:
        k = rt.launch(vector_add, mode=mode, input_capacity=DEVICE_BATCH, output_capacity=DEVICE_BATCH)
        if k.mode.value != mode:
            raise RuntimeError(f"vector_add ran {k.mode.value}, not {mode}")
        k.call(one)
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            k.call(one)
            times.append(time.perf_counter() - t0)
        k.call_many(req, timeout=60)
        t0 = time.perf_counter()
        got = k.call_many(req, timeout=60)
        rate = DEVICE_BATCH / (time.perf_counter() - t0)
        if not np.array_equal(got["c"], expected):
            raise RuntimeError(f"vector_add ({mode}) returned wrong sums")
    return statistics.median(times) * 1e6, rate


def bench_opencl(quick: bool = False, device_index: int | None = None, **_: Any) -> list[Figure]:
    """The OpenCL backend's figures (see the module docstring)."""
    from .backend import OpenclRuntime

    with OpenclRuntime(device_index=device_index) as rt:
        dev = rt.device
        slots = rt.persistent_slots
    where = f"{dev.name} ({dev.kind})" if dev is not None else "opencl"
    out = device_figures("opencl", lambda: OpenclRuntime(device_index=device_index), where, quick=quick,
                         loop_target=5e6, dispatch_target=100.0, what="one NDRange")
    if slots:
        n = 300 if quick else 3000
        p50, rate_p = _host_api("persistent", n, device_index)
        p50_e, rate_e = _host_api("event_driven", n, device_index)
        out += [
            Figure("opencl", f"persistent call round trip p50 (vector add, one message) on {where}", p50, "us", p50_e,
                   "the same kernel event-driven", higher_is_better=False,
                   note="kernel.call on a resident kernel: push, the device loop polls and answers, the host "
                        "publishes the reply"),
            Figure("opencl", f"persistent call_many, {DEVICE_BATCH:,} messages (vector add) on {where}", rate_p,
                   "msg/s", rate_e, "the same kernel event-driven",
                   note="host API end to end through a resident kernel; replies checked against numpy"),
        ]
    return out
