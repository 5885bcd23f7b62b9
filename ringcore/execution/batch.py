"""RuntimeBatch: one scheduled batch of transactions and its lifecycle.

A batch moves through three stages, each reached at most once and in order:

1. **processed**: every transaction has executed (or aborted);
2. **persisted**: the batch's state diff (the last version it wrote of each
   resource, and a rollback pointer per resource) is in the store;
3. **committed**: the single write that flips the batch's latest pointers is
   in the store. Batches commit strictly in index order.

A batch that ``rollback_to`` cancels before it committed is **canceled**: its
waits return at once and report it (``False``). Each stage can be awaited,
blocking with a timeout or from asyncio.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable, Generator
from typing import Any

from ..errors import RingTimeoutError, RuntimeFailedError
from .state import StateDiff, VersionedState

__all__ = ["RuntimeBatch", "TxResult", "SCHEDULED", "PROCESSED", "PERSISTED", "COMMITTED"]

SCHEDULED, PROCESSED, PERSISTED, COMMITTED = 0, 1, 2, 3
_STAGE_NAMES = {PROCESSED: "processed", PERSISTED: "persisted", COMMITTED: "committed"}


@dataclasses.dataclass(frozen=True)
class TxResult:
    """The outcome of one transaction: its effects, or the error that aborted it."""

    transaction: Any
    effects: Any
    error: BaseException | None

    @property
    def ok(self) -> bool:
        """Whether the transaction ran to completion (its writes were kept)."""
        return self.error is None


class RuntimeBatch:
    """A batch scheduled by :meth:`RuntimeManager.schedule`. Batch indexes start at 1.

    Results are final once the batch is processed: ``effects[i]`` is what the
    VM returned for transaction ``i``, ``errors`` maps the index of each
    aborted transaction to its exception.
    """

    __slots__ = (
        "index", "transactions", "_cond", "_stage", "_canceled", "_rolled_back", "_failure",
        "_callbacks", "_pending", "_effects", "_errors", "_flip_keys", "_flip_values", "_diff_heads",
        "_diff_tails",
        "notarization", "notarization_error", "__weakref__",
        # The engine's per-batch arrays (see manager.py), dropped once committed or canceled.
        "_serial", "_wrote", "_rids", "_writes", "_txof", "_tstart", "_inputs", "_outs", "_next",
        "_preds", "_missing", "_run",
    )

    def __init__(self, index: int, transactions: tuple[Any, ...], cond: threading.Condition) -> None:
        self.index = index
        self.transactions = transactions
        self._cond = cond
        self._stage = SCHEDULED
        self._canceled = False
        self._rolled_back = False
        self._failure: BaseException | None = None
        self._callbacks: list[Callable[[], None]] = []
        n = len(transactions)
        self._pending = n
        self._serial = 0
        self._wrote = False
        self._rids = self._writes = self._txof = self._tstart = None
        self._inputs = self._outs = self._next = self._preds = self._missing = None
        self._run: tuple[Any, ...] | None = None  # what workers read outside the engine lock, in one go
        self._effects: list[Any] = [None] * n
        self._errors: dict[int, BaseException] = {}
        self._flip_keys: list[bytes] = []  # latest pointers to set at commit
        self._flip_values: list[bytes] = []
        self._diff_heads: list[int] = []  # per resource written: the version before the batch ...
        self._diff_tails: list[Any] = []  # ... and the state after it
        self.notarization: Any = None
        """What the VM's ``notarize_batch`` returned for this batch."""
        self.notarization_error: BaseException | None = None
        """What the VM's ``notarize_batch`` raised, if it did."""

    # -- state ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.transactions)

    @property
    def was_processed(self) -> bool:
        """Every transaction has executed or aborted."""
        return self._stage >= PROCESSED

    @property
    def was_persisted(self) -> bool:
        """The batch's state diff is in the store."""
        return self._stage >= PERSISTED

    @property
    def was_committed(self) -> bool:
        """The batch's latest pointers were flipped (it may have been rolled back since)."""
        return self._stage >= COMMITTED

    @property
    def was_canceled(self) -> bool:
        """``rollback_to`` canceled the batch before it committed."""
        return self._canceled

    @property
    def was_rolled_back(self) -> bool:
        """``rollback_to`` undid the batch: canceled before it committed, or undone after."""
        return self._rolled_back or self._canceled

    @property
    def effects(self) -> list[Any]:
        """Per transaction, what the VM returned (None for an aborted or not yet executed one)."""
        return list(self._effects)

    @property
    def errors(self) -> dict[int, BaseException]:
        """The exception of each aborted transaction, by its position in the batch."""
        return dict(self._errors)

    @property
    def results(self) -> list[TxResult]:
        """Per transaction: its effects or its error."""
        errors = self._errors
        return [TxResult(tx, eff, errors.get(i)) for i, (tx, eff) in enumerate(zip(self.transactions, self._effects))]

    def result(self, i: int) -> TxResult:
        """The result of transaction ``i`` of the batch."""
        return TxResult(self.transactions[i], self._effects[i], self._errors.get(i))

    @property
    def diffs(self) -> list[StateDiff]:
        """The batch's state diff: one entry per resource it changed (empty before it is persisted).

        A resource the batch only read, or whose every write aborted, has no entry."""
        return [StateDiff(self.index, tail[0], head, VersionedState._make(tail))
                for head, tail in zip(self._diff_heads, self._diff_tails)]

    def __repr__(self) -> str:
        if self._canceled:
            state = "canceled"
        elif self._failure is not None and self._stage < COMMITTED:
            state = "failed"
        else:
            state = ("scheduled", "processed", "persisted", "committed")[self._stage]
        extra = f", {len(self._errors)} aborted" if self._errors else ""
        return f"<RuntimeBatch {self.index}: {len(self.transactions)} transactions, {state}{extra}>"

    # -- waiting ---------------------------------------------------------------------

    def _done(self, stage: int) -> bool:
        return self._stage >= stage or self._canceled or self._failure is not None

    def _outcome(self, stage: int) -> bool:
        if self._stage >= stage:
            return True
        if self._canceled:
            return False
        raise RuntimeFailedError(
            f"batch {self.index} cannot become {_STAGE_NAMES[stage]}: the runtime failed "
            f"({type(self._failure).__name__}: {self._failure})") from self._failure

    def _wait(self, stage: int, timeout: float | None) -> bool:
        if self._stage >= stage:
            return True
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 or None, got {timeout}")
        with self._cond:
            if not self._cond.wait_for(lambda: self._done(stage), timeout):
                raise RingTimeoutError(
                    f"batch {self.index} was not {_STAGE_NAMES[stage]} within {timeout} s")
        return self._outcome(stage)

    def wait_processed(self, timeout: float | None = None) -> bool:
        """Block until every transaction has executed; True, or False if the batch was canceled first.

        :raises ringcore.RingTimeoutError: not processed within ``timeout`` seconds (None: no limit).
        :raises RuntimeFailedError: the runtime failed (a store error) before the batch got there.
        """
        return self._wait(PROCESSED, timeout)

    def wait_persisted(self, timeout: float | None = None) -> bool:
        """Block until the batch's state diff is in the store; True, or False if canceled first.

        :raises ringcore.RingTimeoutError: not persisted within ``timeout`` seconds.
        """
        return self._wait(PERSISTED, timeout)

    def wait_committed(self, timeout: float | None = None) -> bool:
        """Block until the batch is committed; True, or False if it was canceled first.

        :raises ringcore.RingTimeoutError: not committed within ``timeout`` seconds.
        """
        return self._wait(COMMITTED, timeout)

    async def _wait_async(self, stage: int, timeout: float | None) -> bool:
        if self._stage >= stage:
            return True
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def check() -> None:
            if not fut.done() and self._done(stage):
                fut.set_result(None)

        def on_change() -> None:  # runs on a runtime thread
            loop.call_soon_threadsafe(check)

        with self._cond:
            if self._done(stage):
                return self._outcome(stage)
            self._callbacks.append(on_change)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise RingTimeoutError(f"batch {self.index} was not {_STAGE_NAMES[stage]} within {timeout} s") from None
        finally:
            with self._cond:
                if on_change in self._callbacks:
                    self._callbacks.remove(on_change)
        return self._outcome(stage)

    async def wait_processed_async(self, timeout: float | None = None) -> bool:
        """``await`` form of :meth:`wait_processed`."""
        return await self._wait_async(PROCESSED, timeout)

    async def wait_persisted_async(self, timeout: float | None = None) -> bool:
        """``await`` form of :meth:`wait_persisted`."""
        return await self._wait_async(PERSISTED, timeout)

    async def wait_committed_async(self, timeout: float | None = None) -> bool:
        """``await`` form of :meth:`wait_committed`."""
        return await self._wait_async(COMMITTED, timeout)

    def __await__(self) -> Generator[Any, None, bool]:
        """``await batch`` waits (without a limit) until it is committed or canceled."""
        return self._wait_async(COMMITTED, None).__await__()

    # -- called by the manager ----------------------------------------------------------

    def _release(self) -> None:
        """Drop the engine's arrays once committed or canceled (keep the results)."""
        self._run = None  # first: workers outside the engine lock check this one attribute
        self._rids = self._writes = self._txof = self._tstart = None
        self._inputs = self._outs = self._next = self._preds = self._missing = None
        self._flip_keys = []
        self._flip_values = []


def signal(cond: threading.Condition, batches: list[RuntimeBatch], *, stage: int | None = None,
           canceled: bool = False, rolled_back: bool = False, failure: BaseException | None = None) -> None:
    """Move ``batches`` to ``stage`` (or mark them canceled / rolled back / failed) and wake their waiters."""
    callbacks: list[Callable[[], None]] = []
    with cond:
        for b in batches:
            if stage is not None and b._stage < stage:
                b._stage = stage
            if canceled:
                b._canceled = True
            if rolled_back:
                b._rolled_back = True
            if failure is not None and b._failure is None:
                b._failure = failure
            if b._callbacks:
                callbacks += b._callbacks
        cond.notify_all()
    for cb in callbacks:
        cb()

