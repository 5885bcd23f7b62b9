"""WebGPU adapters: discovery (the probe's data), one device per adapter, and the pipeline cache.

Imports wgpu: only the probe and the factory import this module.
"""

from __future__ import annotations

import os
import tempfile
import threading
from typing import Any

import numpy as np

from ringcore.errors import BackendError, BackendUnavailableError, KernelCompileError
from ringcore.lang.ir import KernelIR
from ringcore.lang.targets import wgsl
from ringcore.plugins import choose_device
from ringcore.runtime import DeviceInfo

__all__ = ["adapters", "adapter_info", "pick_adapter", "DeviceContext", "context_for", "LIMITS", "Reader"]

#: The limits that matter to ringcore, in WebGPU's spelling (reported by the probe, requested at their
#: adapter maximum for the device).
LIMITS = ("max-buffer-size", "max-storage-buffer-binding-size", "max-uniform-buffer-binding-size",
          "max-storage-buffers-per-shader-stage", "max-compute-workgroup-size-x",
          "max-compute-invocations-per-workgroup", "max-compute-workgroups-per-dimension")
_SOFTWARE = ("llvmpipe", "lavapipe", "swiftshader", "softpipe", "warp")


def _ensure_env() -> None:
    # wgpu-native (through Mesa) warns when XDG_RUNTIME_DIR is unset; give it a private directory.
    if not os.environ.get("XDG_RUNTIME_DIR"):
        os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="ringcore-xdg-")


_adapters: list[Any] | None = None
_adapters_lock = threading.Lock()


def adapters() -> list[Any]:
    """Every WebGPU adapter wgpu-native finds, in its order (GPUs and software adapters).

    Enumerated once per process and kept: an adapter object released (by the garbage collector, in
    whatever thread) while another thread uses a device can abort the process on Mesa's GL adapter.
    """
    global _adapters
    with _adapters_lock:
        if _adapters is None:
            _ensure_env()
            import wgpu

            _adapters = list(wgpu.gpu.enumerate_adapters_sync())
        return _adapters


def _is_software(info: Any) -> bool:
    text = f"{info.get('device', '')} {info.get('description', '')} {info.get('vendor', '')}".lower()
    return info.get("adapter_type") == "CPU" or any(s in text for s in _SOFTWARE)


def adapter_info(adapter: Any) -> DeviceInfo:
    """The DeviceInfo a probe reports for ``adapter``: backend and adapter type, limits, features."""
    info = adapter.info
    software = _is_software(info)
    gpu = info.get("adapter_type") in ("DiscreteGPU", "IntegratedGPU", "VirtualGPU") and not software
    name = (info.get("device") or info.get("description") or "unknown adapter").strip()
    details: dict[str, Any] = {
        "backend_type": info.get("backend_type", ""),  # Vulkan, Metal, D3D12, OpenGL
        "adapter_type": info.get("adapter_type", ""),  # DiscreteGPU, IntegratedGPU, CPU, Unknown
        "vendor": info.get("vendor", "") or f"{info.get('vendor_id', 0):#06x}",
        "description": info.get("description", ""),
        "software": software,
    }
    for k in LIMITS:
        details[k.replace("-", "_")] = int(adapter.limits[k])
    feats = set(adapter.features)
    details["shader_f64"] = "shader-f64" in feats
    details["shader_int64"] = "shader-int64" in feats
    kind = "software" if software else ("gpu" if gpu else "other")
    return DeviceInfo(name=name, kind=kind, accelerator=gpu, details=details)


def pick_adapter(index: int | None = None) -> tuple[Any, DeviceInfo, int]:
    """The adapter a runtime uses, its DeviceInfo and its index: ``adapters()[index]``, or the first GPU,
    else the first adapter."""
    try:
        ads = adapters()
    except Exception as exc:
        raise BackendUnavailableError(f"wgpu cannot enumerate adapters ({type(exc).__name__}: {exc})") from None
    if not ads:
        raise BackendUnavailableError("wgpu finds no WebGPU adapter; install a GPU driver (Vulkan, Metal, D3D12) "
                                      "or Mesa (llvmpipe/lavapipe) for a software adapter")
    infos = [adapter_info(a) for a in ads]
    i = choose_device(infos, index, "adapter_index")
    return ads[i], infos[i], i


