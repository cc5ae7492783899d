"""The install set: `make run` installs torch and the package with no extras; `make test` and
`make docs` add theirs; the main job's code imports none of the optional packages."""

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = {"test", "browser", "tensorboard", "docs", "distributed", "export"}


def _pip_installs(target: str, tmp_path: Path) -> list[str]:
    """The `pip install` lines `make -n TARGET` would run on a fresh venv."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "-n", "-C", str(ROOT), target, f"VENV={tmp_path / 'venv'}"],
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "pip install" in line]


def _extras(lines: list[str]) -> set[str]:
    return {e.strip() for line in lines for m in re.findall(r"\.\[([^\]]*)\]", line) for e in m.split(",")}


def test_make_run_installs_no_extra(tmp_path):
    lines = _pip_installs("run", tmp_path)
    assert any("torch==" in line for line in lines) and any(line.rstrip().endswith("-e .") for line in lines)
    assert _extras(lines) == set(), lines


def test_make_test_and_docs_add_their_extras(tmp_path):
    assert _extras(_pip_installs("test", tmp_path)) == {"test", "browser", "tensorboard", "distributed", "export"}
    assert _extras(_pip_installs("docs", tmp_path)) == {"docs", "export"}
    assert _extras(_pip_installs("playground", tmp_path)) == {"export"}


def test_the_extras_are_declared_and_the_base_is_lean():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert set(project["optional-dependencies"]) == OPTIONAL
    base = " ".join(project["dependencies"])
    for heavy in ("pytest", "playwright", "ray", "tensorboard", "mkdocs", "hypothesis", "onnx"):
        assert heavy not in base


def test_the_main_job_imports_no_optional_package():
    code = ("import sys, localrules, localrules.cli.main, localrules.api; "
            "from localrules.tasks import mnist_selfclassify; "
            "print(sorted(m for m in ('ray', 'tensorboard', 'playwright', 'pytest', 'hypothesis', 'mkdocs', 'onnx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/").stdout
    assert out.strip() == "[]"
