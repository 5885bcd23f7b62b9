"""The ledger on the best store installed: RocksDB (durable, reopened and verified by the next run) or memory.

:func:`run` executes the ledger of :mod:`ringcore.execution.ledger` (random
transfers between funded accounts, checked against a sequential replay). With
ringcore-rocksdb installed it runs on a RocksDB store in a data directory:

- ``DIR/store`` is the store (``ringcore store inspect DIR/store`` shows it);
- ``DIR/ledger.json`` records what the runs committed: the parameters, the
  last committed batch and every balance.

A data directory the user names is kept. The next run on it reopens the store,
verifies that it holds exactly what the previous run committed (the last
committed batch, every balance, the total), then runs another round of
transfers on top and checks that round against a replay. Without a named
directory the data lives in a temporary directory, removed at the end.

``python examples/ledger.py --data-dir DIR`` runs it; so does ``ringcore demo``
(the directory comes from ``RINGCORE_DEMO_DATA_DIR``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from ..errors import RingcoreError, StoreError
from ..execution.ledger import LedgerResult, LedgerVm, Mint, Transfer, balance_of, progress_bar, replay
from ..execution.ledger import run as run_ledger

__all__ = ["ENV_DATA_DIR", "MANIFEST", "STORE_DIR", "DurableLedgerResult", "choose_store", "run", "main"]

ENV_DATA_DIR = "RINGCORE_DEMO_DATA_DIR"
"""The data directory ``ringcore demo`` keeps the ledger's store in (unset: a temporary one)."""
MANIFEST = "ledger.json"
STORE_DIR = "store"


@dataclasses.dataclass
class DurableLedgerResult:
    """A ledger run, and on a reopened store, whether what the earlier runs committed was found intact."""

    result: LedgerResult | None
    """This run's round of transfers (None when verifying the reopened store failed)."""
    store: str
    """``"rocksdb"`` or ``"memory"``."""
    data_dir: str | None
    """The data directory (None for memory; the temporary one, since removed, when none was named)."""
    round: int
    """Which run on this data this was (1: the store was new)."""
    verified: bool | None = None
    """Whether the reopened store held exactly what the earlier runs committed (None: nothing to verify)."""

    @property
    def ok(self) -> bool:
        """The reopened data verified (when there was some) and this round matched its replay."""
        return self.verified is not False and self.result is not None and self.result.ok


def choose_store(store: str = "auto") -> str:
    """The store the ledger runs on: ``"rocksdb"`` when ``store`` is "auto" and ringcore-rocksdb
    is installed (and loaded), else ``"memory"``; a name given explicitly must be registered."""
    from ..plugins import get_registry

    registry = get_registry()
    if store == "auto":
        return "rocksdb" if "rocksdb" in registry.stores else "memory"
    registry.store_spec(store)  # raises, with the package to install, for an unknown name
    return store


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        manifest["balances"] = {int(a): int(b) for a, b in manifest["balances"].items()}
        for key in ("accounts", "initial", "seed", "runs", "last_committed"):
            manifest[key] = int(manifest[key])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreError(f"{path} is not a ledger record this program wrote ({type(exc).__name__}: {exc}); "
                         f"use a new data directory") from exc
    return manifest


def _verify(m: Any, manifest: dict[str, Any], out: Callable[[str], Any]) -> bool:
    """Does the reopened store hold exactly what the earlier runs committed?"""
    accounts, recorded = manifest["accounts"], manifest["balances"]
    balances = {a: balance_of(m.read(a).data) for a in range(accounts)}
    mismatched = sum(balances[a] != recorded.get(a, 0) for a in range(accounts))
    total = sum(balances.values())
    expected_total = accounts * manifest["initial"]
    ok = m.last_committed == manifest["last_committed"] and not mismatched and total == expected_total
    out(f"  reopened                     batch {m.last_committed:,} committed (recorded: "
        f"{manifest['last_committed']:,}) by {manifest['runs']} earlier run{'s' if manifest['runs'] > 1 else ''}; "
        f"{accounts - mismatched:,} of {accounts:,} balances as recorded, total {total:,} -> "
        f"{'verified' if ok else 'NOT AS RECORDED'}")
    return ok


