"""The crash harness: kill a process writing to a RocksDBStore at random instants; check every recovery.

A child process opens the store, runs a deterministic workload on the
execution runtime (batch ``i`` is a function of the seed and ``i`` alone:
transactions over 48 resources, reads, writes, aborts, several batches in
flight) and reports through a pipe every batch whose commit it has observed.
The parent kills it with SIGKILL at a random instant (while it opens and
recovers the store, or while it commits), then checks the store as the next
process finds it:

1. before any recovery: ``last_committed`` is a batch ``k`` at least the last
   one the child saw committed; the latest pointers are exactly those after
   batch ``k`` of a sequential reference run, with their data; the rollback
   pointers of batches up to ``k`` are exactly the reference's; anything of a
   later batch is only data and rollback pointers of batches the child had
   persisted (never a latest pointer), each exactly the reference's;
2. after a RuntimeManager opens it (recovery): exactly the state after batch
   ``k``, nothing left of later batches, no orphaned version;
3. ``rollback_to(j)`` for a random ``j <= k`` works and leaves exactly the state
   after batch ``j``; the next child continues from there.

The same store goes through every trial, so a store recovered from one crash is
crashed again. Run it by hand for many more trials::

    ringcore store crash-test --trials 1000
    python -m ringcore_rocksdb.crash --trials 1000 --sync on
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["Reference", "TrialResult", "CrashReport", "batch_transactions", "check_store", "run_trials", "main"]

RESOURCES = 48
WINDOW = 4
"""Batches the child keeps scheduled ahead of the oldest uncommitted one."""
_U64 = struct.Struct(">Q")
_U64x2 = struct.Struct(">QQ")
_DATA, _LATEST, _ROLLBACK, _META = 0, 1, 2, 3  # StateSpace values, written out


def _rid_key(rid: int) -> bytes:
    """An int resource id's encoding (tag 0x01, 8 bytes big-endian), written out independently."""
    return b"\x01" + _U64.pack(rid)


# -- the workload -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CrashTx:
    """A workload transaction: its accesses, and whether it aborts after writing."""

    name: str
    accesses: tuple[Any, ...]
    abort: bool


def batch_transactions(seed: int, index: int) -> list[CrashTx]:
    """Batch ``index`` of the workload (1-based): the same for the same ``seed`` and ``index``."""
    from ringcore.execution.resource import READ, WRITE, Access

    rng = random.Random(f"{seed}:{index}")
    txs = []
    for t in range(rng.randint(1, 16)):
        accesses = tuple(Access(rng.randrange(RESOURCES), WRITE if rng.random() < 0.7 else READ)
                         for _ in range(rng.randint(0, 3)))
        txs.append(CrashTx(f"{index}.{t}", accesses, rng.random() < 0.1))
    return txs


def derived(name: str, seen: Sequence[tuple[int, int, bytes]], rid: int) -> bytes:
    """What a transaction writes to ``rid``: a function of its name and everything it saw, 8 to 71 bytes."""
    h = hashlib.sha256(repr((name, sorted(seen), rid)).encode()).digest()
    return (h * 3)[: 8 + h[0] % 64]


def _merged(accesses: Iterable[Any]) -> list[tuple[int, bool]]:
    order: dict[int, bool] = {}
    for rid, kind in accesses:
        order[rid] = order.get(rid, False) or kind.name == "WRITE"
    return list(order.items())


class CrashVm:
    """Executes the workload: every WRITE handle gets :func:`derived` data; ``abort`` raises after writing."""

    concurrent = False

    def process_transaction(self, tx: CrashTx, handles: Sequence[Any]) -> None:
        seen = [(h.id, h.version, h.data) for h in handles]
        for h in handles:
            if h.access_type.name == "WRITE":
                h.write(derived(tx.name, seen, h.id))
        if tx.abort:
            raise RuntimeError(f"{tx.name} aborts")


