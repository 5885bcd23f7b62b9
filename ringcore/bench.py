"""``ringcore bench``: the figures ringcore promises, each next to a baseline measured in the same run.

Every benchmark returns rows of :class:`Figure`: the measured value, a
baseline measured the same way on the same machine a moment earlier or later
(or, where marked, a published figure quoted for reference), the target and
whether the value meets it. Figures are medians over several repeats, so one
scheduling hiccup does not decide a result.

- ``queue``: RingQueue bulk push + pop of 64-byte records in chunks of 4096
  (host queue operations only, no kernel involved) vs ``collections.deque``.
- ``call``: a backend's ``KernelHandle.call`` round trip (host -> kernel ->
  host, handler included) vs a ``queue.Queue`` + thread ping-pong; Ray's
  published 1:1 actor call rate quoted for reference.
- ``hlc``: ``HlcClock.tick`` vs one ``time.time_ns()`` call, and
  ``HlcClock.stamp_many`` bulk stamping vs ticking one at a time.
- ``info``: wall time of ``ringcore info`` in a fresh process vs ``python -c pass``.
- ``execution``: the transaction runtime's committed tx/s vs a sequential run.
- ``lang``: the kernel compiler (codegen time per kernel and target vs CPython's
  ``compile()``, cached recompiles) and vector add on the CPU backend's numpy
  target vs reference mode (see ``ringcore.lang.bench``).

Nothing here is asserted in tests: the figures depend on the machine.
"""

from __future__ import annotations

import collections
import dataclasses
import gc
import itertools
import json
import os
import platform
import queue
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["BENCHMARKS", "Figure", "format_figures", "format_table", "machine_info", "main", "run_benchmarks",
           "device_figures", "vector_add_requests", "DEVICE_BATCH"]

RAY_CALLS_PER_S = (2_000, 8_700)
"""Ray's published rate for 1:1 synchronous actor calls (calls/s), quoted, not measured."""


@dataclasses.dataclass
class Figure:
    """One measured figure with its baseline and target."""

    bench: str
    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    baseline_text: str = ""
    """How to print the baseline when it is not a plain number in ``unit`` (a quoted range)."""
    target: float | None = None
    higher_is_better: bool = True
    note: str = ""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def status(self) -> str:
        """``PASS`` or ``MISS`` against the target; ``-`` when the figure has none."""
        if self.target is None:
            return "-"
        ok = self.value >= self.target if self.higher_is_better else self.value <= self.target
        return "PASS" if ok else "MISS"

    @property
    def target_text(self) -> str:
        if self.target is None:
            return "-"
        return f"{'>=' if self.higher_is_better else '<='} {_num(self.target)} {self.unit}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "bench": self.bench, "name": self.name, "value": self.value, "unit": self.unit,
            "baseline": None if self.baseline is None and not self.baseline_text else {
                "name": self.baseline_name, "value": self.baseline, "text": self.baseline_text or None},
            "target": None if self.target is None else {
                "op": ">=" if self.higher_is_better else "<=", "value": self.target},
            "status": self.status, "note": self.note, "details": self.details,
        }


