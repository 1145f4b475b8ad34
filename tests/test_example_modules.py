"""The drop-in examples in modules/ load, check and send what they say."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import threading

from pxcontrol.testing import free_port, wait_for

from .conftest import REPO, pxcontrol


def test_resolume_example_launches_a_clip_that_oscdump_receives(osc_receiver, tmp_path):
    dump = osc_receiver()
    port = dump.port
    (tmp_path / "modules").mkdir()
    shutil.copy(REPO / "modules" / "resolume.py", tmp_path / "modules")
    (tmp_path / "show.toml").write_text(
        f'[modules.Resolume]\ntype = "resolume"\nhost = "127.0.0.1"\nport = {port}\n'
    )
    assert pxcontrol("check", str(tmp_path)).returncode == 0
    listed = pxcontrol("modules", "--show", str(tmp_path)).stdout
    assert "resolume" in listed and "Clip" in listed and "Send" in listed
    result = pxcontrol("call", "--show", str(tmp_path), "Resolume.Clip", "2", "3")
    assert result.returncode == 0, result.stderr
    dump.wait_line("/composition/layers/2/clips/3/connect i 1")
    result = pxcontrol("call", "--show", str(tmp_path), "Resolume.Opacity", "layer=1", "value=1.5")
    assert result.returncode == 1
    assert "value: Input should be less than or equal to 1 (got 1.5)" in result.stderr


def _doc_block(first_line: str) -> str:
    """The python block of docs/writing-modules.md that starts with this line."""
    text = (REPO / "docs" / "writing-modules.md").read_text()
    (block,) = [
        b for b in re.findall(r"```python\n(.*?)```", text, re.S) if b.startswith(first_line)
    ]
    return block


def test_the_documented_pjlink_module_drives_the_documented_stand_in_projector(tmp_path):
    module = _doc_block('"""PJLink projectors')
    fake = tmp_path / "fake_pjlink.py"
    fake.write_text(_doc_block('"""A stand-in PJLink projector'))
    port = free_port(socket.SOCK_STREAM)
    projector = subprocess.Popen(
        [sys.executable, str(fake), str(port)], stdout=subprocess.PIPE, text=True
    )
    seen: list[str] = []
    threading.Thread(target=lambda: seen.extend(projector.stdout or []), daemon=True).start()
    try:
        wait_for(lambda: _accepts(port), 10, "the stand-in projector")
        (tmp_path / "modules").mkdir()
        (tmp_path / "modules" / "pjlink.py").write_text(module)
        (tmp_path / "show.toml").write_text(
            f'[modules.Projector]\ntype = "pjlink"\nhost = "127.0.0.1"\nport = {port}\n'
        )
        assert pxcontrol("check", str(tmp_path)).returncode == 0
        on = pxcontrol("call", "--show", str(tmp_path), "Projector.Power", "true")
        assert on.returncode == 0, on.stderr
        shut = pxcontrol("call", "--show", str(tmp_path), "Projector.Shutter", "closed=true")
        assert shut.returncode == 0, shut.stderr
        wait_for(lambda: "POWR 1 -> OK\n" in seen and "AVMT 31 -> OK\n" in seen, 5, f"{seen}")
    finally:
        projector.kill()
        projector.wait(10)
    # Nothing listens now: the call fails after the module's timeout, saying why.
    gone = pxcontrol("call", "--show", str(tmp_path), "Projector.Power", "false")
    assert gone.returncode == 1
    assert f"not connected to 127.0.0.1:{port} (connection_failure" in gone.stderr


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
    except OSError:
        return False
    return True
