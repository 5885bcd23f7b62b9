"""``ringcore bench execution``: the execution runtime's throughput and memory, next to a sequential baseline.

The workload: transactions with two WRITE accesses each, 10% of them touching
one hot resource (so those form one long dependency chain), the rest two
random resources out of 100,000. The VM does nothing (:class:`NoopVm`), so the
figure is the runtime's own cost: validating, linking chains, running the
VM, passing versions on, persisting the diffs and committing, in order.

- **throughput**: transactions per second from the first ``schedule`` call to
  the last batch committed, MemoryStore, ``workers=2``;
- **baseline**: the same transactions run one by one in batch order by the same
  VM, through the same handles, over a plain dict (no chains, no threads, no
  store), in the same process a moment earlier;
- **memory per in-flight transaction**: the Python heap (tracemalloc) a
  scheduled, not yet executed transaction holds inside the runtime (its
  handles, its chain links, its batch bookkeeping), not counting the
  transaction object itself;
- the same throughput with both workers woken for runnable work (a VM declared
  ``concurrent``), and with a VM that writes 8 bytes to every WRITE handle (so
  every transaction's diff is persisted), for context.
"""

from __future__ import annotations

import gc
import random
import statistics
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

from ..bench import Figure
from .manager import RuntimeManager
from .resource import WRITE, Access, SimpleTransaction
from .state import VersionedState
from .store import MemoryStore
from .vm import AccessHandle, NoopVm, VmInterface

__all__ = ["bench_execution", "make_workload", "run_sequential", "measure_runtime", "TARGET_TX_PER_S"]

TARGET_TX_PER_S = 100_000.0
HOT = 0  # the hot resource's id


def make_workload(n: int, *, resources: int = 100_000, hot_share: float = 0.10, seed: int = 1) -> list[SimpleTransaction]:
    """``n`` transactions with two WRITE accesses; ``hot_share`` of them touch the hot resource."""
    rng = random.Random(seed)
    txs = []
    for _ in range(n):
        a = rng.randrange(1, resources + 1)
        if rng.random() < hot_share:
            b = HOT
        else:
            b = rng.randrange(1, resources)
            b += b >= a
        txs.append(SimpleTransaction((Access(a, WRITE), Access(b, WRITE))))
    return txs


class _Stamp(VmInterface):
    """Writes 8 bytes (a counter) to every WRITE handle."""

    concurrent = False

    def process_transaction(self, tx: Any, handles: Sequence[AccessHandle]) -> None:
        for h in handles:
            h.write(h.version.to_bytes(8, "big"))


def run_sequential(vm: Any, batches: Sequence[Sequence[Any]]) -> dict[Any, VersionedState]:
    """Execute ``batches`` one transaction at a time, in batch order, over a dict (the baseline)."""
    state: dict[Any, VersionedState] = {}
    process = vm.process_transaction
    for txs in batches:
        for tx in txs:
            handles = [AccessHandle(rid, kind, state.get(rid) or VersionedState(rid, 0, b""))
                       for rid, kind in tx.accesses]
            try:
                process(tx, handles)
            except Exception:  # noqa: BLE001 - an aborted transaction keeps nothing
                continue
            for h in handles:
                h._live = False
                if h._new is not None:
                    state[h._rid] = VersionedState(h._rid, h._input.version + 1, h._new)  # type: ignore[union-attr]
    return state


def measure_runtime(vm: Any, batches: Sequence[Sequence[Any]], *, workers: int = 2) -> float:
    """Seconds from the first ``schedule`` to the last batch committed, on a fresh manager and MemoryStore."""
    with RuntimeManager(vm, MemoryStore(), workers=workers) as m:
        t0 = time.perf_counter()
        scheduled = [m.schedule(b) for b in batches]
        scheduled[-1].wait_committed(timeout=600)
        seconds = time.perf_counter() - t0
        if not all(b.was_committed for b in scheduled):
            raise AssertionError("a batch was not committed")
    return seconds


class _EagerNoop(NoopVm):
    """NoopVm declared concurrent: every idle worker is woken for runnable work."""

    concurrent = True


