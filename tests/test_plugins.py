"""The plugin system: discovery, failures, registries and backend selection."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import pytest

import ringcore
from ringcore import hookimpl
from ringcore.errors import BackendNotFoundError, BackendUnavailableError
from ringcore.plugins import (
    BackendSpec,
    PluginRegistry,
    ProbeResult,
    StoreSpec,
    VmSpec,
    create_runtime,
    use_registry,
)
from ringcore.runtime import DeviceInfo, ReferenceExecutor, RingKernelRuntime


class HostRuntime(RingKernelRuntime):
    backend_name = "host"

    def _create_executor(self, handle):
        return ReferenceExecutor(handle)


def backend(name, priority, *, available=True, accelerator=False, reason="", probe=None):
    dev = DeviceInfo(f"{name}-device", "gpu" if accelerator else "cpu", accelerator)

    def default_probe():
        return ProbeResult(available, reason, (dev,) if available else ())

    class Plugin:
        @hookimpl
        def register_backends(self, register):
            register(BackendSpec(name=name, priority=priority, factory=lambda **kw: HostRuntime(**kw),
                                 probe=probe or default_probe, package=f"ringcore-{name}"))

    Plugin.__name__ = f"{name}_{priority}_plugin"
    return Plugin()


def registry(*plugins):
    return PluginRegistry(load=[], plugins=list(plugins))


def test_auto_prefers_the_highest_priority_accelerator():
    reg = registry(backend("cpu", 100), backend("opencl", 300, accelerator=False),
                   backend("wgpu", 200, accelerator=True), backend("cuda", 400, available=False, reason="no GPU"))
    assert reg.select("auto").name == "wgpu"


def test_auto_falls_back_to_cpu_when_only_software_devices_exist():
    reg = registry(backend("cpu", 100), backend("opencl", 300), backend("wgpu", 200))
    assert reg.select("auto").name == "cpu"


def test_auto_takes_the_best_software_backend_without_cpu():
    reg = registry(backend("opencl", 300), backend("wgpu", 200))
    assert reg.select("auto").name == "opencl"


def test_environment_override(monkeypatch):
    reg = registry(backend("cpu", 100), backend("wgpu", 200, accelerator=True))
    monkeypatch.setenv("RINGCORE_BACKEND", "cpu")
    assert reg.select("auto").name == "cpu"
    monkeypatch.setenv("RINGCORE_BACKEND", "nope")
    with pytest.raises(BackendNotFoundError, match="'nope'"):
        reg.select("auto")


def test_unknown_backend_lists_installed_and_the_package_to_install():
    reg = registry(backend("cpu", 100))
    with pytest.raises(BackendNotFoundError) as err:
        reg.select("opencl")
    text = str(err.value)
    assert "installed: cpu" in text and "pip install ringcore-opencl" in text
    assert isinstance(err.value, LookupError)


def test_unavailable_backend_carries_the_probe_reason_and_package():
    reg = registry(backend("cpu", 100), backend("cuda", 400, available=False, reason="cupy.is_available() is False"))
    with pytest.raises(BackendUnavailableError) as err:
        reg.select("cuda")
    assert "cupy.is_available() is False" in str(err.value)
    assert "ringcore-cuda" in str(err.value)


def test_a_probe_that_raises_counts_as_unavailable():
    def bad_probe():
        raise OSError("driver exploded")

    reg = registry(backend("cpu", 100), backend("cuda", 400, probe=bad_probe))
    result = reg.probe("cuda")
    assert not result.available and "driver exploded" in result.reason
    assert reg.select("auto").name == "cpu"


def test_probe_results_are_cached():
    calls = []

    def probe():
        calls.append(1)
        return ProbeResult(True, "", ())

    reg = registry(backend("cpu", 100, probe=probe))
    reg.probe("cpu")
    reg.probe("cpu")
    assert len(calls) == 1
    reg.probe("cpu", refresh=True)
    assert len(calls) == 2


def test_duplicate_names_are_refused_and_reported():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg = registry(backend("cpu", 100), backend("cpu", 150))
        reg.load()
    assert reg.backends["cpu"].priority == 100
    failed = [i for i in reg.infos.values() if i.error]
    assert len(failed) == 1 and "already registered" in failed[0].error
    assert any("already registered" in str(w.message) for w in caught)


def test_a_plugin_whose_hook_raises_is_skipped_and_others_work():
    class Broken:
        @hookimpl
        def register_backends(self, register):
            raise RuntimeError("boom")

    with pytest.warns(RuntimeWarning, match="boom"):
        reg = registry(Broken(), backend("cpu", 100))
        reg.load()
    assert "cpu" in reg.backends
    assert reg.infos["Broken"].error and "boom" in reg.infos["Broken"].error


def test_stores_and_vms_register_through_their_hooks():
    class Plugin:
        @hookimpl
        def register_stores(self, register):
            register(StoreSpec(name="mem", factory=dict, description="a dict"))

        @hookimpl
        def register_vms(self, register):
            register(VmSpec(name="null", factory=object))

    reg = registry(Plugin())
    assert reg.store_spec("mem").factory is dict
    assert reg.vm_spec("null").factory is object
    with pytest.raises(ringcore.PluginError, match="pip install ringcore-rocksdb"):
        reg.store_spec("rocksdb")


def test_registering_something_that_is_not_a_spec_is_reported():
    class Wrong:
        @hookimpl
        def register_backends(self, register):
            register({"name": "x"})

    with pytest.warns(RuntimeWarning, match="pass a BackendSpec"):
        registry(Wrong()).load()


def test_register_commands_passes_the_cli_object():
    seen = []

    class Plugin:
        @hookimpl
        def register_commands(self, cli):
            cli.add_command("hello")

    class Cli:
        def add_command(self, name, **kw):
            seen.append(name)

    reg = registry(Plugin())
    reg.register_commands(Cli())
    assert seen == ["hello"]


def test_runtime_is_a_callable_module_that_creates_runtimes():
    import ringcore.runtime as mod

    assert mod is ringcore.runtime
    assert mod.RingKernelRuntime is RingKernelRuntime
    with use_registry(registry(backend("cpu", 100))):
        rt = ringcore.runtime("auto")
        try:
            assert isinstance(rt, HostRuntime)
            assert rt.device.name == "cpu-device"
        finally:
            rt.shutdown()
        rt = create_runtime("cpu")
        rt.shutdown()


def _write_dist(root, dist, entry_points, modules):
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[ringcore]\n{lines}\n")
    for name, src in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(src))


def test_entry_point_discovery_with_a_plugin_that_fails_to_import(tmp_path, monkeypatch):
    _write_dist(tmp_path, "ringcore-fake", {"good": "fake_good", "bad": "fake_bad", "other": "fake_other"}, {
        "fake_good": """
            import ringcore
            from ringcore.plugins import VmSpec

            @ringcore.hookimpl
            def register_vms(register):
                register(VmSpec(name="fake-vm", factory=object))
        """,
        "fake_bad": "raise ImportError('missing libfoo.so')\n",
        "fake_other": "raise AssertionError('must not be imported')\n",
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("RINGCORE_LOAD_PLUGINS", "good,bad")
    with pytest.warns(RuntimeWarning, match="missing libfoo.so"):
        reg = PluginRegistry().load()
    assert "fake-vm" in reg.vms
    assert reg.infos["good"].distribution == "ringcore-fake" and reg.infos["good"].version == "0.1"
    assert reg.infos["good"].hooks == ("register_vms",)
    assert "missing libfoo.so" in reg.infos["bad"].error
    assert "other" not in reg.infos
    reg.load()  # safe to call twice
    assert [v for v in reg.vms if reg.vms[v].plugin == "good"] == ["fake-vm"]


def test_an_empty_plugin_list_loads_nothing(tmp_path, monkeypatch):
    _write_dist(tmp_path, "ringcore-fake2", {"x": "fake_x"}, {"fake_x": "raise AssertionError('loaded')\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("RINGCORE_LOAD_PLUGINS", "")
    reg = PluginRegistry().load()
    assert list(reg.infos) == ["ringcore.execution._builtin"] and reg.backends == {}


def test_the_core_registers_its_store_and_vms_through_the_same_hooks():
    reg = PluginRegistry(load=[]).load()
    assert reg.stores["memory"].plugin == "ringcore.execution._builtin"
    assert {"noop", "ledger"} <= set(reg.vms)
    store = reg.store_spec("memory").factory()
    try:
        assert type(store).__name__ == "MemoryStore"
    finally:
        store.close()


def test_importing_ringcore_stays_light():
    code = (
        "import sys, ringcore, ringcore.plugins\n"
        "heavy = {'cupy', 'pyopencl', 'wgpu', 'rocksdict'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_public_name_is_documented():
    import inspect

    missing = []
    for name in ringcore.__all__:
        obj = getattr(ringcore, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            if not (obj.__doc__ or "").strip():
                missing.append(name)
    assert missing == []


def test_a_misspelled_hook_is_reported_with_a_suggestion():
    class Typo:
        @hookimpl
        def register_backend(self, register):  # missing the s
            pass

    with pytest.warns(RuntimeWarning, match="did you mean register_backends"):
        reg = registry(Typo(), backend("cpu", 100))
        reg.load()
    assert "cpu" in reg.backends


def test_register_adds_a_plugin_after_loading():
    reg = registry(backend("cpu", 100)).load()
    reg.register(backend("wgpu", 200, accelerator=True))
    assert reg.select("auto").name == "wgpu"
