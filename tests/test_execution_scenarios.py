"""The execution runtime's scenario, rollback, crash and property suites on MemoryStore.

The same suites (ringcore.testing.execution) run against every store plugin.
"""

from __future__ import annotations

from ringcore.execution import MemoryStore
from ringcore.testing.execution import (
    AbstractCrashTests,
    AbstractExecutionTests,
    AbstractRollbackTests,
    AbstractScenarioTests,
    BatchRecordingVm,
    SerialRecordingVm,
)


class TestOnMemoryStore(AbstractExecutionTests):
    """Two workers, first reads inline (MemoryStore's preference)."""

    def make_store(self, path):
        return MemoryStore()


class TestWithReaderPool(AbstractScenarioTests, AbstractRollbackTests):
    """First reads through two reader threads; three workers."""

    workers = 3
    readers = 2


class TestOneWorker(AbstractScenarioTests, AbstractRollbackTests):
    workers = 1


class TestWithoutCache(AbstractScenarioTests, AbstractRollbackTests, AbstractCrashTests):
    """Committed states are forgotten at every commit (cache_limit=0): every first access reads the store."""

    manager_options = {"cache_limit": 0}


class TestThroughProcessBatch(AbstractScenarioTests, AbstractRollbackTests):
    """A VM that executes every ready transaction of a chunk in one process_batch call."""

    vm_class = BatchRecordingVm


class TestSerialVm(AbstractScenarioTests):
    """A VM declared not concurrent: one busy worker at a time, others woken only when none is."""

    workers = 3
    vm_class = SerialRecordingVm