class DeviceContext:
    """One WebGPU device per adapter for the process, with the WGSL target's bind group layout and the
    pipeline cache (by kernel IR fingerprint: a kernel is compiled once however many launches use it).

    ``lost`` is set when the device is lost (destroyed, reset, driver crash); the next runtime on the
    adapter gets a new device.
    """

    def __init__(self, adapter: Any) -> None:
        import wgpu

        self.adapter = adapter
        limits = {k: adapter.limits[k] for k in LIMITS}
        self.device = adapter.request_device_sync(required_limits=limits, label="ringcore")
        self.limits = {k: int(self.device.limits[k]) for k in LIMITS}
        self.lost: str | None = None
        entries = [{"binding": b, "visibility": wgpu.ShaderStage.COMPUTE, "buffer": {"type": kind}}
                   for b, (_name, kind) in wgsl.BINDINGS.items()]
        self.bind_layout = self.device.create_bind_group_layout(entries=entries)
        self.layout = self.device.create_pipeline_layout(bind_group_layouts=[self.bind_layout])
        self._pipelines: dict[str, Any] = {}
        #: Held around every use of the device (buffers, pipelines, dispatches, read-backs). Two threads using
        #: one wgpu-native device at once can abort the process (seen with wgpu-py 0.32 on Mesa's GL
        #: adapter); its queue runs one thing at a time anyway.
        self.lock = threading.RLock()
        #: Every read-back from this device (see Reader).
        self.reader = Reader(self.device, self.lock)
        self.builds = 0  # pipelines built (for tests: the cache's effect is observable)

    def mark_lost(self, why: str) -> None:
        self.lost = why

    def pipeline_for(self, kir: KernelIR) -> Any:
        """The compute pipeline of ``kir``'s WGSL (built now if not cached).

        :raises KernelCompileError: the kernel is outside what the WGSL target supports (64-bit values:
            at the construct's line), or the device's shader compiler refused the module (at the Python
            line the error points into, where it can).
        """
        fp = kir.fingerprint()
        with self.lock:
            p = self._pipelines.get(fp)
        if p is not None:
            return p
        src = wgsl.emit(kir)
        with self.lock:
            try:
                module = self.device.create_shader_module(code=src, label=kir.name)
                p = self.device.create_compute_pipeline(layout=self.layout, label=kir.name,
                                                        compute={"module": module, "entry_point": wgsl.ENTRY_POINT})
            except Exception as exc:  # GPUValidationError and friends: naga's or the driver's message
                raise build_error(kir, src, exc, self.adapter) from None
            self.builds += 1
            self._pipelines[fp] = p
        return p


def build_error(kir: KernelIR, src: str, exc: Exception, adapter: Any) -> KernelCompileError:
    """The KernelCompileError for a shader module or pipeline the device refused."""
    text = str(exc).strip()
    line = wgsl.python_line(src, text)
    where = adapter.info.get("device") or "the WebGPU adapter"
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    at = line if line is not None else kir.first_line
    return KernelCompileError(
        f"{kir.filename}:{at}: the shader compiler of {where} refused kernel {kir.name!r}"
        f"{'' if line is not None else ' in generated code'}: {first}\nThis is a bug in ringcore's WGSL target "
        "or a device limit; run the kernel on the cpu backend meanwhile and report it with `ringcore info`",
        filename=kir.filename, line=at, construct="wgsl pipeline", target="wgsl")


