"""``ringcore store bench``: RocksDBStore's figures, each next to MemoryStore measured in the same run.

- ``diffs``: committed state diffs per second. A state diff is what one batch
  did to one resource: its new data version (DATA), its rollback pointer
  (ROLLBACK_PTR) and, at commit, its latest pointer (LATEST_PTR). The loop
  writes exactly what the runtime's storage writer writes, through the Store
  API, in the same group-commit shape: one commit holds the data and rollback
  pointers of a group of batches (with ``last_persisted``), the next flips their
  latest pointers (with ``last_committed``). Measured with ``sync=False`` and
  with ``sync=True`` at two group-commit sizes (every commit is then one fsync).
- ``execution``: the execution runtime's benchmark (the workload of
  ``ringcore bench execution``: 2 WRITE accesses per transaction, 10% on one
  hot resource, 100,000 resources, batches of 10,000, ``workers=2``), from the
  first ``schedule`` to the last batch committed, on RocksDB and on MemoryStore:
  with the no-op VM, and with a VM that writes both resources of every
  transaction (so every batch persists a diff per resource it touched).

Every figure is the median of several repeats on a fresh store. Nothing here
is asserted in tests: the figures depend on the machine and its disk.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ringcore.bench import Figure, format_figures
from ringcore.execution.manager import RuntimeManager
from ringcore.execution.state import (
    META_LAST_COMMITTED,
    META_LAST_PERSISTED,
    StateSpace,
    encode_u64,
    rollback_value,
)
from ringcore.execution.store import MemoryStore, Store
from ringcore.execution.vm import AccessHandle, NoopVm, VmInterface

__all__ = ["BENCHMARKS", "TARGET_DIFFS_PER_S", "TARGET_TX_PER_S", "bench_diffs", "bench_execution",
           "commit_diffs", "format_report", "run_store_benchmarks"]

TARGET_DIFFS_PER_S = 200_000.0
"""Committed state diffs per second with sync=False (the issue's target)."""
TARGET_TX_PER_S = 50_000.0
"""The execution benchmark on RocksDB, transactions committed per second (the issue's target)."""

_DATA, _LATEST, _ROLLBACK, _META = StateSpace.DATA, StateSpace.LATEST_PTR, StateSpace.ROLLBACK_PTR, StateSpace.META


class _Workspace:
    """Fresh store directories under one temporary directory (or under ``directory``), removed at the end."""

    def __init__(self, directory: str | os.PathLike[str] | None) -> None:
        if directory is not None:
            Path(directory).mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="ringcore-store-bench-", dir=directory))
        self._n = 0

    def fresh(self) -> Path:
        self._n += 1
        return self.root / f"store-{self._n}"

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# -- committed state diffs ------------------------------------------------------------------------


def _diff_workload(n_diffs: int, per_batch: int, *, resources: int = 100_000, value_size: int = 32,
                   seed: int = 3) -> list[tuple[list[bytes], list[bytes], list[bytes], list[bytes], list[bytes]]]:
    """Per batch: the encoded resource ids it changed, and its DATA keys and values, ROLLBACK_PTR
    values and LATEST_PTR values, laid out as the runtime lays them out."""
    rng = random.Random(seed)
    versions: dict[int, int] = {}
    batches = []
    index = 0
    for start in range(0, n_diffs, per_batch):
        index += 1
        count = min(per_batch, n_diffs - start)
        rids = rng.sample(range(resources), count)  # a batch changes a resource at most once
        keys, data_keys, data_values, rb_values, latest_values = [], [], [], [], []
        for rid in rids:
            before = versions.get(rid, 0)
            after = before + 1 + rng.randrange(3)  # a batch may write a resource several times
            versions[rid] = after
            key = b"\x01" + rid.to_bytes(8, "big")
            keys.append(key)
            data_keys.append(encode_u64(after) + key)
            data_values.append(rng.randbytes(value_size))
            rb_values.append(rollback_value(before, after))
            latest_values.append(encode_u64(after))
        batches.append((keys, data_keys, data_values, rb_values, latest_values))
    return batches


def commit_diffs(store: Store, batches: Sequence[Any], group: int) -> int:
    """Write ``batches`` (from the diff workload) as the storage writer does, ``group`` batches per
    commit pair; return the number of store commits."""
    commits = 0
    for g in range(0, len(batches), group):
        chunk = batches[g:g + group]
        first = g + 1
        wb = store.write_batch()
        put_many = getattr(wb, "put_many", None)
        for i, (keys, data_keys, data_values, rb_values, _) in enumerate(chunk):
            prefix = encode_u64(first + i)
            rb_keys = [prefix + k for k in keys]
            if put_many is not None:
                put_many(_DATA, data_keys, data_values)
                put_many(_ROLLBACK, rb_keys, rb_values)
            else:
                for k, v in zip(data_keys, data_values):
                    wb.put(_DATA, k, v)
                for k, v in zip(rb_keys, rb_values):
                    wb.put(_ROLLBACK, k, v)
        wb.put(_META, META_LAST_PERSISTED, encode_u64(first + len(chunk) - 1))
        store.commit(wb)
        wb = store.write_batch()
        put_many = getattr(wb, "put_many", None)
        for keys, _, _, _, latest_values in chunk:
            if put_many is not None:
                put_many(_LATEST, keys, latest_values)
            else:
                for k, v in zip(keys, latest_values):
                    wb.put(_LATEST, k, v)
        wb.put(_META, META_LAST_COMMITTED, encode_u64(first + len(chunk) - 1))
        store.commit(wb)
        commits += 2
    return commits


