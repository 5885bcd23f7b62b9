"""ringcore-wgpu: the probe, auto's ranking, kernels on the adapter, batch splitting and bad input."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from ringcore_wgpu import WgpuExecutor, WgpuRuntime, _device
from ringcore_wgpu.plugin import probe

import ringcore
from ringcore import BackendError, KernelCompileError, KernelError, KernelTerminatedError, u64
from ringcore.cli import main as cli_main
from ringcore.lang import lower
from ringcore.lang.targets import wgsl
from ringcore.plugins import PluginRegistry, get_registry, use_registry
from ringcore.testing import AbstractPluginTests, StandInCpu, wait_until
from ringcore.testing import kernels as K

# -- the plugin and its probe --------------------------------------------------------------


class TestPlugin(AbstractPluginTests):
    backend, priority, package = "wgpu", 200, "ringcore-wgpu"
    plugin_module = "ringcore_wgpu.plugin"
    device_modules = ("wgpu",)


def test_probe_reports_the_software_adapter_with_its_limits():
    res = get_registry().probe("wgpu")
    assert res.available, res.reason
    for d in res.devices:
        for key in ("backend_type", "adapter_type", "software", "max_buffer_size", "max_storage_buffer_binding_size",
                    "max_compute_workgroup_size_x", "max_storage_buffers_per_shader_stage"):
            assert key in d.details
        assert d.details["backend_type"] in ("Vulkan", "Metal", "D3D12", "OpenGL", "OpenGLES", "Null")
    soft = [d for d in res.devices if d.details["software"]]
    assert all(not d.accelerator and d.kind == "software" for d in soft)


def test_no_adapter_is_unavailable_with_the_reason(monkeypatch, capsys):
    monkeypatch.setattr(_device, "adapters", lambda: [])
    res = probe()
    assert not res.available and "no adapter" in res.reason and "Mesa" in res.reason
    reg = PluginRegistry(load=["wgpu"], plugins=[StandInCpu()])
    with use_registry(reg):
        assert cli_main(["info"]) == 0  # never an exception out of `ringcore info`
        assert reg.select("auto").name == "cpu"
        with pytest.raises(ringcore.BackendUnavailableError, match="no adapter"):
            reg.select("wgpu")
    assert "unavailable" in capsys.readouterr().out
    with pytest.raises(ringcore.BackendUnavailableError, match="no WebGPU adapter"):
        WgpuRuntime()


def test_info_and_devices_commands_show_the_adapter(capsys):
    assert cli_main(["info"]) == 0
    assert "wgpu" in capsys.readouterr().out
    assert cli_main(["wgpu", "devices"]) == 0
    out = capsys.readouterr().out
    assert "backend_type" in out and "max_storage_buffer_binding_size" in out


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="adapter_index=99"):
        WgpuRuntime(adapter_index=99)
    with pytest.raises(ValueError, match="max_binding_bytes=16"):
        WgpuRuntime(max_binding_bytes=16)


# -- kernels -----------------------------------------------------------------------------------


def test_state_lives_on_the_device_and_read_state_reads_it():
    with WgpuRuntime() as rt:
        h = rt.launch(K.accumulate)
        start = int(h.read_state()["total"])
        msgs = K.Num.array(300)
        msgs["value"] = np.arange(300)
        h.call_many(msgs)
        assert h.read_state() == {"count": 300, "total": start + int(np.arange(300).sum())}
        assert int(h.state_array["count"][0]) == 0  # the host copy until termination copies it back
        h.terminate()
        assert int(h.state_array["count"][0]) == 300 and h.read_state()["count"] == 300


def test_pipelines_are_built_once_per_device():
    with WgpuRuntime() as rt1, WgpuRuntime() as rt2:
        rt1.launch(K.evens_only)
        built = rt1.device_context.builds
        rt2.launch(K.evens_only)
        assert rt2.device_context is rt1.device_context and rt2.device_context.builds == built


def test_persistent_launches_run_event_driven_and_say_why(caplog):
    with caplog.at_level(logging.INFO, logger="ringcore"), WgpuRuntime() as rt:
        h = rt.launch(K.echo, mode="persistent")
        assert h.status().mode == "event_driven"
        assert h.call(K.Num(value=2, tag=1)).doubled == 4
    assert "WebGPU cannot keep a kernel running" in caplog.text


def test_sends_are_decided_on_the_device_and_each_delivered_once():
    with WgpuRuntime() as rt:
        sink = rt.launch(K.sink, auto_activate=False, input_capacity=4096)
        flood = rt.launch(K.flood, max_batch=512)
        ex = flood.loop.executor
        msgs = K.Flood.array(200)
        msgs["target"] = sink.number
        msgs["count"] = np.arange(200) % 10  # up to 9 sends a lane: more than the first outbox holds
        got = flood.call_many(msgs)
        total = int(msgs["count"].sum())
        assert got["delivered"].tolist() == msgs["count"].tolist()
        wait_until(lambda: len(sink.input_queue) == total, "every send to reach the sink")
        tags = sink.input_queue.pop_many()["payload"]["tag"].tolist()
        assert sorted(tags) == sorted(i for c in msgs["count"] for i in range(c))  # each send once
        # Nine sends a lane: more than the first outbox holds. That batch runs on the host (nothing lost), and
        # the outbox grows for the next ones.
        nine = K.Flood.array(100)
        nine["target"] = sink.number
        nine["count"] = 9
        assert flood.call_many(nine)["delivered"].tolist() == [9] * 100
        assert ex.host_runs >= 1 and ex.per_lane >= 9
        assert len(sink.input_queue.pop_many()) == 900
        # Sends to a full queue: the device's directory answers QUEUE_FULL, as the runtime would.
        room = sink.input_queue.capacity - len(sink.input_queue)
        one = K.Flood.array(1)
        one["target"] = sink.number
        one["count"] = 40
        sink.input_queue.push_many(np.zeros(room - 30, sink.in_spec.slot_dtype))  # leave room for 30
        reply = flood.call_many(one)
        assert (int(reply["delivered"][0]), int(reply["full"][0])) == (30, 10)
        assert flood.metrics().dropped >= 10


class Stamp:
    at: u64


@ringcore.message(type_id=0x7A01)
class StampMsg(Stamp):
    pass


@ringcore.kernel(id="wgpu_u64_math")
def u64_math(ctx, msg: StampMsg) -> StampMsg:
    return StampMsg(at=msg.at + u64(1))


def test_a_kernel_computing_with_64_bit_values_is_refused_at_launch_with_its_line():
    with WgpuRuntime() as rt:
        with pytest.raises(KernelCompileError) as err:
            rt.launch(u64_math)
        assert "64-bit" in str(err.value) and f"test_wgpu_backend.py:{u64_math.func.__code__.co_firstlineno + 2}" \
            in str(err.value)
        assert rt.kernels() == []
        assert rt.launch(K.echo).call(K.Num(value=1, tag=0)).doubled == 2  # the runtime still works


def test_a_shader_the_compiler_refuses_points_at_the_python_line(monkeypatch):
    kir = lower(K.echo)
    line = kir.first_line + 2
    broken = f"{wgsl.PY_LINE_MARK}{line}\nfn rc_main( {{ this is not WGSL"
    monkeypatch.setattr(wgsl, "emit", lambda k: broken)
    with WgpuRuntime() as rt:
        rt.device_context._pipelines.pop(kir.fingerprint(), None)
        with pytest.raises(KernelCompileError) as err:
            rt.launch(K.echo, name="echo_broken")
        assert f":{line}:" in str(err.value) and "shader compiler" in str(err.value)
        assert rt.kernels() == []


def test_a_batch_larger_than_a_binding_is_split_not_failed():
    with WgpuRuntime(max_binding_bytes=4096) as rt:
        h = rt.launch(K.accumulate, input_capacity=8192, output_capacity=8192, max_batch=8192)
        ex = h.loop.executor
        assert isinstance(ex, WgpuExecutor) and ex.batch_limit * ex.abi.in_slot_bytes <= 4096
        dispatches = []
        run = ex._run
        ex._run = lambda batch: (dispatches.append(len(batch)), run(batch))[1]
        n = 5000
        msgs = K.Num.array(n)
        msgs["value"] = 1
        got = h.call_many(msgs, timeout=60)
        assert got["count"].tolist() == list(range(1, n + 1))  # in order across the dispatches, none lost
        assert max(dispatches) <= ex.batch_limit and len(dispatches) > n // ex.batch_limit  # it was split
        assert h.read_state()["count"] == n


def test_device_loss_stops_the_kernel_with_a_clear_error_and_a_new_runtime_recovers():
    rt = WgpuRuntime()
    h = rt.launch(K.echo)
    assert h.call(K.Num(value=1, tag=0)).doubled == 2
    rt.device_context.device.destroy()  # what a driver reset or a removed GPU does
    with pytest.raises((KernelError, KernelTerminatedError, BackendError)) as err:
        h.call(K.Num(value=2, tag=0), timeout=30)
    wait_until(lambda: h.control.has_terminated == 1, "the kernel's loop to stop")
    assert "lost" in (h.last_exception or "") + str(err.value)
    with pytest.raises(BackendError, match="lost"):
        rt.launch(K.echo, name="echo2")  # this runtime's device is gone: said plainly
    rt.shutdown()
    with WgpuRuntime() as fresh:  # a new runtime gets a new device
        assert fresh.launch(K.echo).call(K.Num(value=3, tag=0)).doubled == 6
