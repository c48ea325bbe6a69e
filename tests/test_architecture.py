"""The house rules that keep the core a library: no Streamlit in it, a small public surface."""

import os
import subprocess
import sys
from pathlib import Path

import semdedup_core

ROOT = Path(__file__).resolve().parents[1]


def test_core_never_imports_streamlit():
    modules = sorted(p.stem for p in (ROOT / "semdedup_core").glob("*.py") if p.stem != "__main__")
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module('semdedup_core.' + m if m != '__init__' else 'semdedup_core')\n"
        "bad = [m for m in sys.modules if m == 'streamlit' or m.startswith('streamlit.')]\n"
        "assert not bad, bad\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    for path in (ROOT / "semdedup_core").glob("*.py"):
        assert "import streamlit" not in path.read_text(), path


def test_public_surface_is_declared():
    assert {"dedup", "Results", "ClusterConfig", "DedupConfig", "SemDedupError"} <= set(semdedup_core.__all__)
    for name in semdedup_core.__all__:
        assert hasattr(semdedup_core, name), name


def test_importing_the_core_does_not_load_torch_or_faiss():
    """Steps pickle cheaply for Ray workers: heavy libraries load lazily inside the work."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    code = "import sys, semdedup_core; print(sorted(m for m in ('torch', 'faiss') if m in sys.modules))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"
