"""What is specific to the OpenCL backend: registration, the probe, selection, device state, the outbox,
program caching, and bad input (a build failure, a queue too large for the device, termination mid-batch)."""

from __future__ import annotations

import numpy as np
import pyopencl as cl
import pytest
from _slow import slow
from ringcore_opencl import OpenclExecutor, OpenclRuntime
from ringcore_opencl.plugin import probe

import ringcore
from ringcore import BackendError, KernelCompileError, TerminationTimeoutError
from ringcore.cli import main as cli_main
from ringcore.lang.targets import opencl as opencl_target
from ringcore.plugins import PluginRegistry, get_registry, use_registry
from ringcore.testing import AbstractPluginTests, StandInCpu, wait_until
from ringcore.testing import kernels as K


class TestPlugin(AbstractPluginTests):
    backend, priority, package = "opencl", 300, "ringcore-opencl"
    plugin_module = "ringcore_opencl.plugin"
    device_modules = ("pyopencl",)


def test_probe_reports_pocl_as_software_with_its_capabilities():
    res = get_registry().probe("opencl")
    assert res.available, res.reason
    assert res.devices
    for d in res.devices:
        for key in ("platform", "type", "opencl_version", "opencl_c_version", "svm", "compute_units"):
            assert key in d.details
    pocl = [d for d in res.devices if "Portable" in d.details["platform"]]
    assert pocl and all(not d.accelerator and d.kind == "software" for d in pocl)


def test_no_platform_is_unavailable_with_the_reason(monkeypatch, capsys):
    def none():
        raise cl.LogicError("clGetPlatformIDs failed: PLATFORM_NOT_FOUND_KHR")

    monkeypatch.setattr(cl, "get_platforms", none)
    res = probe()
    assert not res.available and "no OpenCL platform" in res.reason and "pyopencl[pocl]" in res.reason
    reg = PluginRegistry(load=["opencl"], plugins=[StandInCpu()])
    with use_registry(reg):
        assert cli_main(["info"]) == 0  # never an exception out of `ringcore info`
        assert reg.select("auto").name == "cpu"
        with pytest.raises(ringcore.BackendUnavailableError, match="no OpenCL platform"):
            reg.select("opencl")
    assert "unavailable" in capsys.readouterr().out


def test_info_shows_the_devices(capsys):
    assert cli_main(["info"]) == 0
    out = capsys.readouterr().out
    assert "opencl" in out and "opencl_c_version" in out and "svm=" in out


def test_opencl_devices_command(capsys):
    assert cli_main(["opencl", "devices"]) == 0
    out = capsys.readouterr().out
    assert "accelerator=" in out and "svm:" in out


# -- execution ------------------------------------------------------------------------------


def test_state_lives_on_the_device_and_read_state_reads_it():
    with OpenclRuntime() as rt:
        h = rt.launch(K.accumulate)
        start = int(h.read_state()["total"])
        msgs = K.Num.array(300)
        msgs["value"] = np.arange(300)
        h.call_many(msgs)
        assert h.read_state() == {"count": 300, "total": start + int(np.arange(300).sum())}
        # The host copy is the initial state until termination copies the device's back.
        assert int(h.state_array["count"][0]) == 0
        h.terminate()
        assert int(h.state_array["count"][0]) == 300 and h.read_state()["count"] == 300


def test_programs_are_built_once_per_device():
    with OpenclRuntime() as rt1, OpenclRuntime() as rt2:
        rt1.launch(K.evens_only)
        built = rt1.device_context.builds
        rt2.launch(K.evens_only)
        assert rt2.device_context is rt1.device_context
        assert rt2.device_context.builds == built


