"""The ``ringcore`` command: info (text and JSON), errors, plugin commands, demo and bench plumbing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import ringcore
from ringcore import cli
from ringcore.plugins import PluginRegistry, use_registry


def _cpu_plugin():
    return pytest.importorskip("ringcore_cpu.plugin")


def _run(argv, capsys):
    status = cli.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


class BrokenBackends:
    """A plugin whose registration hook raises."""

    @staticmethod
    @ringcore.hookimpl
    def register_backends(register):
        raise RuntimeError("boom: the driver exploded")


class GreetCommand:
    """A plugin that adds a command."""

    @staticmethod
    @ringcore.hookimpl
    def register_commands(cli):
        def configure(parser):
            parser.add_argument("--who", default="world")

        def run(args):
            print(f"hello, {args.who}")
            return 3

        cli.add_command("greet", help="say hello", configure=configure, run=run)


class ClashingCommand:
    """A plugin that tries to take a built-in command's name."""

    @staticmethod
    @ringcore.hookimpl
    def register_commands(cli):
        cli.add_command("info", help="not the real info", run=lambda args: 0)


class FailingCommand:
    """A plugin whose command raises an unexpected exception."""

    @staticmethod
    @ringcore.hookimpl
    def register_commands(cli):
        def run(args):
            raise ZeroDivisionError("division by zero in the plugin")

        cli.add_command("explode", help="fails", run=run)


# -- info ------------------------------------------------------------------------


def test_info_json_reports_the_cpu_backend_truthfully(capsys):
    plugin = _cpu_plugin()
    with use_registry(PluginRegistry(load=[], plugins=[plugin])):
        status, out, err = _run(["info", "--json"], capsys)
    assert status == 0, err
    info = json.loads(out)
    assert set(info) >= {"ringcore", "environment", "plugins", "backends", "auto", "stores", "vms"}
    assert info["ringcore"]["version"] == ringcore.__version__
    (cpu,) = [b for b in info["backends"] if b["name"] == "cpu"]
    assert cpu["available"] is True
    assert cpu["priority"] == 100
    assert cpu["package"] == "ringcore-cpu"
    assert cpu["accelerator"] is False
    assert cpu["devices"] and all(d["accelerator"] is False and d["kind"] == "cpu" for d in cpu["devices"])
    assert info["auto"]["backend"] == "cpu"
    assert "fallback" in info["auto"]["reason"]
    (p,) = [p for p in info["plugins"] if p["module"] == plugin.__name__]
    assert p["status"] == "loaded" and p["error"] is None
    assert p["hooks"] == ["register_backends"]
    assert isinstance(info["stores"], list) and isinstance(info["vms"], list)


def test_info_text_lists_backends_devices_and_the_auto_choice(capsys):
    plugin = _cpu_plugin()
    with use_registry(PluginRegistry(load=[], plugins=[plugin])):
        status, out, _ = _run(["info"], capsys)
    assert status == 0
    assert "Plugins:" in out and "Backends" in out and "Stores:" in out and "VMs:" in out
    assert "cpu" in out and "available" in out
    assert "device:" in out and "not an accelerator" in out
    assert "auto selects: cpu" in out
    assert "register_backends" in out


def test_info_shows_a_plugin_whose_hook_raises_and_keeps_the_others(capsys):
    plugin = _cpu_plugin()
    with pytest.warns(RuntimeWarning, match="boom"):
        registry = PluginRegistry(load=[], plugins=[plugin, BrokenBackends]).load()
    with use_registry(registry):
        status, out, _ = _run(["info", "--json"], capsys)
        assert status == 0
        info = json.loads(out)
        (broken,) = [p for p in info["plugins"] if p["name"] == "BrokenBackends"]
        assert broken["status"] == "failed"
        assert "boom: the driver exploded" in broken["error"]
        assert [b["name"] for b in info["backends"] if b["available"]] == ["cpu"]

        status, out, _ = _run(["info"], capsys)
        assert status == 0
        assert "FAILED" in out and "boom: the driver exploded" in out


def test_info_with_no_backend_says_why_auto_selects_nothing(capsys):
    with use_registry(PluginRegistry(load=[])):
        status, out, _ = _run(["info", "--json"], capsys)
    assert status == 0
    info = json.loads(out)
    assert info["backends"] == []
    assert info["auto"]["backend"] is None
    assert "ringcore-cpu" in info["auto"]["error"]