class Reader:
    """Reads a MAP_READ buffer after the work submitted before it, on the calling thread.

    wgpu-py's ``map_sync`` hands the wait to its per-device poll thread and back (two thread wake-ups,
    about 170 µs on a small VM even with nothing to wait for); ``queue.on_submitted_work_done_sync`` is
    broken in 0.32. This maps through wgpu-native directly: ``wgpuBufferMapAsync``, then
    ``wgpuDevicePoll(wait=True)`` on this thread until the map's callback ran (the poll returns once the
    submitted work is done), copy, unmap: the read-back is the completion wait. Where wgpu-native's
    functions are not reachable (another wgpu-py), it falls back to the public ``map_sync``.
    """

    def __init__(self, device: Any, lock: Any) -> None:
        self.device = device
        # The device's lock (DeviceContext.lock): every read of this backend goes through here, none through
        # wgpu-py's poll thread, which then never polls.
        self._lock = lock
        self._done = False
        self._status = 0
        try:
            from wgpu.backends.wgpu_native._api import ffi, lib, libf, new_struct

            self._ffi, self._lib, self._libf = ffi, lib, libf

            @ffi.callback("void(WGPUMapAsyncStatus, WGPUStringView, void *, void *)")
            def mapped(status: int, _message: Any, _u1: Any, _u2: Any) -> None:
                self._status = status
                self._done = True

            self._callback = mapped  # kept alive as long as the reader
            self._info = new_struct("WGPUBufferMapCallbackInfo", mode=lib.WGPUCallbackMode_AllowProcessEvents,
                                    callback=mapped)
            self.direct = True
        except Exception:  # another wgpu-py layout: the public, slower path
            self.direct = False

    def read(self, buf: Any, size: int) -> np.ndarray:
        """``size`` bytes (a multiple of 4) from the start of ``buf``, once the submitted work is done."""
        if not self.direct:
            import wgpu

            buf.map_sync(wgpu.MapMode.READ, 0, size)
            try:
                return np.frombuffer(buf.read_mapped(0, size), np.uint8).copy()
            finally:
                buf.unmap()
        libf, lib, ffi = self._libf, self._lib, self._ffi
        with self._lock:
            self._done = False
            libf.wgpuBufferMapAsync(buf._internal, lib.WGPUMapMode_Read, 0, size, self._info)
            while not self._done:
                libf.wgpuDevicePoll(self.device._internal, True, ffi.NULL)
            if self._status != lib.WGPUMapAsyncStatus_Success:
                raise RuntimeError(f"could not map the read-back buffer (status {self._status}); the device may "
                                   "be lost")
            try:
                ptr = libf.wgpuBufferGetConstMappedRange(buf._internal, 0, size)
                return np.frombuffer(ffi.buffer(ptr, size), np.uint8).copy()
            finally:
                libf.wgpuBufferUnmap(buf._internal)

    def copy_and_read(self, src: Any, size: int, staging: Any) -> np.ndarray:
        """``size`` bytes of the storage buffer ``src``, through ``staging`` (MAP_READ | COPY_DST, big enough)."""
        with self._lock:
            enc = self.device.create_command_encoder()
            enc.copy_buffer_to_buffer(src, 0, staging, 0, size)
            self.device.queue.submit([enc.finish()])
            return self.read(staging, size)


_contexts: dict[int, DeviceContext] = {}
_contexts_lock = threading.Lock()


# Contexts whose device was lost: kept, so that their objects are never released while another device runs.
_retired: list[DeviceContext] = []


def context_for(adapter: Any, key: int) -> DeviceContext:
    """The process's DeviceContext of the ``key``-th adapter of ``adapters()`` (created on first use, again after a loss)."""
    with _contexts_lock:
        dc = _contexts.get(key)
        if dc is not None and dc.lost is not None:
            _retired.append(dc)
            dc = None
        if dc is None:
            try:
                dc = _contexts[key] = DeviceContext(adapter)
            except Exception as exc:
                raise BackendError(f"the WebGPU adapter {adapter.info.get('device')!r} could not create a "
                                   f"device ({type(exc).__name__}: {exc})") from None
        return dc