def test_sends_are_delivered_from_the_device_in_lane_order():
    with OpenclRuntime() as rt:
        sink = rt.launch(K.sink, auto_activate=False, input_capacity=4096)
        flood = rt.launch(K.flood, max_batch=512)
        msgs = K.Flood.array(200)
        msgs["target"] = sink.number
        msgs["count"] = np.arange(200) % 10  # up to 9 sends a lane: more than the first outbox holds
        flood.send_many(msgs)
        total = int(msgs["count"].sum())
        wait_until(lambda: len(sink.input_queue) == total, f"{total} messages in the sink's queue")
        ex = flood.loop.executor
        assert isinstance(ex, OpenclExecutor)
        assert ex.host_runs == 0 and ex.reruns >= 1  # the outbox overflowed, grew, and the device reran
        got = sink.input_queue.pop_many(total)
        want = np.concatenate([np.arange(c) for c in msgs["count"]]) if total else np.zeros(0)
        assert got["payload"]["value"].tolist() == want.tolist()  # (lane, seq) order within the batch
        assert (got["header"]["source_kernel"] == flood.number).all()


def test_a_failed_send_reruns_the_batch_where_the_answer_is_known():
    with OpenclRuntime() as rt:
        h = rt.launch(K.router)
        r = h.call(K.Route(target=9999, value=1))
        assert K.DELIVERY_CODES[int(r.code)] is ringcore.DeliveryResult.NOT_FOUND
        assert h.loop.executor.host_runs == 1


# -- bad input ------------------------------------------------------------------------------


@ringcore.kernel(id="ocl_broken_build")
def broken(ctx, msg: K.Num) -> K.Echoed:
    x = msg.value * 2
    return K.Echoed(value=x, doubled=x, tag=msg.tag)


def test_a_kernel_that_fails_to_build_names_the_python_line(monkeypatch):
    real = opencl_target.emit_parts
    line = broken.func.__code__.co_firstlineno + 2  # `x = msg.value * 2`

    def emit_parts(kir):
        pre, part = real(kir)
        if kir.name == "ocl_broken_build":  # what a driver bug would look like: invalid C at that line
            part += f'#line {line} "{kir.filename}"\nthis is not C;\n'
        return pre, part

    monkeypatch.setattr(opencl_target, "emit_parts", emit_parts)
    with OpenclRuntime() as rt:
        with pytest.raises(KernelCompileError) as info:
            rt.launch(broken)
        err = info.value
        assert (err.line, err.target, err.filename) == (line, "opencl", __file__)
        assert "x = msg.value * 2" in str(err) and "ocl_broken_build" in str(err)
        assert "ocl_broken_build" not in [k.name for k in rt.kernels()]


class NarrowState:
    small: ringcore.u16 = 0


@ringcore.kernel(id="ocl_narrow_atomic", state=NarrowState)
def narrow_atomic(ctx, msg: K.Num) -> None:
    ctx.atomic_add("small", 1)


def test_a_kernel_the_target_refuses_fails_at_launch():
    with OpenclRuntime() as rt, pytest.raises(KernelCompileError, match="small"):
        rt.launch(narrow_atomic)


