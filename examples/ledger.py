"""Random transfers between accounts on the transaction execution runtime, checked against a replay.

N accounts, M random transfers in batches: executed in parallel, persisted,
committed in order; the total balance is conserved and every balance (and every
aborted transfer) equals a sequential replay in batch order.

With ringcore-rocksdb installed the ledger runs on a RocksDB store. Name a data
directory to keep it: the next run reopens the store, verifies that it holds
exactly what the previous run committed, and runs more transfers on top.

    python examples/ledger.py --accounts 1000 --transfers 100000 --workers 2
    python examples/ledger.py --data-dir ledger-data      # twice: the second run verifies the first
"""

from ringcore.demo.ledger import main

if __name__ == "__main__":
    raise SystemExit(main())
