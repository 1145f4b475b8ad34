"""`pxcontrol check`: every bad show is refused with file, line, key and what to change."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pxcontrol.cli import cli
from pxcontrol.loader import DEMO_SHOW
from pxcontrol.loading import load_show
from pxcontrol.problems import Severity, ShowInvalid

from .conftest import pxcontrol

GOOD = """
[director]
osc_port = 7400
allow = ["127.0.0.1", "10.0.0.0/24"]

[[clients]]
name = "Playout1"
ip = "10.0.0.11"
gpu = "NVIDIA RTX A6000"
outputs = ["Output 1", "Output 2"]
live_inputs = ["Cam 1"]

[[clients]]
name = "Backup1"
ip = "10.0.0.21"
gpu = "NVIDIA RTX A6000"
outputs = ["Output 1", "Output 2"]
live_inputs = ["Cam 1"]
backup_for = ["10.0.0.11"]
on_backup = ["Log.Entry"]

[modules.Log]
type = "log"

[modules.Lights]
type = "osc"
host = "10.0.0.40"
port = 8000

[[mappings]]
on = "backup.activated"
client = "Playout1"
do = [
  "Log.Entry",
  { action = "Lights.Send", args = { address = "/eos/cue/1/fire" } },
]
"""

runner = CliRunner()


def check(path: Path) -> tuple[int, str]:
    result = runner.invoke(cli, ["check", str(path)])
    return result.exit_code, result.output


def test_a_valid_show_passes(write_show):
    code, output = check(write_show(GOOD))
    assert code == 0, output
    assert "2 clients, 2 modules, 1 mappings" in output


def test_the_demo_show_passes():
    code, output = check(DEMO_SHOW)
    assert code == 0, output


def test_check_on_the_real_command_line(write_show):
    path = write_show(GOOD.replace("osc_port", "osc_prot"))
    result = pxcontrol("check", str(path.parent))
    assert result.returncode == 1
    assert f"{path}:3: error: director.osc_prot: unknown key 'osc_prot'" in result.stderr
    assert "did you mean 'osc_port'?" in result.stderr


def test_a_missing_show_file_says_where_it_looked(tmp_path):
    code, output = check(tmp_path / "nothing.toml")
    assert code == 1
    assert f"{tmp_path / 'nothing.toml'}: error: no show file here" in output


BAD = [
    pytest.param(
        ("[director]", "[director\n"),
        2,
        "",
        "TOML syntax error",
        id="toml-syntax",
    ),
    pytest.param(
        (
            'live_inputs = ["Cam 1"]\nbackup_for',
            'live_inputs = ["Cam 1"]\nbakup_for = []\nbackup_for',
        ),
        19,
        "clients[1].bakup_for",
        "unknown key 'bakup_for'\n    → did you mean 'backup_for'?",
        id="unknown-key",
    ),
    pytest.param(
        ("osc_port = 7400", 'osc_port = "seventy-four hundred"'),
        3,
        "director.osc_port",
        "Input should be a valid integer",
        id="wrong-type",
    ),
    pytest.param(
        ('type = "osc"', 'type = "ocs"'),
        26,
        "modules.Lights.type",
        "unknown module type 'ocs'\n    → did you mean 'osc'?",
        id="unknown-module-type",
    ),
    pytest.param(
        ('  "Log.Entry",\n', '  "Log.Entri",\n'),
        34,
        "mappings[0].do[0]",
        "Log.Entri: module 'Log' (type 'log') has no action 'Entri'\n    → did you mean 'Entry'?",
        id="unresolvable-action",
    ),
    pytest.param(
        ('on_backup = ["Log.Entry"]', 'on_backup = ["Logg.Entry"]'),
        20,
        "clients[1].on_backup[0]",
        "Logg.Entry: there is no module 'Logg' in this show\n    → did you mean 'Log'?",
        id="unknown-module",
    ),
    pytest.param(
        ('address = "/eos/cue/1/fire"', 'adress = "/eos/cue/1/fire"'),
        35,
        "mappings[0].do[1].args.adress",
        "unknown key 'adress'\n    → did you mean 'address'",
        id="bad-action-arguments",
    ),
    pytest.param(
        ("port = 8000", "port = 80000"),
        28,
        "modules.Lights.port",
        "Input should be less than or equal to 65535 (got 80000)",
        id="bad-module-settings",
    ),
    pytest.param(
        ('backup_for = ["10.0.0.11"]', 'backup_for = ["10.0.0.12"]'),
        19,
        "clients[1].backup_for[0]",
        "10.0.0.12 is not the address of any client in this show",
        id="backup-for-unknown-address",
    ),
    pytest.param(
        (
            'gpu = "NVIDIA RTX A6000"\noutputs = ["Output 1", "Output 2"]\nlive_inputs = ["Cam 1"]\nbackup',
            'gpu = "NVIDIA RTX 4000"\noutputs = ["Output 1", "Output 2"]\nlive_inputs = ["Cam 1"]\nbackup',
        ),
        16,
        "clients[1].gpu",
        "GPU 'NVIDIA RTX 4000' differs from Playout1's 'NVIDIA RTX A6000'",
        id="gpu-mismatch",
    ),
    pytest.param(
        ('name = "Backup1"', 'name = "Playout1"'),
        14,
        "clients[1].name",
        "two clients are called 'Playout1'",
        id="duplicate-client",
    ),
    pytest.param(
        ("[director]", "[detection]\noffline_after = 0.2\n\n[director]"),
        2,
        "detection",
        "offline_after (0.2 s) must be at least 3 × heartbeat_interval (0.1 s)",
        id="detection-too-tight",
    ),
    pytest.param(
        ('on = "backup.activated"', 'on = "backup.activate"'),
        31,
        "mappings[0].on",
        "no event is called 'backup.activate'\n    → did you mean 'backup.activated'",
        id="unknown-event",
    ),
]


@pytest.mark.parametrize(("edit", "line", "key", "message"), BAD)
def test_each_kind_of_bad_show_is_refused_with_file_line_and_key(
    write_show, edit, line, key, message
):
    old, new = edit
    assert old in GOOD
    path = write_show(GOOD.replace(old, new, 1))
    code, output = check(path)
    assert code == 1, output
    where = f"{path}:{line}: error: " + (f"{key}: " if key else "")
    assert where in output, output
    assert message in output, output
    assert "nothing was started" in output


def test_every_problem_is_listed_in_one_pass(write_show):
    text = (
        GOOD.replace("osc_port = 7400", "osc_port = -1")
        .replace('type = "osc"', 'type = "ocs"')
        .replace('"Log.Entry",\n', '"Log.Nope",\n')
        .replace('gpu = "NVIDIA RTX A6000"', "gpu = 6000", 1)
    )
    with pytest.raises(ShowInvalid) as info:
        load_show(write_show(text))
    keys = {p.key for p in info.value.problems if p.severity is Severity.ERROR}
    assert keys == {
        "director.osc_port",
        "modules.Lights.type",
        "mappings[0].do[0]",
        "clients[0].gpu",
    }, "an invalid client is reported once; references to it are not reported again"


def test_unmatched_output_names_are_a_warning_not_an_error(write_show):
    path = write_show(
        GOOD.replace(
            'outputs = ["Output 1", "Output 2"]\nlive_inputs = ["Cam 1"]\nbackup',
            'outputs = ["Output 1"]\nlive_inputs = []\nbackup',
        )
    )
    loaded = load_show(path)
    warnings = [str(p) for p in loaded.warnings]
    assert any(
        "clients[1].outputs: Playout1's outputs 'Output 2' have no same-named counterpart on "
        "Backup1" in w
        for w in warnings
    ), warnings
    assert any("Playout1's live inputs 'Cam 1'" in w for w in warnings)
    code, output = check(path)
    assert code == 0 and "warning" in output


BROKEN_MODULE = """
from pxcontrol import Module, hookimpl