def test_a_queue_larger_than_the_device_can_hold_is_refused():
    with OpenclRuntime() as rt:
        limit = int(rt.cl_device.max_mem_alloc_size)
        cap = 1 << (limit // K.Num.slot_dtype.itemsize).bit_length()
        with pytest.raises(BackendError, match="input_capacity"):
            rt.launch(K.echo, input_capacity=cap)
        assert rt.kernels() == []
        assert rt.launch(K.echo).call(K.Num(value=1, tag=0)).doubled == 2  # the runtime still works


@pytest.mark.parametrize("svm", [None, False], ids=["svm", "device-buffers"])
def test_a_device_out_of_memory_fails_the_launch_cleanly(monkeypatch, svm):
    """The driver refusing an allocation within the device's limit (injected: PoCL allocates lazily)."""
    real_svm, real_buffer = cl.svm_empty, cl.Buffer

    def refuse(size: int) -> None:
        if size >= 1 << 20:
            raise cl.MemoryError("clSVMAlloc" if svm is None else "clCreateBuffer", cl.status_code.OUT_OF_RESOURCES,
                                 "out of resources")

    def svm_empty(ctx, flags, shape, *args, **kwargs):
        refuse(int(shape))
        return real_svm(ctx, flags, shape, *args, **kwargs)

    def buffer(ctx, flags, size=0, *args, **kwargs):
        refuse(int(size))
        return real_buffer(ctx, flags, size, *args, **kwargs)

    with OpenclRuntime(svm=svm) as rt:
        monkeypatch.setattr(cl, "svm_empty", svm_empty)
        monkeypatch.setattr(cl, "Buffer", buffer)
        mode = "persistent" if svm is None else "event_driven"
        with pytest.raises(BackendError, match=r"could not allocate .*bytes") as err:
            rt.launch(K.echo, input_capacity=1 << 15, max_batch=1 << 15, mode=mode)
        assert "lower" in str(err.value)  # says what to do
        assert rt.kernels() == []
        assert rt.device_context.resident.used == 0  # no persistent slot leaked
        h = rt.launch(K.echo, mode=mode)  # small enough: the runtime still works
        assert h.call(K.Num(value=4, tag=0)).doubled == 8


def test_batch_buffers_beyond_the_device_limit_are_refused_at_launch(monkeypatch):
    """A queue of 64 flood messages fits one allocation (about 5 KB); the outbox for a full batch of them
    (64 messages x 4 sends x 32 bytes) does not: refused at launch, not on the first full batch."""
    with OpenclRuntime() as rt:
        monkeypatch.setattr(type(rt.cl_device), "max_mem_alloc_size", property(lambda self: 6000))
        with pytest.raises(BackendError, match="outbox buffer of 8,192 bytes.*lower max_batch"):
            rt.launch(K.flood, input_capacity=64, output_capacity=64)
        assert rt.kernels() == []


@pytest.mark.parametrize("mode", ["event_driven", "persistent"])
def test_termination_while_the_device_is_busy(mode):
    """Event-driven: a launch cannot be interrupted, terminate waits for it. Persistent: the loop finishes
    the messages it claimed and leaves at its next poll. Either way nothing is lost or done twice."""
    rt = OpenclRuntime()
    h = rt.launch(slow, max_batch=8, mode=mode)
    assert h.status().mode == mode or not rt.persistent_slots
    msgs = K.Num.array(2000)
    msgs["tag"] = 300_000
    h.send_many(msgs)
    wait_until(lambda: h.control.messages_processed > 0, "the device to finish its first messages")
    try:
        h.terminate(timeout=0.0)
    except TerminationTimeoutError as exc:  # the device is still busy: reported, not hung
        assert "terminat" in str(exc)
    h.terminate(timeout=60)
    st = h.status()
    assert st.state == "terminated" and h.control.has_terminated == 1
    done = int(h.read_state()["done"])
    assert st.processed == done and done + st.unprocessed == 2000
    assert 0 < done < 2000
    rt.shutdown()


@pytest.mark.parametrize("svm", [None, False], ids=["svm", "device-buffers"])
def test_a_large_batch_with_a_wrong_type_keeps_every_header(svm):
    """A batch popped straight into the device's buffer, run as the subset of the kernel's type: the host
    still reads the whole batch's headers afterwards (replies matched to their requests, one error)."""
    with OpenclRuntime(svm=svm) as rt:
        n = 5000
        h = rt.launch(K.echo, mode="event_driven", auto_activate=False, input_capacity=8192, output_capacity=8192,
                      max_batch=8192)
        msgs = K.Num.array(n)
        msgs["value"] = np.arange(n)
        slots = h._slots(msgs, first_corr=1, flags=0, priority=1)
        slots["header"]["type_id"][2000] = h.in_spec.type_id + 1
        h.input_queue.push_many(slots)
        h.loop.process(h.loop._pop(h.input_queue, 8192))  # as the kernel's thread drains it
        out = h.output_queue.pop_many()
        assert len(out) == n
        hdr = out["header"]
        assert hdr["correlation_id"].tolist() == list(range(1, n + 1))
        bad = (hdr["flags"] & int(ringcore.MessageFlags.ERROR)) != 0
        assert np.flatnonzero(bad).tolist() == [2000]
        assert int(hdr["status"][2000]) == int(ringcore.ErrorCode.WRONG_MESSAGE_TYPE)
        ok = ~bad
        assert (out["payload"]["doubled"][ok] == 2 * msgs["value"][ok]).all()
