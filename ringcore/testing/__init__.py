"""Conformance suites that backend plugins, ours and third-party, run against themselves.

A backend plugin's test suite subclasses the abstract classes and says how to
create its runtime; pytest never collects the ``Abstract...Tests`` classes on
their own::

    # plugins/mybackend/tests/test_conformance.py
    from ringcore.testing import AbstractBackendTests

    class TestMyBackend(AbstractBackendTests):
        backend = "mybackend"               # ringcore.runtime("mybackend", **options)
        supports_handler_errors = False     # capability flags: what it cannot do

        # or, for full control:
        def make_runtime(self, **options):
            return MyRuntime(**options)

The kernels and messages the suites use are in :mod:`ringcore.testing.kernels`,
written in the restricted style a kernel compiler accepts. Importing this
package needs pytest.

Stores for the transaction execution runtime have their own suites, imported
by full path: :mod:`ringcore.testing.store` (``AbstractStoreTests``: the Store
protocol, key encodings, atomic commits) and :mod:`ringcore.testing.execution`
(``AbstractExecutionTests``: the runtime's end-to-end scenarios and a
hypothesis property test against a sequential run, over the store under test;
it needs hypothesis). See docs/execution.md.
"""

from __future__ import annotations

from .backend import (
    AbstractAsyncTests,
    AbstractBackendTests,
    AbstractBadInputTests,
    AbstractCallTests,
    AbstractHlcTests,
    AbstractK2KTests,
    AbstractLifecycleTests,
    AbstractMessagingTests,
    AbstractMetricsTests,
    AbstractPubSubTests,
    AbstractStateTests,
    AbstractTerminationTests,
    BackendFixtures,
    receive_n,
    wait_processed,
    wait_until,
)

__all__ = [
    "AbstractBackendTests",
    "AbstractLifecycleTests",
    "AbstractMessagingTests",
    "AbstractCallTests",
    "AbstractStateTests",
    "AbstractK2KTests",
    "AbstractPubSubTests",
    "AbstractTerminationTests",
    "AbstractBadInputTests",
    "AbstractMetricsTests",
    "AbstractHlcTests",
    "AbstractAsyncTests",
    "BackendFixtures",
    "wait_until",
    "wait_processed",
    "receive_n",
]
