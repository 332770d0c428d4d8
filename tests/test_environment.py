"""The set-up files agree with each other: pyproject.toml, environment.yml, postBuild, Makefile, .ci/run.

No conda and no Binder can be reached from CI, so these checks read the files: environment.yml
must name every dependency pyproject.toml declares, postBuild must build learn2learn and install
course_lib, and repo2docker must see the root config (no binder/ folder next to it).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from the PyPI distribution name.
CONDA_TO_PYPI = {"pytorch": "torch", "pytorch-cpu": "torch", "pytorch-gpu": "torch"}


def normalise(requirement: str) -> str:
    """The distribution name of a requirement string, normalised as PEP 503 does ("pyBKT>=1" -> "pybkt")."""
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if name is None:
        raise ValueError(f"cannot read a package name from {requirement!r}")
    return re.sub(r"[-_.]+", "-", name.group(1)).lower()


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def environment_names(environment: dict) -> tuple[set[str], set[str]]:
    """(conda names mapped to PyPI names, pip names) of environment.yml, normalised."""
    conda, pip = set(), set()
    for entry in environment["dependencies"]:
        if isinstance(entry, dict):
            pip |= {normalise(r) for r in entry.get("pip", [])}
        else:
            name = normalise(entry.split("=")[0].split("<")[0].split(">")[0])
            conda.add(CONDA_TO_PYPI.get(name, name))
    return conda, pip


def test_environment_yml_is_conda_forge_python_311(environment):
    assert environment["channels"] == ["conda-forge"]
    deps = [d for d in environment["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in deps
    assert "pip" in deps
    assert "c-compiler" in deps, "learn2learn is built from source: environment.yml needs a C compiler"


def test_environment_yml_names_every_pyproject_dependency(pyproject, environment):
    declared = {normalise(r) for r in pyproject["project"]["dependencies"]}
    conda, pip = environment_names(environment)
    missing = declared - conda - pip
    assert not missing, (f"environment.yml lacks {sorted(missing)}, which pyproject.toml declares: "
                         "add them to its conda list (or under pip: if conda-forge lacks them)")
    assert not conda & pip, f"{sorted(conda & pip)} appear both as conda and pip packages"


def test_environment_yml_has_what_learn2learn_imports(pyproject, environment):
    conda, pip = environment_names(environment)
    for requirement in pyproject["project"]["optional-dependencies"]["l2l"]:
        assert normalise(requirement) in conda | pip, f"environment.yml lacks {requirement} (learn2learn needs it)"


def test_scikit_learn_cap_matches_pyproject(pyproject, environment):
    (project_cap,) = [r for r in pyproject["project"]["dependencies"] if normalise(r) == "scikit-learn"]
    (conda_cap,) = [d for d in environment["dependencies"]
                    if isinstance(d, str) and normalise(d) == "scikit-learn"]
    assert "<1.8" in project_cap.replace(" ", "") and "<1.8" in conda_cap.replace(" ", "")


def test_postbuild_builds_learn2learn_and_installs_course_lib():
    post_build = ROOT / "postBuild"
    assert post_build.is_file(), "repo2docker needs a postBuild at the repository root"
    text = post_build.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    assert "tools/install_learn2learn.py" in text
    assert re.search(r"pip install .*-e \.", text), "postBuild must install course_lib (pip install -e .)"


def test_no_binder_folder_hides_the_root_config():
    assert (ROOT / "environment.yml").is_file()
    for folder in ("binder", ".binder"):
        assert not (ROOT / folder).exists(), (
            f"{folder}/ exists: repo2docker would ignore environment.yml and postBuild at the root. "
            "Keep the Binder config at the root and delete the folder.")


def test_ci_runs_make_test_first_then_the_browser_test_and_the_book():
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    commands = [line for line in lines if line and not line.startswith("#")
                and not line.startswith(("set ", "cd "))]
    makes = [c for c in commands if c.startswith("make ")]
    assert makes == ["make test", "make test-browser", "make site slides"], (
        f".ci/run must run the README's `make test`, then `make test-browser`, then `make site slides`; runs {makes}")
    installs = [c for c in commands if not c.startswith("make ")]
    assert all("apt-get install" in c and "chromium" in c for c in installs), (
        f".ci/run may only install Debian's chromium besides the make targets; runs {installs}")


def test_makefile_has_the_documented_targets():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("setup", "lab", "test", "unit", "notebooks", "strip", "bench"):
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile lacks the `{target}` target"
    assert "tools/strip_notebooks.py" in makefile
    assert "tools/install_learn2learn.py" in makefile


def test_readme_shows_the_two_setup_commands():
    readme = (ROOT / "README.md").read_text()
    for command in ("make lab", "make test"):
        assert re.search(rf"^\s*{command}\s*$", readme, re.M), f"README.md must show `{command}` on its own line"
    assert "mybinder.org/v2/gh/" in readme, "README.md must have the Binder badge"
