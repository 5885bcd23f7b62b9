"""``ringcore store``: inspect a RocksDB store, benchmark it, and run the crash harness by hand.

- ``ringcore store inspect PATH [--json]``: the last committed batch, the resource
  count and the size on disk of the store at PATH (opened read-only, so a store
  another process is using can be inspected too);
- ``ringcore store bench [--quick] [--json]``: committed state diffs per second and
  the execution benchmark on RocksDB, next to MemoryStore in the same run;
- ``ringcore store crash-test [--trials N] [--sync {on,off,both}] [--dir DIR]``: kill
  a writing process with SIGKILL at random instants and check every recovery.

This module is imported whenever the ``ringcore`` command starts: it imports
nothing but argparse until a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_commands", "format_stats", "format_size"]


def format_size(n: int) -> str:
    """``1.3 MiB``, ``512 B``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_stats(stats: Any) -> str:
    """``ringcore store inspect``'s text for a :class:`~ringcore_rocksdb.store.StoreStats`."""
    rows = [("store", stats.path), ("last committed batch", f"{stats.last_committed:,}" if stats.last_committed
                                    else "none (no batch committed yet)")]
    if stats.last_persisted > stats.last_committed:
        pending = stats.last_persisted - stats.last_committed
        rows.append(("last persisted batch", f"{stats.last_persisted:,} ({pending:,} batch{'es' if pending > 1 else ''} "
                                             f"written but never committed: removed when a RuntimeManager next "
                                             f"opens the store)"))
    rows += [
        ("resources", f"{stats.resources:,}"),
        ("data versions", f"about {stats.data_versions:,}"),
        ("rollback pointers", f"about {stats.rollback_pointers:,}"),
        ("size on disk", f"{format_size(stats.size_bytes)} in {stats.files:,} files"),
        ("runtime schema", str(stats.schema_version) if stats.schema_version is not None
         else "none yet (no RuntimeManager has opened this store)"),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def _inspect(args: argparse.Namespace) -> int:
    from .store import RocksDBStore

    with RocksDBStore(Path(args.path), read_only=True) as store:
        stats = store.stats()
    if args.json:
        print(json.dumps(stats.as_dict(), indent=2))
    else:
        print(format_stats(stats))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench import format_report, run_store_benchmarks

    say = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else (lambda s: print(s, flush=True))
    report = run_store_benchmarks(quick=args.quick, only=args.only, directory=args.dir, progress=say)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0


def _crash_test(args: argparse.Namespace) -> int:
    from .crash import run_trials

    modes = {"on": (True,), "off": (False,), "both": (True, False)}[args.sync]
    report = run_trials(args.trials, syncs=modes, directory=args.dir, seed=args.seed, out=print)
    return 0 if report.ok else 1


BENCH_NAMES = ("diffs", "execution")
"""The benchmarks of ``ringcore store bench`` (ringcore_rocksdb.bench.BENCHMARKS, named here so that
configuring the command imports nothing)."""


def _configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True, prog="ringcore store")
    p = sub.add_parser("inspect", help="last committed batch, resource count and size on disk of a store",
                       description="Show the last committed batch, the resource count and the size on disk of "
                                   "the RocksDB store at PATH. The store is opened read-only: it may be in use "
                                   "by another process.")
    p.add_argument("path", metavar="PATH", help="the store's directory")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(_store_run=_inspect)

    p = sub.add_parser("bench", help="state diffs/s and execution tx/s on RocksDB, next to MemoryStore",
                       description="Committed state diffs per second (sync off and on) and the execution "
                                   "benchmark, on RocksDB and on MemoryStore in the same run.")
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (noisier)")
    p.add_argument("--json", action="store_true", help="print JSON (progress goes to stderr)")
    p.add_argument("--only", action="append", choices=BENCH_NAMES, metavar="NAME",
                   help=f"run only this benchmark (repeatable): {', '.join(BENCH_NAMES)}")
    p.add_argument("--dir", metavar="DIR", default=None,
                   help="where to create the benchmark's stores (default: a temporary directory; the disk "
                        "under it decides the sync figures)")
    p.set_defaults(_store_run=_bench)

    p = sub.add_parser("crash-test", help="kill a writing process at random instants and check each recovery",
                       description="Run a workload on a RocksDB store in a child process, kill it with SIGKILL "
                                   "at a random instant, reopen the store and check that it holds exactly the "
                                   "state after a committed batch, at least the last one the child saw "
                                   "committed; repeat.")
    p.add_argument("--trials", type=int, default=100, help="how many kills (default 100)")
    p.add_argument("--sync", choices=("on", "off", "both"), default="both",
                   help="the store's sync setting in the child (default: both, alternating)")
    p.add_argument("--dir", metavar="DIR", default=None,
                   help="where to keep the store (default: a temporary directory, removed afterwards)")
    p.add_argument("--seed", type=int, default=None, help="seed of the kill instants and the workload")
    p.set_defaults(_store_run=_crash_test)


def add_commands(cli: Any) -> None:
    """Add ``ringcore store`` to the command line (the ``register_commands`` hook)."""
    cli.add_command("store", help="RocksDB store tools: inspect, bench, crash-test (ringcore-rocksdb)",
                    description="Tools for the RocksDB store of ringcore-rocksdb.",
                    configure=_configure, run=lambda args: args._store_run(args))
