"""RocksDBStore: the execution runtime's durable, crash-safe Store, on RocksDB through rocksdict.

Each :class:`~ringcore.execution.state.StateSpace` is a column family; keys and
values are the runtime's bytes, stored as they are (rocksdict's raw mode). A
commit is one RocksDB write batch across the families, appended to the
write-ahead log before it becomes visible, so after a crash RocksDB recovers
every commit up to the last complete one and nothing of a later one. With
``sync=True`` every commit is on disk (fsync) before :meth:`RocksDBStore.commit`
returns. See docs/rocksdb.md.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import rocksdict

from ringcore.errors import StoreArgumentError, StoreClosedError, StoreError, StoreLockedError
from ringcore.execution.state import (
    META_LAST_COMMITTED,
    META_LAST_PERSISTED,
    META_SCHEMA_VERSION,
    StateSpace,
    decode_u64,
)
from ringcore.execution.store import check_bytes, check_space

from ._layout import FAMILIES, MARKER, check_directory, size_on_disk, write_marker

__all__ = ["RocksDBStore", "RocksDBWriteBatch", "StoreStats", "COMPRESSIONS"]

COMPRESSIONS = ("none", "snappy", "lz4", "lz4hc", "zstd", "bz2")
"""The block compressions RocksDBStore accepts (those built into rocksdict's RocksDB)."""

_MiB = 1 << 20
_CHUNK = 512  # items a prefix iterator takes from RocksDB at a time
_MAX_WAL = 64 * _MiB  # the write-ahead log's size at which RocksDB flushes what pins its oldest file


def _successor(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (None: there is none)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _lock_holder(lock_file: Path) -> int | None:
    """The id of the process holding a POSIX lock on ``lock_file`` (Linux, best effort)."""
    try:
        st = os.stat(lock_file)
        with open("/proc/locks", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        # "1: POSIX  ADVISORY  WRITE 4242 fd:01:1234567 0 EOF"
        if len(fields) >= 6 and fields[1] in ("POSIX", "OFDLCK", "FLOCK"):
            dev_inode = fields[5].rsplit(":", 1)
            if len(dev_inode) == 2 and dev_inode[1].isdigit() and int(dev_inode[1]) == st.st_ino:
                try:
                    return int(fields[4])
                except ValueError:
                    return None
    return None


def _open_error(path: Path, exc: BaseException) -> StoreError:
    text = str(exc)
    if "lock hold by current process" in text:
        return StoreLockedError(f"the store at {path} is already open in this process; close() the "
                                f"RocksDBStore that holds it first, or use that one")
    if "While lock file" in text or "/LOCK:" in text:
        pid = _lock_holder(path / "LOCK")
        who = f"process {pid}" if pid is not None and pid != os.getpid() else "another process"
        return StoreLockedError(f"the store at {path} is open in {who} (RocksDB holds {path / 'LOCK'}); "
                                f"close it there, or stop that process, then open it again")
    return StoreError(f"RocksDB could not open the store at {path}: {text}")


def _snapshot_int(snapshot: Any, key: bytes) -> int | None:
    """An 8-byte META integer read through a rocksdict Snapshot (None: absent or not 8 bytes)."""
    try:
        raw = snapshot[key]
    except Exception:  # noqa: BLE001 - rocksdict raises a bare Exception for a missing key
        return None
    return decode_u64(raw) if isinstance(raw, bytes) and len(raw) == 8 else None


@dataclasses.dataclass(frozen=True)
class StoreStats:
    """What ``ringcore store inspect`` shows: one consistent view of a store."""

    path: str
    last_committed: int
    """The last committed batch (0: none)."""
    last_persisted: int
    """The highest batch whose data was written; above ``last_committed`` when a crash left an
    uncommitted batch's data, which the next RuntimeManager on the store removes."""
    schema_version: int | None
    """The execution runtime's key layout (None: no RuntimeManager has opened the store yet)."""
    resources: int
    """Resources that exist (latest pointers), counted exactly."""
    data_versions: int
    """State versions held (DATA keys; RocksDB's estimate)."""
    rollback_pointers: int
    """Rollback pointers held (one per batch and resource it changed; RocksDB's estimate)."""
    size_bytes: int
    """Everything in the directory: tables, write-ahead log, manifest, info logs."""
    files: int

    def as_dict(self) -> dict[str, Any]:
        """The fields as a dict (for JSON)."""
        return dataclasses.asdict(self)


class RocksDBWriteBatch:
    """A :class:`~ringcore.execution.store.WriteBatch` for :class:`RocksDBStore`: a RocksDB write
    batch spanning the four column families, applied atomically by :meth:`RocksDBStore.commit`.

    It holds no RocksDB handle of its own, so an uncommitted batch never keeps a closed
    store's files locked.
    """

    __slots__ = ("store", "_wb")

    def __init__(self, store: RocksDBStore) -> None:
        self.store = store
        self._wb = rocksdict.WriteBatch(raw_mode=True)

    def _handles(self) -> list[Any]:
        handles = self.store._handles
        if handles is None:
            raise StoreClosedError(f"the RocksDBStore at {self.store.path} is closed; this write batch can no "
                                   f"longer be filled or committed")
        return handles

    def put(self, space: StateSpace, key: bytes, value: bytes) -> None:
        """Set ``key`` in ``space`` to ``value`` when the batch is committed."""
        handles = self._handles()
        if type(space) is not StateSpace:
            space = check_space(space)
        if type(key) is not bytes:
            key = check_bytes("key", key)
        if type(value) is not bytes:
            value = check_bytes("value", value)
        self._wb.put(key, value, handles[space])

    def put_many(self, space: StateSpace, keys: list[bytes], values: list[bytes]) -> None:
        """``put(space, k, v)`` for each pair of ``keys`` and ``values``, in order."""
        handle = self._handles()[check_space(space)]
        if len(keys) != len(values):
            raise StoreArgumentError(f"put_many got {len(keys)} keys and {len(values)} values")
        if not all(type(k) is bytes for k in keys) or not all(type(v) is bytes for v in values):
            # Checked before anything is added: a refused call leaves the batch as it was.
            keys = [check_bytes("key", k) for k in keys]
            values = [check_bytes("value", v) for v in values]
        put = self._wb.put
        for k, v in zip(keys, values):
            put(k, v, handle)

    def delete(self, space: StateSpace, key: bytes) -> None:
        """Remove ``key`` from ``space`` when the batch is committed (absent keys are fine)."""
        handles = self._handles()
        self._wb.delete(check_bytes("key", key), handles[check_space(space)])

    def __len__(self) -> int:
        return self._wb.len()

    @property
    def size_in_bytes(self) -> int:
        """The batch's size as RocksDB will log it."""
        return self._wb.size_in_bytes()

    def __repr__(self) -> str:
        return f"<RocksDBWriteBatch of {len(self)} operations for {self.store.path}>"


class _PrefixIterator:
    """``prefix_iter``'s result: a RocksDB iterator (a consistent view as of its creation), read in
    chunks. The store releases it on close; reading it afterwards raises StoreClosedError."""

    __slots__ = ("_store", "_items", "_read_opts", "_prefix", "_done", "_buf", "_pos", "_lock", "__weakref__")

    def __init__(self, store: RocksDBStore, items: Any, read_opts: Any, check_prefix: bytes | None) -> None:
        self._store = store
        self._items = items
        # RocksDB's iterator points into the read options' upper bound: they must live as long as it.
        self._read_opts = read_opts
        self._prefix = check_prefix  # only when RocksDB cannot bound the scan itself (a prefix of 0xff bytes)
        self._done = False  # read to the end (as opposed to released by close)
        self._buf: list[tuple[bytes, bytes]] = []
        self._pos = 0
        self._lock = threading.Lock()

    def __iter__(self) -> _PrefixIterator:
        return self

    def __next__(self) -> tuple[bytes, bytes]:
        if self._pos >= len(self._buf):
            self._refill()
        item = self._buf[self._pos]
        self._pos += 1
        return item

    def _refill(self) -> None:
        with self._lock:
            items = self._items
            if items is None:
                if self._done:
                    raise StopIteration
                raise StoreClosedError(f"the RocksDBStore at {self._store.path} was closed while this "
                                       f"prefix_iter was being read")
            try:
                chunk = list(itertools.islice(items, _CHUNK))
            except rocksdict.DbClosedError:
                self._items = self._read_opts = None
                raise StoreClosedError(f"the RocksDBStore at {self._store.path} is closed") from None
            except Exception as exc:
                self._finish()
                raise StoreError(f"reading the store at {self._store.path} failed: {exc}") from exc
            if len(chunk) < _CHUNK:
                self._finish()
            prefix = self._prefix
            if prefix is not None:
                for i, (k, _) in enumerate(chunk):
                    if not k.startswith(prefix):
                        del chunk[i:]
                        self._finish()
                        break
            self._buf = chunk
            self._pos = 0
            if not chunk:
                raise StopIteration

    def _finish(self) -> None:
        """Read to the end: drop the RocksDB iterator now (lock held)."""
        self._items = self._read_opts = None
        self._done = True
        self._store._iterators.discard(self)

    def _release(self) -> None:
        """Drop the RocksDB iterator (the store is closing)."""
        with self._lock:
            self._items = self._read_opts = None


class RocksDBStore:
    """A durable :class:`~ringcore.execution.store.Store` in a directory, on RocksDB.

    :param path: the store's directory. A missing or empty directory becomes a new
        store (when ``create``); a directory this class created is reopened; anything
        else is refused, untouched, with a :class:`~ringcore.errors.StoreError`.
    :param sync: fsync the write-ahead log on every commit. False (the default):
        a commit survives the process being killed the moment it returns (the log
        is in the operating system's hands), and a machine crash or power loss may
        lose the last commits, never part of one. True: every commit survives a
        machine crash too, at the price of one fsync per commit (the runtime's
        storage writer groups every batch ready at once into one commit).
    :param create: create a store where there is none (default True).
    :param read_only: open without the write lock (another process may have the store
        open); commits are refused. What it shows is the store as of the opening.
    :param block_cache_size: bytes of RocksDB's LRU block cache, shared by the four
        column families (default 64 MiB).
    :param compression: block compression: ``"lz4"`` (default), ``"snappy"``, ``"zstd"``,
        ``"lz4hc"``, ``"bz2"`` or ``"none"``.
    :param write_buffer_size: bytes of each column family's memtable before it is
        flushed to a table file (default 4 MiB: the runtime's keys arrive in random order, and
        a small memtable keeps their inserts in the CPU cache; about 1.6 times the committed
        state diffs per second of RocksDB's usual 64 MiB, measured with ``ringcore store bench``).
    :param bloom_bits_per_key: bits per key of the bloom filters that let point lookups
        skip table files (default 10; 0 turns them off).
    :param max_background_jobs: RocksDB's flush and compaction threads (default 2).
    :param keep_log_files: how many of RocksDB's own info logs (``LOG``, ``LOG.old.*``) to keep.
    :param configure: ``configure(options)`` is called with every ``rocksdict.Options``
        (the database's and each family's, raw mode) before opening: any RocksDB option
        not listed here. The write-ahead log cannot be turned off.
    :raises StoreLockedError: another process, or another open store of this process, holds the directory.
    :raises StoreError: the path is not a store this class can open (the message says why and
        what to do), or RocksDB failed to open it.
    """

    persistent = True
    """What is committed survives close() and the process."""

    preferred_readers = 0
    """A first read is a RocksDB lookup of about a microsecond: cheaper inline (and in bulk,
    through :meth:`get_many`) than handed to reader threads that contend for the GIL."""

    def __init__(self, path: str | os.PathLike[str], *, sync: bool = False, create: bool = True,
                 read_only: bool = False, block_cache_size: int = 64 * _MiB, compression: str = "lz4",
                 write_buffer_size: int = 4 * _MiB, bloom_bits_per_key: int = 10, max_background_jobs: int = 2,
                 keep_log_files: int = 2, configure: Callable[[Any], None] | None = None) -> None:
        for name, flag in (("sync", sync), ("create", create), ("read_only", read_only)):
            if type(flag) is not bool:
                raise StoreArgumentError(f"{name} must be True or False, got {flag!r}")
        for name, value, low in (("block_cache_size", block_cache_size, 0), ("write_buffer_size", write_buffer_size, 64 << 10),
                                 ("bloom_bits_per_key", bloom_bits_per_key, 0),
                                 ("max_background_jobs", max_background_jobs, 1), ("keep_log_files", keep_log_files, 1)):
            if type(value) is not int or value < low:
                raise StoreArgumentError(f"{name} must be an int >= {low}, got {value!r}")
        if compression not in COMPRESSIONS:
            raise StoreArgumentError(f"compression {compression!r} is not one of {', '.join(COMPRESSIONS)}")
        if configure is not None and not callable(configure):
            raise StoreArgumentError(f"configure must be a callable taking a rocksdict.Options, got {configure!r}")
        try:
            self.path = Path(os.fspath(path)).absolute()
        except TypeError:
            raise StoreArgumentError(f"path must be a directory path (str or os.PathLike), got {path!r}") from None
        self.sync = sync
        self.read_only = read_only
        self.options = {"block_cache_size": block_cache_size, "compression": compression,
                        "write_buffer_size": write_buffer_size, "bloom_bits_per_key": bloom_bits_per_key,
                        "max_background_jobs": max_background_jobs, "keep_log_files": keep_log_files}
        self._lock = threading.Lock()  # open/closed state
        self._commit_lock = threading.Lock()  # commits, and views that must not see half of the commits' order
        self._iterators: weakref.WeakSet[_PrefixIterator] = weakref.WeakSet()
        self._db: Any = None
        self._cfs: list[Any] | None = None
        self._handles: list[Any] | None = None

        state = check_directory(self.path, create=create, read_only=read_only)
        if state == "new":
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                if not (self.path / MARKER).exists():
                    write_marker(self.path)
            except OSError as exc:
                raise StoreError(f"cannot create a store at {self.path}: {exc}") from exc
        cache = rocksdict.Cache(block_cache_size)

        def make_options(db_level: bool) -> Any:
            opts = rocksdict.Options(raw_mode=True)
            table = rocksdict.BlockBasedOptions()
            table.set_block_cache(cache)
            if bloom_bits_per_key:
                table.set_bloom_filter(bloom_bits_per_key, False)
            opts.set_block_based_table_factory(table)
            opts.set_compression_type(getattr(rocksdict.DBCompressionType, compression)())
            opts.set_write_buffer_size(write_buffer_size)
            if db_level:
                opts.create_if_missing(state == "new")
                opts.create_missing_column_families(not read_only)
                opts.set_max_background_jobs(max_background_jobs)
                opts.set_keep_log_file_num(keep_log_files)
                opts.set_max_log_file_size(8 * _MiB)
                # META takes a few bytes per commit and would pin old log files for a long time:
                # past this size RocksDB flushes the families that hold the oldest log back.
                opts.set_max_total_wal_size(_MAX_WAL)
                # Replay the log up to the last complete write batch: recovery lands on a commit boundary.
                opts.set_wal_recovery_mode(rocksdict.DBRecoveryMode.point_in_time())
            if configure is not None:
                configure(opts)
            return opts

        access = rocksdict.AccessType.read_only(False) if read_only else rocksdict.AccessType.read_write()
        try:
            db = rocksdict.Rdict(str(self.path), options=make_options(True),
                                 column_families={name: make_options(False) for name in FAMILIES},
                                 access_type=access)
        except Exception as exc:
            raise _open_error(self.path, exc) from exc
        try:
            self._cfs = [db.get_column_family(name) for name in FAMILIES]
            self._handles = [db.get_column_family_handle(name) for name in FAMILIES]
        except Exception as exc:
            for cf in self._cfs or []:
                cf.close()
            self._cfs = None
            db.close()
            raise StoreError(f"the store at {self.path} lacks a column family ({exc}); it is damaged or was "
                             f"written by something else") from exc
        self._db = db
        self._wopts = rocksdict.WriteOptions()
        self._wopts.sync = sync

    # -- reading -----------------------------------------------------------------------------

    def _families(self) -> list[Any]:
        cfs = self._cfs
        if cfs is None:
            raise StoreClosedError(f"the RocksDBStore at {self.path} is closed")
        return cfs

    def get(self, space: StateSpace, key: bytes) -> bytes | None:
        """The committed value of ``key`` in ``space``, or None."""
        cfs = self._cfs
        if cfs is None:
            raise StoreClosedError(f"the RocksDBStore at {self.path} is closed")
        if type(space) is not StateSpace:
            space = check_space(space)
        if type(key) is not bytes:
            key = check_bytes("key", key)
        try:
            return cfs[space].get(key)
        except rocksdict.DbClosedError:
            raise StoreClosedError(f"the RocksDBStore at {self.path} is closed") from None
        except Exception as exc:
            raise StoreError(f"reading {space.name} from the store at {self.path} failed: {exc}") from exc

    def get_many(self, space: StateSpace, keys: list[bytes]) -> list[bytes | None]:
        """The committed values of ``keys`` (None where absent), read in one consistent RocksDB
        multi-get."""
        cfs = self._families()
        space = check_space(space)
        keys = [k if type(k) is bytes else check_bytes("key", k) for k in keys]
        if not keys:
            return []
        try:
            return cfs[space].get(keys)
        except rocksdict.DbClosedError:
            raise StoreClosedError(f"the RocksDBStore at {self.path} is closed") from None
        except Exception as exc:
            raise StoreError(f"reading {space.name} from the store at {self.path} failed: {exc}") from exc

    def prefix_iter(self, space: StateSpace, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Every committed ``(key, value)`` of ``space`` whose key starts with ``prefix``, in
        ascending byte order, as of the call (a RocksDB iterator: later commits do not show)."""
        cf = self._families()[check_space(space)]
        prefix = check_bytes("prefix", prefix)
        upper = _successor(prefix)
        read_opts = rocksdict.ReadOptions()
        if upper is not None:
            read_opts.set_iterate_upper_bound(upper)
        with self._lock:
            if self._cfs is None:
                raise StoreClosedError(f"the RocksDBStore at {self.path} is closed")
            try:
                items = cf.items(from_key=prefix, read_opt=read_opts)
            except rocksdict.DbClosedError:
                raise StoreClosedError(f"the RocksDBStore at {self.path} is closed") from None
            it = _PrefixIterator(self, items, read_opts, prefix if upper is None and prefix else None)
            self._iterators.add(it)
        return it

    def stats(self) -> StoreStats:
        """Counts and marks of the store as of one instant (a snapshot of META and an iterator
        over the latest pointers, taken between two commits)."""
        cfs = self._families()
        with self._commit_lock:
            meta = cfs[StateSpace.META].snapshot()
            latest = cfs[StateSpace.LATEST_PTR].keys()
        try:
            committed = _snapshot_int(meta, META_LAST_COMMITTED) or 0
            persisted = _snapshot_int(meta, META_LAST_PERSISTED) or 0
            schema = _snapshot_int(meta, META_SCHEMA_VERSION)
            resources = sum(1 for _ in latest)
        finally:
            del meta, latest  # release the snapshot and the iterator now, not at the next collection

        def estimate(space: StateSpace) -> int:
            return cfs[space].property_int_value("rocksdb.estimate-num-keys") or 0

        size, files = size_on_disk(self.path)
        return StoreStats(str(self.path), committed, persisted, schema, resources, estimate(StateSpace.DATA),
                          estimate(StateSpace.ROLLBACK_PTR), size, files)

    # -- writing -----------------------------------------------------------------------------

    def write_batch(self) -> RocksDBWriteBatch:
        """A new, empty write batch for this store."""
        self._families()
        if self.read_only:
            raise StoreError(f"the store at {self.path} was opened read-only; open it with read_only=False "
                             f"to write")
        return RocksDBWriteBatch(self)

    def commit(self, batch: RocksDBWriteBatch) -> None:
        """Apply ``batch`` atomically, its operations in order: one RocksDB write across the
        families, logged before it is visible, and fsynced first when ``sync`` is True."""
        if type(batch) is not RocksDBWriteBatch or batch.store is not self:
            raise StoreArgumentError(f"{batch!r} was not created by this store's write_batch()")
        db = self._db
        if db is None:
            raise StoreClosedError(f"the RocksDBStore at {self.path} is closed")
        if self.read_only:
            raise StoreError(f"the store at {self.path} was opened read-only; commits are refused")
        with self._commit_lock:
            try:
                db.write(batch._wb, self._wopts)
            except rocksdict.DbClosedError:
                raise StoreClosedError(f"the RocksDBStore at {self.path} is closed") from None
            except Exception as exc:
                raise StoreError(f"RocksDB could not commit a write batch to {self.path}: {exc}") from exc

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database and release everything that holds it (column-family handles,
        iterators, the lock on the directory), so the path can be opened again at once.
        Idempotent."""
        with self._lock:
            if self._db is None:
                return
            with self._commit_lock:  # let a commit in progress finish
                db, cfs = self._db, self._cfs
                self._db = self._cfs = self._handles = None
            iterators = list(self._iterators)
            self._iterators = weakref.WeakSet()
        for it in iterators:
            it._release()
        for cf in cfs or []:
            cf.close()
        db.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._db is None

    def __enter__(self) -> RocksDBStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._db is None else ("read-only" if self.read_only else "open")
        return f"<RocksDBStore {str(self.path)!r} sync={self.sync} {state}>"

