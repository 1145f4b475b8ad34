"""Windows CPython (3.12) under Wine, for the tests that run pxcontrol as on a Windows machine.

Set up once into a cache folder (~/.cache/pxcontrol/wine, or $PXCONTROL_WINE_DIR) by
scripts/wine-python; its dependencies are the win_amd64 wheels of constraints.txt, except
what Wine 8 cannot load (WINE_PINS); pxcontrol itself is this checkout, built as a wheel and
unpacked for each test session, so its entry points (the plugins) are there as installed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from pxcontrol.testing import Process

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "wine-python"
WINE_DIR = Path(os.environ.get("PXCONTROL_WINE_DIR") or Path.home() / ".cache/pxcontrol/wine")
#: The Windows Python: 3.12 in CI; WINE_PYTHON=3.11 or 3.13 tries another by hand.
VERSION = os.environ.get("WINE_PYTHON", "3.12")

#: Rust-built wheels newer than these import ProcessPrng, which Wine 8 lacks (a real Windows
#: 10 or 11 loads the versions of constraints.txt); pydantic 2.10 is the one for that core.
WINE_PINS = ("pydantic==2.10.6", "pydantic-core==2.27.2", "watchfiles==0.21.0")
#: watchfiles 0.21 has no build for 3.13: there the director runs without reload (it says so).
LEFT_OUT = ("watchfiles",) if VERSION >= "3.13" else ()
#: Windows-only dependencies (pip on the host cannot tell that they are needed).
WINDOWS_ONLY = ("colorama",)

#: Blocks what Wine cannot run, for every Windows Python the tests start.
SITECUSTOMIZE = """\
import sys
# Python 3.12's platform.uname() asks WMI (_wmi), which calls propsys.VariantToString:
# Wine 8 lacks it and aborts the process. Without _wmi, platform asks the older way.
sys.modules["_wmi"] = None
"""


def windows_path(path: Path) -> str:
    """The path as Windows Python under Wine names it (Wine maps / to drive Z:)."""
    return "Z:" + str(path).replace("/", "\\")


class WindowsPython:
    """One Windows Python with pxcontrol, ready to start pxcontrol commands."""

    def __init__(self, work: Path) -> None:
        if shutil.which("wine") is None:
            raise RuntimeError(
                "Wine is not installed: bash scripts/test installs it (apt-get install wine64)"
            )
        self.dir = WINE_DIR
        self.python = self.dir / f"cp{VERSION.replace('.', '')}" / "python.exe"
        self.env = {
            **os.environ,
            "WINEPREFIX": str(self.dir / "prefix"),
            "WINEDEBUG": "-all",
            "PYTHON": sys.executable,  # whose pip fetches the wheels
            "WINE_PYTHON": VERSION,
            "PYTHONUNBUFFERED": "1",
        }
        self._script("setup")
        self._install_dependencies()
        site = work / "site"
        self._install_pxcontrol(work, site)
        self.env["PYTHONPATH"] = windows_path(site)

    def _script(self, *args: str) -> None:
        done = subprocess.run(
            ["bash", str(SCRIPT), args[0], str(self.dir), *args[1:]],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"wine-python {args[0]} failed: {done.stdout}{done.stderr}")

    def _install_dependencies(self) -> None:
        """The wheels of the project's dependencies, at the locked versions; once per change."""
        project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
        swapped = {re.split(r"[=<>! ;\[]", pin)[0].replace("_", "-") for pin in WINE_PINS}
        locked = [
            line
            for line in (REPO / "constraints.txt").read_text().splitlines()
            if line
            and not line.startswith("#")
            and re.split(r"[=<>! ;\[]", line)[0].lower().replace("_", "-") not in swapped
        ]
        pins = [pin for pin in WINE_PINS if not pin.startswith(LEFT_OUT)]
        constraints = "\n".join([*locked, *pins]) + "\n"
        # With the gpu extra: on a machine without NVIDIA's driver (Wine's) the agent runs on.
        gpu = project["optional-dependencies"].get("gpu", [])  # nvidia-ml-py, for NVML
        requirements = [
            r for r in [*project["dependencies"], *gpu, *WINDOWS_ONLY] if not r.startswith(LEFT_OUT)
        ]
        stamp = hashlib.sha256((constraints + repr(requirements)).encode()).hexdigest()
        stamp_file = self.dir / f"installed-{VERSION}"
        if stamp_file.exists() and stamp_file.read_text() == stamp:
            return
        (self.dir / f"constraints-{VERSION}.txt").write_text(constraints)
        self._script("install", "-c", str(self.dir / f"constraints-{VERSION}.txt"), *requirements)
        stamp_file.write_text(stamp)

    def _install_pxcontrol(self, work: Path, site: Path) -> None:
        wheels = work / "wheels"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--disable-pip-version-check",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                str(wheels),
                str(REPO),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        (wheel,) = wheels.glob("pxcontrol-*.whl")
        zipfile.ZipFile(wheel).extractall(site)
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)

    def stop_all(self) -> None:
        """End every Windows process of this Wine prefix, and its wineserver: a child that a
        killed agent left (a command check's cmd.exe) must not outlive the tests."""
        subprocess.run(["wineserver", "-k"], env=self.env, check=False, timeout=30)

    @property
    def command(self) -> list[str]:
        return ["wine", str(self.python)]

    def pxcontrol(self, *args: str) -> Process:
        """`pxcontrol ARGS` on Windows, its events and output collected."""
        return Process(list(args), self.env, python=self.command)

    def program(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """A Windows program called `name` (Windows Python under that name) running `args`."""
        exe = self.python.with_name(name)
        if not exe.exists():
            shutil.copy(self.python, exe)
        return subprocess.Popen(
            ["wine", str(exe), *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,  # a pipe: Wine's Python cannot start on a file or /dev/null
            stderr=subprocess.STDOUT,
        )
