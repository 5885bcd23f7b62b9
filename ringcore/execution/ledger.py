"""The ledger: accounts, mints and transfers, executed by the runtime and checked against a replay.

:class:`LedgerVm` keeps each account's balance as 8 bytes, big-endian, signed.
A :class:`Transfer` writes both of its accounts and aborts (raising
:class:`InsufficientFunds`) when the source cannot pay, so every run has
aborted transactions too. :func:`run` executes N accounts and M random
transfers in batches, then checks that the total is conserved and that every
balance and every abort equal a plain sequential replay in batch order.

Run it with ``python examples/ledger.py`` or ``python -m ringcore.execution.ledger``.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from .manager import RuntimeManager
from .resource import WRITE, Access
from .store import Store
from .vm import AccessHandle, VmInterface

__all__ = ["Mint", "Transfer", "InsufficientFunds", "LedgerVm", "LedgerResult", "balance_of", "encode_balance",
           "replay", "run", "progress_bar", "main"]


def encode_balance(amount: int) -> bytes:
    """A balance as stored: 8 bytes, big-endian, signed."""
    return amount.to_bytes(8, "big", signed=True)


def balance_of(data: bytes) -> int:
    """The balance in an account's data (0 for an account never written)."""
    return int.from_bytes(data, "big", signed=True) if data else 0


@dataclasses.dataclass(frozen=True, slots=True)
class Mint:
    """Credit ``amount`` to ``account`` out of nothing (how accounts are funded)."""

    account: int
    amount: int

    @property
    def accesses(self) -> tuple[Access, ...]:
        return (Access(self.account, WRITE),)


@dataclasses.dataclass(frozen=True, slots=True)
class Transfer:
    """Move ``amount`` from ``source`` to ``target``; aborts if ``source`` cannot pay."""

    source: int
    target: int
    amount: int

    @property
    def accesses(self) -> tuple[Access, ...]:
        return (Access(self.source, WRITE), Access(self.target, WRITE))


class InsufficientFunds(Exception):
    """A transfer's source account holds less than the amount (the transfer aborts)."""


class LedgerVm(VmInterface):
    """Executes :class:`Mint` and :class:`Transfer` transactions. Effects: the new balances."""

    concurrent = False  # plain Python that never waits: one busy worker is fastest under the GIL

    def process_transaction(self, tx: Any, handles: Sequence[AccessHandle]) -> Any:
        if type(tx) is Transfer:
            if tx.source == tx.target:  # one account, listed twice: one handle
                return (balance_of(handles[0].data),)
            src, dst = handles
            have = balance_of(src.data)
            if have < tx.amount:
                raise InsufficientFunds(f"account {tx.source} holds {have}, cannot pay {tx.amount}")
            src.data = encode_balance(have - tx.amount)
            dst.data = encode_balance(balance_of(dst.data) + tx.amount)
            return (have - tx.amount, balance_of(dst.data))
        if type(tx) is Mint:
            (h,) = handles
            h.data = encode_balance(balance_of(h.data) + tx.amount)
            return (balance_of(h.data),)
        raise TypeError(f"the ledger executes Mint and Transfer transactions, not {type(tx).__name__}")


def replay(batches: Sequence[Sequence[Any]]) -> tuple[dict[int, int], list[list[int]]]:
    """Execute ``batches`` one transaction at a time in batch order, with plain dicts.

    :returns: the balances, and per batch the positions of the aborted transactions.
    """
    balances: dict[int, int] = {}
    aborted: list[list[int]] = []
    for txs in batches:
        bad = []
        for i, tx in enumerate(txs):
            if type(tx) is Mint:
                balances[tx.account] = balances.get(tx.account, 0) + tx.amount
            elif tx.source != tx.target:
                have = balances.get(tx.source, 0)
                if have < tx.amount:
                    bad.append(i)
                    continue
                balances[tx.source] = have - tx.amount
                balances[tx.target] = balances.get(tx.target, 0) + tx.amount
        aborted.append(bad)
    return balances, aborted


@dataclasses.dataclass
class LedgerResult:
    """What the ledger program observed."""

    accounts: int
    transfers: int
    batches: int
    aborted: int
    seconds: float
    transfers_per_s: float
    total: int
    expected_total: int
    mismatched_balances: int
    mismatched_aborts: int

    @property
    def ok(self) -> bool:
        """Balances conserved and equal to the sequential replay, aborts included."""
        return self.total == self.expected_total and not self.mismatched_balances and not self.mismatched_aborts


def progress_bar(done: int, total: int, width: int = 30) -> str:
    """``[#########.....................]  30%``."""
    frac = 0.0 if total <= 0 else min(1.0, done / total)
    filled = int(round(frac * width))
    return f"[{'#' * filled}{'.' * (width - filled)}] {frac * 100:3.0f}%"


