"""Where a running director answers OSC, written beside its state for the command line.

`pxcontrol status` and `pxcontrol backup` find the director from the show's
`[director]` table. While show.toml is mid-edit and cannot be read, they fall back to
the address the running director wrote here when it started (its real port, even one
given with --osc-port).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

log = logging.getLogger("pxcontrol.director")

FILE = "director.json"


class DirectorAddress(BaseModel):
    model_config = ConfigDict(extra="forbid")

    osc: str  # HOST:PORT, or [HOST]:PORT, reachable from this machine
    passcode: str | None = None
    show: str
    pid: int


def write_address(folder: Path, address: DirectorAddress) -> None:
    """Write it whole or not at all (a reader never sees half a file); failures are logged."""
    target = folder / FILE
    temporary = folder / f".{FILE}.{os.getpid()}"
    try:
        temporary.write_text(address.model_dump_json())
        os.chmod(temporary, 0o600)  # it may hold the passcode, as show.toml does
        os.replace(temporary, target)
    except OSError as exc:
        log.warning("cannot write %s (the command line's fallback address): %s", target, exc)


def read_address(folder: Path) -> DirectorAddress | None:
    try:
        return DirectorAddress.model_validate(json.loads((folder / FILE).read_text()))
    except (OSError, ValueError, ValidationError):
        return None
