"""The documentation cannot rot.

- Every fenced ``python`` block of README.md and docs/*.md runs, page by page,
  in a fresh interpreter with the CPU backend registered (blocks of one page
  share a namespace, like cells of a notebook). A block preceded by the HTML
  comment ``<!-- not-run -->`` is only shown.
- A fenced block preceded by ``<!-- output -->`` is the exact standard output
  of the runnable Python block before it.
- A fenced block preceded by ``<!-- file: PATH -->`` quotes the file at PATH
  (relative to docs/) and must equal it.
- Relative links between the pages point at files that exist.
- The worked example plugin in docs/example_plugin/ works: registered through
  a PluginRegistry (never pip-installed), it runs kernels.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import ringcore
from ringcore.errors import BackendUnavailableError
from ringcore.plugins import PluginRegistry, use_registry

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLE = DOCS / "example_plugin"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*(?P<text>.*?)\s*-->\s*$")
_MARK = "@@ringcore-docs-block-end@@"


@dataclasses.dataclass
class Block:
    page: Path
    lang: str
    line: int
    """The 1-based line of the block's first line of code."""
    source: str
    directive: str | None
    """The HTML comment right before the fence (``not-run``, ``output``, ``file: PATH``), if any."""

    @property
    def runnable(self) -> bool:
        return self.lang == "python" and self.directive is None

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def parse_blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, with the directive before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info = m["fence"], m["info"].strip()
        directive = None
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        if j >= 0 and (d := _DIRECTIVE.match(lines[j])):
            directive = d["text"]
        body = []
        k = i + 1
        while k < len(lines) and not (lines[k].strip().startswith(fence[0] * len(fence))
                                      and not lines[k].strip().strip(fence[0])):
            body.append(lines[k])
            k += 1
        if k >= len(lines):
            raise AssertionError(f"{page.relative_to(ROOT)}:{i + 1}: code fence is never closed")
        lang = info.split()[0].lower() if info else ""
        blocks.append(Block(page, lang, i + 2, "\n".join(body) + "\n", directive))
        i = k + 1
    return blocks


def _id(page: Path) -> str:
    return str(page.relative_to(ROOT))


# -- the pages' own checks ---------------------------------------------------------------------

def test_every_page_exists_and_has_content():
    names = {p.name for p in PAGES}
    for want in ("README.md", "index.md", "kernels.md", "layouts.md", "plugins.md", "cli.md"):
        assert want in names, f"missing documentation page {want}"
    for page in PAGES:
        assert parse_blocks(page), f"{_id(page)} shows no code at all"


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_directives_are_known(page):
    for b in parse_blocks(page):
        if b.directive is None:
            continue
        assert b.directive in ("not-run", "output") or b.directive.startswith("file:"), (
            f"{b.where()}: unknown directive <!-- {b.directive} -->; "
            "use not-run, output or file: PATH")


# The child process: register the CPU backend explicitly (the core suite loads no
# entry points), then run the page's blocks in one module namespace. Each block is
# compiled with the page as its file name and its real line numbers, so a traceback
# points into the page, and inspect.getsource finds a kernel's source there.
_CHILD = r"""
import json, sys, types
import ringcore_cpu.plugin
from ringcore.plugins import PluginRegistry, use_registry

page, blocks = json.load(sys.stdin)
module = types.ModuleType("__main__")
module.__file__ = page
sys.modules["__main__"] = module
with use_registry(PluginRegistry(load=[], plugins=[ringcore_cpu.plugin])):
    for line, source in blocks:
        exec(compile("\n" * (line - 1) + source, page, "exec"), module.__dict__)
        sys.stdout.flush()
        print(MARK, flush=True)
"""


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["RINGCORE_LOAD_PLUGINS"] = ""
    env.pop("RINGCORE_BACKEND", None)
    env["PYTHONIOENCODING"] = "utf-8"
    return env


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_python_blocks_run(page):
    blocks = parse_blocks(page)
    runnable = [b for b in blocks if b.runnable]
    if not runnable:
        pytest.skip(f"{_id(page)} has no runnable Python block")
    # The expected output of a block, where the page states it.
    expected: dict[int, str] = {}
    last_run: Block | None = None
    for b in blocks:
        if b.runnable:
            last_run = b
        elif b.directive == "output":
            assert last_run is not None, (
                f"{b.where()}: an output block with no Python block before it")
            expected[last_run.line] = b.source
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD.replace("MARK", repr(_MARK))],
        input=json.dumps([str(page), [(b.line, b.source) for b in runnable]]),
        capture_output=True, text=True, cwd=ROOT, env=_child_env(), timeout=300,
    )
    assert proc.returncode == 0, (
        f"a Python block of {_id(page)} failed (the traceback names the page and line):\n"
        f"{proc.stderr[-6000:]}\n--- stdout ---\n{proc.stdout[-2000:]}")
    outputs = proc.stdout.split(_MARK + "\n")
    assert len(outputs) == len(runnable) + 1
    for b, out in zip(runnable, outputs):
        if b.line in expected:
            got = "\n".join(s.rstrip() for s in out.splitlines())
            want = "\n".join(s.rstrip() for s in expected[b.line].splitlines())
            assert got == want, (
                f"{b.where()}: the block printed\n{out}\nbut the page says\n{expected[b.line]}")


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_quoted_files_match(page):
    for b in parse_blocks(page):
        if b.directive and b.directive.startswith("file:"):
            path = DOCS / b.directive[len("file:"):].strip()
            assert path.is_file(), f"{b.where()} quotes {path}, which does not exist"
            assert b.source == path.read_text(encoding="utf-8"), (
                f"{b.where()} quotes {path.relative_to(ROOT)} but differs from it; "
                "paste the file again")


_LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_relative_links_resolve(page):
    text = page.read_text(encoding="utf-8")
    for m in _LINK.finditer(text):
        target = m["target"].split("#")[0]
        if not target or re.match(r"^[a-z]+:", target):
            continue
        assert (page.parent / target).exists(), (
            f"{_id(page)} links to {target}, which does not exist")


# -- the worked example plugin -----------------------------------------------------------------

@pytest.fixture
def echo_plugin(monkeypatch):
    """The example plugin's entry-point module, imported from docs/ (not installed)."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    for name in [n for n in sys.modules if n == "ringcore_echo" or n.startswith("ringcore_echo.")]:
        monkeypatch.delitem(sys.modules, name)
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    entry = project["entry-points"]["ringcore"]
    assert entry == {"echo": "ringcore_echo.plugin"}
    yield importlib.import_module(entry["echo"])
    for name in [n for n in sys.modules if n == "ringcore_echo" or n.startswith("ringcore_echo.")]:
        del sys.modules[name]


@ringcore.message(type_id=0x0D0C_0001)
class DocPing:
    n: ringcore.u32


@ringcore.kernel(id="doc_pong", state={"seen": ringcore.u64})
def doc_pong(ctx, msg: DocPing) -> DocPing:
    ctx.state.seen += 1
    if msg.n == 13:
        raise ValueError("unlucky")
    return DocPing(n=msg.n + 1)


def test_example_plugin_runs_kernels(echo_plugin):
    with use_registry(PluginRegistry(load=[], plugins=[echo_plugin])) as reg:
        assert reg.backend_spec("echo").package == "ringcore-echo"
        with ringcore.runtime("echo") as rt:
            assert rt.backend_name == "echo"
            assert rt.device is not None and rt.device.kind == "cpu" and not rt.device.accelerator
            k = rt.launch(doc_pong)
            assert k.call(DocPing(n=41)) == DocPing(n=42)
            batch = DocPing.array(500)
            batch["n"] = range(500)
            batch["n"][13] = 12
            replies = k.call_many(batch)
            assert (replies["n"] == batch["n"] + 1).all()
            with pytest.raises(ringcore.KernelError, match="unlucky"):
                k.call(DocPing(n=13))
            assert k.call(DocPing(n=1)) == DocPing(n=2)  # it keeps serving
            assert k.read_state()["seen"] == 503
            assert k.status().errors == 1
            trace = rt.trace
            assert sum(r.size for r in trace) == 503
            assert sum(r.errors for r in trace) == 1
            assert rt.allocated > 0
        assert k.state is ringcore.KernelState.TERMINATED


def test_example_plugin_is_never_auto_selected_over_cpu(echo_plugin):
    import ringcore_cpu.plugin

    reg = PluginRegistry(load=[], plugins=[echo_plugin, ringcore_cpu.plugin])
    assert reg.select("auto").name == "cpu"
    assert PluginRegistry(load=[], plugins=[echo_plugin]).select("auto").name == "echo"


def test_example_plugin_unavailable_is_reported(echo_plugin, monkeypatch):
    monkeypatch.setattr(echo_plugin, "probe", lambda: ringcore.ProbeResult(False, "no host today"))
    reg = PluginRegistry(load=[], plugins=[echo_plugin])
    # The spec holds the probe function it was registered with; patch before loading.
    with pytest.raises(BackendUnavailableError, match="no host today.*ringcore-echo"):
        reg.select("echo")


def test_example_plugin_imports_cheaply():
    code = ("import sys; import ringcore_echo.plugin; "
            "assert 'ringcore_echo.runtime' not in sys.modules, 'the runtime was imported eagerly'")
    env = _child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(EXAMPLE), env.get("PYTHONPATH", "")])
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env, timeout=60)


def test_example_plugin_passes_the_conformance_suite():
    """The example's own suite (docs/example_plugin/tests) runs the core's conformance suite."""
    env = _child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(EXAMPLE), env.get("PYTHONPATH", "")])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, (
        f"the example plugin's suite failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}")
    assert " passed" in proc.stdout and " skipped" not in proc.stdout, proc.stdout[-2000:]