def _printer(out: Callable[[str], Any], stream: TextIO | None) -> Callable[[int, int], None]:
    """Progress as one updating line on a terminal, else a line at every quarter."""
    if stream is not None and stream.isatty():
        def show(done: int, total: int) -> None:
            stream.write(f"\r  committing {progress_bar(done, total)} {done:,}/{total:,} batches")
            if done >= total:
                stream.write("\n")
            stream.flush()
        return show
    marks: set[int] = set()

    def quarters(done: int, total: int) -> None:
        q = done * 4 // max(1, total)
        if q not in marks and (q > 0 or done == total):
            marks.add(q)
            out(f"  committing {progress_bar(done, total)} {done:,}/{total:,} batches")
    return quarters


def run(*, accounts: int = 1_000, transfers: int = 100_000, batch_size: int = 5_000, workers: int = 2,
        store: Store | str | None = None, seed: int = 7, initial: int = 1_000,
        out: Callable[[str], Any] = print, progress: Callable[[int, int], None] | None = None,
        stream: TextIO | None = None) -> LedgerResult:
    """Fund ``accounts`` accounts, run ``transfers`` random transfers in batches, and check the result.

    :param store: where to persist (None: a new MemoryStore).
    :param progress: called as ``progress(batches_committed, batches)``; by default a text
        progress bar (an updating line when ``stream`` is a terminal).
    """
    if accounts < 2 or transfers < 0 or batch_size < 1:
        raise ValueError(f"need accounts >= 2, transfers >= 0, batch_size >= 1; got {accounts}, {transfers}, "
                         f"{batch_size}")
    rng = random.Random(seed)
    mints = [Mint(a, initial) for a in range(accounts)]
    moves = []
    for _ in range(transfers):
        src = rng.randrange(accounts)
        dst = rng.randrange(accounts - 1)
        moves.append(Transfer(src, dst + (dst >= src), rng.randint(1, initial // 2)))
    batches = [mints] + [moves[i:i + batch_size] for i in range(0, transfers, batch_size)]
    show = progress or _printer(out, stream)
    out(f"  {accounts:,} accounts funded with {initial:,} each; {transfers:,} random transfers in "
        f"{len(batches) - 1:,} batches of {batch_size:,}, {workers} workers")

    with RuntimeManager(LedgerVm(), store, workers=workers) as m:
        funded = m.schedule(mints)
        funded.wait_committed()
        t0 = time.perf_counter()
        scheduled = [m.schedule(b) for b in batches[1:]]
        for i, b in enumerate(scheduled, 1):
            b.wait_committed()
            show(i, len(scheduled))
        seconds = time.perf_counter() - t0
        balances = {a: balance_of(m.read(a).data) for a in range(accounts)}
        aborts = [sorted(b.errors) for b in [funded, *scheduled]]
        bad_types = [e for b in scheduled for e in b.errors.values() if not isinstance(e, InsufficientFunds)]
    if bad_types:
        raise bad_types[0]

    expected, expected_aborts = replay(batches)
    total = sum(balances.values())
    mismatched = sum(balances[a] != expected.get(a, 0) for a in range(accounts))
    mismatched_aborts = sum(a != e for a, e in zip(aborts, expected_aborts))
    n_aborted = sum(len(a) for a in aborts)
    rate = transfers / seconds if seconds > 0 else float("inf")
    result = LedgerResult(accounts, transfers, len(scheduled), n_aborted, seconds, rate, total,
                          accounts * initial, mismatched, mismatched_aborts)
    out(f"  executed and committed       {transfers:,} transfers in {seconds * 1000:,.0f} ms "
        f"({rate:,.0f} transfers/s), {n_aborted:,} aborted for insufficient funds")
    out(f"  total balance                {total:,} (expected {accounts * initial:,}) -> "
        f"{'conserved' if total == accounts * initial else 'NOT CONSERVED'}")
    out(f"  sequential replay            {accounts - mismatched:,} of {accounts:,} balances and "
        f"{len(aborts) - mismatched_aborts:,} of {len(aborts):,} batches' aborts equal -> "
        f"{'OK' if result.ok else 'FAILED'}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``python examples/ledger.py [--accounts N] [--transfers M] [--batch-size B] [--workers W]``."""
    parser = argparse.ArgumentParser(description="Run random transfers between accounts on the execution "
                                                 "runtime and check them against a sequential replay.")
    parser.add_argument("--accounts", type=int, default=1_000, help="accounts (default 1000)")
    parser.add_argument("--transfers", type=int, default=100_000, help="transfers (default 100000)")
    parser.add_argument("--batch-size", type=int, default=5_000, help="transfers per batch (default 5000)")
    parser.add_argument("--workers", type=int, default=2, help="worker threads (default 2)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    args = parser.parse_args(argv)
    result = run(accounts=args.accounts, transfers=args.transfers, batch_size=args.batch_size,
                 workers=args.workers, seed=args.seed, stream=sys.stdout)
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
