"""What the OSC bridge, the status board and the web page may use of the running director.

They are handed the director, but as this narrow interface (as a module is handed a
ModuleHost): what they read and ask is named here, and none of them depends on the
director's module, nor it on theirs beyond constructing them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pxcontrol.acknowledged import Acknowledged, AlarmAcknowledgements
    from pxcontrol.app import App
    from pxcontrol.backup import BackupManager
    from pxcontrol.history import PerformanceHistory
    from pxcontrol.live import LiveSystems
    from pxcontrol.loading import LoadedShow
    from pxcontrol.show import ShowFile
    from pxcontrol.standby import Standby
    from pxcontrol.state import StateStore
    from pxcontrol.status import DirectorHealth, ShowStatus, StatusBoard
    from pxcontrol.supervisor import Supervisor


class ShowControl(Protocol):
    loaded: LoadedShow  # the show that runs, and where its file is
    app: App  # modules, their actions, the event log
    live: LiveSystems  # the clients as heard
    backup: BackupManager | None  # where outputs play, takeovers (None before start)
    board: StatusBoard  # each client's row, kept up to date
    store: StateStore  # the state folder
    supervisor: Supervisor  # long-lived work that must not stop silently
    standby: Standby | None  # with standby directors: who is in charge
    history: PerformanceHistory  # the last ten minutes of every client's figures
    acknowledgements: AlarmAcknowledgements  # alarms acknowledged for every operator

    @property
    def show(self) -> ShowFile: ...

    def health(self) -> DirectorHealth: ...

    def status(self) -> ShowStatus: ...

    def acknowledge_alarms(self, seq: int | None, by: str) -> Acknowledged: ...
