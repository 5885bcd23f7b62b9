"""Random transfers between accounts on the transaction execution runtime, checked against a replay.

N accounts, M random transfers in batches: executed in parallel, persisted,
committed in order; the total balance is conserved and every balance (and every
aborted transfer) equals a sequential replay in batch order.

    python examples/ledger.py --accounts 1000 --transfers 100000 --workers 2
"""

from ringcore.execution.ledger import main

if __name__ == "__main__":
    raise SystemExit(main())
