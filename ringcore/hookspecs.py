"""ringcore's extension points, as pluggy hook specifications.

A plugin is a module named in ``[project.entry-points.ringcore]`` of its
distribution. It implements any of these hooks with ``@ringcore.hookimpl``.
Importing the module must be cheap: import heavy libraries (cupy, pyopencl,
wgpu, rocksdict) inside probes and factories, never at module level.
Hooks are called with keyword arguments.
"""

from __future__ import annotations

from typing import Any

import pluggy

__all__ = ["hookspec", "hookimpl", "PROJECT"]

PROJECT = "ringcore"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_backends(register: Any) -> None:
    """Register ring-kernel backends.

    Called once per process, the first time ringcore needs the list of
    backends (``ringcore.runtime(...)``, ``ringcore info``).

    :param register: call ``register(BackendSpec(name=..., priority=..., factory=...,
        probe=..., package=...))`` once per backend. The core refuses a name
        that is already registered.
    """


@hookspec
def register_stores(register: Any) -> None:
    """Register state stores for the transaction execution runtime.

    Called once per process, the first time ringcore needs the list of stores.

    :param register: call ``register(StoreSpec(name=..., factory=..., package=...))``
        once per store.
    """


@hookspec
def register_vms(register: Any) -> None:
    """Register virtual machines (transaction executors) for the execution runtime.

    Called once per process, the first time ringcore needs the list of VMs.

    :param register: call ``register(VmSpec(name=..., factory=...))`` once per VM.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add subcommands to the ``ringcore`` command line.

    Called once when the ``ringcore`` command starts, before arguments are parsed.

    :param cli: call ``cli.add_command(name, help=..., configure=..., run=...)``:
        ``configure(parser)`` adds arguments to an argparse parser, and
        ``run(args)`` executes the command and returns an exit status.
    """
