"""Plugin discovery, the registries of backends, stores and VMs, and backend selection.

Plugins are found through the ``ringcore`` entry-point group. Setting
``RINGCORE_LOAD_PLUGINS`` to a comma-separated list of entry-point names loads
only those (empty: none), so test suites never depend on what happens to be
installed. A plugin that fails to import or to register is reported (a warning,
and in ``ringcore info``) and skipped; the others keep working.

Backend selection (``ringcore.runtime("auto")``): ``RINGCORE_BACKEND`` if set;
otherwise the available backend of highest priority whose device is a real
accelerator; otherwise the CPU backend (or, failing that, the best available
software backend).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.metadata as md
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pluggy

from . import hookspecs
from .errors import BackendError, BackendNotFoundError, BackendUnavailableError, PluginError
from .runtime import DeviceInfo, RingKernelRuntime

__all__ = [
    "BackendSpec",
    "ProbeResult",
    "choose_device",
    "StoreSpec",
    "VmSpec",
    "PluginInfo",
    "PluginRegistry",
    "get_registry",
    "use_registry",
    "create_runtime",
    "select_backend",
    "KNOWN_PACKAGES",
    "ENV_BACKEND",
    "ENV_LOAD_PLUGINS",
]

_HOOKS = ("register_backends", "register_commands", "register_stores", "register_vms")

ENV_BACKEND = "RINGCORE_BACKEND"
ENV_LOAD_PLUGINS = "RINGCORE_LOAD_PLUGINS"

#: Distributions that provide ringcore's own backends and stores, for install hints.
KNOWN_PACKAGES = {
    "cpu": "ringcore-cpu",
    "opencl": "ringcore-opencl",
    "wgpu": "ringcore-wgpu",
    "cuda": "ringcore-cuda",
    "rocksdb": "ringcore-rocksdb",
}


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """Whether a backend can run here, and on what."""

    available: bool
    reason: str = ""
    """Why it cannot run (or a note when it can)."""
    devices: tuple[DeviceInfo, ...] = ()

    @property
    def accelerator(self) -> bool:
        """Whether any device it sees is a real accelerator (not a CPU or software device)."""
        return any(d.accelerator for d in self.devices)

    def as_dict(self) -> dict[str, Any]:
        return {"available": self.available, "reason": self.reason, "accelerator": self.accelerator,
                "devices": [d.as_dict() for d in self.devices]}

    @classmethod
    def of_devices(cls, devices: tuple[DeviceInfo, ...], noun: str, missing: str) -> ProbeResult:
        r"""A device backend's probe result: unavailable with ``missing`` (what is wrong and what to
        install) when there is no device; otherwise how many ``noun`` devices and the one a runtime picks by
        default (:func:`choose_device`), saying whether ``auto`` would prefer the cpu backend to it."""
        if not devices:
            return cls(False, missing)
        best = devices[choose_device(devices, None, "device_index")]
        what = "a GPU" if best.accelerator else "no GPU: auto prefers the cpu backend to it"
        return cls(True, f"{len(devices)} {noun}(s); first choice {best.name} ({what})", devices)


def choose_device(devices: tuple[DeviceInfo, ...] | list[DeviceInfo], index: int | None, option: str) -> int:
    """Which of a backend's ``devices`` a runtime uses: ``index``, or by default the first accelerator,
    else the first device.

    :param option: the runtime option ``index`` came from, for the error.
    :raises ValueError: ``index`` is not an index into ``devices`` (the error lists them).
    """
    if index is None:
        return next((i for i, d in enumerate(devices) if d.accelerator), 0)
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(devices):
        listed = "; ".join(f"{i}: {d.name} ({d.kind})" for i, d in enumerate(devices))
        raise ValueError(f"{option}={index!r} is not one of the devices here ({listed})")
    return index


@dataclasses.dataclass(frozen=True)
class BackendSpec:
    """A backend as registered by a plugin.

    :param factory: ``factory(**options) -> RingKernelRuntime``; imports heavy libraries itself.
    :param probe: ``probe() -> ProbeResult``; must not raise for an unusable machine.
    :param package: the distribution to install for it (for error messages).
    """

    name: str
    priority: int
    factory: Callable[..., RingKernelRuntime]
    probe: Callable[[], ProbeResult]
    package: str
    description: str = ""
    plugin: str = ""


@dataclasses.dataclass(frozen=True)
class _ComponentSpec:
    name: str
    factory: Callable[..., Any]
    package: str = ""
    description: str = ""
    plugin: str = ""


@dataclasses.dataclass(frozen=True)
class StoreSpec(_ComponentSpec):
    """A state store for the execution runtime. ``factory(**options) -> Store``."""


@dataclasses.dataclass(frozen=True)
class VmSpec(_ComponentSpec):
    """A transaction VM for the execution runtime. ``factory(**options) -> VmInterface``."""


@dataclasses.dataclass(frozen=True)
class PluginInfo:
    """An installed plugin: where it comes from and what it implements (or why it failed)."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hooks"] = list(self.hooks)
        return d


