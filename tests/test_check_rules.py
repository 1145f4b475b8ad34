"""`pxcontrol check` on clients' checks: each names one kind, with settings that kind accepts,
by file, line and key; plugin kinds are checked the same way; the agent is told them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pxcontrol.cli import cli
from pxcontrol.loading import load_show

runner = CliRunner()

SHOW = """
[detection]
check_interval = 0.2
check_fall = 3

[[clients]]
name = "Playout1"
ip = "10.0.0.11"
checks = [
  {{ process = "Pixera.exe" }},
  {CHECK},
]
"""

PLUGIN = '''
from pydantic import Field
from pxcontrol import hookimpl
from pxcontrol.checks import Check, CheckSettings


class Fans(Check):
    """Fan speed of the media server."""

    kind = "fans"

    class Settings(CheckSettings):
        fans: int = Field(ge=1, description="how many fans must spin")

    async def probe(self):
        pass


@hookimpl
def register_check_kinds(register):
    register(Fans)
'''


def check(path: Path) -> tuple[int, str]:
    result = runner.invoke(cli, ["check", str(path)])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (
            '{ tcpp = "127.0.0.1:1400" }',
            "clients[0].checks[1]: a check names no check kind ('tcpp')\n    → did you mean 'tcp'? check kinds: command, fans, figure, http, mpv, osc, process, tcp",
        ),
        (
            '{ tcp = "127.0.0.1:1400", fal = 2 }',
            "clients[0].checks[1].fal: unknown key 'fal'\n    → did you mean 'fall'?",
        ),
        ('{ tcp = "1400" }', 'clients[0].checks[1].tcp: write the address as "host:port"'),
        (
            '{ http = "http://x/", expect_status = 999 }',
            "checks[1].expect_status: Input should be less than or equal to 599",
        ),
        ("{ command = [], timeout = 2.0 }", "checks[1].command: List should have at least 1 item"),
        ('{ figure = "fps" }', "checks[1]: give the figure 'fps' a min, a max or both"),
        (
            '{ osc = "127.0.0.1:7000", address = "ping", expect = "/pong" }',
            "checks[1].address: an OSC address starts with '/'",
        ),
        (
            '{ tcp = "127.0.0.1:1", process = "x" }',
            "checks[1].process: a check names two kinds (tcp, process)",
        ),
        ("{ fans = 0 }", "checks[1].fans: Input should be greater than or equal to 1 (got 0)"),
        ("{ fans = 2, speed = 3 }", "checks[1].speed: unknown key 'speed'"),
        (
            '{ process = "Pixera.exe", fall = 1 }',
            "checks[1]: two checks of Playout1 are called 'process Pixera.exe' (#1 too)",
        ),
    ],
    ids=[
        "misspelt kind",
        "misspelt key",
        "address",
        "status",
        "empty command",
        "figure bounds",
        "osc address",
        "two kinds",
        "plugin kind value",
        "plugin kind key",
        "same name",
    ],
)
def test_a_bad_check_is_refused_with_file_line_and_key(tmp_path: Path, line: str, error: str):
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "fans.py").write_text(PLUGIN)
    path = tmp_path / "show.toml"
    path.write_text(SHOW.format(CHECK=line))
    code, output = check(path)
    assert code == 1, output
    assert f"{path}:11: error: " in output
    assert error in output


def test_the_agent_is_told_its_checks_with_the_detection_defaults(tmp_path: Path):
    path = tmp_path / "show.toml"
    path.write_text(SHOW.format(CHECK='{ tcp = "127.0.0.1:1400", name = "web", fall = 1 }'))
    show = load_show(path).show
    assert show.checks_for("Playout1") == [
        {"interval": 0.2, "fall": 3, "rise": 5, "process": "Pixera.exe"},
        {"interval": 0.2, "fall": 1, "rise": 5, "tcp": "127.0.0.1:1400", "name": "web"},
    ]
    assert show.checks_for("Nobody") == []


DUPLICATE = PLUGIN.replace('kind = "fans"', 'kind = "tcp"').replace("fans: int", "tcp: int")


def test_a_plugin_kind_with_a_taken_name_is_refused_naming_both(tmp_path: Path):
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "fans.py").write_text(DUPLICATE)
    path = tmp_path / "show.toml"
    path.write_text(SHOW.format(CHECK='{ tcp = "127.0.0.1:1400" }'))
    code, output = check(path)
    assert code == 1
    assert "check kind 'tcp' is registered twice: by plugin 'pxcontrol' (TcpCheck)" in output
