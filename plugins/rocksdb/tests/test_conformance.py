"""RocksDBStore against the core's store conformance suite and the execution runtime's scenario suite."""

from __future__ import annotations

from ringcore_rocksdb import RocksDBStore

from ringcore.testing.execution import AbstractExecutionTests, AbstractRollbackTests, AbstractScenarioTests
from ringcore.testing.store import AbstractStoreTests


class RocksDBFixtures:
    persistent = True  # what is committed survives close() and a new store on the same path

    def make_store(self, path):
        # A small cache and memtable: hundreds of stores are opened by the property tests.
        return RocksDBStore(path, block_cache_size=1 << 20, write_buffer_size=1 << 20)


class TestRocksDBStore(RocksDBFixtures, AbstractStoreTests):
    pass


class TestRocksDBStoreSynced(AbstractStoreTests):
    """The same with sync=True: every commit fsyncs the write-ahead log."""

    persistent = True

    def make_store(self, path):
        return RocksDBStore(path, sync=True)


class TestRuntimeOnRocksDB(RocksDBFixtures, AbstractExecutionTests):
    """Every scenario, rollback, crash and property test of the runtime, on RocksDB."""


class TestRuntimeOnRocksDBWithReaderPool(RocksDBFixtures, AbstractScenarioTests, AbstractRollbackTests):
    """First reads through two reader threads (RocksDBStore prefers inline reads); three workers."""

    workers = 3
    readers = 2


class TestRuntimeOnRocksDBWithoutCache(RocksDBFixtures, AbstractScenarioTests, AbstractRollbackTests):
    """Committed states are forgotten at every commit: every first access reads RocksDB."""

    manager_options = {"cache_limit": 0}
