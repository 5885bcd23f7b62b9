"""The execution runtime's types and encodings, its plugin registrations, the ledger example, the benchmark code."""

from __future__ import annotations

import inspect
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ringcore.execution as ex
from ringcore.execution import (
    READ,
    WRITE,
    Access,
    InvalidTransactionError,
    MemoryStore,
    RuntimeManager,
    SimpleTransaction,
    StateDiff,
    StateSpace,
    Transaction,
    VersionedState,
    decode_resource_id,
    encode_resource_id,
)
from ringcore.execution.state import (
    META_LAST_COMMITTED,
    data_key,
    decode_rollback_value,
    latest_key,
    rollback_key,
    rollback_value,
    split_versioned_key,
)
from ringcore.plugins import PluginRegistry, use_registry

ROOT = Path(__file__).resolve().parents[1]


# -- resource ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize("rid, encoded", [
    (0, b"\x01" + bytes(8)),
    (5, b"\x01\x00\x00\x00\x00\x00\x00\x00\x05"),
    (2**64 - 1, b"\x01" + b"\xff" * 8),
    (0x0102030405060708, b"\x01\x01\x02\x03\x04\x05\x06\x07\x08"),  # big-endian
    (b"", b"\x02"),
    (b"\x05", b"\x02\x05"),
    ("5", b"\x035"),
    ("€", b"\x03\xe2\x82\xac"),
])
def test_resource_id_encoding_round_trips(rid, encoded):
    assert encode_resource_id(rid) == encoded
    assert decode_resource_id(encoded) == rid
    assert type(decode_resource_id(encoded)) is type(rid)


def test_int_bytes_and_str_ids_never_collide():
    assert len({encode_resource_id(x) for x in (5, b"\x05", "5", b"5", "\x05")}) == 5


def test_integer_like_and_bytes_like_ids_are_normalised():
    assert encode_resource_id(np.int64(7)) == encode_resource_id(7)
    assert encode_resource_id(bytearray(b"ab")) == encode_resource_id(b"ab")
    with pytest.raises(InvalidTransactionError, match="bool"):
        encode_resource_id(False)
    with pytest.raises(ValueError, match="not a canonical resource id encoding"):
        decode_resource_id(b"\x09abc")


def test_numpy_ids_schedule_as_ints():
    seen = []

    class Vm(ex.VmInterface):
        def process_transaction(self, tx, handles):
            seen.append([(type(h.id), h.id) for h in handles])
            handles[0].write(b"x")

    with RuntimeManager(Vm()) as m:
        m.schedule([SimpleTransaction([Access.write(np.uint32(3)), (bytearray(b"k"), READ)])]).wait_committed(30)
        assert m.read(3).version == 1 and m.read(np.int8(3)).version == 1
    assert seen == [[(int, 3), (bytes, b"k")]]


def test_access_and_simple_transaction():
    assert Access.read(1) == (1, READ) and Access.write("a") == ("a", WRITE)
    t = SimpleTransaction([(1, READ), Access.write(2)], payload={"x": 1})
    assert t.accesses == (Access(1, READ), Access(2, WRITE)) and t.payload == {"x": 1}
    assert isinstance(t, Transaction)
    assert not isinstance(object(), Transaction)


# -- state and keys -----------------------------------------------------------------------------------


def test_key_encodings_are_big_endian():
    rid = encode_resource_id(9)
    assert data_key(0x0102, rid) == b"\x00\x00\x00\x00\x00\x00\x01\x02" + rid
    assert rollback_key(3, rid) == struct.pack(">Q", 3) + rid
    assert latest_key(rid) == rid
    assert rollback_value(1, 4) == struct.pack(">QQ", 1, 4)
    assert decode_rollback_value(rollback_value(7, 9)) == (7, 9)
    assert split_versioned_key(data_key(12, rid)) == (12, 9)
    with pytest.raises(ValueError, match="16 bytes"):
        decode_rollback_value(b"\x00" * 8)
    assert META_LAST_COMMITTED == b"last_committed"


def test_versioned_state_and_diff():
    s = VersionedState("a", 0, b"")
    assert not s.exists and VersionedState("a", 1, b"x").exists
    d = StateDiff(4, "a", 1, VersionedState("a", 3, b"z"))
    assert d.written and d.tail_version == 3
    assert not StateDiff(4, "a", 3, VersionedState("a", 3, b"z")).written
    assert [s.label for s in StateSpace] == ["data", "latest_ptr", "rollback_ptr", "meta"]


# -- plugins -------------------------------------------------------------------------------------------