def test_info_reports_a_forced_backend(capsys, monkeypatch):
    plugin = _cpu_plugin()
    monkeypatch.setenv("RINGCORE_BACKEND", "cpu")
    with use_registry(PluginRegistry(load=[], plugins=[plugin])):
        _, out, _ = _run(["info", "--json"], capsys)
    auto = json.loads(out)["auto"]
    assert auto["backend"] == "cpu" and "RINGCORE_BACKEND=cpu" in auto["reason"]

    monkeypatch.setenv("RINGCORE_BACKEND", "nope")
    with use_registry(PluginRegistry(load=[], plugins=[plugin])):
        status, out, _ = _run(["info"], capsys)
    assert status == 0
    assert "auto selects: nothing" in out and "'nope'" in out


def _broken_dist(tmp_path):
    """A distribution on disk whose ringcore entry point raises on import."""
    (tmp_path / "broken_ringcore_plugin.py").write_text("raise ImportError('needs libfoo, which is missing')\n")
    dist = tmp_path / "broken_ringcore_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-ringcore-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ringcore]\nbroken = broken_ringcore_plugin\n")
    return tmp_path


def _cli_subprocess(args, env_extra, tmp_path=None):
    env = dict(os.environ)
    env.pop("RINGCORE_BACKEND", None)
    env.update(env_extra)
    code = "import sys; from ringcore.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], check=False, capture_output=True, text=True, env=env,
                          timeout=60, cwd=tmp_path)


def test_a_plugin_that_fails_to_import_is_reported_not_fatal(tmp_path):
    _cpu_plugin()
    root = _broken_dist(tmp_path)
    env = {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
           "RINGCORE_LOAD_PLUGINS": "cpu,broken"}
    proc = _cli_subprocess(["info", "--json"], env)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    info = json.loads(proc.stdout)
    (broken,) = [p for p in info["plugins"] if p["name"] == "broken"]
    assert broken["status"] == "failed"
    assert broken["distribution"] == "broken-ringcore-plugin" and broken["version"] == "1.0"
    assert "import failed" in broken["error"] and "libfoo" in broken["error"]
    assert info["auto"]["backend"] == "cpu"

    text = _cli_subprocess(["info"], env)
    assert text.returncode == 0 and "FAILED" in text.stdout and "libfoo" in text.stdout

    # Other commands still work, and warn about the broken plugin in one line.
    ver = _cli_subprocess(["--version"], env)
    assert ver.returncode == 0 and ringcore.__version__ in ver.stdout
    assert "Traceback" not in ver.stderr


def test_plugins_left_out_by_the_environment_are_listed_as_not_loaded(tmp_path):
    root = _broken_dist(tmp_path)
    env = {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
           "RINGCORE_LOAD_PLUGINS": ""}
    proc = _cli_subprocess(["info", "--json"], env)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    (broken,) = [p for p in info["plugins"] if p["name"] == "broken"]
    assert broken["status"] == "not loaded"
    assert info["environment"]["RINGCORE_LOAD_PLUGINS"] == ""


# -- errors --------------------------------------------------------------------------


def test_unknown_backend_is_one_clear_line_and_a_nonzero_exit(capsys):
    plugin = _cpu_plugin()
    with use_registry(PluginRegistry(load=[], plugins=[plugin])):
        status, _, err = _run(["demo", "--backend", "nope"], capsys)
    assert status == 1
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("ringcore: error: no backend named 'nope'")
    assert "installed: cpu" in lines[0]


def test_unknown_known_backend_names_the_package_to_install(capsys):
    with use_registry(PluginRegistry(load=[])):
        status, _, err = _run(["demo", "--backend", "cuda"], capsys)
    assert status == 1
    assert "pip install ringcore-cuda" in err and "Traceback" not in err


def test_usage_errors_exit_2(capsys):
    with use_registry(PluginRegistry(load=[])):
        status, _, err = _run(["no-such-command"], capsys)
        assert status == 2 and "invalid choice" in err
        status, out, _ = _run([], capsys)
        assert status == 2 and "info" in out and "demo" in out and "bench" in out


def test_version(capsys):
    with use_registry(PluginRegistry(load=[])):
        status, out, _ = _run(["--version"], capsys)
    assert status == 0
    assert out.strip() == f"ringcore {ringcore.__version__}"


# -- plugin commands -------------------------------------------------------------------


