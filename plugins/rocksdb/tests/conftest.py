"""ringcore-rocksdb's suite loads only this plugin, whatever else is installed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator

import pytest

os.environ["RINGCORE_LOAD_PLUGINS"] = "rocksdb"
os.environ.pop("RINGCORE_BACKEND", None)


class StoreHolder:
    """Another process with the RocksDBStore at ``path`` open, until :meth:`stop`."""

    def __init__(self, path: object) -> None:
        code = textwrap.dedent(f"""
            import sys
            from ringcore_rocksdb import RocksDBStore
            s = RocksDBStore({str(path)!r})
            print("ready", flush=True)
            sys.stdin.read()
            s.close()
        """)
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", self.proc.stderr.read()

    def stop(self) -> None:
        """Let the process close the store and exit."""
        self.proc.stdin.close()
        assert self.proc.wait(30) == 0, self.proc.stderr.read()


@pytest.fixture
def hold_store() -> Iterator[Callable[[object], StoreHolder]]:
    """``hold_store(path)``: another process opens the store at ``path`` and keeps it open until the
    test ends (or its ``stop()``)."""
    holders: list[StoreHolder] = []

    def start(path: object) -> StoreHolder:
        holders.append(StoreHolder(path))
        return holders[-1]

    yield start
    for h in holders:
        if h.proc.poll() is None:
            h.proc.kill()
            h.proc.wait(30)
