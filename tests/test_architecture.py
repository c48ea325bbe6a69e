"""The house rules that keep the core a library: its layers (inside the engine too, and the pages on top),
no import cycles, no Streamlit in it, short functions and modules, a small public surface, lazy heavy
imports, and ruff-clean code.

Every rule is a function of a source tree, checked on this repository and — so that no check can pass by
being blind — on a small tree with one planted violation, which the very same function must find.
"""

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

# each piece and its layer: a module may import only from its own piece or a lower layer, and pieces on the
# same layer never import each other
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
    "pages": 9,  # app.py and pages/*.py
}
PAGES_MAY_IMPORT = ("semdedup_app", "semdedup_core.explore")
"""What a page may import besides the core's public names (``semdedup_core``): the app package and explore's
constants — never a lower piece of the core directly."""
PIECES = ("kernels", "media", "results", "run", "ingest", "audit", "explore", "cli")
MAX_FUNCTION_LINES, MAX_MODULE_LINES = 100, 600


# -- the checkers: each a function of a source tree --------------------------------------------------
def module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts == ["app"]:
        return "pages.app"
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    found = [*root.glob("semdedup_core/**/*.py"), *root.glob("semdedup_app/**/*.py"), *root.glob("pages/*.py")]
    if (root / "app.py").is_file():
        found.append(root / "app.py")
    return {module_name(root, p): p for p in found}


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


def graph(root: Path) -> dict[str, set[str]]:
    mods = modules(root)
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def piece(name: str) -> str | None:
    matches = [p for p in LAYERS if name == p or name.startswith(p + ".")]
    return max(matches, key=len) if matches else None


def layer_violations(root: Path) -> list[str]:
    """Modules without a layer, imports of a higher or same-layer piece, and pages importing past the app."""
    bad = []
    for name, deps in graph(root).items():
        mine = piece(name)
        if mine is None:
            bad.append(f"{name} has no layer")
            continue
        for dep in deps:
            theirs = piece(dep)
            if mine == "pages":
                allowed = dep == "semdedup_core" or any(dep == p or dep.startswith(p + ".") for p in PAGES_MAY_IMPORT)
                if theirs != "pages" and not allowed:
                    bad.append(f"{name} (a page) imports {dep}; go through semdedup_app")
            elif theirs != mine and LAYERS[theirs] >= LAYERS[mine]:
                bad.append(f"{name} (layer {LAYERS[mine]}) imports {dep} (layer {LAYERS[theirs]})")
    return sorted(set(bad))


