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

from . import backend
from .backend import *  # noqa: F403  (the suite's public names, listed once in backend.__all__)

__all__ = list(backend.__all__)
