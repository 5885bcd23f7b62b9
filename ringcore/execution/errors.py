"""The execution runtime's errors, part of ringcore's one hierarchy (:class:`ringcore.errors.RingcoreError`).

Where an error is also one of Python's own kinds it inherits that builtin too:
a malformed transaction is a ``TypeError`` and a ``ValueError``, a bad rollback
index a ``ValueError``, writing through a READ handle a ``PermissionError``.
"""

from __future__ import annotations

from ..errors import RingcoreError, RingTimeoutError

__all__ = [
    "ExecutionError",
    "InvalidTransactionError",
    "ReadOnlyAccessError",
    "RollbackError",
    "StoreError",
    "StoreClosedError",
    "StoreArgumentError",
    "ManagerClosedError",
    "RuntimeFailedError",
    "RingTimeoutError",
]


class ExecutionError(RingcoreError):
    """Base class of the transaction execution runtime's errors."""


class InvalidTransactionError(ExecutionError, TypeError, ValueError):
    """A transaction given to ``schedule`` is malformed: no ``accesses``, an access that is
    not a (resource id, AccessType) pair, or a resource id of an unsupported type or range.

    Nothing of the batch was scheduled.
    """


class ReadOnlyAccessError(ExecutionError, PermissionError):
    """A VM wrote through a READ handle, or through a handle after its transaction ended."""


class RollbackError(ExecutionError, ValueError):
    """``rollback_to`` was given an index that is negative, not an integer, or in the future."""


class StoreError(ExecutionError):
    """A store failed or holds data the runtime cannot read (a pointer to missing data,
    an unknown schema version)."""


class StoreClosedError(StoreError):
    """The store was used after ``close()``."""


class StoreArgumentError(StoreError, TypeError, ValueError):
    """A store was given a space, key or value it cannot take (not a StateSpace, not bytes),
    or a write batch that another store created."""


class ManagerClosedError(ExecutionError):
    """The RuntimeManager was used after ``shutdown()``."""


class RuntimeFailedError(ExecutionError):
    """A store operation failed inside the runtime (the storage writer or a reader).

    The store is still at a batch boundary (the last committed batch); batches
    after it can no longer complete. Their waits raise this error, and so does
    ``schedule``. Shut the manager down and open a new one on the store.
    """
