"""ringcore-rocksdb: the execution runtime's durable, crash-safe store, on RocksDB (rocksdict).

::

    from ringcore.execution import RuntimeManager
    from ringcore_rocksdb import RocksDBStore

    with RocksDBStore("ledger-data", sync=True) as store, RuntimeManager(vm, store) as m:
        ...

The names load on first use: importing this package (as ringcore's plugin
loader does, for :mod:`ringcore_rocksdb.plugin`) does not import rocksdict.
See docs/rocksdb.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "store": ["RocksDBStore", "RocksDBWriteBatch", "StoreStats", "COMPRESSIONS"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["RocksDBStore", "RocksDBWriteBatch", "StoreStats", "COMPRESSIONS"]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ringcore_rocksdb' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from .store import COMPRESSIONS, RocksDBStore, RocksDBWriteBatch, StoreStats
