"""Show keys for standby directors: `[[directors]]`, `[redundancy]`, `run --as NAME`, and check."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pxcontrol.cli import cli
from pxcontrol.loading import load_show
from pxcontrol.problems import ShowInvalid
from pxcontrol.standby import director_ports

from .conftest import pxcontrol

TWO_DIRECTORS = """\
[director]
osc_port = 7400
bind = "0.0.0.0"
token = "s3cret"

[[directors]]
name = "DirA"
ip = "10.0.0.1"

[[directors]]
name = "DirB"
ip = "10.0.0.2"
osc_port = 7410

[redundancy]
etcd = ["http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://10.0.0.30:2379"]
lease = 1

[modules.Log]
type = "log"
"""

runner = CliRunner()


def check(path: Path) -> tuple[int, str]:
    result = runner.invoke(cli, ["check", str(path)])
    return result.exit_code, result.output


def test_two_directors_and_three_etcd_members_pass_and_each_listens_where_it_says(write_show):
    path = write_show(TWO_DIRECTORS)
    code, output = check(path)
    assert code == 0, output
    assert "warning" not in output
    show = load_show(path).show
    assert director_ports(show, "DirA").osc_port == 7400  # the show's [director]
    assert director_ports(show, "DirB").osc_port == 7410  # its own
    assert director_ports(show, "DirB").bind == "0.0.0.0"


def test_fewer_than_three_etcd_members_is_a_warning_not_an_error(write_show):
    path = write_show(TWO_DIRECTORS.replace(', "http://10.0.0.30:2379"', ""))
    code, output = check(path)
    assert code == 0, output
    assert f"{path}:16: warning: redundancy.etcd: 2 etcd member(s)" in output
    assert "witness" in output


BAD = [
    pytest.param(
        ('ip = "10.0.0.2"', 'ip = "10.0.0.2"\nport = 7410'),
        13,
        "directors[1].port",
        "unknown key 'port'",
        id="unknown-key",
    ),
    pytest.param(
        ('name = "DirB"', 'name = "DirA"'),
        11,
        "directors[1].name",
        "two directors are called 'DirA'",
        id="same-name",
    ),
    pytest.param(
        ('"http://10.0.0.2:2379"', '"10.0.0.2:2379"'),
        16,
        "redundancy.etcd[1]",
        "write an etcd endpoint as http://HOST:PORT",
        id="etcd-url",
    ),
    pytest.param(
        ("lease = 1", "lease = 1.5"),
        17,
        "redundancy.lease",
        "etcd counts leases in whole seconds: write 2",
        id="lease-seconds",
    ),
    pytest.param(
        ('ip = "10.0.0.2"\nosc_port = 7410', 'ip = "10.0.0.1"'),
        12,
        "directors[1].ip",
        "director DirB would listen on the same address and ports as another",
        id="same-place",
    ),
    pytest.param(
        ("[redundancy]", "[elsewhere]"),
        6,
        "directors[0]",
        "standby directors need the etcd cluster",
        id="no-etcd",
    ),
]


@pytest.mark.parametrize(("edit", "line", "key", "message"), BAD)
def test_a_bad_standby_key_is_refused_with_its_line(write_show, edit, line, key, message):
    old, new = edit
    assert old in TWO_DIRECTORS
    text = TWO_DIRECTORS.replace(old, new, 1)
    if "[elsewhere]" in text:  # a table of its own, so the file stays TOML
        text = text.replace(
            '[elsewhere]\netcd = ["http://10.0.0.1:2379", "http://10.0.0.2:2379", '
            '"http://10.0.0.30:2379"]\nlease = 1\n',
            "",
        )
    path = write_show(text)
    code, output = check(path)
    assert code == 1, output
    assert f"{path}:{line}: error: {key}: {message}" in output
    assert "1 error(s)" in output  # said once, not again by a rule that depends on it


def test_redundancy_without_directors_is_refused(write_show):
    path = write_show('[redundancy]\netcd = ["http://10.0.0.1:2379"]\n')
    with pytest.raises(ShowInvalid) as refused:
        load_show(path)
    assert "[redundancy] applies to standby directors, and the show lists none" in str(
        refused.value
    )


def test_run_says_which_director_to_be_before_anything_starts(write_show):
    path = write_show(TWO_DIRECTORS)
    unnamed = pxcontrol("run", str(path.parent))
    assert unnamed.returncode == 2
    assert "say which one this is, e.g. pxcontrol run SHOW --as DirA" in unnamed.stderr
    unknown = pxcontrol("run", str(path.parent), "--as", "DirC")
    assert unknown.returncode == 2
    assert "no director called 'DirC' (its directors: DirA, DirB)" in unknown.stderr


def test_run_as_on_a_show_without_directors_is_refused(write_show):
    path = write_show('[modules.Log]\ntype = "log"\n')
    result = pxcontrol("run", str(path.parent), "--as", "DirA")
    assert result.returncode == 2
    assert "the show lists no [[directors]]; run it without --as" in result.stderr
