"""Plugins: installed distributions, drop-in files, duplicates refused, every hook documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner

from pxcontrol import hookspecs, plugins
from pxcontrol import loading as loading_module
from pxcontrol.catalog import DuplicateModuleType
from pxcontrol.cli import cli
from pxcontrol.loading import PluginError, collect_module_types, load_show, load_show_within
from pxcontrol.plugins import DEFAULT_PLUGINS, make_plugin_manager
from pxcontrol.problems import ShowInvalid

from .conftest import REPO, pxcontrol

HELLO_PYPROJECT = """
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "pxcontrol-hello"
version = "0.1.0"

[project.entry-points.pxcontrol]
hello = "pxcontrol_hello"
"""

HELLO_PLUGIN = '''
from typing import Annotated
from pydantic import Field
from pxcontrol import Module, ModuleStatus, action, hookimpl

class Greeter(Module):
    """Greets the audience (a third-party module type)."""

    type_name = "hello"

    class Settings(Module.Settings):
        greeting: str = "Hello"

    @action
    async def greet(self, who: Annotated[str, Field(description="whom to greet")]) -> str:
        """Say hello."""
        return f"{self.settings.greeting}, {who}!"

@hookimpl
def register_module_types(register):
    register(Greeter)
'''

HELLO_SHOW = """
[modules.Greeter]
type = "hello"
greeting = "Good evening"

[[mappings]]
on = "client.offline"
do = [{ action = "Greeter.Greet", args = { who = "Playout1" } }]
"""


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory) -> Path:
    """A tiny third-party distribution, built and installed by pip into its own folder."""
    root = tmp_path_factory.mktemp("hello")
    source = root / "pxcontrol-hello"
    (source / "pxcontrol_hello").mkdir(parents=True)
    (source / "pyproject.toml").write_text(HELLO_PYPROJECT)
    (source / "pxcontrol_hello" / "__init__.py").write_text(HELLO_PLUGIN)
    site = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--target", str(site), str(source)],
        check=True,
    )  # fmt: skip
    assert (site / "pxcontrol_hello-0.1.0.dist-info" / "entry_points.txt").is_file()
    return site


def with_plugin(site: Path, load: str | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("PXCONTROL_LOAD_PLUGINS")
    if load is not None:
        env["PXCONTROL_LOAD_PLUGINS"] = load
    return env


def test_an_installed_plugin_adds_a_module_type_that_modules_lists(installed_plugin):
    result = pxcontrol("modules", env=with_plugin(installed_plugin, "pxcontrol-hello"))
    assert result.returncode == 0, result.stderr
    assert "hello" in result.stdout and "[hello]" in result.stdout
    assert "Greet" in result.stdout and "whom to greet" in result.stdout


def test_a_show_can_use_the_installed_plugin(installed_plugin, write_show):
    show = write_show(HELLO_SHOW)
    env = with_plugin(installed_plugin, "pxcontrol-hello")
    assert pxcontrol("check", str(show), env=env).returncode == 0
    result = pxcontrol("call", "--show", str(show), "Greeter.Greet", "who=everyone", env=env)
    assert result.returncode == 0, result.stderr
    assert "'Good evening, everyone!'" in result.stdout


def test_plugin_loading_is_narrowed_by_the_environment(installed_plugin):
    every = pxcontrol("modules", env=with_plugin(installed_plugin, None))
    assert "[hello]" in every.stdout, "unset: every installed plugin loads"
    none = pxcontrol("modules", env=with_plugin(installed_plugin, ""))
    assert "[hello]" not in none.stdout, "empty: none"
    other = pxcontrol("modules", env=with_plugin(installed_plugin, "some-other-plugin"))
    assert "[hello]" not in other.stdout
    for name in ("log", "osc", "udp", "tcp", "http"):
        assert re.search(rf"^{name} ", none.stdout, re.M), "built-ins are always there"


DUPLICATE = '''
from pxcontrol import Module, hookimpl

class MyOsc(Module):
    """Another OSC."""

@hookimpl
def register_module_types(register):
    register(MyOsc, name="osc")
'''


def test_a_duplicate_module_type_is_refused_naming_both_plugins(write_show):
    path = write_show('[modules.Log]\ntype = "log"\n', {"myosc.py": DUPLICATE})
    result = CliRunner().invoke(cli, ["check", str(path)])
    assert result.exit_code == 1
    dropin = path.parent / "modules" / "myosc.py"
    assert "module type 'osc' is registered twice: by plugin " in result.output
    assert "'pxcontrol_osc' (Osc)" in result.output and f"'{dropin}' (MyOsc)" in result.output
    assert 'register(MyOsc, name="osc2")' in result.output


def test_registering_something_that_is_not_a_module_is_refused():
    pm, _ = make_plugin_manager()

    class NotAModule:
        pass

    class Plugin:
        @hookspecs.hookimpl
        def register_module_types(self, register):
            register(NotAModule)

    pm.register(Plugin(), name="careless")
    with pytest.raises(
        PluginError, match=r"plugin 'careless' registered .*NotAModule.* not a Module"
    ):
        collect_module_types(pm)


def test_default_plugins_ship_in_the_wheel_and_load_one_way_only():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    shipped = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert sorted(shipped) == sorted(["pxcontrol", *(f"plugins/{n}" for n in DEFAULT_PLUGINS)])
    # Registered by name from DEFAULT_PLUGINS, not also as entry points of ours.
    assert "entry-points" not in pyproject["project"]
    assert sorted(p for p in os.listdir(REPO / "plugins") if p.startswith("pxcontrol_")) == sorted(
        DEFAULT_PLUGINS
    )


def test_default_plugins_load_even_when_installed_plugins_are_narrowed_to_none(monkeypatch):
    monkeypatch.setenv("PXCONTROL_LOAD_PLUGINS", "")
    pm, problems = make_plugin_manager()
    assert problems == []
    assert all(pm.get_plugin(name) is not None for name in DEFAULT_PLUGINS)
    types = collect_module_types(pm).types
    assert {"log", "osc", "udp", "tcp", "http", "videohub", "show"} <= set(types)


def test_duplicate_in_the_catalog_is_an_error_not_a_rename():
    pm, _ = make_plugin_manager()
    catalog = collect_module_types(pm)
    with pytest.raises(DuplicateModuleType):
        catalog.register(catalog.types["log"].cls, "again")


def test_every_hook_is_documented():
    docs = (REPO / "docs" / "hooks.md").read_text()
    hooks = [n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "pxcontrol_spec")]
    assert hooks, "found the hook specs"
    for name in hooks:
        assert re.search(rf"^## `?{name}", docs, re.M), f"docs/hooks.md has no section for {name}"


def test_dropins_of_a_show_are_loaded_by_path(write_show):
    plugin = HELLO_PLUGIN
    path = write_show(HELLO_SHOW, {"greeter.py": plugin, "_private.py": "raise SystemExit(1)"})
    loaded = load_show(path)
    assert loaded.catalog.types["hello"].plugin == str(path.parent / "modules" / "greeter.py")


MISSPELT = """
from pxcontrol import hookimpl