class PluginRegistry:
    """Loads plugins and holds what they register. Loading happens once, lazily.

    :param load: entry-point names to load; None reads ``RINGCORE_LOAD_PLUGINS``
        (unset: every installed plugin).
    :param plugins: extra plugin objects (modules or classes with hookimpls) to register.

    The core's built-in components (the MemoryStore and the no-op and ledger
    VMs of ``ringcore.execution``) are registered through the same hooks, as
    the plugin ``ringcore.execution._builtin``.
    """

    def __init__(self, load: list[str] | None = None, plugins: list[Any] | None = None) -> None:
        self._want = load
        from .execution import _builtin  # the core's own store and VMs, through the same hooks

        self._extra = [_builtin, *(plugins or [])]
        self._lock = threading.RLock()
        self._loaded = False
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.backends: dict[str, BackendSpec] = {}
        self.stores: dict[str, StoreSpec] = {}
        self.vms: dict[str, VmSpec] = {}
        self._probes: dict[str, ProbeResult] = {}
        self.probe_seconds: dict[str, float] = {}

    # -- loading -----------------------------------------------------------------

    def _wanted(self) -> set[str] | None:
        if self._want is not None:
            return set(self._want)
        env = os.environ.get(ENV_LOAD_PLUGINS)
        if env is None:
            return None
        return {n.strip() for n in env.split(",") if n.strip()}

    def load(self) -> PluginRegistry:
        """Discover and register plugins (idempotent); returns self."""
        with self._lock:
            if self._loaded:
                return self
            self._loaded = True
            wanted = self._wanted()
            for ep in md.entry_points(group=hookspecs.PROJECT):
                if wanted is not None and ep.name not in wanted:
                    continue
                if ep.name in self.infos:
                    continue
                dist = getattr(ep, "dist", None)
                dist_name = dist.metadata["Name"] if dist is not None else None
                version = dist.version if dist is not None else None
                try:
                    obj = ep.load()
                except Exception as exc:
                    self._fail(ep.name, ep.value, dist_name, version, f"import failed: {type(exc).__name__}: {exc}")
                    continue
                error = self._try_register(obj, ep.name)
                if error:
                    self._fail(ep.name, ep.value, dist_name, version, error)
                    continue
                self.infos[ep.name] = PluginInfo(ep.name, ep.value, dist_name, version, self._hooks_of(obj))
            for obj in self._extra:
                name = getattr(obj, "__name__", type(obj).__name__)
                error = self._try_register(obj, name)
                if error:
                    self._fail(name, name, None, None, error)
                    continue
                self.infos[name] = PluginInfo(name, name, None, None, self._hooks_of(obj))
            self._call("register_backends", self._add_backend)
            self._call("register_stores", self._add_store)
            self._call("register_vms", self._add_vm)
        return self

    def register(self, plugin: Any, name: str | None = None) -> None:
        """Register a plugin object now (tests, embedding); its hooks run at once."""
        with self._lock:
            self.load()
            name = name or getattr(plugin, "__name__", type(plugin).__name__)
            error = self._try_register(plugin, name)
            if error:
                raise PluginError(f"plugin {name!r}: {error}")
            self.infos[name] = PluginInfo(name, name, None, None, self._hooks_of(plugin))
            for hook, add in (("register_backends", self._add_backend), ("register_stores", self._add_store),
                              ("register_vms", self._add_vm)):
                for impl in getattr(self.pm.hook, hook).get_hookimpls():
                    if impl.plugin is plugin:
                        self._run_impl(hook, impl, add)

    def _try_register(self, obj: Any, name: str) -> str | None:
        """Register ``obj``; return why it was refused (an unknown hook, a taken name), or None."""
        known = set(_HOOKS)
        for attr in dir(obj):
            fn = getattr(obj, attr, None)
            if attr not in known and getattr(fn, f"{hookspecs.PROJECT}_impl", None) is not None:
                close = difflib.get_close_matches(attr, _HOOKS, n=1)
                hint = f" (did you mean {close[0]}?)" if close else f"; the hooks are {', '.join(_HOOKS)}"
                return f"implements unknown hook {attr!r}{hint}"
        try:
            self.pm.register(obj, name=name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            return f"could not register: {exc}"
        return None

    def _hooks_of(self, obj: Any) -> tuple[str, ...]:
        return tuple(n for n in _HOOKS if callable(getattr(obj, n, None)))

    def _fail(self, name: str, module: str, dist: str | None, version: str | None, error: str) -> None:
        self.infos[name] = PluginInfo(name, module, dist, version, (), error)
        warnings.warn(f"ringcore plugin {name!r} ({dist or module}) was skipped: {error}", RuntimeWarning, stacklevel=3)

    def _call(self, hook: str, add: Callable[[Any, str], None]) -> None:
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            self._run_impl(hook, impl, add)

    def _run_impl(self, hook: str, impl: Any, add: Callable[[Any, str], None]) -> None:
        plugin_name = impl.plugin_name
        try:
            impl.function(register=lambda spec: add(spec, plugin_name))
        except Exception as exc:
            prior = self.infos.get(plugin_name)
            self._fail(plugin_name, prior.module if prior else plugin_name,
                       prior.distribution if prior else None, prior.version if prior else None,
                       f"{hook} raised {type(exc).__name__}: {exc}")

    def _add(self, table: dict[str, Any], kind: str, spec: Any, cls: type, plugin: str) -> None:
        if not isinstance(spec, cls):
            raise PluginError(f"plugin {plugin!r} registered {spec!r} as a {kind}; pass a {cls.__name__}")
        if not spec.name or not isinstance(spec.name, str):
            raise PluginError(f"plugin {plugin!r} registered a {kind} with no name")
        if spec.name in table:
            raise PluginError(f"{kind} {spec.name!r} from plugin {plugin!r} is already registered by "
                              f"plugin {table[spec.name].plugin!r}; uninstall one of them")
        table[spec.name] = dataclasses.replace(spec, plugin=plugin)

    def _add_backend(self, spec: Any, plugin: str) -> None:
        self._add(self.backends, "backend", spec, BackendSpec, plugin)

    def _add_store(self, spec: Any, plugin: str) -> None:
        self._add(self.stores, "store", spec, StoreSpec, plugin)

    def _add_vm(self, spec: Any, plugin: str) -> None:
        self._add(self.vms, "VM", spec, VmSpec, plugin)

    def register_commands(self, cli: Any) -> None:
        """Let every plugin add CLI commands; a failing plugin is reported and skipped."""
        self.load()
        for impl in self.pm.hook.register_commands.get_hookimpls():
            try:
                impl.function(cli=cli)
            except Exception as exc:
                warnings.warn(f"ringcore plugin {impl.plugin_name!r} failed to add commands: {exc}",
                              RuntimeWarning, stacklevel=2)

    # -- backends --------------------------------------------------------------

    def backend_specs(self) -> list[BackendSpec]:
        """Every registered backend, highest priority first."""
        self.load()
        return sorted(self.backends.values(), key=lambda s: (-s.priority, s.name))

    def probe(self, name: str, *, refresh: bool = False) -> ProbeResult:
        """The probe result of backend ``name`` (cached; a raising probe counts as unavailable)."""
        spec = self.backend_spec(name)
        with self._lock:
            if not refresh and name in self._probes:
                return self._probes[name]
        t0 = time.perf_counter()
        try:
            result = spec.probe()
            if not isinstance(result, ProbeResult):
                raise TypeError(f"probe returned {result!r}, not a ProbeResult")
        except Exception as exc:
            result = ProbeResult(False, f"the probe raised {type(exc).__name__}: {exc}")
        with self._lock:
            self._probes[name] = result
            self.probe_seconds[name] = time.perf_counter() - t0
        return result

    def backend_spec(self, name: str) -> BackendSpec:
        self.load()
        spec = self.backends.get(name)
        if spec is None:
            installed = ", ".join(s.name for s in self.backend_specs()) or "none"
            hint = (f"install it with: pip install {KNOWN_PACKAGES[name]}" if name in KNOWN_PACKAGES
                    else "check the name, or install the plugin that provides it")
            failed = [i for i in self.infos.values() if i.error]
            note = "".join(f"; plugin {i.name!r} failed to load ({i.error})" for i in failed)
            raise BackendNotFoundError(f"no backend named {name!r} is installed (installed: {installed}); {hint}{note}")
        return spec

    def select(self, name: str = "auto") -> BackendSpec:
        """The backend ``name`` names, or for "auto" the best one that can run here."""
        if name == "auto":
            name = os.environ.get(ENV_BACKEND, "").strip() or "auto"
        if name != "auto":
            spec = self.backend_spec(name)
            probe = self.probe(name)
            if not probe.available:
                raise BackendUnavailableError(
                    f"backend {name!r} cannot run here: {probe.reason or 'its probe found no device'}. "
                    f"It is provided by {spec.package}; see `ringcore info` for every backend's status"
                )
            return spec
        specs = self.backend_specs()
        available = [s for s in specs if self.probe(s.name).available]
        for s in available:
            if self.probe(s.name).accelerator:
                return s
        for s in available:
            if s.name == "cpu":
                return s
        if available:
            return available[0]
        lines = "; ".join(f"{s.name}: {self.probe(s.name).reason}" for s in specs) or "no backend is registered"
        raise BackendUnavailableError(f"no ringcore backend can run here ({lines}); install ringcore-cpu")

    def create_runtime(self, name: str = "auto", **options: Any) -> RingKernelRuntime:
        spec = self.select(name)
        probe = self.probe(spec.name)
        try:
            rt = spec.factory(**options)
        except (BackendError, TypeError, ValueError):
            raise
        except Exception as exc:
            raise BackendUnavailableError(f"backend {spec.name!r} failed to start: {type(exc).__name__}: {exc}") from exc
        if rt.device is None and probe.devices:
            rt.device = probe.devices[0]
        return rt

    # -- stores and VMs ----------------------------------------------------------

    def store_spec(self, name: str) -> StoreSpec:
        self.load()
        if name not in self.stores:
            hint = f"; install it with: pip install {KNOWN_PACKAGES[name]}" if name in KNOWN_PACKAGES else ""
            raise PluginError(f"no store named {name!r} is installed (installed: {sorted(self.stores) or 'none'}){hint}")
        return self.stores[name]

    def vm_spec(self, name: str) -> VmSpec:
        self.load()
        if name not in self.vms:
            raise PluginError(f"no VM named {name!r} is installed (installed: {sorted(self.vms) or 'none'})")
        return self.vms[name]


_registry: PluginRegistry | None = None
_registry_lock = threading.Lock()


def get_registry() -> PluginRegistry:
    """The process-wide registry, loaded on first use."""
    global _registry
    with _registry_lock:
        if _registry is None:
            _registry = PluginRegistry()
        reg = _registry
    return reg.load()


@contextmanager
def use_registry(registry: PluginRegistry) -> Iterator[PluginRegistry]:
    """Make ``registry`` the process-wide one for the duration (tests)."""
    global _registry
    with _registry_lock:
        prior, _registry = _registry, registry
    try:
        yield registry.load()
    finally:
        with _registry_lock:
            _registry = prior


def select_backend(name: str = "auto") -> BackendSpec:
    """The backend ``ringcore.runtime(name)`` would use."""
    return get_registry().select(name)


def create_runtime(backend: str = "auto", **options: Any) -> RingKernelRuntime:
    """Create a runtime on ``backend`` ("auto": the best available here)."""
    return get_registry().create_runtime(backend, **options)


