"""The entry point: registers the store ``rocksdb`` and the ``ringcore store`` command (cheap to import)."""

from __future__ import annotations

from typing import Any

import ringcore
from ringcore.errors import StoreArgumentError
from ringcore.plugins import StoreSpec

PACKAGE = "ringcore-rocksdb"


def factory(**options: Any) -> Any:
    """``RocksDBStore(**options)``; ``path`` is required (the store's directory)."""
    if "path" not in options:
        raise StoreArgumentError("the rocksdb store needs a directory: pass store_options={'path': DIRECTORY} "
                                 "(RuntimeManager(vm, 'rocksdb', store_options=...)), or a RocksDBStore(DIRECTORY)")
    from .store import RocksDBStore

    return RocksDBStore(**options)


@ringcore.hookimpl
def register_stores(register: Any) -> None:
    register(StoreSpec(name="rocksdb", factory=factory, package=PACKAGE,
                       description="durable, crash-safe store in a directory, on RocksDB (options: path, sync, ...)"))


@ringcore.hookimpl
def register_commands(cli: Any) -> None:
    from .cli import add_commands

    add_commands(cli)