@hookimpl
def observe_events(event):
    pass
"""

WRONG_ARGUMENT = """
from pxcontrol import hookimpl

@hookimpl
def observe_event(evt):
    pass
"""


@pytest.mark.parametrize("source", [MISSPELT, WRONG_ARGUMENT], ids=["misspelt", "wrong-argument"])
def test_a_dropin_with_a_hook_pxcontrol_does_not_know_is_reported_not_ignored(write_show, source):
    path = write_show('[modules.Log]\ntype = "log"\n', {"watcher.py": source})
    loaded = load_show(path)
    (warning,) = [p for p in loaded.warnings if p.file and p.file.name == "watcher.py"]
    assert "has a hook pxcontrol does not know" in warning.message
    assert "observe_event" in warning.details
    assert not any(n.endswith("watcher.py") for n, _ in loaded.pm.list_name_plugin())


ASYNC_REGISTER = """
from pxcontrol import Module, hookimpl

class Late(Module):
    pass

@hookimpl
async def register_module_types(register):
    register(Late)
"""


def test_an_async_register_hook_is_refused_with_the_reason(write_show):
    path = write_show("", {"late.py": ASYNC_REGISTER})
    result = CliRunner().invoke(cli, ["check", str(path)])
    assert result.exit_code == 1
    assert "register_module_types must be a plain 'def', not 'async def'" in result.output


# --- loading a show cannot hang or end the director ---

USES_PROBE = '[modules.P]\ntype = "probe"\n'
PROBE = """
from pxcontrol import Module, action, hookimpl

class Probe(Module):
    @action
    async def say(self) -> str:
        return "hi"

@hookimpl
def register_module_types(register):
    register(Probe)
"""


@pytest.mark.parametrize(
    "raises", ['ValueError("boom")', "SystemExit(3)", "KeyboardInterrupt()", 'Odd("odd")']
)
def test_a_dropin_that_raises_anything_at_import_is_a_problem_naming_its_line(write_show, raises):
    source = f"class Odd(BaseException):  # not an Exception\n    pass\n\nraise {raises}\n"
    path = write_show(USES_PROBE, {"probe.py": PROBE, "bad.py": source})
    loaded = load_show(path)  # a broken file nobody uses: the show still loads
    (problem,) = [p for p in loaded.warnings if p.file and p.file.name == "bad.py"]
    assert problem.line == 4
    assert f"could not be loaded: {raises.split('(')[0]}" in problem.message

    path.write_text(USES_PROBE.replace("probe", "bad"))
    with pytest.raises(ShowInvalid) as refused:
        load_show(path)
    assert "unknown module type 'bad'" in str(refused.value)


REGISTER = """import time
from pxcontrol import hookimpl