def _num(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _median_rate(run_once: Callable[[], float], repeats: int) -> tuple[float, list[float]]:
    """Run ``run_once`` (returning items per second) ``repeats`` times; the median and all samples."""
    samples = [run_once() for _ in range(repeats)]
    return statistics.median(samples), samples


class _NoGC:
    """Keep the cyclic garbage collector out of a timed loop."""

    def __enter__(self) -> None:
        self.was = gc.isenabled()
        gc.collect()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self.was:
            gc.enable()


# -- (a) RingQueue --------------------------------------------------------------------


def bench_queue(quick: bool = False, **_: Any) -> list[Figure]:
    """RingQueue bulk push + pop of 64-byte records in chunks of 4096, vs collections.deque."""
    from .message import HEADER_DTYPE
    from .queue import RingQueue

    chunk = 4096
    rounds = 50 if quick else 250
    repeats = 3 if quick else 7
    records = np.zeros(chunk, HEADER_DTYPE)  # a 64-byte message: the header alone
    records["message_id"] = np.arange(1, chunk + 1)
    records["type_id"] = 7
    assert records.dtype.itemsize == 64
    q = RingQueue(HEADER_DTYPE, capacity=2 * chunk)

    # Sanity: the loop below moves real data.
    q.push_many(records)
    if not np.array_equal(q.pop_many(chunk), records):
        raise AssertionError("RingQueue returned different records than were pushed")

    def ring_once() -> float:
        push, pop = q.push_many, q.pop_many
        with _NoGC():
            t0 = time.perf_counter()
            for _ in range(rounds):
                push(records)
                pop(chunk)
            dt = time.perf_counter() - t0
        return rounds * chunk / dt

    items = [bytes(r) for r in records.view(np.uint8).reshape(chunk, 64)]  # the same 64-byte records
    dq: collections.deque[bytes] = collections.deque()

    def deque_once() -> float:
        extend, popleft = dq.extend, dq.popleft
        with _NoGC():
            t0 = time.perf_counter()
            for _ in range(rounds):
                extend(items)
                out = [popleft() for _ in range(chunk)]
            dt = time.perf_counter() - t0
        assert len(out) == chunk
        return rounds * chunk / dt

    ring, ring_s = _median_rate(ring_once, repeats)
    base, base_s = _median_rate(deque_once, repeats)
    return [Figure(
        "queue", "RingQueue push+pop, 64 B records, chunks of 4096", ring / 1e6, "M msg/s",
        base / 1e6, "collections.deque (extend + popleft)", target=20.0,
        note="host queue operations only (no kernel): push_many copies each chunk into the ring's "
             "slots, pop_many copies it out; the deque moves references to the same records",
        details={"chunk": chunk, "rounds": rounds, "repeats": repeats,
                 "samples_M_per_s": [s / 1e6 for s in ring_s], "baseline_samples_M_per_s": [s / 1e6 for s in base_s]},
    )]


# -- (b) call round trip --------------------------------------------------------------


def _time_calls(call: Callable[[int], Any], n: int, warmup: int) -> tuple[np.ndarray, float]:
    """Round-trip samples (ns) of ``n`` calls after ``warmup`` untimed ones, and the total seconds."""
    for i in range(warmup):
        call(i)
    samples = np.empty(n, dtype=np.int64)
    clock = time.perf_counter_ns
    with _NoGC():
        t0 = clock()
        for i in range(n):
            s = clock()
            call(i)
            samples[i] = clock() - s
        total = (clock() - t0) / 1e9
    return samples, total


def _queue_pingpong(n: int, warmup: int) -> tuple[np.ndarray, float]:
    """The baseline: a round trip through two queue.Queue objects and a worker thread."""
    requests: queue.Queue[Any] = queue.Queue()
    replies: queue.Queue[Any] = queue.Queue()

    def worker() -> None:
        while True:
            x = requests.get()
            if x is None:
                return
            replies.put(x + 1)

    t = threading.Thread(target=worker, name="ringcore-bench-baseline", daemon=True)
    t.start()
    try:
        def call(i: int) -> None:
            requests.put(i)
            if replies.get(timeout=5) != i + 1:
                raise AssertionError("queue.Queue baseline answered wrongly")

        return _time_calls(call, n, warmup)
    finally:
        requests.put(None)
        t.join(5)


def bench_call(quick: bool = False, backend: str = "cpu", **_: Any) -> list[Figure]:
    """``KernelHandle.call`` round trip on ``backend``, vs a queue.Queue + thread ping-pong."""
    import ringcore

    from .demo.hello_kernel import Greet, hello

    n = 1000 if quick else 5000
    warmup = 200 if quick else 500
    base, base_total = _queue_pingpong(n, warmup)
    b50, b99 = (float(np.percentile(base, p)) / 1000 for p in (50, 99))

    with ringcore.runtime(backend) as rt:
        k = rt.launch(hello)  # Greet(n) -> Greeting(n + 1, served), with a state update

        def call(i: int) -> None:
            if int(k.call(Greet(n=i)).n) != i + 1:
                raise AssertionError(f"the {backend} kernel answered wrongly")

        inline, inline_total = _time_calls(call, n, warmup)
        # The same calls with the caller's thread never serving the kernel itself: every round
        # trip is two thread hand-offs, the path a call takes when the kernel is busy.
        rt.inline_calls = False
        threaded, threaded_total = _time_calls(call, n, warmup)
        rt.inline_calls = type(rt).inline_calls
        device = rt.device.name if rt.device else backend
        kernel_p50 = k.metrics().latency_p50_us
    p50, p99 = (float(np.percentile(inline, p)) / 1000 for p in (50, 99))
    t50, t99 = (float(np.percentile(threaded, p)) / 1000 for p in (50, 99))
    rate = n / inline_total
    common = {"calls": n, "warmup": warmup, "backend": backend, "device": device,
              "kernel": "ringcore.demo.hello_kernel.hello"}
    qname = "queue.Queue + thread ping-pong"
    return [
        Figure("call", f"{backend} call round trip p50", p50, "µs", b50, qname + " p50",
               target=50.0, higher_is_better=False,
               note="host -> kernel -> host through the kernel's queues, handler included; an idle "
                    "host-driven kernel is served by the calling thread (HostLoop.call_inline)",
               details={**common, "p99_us": p99, "mean_us": inline_total / n * 1e6,
                        "kernel_side_latency_p50_us": kernel_p50}),
        Figure("call", f"{backend} call round trip p99", p99, "µs", b99, qname + " p99",
               higher_is_better=False, details=common),
        Figure("call", f"{backend} call via the kernel's thread p50", t50, "µs", b50, qname + " p50",
               target=50.0, higher_is_better=False,
               note="inline serving switched off: each round trip is two thread hand-offs, like the baseline",
               details={**common, "p99_us": t99, "mean_us": threaded_total / n * 1e6}),
        Figure("call", f"{backend} call via the kernel's thread p99", t99, "µs", b99, qname + " p99",
               higher_is_better=False, details=common),
        Figure("call", f"{backend} sequential call rate", rate, "calls/s",
               baseline_name="Ray 1:1 actor calls (published, not measured here)",
               baseline_text=f"Ray: {RAY_CALLS_PER_S[0]:,}-{RAY_CALLS_PER_S[1]:,} calls/s (published)",
               note="one caller, one call at a time, inline path",
               details={**common, "ray_published_calls_per_s": list(RAY_CALLS_PER_S),
                        "baseline_calls_per_s": n / base_total}),
    ]


# -- (c) HLC ----------------------------------------------------------------------------


def bench_hlc(quick: bool = False, **_: Any) -> list[Figure]:
    """HlcClock.tick vs time.time_ns(); HlcClock.stamp_many vs ticking one at a time."""
    from .hlc import HlcClock

    n = 50_000 if quick else 200_000
    repeats = 3 if quick else 7
    chunk = 4096
    clock = HlcClock(node_id=1)

    def per_call_us(fn: Callable[[], Any]) -> float:
        with _NoGC():
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            return (time.perf_counter() - t0) / n * 1e6

    tick_us = statistics.median(per_call_us(clock.tick) for _ in range(repeats))
    wall_us = statistics.median(per_call_us(time.time_ns) for _ in range(repeats))

    stamp = clock.stamp_many
    chunks = max(1, n // chunk) * 4

    def stamp_once() -> float:
        with _NoGC():
            t0 = time.perf_counter()
            for _ in range(chunks):
                stamp(chunk)
            return chunks * chunk / (time.perf_counter() - t0)

    phys, logical = clock.stamp_many(chunk)
    ts = phys.astype(object) * (1 << 32) + logical.astype(object)
    if not all(a < b for a, b in itertools.pairwise(ts)):
        raise AssertionError("stamp_many returned timestamps that do not strictly increase")
    bulk, bulk_s = _median_rate(stamp_once, repeats)
    return [
        Figure("hlc", "HlcClock.tick", tick_us, "µs", wall_us, "one time.time_ns() call", target=1.0,
               higher_is_better=False, note="tick reads the wall clock once and updates under a lock",
               details={"calls": n, "repeats": repeats}),
        Figure("hlc", "HlcClock.stamp_many, chunks of 4096", bulk / 1e6, "M ts/s", 1 / tick_us,
               "tick() once per timestamp", target=10.0,
               details={"chunk": chunk, "chunks": chunks, "samples_M_per_s": [s / 1e6 for s in bulk_s]}),
    ]


# -- (d) ringcore info start-up -----------------------------------------------------------


def _info_command() -> list[str]:
    script = shutil.which("ringcore", path=os.path.dirname(sys.executable))
    if script:
        return [script, "info", "--json"]
    return [sys.executable, "-c", "import sys; from ringcore.cli import main; sys.exit(main(['info', '--json']))"]


def _wall(cmd: Sequence[str], runs: int) -> tuple[float, list[float], str]:
    times = []
    out = ""
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}: {proc.stderr.strip()[-500:]}")
        out = proc.stdout
    return statistics.median(times), times, out


def bench_info(quick: bool = False, **_: Any) -> list[Figure]:
    """Wall time of ``ringcore info`` in a fresh process, vs ``python -c pass``."""
    runs = 3 if quick else 7
    cmd = _info_command()
    info_s, info_all, out = _wall(cmd, runs)
    base_s, base_all, _ = _wall([sys.executable, "-c", "pass"], runs)
    import_s, _, _ = _wall([sys.executable, "-c", "import ringcore"], runs)
    try:
        info = json.loads(out)
        plugins = [p["name"] for p in info["plugins"] if p["status"] == "loaded"]
    except (ValueError, KeyError):
        plugins = []
    env = os.environ.get("RINGCORE_LOAD_PLUGINS")
    scope = "every installed plugin" if env is None else f"RINGCORE_LOAD_PLUGINS={env!r}"
    return [Figure(
        "info", "`ringcore info` wall time", info_s, "s", base_s, "python -c pass", target=0.5,
        higher_is_better=False,
        note=f"fresh process, {scope} (loaded: {', '.join(plugins) or 'none'}); "
             f"`python -c 'import ringcore'` takes {import_s:.3f} s",
        details={"command": cmd, "runs_s": info_all, "baseline_runs_s": base_all,
                 "import_ringcore_s": import_s, "plugins": plugins},
    )]


def bench_execution(quick: bool = False, **_: Any) -> list[Figure]:
    """The execution runtime: scheduled -> committed tx/s (no-op VM, MemoryStore, workers=2) vs a sequential run."""
    from .execution.bench import bench_execution as run

    return run(quick=quick)


def bench_lang(quick: bool = False, **_: Any) -> list[Figure]:
    """The kernel compiler: codegen time per kernel and target, cached recompiles, vector add on the numpy target."""
    from .lang.bench import bench_lang as run

    return run(quick=quick)


#: Every benchmark by name, in the order they run.
BENCHMARKS: dict[str, Callable[..., list[Figure]]] = {
    "queue": bench_queue,
    "call": bench_call,
    "hlc": bench_hlc,
    "info": bench_info,
    "execution": bench_execution,
    "lang": bench_lang,
}


# -- device backends: the figures every device backend prints (``ringcore <backend> bench``) -------------

#: Messages per batch of the device backends' vector add figure.
DEVICE_BATCH = 65_536


def vector_add_requests(count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` vector-add requests (16 random f32 per operand) and the sums a kernel must reply."""
    from .demo.vector_add import Operands

    rng = np.random.default_rng(3)
    req = Operands.array(count)
    req["a"] = rng.standard_normal((count, 16), dtype=np.float32)
    req["b"] = rng.standard_normal((count, 16), dtype=np.float32)
    return req, req["a"] + req["b"]


def _kernel_loop_rate(make_runtime: Callable[[], Any], repeats: int) -> tuple[float, bool]:
    """Vector add through a kernel's loop, batches of DEVICE_BATCH: (msg/s median, replies correct)."""
    from .demo.vector_add import vector_add

    req, expected = vector_add_requests(DEVICE_BATCH)
    times, ok = [], True
    with make_runtime() as rt:
        k = rt.launch(vector_add, input_capacity=DEVICE_BATCH, output_capacity=DEVICE_BATCH, max_batch=DEVICE_BATCH,
                      auto_activate=False, mode="event_driven")
        slots = k._slots(req, first_corr=1, flags=0, priority=1)
        for _ in range(repeats + 1):
            k.input_queue.push_many(slots)
            t0 = time.perf_counter()
            k.loop.process(k.loop._pop(k.input_queue, DEVICE_BATCH))  # as the kernel's thread drains it
            times.append(time.perf_counter() - t0)
            got = k.output_queue.pop_many()
            ok = ok and len(got) == DEVICE_BATCH and bool(np.array_equal(got["payload"]["c"], expected))
        k.terminate()
    return DEVICE_BATCH / statistics.median(times[1:]), ok


def _one_message_us(make_runtime: Callable[[], Any], repeats: int) -> float:
    """Median µs of ``executor.run_one`` on vector add: the host loop's path for a message that arrives alone."""
    from .demo.vector_add import vector_add
    from .message import MessageHeader

    req, _ = vector_add_requests(1)
    with make_runtime() as rt:
        k = rt.launch(vector_add, auto_activate=False, mode="event_driven")
        slots = k._slots(req, first_corr=1, flags=0, priority=1)
        ex = k.loop.executor
        header, payload = MessageHeader._make(slots["header"][0].tolist()), slots["payload"][0]
        ex.run_one(header, payload)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            ex.run_one(header, payload)
            times.append(time.perf_counter() - t0)
        k.terminate()
    return statistics.median(times) * 1e6


def device_figures(bench: str, make_runtime: Callable[[], Any], where: str, *, quick: bool,
                   loop_target: float | None, dispatch_target: float | None, what: str = "one dispatch") -> list[Figure]:
    """The two figures of a device backend, each next to the CPU backend measured in the same run (when
    ringcore-cpu is installed): vector add through the kernel's loop (batches of DEVICE_BATCH), and the
    per-dispatch overhead of a message that arrives alone.

    :param make_runtime: creates the backend's runtime (a context manager).
    :param where: the device, for the figures' names.
    :param what: how the backend runs a batch, for the notes ("one NDRange", "one dispatch").
    """
    import importlib.util

    cpu: Callable[[], Any] | None = None
    if importlib.util.find_spec("ringcore_cpu") is not None:
        from ringcore_cpu import CpuRuntime

        cpu = CpuRuntime
    reps = 3 if quick else 9
    rate, ok = _kernel_loop_rate(make_runtime, reps)
    base, base_ok = _kernel_loop_rate(cpu, reps) if cpu is not None else (None, True)
    n = 300 if quick else 3000
    one = _one_message_us(make_runtime, n)
    one_base = _one_message_us(cpu, n) if cpu is not None else None
    return [
        Figure(bench, f"vector add kernel loop (16 f32/msg, batches of {DEVICE_BATCH:,}) on {where}", rate, "msg/s",
               base, "cpu backend, numpy target, same loop" if cpu is not None else "", target=loop_target,
               note=f"drain a batch, {what}, read back, publish replies; replies checked against numpy"
                    + ("" if ok and base_ok else " -- WRONG REPLIES"),
               details={"batch": DEVICE_BATCH, "replies_correct": ok and base_ok}),
        Figure(bench, f"per-dispatch overhead, one-message batch, on {where}", one, "us", one_base,
               "cpu backend executor, one message" if cpu is not None else "", target=dispatch_target,
               higher_is_better=False,
               note=f"executor.run_one, the host loop's path for a message that arrives alone: write it, {what}, "
                    "wait, read the status and reply (median)",
               details={"repeats": n}),
    ]


def _resident_host_api(make_runtime: Callable[[], Any], mode: str, calls: int) -> tuple[list[float], float]:
    """``call`` round trips (s, each) and ``call_many`` of DEVICE_BATCH messages (msg/s) on vector add
    launched in ``mode``; raises when the kernel ran another mode or replied wrong sums."""
    from .demo.vector_add import Operands, vector_add

    req, expected = vector_add_requests(DEVICE_BATCH)
    one = Operands(a=req["a"][0], b=req["b"][0])
    with make_runtime() as rt:
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
    return times, rate


def resident_figures(bench: str, make_runtime: Callable[[], Any], where: str, *, quick: bool,
                     p50_target: float | None = None) -> list[Figure]:
    """A device backend's persistent-mode figures, each next to the same kernel event-driven in the same
    run: ``call`` round trip p50 and p99 (one vector-add message) and ``call_many`` throughput."""
    n = 300 if quick else 3000
    times, rate_p = _resident_host_api(make_runtime, "persistent", n)
    times_e, rate_e = _resident_host_api(make_runtime, "event_driven", n)
    p50, p99 = (float(np.percentile(times, q)) * 1e6 for q in (50, 99))
    p50_e, p99_e = (float(np.percentile(times_e, q)) * 1e6 for q in (50, 99))
    return [
        Figure(bench, f"persistent call round trip p50 (vector add, one message) on {where}", p50, "us", p50_e,
               "the same kernel event-driven", target=p50_target, higher_is_better=False,
               note="kernel.call on a resident kernel: push, the device loop polls and answers, the caller takes "
                    "the completion and the reply", details={"calls": n}),
        Figure(bench, f"persistent call round trip p99 on {where}", p99, "us", p99_e, "the same kernel event-driven",
               higher_is_better=False, details={"calls": n}),
        Figure(bench, f"persistent call_many, {DEVICE_BATCH:,} messages (vector add) on {where}", rate_p, "msg/s",
               rate_e, "the same kernel event-driven",
               note="host API end to end through a resident kernel; replies checked against numpy"),
    ]


def machine_info() -> dict[str, Any]:
    """The machine a benchmark ran on: Python, numpy, ringcore, CPUs, CPU model, load average."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    import ringcore

    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        load = None
    return {"python": platform.python_version(), "numpy": np.__version__, "ringcore": ringcore.__version__,
            "cpus": os.cpu_count(), "cpu": cpu, "platform": platform.platform(), "load_average": load}


def run_benchmarks(*, quick: bool = False, backend: str = "cpu", only: Iterable[str] | None = None,
                   progress: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Run the benchmarks (all, or those named in ``only``) and return a JSON-ready report.

    A benchmark that cannot run here (the backend is not installed, say) is
    reported under ``errors`` and the others still run.
    """
    from .errors import RingcoreError

    names = list(only) if only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    figures: list[Figure] = []
    errors: dict[str, str] = {}
    t0 = time.perf_counter()
    for name in names:
        if progress:
            progress(f"running {name} ...")
        try:
            figures += BENCHMARKS[name](quick=quick, backend=backend)
        except (RingcoreError, RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
    return {"machine": machine_info(), "quick": quick, "backend": backend, "seconds": time.perf_counter() - t0,
            "results": [f.as_dict() for f in figures], "errors": errors}


def _value_text(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{_num(value)} {unit}"


def format_figures(results: list[dict[str, Any]], errors: dict[str, str], seconds: float) -> list[str]:
    """Figures (``Figure.as_dict()``) as table lines: figure, value, same-run baseline, target, result;
    then their notes, what could not run, and how many targets were met. Shared by every bench command."""
    lines: list[str] = []
    rows = [("figure", "value", "baseline (measured in the same run)", "target", "result")]
    notes = []
    for r in results:
        b = r["baseline"]
        if b is None:
            base = "-"
        elif b["text"]:
            base = b["text"]
        else:
            base = f"{_value_text(b['value'], r['unit'])} ({b['name']})"
        t = r["target"]
        target = "-" if t is None else f"{t['op']} {_num(t['value'])} {r['unit']}"
        rows.append((r["name"], _value_text(r["value"], r["unit"]), base, target, r["status"]))
        if r["note"]:
            notes.append(f"  {r['name']}: {r['note']}")
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    if notes:
        lines += ["", "notes:"] + notes
    for name, err in errors.items():
        lines.append(f"  {name}: could not run: {err}")
    lines.append("")
    passed = sum(r["status"] == "PASS" for r in results)
    judged = sum(r["status"] != "-" for r in results)
    lines.append(f"{passed} of {judged} targets met; {seconds:.1f} s")
    return lines


def format_table(report: dict[str, Any]) -> str:
    """The report as a table: figure, value, baseline, target, result; then notes."""
    m = report["machine"]
    lines = [(f"ringcore {m['ringcore']} bench{' (quick)' if report['quick'] else ''}: Python {m['python']}, "
              f"numpy {m['numpy']}, {m['cpus']} CPUs ({m['cpu']}), call backend {report['backend']}")]
    if m.get("load_average"):
        lines.append("load average at the start: " + ", ".join(str(x) for x in m["load_average"])
                     + " (other work on the machine slows every figure, the baselines too)")
    lines.append("")
    lines += format_figures(report["results"], report.get("errors", {}), report["seconds"])
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ringcore.bench [ringcore bench options]``: the same as ``ringcore bench``."""
    from .cli import main as cli_main

    return cli_main(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
