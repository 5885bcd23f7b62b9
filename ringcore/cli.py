"""The ``ringcore`` command: ``info``, ``demo``, ``bench``, ``compile``, and commands that plugins add.

Plugins add commands through the ``register_commands(cli)`` hook; ``cli`` is a
:class:`CommandLine`, whose :meth:`CommandLine.add_command` takes the name,
a help line, ``configure(parser)`` to declare arguments and ``run(args)`` to
execute (returning an exit status).

Errors a user can fix (an unknown backend, a backend that cannot run here, a
failing plugin command) print one line to stderr and exit with status 1;
usage errors exit with status 2, as argparse does. ``RINGCORE_DEBUG=1`` adds
the traceback.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["CommandLine", "collect_info", "explain_auto", "format_info", "load_kernels", "main"]

PROG = "ringcore"
ENV_DEBUG = "RINGCORE_DEBUG"


class CommandLine:
    """What ``register_commands(cli)`` receives: a way to add subcommands to ``ringcore``."""

    def __init__(self, subparsers: Any) -> None:
        self._subparsers = subparsers
        self.commands: dict[str, Callable[[argparse.Namespace], int | None]] = {}

    def add_command(
        self,
        name: str,
        help: str = "",
        configure: Callable[[argparse.ArgumentParser], None] | None = None,
        run: Callable[[argparse.Namespace], int | None] | None = None,
        *,
        description: str | None = None,
    ) -> None:
        """Add the subcommand ``ringcore NAME``.

        :param help: one line for ``ringcore --help``.
        :param configure: ``configure(parser)`` adds the command's arguments to its argparse parser.
        :param run: ``run(args) -> int``: executes the command; its return value is the exit
            status (None counts as 0).
        :raises ValueError: the name is invalid or taken (by a built-in command or another plugin).
        :raises TypeError: ``run`` is not callable.
        """
        if not isinstance(name, str) or not name or name.startswith("-") or any(c.isspace() for c in name):
            raise ValueError(f"command name {name!r} must be a non-empty word not starting with '-'")
        if name in self.commands:
            raise ValueError(f"the command {name!r} already exists; choose another name")
        if not callable(run):
            raise TypeError(f"command {name!r} needs run=callable(args) -> int, got {run!r}")
        # Configure a detached parser first, so that a configure() that raises leaves no half-made command.
        template = argparse.ArgumentParser(add_help=False)
        if configure is not None:
            configure(template)
        parser = self._subparsers.add_parser(name, help=help, description=description or help or None,
                                             parents=[template])
        parser.set_defaults(_run=run, _command=name)
        self.commands[name] = run


    def add_device_tools(self, backend: str, package: str, probe: Callable[[], Any],
                         bench: Callable[..., list[Any]], *, device_word: str = "device",
                         bench_help: str = "") -> None:
        """Add ``ringcore BACKEND devices|bench``: what every device backend's plugin offers.

        ``devices [--json]`` prints ``probe()`` (a ProbeResult): each device with its details; exit 1 when
        the backend is unavailable. ``bench [--quick] [--json] [--device-index I]`` prints the figures of
        ``bench(quick=..., device_index=...)`` (a list of ``ringcore.bench.Figure``) as ``ringcore bench`` does,
        and exits 0 whatever they are (gate on the ``status`` fields of ``--json``).
        """
        import json
        import time

        def devices(args: argparse.Namespace) -> int:
            res = probe()
            if args.json:
                print(json.dumps(res.as_dict(), indent=2))
                return 0 if res.available else 1
            print(f"{backend}: {'available' if res.available else 'unavailable'}: {res.reason}")
            for i, d in enumerate(res.devices):
                print(f"  [{i}] {d.name}: {d.kind}, accelerator={d.accelerator}")
                for k, v in d.details.items():
                    print(f"      {k}: {v}")
            return 0 if res.available else 1

        def run_bench(args: argparse.Namespace) -> int:
            from .bench import format_figures

            t0 = time.perf_counter()
            figures = bench(quick=args.quick, device_index=args.device_index)
            if args.json:
                print(json.dumps([f.as_dict() for f in figures], indent=2))
            else:
                print("\n".join(format_figures([f.as_dict() for f in figures], {}, time.perf_counter() - t0)))
            return 0

        def configure(p: argparse.ArgumentParser) -> None:
            sub = p.add_subparsers(title="subcommands", metavar="SUBCOMMAND", required=True)
            d = sub.add_parser("devices", help=f"list the {device_word}s and what each offers")
            d.add_argument("--json", action="store_true", help="print JSON")
            d.set_defaults(_tool=devices)
            b = sub.add_parser("bench", help=bench_help or f"the {backend} backend's figures, with baselines")
            b.add_argument("--quick", action="store_true", help="fewer repeats")
            b.add_argument("--json", action="store_true", help="print the figures as JSON")
            b.add_argument("--device-index", type=int, default=None,
                           help=f"the {device_word} (see `ringcore {backend} devices`)")
            b.set_defaults(_tool=run_bench)

        self.add_command(backend, help=f"{backend} backend tools: devices, bench ({package})",
                         description=f"Tools of the {backend} backend ({package}).",
                         configure=configure, run=lambda args: args._tool(args))


# -- ringcore info -------------------------------------------------------------------


def explain_auto(registry: Any) -> dict[str, Any]:
    """Which backend ``ringcore.runtime("auto")`` picks here, and why (or why none can run)."""
    from .errors import RingcoreError
    from .plugins import ENV_BACKEND

    forced = os.environ.get(ENV_BACKEND, "").strip()
    try:
        spec = registry.select("auto")
    except RingcoreError as exc:
        return {"backend": None, "reason": None, "error": str(exc)}
    probe = registry.probe(spec.name)
    if forced:
        reason = f"{ENV_BACKEND}={forced} is set"
    elif probe.accelerator:
        dev = next(d for d in probe.devices if d.accelerator)
        reason = f"the highest-priority available backend with a real accelerator ({dev.name})"
    else:
        software = [s.name for s in registry.backend_specs()
                    if s.name != spec.name and registry.probe(s.name).available]
        reason = "no available backend has a real accelerator"
        if software:
            reason += f" ({', '.join(software)} available on software or CPU devices only)"
        reason += (", so the CPU backend is the fallback" if spec.name == "cpu"
                   else f", and the CPU backend is not installed, so the best available one: {spec.name}")
    return {"backend": spec.name, "reason": reason, "error": None}


def _plugins(registry: Any) -> list[dict[str, Any]]:
    from . import hookspecs

    out = []
    for info in registry.infos.values():
        d = info.as_dict()
        d["status"] = "failed" if info.error else "loaded"
        out.append(d)
    # Installed entry points that RINGCORE_LOAD_PLUGINS kept out: say so, rather than hide them.
    modules = {info.module for info in registry.infos.values()}
    for ep in md.entry_points(group=hookspecs.PROJECT):
        if ep.name in registry.infos or ep.value in modules:
            continue
        dist = getattr(ep, "dist", None)
        out.append({"name": ep.name, "module": ep.value,
                    "distribution": dist.metadata["Name"] if dist is not None else None,
                    "version": dist.version if dist is not None else None,
                    "hooks": [], "error": None, "status": "not loaded"})
    return out


def collect_info(registry: Any | None = None) -> dict[str, Any]:
    """Everything ``ringcore info`` reports, as JSON-ready data."""
    import numpy
    import pluggy

    from . import __version__
    from .plugins import ENV_BACKEND, ENV_LOAD_PLUGINS, get_registry

    reg = registry if registry is not None else get_registry()
    backends = []
    for spec in reg.backend_specs():
        probe = reg.probe(spec.name)
        backends.append({
            "name": spec.name, "priority": spec.priority, "plugin": spec.plugin, "package": spec.package,
            "description": spec.description, **probe.as_dict(),
            "probe_seconds": round(reg.probe_seconds.get(spec.name, 0.0), 6),
        })
    return {
        "ringcore": {"version": __version__, "python": platform.python_version(),
                     "numpy": numpy.__version__, "pluggy": pluggy.__version__,
                     "executable": sys.executable},
        "environment": {ENV_BACKEND: os.environ.get(ENV_BACKEND),
                        ENV_LOAD_PLUGINS: os.environ.get(ENV_LOAD_PLUGINS)},
        "plugins": _plugins(reg),
        "backends": backends,
        "auto": explain_auto(reg),
        "stores": [{"name": s.name, "plugin": s.plugin, "package": s.package, "description": s.description}
                   for s in sorted(reg.stores.values(), key=lambda s: s.name)],
        "vms": [{"name": v.name, "plugin": v.plugin, "package": v.package, "description": v.description}
                for v in sorted(reg.vms.values(), key=lambda v: v.name)],
    }


def _device_text(dev: dict[str, Any]) -> str:
    extra = "".join(f", {k}={v}" for k, v in (dev.get("details") or {}).items())
    return f"{dev['name']} ({dev['kind']}, {'accelerator' if dev['accelerator'] else 'not an accelerator'}{extra})"


def format_info(info: dict[str, Any]) -> str:
    """``ringcore info``'s text form of :func:`collect_info`'s data."""
    from .plugins import ENV_BACKEND, ENV_LOAD_PLUGINS

    core = info["ringcore"]
    lines = [(f"ringcore {core['version']} (Python {core['python']}, numpy {core['numpy']}, "
              f"pluggy {core['pluggy']})")]
    env = info["environment"]
    if env[ENV_LOAD_PLUGINS] is not None:
        only = env[ENV_LOAD_PLUGINS].strip() or "none"
        lines.append(f"{ENV_LOAD_PLUGINS}={env[ENV_LOAD_PLUGINS]!r}: loading only these plugins: {only}")
    if env[ENV_BACKEND]:
        lines.append(f"{ENV_BACKEND}={env[ENV_BACKEND]!r}: auto selection is overridden")

    lines += ["", "Plugins:"]
    if not info["plugins"]:
        lines.append(f"  none loaded ({ENV_LOAD_PLUGINS} selects none)" if env[ENV_LOAD_PLUGINS] is not None
                     else "  none installed (install ringcore-cpu for the CPU backend)")
    origins = [f"{p['distribution']} {p['version']}" if p["distribution"] else "registered in-process"
               for p in info["plugins"]]
    name_w = max((len(p["name"]) for p in info["plugins"]), default=0)
    origin_w = max((len(o) for o in origins), default=0)
    for p, origin in zip(info["plugins"], origins):
        head = f"  {p['name']:<{name_w}}  {origin:<{origin_w}}  {p['module']}"
        if p["status"] == "failed":
            lines.append(f"{head}\n    FAILED: {p['error']}")
        elif p["status"] == "not loaded":
            lines.append(f"{head}\n    not loaded (not selected: see {ENV_LOAD_PLUGINS})")
        else:
            lines.append(f"{head}\n    hooks: {', '.join(p['hooks']) or 'none'}")

    lines += ["", "Backends (highest priority first):"]
    if not info["backends"]:
        hint = (f"the plugins that provide them are not loaded: see {ENV_LOAD_PLUGINS}"
                if env[ENV_LOAD_PLUGINS] is not None else "install ringcore-cpu")
        lines.append(f"  none registered ({hint})")
    for b in info["backends"]:
        status = "available" if b["available"] else "unavailable"
        lines.append(f"  {b['name']:<8} priority {b['priority']:<4} {status:<12} "
                     f"{b['package']} (plugin {b['plugin']}); probe {b['probe_seconds'] * 1000:.1f} ms")
        if b["reason"]:
            lines.append(f"    {'reason' if not b['available'] else 'note'}: {b['reason']}")
        for dev in b["devices"]:
            lines.append(f"    device: {_device_text(dev)}")

    auto = info["auto"]
    lines.append("")
    if auto["backend"]:
        lines.append(f"auto selects: {auto['backend']}: {auto['reason']}")
    else:
        lines.append(f"auto selects: nothing: {auto['error']}")

    for title, key in (("Stores", "stores"), ("VMs", "vms")):
        lines += ["", f"{title}:"]
        if not info[key]:
            lines.append("  none registered")
        for s in info[key]:
            lines.append(f"  {s['name']:<10} {s['package'] or '(core)'} (plugin {s['plugin']})"
                         + (f": {s['description']}" if s["description"] else ""))
    return "\n".join(lines)


def _cmd_info(args: argparse.Namespace) -> int:
    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        print(format_info(info))
    return 0


# -- ringcore demo / bench -------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    from .plugins import get_registry

    if args.backend == "auto":
        auto = explain_auto(get_registry())
        if auto["backend"]:
            print(f"auto selected {auto['backend']}: {auto['reason']}")
    report = run_demo(args.backend, quick=args.quick, data_dir=args.data_dir)
    return 0 if report.ok else 1


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import format_table, run_benchmarks

    say = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else (lambda s: print(s, flush=True))
    report = run_benchmarks(quick=args.quick, backend=args.backend, only=args.only, progress=say)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(report))
    return 0


# -- ringcore compile -----------------------------------------------------------


def load_kernels(spec: str) -> list[Any]:
    """The kernels ``FILE.py[:NAME]`` or ``package.module[:NAME]`` names (NAME: a variable or a kernel id)."""
    import importlib
    import importlib.util

    from .errors import KernelDefinitionError

    where, _, name = spec.partition(":")
    if where.endswith(".py") or os.sep in where:
        path = os.path.abspath(where)
        if not os.path.isfile(path):
            raise KernelDefinitionError(f"no such file: {where}")
        loaded = [m for m in list(sys.modules.values())
                  if os.path.abspath(getattr(m, "__file__", None) or "") == path]
        if loaded:  # already imported (e.g. from a test): reuse it, its message types are registered
            return _kernels_in(loaded[0], where, name)
        # A file inside a package is imported as its module (its relative imports then work).
        root, parts = os.path.dirname(path), [os.path.splitext(os.path.basename(path))[0]]
        while os.path.isfile(os.path.join(root, "__init__.py")):
            root, pkg = os.path.split(root)
            parts.insert(0, pkg)
        sys.path.insert(0, root)
        try:
            if len(parts) > 1:
                module = importlib.import_module(".".join(parts))
            else:
                mod_name = "_ringcore_compile_" + "".join(c if c.isalnum() else "_" for c in path)
                mspec = importlib.util.spec_from_file_location(mod_name, path)
                module = importlib.util.module_from_spec(mspec)
                sys.modules[mod_name] = module  # dataclasses and inspect.getsource look it up
                mspec.loader.exec_module(module)
        finally:
            sys.path.remove(root)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise KernelDefinitionError(f"cannot import {where!r}: {exc}; pass a .py file or a module name") from None
    return _kernels_in(module, where, name)


def _kernels_in(module: Any, where: str, name: str) -> list[Any]:
    from .errors import KernelDefinitionError
    from .kernel import KernelDef

    found = {k: v for k, v in vars(module).items() if isinstance(v, KernelDef)}
    if not name:
        if not found:
            raise KernelDefinitionError(f"{where} defines no @ringcore.kernel")
        return list(found.values())
    if name in found:
        return [found[name]]
    by_id = [k for k in found.values() if k.id == name]
    if by_id:
        return by_id
    raise KernelDefinitionError(f"{where} has no kernel {name!r}; its kernels are "
                                f"{', '.join(sorted(found)) or 'none'}")


def _cmd_compile(args: argparse.Namespace) -> int:
    from . import lang
    from .lang.ir import format_stmts

    kernels = load_kernels(args.kernel)
    for k in kernels:
        if len(kernels) > 1:
            print(f"// ---- kernel {k.id!r} ({args.target})")
        if args.target == "ir":
            kir = lang.lower(k)
            mode = "serial" if kir.serial else "parallel"
            print(f"# kernel {k.id!r}: {kir.input.name} -> {kir.output.name if kir.output else 'None'} ({mode})")
            for name, f in kir.funcs.items():
                print(f"def {name}({', '.join(f'{p}: {t.name}' for p, t in f.params)}):")
                print(format_stmts(f.body, 1))
            print(format_stmts(kir.body))
            for i, e in enumerate(kir.errors, 1):
                print(f"# error site {i}: {e.describe(kir.filename)}")
        else:
            print(lang.compile(k, args.target))
    return 0


# -- main ---------------------------------------------------------------------


def _parser() -> tuple[argparse.ArgumentParser, CommandLine]:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog=PROG, description="ringcore: GPU-native persistent actors (ring kernels) and a parallel "
                               "transaction runtime.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    cli = CommandLine(sub)

    def info_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print JSON instead of text")

    def demo_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--backend", default="auto", help="backend to run on (default: auto, the best one here)")
        p.add_argument("--quick", action="store_true", help="smaller sizes, for a fast check")
        p.add_argument("--data-dir", metavar="DIR", default=None,
                       help="keep the ledger's store here (with ringcore-rocksdb); a second run reopens and "
                            "verifies it (default: $RINGCORE_DEMO_DATA_DIR, else a temporary directory)")

    def bench_args(p: argparse.ArgumentParser) -> None:
        from .bench import BENCHMARKS

        p.add_argument("--quick", action="store_true", help="fewer iterations (noisier figures)")
        p.add_argument("--json", action="store_true", help="print the results as JSON (progress goes to stderr)")
        p.add_argument("--backend", default="cpu",
                       help="backend whose call round trip to measure (default: cpu)")
        p.add_argument("--only", action="append", choices=sorted(BENCHMARKS), metavar="NAME",
                       help=f"run only this benchmark (repeatable): {', '.join(sorted(BENCHMARKS))}")

    def compile_args(p: argparse.ArgumentParser) -> None:
        from .lang import TARGETS

        p.add_argument("kernel", metavar="FILE:KERNEL",
                       help="a .py file or module, and optionally a kernel in it (all of them by default)")
        p.add_argument("--target", default="numpy", choices=[*TARGETS, "ir"],
                       help="what to print: a target's source (default: numpy), or the typed IR")

    cli.add_command("info", help="show plugins, backends (with devices), the auto choice, stores and VMs",
                    configure=info_args, run=_cmd_info)
    cli.add_command("demo", help="run the example programs on a backend, with latency and throughput",
                    configure=demo_args, run=_cmd_demo)
    cli.add_command("bench", help="run the benchmarks: figures next to same-run baselines and targets",
                    configure=bench_args, run=_cmd_bench)
    cli.add_command("compile", help="print the source a kernel compiles to for a target (numpy, cuda, opencl, wgsl)",
                    configure=compile_args, run=_cmd_compile)
    return parser, cli


def _fail(message: str, exc: BaseException | None = None) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    if exc is not None and os.environ.get(ENV_DEBUG):
        traceback.print_exception(exc, file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ringcore`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    from .errors import RingcoreError
    from .plugins import get_registry

    argv = list(sys.argv[1:] if argv is None else argv)
    parser, cli = _parser()
    # Loading plugins may warn about broken ones; report those as one line each (``info`` lists them).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            get_registry().register_commands(cli)
        except Exception as exc:  # noqa: BLE001  (the registry reports plugins one by one; a bug in it)
            _fail(f"plugin commands could not be loaded: {type(exc).__name__}: {exc}", exc)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else _fail(exc.code)
    command = getattr(args, "_command", None)
    if command != "info":
        for w in caught:
            print(f"{PROG}: warning: {w.message}", file=sys.stderr)
    if command is None:
        parser.print_help()
        return 2
    try:
        status = args._run(args)
        sys.stdout.flush()  # inside the try: a closed pipe is reported here, not at exit
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ringcore info | head`: the reader left; leave quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except RingcoreError as exc:
        return _fail(str(exc), exc)
    except Exception as exc:  # noqa: BLE001  (a plugin command's bug: one line, not a traceback)
        return _fail(f"{command} failed: {type(exc).__name__}: {exc} (set {ENV_DEBUG}=1 for the traceback)", exc)
    return int(status or 0)
