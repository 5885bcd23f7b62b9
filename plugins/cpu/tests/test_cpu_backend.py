"""What is specific to the CPU backend: registration, its worker threads, idling."""

from __future__ import annotations

import importlib.metadata as md
import threading
import time

import numpy as np
import pytest
from ringcore_cpu import CpuRuntime
from ringcore_cpu.backend import EXECUTORS

import ringcore
from ringcore.plugins import get_registry, select_backend
from ringcore.testing import kernels as K
from ringcore.testing import wait_until


def _workers(prefix: str = "ringcore-cpu-") -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def test_entry_point_names_the_plugin_module():
    eps = [ep for ep in md.entry_points(group="ringcore") if ep.name == "cpu"]
    assert [ep.value for ep in eps] == ["ringcore_cpu.plugin"]
    assert eps[0].dist is not None and eps[0].dist.metadata["Name"] == "ringcore-cpu"


def test_registers_with_priority_100():
    reg = get_registry()
    spec = reg.backend_spec("cpu")
    assert (spec.name, spec.priority, spec.package, spec.plugin) == ("cpu", 100, "ringcore-cpu", "cpu")
    assert "cpu" in reg.infos and reg.infos["cpu"].error is None
    assert reg.infos["cpu"].hooks == ("register_backends",)


def test_probe_sees_the_host_cpu_as_a_software_device():
    probe = get_registry().probe("cpu")
    assert probe.available
    assert not probe.accelerator
    assert [d.kind for d in probe.devices] == ["cpu"]
    assert probe.devices[0].details["cores"] >= 1


def test_auto_picks_the_cpu_backend_here():
    assert select_backend("auto").name == "cpu"
    with ringcore.runtime("auto") as rt:
        assert isinstance(rt, CpuRuntime)
        assert rt.backend_name == "cpu"
        assert rt.device is not None and rt.device.kind == "cpu"
        assert rt.launch(K.echo).call(K.Num(value=2, tag=1)).doubled == 4


def test_backend_env_variable_selects_it(monkeypatch):
    monkeypatch.setenv("RINGCORE_BACKEND", "cpu")
    assert select_backend("auto").name == "cpu"


def test_unknown_execution_mode_is_refused():
    with pytest.raises(ValueError, match="reference"):
        CpuRuntime(execution="warp-speed")


def test_one_worker_thread_per_kernel_gone_after_terminate():
    before = set(_workers())
    with ringcore.runtime("cpu") as rt:
        a = rt.launch(K.echo, name="a")
        b = rt.launch(K.accumulate, name="b")
        names = {t.name for t in _workers()} - {t.name for t in before}
        assert names == {"ringcore-cpu-a", "ringcore-cpu-b"}
        assert a.loop.thread.is_alive() and b.loop.thread.is_alive()
        a.terminate()
        assert not a.loop.thread.is_alive()
        assert {t.name for t in _workers()} - {t.name for t in before} == {"ringcore-cpu-b"}
    assert not b.loop.thread.is_alive()
    assert set(_workers()) == before


def test_shutdown_leaves_no_thread_behind_even_with_blocked_callers():
    before = set(threading.enumerate())
    rt = ringcore.runtime("cpu")
    busy = rt.launch(K.echo, name="busy")
    held = rt.launch(K.echo, name="held")
    held.deactivate()
    errors: list[BaseException] = []

    def blocked_call() -> None:
        try:
            held.call(K.Num(value=1, tag=1), timeout=30)
        except BaseException as exc:
            errors.append(exc)

    caller = threading.Thread(target=blocked_call)
    caller.start()
    wait_until(lambda: held.status().input_depth == 1, "the call to be queued")
    busy.send_many(K.Num.array(500))
    rt.shutdown()
    caller.join(30)
    assert not caller.is_alive()
    assert [type(e) for e in errors] == [ringcore.KernelTerminatedError]
    wait_until(lambda: set(threading.enumerate()) <= before, "every ringcore thread to exit")


def test_idle_kernels_do_not_burn_cpu():
    with ringcore.runtime("cpu") as rt:
        kernels = [rt.launch(K.echo, name=f"idle{i}") for i in range(4)]
        held = rt.launch(K.echo, name="held")
        held.deactivate()
        for k in kernels:
            k.send(K.Num(value=1, tag=1))
            k.receive(timeout=10)
        t0 = time.process_time()
        time.sleep(0.5)
        used = time.process_time() - t0
    # Five idle workers (one deactivated) over half a second: a spinning one would use
    # about 0.5 s of CPU; sleeping ones use next to nothing.
    assert used < 0.1, f"idle kernels used {used:.3f} s of CPU in 0.5 s"



