"""ringcore-cuda's suite loads only this plugin, whatever else is installed.

Tests that need a GPU carry ``needs_gpu`` (from ``_gpu``) and skip, with the probe's reason, where CuPy
finds none; what runs without one (NVRTC builds of the generated CUDA C, the probe, the errors) always runs.
"""

from __future__ import annotations

import os

os.environ["RINGCORE_LOAD_PLUGINS"] = "cuda"
os.environ.pop("RINGCORE_BACKEND", None)
