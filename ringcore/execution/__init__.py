"""ringcore's parallel transaction execution runtime (a "Layer 2" runtime).

Batches of transactions that declare the resources they read and write are
linked into per-resource dependency chains, executed in parallel by a VM,
persisted as per-batch state diffs to a store, and committed in batch order,
with rollback. The result of any schedule equals running the same
transactions one by one in batch order. See docs/execution.md.

::

    from ringcore.execution import RuntimeManager, SimpleTransaction, Access, VmInterface

    class Counter(VmInterface):
        def process_transaction(self, tx, handles):
            (h,) = handles
            h.data = (int.from_bytes(h.data, "big") + 1).to_bytes(8, "big")

    with RuntimeManager(Counter(), workers=2) as m:
        batch = m.schedule([SimpleTransaction([Access.write("n")])] * 10)
        batch.wait_committed(timeout=10)
        print(int.from_bytes(m.read("n").data, "big"))   # 10
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Names load on first use, so that importing the package (as the plugin loader does
# for ringcore.execution._builtin) costs almost nothing.
_EXPORTS = {
    "batch": ["RuntimeBatch", "TxResult"],
    "..errors": ["ExecutionError", "InvalidTransactionError", "ManagerClosedError", "ReadOnlyAccessError",
               "RollbackError", "RuntimeFailedError", "StoreArgumentError", "StoreClosedError", "StoreError",
               "StoreLockedError"],
    "manager": ["RuntimeManager"],
    "resource": ["READ", "WRITE", "Access", "AccessType", "ResourceId", "SimpleTransaction", "Transaction",
                 "decode_resource_id", "encode_resource_id"],
    "state": ["SCHEMA_VERSION", "StateDiff", "StateSpace", "VersionedState", "data_key", "decode_rollback_value",
              "latest_key", "rollback_key", "rollback_value"],
    "store": ["MemoryStore", "Store", "WriteBatch"],
    "vm": ["AccessHandle", "NoopVm", "VmInterface"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "RuntimeManager", "RuntimeBatch", "TxResult",
    "AccessType", "READ", "WRITE", "Access", "Transaction", "SimpleTransaction", "ResourceId",
    "encode_resource_id", "decode_resource_id",
    "VersionedState", "StateDiff", "StateSpace", "SCHEMA_VERSION",
    "data_key", "latest_key", "rollback_key", "rollback_value", "decode_rollback_value",
    "Store", "WriteBatch", "MemoryStore",
    "VmInterface", "AccessHandle", "NoopVm",
    "ExecutionError", "InvalidTransactionError", "ReadOnlyAccessError", "RollbackError", "StoreError",
    "StoreClosedError", "StoreLockedError", "StoreArgumentError", "ManagerClosedError", "RuntimeFailedError",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ringcore.execution' has no attribute {name!r}")
    value = getattr(importlib.import_module(module if module.startswith("..") else f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from ..errors import (
        ExecutionError,
        InvalidTransactionError,
        ManagerClosedError,
        ReadOnlyAccessError,
        RollbackError,
        RuntimeFailedError,
        StoreArgumentError,
        StoreClosedError,
        StoreError,
        StoreLockedError,
    )
    from .batch import RuntimeBatch, TxResult
    from .manager import RuntimeManager
    from .resource import (
        READ,
        WRITE,
        Access,
        AccessType,
        ResourceId,
        SimpleTransaction,
        Transaction,
        decode_resource_id,
        encode_resource_id,
    )
    from .state import (
        SCHEMA_VERSION,
        StateDiff,
        StateSpace,
        VersionedState,
        data_key,
        decode_rollback_value,
        latest_key,
        rollback_key,
        rollback_value,
    )
    from .store import MemoryStore, Store, WriteBatch
    from .vm import AccessHandle, NoopVm, VmInterface
