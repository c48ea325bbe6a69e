"""One build step beside pyproject.toml: the wheel carries the explorer's pages.

``app.py``, ``pages/`` and ``.streamlit/config.toml`` stay at the top of the repository (Streamlit's
multipage layout, and ``streamlit run app.py`` in a clone); a built package gets a copy of them in
``semdedup_app/_site/``, where ``semdedup app`` finds them (``semdedup_core/cli/app.py``)."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SITE = ("app.py", "pages/*.py", ".streamlit/config.toml")


class BuildWithSite(build_py):
    """``build_py``, then the explorer's pages copied into ``semdedup_app/_site``."""

    def run(self) -> None:
        super().run()
        dest = Path(self.build_lib) / "semdedup_app" / "_site"
        for pattern in SITE:
            files = sorted(ROOT.glob(pattern))
            if not files:
                raise SystemExit(f"setup.py: {pattern} is missing; build from a full checkout or sdist")
            for src in files:
                target = dest / src.relative_to(ROOT)
                self.mkpath(str(target.parent))
                self.copy_file(str(src), str(target))


setup(cmdclass={"build_py": BuildWithSite})