def cycles(root: Path) -> list[list[str]]:
    g = graph(root)
    state: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in sorted(g.get(n, ())):
            if state.get(d) == 1:
                found.append(stack[stack.index(d) :] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(g):
        if n not in state:
            visit(n)
    return found


def size_violations(root: Path) -> list[str]:
    """Product modules over :data:`MAX_MODULE_LINES` lines and functions over :data:`MAX_FUNCTION_LINES`."""
    bad = []
    for name, path in modules(root).items():
        if not name.startswith(("semdedup_core", "semdedup_app", "pages")):
            continue
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            bad.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    bad.append(f"{name}.{node.name}: {length} lines")
    return bad


def streamlit_in_core(root: Path) -> list[str]:
    """Core modules that import streamlit (at any depth)."""
    bad = []
    for name, path in modules(root).items():
        if not name.startswith("semdedup_core"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if any(n == "streamlit" or n.startswith("streamlit.") for n in names):
                bad.append(name)
    return bad


# -- this repository --------------------------------------------------------------------------------
def test_layers_hold():
    assert not layer_violations(ROOT), "\n".join(layer_violations(ROOT))


def test_no_import_cycles():
    found = cycles(ROOT)
    assert not found, "\n".join(" → ".join(c) for c in found)


def test_functions_and_modules_stay_short():
    assert not size_violations(ROOT), "\n".join(size_violations(ROOT))


def test_core_never_imports_streamlit():
    assert not streamlit_in_core(ROOT)
    names = sorted(n for n in modules(ROOT) if n.startswith("semdedup_core") and not n.endswith("__main__"))
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


def test_folders_show_the_layers():
    core = ROOT / "semdedup_core"
    pieces = {p.name for p in core.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert pieces == set(PIECES)
    assert {p.name for p in core.glob("*.py")} == {"__init__.py", "__main__.py", "_version.py", "errors.py"}


# -- each checker finds a planted violation -----------------------------------------------------------
def plant(tmp_path: Path, files: dict[str, str]) -> Path:
    """A small tree: the core's and the app's packages, plus ``files`` (path → source)."""
    packages = ["semdedup_core", "semdedup_app"]
    packages += [p.replace(".", "/") for p in LAYERS if p.count(".") == 1 and p.split(".")[1] in PIECES]
    for pkg in packages:
        (tmp_path / pkg).mkdir(parents=True, exist_ok=True)
        (tmp_path / pkg / "__init__.py").touch()
    (tmp_path / "pages").mkdir(exist_ok=True)
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_a_kernel_reading_the_results_folder_is_found(tmp_path):
    root = plant(
        tmp_path, {"semdedup_core/kernels/k.py": "from ..results import io\n", "semdedup_core/results/io.py": ""}
    )
    assert layer_violations(root) == ["semdedup_core.kernels.k (layer 1) imports semdedup_core.results.io (layer 2)"]


def test_the_run_importing_ingest_lazily_is_found(tmp_path):
    root = plant(
        tmp_path,
        {"semdedup_core/run/p.py": "def f():\n    from ..ingest import raw\n", "semdedup_core/ingest/raw.py": ""},
    )
    assert layer_violations(root) == ["semdedup_core.run.p (layer 3) imports semdedup_core.ingest.raw (layer 4)"]


def test_pieces_of_one_layer_importing_each_other_are_found(tmp_path):
    root = plant(
        tmp_path, {"semdedup_core/audit/a.py": "import semdedup_core.ingest.x\n", "semdedup_core/ingest/x.py": ""}
    )
    assert layer_violations(root) == ["semdedup_core.audit.a (layer 4) imports semdedup_core.ingest.x (layer 4)"]


def test_a_page_reaching_into_the_core_is_found(tmp_path):
    root = plant(
        tmp_path,
        {
            "pages/1_x.py": "from semdedup_core.results.folder import ResultsFolder\n",
            "semdedup_core/results/folder.py": "",
        },
    )
    assert layer_violations(root) == [
        "pages.1_x (a page) imports semdedup_core.results.folder; go through semdedup_app"
    ]
    ok = plant(
        tmp_path / "ok",
        {
            "app.py": "import semdedup_app\nfrom semdedup_core.explore import pairs\n",
            "semdedup_core/explore/pairs.py": "",
        },
    )
    assert layer_violations(ok) == []


def test_a_planted_cycle_is_found(tmp_path):
    root = plant(
        tmp_path, {"semdedup_core/run/a.py": "from . import b\n", "semdedup_core/run/b.py": "from . import a\n"}
    )
    assert cycles(root) == [["semdedup_core.run.a", "semdedup_core.run.b", "semdedup_core.run.a"]]


def test_a_long_function_and_a_long_module_are_found(tmp_path):
    body = "def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES
    root = plant(tmp_path, {"semdedup_core/run/f.py": body, "semdedup_app/m.py": "x = 1\n" * (MAX_MODULE_LINES + 1)})
    assert sorted(size_violations(root)) == [
        f"semdedup_app.m: {MAX_MODULE_LINES + 1} lines",
        f"semdedup_core.run.f.f: {MAX_FUNCTION_LINES + 1} lines",
    ]


def test_streamlit_in_the_core_is_found(tmp_path):
    root = plant(tmp_path, {"semdedup_core/explore/view.py": "def show():\n    import streamlit as st\n"})
    assert streamlit_in_core(root) == ["semdedup_core.explore.view"]


# -- the package's surface and tooling ----------------------------------------------------------------
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
