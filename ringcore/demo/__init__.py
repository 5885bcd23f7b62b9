"""The example programs, shipped with ringcore so that ``ringcore demo`` runs them anywhere.

Each module is a complete program: messages, a kernel, a ``run(runtime, ...)``
function that prints what happens and checks its result, and ``main(argv)``.
``examples/*.py`` in the source tree are thin launchers of these modules.

- :mod:`ringcore.demo.hello_kernel`: launch, status, metrics, terminate.
- :mod:`ringcore.demo.ping_pong`: two kernels rallying through kernel-to-kernel sends.
- :mod:`ringcore.demo.vector_add`: bulk vector add checked against numpy.
- :mod:`ringcore.demo.ledger`: the transaction runtime's ledger, on RocksDB when ringcore-rocksdb is
  installed (kept in ``RINGCORE_DEMO_DATA_DIR`` when set, and verified by the next run), else in memory.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["PROGRAMS", "DemoReport", "run_demo"]

#: The demo's programs, in the order they run: (name, what it shows).
PROGRAMS = (
    ("hello_kernel", "launch, status, metrics, terminate"),
    ("ping_pong", "two kernels exchanging a message through kernel-to-kernel sends"),
    ("vector_add", "bulk vector add, checked against numpy"),
    ("ledger", "random transfers on the transaction execution runtime (on RocksDB when ringcore-rocksdb is "
               "installed), checked against a sequential replay"),
)


@dataclasses.dataclass
class DemoReport:
    """The results of one ``ringcore demo`` run."""

    backend: str
    results: dict[str, Any]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results.values())


def run_demo(backend: str = "auto", *, quick: bool = False, out: Callable[[str], Any] = print,
             data_dir: str | os.PathLike[str] | None = None) -> DemoReport:
    """Run every example program on ``backend``, each on a fresh runtime; print what happens.

    :param quick: smaller sizes (for a fast check).
    :param data_dir: where the ledger keeps its RocksDB store (when ringcore-rocksdb is
        installed); a later run reopens and verifies it. None: ``RINGCORE_DEMO_DATA_DIR``,
        and when that is unset, a temporary directory.
    :raises ringcore.BackendError: ``backend`` is unknown or cannot run here.
    """
    import ringcore

    from . import hello_kernel, ping_pong, vector_add
    from ._util import describe_runtime

    sizes = {
        "hello_kernel": {"calls": 200 if quick else 2000},
        "ping_pong": {"rounds": 100 if quick else 1000},
        "vector_add": {"count": 10_000 if quick else 200_000},
    }
    modules = {"hello_kernel": hello_kernel, "ping_pong": ping_pong, "vector_add": vector_add}
    results: dict[str, Any] = {}
    name = backend
    t0 = time.perf_counter()
    for i, (prog, what) in enumerate(PROGRAMS, 1):
        if prog == "ledger":  # the execution runtime: no kernel backend involved
            from .ledger import ENV_DATA_DIR
            from .ledger import run as run_ledger

            out("")
            out(f"{i}. {prog}: {what}")
            results[prog] = run_ledger(accounts=200 if quick else 1000, transfers=10_000 if quick else 100_000,
                                       batch_size=1_000 if quick else 5_000, workers=2, out=out,
                                       data_dir=data_dir if data_dir is not None else os.environ.get(ENV_DATA_DIR),
                                       stream=sys.stdout if out is print else None)
            continue
        with ringcore.runtime(backend) as rt:
            name = rt.backend_name
            if i == 1:
                out(f"backend: {describe_runtime(rt)}")
            out("")
            out(f"{i}. {prog}: {what}")
            results[prog] = modules[prog].run(rt, out=out, **sizes[prog])
    seconds = time.perf_counter() - t0
    report = DemoReport(name, results, seconds)
    out("")
    failed = [p for p, r in results.items() if not r.ok]
    out(f"demo finished in {seconds:.1f} s: " + ("every check passed" if not failed else f"FAILED: {failed}"))
    return report
