"""RuntimeManager: schedules batches of transactions, executes them in parallel, persists and commits them.

How it works, in one place:

- **Chains.** Every resource has a head: the last access scheduled to it, or
  its committed state, or nothing (read it from the store). A new access links behind the head. A READ passes
  its input on as soon as it has it, so reads never hold up later writers; a
  WRITE passes on what its transaction wrote (its input again if the
  transaction aborted or did not write) once the transaction has run. A
  transaction is runnable when every one of its accesses has an input.
  Versions are immutable snapshots, so a reader that runs after a later writer
  still sees its own input.
- **Layout.** A batch keeps its accesses in flat lists (key, id, READ/WRITE,
  input, output, successor, ...), and an access is named by an int: the
  batch's serial number (never reused, unlike indexes after a rollback) shifted
  left 32 bits, plus its position. Chains are ints, not objects, so the cyclic
  garbage collector has almost nothing to scan however many transactions are
  in flight; handles exist only while the VM runs a transaction.
- **Workers** (threads) take runnable transactions in chunks from one ready
  queue, run the VM outside every lock, then, under the engine lock, pass the
  outputs on, which may make successors runnable; idle workers sleep on a
  doorbell and are rung when work appears.
- **First reads** (an access with no head) come from the store: inline while
  scheduling, or through a pool of reader threads (``readers``), for stores
  where a read is slow.
- **The storage writer** (one thread) takes every batch that finished
  processing since its last round (group commit): one store commit writes all
  their data and rollback pointers (persisted), then one more flips the latest
  pointers of every batch that is now next in order (committed), with
  ``last_committed`` in the same write. A crash at any instant leaves the store
  at a batch boundary; the next manager removes what an uncommitted batch left.
- **Rollback** cancels batches after the target, unlinks them from the chains,
  and undoes their store writes in one commit (see
  :mod:`~ringcore.execution.rollback`).

Locks, always taken in this order: ``_api_lock`` (schedule, rollback,
shutdown), ``_store_lock`` (store writes and rollbacks), ``_lock`` (the engine:
chains, ready queue, counters), the batches' stage condition.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import struct
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable
from typing import Any

from .._sync import Doorbell
from ..errors import (
    ExecutionError,
    ManagerClosedError,
    RingTimeoutError,
    RollbackError,
    RuntimeFailedError,
    StoreError,
)
from ._prepare import INT_KEY as _INT_KEY
from ._prepare import prepare as _prepare
from .batch import COMMITTED, PERSISTED, PROCESSED, RuntimeBatch, signal
from .resource import READ, WRITE, ResourceId, decode_resource_id, encode_resource_id, normalize_resource_id
from .rollback import open_store, undo_batches
from .state import (
    META_LAST_COMMITTED,
    META_LAST_PERSISTED,
    StateSpace,
    VersionedState,
    decode_u64,
    encode_u64,
)
from .store import MemoryStore, Store
from .vm import AccessHandle, batch_function, notarize_function

__all__ = ["RuntimeManager"]

_DATA, _LATEST, _ROLLBACK, _META = StateSpace.DATA, StateSpace.LATEST_PTR, StateSpace.ROLLBACK_PTR, StateSpace.META
_U64x2 = struct.Struct(">QQ").pack
_SHIFT = 32  # an access id or ready entry is (batch serial << 32) | position in the batch
_MASK = (1 << _SHIFT) - 1
_IDLE_WAIT = 0.5  # seconds an idle thread sleeps before it looks at the stop flag again
_READ_CHUNK = 256
_SWEEP_MIN = 1 << 18  # outputs of committed batches kept before heads are swept, at least


def _ends(rids: list[Any]) -> tuple[dict[Any, int], dict[Any, int]]:
    """The position of each resource's first and last access in a batch."""
    firsts: dict[Any, int] = {}
    lasts: dict[Any, int] = {}
    for i, rid in enumerate(rids):
        if rid not in firsts:
            firsts[rid] = i
        lasts[rid] = i
    return firsts, lasts


def _put_many(wb: Any, space: StateSpace, keys: list[bytes], values: list[bytes]) -> None:
    """``wb.put`` for every pair, through the write batch's ``put_many`` when it has one."""
    if not keys:
        return
    put_many = getattr(wb, "put_many", None)
    if put_many is not None:
        put_many(space, keys, values)
    else:
        put = wb.put
        for k, v in zip(keys, values):
            put(space, k, v)


def _key_of(rid: Any) -> bytes:
    """The canonical encoding of a normalised resource id (ints without a function call into resource.py)."""
    if type(rid) is int:
        return _INT_KEY(1, rid)
    return encode_resource_id(rid)


