"""What a RocksDBStore directory holds, and deciding, before RocksDB touches it, whether a path is one.

A store directory is a RocksDB database with one column family per
:class:`~ringcore.execution.state.StateSpace` (``data``, ``latest_ptr``,
``rollback_ptr``, ``meta``) plus a marker file, ``RINGCORE_STORE``, written
before RocksDB creates anything. Only a directory that is new, empty or holds
the marker is opened; anything else is refused without being modified. This
module imports nothing heavy: the CLI uses it to check a path cheaply.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from ringcore.errors import StoreError
from ringcore.execution.state import StateSpace

__all__ = ["MARKER", "FORMAT", "FORMAT_VERSION", "FAMILIES", "check_directory", "write_marker", "read_marker",
           "size_on_disk"]

MARKER = "RINGCORE_STORE"
"""The marker file's name inside a store directory."""
FORMAT = "ringcore-rocksdb"
FORMAT_VERSION = 1
"""The directory layout: one column family per state space, raw byte keys and values."""
FAMILIES = tuple(space.label for space in StateSpace)
"""The column families, in StateSpace order: ``data``, ``latest_ptr``, ``rollback_ptr``, ``meta``."""

_ROCKSDB_CURRENT = "CURRENT"  # every RocksDB database has it once it is created
_MARKER_TMP = f".{MARKER}.tmp"


def _shown(entries: list[str], limit: int = 4) -> str:
    names = ", ".join(sorted(entries)[:limit])
    return names + (f" and {len(entries) - limit} more" if len(entries) > limit else "")


def read_marker(path: Path) -> dict[str, Any]:
    """The marker of the store at ``path``, checked to be one this plugin can open.

    :raises StoreError: the marker is unreadable or names another format or a newer version.
    """
    marker = path / MARKER
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StoreError(f"{marker} is not a readable ringcore store marker ({type(exc).__name__}: {exc}); "
                         f"the directory {path} may be damaged: restore it from a copy") from exc
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise StoreError(f"{marker} does not describe a {FORMAT} store (it says {info!r:.120}); "
                         f"open the directory with the store that wrote it")
    version = info.get("version")
    if version != FORMAT_VERSION:
        raise StoreError(f"the store at {path} has layout version {version!r}; this ringcore-rocksdb reads "
                         f"version {FORMAT_VERSION}: upgrade ringcore-rocksdb, or use a new directory")
    return info


def write_marker(path: Path) -> None:
    """Write the marker into ``path`` (an empty directory) atomically and durably."""
    body = json.dumps({"format": FORMAT, "version": FORMAT_VERSION, "families": list(FAMILIES)}, indent=2) + "\n"
    tmp = path / _MARKER_TMP
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path / MARKER)
    _fsync_dir(path)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open a directory; the rename is then as durable as it gets
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_directory(path: Path, *, create: bool, read_only: bool) -> Literal["new", "existing"]:
    """Decide whether ``path`` can be opened as a store, without modifying anything.

    :returns: ``"new"`` when a store is to be created there (the path is missing
        or an empty directory, or holds a marker but RocksDB never finished
        creating the database), ``"existing"`` when it holds a store.
    :raises StoreError: the path is a file, a directory that is not a ringcore
        store (another RocksDB database, or anything else), or missing while
        ``create`` is False or the store is opened read-only.
    """
    if not path.exists():
        if read_only or not create:
            raise StoreError(f"no store at {path}: the directory does not exist"
                             + ("" if read_only else "; pass create=True to create one there"))
        return "new"
    if not path.is_dir():
        raise StoreError(f"{path} is a file, not a store directory; name a new or empty directory for a store")
    try:
        # A marker left half-written by a process that stopped while creating the store is ours too.
        entries = [e for e in os.listdir(path) if e != _MARKER_TMP]
    except OSError as exc:
        raise StoreError(f"cannot read the directory {path}: {exc}") from exc
    if MARKER in entries:
        read_marker(path)
        if _ROCKSDB_CURRENT not in entries:
            if read_only:
                raise StoreError(f"the store at {path} was never completed (it was being created when its "
                                 f"process stopped); open it once read-write to finish creating it")
            return "new"
        return "existing"
    if not entries:
        if read_only or not create:
            raise StoreError(f"no store at {path}: the directory is empty"
                             + ("" if read_only else "; pass create=True to create one there"))
        return "new"
    if _ROCKSDB_CURRENT in entries:
        raise StoreError(f"{path} holds a RocksDB database that ringcore did not create (it has no {MARKER} "
                         f"marker); ringcore opens only stores it created, and left the directory untouched. "
                         f"Name a new or empty directory")
    count = f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}"
    raise StoreError(f"{path} is not a ringcore store: it holds {count} ({_shown(entries)}) and "
                     f"no {MARKER} marker. It was left untouched; name a new or empty directory")


def size_on_disk(path: Path) -> tuple[int, int]:
    """``(bytes, files)`` of everything under ``path``."""
    total = files = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:  # a file RocksDB just deleted (an obsolete WAL or table)
                continue
            files += 1
    return total, files
