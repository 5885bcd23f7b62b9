"""ringcore's exception hierarchy.

Every error ringcore raises derives from :class:`RingcoreError`. Where an error
is also one of Python's own kinds (a wrong type, a timeout, a missing name) it
inherits that builtin too, so ``except TypeError`` and ``except TimeoutError``
keep working. Messages say what went wrong, with which value, and what to do.
"""

from __future__ import annotations

__all__ = [
    "RingcoreError",
    "PluginError",
    "PluginLoadError",
    "BackendError",
    "BackendNotFoundError",
    "BackendUnavailableError",
    "TypeDefinitionError",
    "MessageTypeError",
    "QueueFull",
    "RingTimeoutError",
    "LifecycleError",
    "KernelDefinitionError",
    "KernelCompileError",
    "KernelError",
    "KernelTerminatedError",
    "TerminationTimeoutError",
    "ClockSkewError",
    "ExecutionError",
    "InvalidTransactionError",
    "ReadOnlyAccessError",
    "RollbackError",
    "StoreError",
    "StoreClosedError",
    "StoreLockedError",
    "StoreArgumentError",
    "ManagerClosedError",
    "RuntimeFailedError",
]


class RingcoreError(Exception):
    """Base class of every error raised by ringcore and its plugins."""


class PluginError(RingcoreError):
    """A plugin registered something invalid (a duplicate name, a bad spec)."""


class PluginLoadError(PluginError):
    """A plugin's entry point failed to import or to register."""


class BackendError(RingcoreError):
    """A backend could not be found, probed or started."""


class BackendNotFoundError(BackendError, LookupError):
    """No backend of the requested name is installed."""


class BackendUnavailableError(BackendError):
    """The backend is installed but cannot run on this machine (see the probe's reason)."""


class TypeDefinitionError(RingcoreError, TypeError):
    """A message, state or kernel declaration uses a type ringcore cannot lay out."""


class KernelDefinitionError(RingcoreError, TypeError):
    """A ``@ringcore.kernel`` declaration is invalid (signature, types, options)."""


class KernelCompileError(KernelDefinitionError):
    """A kernel (or ``@ringcore.func``) uses something the kernel language or a target cannot compile.

    The message names the file, line, column and construct, shows the source
    line and says what to write instead. The parts are attributes too.
    """

    def __init__(self, message: str, *, filename: str = "", line: int = 0, col: int = 0,
                 construct: str = "", target: str = "") -> None:
        super().__init__(message)
        self.filename = filename
        self.line = line
        self.col = col
        self.construct = construct
        self.target = target


class MessageTypeError(RingcoreError, TypeError):
    """A message of the wrong type (or a bulk array of the wrong dtype) was given."""


class QueueFull(RingcoreError):
    """A ring queue stayed full for the whole timeout; the message was not enqueued."""


class RingTimeoutError(RingcoreError, TimeoutError):
    """A blocking receive or call did not complete within its timeout."""


class LifecycleError(RingcoreError):
    """An operation is not valid in the kernel's current lifecycle state."""


class KernelError(RingcoreError):
    """A kernel's handler raised while processing a message.

    The kernel keeps serving; the error is recorded in its ControlBlock
    (``last_error``, ``error_count``) and returned to the caller of ``call``.
    """

    def __init__(self, message: str, *, kernel: str = "", code: int = 0, detail: str = ""):
        super().__init__(message)
        self.kernel = kernel
        self.code = code
        self.detail = detail


class KernelTerminatedError(LifecycleError):
    """The kernel terminated while the operation was waiting on it."""


class TerminationTimeoutError(RingcoreError, TimeoutError):
    """A kernel did not acknowledge termination within the timeout."""


class ClockSkewError(RingcoreError, ValueError):
    """A received HLC timestamp is further ahead of wall time than the allowed drift."""


# -- the transaction execution runtime (ringcore.execution) ----------------------


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


class StoreLockedError(StoreError):
    """A durable store's directory is held by another open store: another process, or another
    store object of this process that was not closed. The message names the path."""


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
