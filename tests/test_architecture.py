"""The house rules that keep the core a library: its layers, no import cycles, no Streamlit in it,
a small public surface, lazy heavy imports, and ruff-clean code."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import semdedup_core

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "semdedup_core"
APP = ROOT / "semdedup_app"

# each top-level piece and its layer: a module may import only from its own piece or a lower layer,
# and pieces on the same layer (ingest, explore, audit) never import each other
LAYERS = {
    "semdedup_core._version": 0,
    "semdedup_core.errors": 0,
    "semdedup_core.kernels": 1,  # pure array code: no files, no state
    "semdedup_core.media": 1,  # opening the user's files safely
    "semdedup_core.results": 2,  # the results-folder format and its reader
    "semdedup_core.run": 3,  # the stages, executors and progress of a run
    "semdedup_core.ingest": 4,
    "semdedup_core.audit": 4,
    "semdedup_core.explore": 5,
    "semdedup_core.cli": 6,
    "semdedup_core": 7,  # the package's __init__: the public names of every layer
    "semdedup_core.__main__": 7,
    "semdedup_app": 8,
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for base in (CORE, APP) for p in base.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports (at any depth of the file, lazily or not)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from pkg import sub` imports the module pkg.sub when there is one
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def piece(name: str) -> str:
    best = max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len)
    return best


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def test_every_module_has_a_layer():
    for name in modules():
        assert piece(name) in LAYERS, name


def test_no_lower_layer_imports_a_higher_one():
    bad = []
    for name, deps in graph().items():
        mine = piece(name)
        for dep in deps:
            theirs = piece(dep)
            if theirs != mine and LAYERS[theirs] >= LAYERS[mine]:
                bad.append(f"{name} (layer {LAYERS[mine]}) imports {dep} (layer {LAYERS[theirs]})")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in sorted(g.get(n, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d) :] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(g):
        if n not in state:
            visit(n)
    assert not cycles, "\n".join(" → ".join(c) for c in cycles)


def test_the_cycle_checker_finds_a_cycle(tmp_path, monkeypatch):
    """The checker above is not vacuous: a planted a → b → a is found."""
    g = {"a": {"b"}, "b": {"a"}}
    seen = []

    def visit(n, state, stack):
        state[n] = 1
        stack.append(n)
        for d in sorted(g[n]):
            if state.get(d) == 1:
                seen.append(stack[stack.index(d) :] + [d])
            elif d not in state:
                visit(d, state, stack)
        stack.pop()
        state[n] = 2

    visit("a", {}, [])
    assert seen == [["a", "b", "a"]]
    # and the import reader sees relative, absolute and lazy imports
    pkg = tmp_path / "semdedup_core" / "run"
    pkg.mkdir(parents=True)
    f = pkg / "x.py"
    f.write_text("from . import io\nfrom ..errors import E\ndef f():\n    import semdedup_core.explore.pairs\n")
    known = {
        "semdedup_core.results.io",
        "semdedup_core.errors",
        "semdedup_core.explore.pairs",
        "semdedup_core.run.x",
    }
    f.write_text("from ..results import io\nfrom ..errors import E\ndef f():\n    import semdedup_core.explore.pairs\n")
    assert imports_of("semdedup_core.run.x", f, known) == known - {"semdedup_core.run.x"}


def test_folders_show_the_layers():
    assert {p.name for p in CORE.iterdir() if p.is_dir() and not p.name.startswith("__")} == {
        "kernels",
        "media",
        "results",
        "run",
        "ingest",
        "explore",
        "audit",
        "cli",
    }
    assert not list(CORE.glob("*.py")) or {p.name for p in CORE.glob("*.py")} == {
        "__init__.py",
        "__main__.py",
        "_version.py",
        "errors.py",
    }
    pages = [ROOT / "app.py", *(ROOT / "pages").glob("*.py")]
    for page in pages:  # pages import the app package and the core's public surface, nothing lower
        for node in ast.walk(ast.parse(page.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("semdedup_core.results."):
                assert node.module == "semdedup_core.results.folder", (page.name, node.module)


def test_core_never_imports_streamlit():
    names = sorted(n for n in modules() if n.startswith("semdedup_core") and not n.endswith("__main__"))
    code = (
        "import importlib, sys\n"
        f"for m in {names!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = [m for m in sys.modules if m == 'streamlit' or m.startswith('streamlit.')]\n"
        "assert not bad, bad\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    for path in CORE.rglob("*.py"):
        assert "import streamlit" not in path.read_text(), path


def test_public_surface_is_declared():
    assert set(semdedup_core.__all__) == {
        "ClusterConfig",
        "DedupConfig",
        "EmbedConfig",
        "ReferenceConfig",
        "Results",
        "SemDedupError",
        "dedup",
        "list_encoders",
        "run_demo",
        "run_input",
        "scores_in_cluster",
    }
    for name in semdedup_core.__all__:
        assert hasattr(semdedup_core, name), name
    assert semdedup_core.__version__


def test_importing_the_core_does_not_load_torch_or_faiss():
    """Steps pickle cheaply for Ray workers: heavy libraries load lazily inside the work."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    code = "import sys, semdedup_core; print(sorted(m for m in ('torch', 'faiss') if m in sys.modules))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_ruff_lint_and_format():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (it is in requirements-dev.txt)")
    targets = ["semdedup_core", "semdedup_app", "app.py", "pages", "tests", "bench"]
    lint = subprocess.run([ruff, "check", *targets], capture_output=True, text=True, cwd=ROOT)
    assert lint.returncode == 0, lint.stdout
    fmt = subprocess.run([ruff, "format", "--check", *targets], capture_output=True, text=True, cwd=ROOT)
    assert fmt.returncode == 0, fmt.stdout
