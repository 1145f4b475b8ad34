"""`{ command = ["check-outputs"], timeout = 2.0 }`: a command exits 0 within its time limit.

Its output is read and thrown away as it comes (only the last bytes are kept for the
message), so a command that floods its output can neither fill memory nor block on a
full pipe. Cut off at the time limit, it is killed with everything it started.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Annotated, ClassVar

from pydantic import Field

from pxcontrol.checks.kind import Check, CheckFailed, CheckSettings

TAIL = 200  # bytes of output kept for the message
CHUNK = 65536


class CommandCheck(Check):
    kind = "command"
    default_timeout: ClassVar[float | None] = 2.0

    class Settings(CheckSettings):
        command: Annotated[list[str], Field(min_length=1)] = Field(
            description="program and arguments, run without a shell"
        )

    async def probe(self) -> None:
        argv: list[str] = self.target
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=sys.platform != "win32",  # its children die with it
            )
        except OSError as exc:
            raise CheckFailed(f"cannot run {argv[0]!r}: {exc.strerror or exc}") from None
        try:
            tail = b""
            assert process.stdout is not None
            while chunk := await process.stdout.read(CHUNK):
                tail = (tail + chunk)[-TAIL:]
            code = await process.wait()
        finally:
            if process.returncode is None:  # cut off at its time limit
                _kill(process)
            # Closed now, not when collected (asyncio's Process never closes its transport);
            # asyncio's child watcher reaps the process.
            transport = getattr(process, "_transport", None)
            if transport is not None:
                transport.close()
        if code != 0:
            said = tail.decode(errors="replace").strip().splitlines()
            raise CheckFailed(f"exited with {code}" + (f": {said[-1]}" if said else ""))


def _kill(process: asyncio.subprocess.Process) -> None:
    try:
        if sys.platform == "win32":
            process.kill()
        else:
            os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