@pytest.fixture
def registry():
    from ringcore.execution import _builtin

    reg = PluginRegistry(load=[]).load()
    if "memory" not in reg.stores:  # not (yet) registered as a built-in plugin by the core
        reg.register(_builtin)
    with use_registry(reg) as r:
        yield r


def test_builtin_store_and_vms_are_registered_through_the_hooks(registry):
    assert set(registry.stores) == {"memory"}
    assert {"noop", "ledger"} <= set(registry.vms)
    assert isinstance(registry.stores["memory"].factory(), MemoryStore)


def test_manager_by_names(registry):
    from ringcore.execution.ledger import LedgerVm, Mint, Transfer

    with RuntimeManager("ledger", "memory", workers=2) as m:
        assert isinstance(m.vm, LedgerVm) and isinstance(m.store, MemoryStore)
        b = m.schedule([Mint(1, 100), Transfer(1, 2, 30), Transfer(2, 3, 50)])
        assert b.wait_committed(30)
        assert b.effects[:2] == [(100,), (70, 30)] and set(b.errors) == {2}
        store = m.store
    assert store.closed  # created by name: the manager owned it
    from ringcore.errors import PluginError

    with pytest.raises(PluginError, match="no VM named 'nope'"):
        RuntimeManager("nope")


def test_builtin_module_is_light():
    code = ("import sys, ringcore.execution._builtin; "
            "print(sorted(m for m in ('ringcore.execution.manager', 'ringcore.execution.store', "
            "'ringcore.execution.ledger', 'rocksdict') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- the ledger example and the benchmark code --------------------------------------------------------------


def test_ledger_conserves_balances_and_matches_a_replay():
    from ringcore.execution.ledger import run

    lines: list[str] = []
    progress: list[tuple[int, int]] = []
    result = run(accounts=50, transfers=3000, batch_size=250, workers=3, out=lines.append,
                 progress=lambda done, total: progress.append((done, total)))
    assert result.ok and result.total == 50 * 1000 and result.aborted > 0
    assert progress[-1] == (12, 12)
    assert any("conserved" in line for line in lines)


def test_ledger_example_script_runs():
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "ledger.py"), "--accounts", "20",
                           "--transfers", "500", "--batch-size", "100"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "-> OK" in proc.stdout and "100%" in proc.stdout


def test_progress_bar():
    from ringcore.execution.ledger import progress_bar

    assert progress_bar(0, 4, width=4) == "[....]   0%"
    assert progress_bar(2, 4, width=4) == "[##..]  50%"
    assert progress_bar(4, 4, width=4) == "[####] 100%"


def test_bench_workload_and_sequential_baseline_agree():
    from ringcore.execution.bench import _Stamp, make_workload, measure_runtime, run_sequential

    txs = make_workload(2000, resources=500)
    assert all(len(t.accesses) == 2 and t.accesses[0][0] != t.accesses[1][0] for t in txs)
    hot = sum(any(a[0] == 0 for a in t.accesses) for t in txs)
    assert 100 < hot < 300  # about 10%
    batches = [txs[i:i + 500] for i in range(0, 2000, 500)]
    state = run_sequential(_Stamp(), batches)
    with RuntimeManager(_Stamp()) as m:
        for b in batches:
            m.schedule(b)
        m.flush(60)
        assert all(m.read(rid) == s for rid, s in state.items())
    assert measure_runtime(ex.NoopVm(), batches) > 0


def test_bench_memory_measure_runs():
    from ringcore.execution.bench import measure_inflight_bytes

    assert measure_inflight_bytes(2000) > 0


# -- the public surface -------------------------------------------------------------------------------------


def test_every_public_name_is_documented():
    missing = []
    for name in ex.__all__:
        obj = getattr(ex, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            if not inspect.getdoc(obj):
                missing.append(name)
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if attr.startswith("_") or not (inspect.isfunction(member) or isinstance(member, property)):
                        continue
                    if not inspect.getdoc(getattr(obj, attr)) and attr not in ("closed",):
                        missing.append(f"{name}.{attr}")
    assert not missing, f"public names without a docstring: {missing}"


def test_execution_errors_are_ringcore_errors():
    from ringcore.errors import RingcoreError

    for name in ("ExecutionError", "InvalidTransactionError", "ReadOnlyAccessError", "RollbackError", "StoreError",
                 "StoreClosedError", "StoreArgumentError", "ManagerClosedError", "RuntimeFailedError"):
        assert issubclass(getattr(ex, name), RingcoreError), name
    assert issubclass(ex.RollbackError, ValueError)
    assert issubclass(ex.ReadOnlyAccessError, PermissionError)