raise RuntimeError("the vendor SDK is not installed")
"""

GOOD_MODULE = '''
from pxcontrol import Module, action, hookimpl

class Shutter(Module):
    """A projector shutter."""

    @action
    async def close(self) -> None:
        """Close the shutter."""

@hookimpl
def register_module_types(register):
    register(Shutter)
'''


def test_a_dropin_module_that_raises_on_import_is_reported_and_the_others_load(write_show):
    text = GOOD + '\n[modules.Shutter]\ntype = "shutter"\n'
    path = write_show(text, {"broken.py": BROKEN_MODULE, "shutter.py": GOOD_MODULE})
    loaded = load_show(path)
    assert "shutter" in loaded.catalog.types
    (warning,) = [p for p in loaded.warnings if p.file and p.file.name == "broken.py"]
    text = str(warning)
    assert "could not be loaded: RuntimeError: the vendor SDK is not installed" in text
    assert re.search(r'File ".*broken.py", line 4', text), "the traceback points into the file"
    assert "importlib" not in text, "our import machinery is not the user's problem"


def test_a_syntax_error_in_a_dropin_points_at_its_line_and_nothing_else(write_show):
    broken = GOOD_MODULE.replace("class Shutter(Module):", "class Shutter(Module)")
    path = write_show(GOOD, {"shutter.py": broken})
    (warning,) = [p for p in load_show(path).warnings if p.file and p.file.name == "shutter.py"]
    text = str(warning)
    assert "could not be loaded: SyntaxError" in text
    assert re.search(r'File ".*shutter.py", line \d+', text)
    assert "importlib" not in text and "plugins.py" not in text


UNMARKED = """
from pxcontrol import Module

