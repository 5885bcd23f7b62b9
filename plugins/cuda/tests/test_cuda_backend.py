"""The plugin, its probe and its errors (everywhere), and the CUDA backend's own behaviour (on a GPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from _gpu import PROBE, needs_gpu

import ringcore
from ringcore.errors import BackendUnavailableError
from ringcore.plugins import PluginRegistry, get_registry
from ringcore.testing import AbstractPluginTests, StandInCpu
from ringcore.testing import kernels as K


class TestPlugin(AbstractPluginTests):
    backend, priority, package = "cuda", 400, "ringcore-cuda"
    plugin_module = "ringcore_cuda.plugin"
    device_modules = ("cupy",)

    def test_auto_prefers_the_cpu_backend_to_a_software_device(self) -> None:
        if PROBE.available:  # a real GPU: auto picks it
            reg = PluginRegistry(load=["cuda"], plugins=[StandInCpu()])
            assert reg.select("auto").name == "cuda"
            return
        reg = PluginRegistry(load=["cuda"], plugins=[StandInCpu()])  # no GPU: auto falls back to cpu
        assert reg.select("auto").name == "cpu"


@pytest.mark.skipif(PROBE.available, reason="a GPU is here: the no-GPU answers are not given")
def test_without_a_gpu_the_backend_is_unavailable_with_the_reason_and_never_raises() -> None:
    res = get_registry().probe("cuda")
    assert not res.available and res.devices == ()
    assert "GPU" in res.reason or "cupy" in res.reason
    with pytest.raises(BackendUnavailableError) as err:
        ringcore.runtime("cuda")
    assert res.reason.split(";")[0] in str(err.value) and "ringcore-cuda" in str(err.value)
    from ringcore_cuda import CudaRuntime

    with pytest.raises(BackendUnavailableError, match="no usable CUDA GPU"):
        CudaRuntime()
    env = {**os.environ, "RINGCORE_LOAD_PLUGINS": "cuda"}
    out = subprocess.run([sys.executable, "-m", "ringcore", "info", "--json"], capture_output=True, text=True,
                         env=env, check=True)
    info = json.loads(out.stdout)
    cuda = next(b for b in info["backends"] if b["name"] == "cuda")
    assert cuda["available"] is False and cuda["reason"] == res.reason
    out = subprocess.run([sys.executable, "-m", "ringcore", "cuda", "devices"], capture_output=True, text=True,
                         env=env)
    assert out.returncode == 1 and "cuda: unavailable" in out.stdout


@needs_gpu
def test_the_probe_reports_each_gpu_with_what_matters() -> None:
    for d in PROBE.devices:
        assert d.kind == "gpu" and d.accelerator
        for key in ("compute_capability", "multiprocessors", "global_mem_bytes", "can_map_host_memory",
                    "unified_addressing", "persistent_slots", "nvrtc_version"):
            assert key in d.details


@needs_gpu
def test_queues_live_in_mapped_memory_and_state_on_the_device() -> None:
    from ringcore_cuda import CudaRuntime

    with CudaRuntime(persistent_slots=0) as rt:
        h = rt.launch(K.accumulate)
        assert h.mode.value == "event_driven"
        assert [h.call(K.Num(value=v, tag=0)).total for v in (1, 2, 3)] == [1001, 1003, 1006]
        assert h.read_state() == {"count": 3, "total": 1006}  # read from device memory
        assert h.loop.executor.state is not None
        h.terminate()
        assert h.read_state() == {"count": 3, "total": 1006}  # kept after termination


@needs_gpu
def test_modules_are_cached_per_gpu_by_kernel() -> None:
    from ringcore_cuda import CudaRuntime

    with CudaRuntime() as a, CudaRuntime() as b:
        a.launch(K.echo, mode="event_driven")
        built = a.modules.builds
        b.launch(K.echo, mode="event_driven")
        assert b.modules is a.modules and a.modules.builds == built


@needs_gpu
def test_a_batch_larger_than_a_block_runs_across_blocks() -> None:
    from ringcore_cuda import CudaRuntime

    with CudaRuntime(persistent_slots=0) as rt:
        h = rt.launch(K.echo, block_size=64, input_capacity=1 << 16, output_capacity=1 << 16)
        msgs = K.Num.array(50_000)
        msgs["value"] = np.arange(50_000) - 25_000
        got = h.call_many(msgs, timeout=60)
        assert got["doubled"].tolist() == (2 * msgs["value"]).tolist()