class RuntimeManager:
    """Runs batches of transactions through a VM over a store, in parallel, committed in order.

    :param vm: a VM object (:class:`~ringcore.execution.vm.VmInterface` or anything with
        ``process_transaction``), or the name of a registered VM.
    :param store: a :class:`~ringcore.execution.store.Store`, the name of a registered
        store, or None for a new :class:`~ringcore.execution.store.MemoryStore`. A store
        the manager creates (by name or None) is closed by :meth:`shutdown`; one you
        pass in stays open.
    :param workers: worker threads executing transactions (>= 1).
    :param readers: reader threads for first reads from the store; 0 reads inline while
        scheduling. None: the store's ``preferred_readers`` (2 if it has none).
    :param chunk: the most transactions a worker takes at once (one ``process_batch`` call).
    :param max_in_flight: how many transactions may be scheduled and not yet committed;
        ``schedule`` waits while a new batch would exceed it (a batch larger than the
        limit is admitted alone). Bounds memory, and the collector's work with it.
    :param cache_limit: how many committed resource states to keep in memory for the
        next access to them (beyond it, older ones are read from the store again).
    :param vm_options, store_options: keyword arguments for a VM or store created by name.
    :raises StoreError: the store holds another schema version.

    Use it as a context manager (``with`` or ``async with``); leaving the block
    commits everything scheduled and stops every thread.
    """

    def __init__(self, vm: Any, store: Store | str | None = None, *, workers: int = 2,
                 readers: int | None = None, chunk: int = 256, max_in_flight: int = 100_000,
                 cache_limit: int = 1_000_000,
                 vm_options: dict[str, Any] | None = None, store_options: dict[str, Any] | None = None) -> None:
        for name, value, low in (("workers", workers, 1), ("chunk", chunk, 1), ("max_in_flight", max_in_flight, 1),
                                 ("cache_limit", cache_limit, 0)):
            if type(value) is not int or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        self.vm = self._make_vm(vm, vm_options or {})
        self._owns_store = not hasattr(store, "get")
        self.store: Store = self._make_store(store, store_options or {})
        if readers is None:
            readers = getattr(self.store, "preferred_readers", 2)
        if type(readers) is not int or readers < 0:
            raise ValueError(f"readers must be an int >= 0, got {readers!r}")
        self.workers = workers
        self.readers = readers
        self._chunk = chunk
        self._max_in_flight = max_in_flight
        self._in_flight_txs = 0
        self._cache_limit = cache_limit
        self._process = self.vm.process_transaction
        self._process_batch = batch_function(self.vm)
        self._notarize = notarize_function(self.vm)
        self._concurrent = bool(getattr(self.vm, "concurrent", True))

        try:
            self._marks = open_store(self.store)
        except Exception:
            if self._owns_store:
                self.store.close()
            raise
        self._api_lock = threading.RLock()
        self._store_lock = threading.Lock()
        self._lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        self._heads: dict[Any, Any] = {}  # resource id -> last access id, or committed VersionedState
        self._ready: deque[int] = deque()
        self._idle: list[Doorbell] = []
        self._inflight: dict[int, RuntimeBatch] = {}  # by index: scheduled, not yet committed or canceled
        self._by_serial: dict[int, RuntimeBatch] = {}  # the same batches by serial number
        self._serials = itertools.count(1)
        self._retired: dict[int, list[Any]] = {}  # serial -> outputs of a committed batch heads may name
        self._retired_size = 0
        self._recent: weakref.WeakValueDictionary[int, RuntimeBatch] = weakref.WeakValueDictionary()
        self._to_persist: list[RuntimeBatch] = []
        self._waiting_commit: dict[int, RuntimeBatch] = {}
        self._last_index = self._marks.last_committed
        self._next_commit = self._marks.last_committed + 1
        self._failure: BaseException | None = None
        self._stopping = False
        self._closed = False
        self._writer_bell = Doorbell()
        self._read_q: queue.SimpleQueue[list[int] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        tag = f"{id(self) & 0xFFFF:04x}"
        for i in range(workers):
            bell = Doorbell()
            self._start(f"ringcore-exec-{tag}-worker-{i}", self._work, bell)
        for i in range(readers):
            self._start(f"ringcore-exec-{tag}-reader-{i}", self._read_loop)
        self._start(f"ringcore-exec-{tag}-writer", self._write_loop)

    # -- construction --------------------------------------------------------------------

    @staticmethod
    def _make_vm(vm: Any, options: dict[str, Any]) -> Any:
        if isinstance(vm, str):
            from ..plugins import get_registry

            vm = get_registry().vm_spec(vm).factory(**options)
        if not callable(getattr(vm, "process_transaction", None)):
            raise TypeError(f"{vm!r} is not a VM: it has no process_transaction(tx, handles) method; "
                            f"subclass ringcore.execution.VmInterface")
        return vm

    @staticmethod
    def _make_store(store: Any, options: dict[str, Any]) -> Store:
        if store is None:
            return MemoryStore(**options)
        if isinstance(store, str):
            from ..plugins import get_registry

            return get_registry().store_spec(store).factory(**options)
        for method in ("get", "prefix_iter", "write_batch", "commit", "close"):
            if not callable(getattr(store, method, None)):
                raise TypeError(f"{store!r} is not a Store: it has no {method}() method")
        return store

    def _start(self, name: str, target: Any, *args: Any) -> None:
        t = threading.Thread(target=self._guard, args=(target, *args), name=name, daemon=True)
        self._threads.append(t)
        t.start()

    def _guard(self, target: Any, *args: Any) -> None:
        try:
            target(*args)
        except BaseException as exc:  # noqa: BLE001 - a runtime thread must never die silently
            self._fail(exc)

    # -- public state --------------------------------------------------------------------

    @property
    def last_index(self) -> int:
        """The index of the last batch scheduled (after a rollback: its target)."""
        return self._last_index

    @property
    def last_committed(self) -> int:
        """The index of the last committed batch (0: none)."""
        return self._marks.last_committed

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def failure(self) -> BaseException | None:
        """The store error that stopped the runtime, if one did."""
        return self._failure

    @property
    def threads(self) -> tuple[threading.Thread, ...]:
        """The manager's worker, reader and writer threads."""
        return tuple(self._threads)

    def in_flight(self) -> list[RuntimeBatch]:
        """Batches scheduled and not yet committed or canceled, in index order."""
        with self._lock:
            return [self._inflight[i] for i in sorted(self._inflight)]

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("failed" if self._failure else "running")
        return (f"<RuntimeManager {state}: {type(self.vm).__name__} over {type(self.store).__name__}, "
                f"{self.workers} workers, batches 1..{self._last_index}, committed {self.last_committed}>")

    # -- scheduling ------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise ManagerClosedError("the RuntimeManager was shut down; create a new one")
        if self._failure is not None:
            raise RuntimeFailedError(
                f"the runtime stopped after a store error ({type(self._failure).__name__}: {self._failure}); "
                f"shut it down and open a new manager on the store") from self._failure

    def schedule(self, transactions: Iterable[Any], *, timeout: float | None = None) -> RuntimeBatch:
        """Schedule ``transactions`` as the next batch and return it.

        Each transaction is any object with ``accesses`` (see
        :mod:`~ringcore.execution.resource`). The batch runs as soon as its
        transactions' inputs are available, in parallel with earlier batches
        where they touch different resources. Returns at once unless
        ``max_in_flight`` transactions are already in flight; then it waits
        for earlier batches to commit.

        :raises InvalidTransactionError: a transaction is malformed (the error names it
            and the offending value); nothing is scheduled.
        :raises ringcore.RingTimeoutError: no room for the batch within ``timeout`` seconds.
        :raises ManagerClosedError: after :meth:`shutdown`.
        """
        txs = tuple(transactions)
        prepared = _prepare(txs)
        self._admit(len(txs), timeout)
        with self._api_lock:
            self._check_usable()
            failure = None
            with self._lock:
                self._in_flight_txs += len(txs)
                index = self._last_index + 1
                self._last_index = index
                batch = RuntimeBatch(index, txs, self._cond)
                batch._serial = serial = next(self._serials)
                self._inflight[index] = batch
                self._by_serial[serial] = batch
                self._recent[index] = batch
                ready, reads = self._link(batch, *prepared)
                if reads and not self.readers:
                    try:
                        self._give_first_reads(batch, reads, ready)
                    except Exception as exc:  # noqa: BLE001 - a store error stops the runtime
                        failure = exc
                    reads = []
                empty = not txs
                if empty:
                    self._to_persist.append(batch)
                if ready:
                    self._ready.extend(ready)
                    self._wake(len(self._ready))
            if failure is not None:
                self._fail(failure)
                self._check_usable()
            for i in range(0, len(reads), _READ_CHUNK):
                self._read_q.put(reads[i:i + _READ_CHUNK])
            if empty:
                self._processed([batch])
        return batch

    async def schedule_async(self, transactions: Iterable[Any], *, timeout: float | None = None) -> RuntimeBatch:
        """``await`` form of :meth:`schedule` (waits for room without blocking the event loop)."""
        txs = tuple(transactions)
        if self._in_flight_txs and self._in_flight_txs + len(txs) > self._max_in_flight:
            return await asyncio.to_thread(self.schedule, txs, timeout=timeout)
        return self.schedule(txs, timeout=timeout)

    def _admit(self, n: int, timeout: float | None) -> None:
        """Wait until a batch of ``n`` transactions fits under ``max_in_flight``."""
        if not self._in_flight_txs or self._in_flight_txs + n <= self._max_in_flight:
            return
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 or None, got {timeout}")

        def room() -> bool:
            return (self._closed or self._failure is not None or not self._in_flight_txs
                    or self._in_flight_txs + n <= self._max_in_flight)

        with self._cond:
            if not self._cond.wait_for(room, timeout):
                raise RingTimeoutError(f"no room to schedule {n} transactions within {timeout} s: "
                                       f"{self._in_flight_txs} are in flight (max_in_flight="
                                       f"{self._max_in_flight})")

    def _link(self, batch: RuntimeBatch, rids: list[Any], writes: list[bool],
              txof: list[int], tstart: list[int]) -> tuple[list[int], list[int]]:
        """Link every access of ``batch`` behind its resource's head (engine lock held).

        :returns: the ready entries of the transactions runnable at once, and the ids of
            the accesses whose input must be read from the store.
        """
        m = len(rids)
        serial = batch._serial
        base = serial << _SHIFT
        heads = self._heads
        by_serial = self._by_serial
        retired = self._retired
        inputs: list[Any] = [None] * m
        outs: list[Any] = [None] * m
        nxt = [-1] * m
        preds: list[Any] = [None] * m
        missing = [0] * (len(tstart) - 1)
        reads: list[int] = []
        vs = tuple  # a committed state: (id, version, data)
        for i in range(m):
            key = rids[i]
            pred = heads.get(key)
            heads[key] = base | i
            if pred is None:
                reads.append(base | i)
                missing[txof[i]] += 1
            elif type(pred) is vs:
                preds[i] = inputs[i] = pred
                if not writes[i]:
                    outs[i] = pred
            else:
                ps = pred >> _SHIFT
                pi = pred & _MASK
                if ps == serial:
                    out = outs[pi]
                    if out is None:
                        nxt[pi] = base | i
                        missing[txof[i]] += 1
                    else:
                        inputs[i] = out
                        if not writes[i]:
                            outs[i] = out
                else:
                    pb = by_serial.get(ps)
                    if pb is not None:  # an access of a batch in flight
                        preds[i] = pred
                        out = pb._outs[pi]
                        if out is None:
                            pb._next[pi] = base | i
                            missing[txof[i]] += 1
                        else:
                            inputs[i] = out
                            if not writes[i]:
                                outs[i] = out
                    else:
                        done = retired.get(ps)
                        if done is None:  # forgotten: read the committed state
                            reads.append(base | i)
                            missing[txof[i]] += 1
                        else:  # the output of an access of a committed batch
                            preds[i] = inputs[i] = out = done[pi]
                            if not writes[i]:
                                outs[i] = out
        batch._rids = rids
        batch._writes = writes
        batch._txof = txof
        batch._tstart = tstart
        batch._inputs = inputs
        batch._outs = outs
        batch._next = nxt
        batch._preds = preds
        batch._missing = missing
        batch._run = (tstart, rids, writes, inputs)
        ready = [base | j for j, c in enumerate(missing) if not c]
        return ready, reads

    def _give_first_reads(self, batch: RuntimeBatch, reads: list[int], ready: list[int]) -> None:
        """Read the inputs of ``reads`` (accesses of ``batch`` with no head) and deliver them
        (engine lock held; the scheduling thread's inline path)."""
        rids, writes, txof = batch._rids, batch._writes, batch._txof
        inputs, outs, nxt, missing = batch._inputs, batch._outs, batch._next, batch._missing
        base = batch._serial << _SHIFT
        states = self._load_many([rids[aid & _MASK] for aid in reads])
        for aid, state in zip(reads, states):
            i = aid & _MASK
            inputs[i] = state
            j = txof[i]
            c = missing[j] - 1
            missing[j] = c
            if not c:
                ready.append(base | j)
            if not writes[i]:
                outs[i] = state
                succ = nxt[i]
                if succ >= 0:
                    self._deliver(succ, state, ready)

    def _deliver(self, aid: int, state: tuple[Any, int, bytes], ready: list[int]) -> None:
        """Give access ``aid`` its input; pass it down the chain through READ accesses (engine lock held)."""
        by_serial = self._by_serial
        while True:
            serial = aid >> _SHIFT
            b = by_serial.get(serial)
            if b is None:  # canceled
                return
            i = aid & _MASK
            b._inputs[i] = state
            j = b._txof[i]
            missing = b._missing
            c = missing[j] - 1
            missing[j] = c
            if not c:
                ready.append((serial << _SHIFT) | j)
            if b._writes[i]:
                return
            b._outs[i] = state
            aid = b._next[i]
            if aid < 0:
                return

    def _wake(self, available: int) -> None:
        """Ring idle workers for ``available`` runnable transactions (engine lock held).

        For a VM that is not ``concurrent``, one busy worker is as many as helps: ring one
        only when none is busy.
        """
        idle = self._idle
        if not self._concurrent:
            if idle and len(idle) == self.workers and available > 0:
                idle.pop().ring()
            return
        while idle and available > 0:
            idle.pop().ring()
            available -= self._chunk

    # -- workers --------------------------------------------------------------------------

    def _work(self, bell: Doorbell) -> None:
        lock = self._lock
        rq = self._ready
        idle = self._idle
        workers = self.workers
        limit = self._chunk
        run = self._run_batch if self._process_batch is not None else self._run_each
        concurrent = self._concurrent
        done: list[tuple[RuntimeBatch, int, list[AccessHandle]]] | None = None
        while True:
            processed: list[RuntimeBatch] = []
            with lock:
                if done:
                    processed = self._complete(done)
                n = len(rq)
                if n:
                    # Share the queue with the other workers, unless one busy worker is all
                    # that helps (a VM that is not concurrent).
                    take = (n // workers or 1) if concurrent else n
                    if take > limit:
                        take = limit
                    pop = rq.popleft
                    chunk = [pop() for _ in range(take)]
                    if rq and idle and concurrent:
                        idle.pop().ring()
                else:
                    chunk = None
                    if self._stopping:
                        return
                    if bell not in idle:
                        idle.append(bell)
            if processed:
                self._processed(processed)
            if chunk is None:
                done = None
                bell.wait(_IDLE_WAIT)
            else:
                done = run(chunk)

    def _run_each(self, chunk: list[int]) -> list[tuple[RuntimeBatch, int, list[AccessHandle]]]:
        """Run every transaction of ``chunk`` whose batch is live, one VM call each (no lock held)."""
        by_serial = self._by_serial
        process = self._process
        new = object.__new__
        cls = AccessHandle
        done: list[tuple[RuntimeBatch, int, list[AccessHandle]]] = []
        append = done.append
        current = -1
        b: Any = None
        for entry in chunk:
            serial = entry >> _SHIFT
            if serial != current:
                current = serial
                b = by_serial.get(serial)
                # One attribute read: a rollback may release a canceled batch's lists meanwhile.
                run = None if b is None else b._run
                if run is not None:
                    tstart, rids, writes, inputs = run
                    txs, effects = b.transactions, b._effects
            if run is None:
                continue
            j = entry & _MASK
            i = tstart[j]
            if tstart[j + 1] - i == 2:  # the common shape, without a loop
                h = new(cls)
                h._rid = rids[i]
                h._write = writes[i]
                h._input = inputs[i]
                h._new = None
                h._live = True
                h2 = new(cls)
                h2._rid = rids[i + 1]
                h2._write = writes[i + 1]
                h2._input = inputs[i + 1]
                h2._new = None
                h2._live = True
                hs = [h, h2]
            else:
                hs = []
                for k in range(i, tstart[j + 1]):
                    h = new(cls)
                    h._rid = rids[k]
                    h._write = writes[k]
                    h._input = inputs[k]
                    h._new = None
                    h._live = True
                    hs.append(h)
            try:
                effects[j] = process(txs[j], hs)
            except Exception as exc:  # noqa: BLE001 - the transaction aborts; others go on
                b._errors[j] = exc
            for h in hs:
                h._live = False
            append((b, j, hs))
        return done

    def _run_batch(self, chunk: list[int]) -> list[tuple[RuntimeBatch, int, list[AccessHandle]]]:
        """Run every transaction of ``chunk`` whose batch is live in one ``process_batch`` call."""
        assert self._process_batch is not None
        by_serial = self._by_serial
        done: list[tuple[RuntimeBatch, int, list[AccessHandle]]] = []
        for entry in chunk:
            b = by_serial.get(entry >> _SHIFT)
            run = None if b is None else b._run  # one read: a rollback may release it meanwhile
            if run is None:
                continue
            j = entry & _MASK
            tstart, rids, writes, inputs = run
            hs = [AccessHandle(rids[i], WRITE if writes[i] else READ, inputs[i])
                  for i in range(tstart[j], tstart[j + 1])]
            done.append((b, j, hs))
        if not done:
            return done
        try:
            results = list(self._process_batch([b.transactions[j] for b, j, _ in done], [hs for _, _, hs in done]))
            if len(results) != len(done):
                raise ExecutionError(f"{type(self.vm).__name__}.process_batch returned {len(results)} results "
                                     f"for {len(done)} transactions; return one per transaction")
        except Exception as exc:  # noqa: BLE001 - every transaction of the call aborts
            results = [exc] * len(done)
        for (b, j, hs), result in zip(done, results):
            for h in hs:
                h._live = False
            if isinstance(result, Exception):
                b._errors[j] = result
            else:
                b._effects[j] = result
        return done

    def _complete(self, done: list[tuple[RuntimeBatch, int, list[AccessHandle]]]) -> list[RuntimeBatch]:
        """Pass executed transactions' outputs down their chains (engine lock held)."""
        ready: list[int] = []
        processed: list[RuntimeBatch] = []
        deliver = self._deliver
        current: Any = None
        count = 0  # transactions of ``current`` completed in this call
        for b, j, hs in done:
            if b is not current:
                if count:
                    current._pending -= count
                    if not current._pending:
                        processed.append(current)
                    count = 0
                if b._canceled:
                    current = None
                    continue
                current = b
                serial = b._serial
                base = serial << _SHIFT
                writes, inputs, outs, nxt = b._writes, b._inputs, b._outs, b._next
                txof, missing, tstart, errors = b._txof, b._missing, b._tstart, b._errors
            count += 1
            i = tstart[j]
            failed = j in errors if errors else False
            for h in hs:
                if writes[i]:
                    new = h._new
                    if new is None or failed:
                        out = inputs[i]
                    else:
                        out = (h._rid, inputs[i][1] + 1, new)
                        b._wrote = True
                    outs[i] = out
                    succ = nxt[i]
                    if succ >= 0:
                        if succ >> _SHIFT == serial:  # the successor is in the same batch: _deliver inlined
                            k = succ & _MASK
                            inputs[k] = out
                            t = txof[k]
                            c = missing[t] - 1
                            missing[t] = c
                            if not c:
                                ready.append(base | t)
                            if not writes[k]:
                                outs[k] = out
                                if nxt[k] >= 0:
                                    deliver(nxt[k], out, ready)
                        else:
                            deliver(succ, out, ready)
                i += 1
        if count:
            current._pending -= count
            if not current._pending:
                processed.append(current)
        if ready:
            self._ready.extend(ready)
        if processed:
            self._to_persist.extend(processed)
        return processed

    def _processed(self, batches: list[RuntimeBatch]) -> None:
        signal(self._cond, batches, stage=PROCESSED)
        self._writer_bell.ring()

    # -- reads -------------------------------------------------------------------------------

    def _load(self, rid: ResourceId) -> tuple[Any, int, bytes]:
        """The committed state of a resource, from the store, as ``(id, version, data)``."""
        key = _key_of(rid)
        store = self.store
        raw = store.get(_LATEST, key)
        if raw is None:
            return (rid, 0, b"")
        version = decode_u64(raw)
        data = store.get(_DATA, encode_u64(version) + key)
        if data is None:
            raise StoreError(f"the store's latest pointer of resource {rid!r} names version {version}, "
                             f"whose data is missing: the store was changed outside the runtime")
        return (rid, version, data)

    def _load_many(self, rids: list[Any]) -> list[tuple[Any, int, bytes]]:
        """The committed states of ``rids``, with two ``get_many`` calls when the store has it."""
        get_many = getattr(self.store, "get_many", None)
        if get_many is None:
            return [self._load(rid) for rid in rids]
        keys = [_INT_KEY(1, r) if type(r) is int else encode_resource_id(r) for r in rids]
        raws = get_many(_LATEST, keys)
        out: list[Any] = [(rid, 0, b"") if raw is None else None for rid, raw in zip(rids, raws)]
        found = [i for i, raw in enumerate(raws) if raw is not None]
        if found:
            versions = [decode_u64(raws[i]) for i in found]
            datas = get_many(_DATA, [encode_u64(v) + keys[i] for v, i in zip(versions, found)])
            for i, version, data in zip(found, versions, datas):
                if data is None:
                    raise StoreError(f"the store's latest pointer of resource {rids[i]!r} names version "
                                     f"{version}, whose data is missing: the store was changed outside the runtime")
                out[i] = (rids[i], version, data)
        return out

    def _read_loop(self) -> None:
        get = self._read_q.get
        by_serial = self._by_serial
        while True:
            try:
                chunk = get(timeout=_IDLE_WAIT)
            except queue.Empty:
                if self._stopping:
                    return
                continue
            if chunk is None:
                return
            wanted = []
            rids = []
            for aid in chunk:
                b = by_serial.get(aid >> _SHIFT)
                run = None if b is None else b._run  # one read: a rollback may release it meanwhile
                if run is not None:
                    wanted.append(aid)
                    rids.append(run[1][aid & _MASK])
            states = self._load_many(rids)
            ready: list[int] = []
            with self._lock:
                for aid, state in zip(wanted, states):
                    self._deliver(aid, state, ready)
                if ready:
                    self._ready.extend(ready)
                    self._wake(len(self._ready))

    def read(self, resource_id: ResourceId) -> VersionedState:
        """The committed state of ``resource_id`` (version 0 and empty data if it does not exist)."""
        if self._closed:
            raise ManagerClosedError("the RuntimeManager was shut down; read the store directly")
        encode_resource_id(resource_id)
        with self._store_lock:
            return VersionedState._make(self._load(normalize_resource_id(resource_id)))

    # -- storage writer ------------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            self._writer_bell.wait(_IDLE_WAIT)
            with self._store_lock:
                with self._lock:
                    group = self._to_persist
                    self._to_persist = []
                    stop = self._stopping
                group = [b for b in group if not b._canceled]
                if group:
                    self._persist(group)
                self._commit_next()
            if stop:
                return

    def _persist(self, group: list[RuntimeBatch]) -> None:
        """Write the data and rollback pointers of ``group`` in one commit (store lock held)."""
        store = self.store
        wb = store.write_batch()
        pack = encode_u64
        data_keys: list[bytes] = []
        data_values: list[bytes] = []
        rollback_keys: list[bytes] = []
        rollback_values: list[bytes] = []
        for batch in group:
            if self._notarize is not None:
                try:
                    batch.notarization = self._notarize(batch)
                except Exception as exc:  # noqa: BLE001 - kept on the batch, which still commits
                    batch.notarization_error = exc
            if not batch._wrote:  # nothing but reads (or aborted writes): no data, no pointers
                continue
            prefix = pack(batch.index)
            flip_keys, flip_values = batch._flip_keys, batch._flip_values
            diff_heads, diff_tails = batch._diff_heads, batch._diff_tails
            inputs, outs = batch._inputs, batch._outs
            firsts, lasts = _ends(batch._rids)
            for rid, first in firsts.items():
                tail = outs[lasts[rid]]
                head = inputs[first][1]
                version = tail[1]
                if version != head:
                    key = _INT_KEY(1, rid) if type(rid) is int else encode_resource_id(rid)
                    v = pack(version)
                    data_keys.append(v + key)
                    data_values.append(tail[2])
                    rollback_keys.append(prefix + key)
                    rollback_values.append(_U64x2(head, version))
                    flip_keys.append(key)
                    flip_values.append(v)
                    diff_heads.append(head)
                    diff_tails.append(tail)
        _put_many(wb, _DATA, data_keys, data_values)
        _put_many(wb, _ROLLBACK, rollback_keys, rollback_values)
        top = max(b.index for b in group)
        if top > self._marks.last_persisted:
            wb.put(_META, META_LAST_PERSISTED, pack(top))
        store.commit(wb)
        if top > self._marks.last_persisted:
            self._marks.last_persisted = top
        for batch in group:
            self._waiting_commit[batch.index] = batch
        signal(self._cond, group, stage=PERSISTED)

    def _commit_next(self) -> None:
        """Flip the latest pointers of every persisted batch that is next in order (store lock held)."""
        waiting = self._waiting_commit
        nxt = self._next_commit
        if nxt not in waiting:
            return
        group = []
        while nxt in waiting:
            group.append(waiting.pop(nxt))
            nxt += 1
        wb = self.store.write_batch()
        put = wb.put
        pack = encode_u64
        for batch in group:
            _put_many(wb, _LATEST, batch._flip_keys, batch._flip_values)
        put(_META, META_LAST_COMMITTED, pack(nxt - 1))
        self.store.commit(wb)
        self._next_commit = nxt
        self._marks.last_committed = nxt - 1
        with self._lock:
            for batch in group:
                # Heads may still name this batch's accesses: keep its outputs, which are now
                # committed states, until the next sweep resolves those heads.
                if batch._outs:
                    self._retired[batch._serial] = batch._outs
                    self._retired_size += len(batch._outs)
                del self._inflight[batch.index]
                del self._by_serial[batch._serial]
                self._in_flight_txs -= len(batch.transactions)
                batch._release()
            if self._retired_size > max(4 * len(self._heads), _SWEEP_MIN) or len(self._heads) > self._cache_limit:
                self._sweep()
        signal(self._cond, group, stage=COMMITTED)

    def _sweep(self) -> None:
        """Resolve heads that name accesses of committed batches into their states, forget those
        batches' outputs, and trim the cache to ``cache_limit`` (engine lock held).

        Runs when the kept outputs outnumber the heads four times, so its cost (one pass
        over the heads) is spread over at least four times as many accesses.
        """
        heads = self._heads
        retired = self._retired
        for key, v in heads.items():  # only values change: safe while iterating
            if type(v) is int:
                done = retired.get(v >> _SHIFT)
                if done is not None:
                    heads[key] = done[v & _MASK]
        retired.clear()
        self._retired_size = 0
        excess = len(heads) - self._cache_limit
        if excess > 0:  # forget the oldest committed states (a quarter more, so this stays rare)
            excess += self._cache_limit // 4
            victims = [k for k, v in heads.items() if type(v) is tuple]
            for k in itertools.islice(victims, excess):
                del heads[k]

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        with self._lock:
            batches = list(self._inflight.values())
            self._stopping = True
            for bell in self._idle:
                bell.ring()
        signal(self._cond, batches, failure=exc)
        self._writer_bell.ring()

    # -- waiting ---------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Block until every batch scheduled so far is committed (or canceled).

        :raises ringcore.RingTimeoutError: not within ``timeout`` seconds (None: no limit).
        :raises RuntimeFailedError: the runtime failed on a store error.
        """
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 or None, got {timeout}")
        target = self._last_index

        def done() -> bool:
            return self._failure is not None or self._marks.last_committed >= min(target, self._last_index)

        with self._cond:
            ok = self._cond.wait_for(done, timeout)
        if self._failure is not None and self._marks.last_committed < min(target, self._last_index):
            self._check_usable()
        if not ok:
            raise RingTimeoutError(f"batches up to {target} were not committed within {timeout} s "
                                   f"(committed so far: {self._marks.last_committed})")

    async def flush_async(self, timeout: float | None = None) -> None:
        """``await`` form of :meth:`flush`: waits on the last scheduled batch without blocking the loop."""
        with self._lock:
            last = self._inflight.get(max(self._inflight)) if self._inflight else None
        if last is None:
            return
        await last.wait_committed_async(timeout)

    # -- rollback ---------------------------------------------------------------------------------

    def rollback_to(self, index: int) -> list[RuntimeBatch]:
        """Undo every batch after ``index``; the next batch scheduled gets ``index + 1``.

        Batches after ``index`` still in flight are canceled (their waits return
        at once, reporting it); committed ones are undone in the store: each
        resource they touched is back at its state after batch ``index``, and
        their data and pointers are deleted, in one atomic store commit.
        Batches up to ``index`` that are still in flight go on and commit.
        ``rollback_to(0)`` undoes everything; batches committed by an earlier
        manager on the same store can be rolled back too.

        :returns: the in-flight batches it canceled.
        :raises RollbackError: ``index`` is negative, not an int, or after the last batch scheduled.
        """
        if type(index) is not int:
            if isinstance(index, bool) or not hasattr(index, "__index__"):
                raise RollbackError(f"rollback index {index!r} is not an int; pass a batch index >= 0")
            index = int(index)
        if index < 0:
            raise RollbackError(f"rollback index {index} is negative; pass a batch index >= 0 (0: undo everything)")
        with self._api_lock:
            self._check_usable()
            if index > self._last_index:
                raise RollbackError(f"rollback index {index} is in the future: the last batch scheduled is "
                                    f"{self._last_index}")
            return self._rollback(index)

    def _rollback(self, index: int) -> list[RuntimeBatch]:
        with self._store_lock:
            with self._lock:
                canceled = [self._inflight.pop(i) for i in sorted(self._inflight) if i > index]
                by_serial = self._by_serial
                for batch in canceled:
                    batch._canceled = True
                    del by_serial[batch._serial]
                    self._in_flight_txs -= len(batch.transactions)
                # Point every resource a canceled batch touched back at what preceded the
                # oldest canceled access to it.
                heads = self._heads
                seen: set[bytes] = set()
                for batch in canceled:
                    preds = batch._preds
                    for key, first in _ends(batch._rids or [])[0].items():
                        if key in seen:
                            continue
                        seen.add(key)
                        pred = preds[first] if preds is not None else None
                        if pred is None:
                            heads.pop(key, None)
                        elif type(pred) is tuple:
                            heads[key] = pred
                        else:
                            pb = by_serial.get(pred >> _SHIFT)
                            if pb is None:  # committed since: the store has its output
                                heads.pop(key, None)
                            else:
                                pb._next[pred & _MASK] = -1
                                heads[key] = pred
                if canceled:
                    kept = [r for r in self._ready if (r >> _SHIFT) in by_serial]
                    self._ready.clear()
                    self._ready.extend(kept)
                    self._to_persist = [b for b in self._to_persist if not b._canceled]
                for batch in canceled:
                    self._waiting_commit.pop(batch.index, None)
            upto = max(self._last_index, self._marks.last_persisted)
            undone_committed = [self._recent.get(i) for i in range(index + 1, self._marks.last_committed + 1)]
            restored, _ = undo_batches(self.store, index, upto, self._marks)
            with self._lock:
                for key in restored:
                    heads.pop(decode_resource_id(key), None)
                self._last_index = index
                self._next_commit = self._marks.last_committed + 1
            for batch in canceled:
                batch._release()
        signal(self._cond, canceled, canceled=True)
        signal(self._cond, [b for b in undone_committed if b is not None], rolled_back=True)
        return canceled

    # -- shutdown ---------------------------------------------------------------------------------

    def shutdown(self, *, cancel: bool = False, timeout: float | None = None) -> None:
        """Stop the manager; no thread of it is left running. Idempotent.

        By default every batch scheduled is committed first (drained). With
        ``cancel=True``, or when draining does not finish within ``timeout``,
        the batches not yet committed are canceled and their persisted data
        removed, as by ``rollback_to(last_committed)``. A store the manager
        created is closed.

        :raises ringcore.RingTimeoutError: draining timed out (the rest was canceled), or a
            thread stuck in a VM call did not stop within ``timeout``.
        """
        with self._api_lock:
            if self._closed:
                return
            deadline = None if timeout is None else time.monotonic() + timeout
            error: BaseException | None = None
            if self._failure is None and not cancel:
                try:
                    self.flush(timeout)
                except RingTimeoutError as exc:
                    error = exc
                    cancel = True
                except RuntimeFailedError:
                    pass
            if self._failure is None and cancel:
                self._rollback(self._marks.last_committed)
            self._closed = True
            with self._lock:
                self._stopping = True
                for bell in self._idle:
                    bell.ring()
            self._writer_bell.ring()
            for _ in range(self.readers):
                self._read_q.put(None)
            stuck = []
            for t in self._threads:
                if t is threading.current_thread():
                    continue
                t.join(None if deadline is None else max(0.1, deadline - time.monotonic()))
                if t.is_alive():
                    stuck.append(t.name)
            if self._owns_store and not stuck:
                self.store.close()
            problems = [str(error)] if error is not None else []
            if stuck:
                problems.append(f"threads {stuck} did not stop within {timeout} s (still in a VM call?); "
                                f"they end when it returns (join them through .threads)")
            if problems:
                raise RingTimeoutError("; ".join(problems))

    def __enter__(self) -> RuntimeManager:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    async def __aenter__(self) -> RuntimeManager:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await asyncio.to_thread(self.shutdown)
