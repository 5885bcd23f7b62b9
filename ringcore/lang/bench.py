"""``ringcore bench --only lang``: the kernel compiler's figures, each with a baseline from the same run.

- Frontend + code generation per kernel per target (nothing cached), over the
  conformance kernels, the demo kernels and the corpus, vs CPython's own
  ``compile()`` of the same source to bytecode.
- A cached recompile (``ringcore.compile`` of a kernel already compiled) vs
  ``ast.parse`` of its source.
- The CPU backend running the vector-add kernel (16 f32 per message) through
  the numpy target on batches of 65,536 messages: the kernel's loop (drain a
  batch from the input queue, run it, publish the replies into the output
  queue), vs the same loop in reference mode (the Python handler once per
  message). Replies are checked against numpy.
- The same kernel end to end, ``call_many`` from the host (request slots,
  both queues, reply matching), vs ``call_many`` in reference mode: reported,
  with no target (the host API's copies, not the kernel, bound it).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import statistics
import time
from typing import Any

import numpy as np

__all__ = ["bench_lang", "bench_kernels"]

BATCH = 65_536


def bench_kernels() -> list[Any]:
    """The kernels the codegen figure compiles: conformance kernels, demo kernels and the corpus."""
    from ..demo import hello_kernel, ping_pong, vector_add
    from ..kernel import KernelDef
    from ..testing import kernels as K

    kernels = [v for v in vars(K).values() if isinstance(v, KernelDef)]
    kernels += [hello_kernel.hello, ping_pong.ping, ping_pong.pong, vector_add.vector_add]
    try:
        corpus = importlib.import_module("ringcore.testing.corpus")
        kernels += [e.kernel for e in corpus.CORPUS]
    except ImportError:
        pass
    return kernels


def _codegen(kernels: list[Any], targets: tuple[str, ...]) -> tuple[list[float], dict[str, list[float]], int]:
    """Seconds of frontend + each target per kernel, uncached; also how many (kernel, target) pairs failed."""
    from .. import lang
    from ..errors import KernelCompileError

    front: list[float] = []
    per_target: dict[str, list[float]] = {t: [] for t in targets}
    refused = 0
    for k in kernels:
        k.__dict__.pop("_ringcore_ir", None)
        lang.clear_cache()
        t0 = time.perf_counter()
        kir = lang.lower(k)
        front.append(time.perf_counter() - t0)
        for t in targets:
            mod = importlib.import_module(lang.TARGET_MODULES[t])
            t1 = time.perf_counter()
            try:
                mod.emit(kir)
            except KernelCompileError:  # e.g. a 64-bit kernel on WGSL: refused, not timed
                refused += 1
                continue
            per_target[t].append(time.perf_counter() - t1)
    return front, per_target, refused


def _requests(count: int) -> tuple[Any, np.ndarray]:
    from ..demo.vector_add import Operands

    rng = np.random.default_rng(3)
    req = Operands.array(count)
    req["a"] = rng.standard_normal((count, 16), dtype=np.float32)
    req["b"] = rng.standard_normal((count, 16), dtype=np.float32)
    return req, req["a"] + req["b"]


def _kernel_rate(execution: str, batch: int, repeats: int) -> tuple[float, bool]:
    """Messages/s of the CPU backend's kernel loop on vector add: a batch drained from the input queue,
    executed, and its replies published into the output queue (HostLoop.process), median of ``repeats``."""
    from ringcore_cpu import CpuRuntime

    from ..demo.vector_add import vector_add

    req, expected = _requests(batch)
    times = []
    ok = True
    with CpuRuntime(execution=execution) as rt:
        k = rt.launch(vector_add, input_capacity=batch, output_capacity=batch, max_batch=batch, auto_activate=False)
        slots = k._slots(req, first_corr=1, flags=0, priority=1)
        for _ in range(repeats + 1):
            k.input_queue.push_many(slots)
            t0 = time.perf_counter()
            k.loop.process(k.loop._pop(k.input_queue, batch))  # as the kernel thread drains it
            times.append(time.perf_counter() - t0)
            got = k.output_queue.pop_many()
            ok = ok and len(got) == batch and bool(np.array_equal(got["payload"]["c"], expected))
        k.terminate()
    return batch / statistics.median(times[1:]), ok


def _call_many_rate(execution: str, count: int, repeats: int) -> tuple[float, bool]:
    """Messages/s of ``call_many`` on vector add, host to kernel to host through the queues."""
    from ringcore_cpu import CpuRuntime

    from ..demo.vector_add import vector_add

    req, expected = _requests(count)
    rates = []
    ok = True
    with CpuRuntime(execution=execution) as rt:
        cap = min(BATCH, 1 << (count - 1).bit_length())
        k = rt.launch(vector_add, input_capacity=cap, output_capacity=cap, max_batch=BATCH)
        k.call_many(req[:16])  # warm up: the kernel's thread, the compiled code
        for _ in range(repeats):
            t0 = time.perf_counter()
            replies = k.call_many(req, timeout=600)
            rates.append(count / (time.perf_counter() - t0))
            ok = ok and bool(np.array_equal(replies["c"], expected))
        k.terminate()
    return statistics.median(rates), ok


def bench_lang(quick: bool = False, **_: Any) -> list[Any]:
    """The compiler's figures (see the module docstring)."""
    from .. import lang
    from ..bench import Figure

    kernels = bench_kernels()
    targets = lang.TARGETS
    available = tuple(t for t in targets if importlib.util.find_spec(lang.TARGET_MODULES[t]) is not None)
    # The compiler's modules load once per process, on the first compile: timed apart.
    t0 = time.perf_counter()
    importlib.import_module("ringcore.lang.frontend")
    for t in available:
        importlib.import_module(lang.TARGET_MODULES[t])
    import_ms = (time.perf_counter() - t0) * 1e3
    front, per_target, refused = _codegen(kernels, available)
    # Baseline: CPython compiling the same source to bytecode.
    base = []
    for k in kernels:
        src = lang.lower(k).source
        t0 = time.perf_counter()
        compile(src, "<kernel>", "exec")
        base.append(time.perf_counter() - t0)
    base_ms = statistics.median(base) * 1e3
    figures = []
    front_ms = statistics.median(front) * 1e3
    worst = []
    for t in available:
        if not per_target[t]:
            continue
        per_kernel = [f + g for f, g in zip(front, per_target[t])]
        ms = statistics.median(per_kernel) * 1e3
        worst.append(max(per_kernel) * 1e3)
        figures.append(Figure(
            "lang", f"frontend + {t} codegen per kernel (median)", ms, "ms", base_ms,
            "CPython compile() of the same source", target=20.0, higher_is_better=False,
            details={"kernels": len(per_target[t]), "max_ms": max(per_kernel) * 1e3,
                     "frontend_median_ms": front_ms, "compiler_import_once_ms": import_ms}))
    # Cached recompiles.
    k = kernels[0]
    for t in available:
        try:
            lang.compile(k, t)
        except Exception:  # noqa: BLE001
            continue
    n = 2000 if quick else 20000
    t0 = time.perf_counter()
    for _ in range(n):
        lang.compile(k, "numpy")
    cached_ms = (time.perf_counter() - t0) / n * 1e3
    src = lang.lower(k).source
    t0 = time.perf_counter()
    for _ in range(200):
        ast.parse(src)
    parse_ms = (time.perf_counter() - t0) / 200 * 1e3
    figures.append(Figure("lang", "cached recompile (ringcore.compile)", cached_ms, "ms", parse_ms,
                          "ast.parse of the source", target=0.1, higher_is_better=False,
                          details={"calls": n}))
    # Vector add on the CPU backend (needs ringcore-cpu).
    if importlib.util.find_spec("ringcore_cpu") is None:
        return figures
    fast, fast_ok = _kernel_rate("numpy", BATCH, 3 if quick else 7)
    ref, ref_ok = _kernel_rate("reference", 4096 if quick else 16384, 1 if quick else 3)
    figures.append(Figure(
        "lang", "cpu vector add kernel (16 f32/msg, batches of 65,536), numpy target", fast, "msg/s", ref,
        "the same kernel loop in reference mode", target=5e6,
        note="the kernel's loop: a batch drained from its input queue, run through the numpy target, "
             "replies published to its output queue; replies checked against numpy"
             + ("" if fast_ok and ref_ok else " -- WRONG REPLIES"),
        details={"batch": BATCH, "replies_correct": fast_ok and ref_ok, "worst_codegen_ms": max(worst or [0]),
                 "refused_pairs": refused}))
    count = BATCH * (2 if quick else 8)
    e2e, e2e_ok = _call_many_rate("numpy", count, 2 if quick else 3)
    e2e_ref, e2e_ref_ok = _call_many_rate("reference", 4096 if quick else 16384, 1)
    figures.append(Figure(
        "lang", "cpu vector add, host call_many round trip, numpy target", e2e, "msg/s", e2e_ref,
        "call_many in reference mode",
        note="host -> kernel -> host for every message: building the request slots, both queues, the "
             "kernel, matching replies to requests" + ("" if e2e_ok and e2e_ref_ok else " -- WRONG REPLIES"),
        details={"messages": count, "replies_correct": e2e_ok and e2e_ref_ok}))
    return figures
