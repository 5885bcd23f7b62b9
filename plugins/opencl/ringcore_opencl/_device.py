"""OpenCL devices: discovery (the probe's data), one context per device, and the program cache.

Imports PyOpenCL: only the probe and the factory import this module.
"""

from __future__ import annotations

import os
import tempfile
import threading
from typing import Any

import pyopencl as cl

from ringcore.errors import BackendUnavailableError, KernelCompileError
from ringcore.lang.host import ResidentSlots
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


class DeviceContext:
    """One OpenCL context per device for the whole process, with its program cache.

    Programs are cached by the kernel IR's fingerprint (the generated source is a function of it), so a
    kernel is built once per device however many runtimes and launches use it.
    """

    def __init__(self, dev: Any) -> None:
        self.device = dev
        self.context = cl.Context([dev])
        self.options = opencl.build_options(dev)
        self._programs: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.builds = 0  # programs built (for tests: the cache's effect is observable)
        self.resident = ResidentSlots()  # work-groups of resident kernels on the device, across the process
        self.int64_atomics = "cl_khr_int64_base_atomics" in dev.extensions

    def program_for(self, kir: KernelIR) -> Any:
        """The built program holding ``kir``'s entry point (built now if no cached program has it).

        :raises KernelCompileError: the device's compiler refused the source; the message names the
            user's Python line where the build log points into the kernel.
        """
        fp = kir.fingerprint()
        with self._lock:
            prg = self._programs.get(fp)
        if prg is not None:
            return prg
        self.build([kir])
        with self._lock:
            return self._programs[fp]

    def build(self, kirs: list[KernelIR]) -> None:
        """Build the kernels not yet cached in one program (one compiler run: PoCL builds are slow)."""
        with self._lock:
            todo, seen = [], set()
            for k in kirs:
                fp = k.fingerprint()
                if fp not in self._programs and fp not in seen:
                    seen.add(fp)
                    todo.append(k)
        if not todo:
            return
        idents = [c.symbols(k).ident for k in todo]
        if len(set(idents)) != len(idents):  # two kernels of one id (different versions): one program each
            for k in todo:
                self.build([k])
            return
        src = opencl.prelude() + "".join(opencl.emit_parts(k)[1] for k in todo)
        try:
            prg = cl.Program(self.context, src).build(options=self.options)
        except cl.Error as exc:
            if len(todo) == 1:
                raise build_error(todo[0], exc, self.device) from None
            for k in todo:  # find the culprit, with its own mapped diagnostics
                self.build([k])
            raise
        with self._lock:
            self.builds += 1
            for k in todo:
                self._programs[k.fingerprint()] = prg


def build_error(kir: KernelIR, exc: Exception, dev: Any) -> KernelCompileError:
    """The KernelCompileError for a failed build of ``kir``: at the user's line when the log points there."""
    log = str(exc)
    diags = c.map_build_log(log, kir)
    errors = [d for d in diags if d[1].startswith("error") or "error" in d[1][:20]] or diags
    at = next(((line, msg) for line, msg in errors if line is not None), None)
    where = f"{dev.name.strip()} ({dev.platform.name.strip()})"
    if at is not None:
        line, msg = at
        src = c._source_line(kir, line).strip()
        shown = f"\n    {src}" if src else ""
        return KernelCompileError(
            f"{kir.filename}:{line}: the OpenCL compiler of {where} refused kernel {kir.name!r}: {msg}{shown}\n"
            "This is a bug in ringcore's OpenCL target or a device limit; run the kernel on the cpu backend "
            "meanwhile and report it with `ringcore info`",
            filename=kir.filename, line=line, construct="opencl build", target="opencl")
    first = next((msg for _, msg in errors), log.strip().splitlines()[-1] if log.strip() else "no build log")
    return KernelCompileError(
        f"{kir.filename}:{kir.first_line}: the OpenCL compiler of {where} refused kernel {kir.name!r} "
        f"in generated code: {first}\nThis is a bug in ringcore's OpenCL target or a device limit; run the "
        "kernel on the cpu backend meanwhile and report it with `ringcore info`",
        filename=kir.filename, line=kir.first_line, construct="opencl build", target="opencl")


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