class Reference:
    """The workload run one transaction at a time: the state after every batch, and each batch's diffs."""

    _EVERY = 64  # a copy of the state every this many batches, so state(k) folds at most that many

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.diffs: list[dict[int, tuple[int, int, bytes]]] = [{}]  # per batch: rid -> (before, after, data)
        self._state: dict[int, tuple[int, bytes]] = {}  # after batch len(diffs) - 1
        self._checkpoints: dict[int, dict[int, tuple[int, bytes]]] = {0: {}}

    def _extend(self, k: int) -> None:
        while len(self.diffs) <= k:
            index = len(self.diffs)
            state = self._state
            head = {}
            for tx in batch_transactions(self.seed, index):
                acc = _merged(tx.accesses)
                seen = [(rid, *state.get(rid, (0, b""))) for rid, _ in acc]
                if tx.abort:
                    continue
                for rid, write in acc:
                    if write:
                        version, _ = state.get(rid, (0, b""))
                        head.setdefault(rid, version)
                        state[rid] = (version + 1, derived(tx.name, seen, rid))
            self.diffs.append({rid: (before, state[rid][0], state[rid][1]) for rid, before in head.items()})
            if index % self._EVERY == 0:
                self._checkpoints[index] = dict(state)

    def state(self, k: int) -> dict[int, tuple[int, bytes]]:
        """``{rid: (version, data)}`` after batch ``k`` (resources that exist)."""
        self._extend(k)
        base = k - k % self._EVERY
        state = dict(self._checkpoints[base])
        for i in range(base + 1, k + 1):
            for rid, (_, after, data) in self.diffs[i].items():
                state[rid] = (after, data)
        return state

    def rollback_pointers(self, k: int) -> dict[bytes, bytes]:
        """The ROLLBACK_PTR space after batch ``k``: ``batch + rid`` -> ``before + after``, as bytes."""
        self._extend(k)
        return {_U64.pack(batch) + _rid_key(rid): _U64x2.pack(before, after)
                for batch in range(1, k + 1) for rid, (before, after, _) in self.diffs[batch].items()}

    def batch_diffs(self, index: int) -> dict[int, tuple[int, int, bytes]]:
        """``{rid: (before, after, data)}`` of batch ``index``."""
        self._extend(index)
        return self.diffs[index]


# -- the child --------------------------------------------------------------------------------------


def _child(path: str, sync: bool, seed: int) -> None:
    """Run the workload until killed, reporting on stdout: ``O`` (opening), ``R`` + k (recovered at
    batch k), ``C`` + i (batch i seen committed)."""
    from ringcore.execution.manager import RuntimeManager

    from .store import RocksDBStore

    out = sys.stdout.fileno()
    os.write(out, b"O" + _U64.pack(0))
    store = RocksDBStore(path, sync=sync)
    m = RuntimeManager(CrashVm(), store, workers=2)
    os.write(out, b"R" + _U64.pack(m.last_committed))
    index = m.last_committed
    window: deque[Any] = deque()
    while True:
        index += 1
        batch = m.schedule(batch_transactions(seed, index))
        if batch.index != index:
            raise AssertionError(f"scheduled batch {index} got index {batch.index}")
        window.append(batch)
        while window and (window[0].was_committed or len(window) > WINDOW):
            done = window.popleft()
            if not done.wait_committed(60):
                raise AssertionError(f"batch {done.index} was canceled")
            os.write(out, b"C" + _U64.pack(done.index))


# -- checking a store -------------------------------------------------------------------------------


class CrashCheckError(AssertionError):
    """A recovered store is not at a batch boundary the harness accepts."""


def _dump(store: Any, space: int) -> dict[bytes, bytes]:
    from ringcore.execution.state import StateSpace

    return dict(store.prefix_iter(StateSpace(space), b""))


def _expect(cond: bool, what: str) -> None:
    if not cond:
        raise CrashCheckError(what)


def check_store(store: Any, ref: Reference, *, at_least: int, recovered: bool) -> tuple[int, int]:
    """Check ``store`` against the reference as described in the module docstring.

    :param at_least: the last batch the writer saw committed.
    :param recovered: whether a RuntimeManager has opened the store since the crash (then
        nothing of a later batch may be left).
    :returns: ``(k, pending)``: the batch the store is at and how many batches after it left data.
    :raises CrashCheckError: what is wrong, with the batch and resource.
    """
    meta = _dump(store, _META)
    k = _U64.unpack(meta.get(b"last_committed", _U64.pack(0)))[0]
    persisted = _U64.unpack(meta.get(b"last_persisted", _U64.pack(0)))[0]
    _expect(k >= at_least, f"the store is at batch {k}, but the writer had seen batch {at_least} committed")
    state = ref.state(k)
    latest = _dump(store, _LATEST)
    want = {_rid_key(rid): _U64.pack(v) for rid, (v, _) in state.items()}
    if latest != want:
        wrong = sorted(set(latest.items()) ^ set(want.items()))[:3]
        raise CrashCheckError(f"at batch {k}, latest pointers differ from the reference (first differences: {wrong})")
    data = _dump(store, _DATA)
    for rid, (v, d) in state.items():
        _expect(data.get(_U64.pack(v) + _rid_key(rid)) == d,
                f"at batch {k}, resource {rid}: the data of version {v} is missing or differs")
    rollback = _dump(store, _ROLLBACK)
    committed_pointers = {}
    pending_batches = set()
    for key, value in rollback.items():
        batch = _U64.unpack(key[:8])[0]
        if batch <= k:
            committed_pointers[key] = value
            continue
        rid = _U64.unpack(key[9:17])[0]
        diff = ref.batch_diffs(batch).get(rid)
        _expect(not recovered, f"after recovery, a rollback pointer of batch {batch} (after {k}) is left")
        _expect(batch <= persisted, f"a rollback pointer of batch {batch}, after last_persisted {persisted}")
        _expect(diff is not None and _U64x2.unpack(value) == diff[:2],
                f"the rollback pointer of uncommitted batch {batch}, resource {rid} is {_U64x2.unpack(value)}, the "
                f"reference diff is {diff[:2] if diff else None}")
        _expect(data.get(_U64.pack(diff[1]) + key[8:]) == diff[2],
                f"batch {batch} (persisted, not committed): resource {rid}'s data is missing or differs")
        pending_batches.add(batch)
    want_pointers = ref.rollback_pointers(k)
    if committed_pointers != want_pointers:
        wrong = sorted(set(committed_pointers.items()) ^ set(want_pointers.items()))[:3]
        raise CrashCheckError(f"at batch {k}, the rollback pointers of committed batches differ from the "
                              f"reference (first differences: {wrong})")
    named = {value[8:] + key[8:] for key, value in rollback.items()}  # the version each pointer wrote + rid
    orphans = set(data) - named
    _expect(not orphans, f"data versions no rollback pointer names (orphans): {sorted(orphans)[:3]}")
    return k, len(pending_batches)


