"""The core suite never depends on installed plugins: entry points are not loaded."""

from __future__ import annotations

import os

os.environ["RINGCORE_LOAD_PLUGINS"] = ""
os.environ.pop("RINGCORE_BACKEND", None)
