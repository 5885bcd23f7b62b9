"""The execution runtime's built-in store and VMs, registered through the same hooks as plugins'."""

from __future__ import annotations

from typing import Any

from ..hookspecs import hookimpl
from ..plugins import StoreSpec, VmSpec


def _memory_store(**options: Any) -> Any:
    from .store import MemoryStore

    return MemoryStore(**options)


def _noop_vm(**options: Any) -> Any:
    from .vm import NoopVm

    return NoopVm(**options)


def _ledger_vm(**options: Any) -> Any:
    from .ledger import LedgerVm

    return LedgerVm(**options)


@hookimpl
def register_stores(register: Any) -> None:
    register(StoreSpec(name="memory", factory=_memory_store,
                       description="in-memory store (the embedded default; nothing survives the process)"))


@hookimpl
def register_vms(register: Any) -> None:
    register(VmSpec(name="noop", factory=_noop_vm, description="executes every transaction by doing nothing"))
    register(VmSpec(name="ledger", factory=_ledger_vm,
                    description="account balances: Mint and Transfer transactions (aborts on insufficient funds)"))