# -- the parent -------------------------------------------------------------------------------------


@dataclasses.dataclass
class TrialResult:
    """One kill and what the store looked like afterwards."""

    trial: int
    sync: bool
    delay: float
    """Seconds between the child starting to open the store and the kill."""
    phase: str
    """Where the kill landed: ``opening`` (opening or recovering the store) or ``running``."""
    observed: int
    """The last batch known committed when the kill landed: the last one the child reported, or
    the batch the store was at when the child started."""
    batch: int
    """The batch the store was at after the kill (``k``)."""
    pending: int
    """Batches after ``k`` whose data the kill left (persisted, never committed)."""
    rolled_back_to: int
    error: str | None = None


@dataclasses.dataclass
class CrashReport:
    """Every trial of a run."""

    trials: list[TrialResult]
    seconds: float
    path: str

    @property
    def ok(self) -> bool:
        """Every recovery was at an accepted batch boundary."""
        return bool(self.trials) and all(t.error is None for t in self.trials)

    def summary(self) -> str:
        """One paragraph: kills, where they landed, what recovery found."""
        n = len(self.trials)
        failed = [t for t in self.trials if t.error]
        opening = sum(t.phase == "opening" for t in self.trials)
        pending = sum(t.pending > 0 for t in self.trials)
        synced = sum(t.sync for t in self.trials)
        ahead = sum(t.batch > t.observed for t in self.trials)  # committed, but not yet seen by the child
        return (f"{n} kills ({synced} with sync=True) in {self.seconds:.1f} s: {opening} while opening or "
                f"recovering the store, {n - opening} while committing; {pending} left data of persisted, "
                f"uncommitted batches; {ahead} recovered past the last commit the writer had seen; "
                + ("every recovery was exactly at a committed batch, rollback_to worked after each"
                   if not failed else f"{len(failed)} FAILED: {failed[0].error}"))


def _read_records(stream: Any, records: list[tuple[bytes, int]]) -> None:
    buf = b""
    while True:
        chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
        if not chunk:
            return
        buf += chunk
        n = len(buf) // 9 * 9
        for i in range(0, n, 9):
            records.append((buf[i:i + 1], _U64.unpack(buf[i + 1:i + 9])[0]))
        buf = buf[n:]


