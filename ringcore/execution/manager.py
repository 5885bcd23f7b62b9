"""RuntimeManager: schedules batches of transactions, executes them in parallel, persists and commits them.

How it works, in one place:

- **Chains.** Every resource has a head: the last access scheduled to it (an
  :class:`~ringcore.execution.vm.AccessHandle`), or its committed
  :class:`~ringcore.execution.state.VersionedState`, or nothing (read it from
  the store). A new access links behind the head. A READ passes its input on
  as soon as it has it, so reads never hold up later writers; a WRITE passes
  on what its transaction wrote (its input again if the transaction aborted or
  did not write) once the transaction has run. A transaction is runnable when
  every one of its accesses has an input. Versions are immutable snapshots, so
  a reader that runs after a later writer still sees its own input.
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
from ..errors import RingTimeoutError
from .batch import COMMITTED, PERSISTED, PROCESSED, RuntimeBatch, signal
from .errors import (
    ExecutionError,
    InvalidTransactionError,
    ManagerClosedError,
    RollbackError,
    RuntimeFailedError,
    StoreError,
)
from .resource import READ, WRITE, ResourceId, encode_resource_id, normalize_resource_id
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
_NEVER = 1 << 62  # the missing-input count of a canceled transaction: it never becomes runnable
_IDLE_WAIT = 0.5  # seconds an idle thread sleeps before it looks at the stop flag again
_READ_CHUNK = 256
_INT_KEY = struct.Struct(">BQ").pack  # an int resource id's canonical encoding: tag 0x01, 8 bytes big-endian
_INT_LIMIT = 1 << 64


class _Tx:
    """A scheduled transaction: its handles, and how many of their inputs are still missing."""

    __slots__ = ("tx", "pos", "batch", "handles", "missing", "running", "effects", "error")

    def __init__(self, tx: Any, pos: int) -> None:
        self.tx = tx
        self.pos = pos
        self.running = False
        self.error: BaseException | None = None


def _bad_tx(pos: int, tx: Any, what: str) -> InvalidTransactionError:
    return InvalidTransactionError(f"transaction #{pos} of the batch ({tx!r:.80}): {what}; nothing was scheduled")


def _check_tx(tx: Any, pos: int) -> None:
    """Raise the error that says what is wrong with ``tx``'s accesses, if anything is."""
    try:
        accesses = tx.accesses
    except AttributeError:
        raise _bad_tx(pos, tx, "it has no 'accesses' attribute; a transaction declares its accesses "
                               "as (resource id, AccessType) pairs") from None
    try:
        it = iter(accesses)
    except TypeError:
        raise _bad_tx(pos, tx, f"its accesses {accesses!r:.60} are not iterable") from None
    for access in it:
        try:
            rid, kind = access
        except (TypeError, ValueError):
            raise _bad_tx(pos, tx, f"access {access!r:.60} is not a (resource id, AccessType) pair") from None
        if kind is not READ and kind is not WRITE:
            raise _bad_tx(pos, tx, f"access type {kind!r} of resource {rid!r:.40} is not AccessType.READ "
                                   f"or AccessType.WRITE")
        try:
            encode_resource_id(rid)
        except InvalidTransactionError as exc:
            raise _bad_tx(pos, tx, str(exc)) from None


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
        self._heads: dict[bytes, Any] = {}
        self._ready: deque[_Tx] = deque()
        self._idle: list[Doorbell] = []
        self._inflight: dict[int, RuntimeBatch] = {}
        self._recent: weakref.WeakValueDictionary[int, RuntimeBatch] = weakref.WeakValueDictionary()
        self._to_persist: list[RuntimeBatch] = []
        self._waiting_commit: dict[int, RuntimeBatch] = {}
        self._last_index = self._marks.last_committed
        self._next_commit = self._marks.last_committed + 1
        self._failure: BaseException | None = None
        self._stopping = False
        self._closed = False
        self._writer_bell = Doorbell()
        self._read_q: queue.SimpleQueue[list[AccessHandle] | None] = queue.SimpleQueue()
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
        nodes = self._prepare(txs)
        self._admit(len(txs), timeout)
        with self._api_lock:
            self._check_usable()
            with self._lock:
                self._in_flight_txs += len(txs)
                index = self._last_index + 1
                self._last_index = index
                batch = RuntimeBatch(index, txs, self._cond)
                batch._nodes = nodes
                self._inflight[index] = batch
                self._recent[index] = batch
                ready, reads = self._link(batch, nodes)
                failure = None
                if reads and not self.readers:
                    try:
                        for h in reads:
                            self._deliver(h, self._load(h._rid, h._key), ready)
                    except Exception as exc:  # noqa: BLE001 - a store error stops the runtime
                        failure = exc
                    reads = []
                processed = [batch] if not nodes else []
                if processed:
                    self._to_persist.append(batch)
                if ready:
                    self._ready.extend(ready)
                    self._wake(len(self._ready))
            if failure is not None:
                self._fail(failure)
                self._check_usable()
            for i in range(0, len(reads), _READ_CHUNK):
                self._read_q.put(reads[i:i + _READ_CHUNK])
            if processed:
                self._processed(processed)
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

    @staticmethod
    def _prepare(txs: tuple[Any, ...]) -> list[_Tx]:
        """Validate every transaction's accesses and make their handles (not yet linked).

        The loop is the hot path of ``schedule``; anything unusual (an id that is not a
        plain int, a malformed access) goes through :func:`_check_tx`, which either
        accepts it or raises the error that names it.
        """
        nodes: list[_Tx] = []
        append = nodes.append
        new = object.__new__
        handle_cls = AccessHandle
        tx_cls = _Tx
        int_key = _INT_KEY
        read, write_ = READ, WRITE
        pos = 0
        for tx in txs:
            node = new(tx_cls)
            node.tx = tx
            node.pos = pos
            node.running = False
            node.error = None
            handles: list[AccessHandle] = []
            try:
                for rid, kind in tx.accesses:
                    if type(rid) is int and 0 <= rid < _INT_LIMIT:
                        key = int_key(1, rid)
                    else:
                        key = encode_resource_id(rid)
                        rid = normalize_resource_id(rid)
                    if kind is write_:
                        w = True
                    elif kind is read:
                        w = False
                    else:
                        raise _bad_tx(pos, tx, f"access type {kind!r} of resource {rid!r:.40} is not "
                                               f"AccessType.READ or AccessType.WRITE")
                    if handles:
                        for h in handles:  # a resource listed twice: one access, WRITE if either is
                            if h._key == key:
                                if w:
                                    h._write = True
                                break
                        else:
                            h = new(handle_cls)
                            h._rid = rid
                            h._key = key
                            h._write = w
                            h._tx = node
                            h._input = h._out = h._next = h._new = None
                            handles.append(h)
                    else:
                        h = new(handle_cls)
                        h._rid = rid
                        h._key = key
                        h._write = w
                        h._tx = node
                        h._input = h._out = h._next = h._new = None
                        handles.append(h)
            except InvalidTransactionError as exc:
                if str(exc).startswith("transaction #"):
                    raise
                raise _bad_tx(pos, tx, str(exc)) from None
            except Exception as exc:
                _check_tx(tx, pos)
                raise _bad_tx(pos, tx, f"reading its accesses raised {type(exc).__name__}: {exc}") from exc
            node.handles = handles
            append(node)
            pos += 1
        return nodes

    def _link(self, batch: RuntimeBatch, nodes: list[_Tx]) -> tuple[list[_Tx], list[AccessHandle]]:
        """Link every access of ``nodes`` behind its resource's head (engine lock held)."""
        heads = self._heads
        firsts = batch._firsts
        lasts = batch._lasts
        assert firsts is not None and lasts is not None
        ready: list[_Tx] = []
        reads: list[AccessHandle] = []
        vs = VersionedState
        for node in nodes:
            node.batch = batch
            missing = 0
            for h in node.handles:
                key = h._key
                pred = heads.get(key)
                heads[key] = h
                if pred is None:
                    firsts[key] = h
                    h._pred = None
                    reads.append(h)
                    missing += 1
                elif type(pred) is vs:
                    firsts[key] = h
                    h._pred = pred
                    h._input = pred
                    if not h._write:
                        h._out = pred
                else:
                    if pred._tx.batch is not batch:
                        firsts[key] = h
                        h._pred = pred
                    out = pred._out
                    if out is None:
                        pred._next = h
                        missing += 1
                    else:
                        h._input = out
                        if not h._write:
                            h._out = out
                lasts[key] = h
            node.missing = missing
            if not missing:
                ready.append(node)
        return ready, reads

    @staticmethod
    def _deliver(h: AccessHandle | None, state: VersionedState, ready: list[_Tx]) -> None:
        """Give ``h`` its input; pass it down the chain through READ accesses (engine lock held)."""
        while h is not None:
            h._input = state
            node = h._tx
            node.missing -= 1
            if not node.missing:
                ready.append(node)
            if h._write:
                return
            h._out = state
            h = h._next

    def _wake(self, available: int) -> None:
        """Ring idle workers for ``available`` runnable transactions (engine lock held)."""
        idle = self._idle
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
        chunk: list[_Tx] | None = None
        while True:
            processed: list[RuntimeBatch] = []
            with lock:
                if chunk:
                    processed = self._complete(chunk)
                n = len(rq)
                if n:
                    take = n // workers or 1
                    if take > limit:
                        take = limit
                    pop = rq.popleft
                    chunk = [pop() for _ in range(take)]
                    if rq and idle:
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
                bell.wait(_IDLE_WAIT)
            else:
                run(chunk)

    def _run_each(self, chunk: list[_Tx]) -> None:
        process = self._process
        for node in chunk:
            node.running = True
            try:
                node.effects = process(node.tx, node.handles)
            except Exception as exc:  # noqa: BLE001 - the transaction aborts; others go on
                node.error = exc
                node.effects = None
            node.running = False

    def _run_batch(self, chunk: list[_Tx]) -> None:
        assert self._process_batch is not None
        for node in chunk:
            node.running = True
        try:
            results = list(self._process_batch([n.tx for n in chunk], [n.handles for n in chunk]))
            if len(results) != len(chunk):
                raise ExecutionError(f"{type(self.vm).__name__}.process_batch returned {len(results)} results "
                                     f"for {len(chunk)} transactions; return one per transaction")
        except Exception as exc:  # noqa: BLE001 - every transaction of the call aborts
            results = [exc] * len(chunk)
        for node, result in zip(chunk, results):
            node.running = False
            if isinstance(result, Exception):
                node.error = result
                node.effects = None
            else:
                node.effects = result

    def _complete(self, chunk: list[_Tx]) -> list[RuntimeBatch]:
        """Pass executed transactions' outputs down their chains (engine lock held)."""
        ready: list[_Tx] = []
        processed: list[RuntimeBatch] = []
        deliver = self._deliver
        vs = VersionedState
        for node in chunk:
            batch = node.batch
            if batch._canceled:
                continue
            error = node.error
            handles = node.handles
            node.handles = None  # the handles keep their node; not the other way round (no cycle)
            for h in handles:
                if h._write:
                    new = h._new
                    if new is None or error is not None:
                        out = h._input
                    else:
                        out = vs(h._rid, h._input.version + 1, new)  # type: ignore[union-attr]
                    h._out = out
                    if h._next is not None:
                        deliver(h._next, out, ready)
            if error is None:
                batch._effects[node.pos] = node.effects
            else:
                batch._errors[node.pos] = error
            batch._pending -= 1
            if not batch._pending:
                processed.append(batch)
        if ready:
            self._ready.extend(ready)
        if processed:
            self._to_persist.extend(processed)
        return processed

    def _processed(self, batches: list[RuntimeBatch]) -> None:
        for b in batches:
            b._nodes = None
        signal(self._cond, batches, stage=PROCESSED)
        self._writer_bell.ring()

    # -- reads -------------------------------------------------------------------------------

    def _load(self, rid: ResourceId, key: bytes) -> VersionedState:
        """The committed state of a resource, from the store."""
        store = self.store
        raw = store.get(_LATEST, key)
        if raw is None:
            return VersionedState(rid, 0, b"")
        version = decode_u64(raw)
        data = store.get(_DATA, encode_u64(version) + key)
        if data is None:
            raise StoreError(f"the store's latest pointer of resource {rid!r} names version {version}, "
                             f"whose data is missing: the store was changed outside the runtime")
        return VersionedState(rid, version, data)

    def _read_loop(self) -> None:
        get = self._read_q.get
        while True:
            try:
                chunk = get(timeout=_IDLE_WAIT)
            except queue.Empty:
                if self._stopping:
                    return
                continue
            if chunk is None:
                return
            states = [None if h._tx.batch._canceled else self._load(h._rid, h._key) for h in chunk]
            ready: list[_Tx] = []
            with self._lock:
                for h, state in zip(chunk, states):
                    if state is not None and not h._tx.batch._canceled:
                        self._deliver(h, state, ready)
                if ready:
                    self._ready.extend(ready)
                    self._wake(len(self._ready))

    def read(self, resource_id: ResourceId) -> VersionedState:
        """The committed state of ``resource_id`` (version 0 and empty data if it does not exist)."""
        if self._closed:
            raise ManagerClosedError("the RuntimeManager was shut down; read the store directly")
        key = encode_resource_id(resource_id)
        with self._store_lock:
            return self._load(normalize_resource_id(resource_id), key)

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
        put = wb.put
        pack = encode_u64
        for batch in group:
            if self._notarize is not None:
                try:
                    batch.notarization = self._notarize(batch)
                except Exception as exc:  # noqa: BLE001 - kept on the batch, which still commits
                    batch.notarization_error = exc
            prefix = pack(batch.index)
            flips = batch._flips
            diffs = batch._diffs
            lasts = batch._lasts
            assert batch._firsts is not None and lasts is not None
            for key, first in batch._firsts.items():
                tail = lasts[key]._out
                head = first._input.version
                version = tail.version
                if version != head:
                    put(_DATA, pack(version) + key, tail.data)
                    put(_ROLLBACK, prefix + key, _U64x2(head, version))
                    flips.append((key, version))
                    diffs.append((head, tail))
        top = max(b.index for b in group)
        if top > self._marks.last_persisted:
            put(_META, META_LAST_PERSISTED, pack(top))
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
            for key, version in batch._flips:
                put(_LATEST, key, pack(version))
        put(_META, META_LAST_COMMITTED, pack(nxt - 1))
        self.store.commit(wb)
        self._next_commit = nxt
        self._marks.last_committed = nxt - 1
        with self._lock:
            heads = self._heads
            for batch in group:
                lasts = batch._lasts
                assert lasts is not None
                for key, h in lasts.items():
                    if heads.get(key) is h:
                        heads[key] = h._out
                del self._inflight[batch.index]
                self._in_flight_txs -= len(batch.transactions)
                for h in batch._firsts.values():  # type: ignore[union-attr]
                    h._pred = None  # committed: nothing will unlink it, so drop the link to the past
                batch._release()
            if len(heads) > self._cache_limit:
                self._trim_cache()
        signal(self._cond, group, stage=COMMITTED)

    def _trim_cache(self) -> None:
        """Forget the oldest committed states until the cache is 3/4 full (engine lock held)."""
        heads = self._heads
        excess = len(heads) - self._cache_limit * 3 // 4
        victims = [k for k, v in heads.items() if type(v) is VersionedState]
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
                self._in_flight_txs -= sum(len(b.transactions) for b in canceled)
                heads = self._heads
                seen: set[bytes] = set()
                for batch in canceled:
                    batch._canceled = True
                    for node in batch._nodes or ():
                        node.missing = _NEVER
                    for key, first in (batch._firsts or {}).items():
                        if key in seen:
                            continue
                        seen.add(key)
                        pred = first._pred
                        if pred is None:
                            heads.pop(key, None)
                        elif type(pred) is VersionedState:
                            heads[key] = pred
                        else:
                            pred._next = None
                            heads[key] = pred._out if pred._tx.batch._stage >= COMMITTED else pred
                if canceled:
                    kept = [n for n in self._ready if not n.batch._canceled]
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
                    heads.pop(key, None)
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
            if self._owns_store:
                self.store.close()
            if error is not None:
                raise error
            if stuck:
                raise RingTimeoutError(f"threads {stuck} did not stop within {timeout} s (a VM call that "
                                       f"does not return?)")

    def __enter__(self) -> RuntimeManager:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    async def __aenter__(self) -> RuntimeManager:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await asyncio.to_thread(self.shutdown)