def _rocksdb(path: Path, **options: Any) -> Store:
    from .store import RocksDBStore

    return RocksDBStore(path, **options)


def _time_diffs(make: Callable[[], Store], batches: Sequence[Any], group: int, repeats: int) -> tuple[float, list[float]]:
    n = sum(len(b[0]) for b in batches)
    samples = []
    for _ in range(repeats):
        store = make()
        try:
            t0 = time.perf_counter()
            commit_diffs(store, batches, group)
            samples.append(n / (time.perf_counter() - t0))
        finally:
            store.close()
    return statistics.median(samples), samples


def bench_diffs(quick: bool = False, directory: str | os.PathLike[str] | None = None, **_: Any) -> list[Figure]:
    """Committed state diffs per second: RocksDB (sync off, sync on at two group sizes) vs MemoryStore."""
    per_batch = 1_000
    group = 10  # batches per commit pair: 10,000 diffs per commit
    n = 100_000 if quick else 200_000
    n_sync_small = 2_000 if quick else 5_000
    repeats = 3 if quick else 5
    batches = _diff_workload(n, per_batch)
    small = _diff_workload(n_sync_small, 100, seed=4)  # sync=True, one batch of 100 diffs per commit pair
    space = _Workspace(directory)
    try:
        memory, memory_samples = _time_diffs(MemoryStore, batches, group, repeats)
        rocks, rocks_samples = _time_diffs(lambda: _rocksdb(space.fresh()), batches, group, repeats)
        synced, synced_samples = _time_diffs(lambda: _rocksdb(space.fresh(), sync=True), batches, group, repeats)
        memory_small, _ = _time_diffs(MemoryStore, small, 1, repeats)
        synced_small, synced_small_samples = _time_diffs(lambda: _rocksdb(space.fresh(), sync=True), small, 1, repeats)
    finally:
        space.close()
    baseline = "MemoryStore, same writes"
    shape = f"{group} batches x {per_batch:,} diffs = {group * per_batch:,} diffs per commit pair"
    common = {"diffs": n, "diffs_per_batch": per_batch, "batches_per_commit": group,
              "diffs_per_commit": group * per_batch, "value_bytes": 32, "repeats": repeats,
              "directory": str(directory) if directory else tempfile.gettempdir()}
    return [
        Figure("diffs", "RocksDB sync=False: committed state diffs", rocks, "diffs/s", memory, baseline,
               target=TARGET_DIFFS_PER_S,
               note=f"DATA + ROLLBACK_PTR in one commit, LATEST_PTR flip in the next, as the runtime writes; {shape}",
               details={**common, "samples": rocks_samples, "baseline_samples": memory_samples}),
        Figure("diffs", f"RocksDB sync=True, group commit of {group * per_batch:,} diffs", synced, "diffs/s", memory,
               baseline, note=f"every commit fsyncs the write-ahead log: {synced / (group * per_batch) * 2:,.0f} "
                              f"fsyncs/s; {shape}",
               details={**common, "samples": synced_samples, "fsyncs_per_s": synced / (group * per_batch) * 2}),
        Figure("diffs", "RocksDB sync=True, group commit of 100 diffs", synced_small, "diffs/s", memory_small,
               baseline, note=f"one batch of 100 diffs per commit pair: the fsync dominates "
                              f"({synced_small / 100 * 2:,.0f} fsyncs/s)",
               details={**common, "diffs": n_sync_small, "diffs_per_batch": 100, "batches_per_commit": 1,
                        "diffs_per_commit": 100, "samples": synced_small_samples,
                        "fsyncs_per_s": synced_small / 100 * 2}),
    ]


# -- the execution benchmark on RocksDB -------------------------------------------------------------


class _Stamp(VmInterface):
    """Writes 8 bytes (the input version) to every WRITE handle: every transaction leaves a diff."""

    concurrent = False

    def process_transaction(self, tx: Any, handles: Sequence[AccessHandle]) -> None:
        for h in handles:
            h.write(h.version.to_bytes(8, "big"))


