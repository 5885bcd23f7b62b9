"""The VM interface, and the handles through which a VM sees and changes resources.

A VM executes transactions. For each transaction it receives one
:class:`AccessHandle` per declared resource (in the order of first mention);
it reads ``handle.data`` and, through WRITE handles, sets new data. Whatever
``process_transaction`` returns is kept as the transaction's effects. Raising
aborts the transaction: its writes are discarded, the exception is kept on the
batch, and every other transaction goes on.

VMs run on the manager's worker threads, several transactions at once when
``workers > 1``; a transaction never runs before every transaction it depends
on (through the resources it declared) has run, so a VM needs no locks of its
own for the state it reaches through handles.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ReadOnlyAccessError
from .resource import READ, WRITE, AccessType, ResourceId
from .state import VersionedState

if TYPE_CHECKING:
    from .batch import RuntimeBatch

__all__ = ["AccessHandle", "VmInterface", "NoopVm", "batch_function", "notarize_function"]


class AccessHandle:
    """One transaction's view of one resource while the transaction runs.

    ``data`` and ``version`` show the resource as this transaction sees it:
    the input version, or, after a write, the new data at input version + 1
    (a transaction bumps a version by exactly one however often it writes).
    Writing is allowed through WRITE handles, only while the transaction runs.
    """

    __slots__ = ("_rid", "_write", "_input", "_new", "_live")

    def __init__(self, resource_id: ResourceId, access_type: AccessType, input: tuple[Any, int, bytes]) -> None:
        self._rid = resource_id
        self._write = access_type is WRITE
        self._input = input  # (id, version, data): a VersionedState or a plain tuple
        self._new: bytes | None = None
        self._live = True

    @property
    def id(self) -> ResourceId:
        """The resource id."""
        return self._rid

    @property
    def access_type(self) -> AccessType:
        """READ or WRITE (a resource declared both ways by one transaction is a WRITE)."""
        return WRITE if self._write else READ

    @property
    def input(self) -> VersionedState:
        """The snapshot this transaction received: the state after every earlier transaction."""
        return VersionedState._make(self._input)

    @property
    def version(self) -> int:
        """The input version, plus one once this transaction has written (0: does not exist)."""
        v: int = self._input[1]
        return v + 1 if self._new is not None else v

    @property
    def data(self) -> bytes:
        """The resource's data as this transaction sees it (empty when it does not exist)."""
        new = self._new
        return new if new is not None else self._input[2]

    @data.setter
    def data(self, value: bytes) -> None:
        self.write(value)

    @property
    def is_new(self) -> bool:
        """Whether the resource did not exist before this transaction (input version 0)."""
        return self._input[1] == 0

    @property
    def written(self) -> bool:
        """Whether this transaction has written the resource."""
        return self._new is not None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Replace the resource's data (kept only if the transaction does not abort).

        :raises ReadOnlyAccessError: the handle is a READ handle, or its transaction is not running.
        """
        if not self._write:
            raise ReadOnlyAccessError(
                f"resource {self._rid!r} was declared READ by this transaction; declare it "
                f"AccessType.WRITE to change it")
        if not self._live:
            raise ReadOnlyAccessError(
                f"resource {self._rid!r} was written after its transaction ended; a VM writes "
                f"only while process_transaction (or process_batch) is executing it")
        if type(data) is not bytes:
            if not isinstance(data, (bytearray, memoryview)):
                raise TypeError(f"resource data is bytes, got {type(data).__name__}: {data!r:.80}")
            data = bytes(data)
        self._new = data

    def __repr__(self) -> str:
        return f"<AccessHandle {self._rid!r} {self.access_type.name} v{self.version}, {len(self.data)} bytes>"


class VmInterface:
    """Base class of VMs. Subclass it and implement :meth:`process_transaction`.

    Duck-typed VMs work too: any object with ``process_transaction`` (and
    optionally ``process_batch``, ``notarize_batch`` and ``concurrent``).
    """

    concurrent: bool = True
    """Whether running several transactions at once, on several worker threads, can be
    faster than one at a time: the VM releases the GIL (numpy, a device dispatch), blocks
    on I/O, or waits for anything. Set it to False for a VM that is plain Python and never
    waits: under CPython's GIL extra threads then only contend, so the runtime keeps one
    worker busy at a time (and wakes another only when none is)."""

    def process_transaction(self, tx: Any, handles: Sequence[AccessHandle]) -> Any:
        """Execute ``tx`` through ``handles`` and return its effects (any object, or None).

        :param tx: the transaction object as it was scheduled.
        :param handles: one handle per declared resource, in the order of first mention.
        :raises Exception: anything, to abort the transaction: its writes are
            discarded and the exception is recorded on the batch.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement process_transaction(tx, handles)")

    def process_batch(self, txs: Sequence[Any], handles_per_tx: Sequence[Sequence[AccessHandle]]) -> Sequence[Any]:
        """Execute every transaction in ``txs`` at once (optional: a VM that runs a whole set as
        one kernel dispatch overrides this).

        The runtime calls it with transactions that are all runnable now; none
        of them depends on another in the same call. Return one item per
        transaction, in order: its effects, or an ``Exception`` instance to
        abort that transaction. Raising aborts every transaction of the call.
        The default runs :meth:`process_transaction` one by one; the runtime
        calls ``process_batch`` only when a VM overrides it.
        """
        out: list[Any] = []
        for tx, handles in zip(txs, handles_per_tx):
            try:
                out.append(self.process_transaction(tx, handles))
            except Exception as exc:  # noqa: BLE001 - an aborted transaction, reported as its result
                out.append(exc)
        return out

    def notarize_batch(self, batch: RuntimeBatch) -> Any:
        """Called once per batch after every transaction ran and before its data is persisted,
        on the storage writer's thread (optional). The return value is kept as
        ``batch.notarization``; an exception as ``batch.notarization_error`` (the batch
        is still persisted and committed)."""
        return None


class NoopVm(VmInterface):
    """A VM that executes every transaction by doing nothing: no writes, no effects.

    Measures the runtime itself (chains, scheduling, persistence), not a VM.
    """

    concurrent = False  # plain Python that never waits

    def process_transaction(self, tx: Any, handles: Sequence[AccessHandle]) -> None:
        return None


def batch_function(vm: Any) -> Any:
    """The VM's ``process_batch`` if it has its own (not the base class's loop), else None."""
    fn = getattr(type(vm), "process_batch", None)
    if fn is None or fn is VmInterface.process_batch:
        return None
    return vm.process_batch


def notarize_function(vm: Any) -> Any:
    """The VM's ``notarize_batch`` if it has its own, else None."""
    fn = getattr(type(vm), "notarize_batch", None)
    if fn is None or fn is VmInterface.notarize_batch:
        return None
    return vm.notarize_batch
