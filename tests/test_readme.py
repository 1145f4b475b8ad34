"""The README's show and module are real: they pass `pxcontrol check` together."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from pxcontrol.cli import cli

from .conftest import REPO


def blocks(language: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def test_the_readme_show_and_module_pass_check(tmp_path):
    (show,) = blocks("toml")
    (module,) = blocks("python")
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "shutter.py").write_text(module)
    show += '\n[modules.Projector]\ntype = "shutter"\nhost = "10.0.0.70"\n'
    show += '\n[[mappings]]\non = "backup.failed"\ndo = ["Projector.Close"]\n'
    (tmp_path / "show.toml").write_text(show)
    result = CliRunner().invoke(cli, ["check", str(tmp_path)])
    assert result.exit_code == 0, result.output


def test_the_readme_starts_with_the_two_commands():
    first = blocks("sh")[0].splitlines()
    install = "python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e . && "
    assert first[0].startswith(install), "the versions of constraints.txt, as CI tests them"
    assert first[1].startswith("bash scripts/test")
    assert "bash scripts/test" in (REPO / ".ci" / "run").read_text()
