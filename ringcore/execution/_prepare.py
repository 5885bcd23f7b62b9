"""Validating a batch's transactions and flattening their accesses: the first step of ``schedule``."""

from __future__ import annotations

import struct
from typing import Any

from ..errors import InvalidTransactionError
from .resource import READ, WRITE, encode_resource_id, normalize_resource_id

__all__ = ["prepare", "INT_KEY"]

INT_KEY = struct.Struct(">BQ").pack
"""An int resource id's canonical encoding: ``INT_KEY(1, rid)`` (tag 0x01, 8 bytes big-endian)."""
_INT_LIMIT = 1 << 64


def _bad_tx(pos: int, tx: Any, what: str) -> InvalidTransactionError:
    try:
        shown = repr(tx)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real error
        shown = f"a {type(tx).__name__}"
    return InvalidTransactionError(f"transaction #{pos} of the batch ({shown:.80}): {what}; nothing was scheduled")


def _check_tx(tx: Any, pos: int) -> None:
    """Raise the error that says what is wrong with ``tx``'s accesses, if anything is."""
    try:
        accesses = tx.accesses
    except AttributeError:
        raise _bad_tx(pos, tx, "it has no 'accesses' attribute; a transaction declares its accesses "
                               "as (resource id, AccessType) pairs") from None
    try:
        it = iter(accesses)
    except TypeError:
        raise _bad_tx(pos, tx, f"its accesses {accesses!r:.60} are not iterable") from None
    for access in it:
        try:
            rid, kind = access
        except (TypeError, ValueError):
            raise _bad_tx(pos, tx, f"access {access!r:.60} is not a (resource id, AccessType) pair") from None
        if kind is not READ and kind is not WRITE:
            raise _bad_tx(pos, tx, f"access type {kind!r} of resource {rid!r:.40} is not AccessType.READ "
                                   f"or AccessType.WRITE")
        try:
            encode_resource_id(rid)
        except InvalidTransactionError as exc:
            raise _bad_tx(pos, tx, str(exc)) from None


def prepare(txs: tuple[Any, ...]) -> tuple[list[Any], list[bool], list[int], list[int]]:
    """Validate every transaction's accesses; return the batch's flat access lists.

    ``rids`` (normalised resource ids), ``writes`` and ``txof`` (the transaction of
    each access) have one entry per access; the accesses of transaction ``j``
    are ``tstart[j]:tstart[j + 1]``. A resource a transaction lists twice gets
    one access, a WRITE if either is. The loop is the hot path of
    ``schedule``; anything unusual goes through :func:`_check_tx`, which
    raises the error that names it.
    """
    rids: list[Any] = []
    writes: list[bool] = []
    txof: list[int] = []
    tstart: list[int] = []
    read, write_ = READ, WRITE
    pos = 0
    start = 0
    for tx in txs:
        tstart.append(start)
        try:
            for rid, kind in tx.accesses:
                if type(rid) is not int or not 0 <= rid < _INT_LIMIT:
                    encode_resource_id(rid)  # raises for an unsupported id
                    rid = normalize_resource_id(rid)
                if kind is write_:
                    w = True
                elif kind is read:
                    w = False
                else:
                    raise _bad_tx(pos, tx, f"access type {kind!r} of resource {rid!r:.40} is not "
                                           f"AccessType.READ or AccessType.WRITE")
                end = len(rids)
                if end > start:
                    for k in range(start, end):  # a resource listed twice: one access
                        if rids[k] == rid:
                            if w:
                                writes[k] = True
                            break
                    else:
                        rids.append(rid)
                        writes.append(w)
                        txof.append(pos)
                else:
                    rids.append(rid)
                    writes.append(w)
                    txof.append(pos)
        except InvalidTransactionError as exc:
            if str(exc).startswith("transaction #"):
                raise
            raise _bad_tx(pos, tx, str(exc)) from None
        except Exception as exc:
            _check_tx(tx, pos)
            raise _bad_tx(pos, tx, f"reading its accesses raised {type(exc).__name__}: {exc}") from exc
        start = len(rids)
        pos += 1
    tstart.append(start)
    return rids, writes, txof, tstart
