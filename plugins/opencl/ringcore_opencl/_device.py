"""OpenCL devices: discovery (the probe's data), one context per device, and the program cache.

Imports PyOpenCL: only the probe and the factory import this module.
"""

from __future__ import annotations

import os
import tempfile
import threading
from typing import Any

import pyopencl as cl

from ringcore.errors import BackendUnavailableError
from ringcore.lang.host import ProgramCache, ResidentSlots
from ringcore.lang.ir import KernelIR
from ringcore.lang.targets import c, opencl
from ringcore.plugins import choose_device
from ringcore.runtime import DeviceInfo

__all__ = ["devices", "device_info", "svm_capabilities", "DeviceContext", "context_for", "pick_device",
           "persistent_capable", "persistent_refusal", "default_persistent_slots"]

_SVM_FLAGS = (("coarse_grain_buffer", "COARSE_GRAIN_BUFFER"), ("fine_grain_buffer", "FINE_GRAIN_BUFFER"),
              ("fine_grain_system", "FINE_GRAIN_SYSTEM"), ("atomics", "ATOMICS"))


def _ensure_cache_dir() -> None:
    # PoCL writes compiled kernels under POCL_CACHE_DIR (default: ~/.cache/pocl); keep it somewhere writable.
    if "POCL_CACHE_DIR" not in os.environ:
        home = os.path.expanduser("~/.cache")
        if not os.access(home if os.path.isdir(home) else os.path.dirname(home), os.W_OK):
            os.environ["POCL_CACHE_DIR"] = tempfile.mkdtemp(prefix="ringcore-pocl-")


def devices() -> list[Any]:
    """Every OpenCL device of every platform, in platform order (raises cl.Error with no platform)."""
    _ensure_cache_dir()
    out = []
    for p in cl.get_platforms():
        try:
            out.extend(p.get_devices())
        except cl.Error:  # a platform with no devices of any type
            continue
    return out


def svm_capabilities(dev: Any) -> dict[str, bool]:
    """The device's shared virtual memory capabilities, by name (all False before OpenCL 2.0)."""
    try:
        caps = int(dev.svm_capabilities)
    except (cl.Error, AttributeError):
        caps = 0
    return {name: bool(caps & getattr(cl.device_svm_capabilities, flag, 0)) for name, flag in _SVM_FLAGS}


def _is_software(dev: Any) -> bool:
    text = f"{dev.platform.name} {dev.platform.vendor} {dev.name}".lower()
    return "portable computing language" in text or "pocl" in text or "llvmpipe" in text or "swiftshader" in text


def persistent_refusal(dev: Any) -> str | None:
    """Why ``dev`` cannot keep a kernel resident (None: it can): the loop polls its queue in fine-grain SVM
    with atomics, which host and device update in place while it runs."""
    svm = svm_capabilities(dev)
    if not svm["fine_grain_buffer"]:
        return f"the OpenCL device {dev.name.strip()} offers no fine-grain SVM buffers"
    if not svm["atomics"]:
        return f"the OpenCL device {dev.name.strip()} offers fine-grain SVM without atomics"
    return None


def persistent_capable(dev: Any) -> bool:
    """Whether ringcore keeps kernels launched persistent resident on ``dev``."""
    return persistent_refusal(dev) is None


def default_persistent_slots(dev: Any) -> int:
    """How many kernels ``dev`` keeps resident at once by default: each loop occupies a compute unit (on a
    CPU device, a worker thread spinning on a core), and one is left for event-driven dispatches."""
    if not persistent_capable(dev):
        return 0
    return max(0, int(dev.max_compute_units) - 1)


def device_info(dev: Any) -> DeviceInfo:
    """The DeviceInfo a probe reports for ``dev``."""
    t = int(dev.type)
    gpu = bool(t & cl.device_type.GPU)
    acc = bool(t & cl.device_type.ACCELERATOR)
    software = _is_software(dev) and not gpu
    kind = "gpu" if gpu else ("software" if software else ("cpu" if t & cl.device_type.CPU else "other"))
    svm = svm_capabilities(dev)
    details = {
        "platform": dev.platform.name.strip(),
        "platform_version": dev.platform.version.strip(),
        "vendor": dev.vendor.strip(),
        "type": cl.device_type.to_string(t),
        "opencl_version": dev.version.strip(),
        "opencl_c_version": dev.opencl_c_version.strip(),
        "compute_units": int(dev.max_compute_units),
        "global_mem_bytes": int(dev.global_mem_size),
        "max_alloc_bytes": int(dev.max_mem_alloc_size),
        "svm": ",".join(k for k, v in svm.items() if v) or "none",
        "fp64": "cl_khr_fp64" in dev.extensions,
        "int64_atomics": "cl_khr_int64_base_atomics" in dev.extensions,
        "persistent": persistent_capable(dev),
        "persistent_slots": default_persistent_slots(dev),
    }
    return DeviceInfo(name=dev.name.strip(), kind=kind, accelerator=(gpu or acc) and not software, details=details)


def pick_device(index: int | None = None) -> tuple[Any, DeviceInfo]:
    """The device a runtime uses: ``devices()[index]``, or the first accelerator, else the first device."""
    try:
        devs = devices()
    except cl.Error as exc:
        raise BackendUnavailableError(f"no OpenCL platform: {exc}; install pyopencl[pocl] (a CPU platform) "
                                      "or your GPU vendor's OpenCL driver") from None
    if not devs:
        raise BackendUnavailableError("the OpenCL platforms list no device; install pyopencl[pocl] or a GPU driver")
    infos = [device_info(d) for d in devs]
    i = choose_device(infos, index, "device_index")
    return devs[i], infos[i]


class DeviceContext(ProgramCache):
    """One OpenCL context per device for the whole process, with its program cache (the core's ProgramCache)
    and its count of resident work-groups."""

    def __init__(self, dev: Any) -> None:
        super().__init__()
        self.device = dev
        self.context = cl.Context([dev])
        self.options = opencl.build_options(dev)
        self.resident = ResidentSlots()  # work-groups of resident kernels on the device, across the process
        self.int64_atomics = "cl_khr_int64_base_atomics" in dev.extensions

    def _build_many(self, kirs: list[KernelIR]) -> Any:
        src = opencl.prelude() + "".join(opencl.emit_parts(k)[1] for k in kirs)
        try:
            return cl.Program(self.context, src).build(options=self.options)
        except cl.Error as exc:
            where = f"the OpenCL compiler of {self.device.name.strip()} ({self.device.platform.name.strip()})"
            raise c.compile_error(kirs[0], str(exc), where, "opencl") from None


_contexts: dict[int, DeviceContext] = {}
_contexts_lock = threading.Lock()


def context_for(dev: Any) -> DeviceContext:
    """The process's DeviceContext of ``dev`` (created on first use)."""
    key = int(dev.int_ptr)
    with _contexts_lock:
        dc = _contexts.get(key)
        if dc is None:
            dc = _contexts[key] = DeviceContext(dev)
        return dc

