"""The drop-in examples in modules/ load, check and send what they say."""

from __future__ import annotations

import shutil

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
