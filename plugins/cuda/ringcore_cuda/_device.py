"""CUDA GPUs: discovery (the probe's data), NVRTC compilation, and one module cache per GPU.

Imports CuPy: only the probe and the factory import this module. Compiling needs NVRTC only, not a GPU
(:func:`compile_source`), so the generated CUDA C is built and checked on machines without one.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import cupy
from cupy.cuda import nvrtc
from cupy.cuda import runtime as cudart

from ringcore.errors import BackendUnavailableError, KernelCompileError
from ringcore.lang.host import ProgramCache, ResidentSlots
from ringcore.lang.ir import KernelIR
from ringcore.lang.targets import c, cuda
from ringcore.plugins import choose_device
from ringcore.runtime import DeviceInfo

__all__ = ["device_count", "device_info", "why_unavailable", "pick_device", "properties", "nvrtc_target",
           "compile_source", "DeviceModules", "modules_for", "persistent_refusal", "default_persistent_slots"]

_NO_GPU = "install an NVIDIA driver on a machine with an NVIDIA GPU"


def why_unavailable() -> str:
    """Why CuPy reports no usable GPU, in words (the driver's error, or that there is no driver)."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver: libcuda.so.1 cannot be loaded"
    try:
        n = cudart.getDeviceCount()
    except cudart.CUDARuntimeError as exc:
        return f"the CUDA runtime says: {exc}"
    return f"the driver lists {n} GPU(s), but CuPy cannot use them"


def device_count() -> int:
    return int(cudart.getDeviceCount())


def properties(index: int) -> dict[str, Any]:
    """``cudaGetDeviceProperties`` of GPU ``index`` (the name as text)."""
    p = dict(cudart.getDeviceProperties(index))
    name = p.get("name", b"")
    p["name"] = (name.decode(errors="replace") if isinstance(name, bytes) else str(name)).strip("\x00 ").strip()
    return p


def persistent_refusal(props: dict[str, Any]) -> str | None:
    """Why the GPU cannot keep a kernel resident (None: it can): the loop polls queues in mapped pinned host
    memory, addressed on the GPU by the host pointer (unified addressing)."""
    if not props.get("canMapHostMemory", 1):
        return f"the GPU {props['name']} cannot map host memory"
    if not props.get("unifiedAddressing", 1):
        return f"the GPU {props['name']} has no unified addressing (a host pointer is not valid on it)"
    return None


def default_persistent_slots(props: dict[str, Any]) -> int:
    """Resident blocks the GPU takes at once by default, across the process: one per multiprocessor but
    one, which stays free for event-driven launches and other CuPy work."""
    if persistent_refusal(props) is not None:
        return 0
    return max(0, int(props.get("multiProcessorCount", 1)) - 1)


def device_info(index: int) -> DeviceInfo:
    """The DeviceInfo a probe reports for GPU ``index``."""
    p = properties(index)
    details = {
        "index": index,
        "compute_capability": f"{p['major']}.{p['minor']}",
        "multiprocessors": int(p.get("multiProcessorCount", 0)),
        "global_mem_bytes": int(p.get("totalGlobalMem", 0)),
        "max_threads_per_block": int(p.get("maxThreadsPerBlock", 0)),
        "can_map_host_memory": bool(p.get("canMapHostMemory", 0)),
        "unified_addressing": bool(p.get("unifiedAddressing", 0)),
        "driver_version": cudart.driverGetVersion(),
        "runtime_version": cudart.runtimeGetVersion(),
        "nvrtc_version": ".".join(map(str, nvrtc.getVersion())),
        "persistent": persistent_refusal(p) is None,
        "persistent_slots": default_persistent_slots(p),
    }
    return DeviceInfo(name=p["name"], kind="gpu", accelerator=True, details=details)


def pick_device(index: int | None = None) -> tuple[int, DeviceInfo]:
    """The GPU a runtime uses: ``index``, or the first."""
    try:
        available = cupy.is_available()
    except Exception:  # a broken driver install
        available = False
    if not available:
        raise BackendUnavailableError(f"CuPy finds no usable CUDA GPU here ({why_unavailable()}); {_NO_GPU}")
    infos = [device_info(i) for i in range(device_count())]
    if not infos:
        raise BackendUnavailableError(f"the CUDA driver lists no GPU; {_NO_GPU}")
    i = choose_device(infos, index, "device_index")
    return i, infos[i]


# -- compiling ---------------------------------------------------------------------------------------


def nvrtc_target(cc: tuple[int, int]) -> tuple[str, bool]:
    """``(--gpu-architecture value, cubin?)`` for a GPU of compute capability ``cc``: a cubin for its own
    architecture when this NVRTC knows it, else PTX for the newest one it knows below (the driver JITs it)."""
    want = cc[0] * 10 + cc[1]
    known = sorted(int(a) for a in nvrtc.getSupportedArchs())
    if want in known:
        return f"sm_{want}", True
    older = [a for a in known if a <= want]
    if not older:
        raise KernelCompileError(f"NVRTC {'.'.join(map(str, nvrtc.getVersion()))} cannot compile for compute "
                                 f"capability {cc[0]}.{cc[1]} (it knows {known}); install a newer "
                                 "nvidia-cuda-nvrtc wheel or an older GPU's driver", construct="cuda build",
                                 target="cuda")
    return f"compute_{older[-1]}", False


def compile_source(src: str, cc: tuple[int, int], kirs: list[KernelIR], where: str = "NVRTC") -> bytes:
    """Compile generated CUDA C for compute capability ``cc`` with NVRTC (no GPU needed): the cubin (or PTX).

    :raises KernelCompileError: NVRTC refused the source; the message names the user's Python line where
        the log points into the (first) kernel.
    """
    arch, cubin = nvrtc_target(cc)
    prog = nvrtc.createProgram(src, "ringcore_kernels.cu", [], [])
    try:
        try:
            nvrtc.compileProgram(prog, [f"--gpu-architecture={arch}", *cuda.NVRTC_OPTIONS])
        except nvrtc.NVRTCError:
            raise c.compile_error(kirs[0], nvrtc.getProgramLog(prog), where, "cuda") from None
        if cubin:
            return bytes(nvrtc.getCUBIN(prog))
        ptx = nvrtc.getPTX(prog)
        ptx = ptx if isinstance(ptx, bytes) else ptx.encode()
        return ptx if ptx.endswith(b"\0") else ptx + b"\0"  # the driver loads PTX as a C string
    finally:
        nvrtc.destroyProgram(prog)


class DeviceModules(ProgramCache):
    """One GPU's loaded modules for the whole process (the core's ProgramCache: by kernel IR fingerprint),
    and the count of resident blocks on it (persistent loops, across the process's runtimes)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index
        self.device = cupy.cuda.Device(index)
        self.props = properties(index)
        self.cc = (int(self.props["major"]), int(self.props["minor"]))
        self.resident = ResidentSlots()  # blocks of resident kernels on the GPU, across the process

    def _build_many(self, kirs: list[KernelIR]) -> Any:
        """Compile the kernels into one module (one NVRTC run) and load it on the GPU."""
        src = cuda.prelude() + "".join(cuda.emit_parts(k)[1] for k in kirs)
        image = compile_source(src, self.cc, kirs, f"NVRTC (for {self.props['name']})")
        with self.device:
            mod = cupy.cuda.function.Module()
            mod.load(image)
        return mod


_modules: dict[int, DeviceModules] = {}
_modules_lock = threading.Lock()


def modules_for(index: int) -> DeviceModules:
    """The process's DeviceModules of GPU ``index`` (created on first use)."""
    with _modules_lock:
        dm = _modules.get(index)
        if dm is None:
            dm = _modules[index] = DeviceModules(index)
        return dm
