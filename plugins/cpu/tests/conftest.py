"""ringcore-cpu's suite loads only this plugin, whatever else is installed."""

from __future__ import annotations

import os

os.environ["RINGCORE_LOAD_PLUGINS"] = "cpu"
os.environ.pop("RINGCORE_BACKEND", None)