@hookimpl
def register_module_types(register):
    {body}
"""


@pytest.mark.parametrize("raises", ["SystemExit(2)", "KeyboardInterrupt()", "RecursionError()"])
def test_a_register_hook_that_raises_anything_is_an_error_naming_the_file(write_show, raises):
    path = write_show("", {"bad.py": REGISTER.format(body=f"raise {raises}")})
    with pytest.raises(ShowInvalid) as refused:
        load_show(path)
    (problem,) = refused.value.problems
    assert problem.file == path.parent / "modules" / "bad.py" and problem.line == 6
    assert f"failed to register its module types: {raises.split('(')[0]}" in problem.message


def test_a_show_nested_1000_deep_is_refused_with_its_line(write_show):
    path = write_show('[director]\nbind = "127.0.0.1"\nx = ' + "[" * 1000 + "]" * 1000 + "\n")
    with pytest.raises(ShowInvalid) as refused:
        load_show(path)
    (problem,) = refused.value.problems
    assert (problem.file, problem.line) == (path, 3)
    assert "nested too deep" in problem.message


def test_a_show_file_that_is_a_folder_or_not_utf8_is_refused_plainly(tmp_path):
    (tmp_path / "folder" / "show.toml").mkdir(parents=True)
    with pytest.raises(ShowInvalid) as refused:
        load_show(tmp_path / "folder" / "show.toml")
    assert "this is a folder, not a show file" in str(refused.value)

    latin = tmp_path / "show.toml"
    latin.write_bytes('[[clients]]\nname = "Café"\n'.encode("latin-1"))
    with pytest.raises(ShowInvalid) as refused:
        load_show(latin)
    (problem,) = refused.value.problems
    assert problem.line == 2 and "not UTF-8 text: byte 0xe9 at column 12" in problem.message


HANGS_AT_IMPORT = "import time\n\ntime.sleep(3600)  # a device that never answers\n"


def test_a_dropin_that_hangs_at_import_is_cut_off_and_not_imported_again(write_show, monkeypatch):
    monkeypatch.setattr(plugins, "DROPIN_IMPORT_TIMEOUT", 0.3)
    path = write_show(USES_PROBE, {"probe.py": PROBE, "hang.py": HANGS_AT_IMPORT})
    loaded = load_show(path)
    assert type(loaded.pm.get_plugin(str(path.parent / "modules" / "probe.py"))) is ModuleType
    (problem,) = [p for p in loaded.warnings if p.file and p.file.name == "hang.py"]
    assert problem.line == 3
    assert "did not finish importing within 0.3 s (it was at line 3: time.sleep(3600)" in (
        problem.message
    )
    assert "restart the director" in problem.message
    hung = [t for t in threading.enumerate() if t.name == "import hang.py"]

    again = load_show(path, loaded.dropins)  # the same content: no second thread
    assert [p.message for p in again.warnings] == [p.message for p in loaded.warnings]
    assert [t for t in threading.enumerate() if t.name == "import hang.py"] == hung


def test_a_load_that_hangs_outside_an_import_is_cut_off_naming_the_file(write_show, monkeypatch):
    monkeypatch.setattr(loading_module, "LOAD_TIMEOUT", 0.5)
    path = write_show("", {"slow.py": REGISTER.format(body="time.sleep(3600)")})
    with pytest.raises(ShowInvalid) as refused:
        load_show_within(path)
    (problem,) = refused.value.problems
    assert problem.file == path.parent / "modules" / "slow.py" and problem.line == 6
    assert "loading the show did not finish within 0.5 s" in problem.message


@pytest.mark.parametrize(
    ("case", "command"),
    [("nested", "check"), ("register", "check"), ("register", "run"), ("folder", "run")],
)
def test_check_and_run_refuse_a_broken_show_plainly(tmp_path, case, command):
    show = tmp_path / "show.toml"
    if case == "nested":
        show.write_text("x = " + "{a = " * 1000 + "}" * 1000 + "\n")
    elif case == "register":
        show.write_text("")
        (tmp_path / "modules").mkdir()
        (tmp_path / "modules" / "bad.py").write_text(REGISTER.format(body="raise SystemExit(0)"))
    else:
        show.mkdir()
    said = {
        "nested": "arrays or inline tables are nested too deep to read",
        "register": "failed to register its module types: SystemExit: 0",
        "folder": "this is a folder, not a show file",
    }
    result = pxcontrol(command, str(tmp_path))
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert said[case] in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "nothing was started" in result.stderr