class _Gate(VmInterface):
    """Blocks the first transaction until released, so everything scheduled stays in flight."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.opened = False

    def process_transaction(self, tx: Any, handles: Sequence[AccessHandle]) -> None:
        if not self.opened:
            self.opened = True
            self.entered.set()
            self.release.wait(60)


def measure_inflight_bytes(n: int) -> float:
    """Heap bytes per scheduled, not yet executed transaction (tracemalloc), workload as above."""
    txs = make_workload(n, seed=2)
    gate = _Gate()
    with RuntimeManager(gate, MemoryStore(), workers=1) as m:
        m.schedule([SimpleTransaction((Access(-1 % (1 << 64), WRITE),))])
        gate.entered.wait(30)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            batch = m.schedule(txs)
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
            gate.release.set()
        batch.wait_committed(timeout=600)
    return (after - before) / n


def bench_execution(quick: bool = False, **_: Any) -> list[Figure]:
    """The runtime's scheduled->committed throughput (no-op VM, MemoryStore, workers=2) vs a sequential run."""
    n = 100_000 if quick else 300_000
    batch_size = 10_000
    repeats = 3 if quick else 5
    txs = make_workload(n)
    batches = [txs[i:i + batch_size] for i in range(0, n, batch_size)]

    def rates(fn: Callable[[], float]) -> list[float]:
        return [n / fn() for _ in range(repeats)]

    def seq_once(vm: Any) -> float:
        t0 = time.perf_counter()
        run_sequential(vm, batches)
        return time.perf_counter() - t0

    base = rates(lambda: seq_once(NoopVm()))
    two = rates(lambda: measure_runtime(NoopVm(), batches, workers=2))
    one = rates(lambda: measure_runtime(NoopVm(), batches, workers=1))
    eager = rates(lambda: measure_runtime(_EagerNoop(), batches, workers=2))
    stamp_base = rates(lambda: seq_once(_Stamp()))
    stamp = rates(lambda: measure_runtime(_Stamp(), batches, workers=2))
    per_tx = measure_inflight_bytes(20_000 if quick else 50_000)
    med = statistics.median
    common = {"transactions": n, "batch_size": batch_size, "repeats": repeats, "accesses_per_tx": 2,
              "hot_share": 0.10, "resources": 100_000}
    baseline_name = "sequential: same VM and handles over a dict, batch order, no threads or store"
    return [
        Figure("execution", "no-op VM, MemoryStore, workers=2: scheduled -> committed", med(two), "tx/s",
               med(base), baseline_name, target=TARGET_TX_PER_S,
               note="2 WRITE accesses per transaction, 10% on one hot resource; every batch persisted "
                    "and committed in order",
               details={**common, "samples": two, "baseline_samples": base}),
        Figure("execution", "no-op VM, MemoryStore, workers=1: scheduled -> committed", med(one), "tx/s",
               med(base), baseline_name, details={**common, "samples": one}),
        Figure("execution", "no-op VM declared concurrent, workers=2: scheduled -> committed", med(eager),
               "tx/s", med(base), baseline_name,
               note="both workers woken for runnable work and taking turns on the GIL (what a VM that "
                    "releases the GIL gets); NoopVm itself is not concurrent, so one worker is kept busy",
               details={**common, "samples": eager}),
        Figure("execution", "writing VM (8 bytes per WRITE), workers=2: scheduled -> committed", med(stamp),
               "tx/s", med(stamp_base), baseline_name + " (writing VM)",
               note="every transaction writes both resources: each batch persists its diff",
               details={**common, "samples": stamp, "baseline_samples": stamp_base}),
        Figure("execution", "memory per in-flight transaction", per_tx, "B", higher_is_better=False,
               note="tracemalloc: heap held per scheduled, not yet executed transaction (handles, chain "
                    "links, batch bookkeeping; the transaction object itself not counted)",
               details={"transactions": 20_000 if quick else 50_000}),
    ]


if __name__ == "__main__":
    from ..bench import format_table, run_benchmarks  # noqa: F401

    for f in bench_execution(quick=True):
        print(f"{f.name}: {f.value:,.1f} {f.unit} (baseline {f.baseline})")
