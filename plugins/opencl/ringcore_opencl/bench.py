"""``ringcore opencl bench``: the OpenCL backend's figures, each next to the CPU backend measured in the same run.

- Vector add (16 float32 per message) on batches of 65,536: the kernel's loop as ``ringcore bench --only
  lang`` measures the CPU backend (a batch drained from the input queue and processed: upload, one
  NDRange, read-back, replies published to the output queue), replies checked against numpy.
- Per-dispatch overhead: one message through the executor's ``run_one`` (the host loop's path for a
  message that arrives alone: write it where the device reads it, one launch, wait, read the result), median.
The baseline is the CPU backend (ringcore-cpu, numpy target) when it is installed; otherwise none.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from typing import Any

import numpy as np

from ringcore.bench import Figure
from ringcore.message import MessageHeader

__all__ = ["bench_opencl", "BATCH"]

BATCH = 65_536


def _requests(count: int) -> tuple[np.ndarray, np.ndarray]:
    from ringcore.demo.vector_add import Operands

    rng = np.random.default_rng(3)
    req = Operands.array(count)
    req["a"] = rng.standard_normal((count, 16), dtype=np.float32)
    req["b"] = rng.standard_normal((count, 16), dtype=np.float32)
    return req, req["a"] + req["b"]


def _runtime(backend: str, device_index: int | None) -> Any:
    if backend == "cpu":
        from ringcore_cpu import CpuRuntime

        return CpuRuntime()
    from .backend import OpenclRuntime

    return OpenclRuntime(device_index=device_index)


def _kernel_rate(backend: str, repeats: int, device_index: int | None) -> tuple[float, bool]:
    from ringcore.demo.vector_add import vector_add

    req, expected = _requests(BATCH)
    times, ok = [], True
    with _runtime(backend, device_index) as rt:
        k = rt.launch(vector_add, input_capacity=BATCH, output_capacity=BATCH, max_batch=BATCH, auto_activate=False,
                      mode="event_driven")
        slots = k._slots(req, first_corr=1, flags=0, priority=1)
        for _ in range(repeats + 1):
            k.input_queue.push_many(slots)
            t0 = time.perf_counter()
            k.loop.process(k.loop._pop(k.input_queue, BATCH))  # as the kernel's thread drains it
            times.append(time.perf_counter() - t0)
            got = k.output_queue.pop_many()
            ok = ok and len(got) == BATCH and bool(np.array_equal(got["payload"]["c"], expected))
        k.terminate()
    return BATCH / statistics.median(times[1:]), ok


def _dispatch_us(backend: str, repeats: int, device_index: int | None) -> float:
    from ringcore.demo.vector_add import vector_add

    req, _ = _requests(1)
    with _runtime(backend, device_index) as rt:
        k = rt.launch(vector_add, auto_activate=False, mode="event_driven")
        slots = k._slots(req, first_corr=1, flags=0, priority=1)
        ex = k.loop.executor
        # The host loop hands a message that arrives alone to run_one (a batch of one).
        header, payload = MessageHeader._make(slots["header"][0].tolist()), slots["payload"][0]
        ex.run_one(header, payload)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            ex.run_one(header, payload)
            times.append(time.perf_counter() - t0)
        k.terminate()
    return statistics.median(times) * 1e6


def _host_api(mode: str, calls: int, device_index: int | None) -> tuple[float, float]:
    """``call`` round trip p50 (µs) and ``call_many`` of a batch (msg/s) on a kernel launched in ``mode``."""
    from ringcore.demo.vector_add import Operands, vector_add

    from .backend import OpenclRuntime

    req, expected = _requests(BATCH)
    one = Operands(a=req["a"][0], b=req["b"][0])
    with OpenclRuntime(device_index=device_index) as rt:
        k = rt.launch(vector_add, mode=mode, input_capacity=BATCH, output_capacity=BATCH)
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
        rate = BATCH / (time.perf_counter() - t0)
        if not np.array_equal(got["c"], expected):
            raise RuntimeError(f"vector_add ({mode}) returned wrong sums")
    return statistics.median(times) * 1e6, rate


def bench_opencl(quick: bool = False, device_index: int | None = None, **_: Any) -> list[Figure]:
    """The OpenCL backend's figures (see the module docstring)."""
    from .backend import OpenclRuntime

    with OpenclRuntime(device_index=device_index) as rt:
        dev = rt.device
    where = f"{dev.name} ({dev.kind})" if dev is not None else "opencl"
    has_cpu = importlib.util.find_spec("ringcore_cpu") is not None
    reps = 3 if quick else 9
    rate, ok = _kernel_rate("opencl", reps, device_index)
    base, base_ok = _kernel_rate("cpu", reps, None) if has_cpu else (None, True)
    n = 300 if quick else 3000
    one = _dispatch_us("opencl", n, device_index)
    one_base = _dispatch_us("cpu", n, None) if has_cpu else None
    out = [
        Figure("opencl", f"vector add kernel loop (16 f32/msg, batches of {BATCH:,}) on {where}", rate, "msg/s",
               base, "cpu backend, numpy target, same loop" if has_cpu else "", target=5e6,
               note="drain a batch, upload, one NDRange, read back, publish replies; replies checked against numpy"
                    + ("" if ok and base_ok else " -- WRONG REPLIES"),
               details={"batch": BATCH, "replies_correct": ok and base_ok}),
        Figure("opencl", f"per-dispatch overhead, one-message batch, on {where}", one, "us", one_base,
               "cpu backend executor, one message" if has_cpu else "", target=100.0, higher_is_better=False,
               note="executor.run_one, the host loop's path for a message that arrives alone: write it, one launch, "
                    "wait, read the status and reply (median)",
               details={"repeats": n}),
    ]
    if rt.persistent_slots:
        p50, rate_p = _host_api("persistent", n, device_index)
        p50_e, rate_e = _host_api("event_driven", n, device_index)
        out += [
            Figure("opencl", f"persistent call round trip p50 (vector add, one message) on {where}", p50, "us", p50_e,
                   "the same kernel event-driven", higher_is_better=False,
                   note="kernel.call on a resident kernel: push, the device loop polls and answers, the host "
                        "publishes the reply"),
            Figure("opencl", f"persistent call_many, {BATCH:,} messages (vector add) on {where}", rate_p, "msg/s",
                   rate_e, "the same kernel event-driven",
                   note="host API end to end through a resident kernel; replies checked against numpy"),
        ]
    return out