def _another_round(m: Any, manifest: dict[str, Any], transfers: int, batch_size: int, seed: int,
                   out: Callable[[str], Any]) -> LedgerResult:
    """Random transfers on top of the reopened balances, checked against a replay from them."""
    accounts, initial, prior = manifest["accounts"], manifest["initial"], manifest["balances"]
    rng = random.Random(seed)
    moves = []
    for _ in range(transfers):
        src = rng.randrange(accounts)
        dst = rng.randrange(accounts - 1)
        moves.append(Transfer(src, dst + (dst >= src), rng.randint(1, initial // 2)))
    batches = [moves[i:i + batch_size] for i in range(0, transfers, batch_size)]
    out(f"  {transfers:,} more random transfers in {len(batches):,} batches of {batch_size:,}, "
        f"on the reopened balances")
    marks: set[int] = set()
    t0 = time.perf_counter()
    scheduled = [m.schedule(b) for b in batches]
    for i, b in enumerate(scheduled, 1):
        b.wait_committed()
        q = i * 4 // max(1, len(scheduled))
        if q not in marks and (q > 0 or i == len(scheduled)):
            marks.add(q)
            out(f"  committing {progress_bar(i, len(scheduled))} {i:,}/{len(scheduled):,} batches")
    seconds = time.perf_counter() - t0
    balances = {a: balance_of(m.read(a).data) for a in range(accounts)}
    aborts = [sorted(b.errors) for b in scheduled]
    expected, expected_aborts = replay([[Mint(a, b) for a, b in sorted(prior.items())], *batches])
    mismatched = sum(balances[a] != expected.get(a, 0) for a in range(accounts))
    mismatched_aborts = sum(a != e for a, e in zip(aborts, expected_aborts[1:]))
    total = sum(balances.values())
    rate = transfers / seconds if seconds > 0 else float("inf")
    result = LedgerResult(accounts, transfers, len(scheduled), sum(map(len, aborts)), seconds, rate, total,
                          accounts * initial, mismatched, mismatched_aborts)
    out(f"  executed and committed       {transfers:,} transfers in {seconds * 1000:,.0f} ms "
        f"({rate:,.0f} transfers/s), {result.aborted:,} aborted for insufficient funds")
    out(f"  sequential replay            {accounts - mismatched:,} of {accounts:,} balances and "
        f"{len(aborts) - mismatched_aborts:,} of {len(aborts):,} batches' aborts equal, total {total:,} -> "
        f"{'OK' if result.ok else 'FAILED'}")
    return result


def run(*, accounts: int = 1_000, transfers: int = 100_000, batch_size: int = 5_000, workers: int = 2,
        store: str = "auto", data_dir: str | os.PathLike[str] | None = None, seed: int = 7, initial: int = 1_000,
        out: Callable[[str], Any] = print, stream: TextIO | None = None) -> DurableLedgerResult:
    """Run the ledger on ``store`` ("auto": RocksDB when installed, else memory).

    :param data_dir: where the RocksDB store and the record of the runs live; kept, and
        reopened and verified by the next run. None: a temporary directory, removed at the end.
    :raises StoreError: ``data_dir`` holds something this program did not write, or the
        store cannot be opened (held by another process, say).
    :raises PluginError: ``store`` names a store that is not installed.
    """
    kind = choose_store(store)
    if kind == "memory":
        if data_dir is not None:
            raise StoreError(f"a data directory ({data_dir}) needs a durable store: install ringcore-rocksdb "
                             f"(pip install ringcore-rocksdb), or leave the directory out")
        out("  store: MemoryStore (nothing outlives the run; install ringcore-rocksdb for a durable store)")
        result = run_ledger(accounts=accounts, transfers=transfers, batch_size=batch_size, workers=workers,
                            seed=seed, initial=initial, out=out, stream=stream)
        return DurableLedgerResult(result, "memory", None, 1)

    from ..execution.manager import RuntimeManager
    from ..plugins import get_registry

    temporary = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="ringcore-ledger-")) if temporary else Path(os.fspath(data_dir)).absolute()
    store_path, record = root / STORE_DIR, root / MANIFEST
    try:
        manifest = _read_manifest(record) if record.exists() else None
        if manifest is None and store_path.exists():
            raise StoreError(f"{store_path} exists but {record} does not: the directory was not written by this "
                             f"program (or a run stopped before it finished); use a new data directory")
        if manifest is not None and manifest["accounts"] != accounts:
            out(f"  (the data in {root} has {manifest['accounts']:,} accounts: continuing with those)")
            accounts = manifest["accounts"]
        out(f"  store: RocksDB at {store_path}" + (" (a temporary directory, removed at the end)" if temporary
                                                    else ""))
        this_round = 1 if manifest is None else manifest["runs"] + 1
        rocks = get_registry().store_spec(kind).factory(path=store_path)
        try:
            if manifest is None:
                result = run_ledger(accounts=accounts, transfers=transfers, batch_size=batch_size, workers=workers,
                                    store=rocks, seed=seed, initial=initial, out=out, stream=stream)
                verified = None
                manifest = {"accounts": accounts, "initial": initial, "seed": seed, "runs": 0}
            else:
                with RuntimeManager(LedgerVm(), rocks, workers=workers) as m:
                    verified = _verify(m, manifest, out)
                    result = (_another_round(m, manifest, transfers, batch_size, manifest["seed"] + manifest["runs"],
                                             out) if verified else None)
            if result is not None and result.ok:
                with RuntimeManager(LedgerVm(), rocks, workers=1) as m:
                    manifest.update(runs=manifest["runs"] + 1, last_committed=m.last_committed,
                                    balances={str(a): balance_of(m.read(a).data) for a in range(accounts)})
                _write_manifest(record, manifest)
        finally:
            rocks.close()
        if temporary:
            out(f"  name a data directory to keep the store (examples/ledger.py --data-dir DIR; for ringcore demo, "
                f"{ENV_DATA_DIR}=DIR): the next run reopens and verifies it")
        else:
            out(f"  data kept in {root}: run again with the same directory to reopen and verify it "
                f"(ringcore store inspect {store_path} shows the store)")
        return DurableLedgerResult(result, kind, str(root), this_round, verified)
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python examples/ledger.py [--accounts N] [--transfers M] [--batch-size B] [--workers W]
    [--store auto|memory|rocksdb] [--data-dir DIR]``."""
    parser = argparse.ArgumentParser(description="Run random transfers between accounts on the execution runtime "
                                                 "and check them against a sequential replay; on RocksDB when "
                                                 "ringcore-rocksdb is installed.")
    parser.add_argument("--accounts", type=int, default=1_000, help="accounts (default 1000)")
    parser.add_argument("--transfers", type=int, default=100_000, help="transfers (default 100000)")
    parser.add_argument("--batch-size", type=int, default=5_000, help="transfers per batch (default 5000)")
    parser.add_argument("--workers", type=int, default=2, help="worker threads (default 2)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--store", default="auto",
                        help="auto (default: rocksdb when ringcore-rocksdb is installed, else memory), memory, rocksdb")
    parser.add_argument("--data-dir", metavar="DIR", default=None,
                        help="keep the RocksDB store in DIR; a later run reopens, verifies and extends it "
                             "(default: a temporary directory)")
    args = parser.parse_args(argv)
    try:
        outcome = run(accounts=args.accounts, transfers=args.transfers, batch_size=args.batch_size,
                      workers=args.workers, seed=args.seed, store=args.store, data_dir=args.data_dir,
                      stream=sys.stdout)
    except RingcoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
