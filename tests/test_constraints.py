"""constraints.txt locks every package the project and its tests need, at one version each."""

from __future__ import annotations

import re
import tomllib

from .conftest import REPO


def _name(requirement: str) -> str:
    return re.split(r"[=<>!~ ;\[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_every_dependency_is_pinned_once_in_constraints_txt():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    lines = [
        line.split("#")[0].strip()
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    pinned = [_name(line) for line in lines]
    assert all("==" in line for line in lines), "exact versions only"
    assert len(pinned) == len(set(pinned)), "one line per package"
    assert wanted <= set(pinned), f"not locked: {sorted(wanted - set(pinned))}"


def test_the_tools_that_gate_ci_are_pinned_in_pyproject_too():
    """ruff decides whether CI passes: a new ruff release must not fail an unchanged commit,
    even for an install without constraints.txt."""
    test = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    ruff = [r for r in test["optional-dependencies"]["test"] if _name(r) == "ruff"]
    assert len(ruff) == 1 and "==" in ruff[0]
    assert ruff[0].split("#")[0].strip() in (REPO / "constraints.txt").read_text().splitlines()