class Shutter(Module):
    pass

def register_module_types(register):
    register(Shutter)
"""


def test_a_hook_without_hookimpl_is_reported_not_ignored(write_show):
    path = write_show(GOOD + '\n[modules.Shutter]\ntype = "shutter"\n', {"shutter.py": UNMARKED})
    code, output = check(path)
    assert code == 1
    assert "modules.Shutter.type: unknown module type 'shutter'" in output
    assert (
        "shutter.py: warning: defines register_module_types without @hookimpl, so pxcontrol "
        "does not call it: put @hookimpl (from pxcontrol import hookimpl) above it"
    ) in output


def test_a_show_that_uses_the_broken_module_is_refused(write_show):
    text = GOOD + '\n[modules.Cam]\ntype = "broken"\n'
    path = write_show(text, {"broken.py": BROKEN_MODULE})
    code, output = check(path)
    assert code == 1
    assert "modules.Cam.type: unknown module type 'broken'" in output
    assert "broken.py:4: warning: could not be loaded" in output


@pytest.mark.parametrize(
    ("edit", "key", "message"),
    [
        (("osc_port = 7400", 'osc_port = "7400"'), "director.osc_port", "Input should be a valid integer"),
        (('backup_for = ["10.0.0.11"]', 'backup_for = ["10.0.0.11"]\nauto_backup = "yes"'), "clients[1].auto_backup", "Input should be a valid boolean"),
        (("do = [\n", "parallel = 1\ndo = [\n"), "mappings[0].parallel", "Input should be a valid boolean"),
    ],
)  # fmt: skip
def test_a_show_says_what_it_means_no_quoted_numbers_or_yes_for_true(
    write_show, edit, key, message
):
    path = write_show(GOOD.replace(*edit, 1))
    with pytest.raises(ShowInvalid) as info:
        load_show(path)
    (problem,) = info.value.problems
    assert problem.key == key and message in problem.message


def test_a_mapping_must_do_something(write_show):
    with pytest.raises(ShowInvalid, match=r"mappings\[0\]\.do: List should have at least 1 item"):
        load_show(write_show('[[mappings]]\non = "client.offline"\ndo = []\n'))


def test_three_times_the_interval_is_allowed_exactly(write_show):
    load_show(write_show("[detection]\nheartbeat_interval = 0.1\noffline_after = 0.3\n"))
    load_show(write_show("[detection]\nheartbeat_interval = 0.2\noffline_after = 0.6\n"))


def test_show_is_the_built_in_module_name(write_show):
    with pytest.raises(ShowInvalid, match="'Show' is the built-in module every show has"):
        load_show(write_show('[modules.Show]\ntype = "log"\n'))
    loaded = load_show(
        write_show(
            '[[mappings]]\non = "backup.failed"\ndo = ["Show.Wait"]\n'.replace(
                '"Show.Wait"', '{ action = "Show.Wait", args = { seconds = 2 } }'
            )
        )
    )
    assert loaded.show.mappings[0].do[0].action == "Show.Wait"


def test_a_duplicate_address_is_reported_once_without_a_wrong_second_error(write_show):
    path = write_show(GOOD.replace('ip = "10.0.0.21"', 'ip = "10.0.0.11"'))
    with pytest.raises(ShowInvalid) as info:
        load_show(path)
    messages = [p.message for p in info.value.problems if p.severity is Severity.ERROR]
    assert messages == ["10.0.0.11 is also the address of client 'Playout1'"]


def test_gpu_names_that_differ_only_in_case_and_spacing_are_the_same_gpu(write_show):
    path = write_show(GOOD.replace('gpu = "NVIDIA RTX A6000"', 'gpu = "nvidia  rtx a6000"', 1))
    assert GOOD.count('gpu = "NVIDIA RTX A6000"') == 2
    load_show(path)  # no error


def test_a_wrong_backup_address_in_a_big_show_lists_some_clients_not_all(write_show):
    clients = "".join(f'[[clients]]\nname = "P{i}"\nip = "10.0.0.{i}"\n' for i in range(1, 41))
    backup = '[[clients]]\nname = "B"\nip = "10.0.1.1"\nbackup_for = ["10.9.9.9"]\n'
    code, output = check(write_show(clients + backup))
    assert code == 1
    assert "clients: P1 10.0.0.1, P2 10.0.0.2" in output
    assert "P12 10.0.0.12 and 29 more" in output and "P13 10.0.0.13" not in output


def test_after_an_invalid_entry_later_entries_keep_their_own_place_and_line(write_show):
    text = GOOD.replace(
        "[[mappings]]\n",
        '[[mappings]]\non = "backup.activated"\ndo = "not a list"\n\n[[mappings]]\n',
        1,
    ).replace('"Log.Entry",\n', '"Log.Nope",\n')
    text += '\n[[clients]]\nname = "Broken"\nip = "not an address"\n'
    text += '\n[[clients]]\nname = "Spare"\nip = "10.0.0.31"\nbackup_for = ["10.9.9.9"]\n'
    path = write_show(text)
    with pytest.raises(ShowInvalid) as info:
        load_show(path)
    lines = path.read_text().splitlines()
    problems = {p.key: p for p in info.value.problems}
    assert {
        "mappings[0].do",
        "mappings[1].do[0]",
        "clients[2].ip",
        "clients[3].backup_for[0]",
    } <= set(problems)
    # Each points at its own entry's line, not at the entry before it.
    assert '"Log.Nope"' in lines[problems["mappings[1].do[0]"].line - 1]
    assert "10.9.9.9" in lines[problems["clients[3].backup_for[0]"].line - 1]


@pytest.mark.parametrize(
    ("toml", "line", "hint"),
    [
        (
            'name = "P"\noutputs = ["a",\n  "b"\n\n[modules.Log]\ntype = "log"',
            3,
            "not closed: end it with ']' before line 6",
        ),
        ('name = "Playout1\nip = "10.0.0.11"', 2, 'a text value is not closed: end it with "'),
        ('name = "Playout1"\nip = 10.0.0.11', 3, 'text needs quotes (ip = "10.0.0.11"'),
    ],
    ids=["unclosed-list", "unclosed-text", "unquoted-text"],
)
def test_a_toml_syntax_error_points_at_the_line_to_fix_with_a_hint_for_it(
    write_show, toml, line, hint
):
    path = write_show(f"[[clients]]\n{toml}\n")
    with pytest.raises(ShowInvalid) as info:
        load_show(path)
    (problem,) = info.value.problems
    assert problem.line == line and hint in problem.hint


def test_a_value_of_the_wrong_shape_says_what_to_write(write_show):
    text = '[modules.Log]\ntype = "log"\n[[mappings]]\non = "client.offline"\n'
    text += 'do = [{ action = "Log.Entry", args = "1" }]\n'
    with pytest.raises(ShowInvalid) as info:
        load_show(write_show(text))
    (problem,) = info.value.problems
    assert problem.key == "mappings[0].do[0].args"
    assert (
        problem.hint
        == 'args is a table of the action\'s parameters by name: args = { message = "…" }'
    )
