"""The wheel works without the source tree: every file the code reads at run time is package data, every
imported library is declared.

The wheel is built from this checkout and installed (without its dependencies) into a folder of its own;
the commands then run from a folder outside the checkout with `python -S` and a path of only that folder
and this venv's installed libraries, so neither the checkout nor its editable install can be found.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("distill", "judge", "quantize", "data")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(ROOT)],
                   check=True, timeout=120, cwd=tmp)
    [wheel] = (tmp / "dist").glob("mga_toolkit-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--no-compile", "--target", str(tmp / "site"), str(wheel)],
                   check=True, timeout=120, cwd=tmp)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp / "site"), sysconfig.get_paths()["purelib"]]),
           "HF_HUB_OFFLINE": "1"}
    work = tmp / "elsewhere"
    work.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-S", *args], cwd=work, env=env, capture_output=True, text=True,
                              timeout=180)

    return tmp / "site", work, run


def test_the_installed_wheel_runs_without_the_source_tree(installed):
    site, work, run = installed
    where = run("-c", "import mga.distill, mga.data; print(mga.distill.__path__[0]); print(mga.data.__path__[0])")
    assert where.returncode == 0, where.stderr
    assert all(Path(line).is_relative_to(site) for line in where.stdout.split()), where.stdout
    mga = str(site / "bin" / "mga")
    helped = run(mga, "--help")
    assert helped.returncode == 0 and "tiny-model" in helped.stdout, helped.stderr
    tiny = run(mga, "tiny-model", "tiny")
    assert tiny.returncode == 0 and (work / "tiny" / "config.json").exists(), tiny.stderr
    (work / "r.yaml").write_text("name: wheel\ntrain:\n  accelerate_config: zero3\n")
    loaded = run("-c", "from mga.distill.pipeline.recipe import load_recipe\n"
                       "from mga.distill.train.launch import config_path, strategy\n"
                       "cfg = load_recipe('r.yaml', ['teacher.model=m'])\n"
                       "print(strategy(config_path(cfg.train.accelerate_config)))")
    assert loaded.returncode == 0 and loaded.stdout.strip() == "zero3", loaded.stderr
    checked = run(mga, "language", "check", "en")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _imports() -> set[str]:
    names = set()
    for folder in SOURCES:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"mga"}


def test_every_imported_library_is_declared():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = project["dependencies"] + [s for extra in project["optional-dependencies"].values() for s in extra]
    declared = {re.split(r"[\s<>=!~\[;]", spec, maxsplit=1)[0].lower().replace("_", "-") for spec in specs}
    providers = importlib.metadata.packages_distributions()
    build_scripts = {"debian_package"}  # data/sample's own build helpers, not run by the toolkit
    undeclared = {}
    for name in _imports() - build_scripts:
        dists = {d.lower().replace("_", "-") for d in providers.get(name, [name.replace("_", "-")])}
        if not dists & declared:
            undeclared[name] = sorted(dists)
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
