"""The generated CUDA C, built by NVRTC exactly as the backend builds it (no GPU needed): every kernel of
the kernel-language corpus and the examples, with its batch entry point and its persistent loop, for the
architectures of the GPUs ringcore targets; and NVRTC's errors mapped to the user's Python line."""

from __future__ import annotations

import re

import pytest
from ringcore_cuda import _device

from ringcore.errors import KernelCompileError
from ringcore.lang import lower
from ringcore.lang.targets import c, cuda
from ringcore.testing import kernels as K
from ringcore.testing.differential import ENTRIES


def _kirs() -> list:
    seen, out = set(), []
    for k in [e.kernel for e in ENTRIES] + [K.echo, K.accumulate, K.histogram, K.sink, K.fragile]:
        kir = lower(k)
        if kir.fingerprint() not in seen and c.symbols(kir).ident not in {c.symbols(o).ident for o in out}:
            seen.add(kir.fingerprint())
            out.append(kir)
    return out


@pytest.mark.parametrize("cc", [(8, 0), (9, 0)], ids=["sm_80", "sm_90 (H100/H200)"])
def test_every_kernel_and_its_persistent_loop_builds_with_nvrtc(cc: tuple[int, int]) -> None:
    kirs = _kirs()
    assert len(kirs) > 60
    src = cuda.prelude() + "".join(cuda.emit_parts(k)[1] for k in kirs)
    image = _device.compile_source(src, cc, kirs)
    assert image[:4] == b"\x7fELF"  # a cubin for the GPU's own architecture
    for k in kirs:
        sym = c.symbols(k)
        assert sym.entry.encode() in image and sym.persist.encode() in image, k.name


def test_the_target_is_the_gpus_own_architecture_or_ptx_the_driver_compiles() -> None:
    assert _device.nvrtc_target((9, 0)) == ("sm_90", True)
    arch, cubin = _device.nvrtc_target((99, 9))  # newer than this NVRTC knows: PTX for the newest it knows
    assert arch.startswith("compute_") and not cubin
    src = cuda.prelude() + cuda.emit_parts(lower(K.echo))[1]
    ptx = _device.compile_source(src, (99, 9), [lower(K.echo)])
    assert b".entry rc_persist_echo(" in ptx and ptx.endswith(b"\0")
    with pytest.raises(KernelCompileError, match="cannot compile for compute capability 1.0"):
        _device.nvrtc_target((1, 0))


def test_an_nvrtc_error_names_the_python_line_of_the_kernel() -> None:
    kir = lower(K.accumulate)
    part = cuda.emit_parts(kir)[1]
    # Break the generated code at the first line mapped to the kernel's body (a #line directive).
    m = re.search(r'#line (\d+) "[^"]*kernels\.py"\n', part)
    assert m is not None
    broken = part[:m.end()] + "rc_no_such_name = 1;\n" + part[m.end():]
    with pytest.raises(KernelCompileError) as err:
        _device.compile_source(cuda.prelude() + broken, (9, 0), [kir])
    e = err.value
    assert e.line == int(m.group(1)) and e.filename.endswith("kernels.py") and e.target == "cuda"
    assert "rc_no_such_name" in str(e) and "accumulate" in str(e)
    with pytest.raises(KernelCompileError, match="generated code"):  # outside the kernel's lines
        _device.compile_source(cuda.prelude() + "int broken(;\n" + part, (9, 0), [kir])


def test_nvrtc_options_keep_ieee_float_semantics() -> None:
    assert "--fmad=false" in cuda.NVRTC_OPTIONS and not any("fast-math" in o for o in cuda.NVRTC_OPTIONS)