def _time_runtime(vm_class: type, batches: Sequence[Sequence[Any]], make: Callable[[], Store], repeats: int,
                  workers: int = 2) -> tuple[float, list[float]]:
    n = sum(len(b) for b in batches)
    samples = []
    for _ in range(repeats):
        store = make()
        try:
            with RuntimeManager(vm_class(), store, workers=workers) as m:
                t0 = time.perf_counter()
                scheduled = [m.schedule(b) for b in batches]
                scheduled[-1].wait_committed(timeout=600)
                samples.append(n / (time.perf_counter() - t0))
                if not all(b.was_committed for b in scheduled):
                    raise AssertionError("a batch was not committed")
        finally:
            store.close()
    return statistics.median(samples), samples


def bench_execution(quick: bool = False, directory: str | os.PathLike[str] | None = None, **_: Any) -> list[Figure]:
    """The execution runtime on RocksDB (sync off and on) vs MemoryStore: scheduled -> committed tx/s."""
    from ringcore.execution.bench import make_workload

    n = 100_000 if quick else 200_000
    batch_size = 10_000
    repeats = 2 if quick else 3
    txs = make_workload(n)
    batches = [txs[i:i + batch_size] for i in range(0, n, batch_size)]
    space = _Workspace(directory)
    try:
        noop_mem, noop_mem_s = _time_runtime(NoopVm, batches, MemoryStore, repeats)
        noop_rocks, noop_rocks_s = _time_runtime(NoopVm, batches, lambda: _rocksdb(space.fresh()), repeats)
        stamp_mem, stamp_mem_s = _time_runtime(_Stamp, batches, MemoryStore, repeats)
        stamp_rocks, stamp_rocks_s = _time_runtime(_Stamp, batches, lambda: _rocksdb(space.fresh()), repeats)
        stamp_sync, stamp_sync_s = _time_runtime(_Stamp, batches, lambda: _rocksdb(space.fresh(), sync=True), repeats)
    finally:
        space.close()
    common = {"transactions": n, "batch_size": batch_size, "workers": 2, "repeats": repeats, "accesses_per_tx": 2,
              "hot_share": 0.10, "resources": 100_000}
    return [
        Figure("execution", "no-op VM, RocksDB sync=False, workers=2: scheduled -> committed", noop_rocks, "tx/s",
               noop_mem, "the same on MemoryStore", target=TARGET_TX_PER_S,
               note="the workload of `ringcore bench execution`: every first access reads the store",
               details={**common, "samples": noop_rocks_s, "baseline_samples": noop_mem_s}),
        Figure("execution", "writing VM, RocksDB sync=False, workers=2: scheduled -> committed", stamp_rocks, "tx/s",
               stamp_mem, "the same on MemoryStore",
               note="every transaction writes both resources: each batch persists a diff per resource it touched",
               details={**common, "samples": stamp_rocks_s, "baseline_samples": stamp_mem_s}),
        Figure("execution", "writing VM, RocksDB sync=True, workers=2: scheduled -> committed", stamp_sync, "tx/s",
               stamp_mem, "the same on MemoryStore",
               note="every store commit fsyncs; the storage writer groups every batch ready at once",
               details={**common, "samples": stamp_sync_s}),
    ]


BENCHMARKS: dict[str, Callable[..., list[Figure]]] = {"diffs": bench_diffs, "execution": bench_execution}
"""The benchmarks of ``ringcore store bench``, by name, in the order they run."""


def _machine() -> dict[str, Any]:
    """The core's machine description, plus the rocksdict version."""
    from ringcore.bench import machine_info

    info = machine_info()
    try:
        from importlib.metadata import version

        info["rocksdict"] = version("rocksdict")
    except Exception:  # noqa: BLE001 - only a label
        info["rocksdict"] = "?"
    return info


def run_store_benchmarks(*, quick: bool = False, only: Iterable[str] | None = None,
                         directory: str | os.PathLike[str] | None = None,
                         progress: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Run the benchmarks (all, or those named in ``only``); return a JSON-ready report."""
    names = list(only) if only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    figures: list[Figure] = []
    t0 = time.perf_counter()
    for name in names:
        if progress:
            progress(f"running {name} ...")
        figures += BENCHMARKS[name](quick=quick, directory=directory)
    return {"machine": _machine(), "quick": quick, "directory": str(directory) if directory else None,
            "seconds": time.perf_counter() - t0, "results": [f.as_dict() for f in figures]}


def format_report(report: dict[str, Any]) -> str:
    """The report as a table: figure, value, MemoryStore baseline, target, result; then notes."""
    m = report["machine"]
    lines = [f"ringcore {m['ringcore']} store bench{' (quick)' if report['quick'] else ''}: Python {m['python']}, "
             f"rocksdict {m['rocksdict']}, {m['cpus']} CPUs ({m['cpu']})"]
    if m.get("load_average"):
        lines.append("load average at the start: " + ", ".join(str(x) for x in m["load_average"]))
    lines.append("")
    lines += format_figures(report["results"], {}, report["seconds"])
    return "\n".join(lines)