class _BrokenExecutor:
    """An executor with a bug: every batch fails."""

    def __init__(self, handle) -> None:
        self.closed = False

    def run(self, batch):
        raise RuntimeError("device lost")

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("path", ["call", "send"])
def test_a_failing_executor_stops_the_kernel_and_fails_its_waiters(monkeypatch, path):
    monkeypatch.setitem(EXECUTORS, "broken", _BrokenExecutor)
    with CpuRuntime(execution="broken") as rt:
        h = rt.launch(K.echo)
        with pytest.raises(ringcore.KernelTerminatedError, match="device lost"):
            if path == "call":
                h.call(K.Num(value=1, tag=1), timeout=10)
            else:
                h.send(K.Num(value=1, tag=1))
                h.receive(timeout=10)
        h.loop.thread.join(10)
        assert not h.loop.thread.is_alive()
        assert h.loop.executor.closed
        st = h.status()
        assert (st.errors, st.last_error) == (1, "DEVICE_ERROR")
        with pytest.raises(ringcore.KernelTerminatedError):
            h.send(K.Num(value=2, tag=2))
        h.terminate()
        assert h.state is ringcore.KernelState.TERMINATED


_release = threading.Event()


@ringcore.kernel(id="stuck")
def _stuck(ctx, msg: K.Num) -> K.Echoed:
    _release.wait(30)  # a handler that hangs (only plain Python can do this)
    return K.Echoed(value=msg.value, doubled=msg.value * 2, tag=msg.tag)


def test_terminate_reports_a_handler_that_does_not_return():
    _release.clear()
    with CpuRuntime(execution="reference") as rt:  # only plain Python can hang like this
        h = rt.launch(_stuck)
        h.send(K.Num(value=1, tag=1))
        wait_until(lambda: h.status().in_flight == 1, "the handler to start")
        with pytest.raises(ringcore.TerminationTimeoutError, match="stuck"):
            h.terminate(timeout=0.05)
        assert h.state is ringcore.KernelState.TERMINATING
        with pytest.raises(ringcore.KernelTerminatedError):
            h.send(K.Num(value=2, tag=2))
        _release.set()
        h.terminate(timeout=10)
        assert h.state is ringcore.KernelState.TERMINATED
        assert not h.loop.thread.is_alive()



# -- compiled execution (the numpy target) ------------------------------------------------------------


@ringcore.kernel(id="host_only")
def host_only(ctx, msg: K.Num) -> K.Echoed:
    """Fine as Python, outside the kernel language: it builds a list."""
    parts = [msg.value, msg.value]
    return K.Echoed(value=parts[0], doubled=parts[0] + parts[1], tag=msg.tag)


def test_a_kernel_outside_the_language_fails_at_launch_and_runs_in_reference_mode():
    with CpuRuntime() as rt:
        with pytest.raises(ringcore.KernelCompileError) as ei:
            rt.launch(host_only)
        assert "test_cpu_backend.py" in str(ei.value) and "a list is not supported" in str(ei.value)
        assert rt.kernels() == []  # nothing half-launched
    with CpuRuntime(execution="reference") as rt:
        assert int(rt.launch(host_only).call(K.Num(value=4, tag=1)).doubled) == 8


def test_default_execution_runs_compiled_batches():
    with ringcore.runtime("cpu") as rt:
        assert rt.execution == "numpy"
        k = rt.launch(K.echo, input_capacity=4096, output_capacity=4096)
        assert type(k.loop.executor).__name__ == "NumpyExecutor"
        req = K.Num.array(3000)
        req["value"] = np.arange(3000, dtype=np.int32) - 1500
        req["tag"] = np.arange(3000, dtype=np.uint32)
        out = k.call_many(req)
        assert np.array_equal(out["doubled"], req["value"] * 2)
        assert np.array_equal(out["tag"], req["tag"])
        assert k.status().processed == 3000


def test_a_failing_lane_fails_only_its_message_with_the_python_line():
    with ringcore.runtime("cpu") as rt:
        k = rt.launch(K.fragile, input_capacity=64, output_capacity=64)
        req = K.Num.array(40)
        req["value"] = np.arange(40, dtype=np.int32) - 3  # three negative values fail
        k.send_many(req)
        got = k.receive_many(40, timeout=10, min_count=40)
        status = got["header"]["status"]
        assert int((status != 0).sum()) == 3
        assert np.array_equal(got["payload"]["doubled"][status == 0], req["value"][3:] * 2)
        with pytest.raises(ringcore.KernelError, match=r"ValueError: negative value \(at .*kernels.py:\d+\)"):
            k.call(K.Num(value=-1, tag=0))