def _trial(path: Path, ref: Reference, trial: int, sync: bool, rng: random.Random, max_delay: float,
           floor: int) -> TrialResult:
    """One kill. ``floor``: the batch the store was at when the child started (it never goes back)."""
    from ringcore.execution.manager import RuntimeManager

    from .store import RocksDBStore

    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen([sys.executable, "-m", "ringcore_rocksdb.crash", "--child", str(path),
                             "--sync", "on" if sync else "off", "--seed", str(ref.seed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    records: list[tuple[bytes, int]] = []
    reader = threading.Thread(target=_read_records, args=(proc.stdout, records), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while not records and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    if not records:
        proc.kill()
        _, err = proc.communicate()
        raise CrashCheckError(f"the child never started opening the store: {err.decode(errors='replace')[-2000:]}")
    # One kill in five aims at the first 50 ms: opening the store, and the recovery a RuntimeManager runs.
    delay = rng.uniform(0.0, min(0.05, max_delay)) if rng.random() < 0.2 else rng.uniform(0.0, max_delay)
    time.sleep(delay)
    early = proc.poll()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join(30)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if early is not None:
        raise CrashCheckError(f"the child stopped by itself (status {early}) before the kill: {err[-2000:]}")
    observed = max((i for tag, i in records if tag == b"C"), default=0)
    recovered_at = next((i for tag, i in records if tag == b"R"), None)
    phase = "opening" if recovered_at is None else "running"
    observed = max(observed, recovered_at or 0, floor)

    with RocksDBStore(path) as store:
        k, pending = check_store(store, ref, at_least=observed, recovered=False)
        with RuntimeManager(CrashVm(), store, workers=2) as m:
            _expect(m.last_committed == k, f"the manager opened the store at {m.last_committed}, not {k}")
            check_store(store, ref, at_least=k, recovered=True)
            # Mostly a few batches back; sometimes far (which also keeps the store small).
            j = rng.randint(0, k) if rng.random() < 0.3 else rng.randint(max(0, k - 5), k)
            m.rollback_to(j)
            state = ref.state(j)
            for rid in range(RESOURCES):
                got = m.read(rid)
                _expect((got.version, got.data) == state.get(rid, (0, b"")),
                        f"after rollback_to({j}), resource {rid} reads {got.version}, not the reference's")
        after, _ = check_store(store, ref, at_least=j, recovered=True)
        _expect(after == j, f"rollback_to({j}) left the store at batch {after}")
    return TrialResult(trial, sync, delay, phase, observed, k, pending, j)


def run_trials(trials: int, *, syncs: Sequence[bool] = (True, False), directory: str | os.PathLike[str] | None = None,
               seed: int | None = None, max_delay: float = 0.4,
               out: Callable[[str], Any] | None = None) -> CrashReport:
    """Run ``trials`` kills on one store (alternating the ``syncs`` settings); check each recovery.

    :param directory: where the store lives (kept); None: a temporary directory, removed afterwards.
        A store the workload did not write (another seed) fails the first check.
    :param max_delay: the longest wait, in seconds, between the child starting to open the
        store and the kill.
    :param out: called with a line per trial and the summary.
    """
    if type(trials) is not int or trials < 1:
        raise ValueError(f"trials must be an int >= 1, got {trials!r}")
    tmp = None
    if directory is None:
        tmp = tempfile.mkdtemp(prefix="ringcore-crash-")
        path = Path(tmp) / "store"
    else:
        from ringcore.errors import StoreError

        from ._layout import check_directory

        path = Path(directory).absolute()
        # Refuse what is not a store before any child runs; a store of an earlier run needs its seed.
        if check_directory(path, create=True, read_only=False) == "existing" and seed is None:
            raise StoreError(f"{path} holds a store: to go on with the crash-test run that wrote it, pass the "
                             f"seed that run printed (--seed); or name a new directory")
    seed = random.randrange(1 << 32) if seed is None else seed
    rng = random.Random(seed)
    ref = Reference(seed)
    results: list[TrialResult] = []
    floor = 0
    t0 = time.perf_counter()
    if out:
        out(f"crash harness: {trials} kills, seed {seed}, store {path}")
    try:
        for i in range(trials):
            sync = syncs[i % len(syncs)]
            try:
                r = _trial(path, ref, i + 1, sync, rng, max_delay, floor)
                floor = r.rolled_back_to
            except CrashCheckError as exc:
                r = TrialResult(i + 1, sync, 0.0, "?", 0, 0, 0, 0, error=str(exc))
            results.append(r)
            if out:
                line = (f"  kill {r.trial:>4} sync={'on ' if r.sync else 'off'} after {r.delay * 1000:5.0f} ms "
                        f"({r.phase}): writer saw {r.observed:>5}, store at {r.batch:>5}")
                line += f", {r.pending} pending removed" if r.pending else ""
                line += f", rolled back to {r.rolled_back_to}" if r.rolled_back_to != r.batch else ""
                out(line if r.error is None else f"  kill {r.trial}: FAILED: {r.error}")
            if r.error is not None:
                break
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    report = CrashReport(results, time.perf_counter() - t0, str(path))
    if out:
        out(report.summary())
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ringcore_rocksdb.crash [--trials N] [--sync on|off|both] [--dir DIR] [--seed S]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--sync", choices=("on", "off", "both"), default="both")
    parser.add_argument("--dir", default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--max-delay", type=float, default=0.4, help=argparse.SUPPRESS)
    parser.add_argument("--child", metavar="PATH", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        _child(args.child, args.sync == "on", args.seed)
        return 0
    syncs = {"on": (True,), "off": (False,), "both": (True, False)}[args.sync]
    report = run_trials(args.trials, syncs=syncs, directory=args.dir, seed=args.seed, max_delay=args.max_delay,
                        out=print)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
