"""``ringcore info`` and ``ringcore store ...``; the ledger demo and example on RocksDB, reopened and verified."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ringcore_rocksdb import RocksDBStore

import ringcore.demo
from ringcore.cli import main
from ringcore.demo.ledger import ENV_DATA_DIR, MANIFEST, STORE_DIR
from ringcore.demo.ledger import run as run_ledger
from ringcore.execution import RuntimeManager
from ringcore.execution.ledger import LedgerVm, Mint

ROOT = Path(__file__).resolve().parents[3]


def cli(argv, capsys):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def make_store(path, batches=3):
    with RocksDBStore(path) as store, RuntimeManager(LedgerVm(), store) as m:
        for i in range(batches):
            m.schedule([Mint(a, 10) for a in range(i * 10, i * 10 + 10)])
        m.flush(30)


# -- ringcore info / ringcore store inspect -------------------------------------------------------------------


def test_info_lists_the_store_and_its_command(capsys):
    status, out, _ = cli(["info", "--json"], capsys)
    assert status == 0
    stores = {s["name"]: s for s in json.loads(out)["stores"]}
    assert stores["rocksdb"]["package"] == "ringcore-rocksdb" and stores["rocksdb"]["plugin"] == "rocksdb"
    status, out, _ = cli(["info"], capsys)
    assert "rocksdb    ringcore-rocksdb (plugin rocksdb)" in out
    assert "register_commands, register_stores" in out
    status, out, _ = cli(["--help"], capsys)
    assert "store" in out and "inspect" in out


def test_inspect_shows_the_last_batch_resources_and_size(tmp_path, capsys):
    make_store(tmp_path / "s")
    status, out, err = cli(["store", "inspect", tmp_path / "s"], capsys)
    assert status == 0, err
    lines = {line[:20].strip(): line[22:] for line in out.splitlines()}  # labels padded to the longest, 20
    assert lines["store"] == str(tmp_path / "s")
    assert lines["last committed batch"] == "3"
    assert lines["resources"] == "30"
    assert lines["size on disk"].endswith(" files") and "KiB" in lines["size on disk"]
    assert lines["runtime schema"] == "1"
    status, out, _ = cli(["store", "inspect", tmp_path / "s", "--json"], capsys)
    info = json.loads(out)
    assert (info["last_committed"], info["resources"]) == (3, 30) and info["size_bytes"] > 0


def test_inspect_a_store_another_process_holds(tmp_path, capsys, hold_store):
    make_store(tmp_path / "s", batches=2)
    holder = hold_store(tmp_path / "s")
    status, out, err = cli(["store", "inspect", tmp_path / "s"], capsys)
    assert status == 0, err
    assert "last committed batch  2" in out
    holder.stop()


def test_inspect_says_what_is_wrong(tmp_path, capsys):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("x")
    status, _, err = cli(["store", "inspect", tmp_path / "other"], capsys)
    assert status == 1
    assert err.startswith(f"ringcore: error: {tmp_path / 'other'} is not a ringcore store")
    assert os.listdir(tmp_path / "other") == ["file.txt"]
    status, _, err = cli(["store", "inspect", tmp_path / "missing"], capsys)
    assert status == 1 and "no store at" in err and "does not exist" in err
    assert not (tmp_path / "missing").exists()
    status, _, err = cli(["store"], capsys)
    assert status == 2 and "ACTION" in err


def test_inspect_reports_uncommitted_leftovers(tmp_path, capsys):
    make_store(tmp_path / "s", batches=1)
    with RocksDBStore(tmp_path / "s") as store:  # what a crash between persist and commit leaves
        wb = store.write_batch()
        wb.put(store_space("META"), b"last_persisted", (2).to_bytes(8, "big"))
        store.commit(wb)
    status, out, _ = cli(["store", "inspect", tmp_path / "s"], capsys)
    assert "last persisted batch  2 (1 batch written but never committed" in out


def store_space(name):
    from ringcore.execution import StateSpace

    return StateSpace[name]


# -- ringcore store bench / crash-test ---------------------------------------------------------------------------


def test_store_bench_json_structure(tmp_path, capsys):
    # Structure only: the figures depend on the machine and are never asserted.
    status, out, err = cli(["store", "bench", "--quick", "--json", "--only", "diffs", "--dir", tmp_path], capsys)
    assert status == 0, err
    report = json.loads(out)
    names = [r["name"] for r in report["results"]]
    assert names == ["RocksDB sync=False: committed state diffs", "RocksDB sync=True, group commit of 10,000 diffs",
                     "RocksDB sync=True, group commit of 100 diffs"]
    first = report["results"][0]
    assert first["unit"] == "diffs/s" and first["target"] == {"op": ">=", "value": 200_000.0}
    assert first["baseline"]["name"].startswith("MemoryStore") and first["status"] in {"PASS", "MISS"}
    assert report["results"][1]["details"]["diffs_per_commit"] == 10_000
    assert "running diffs" in err
    assert os.listdir(tmp_path) == []  # the benchmark's stores are removed


def test_the_diff_benchmark_writes_what_the_runtime_writes(tmp_path):
    from ringcore_rocksdb.bench import _diff_workload, commit_diffs

    from ringcore.testing.execution import assert_store_matches

    batches = _diff_workload(300, 100, resources=1_000)
    with RocksDBStore(tmp_path / "s") as store:
        assert commit_diffs(store, batches, group=2) == 4
        state = {}
        for keys, data_keys, data_values, _, latest_values in batches:
            for key, dkey, value, latest in zip(keys, data_keys, data_values, latest_values):
                state[int.from_bytes(key[1:], "big")] = (int.from_bytes(latest, "big"), value)
                assert dkey == latest + key
        assert_store_matches(store, state, 3)


def test_crash_test_command(capsys):
    status, out, _ = cli(["store", "crash-test", "--trials", "2", "--sync", "on", "--seed", "3"], capsys)
    assert status == 0, out
    assert "2 kills (2 with sync=True)" in out and "every recovery was exactly at a committed batch" in out


# -- the ledger demo and example ---------------------------------------------------------------------------------


def test_the_ledger_runs_on_rocksdb_and_the_next_run_verifies_it(tmp_path):
    data = tmp_path / "ledger"
    lines: list[str] = []
    first = run_ledger(accounts=40, transfers=1_500, batch_size=300, data_dir=data, out=lines.append)
    assert first.ok and first.store == "rocksdb" and first.round == 1 and first.verified is None
    assert f"  store: RocksDB at {data / STORE_DIR}" in lines
    record = json.loads((data / MANIFEST).read_text())
    assert record["last_committed"] == 6 and sum(record["balances"].values()) == 40 * 1_000

    lines.clear()
    second = run_ledger(accounts=40, transfers=1_500, batch_size=300, data_dir=data, out=lines.append)
    assert second.ok and second.round == 2 and second.verified is True
    assert any("batch 6 committed (recorded: 6) by 1 earlier run; 40 of 40 balances as recorded" in ln and
               ln.endswith("-> verified") for ln in lines)
    assert json.loads((data / MANIFEST).read_text())["last_committed"] == 11

    # The record and the store disagree (as after losing committed data): the next run says so.
    record = json.loads((data / MANIFEST).read_text())
    record["balances"]["0"] += 1
    (data / MANIFEST).write_text(json.dumps(record))
    lines.clear()
    third = run_ledger(accounts=40, transfers=1_500, batch_size=300, data_dir=data, out=lines.append)
    assert not third.ok and third.verified is False and third.result is None
    assert any("39 of 40 balances as recorded" in ln and ln.endswith("NOT AS RECORDED") for ln in lines)


def test_the_ledger_uses_a_temporary_directory_by_default(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    lines: list[str] = []
    outcome = run_ledger(accounts=20, transfers=200, batch_size=100, out=lines.append)
    assert outcome.ok and outcome.store == "rocksdb"
    assert outcome.data_dir.startswith(str(tmp_path)) and not os.path.exists(outcome.data_dir)
    assert any(ENV_DATA_DIR in ln for ln in lines)


def test_the_ledger_refuses_a_directory_it_did_not_write(tmp_path):
    from ringcore.errors import StoreError

    (tmp_path / STORE_DIR).mkdir()
    (tmp_path / STORE_DIR / "x").write_text("x")
    with pytest.raises(StoreError, match="was not written by this program"):
        run_ledger(accounts=20, transfers=100, data_dir=tmp_path, out=lambda s: None)
    assert os.listdir(tmp_path / STORE_DIR) == ["x"]


def test_ringcore_demo_keeps_the_ledger_in_the_named_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(ringcore.demo, "PROGRAMS", tuple(p for p in ringcore.demo.PROGRAMS if p[0] == "ledger"))
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path / "demo"))
    lines: list[str] = []
    assert ringcore.demo.run_demo(quick=True, out=lines.append).ok
    assert f"  store: RocksDB at {tmp_path / 'demo' / STORE_DIR}" in lines
    lines.clear()
    report = ringcore.demo.run_demo(quick=True, out=lines.append)
    assert report.ok and report.results["ledger"].verified is True
    assert any(ln.endswith("-> verified") for ln in lines)


def test_the_ledger_example_twice_on_one_directory(tmp_path):
    def example():
        return subprocess.run([sys.executable, str(ROOT / "examples" / "ledger.py"), "--accounts", "30",
                               "--transfers", "600", "--batch-size", "200", "--data-dir", str(tmp_path)],
                              capture_output=True, text=True, timeout=120)

    first = example()
    assert first.returncode == 0, first.stdout + first.stderr
    assert "store: RocksDB at" in first.stdout and "-> OK" in first.stdout
    second = example()
    assert second.returncode == 0, second.stdout + second.stderr
    assert "-> verified" in second.stdout and "-> OK" in second.stdout
    held = RocksDBStore(tmp_path / STORE_DIR)  # a third run while the store is held: a clear error
    try:
        third = example()
    finally:
        held.close()
    assert third.returncode == 1 and "Traceback" not in third.stderr
    assert f"error: the store at {tmp_path / STORE_DIR} is open in process {os.getpid()}" in third.stderr