def test_a_plugin_added_command_runs(capsys):
    with use_registry(PluginRegistry(load=[], plugins=[GreetCommand])):
        status, out, _ = _run(["greet", "--who", "ringcore"], capsys)
        assert status == 3
        assert out.strip() == "hello, ringcore"
        status, out, _ = _run(["--help"], capsys)
        assert status == 0 and "greet" in out and "say hello" in out


def test_a_plugin_command_cannot_replace_a_builtin(capsys):
    plugin = _cpu_plugin()
    with use_registry(PluginRegistry(load=[], plugins=[plugin, ClashingCommand, GreetCommand])):
        status, out, err = _run(["info", "--json"], capsys)
        assert status == 0
        assert json.loads(out)["auto"]["backend"] == "cpu"  # the real info ran
        status, out, err = _run(["greet"], capsys)
        assert status == 3 and "hello, world" in out
        assert "already exists" in err and "Traceback" not in err


def test_a_failing_plugin_command_reports_one_line(capsys):
    with use_registry(PluginRegistry(load=[], plugins=[FailingCommand])):
        status, _, err = _run(["explode"], capsys)
    assert status == 1
    assert "Traceback" not in err
    assert "ZeroDivisionError" in err and len(err.strip().splitlines()) == 1


def test_add_command_validates():
    import argparse

    line = cli.CommandLine(argparse.ArgumentParser().add_subparsers())
    line.add_command("one", run=lambda a: 0)
    with pytest.raises(ValueError, match="already exists"):
        line.add_command("one", run=lambda a: 0)
    with pytest.raises(TypeError, match="needs run"):
        line.add_command("two")
    with pytest.raises(ValueError, match="name"):
        line.add_command("-x", run=lambda a: 0)


# -- demo and bench ----------------------------------------------------------------------


def test_demo_runs_every_example_on_the_auto_backend(capsys):
    plugin = _cpu_plugin()
    with use_registry(PluginRegistry(load=[], plugins=[plugin])):
        status, out, err = _run(["demo", "--quick"], capsys)
    assert status == 0, out + err
    assert "auto selected cpu" in out
    for name in ("hello_kernel", "ping_pong", "vector_add", "ledger"):
        assert name in out
    assert out.count("-> OK") == 4
    assert "FAILED" not in out
    assert "µs" in out and "/s" in out  # latency and throughput figures are printed


def test_bench_json_structure(capsys):
    # Structure only: the figures depend on the machine and are never asserted.
    with use_registry(PluginRegistry(load=[])):
        status, out, err = _run(["bench", "--quick", "--json", "--only", "hlc", "--only", "queue"], capsys)
    assert status == 0, err
    report = json.loads(out)
    assert report["quick"] is True
    assert {r["bench"] for r in report["results"]} == {"hlc", "queue"}
    for r in report["results"]:
        assert r["status"] in {"PASS", "MISS"}
        assert isinstance(r["value"], float) and r["unit"]
        assert r["baseline"]["name"] and r["target"]["op"] in {">=", "<="}
    assert "running" in err  # progress goes to stderr, keeping stdout JSON


def test_bench_reports_a_benchmark_that_cannot_run(capsys):
    with use_registry(PluginRegistry(load=[])):
        status, out, _ = _run(["bench", "--quick", "--only", "call", "--backend", "nope"], capsys)
    assert status == 0
    assert "call: could not run" in out and "no backend named 'nope'" in out


def test_bench_table_format():
    from ringcore.bench import Figure, format_table

    figs = [Figure("x", "thing", 25.0, "M msg/s", 10.0, "base", target=20.0),
            Figure("x", "lat", 60.0, "µs", 50.0, "base", target=50.0, higher_is_better=False, note="n"),
            Figure("x", "rate", 7000.0, "calls/s", baseline_text="Ray: 2,000-8,700 calls/s (published)")]
    assert [f.status for f in figs] == ["PASS", "MISS", "-"]
    report = {"machine": {"ringcore": "0", "python": "3", "numpy": "2", "cpus": 2, "cpu": "c"},
              "quick": False, "backend": "cpu", "seconds": 1.0,
              "results": [f.as_dict() for f in figs], "errors": {}}
    text = format_table(report)
    assert "PASS" in text and "MISS" in text and "Ray: 2,000-8,700" in text
    assert "1 of 2 targets met" in text
    json.dumps(report)


def test_cli_module_is_cheap_to_import():
    code = textwrap.dedent("""
        import sys
        import ringcore.cli
        heavy = [m for m in ("cupy", "pyopencl", "wgpu", "rocksdict", "ringcore.demo") if m in sys.modules]
        print(heavy)
    """)
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
