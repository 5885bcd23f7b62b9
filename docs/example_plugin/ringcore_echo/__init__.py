"""ringcore-echo: an example third-party ringcore backend (see docs/plugins.md)."""
