"""ringcore-wgpu's suite loads only this plugin, whatever else is installed, and runs on a real WebGPU
adapter (Mesa's llvmpipe or lavapipe on a CPU in CI): nothing here is skipped for lack of a GPU."""

from __future__ import annotations

import os
import tempfile

os.environ["RINGCORE_LOAD_PLUGINS"] = "wgpu"
os.environ.pop("RINGCORE_BACKEND", None)
if not os.environ.get("XDG_RUNTIME_DIR"):  # wgpu-native warns without one; never the user's
    os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="ringcore-xdg-")
