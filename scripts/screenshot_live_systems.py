"""Make docs/images/live-systems.png: the demo show with a takeover, in Debian's chromium.

    .venv/bin/python scripts/screenshot_live_systems.py

Real processes as in the tests: a director and two agents; after some
performance history, the playout agent is killed and the backup takes over.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pxcontrol.testing import Rig  # noqa: E402
from tests.test_web import CHROMIUM, CHROMIUM_ARGS, DEMO  # noqa: E402

OUT = REPO / "docs" / "images" / "live-systems.png"


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        show = Path(folder) / "demo"  # the page shows the folder's name
        show.mkdir()
        rig = Rig(show, DEMO)
        try:
            director = rig.start_director()
            rig.start_agent("Playout1", "127.0.0.11")
            rig.start_agent("Backup1", "127.0.0.21")
            for name in ("Playout1", "Backup1"):
                director.wait_event("client.online", client=name)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1440, "height": 860})
                page.goto(f"http://127.0.0.1:{rig.http_port}/")
                expect(page.locator("#link")).to_have_class("link live")
                time.sleep(12)  # some performance history for the sparklines
                rig.agents["Playout1"].signal(signal.SIGKILL)
                activated = director.wait_event("backup.activated", client="Playout1")
                director.wait_event("mapping.done", event_seq=activated["seq"])
                time.sleep(6)
                page.screenshot(path=str(OUT))
                browser.close()
        finally:
            rig.close()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
