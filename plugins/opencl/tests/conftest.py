"""ringcore-opencl's suite loads only this plugin, whatever else is installed, and runs on a real OpenCL
platform (PoCL on a CPU in CI): nothing here is skipped for lack of a GPU."""

from __future__ import annotations

import os
import tempfile

os.environ["RINGCORE_LOAD_PLUGINS"] = "opencl"
os.environ.pop("RINGCORE_BACKEND", None)
# PoCL caches compiled kernels under POCL_CACHE_DIR (the Makefile exports one); never in $HOME here.
os.environ.setdefault("POCL_CACHE_DIR", tempfile.mkdtemp(prefix="ringcore-pocl-"))
