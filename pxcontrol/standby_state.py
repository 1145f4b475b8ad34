"""The show's state in etcd, with standby directors: written only by the director in charge.

Where outputs play (placement), the epoch and the operators' automatic-backup switches
are one JSON value at `<election key>/state`. The director in charge writes it with
every decision, in a transaction that succeeds only while its own election key stands
as created at its term: a director deposed while it was deciding cannot overwrite its
successor's state (etcd is the fence). The director that takes charge reads it before
it decides anything. Each director also keeps its own copy on its own disk, with its
event log.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, ValidationError

from pxcontrol.etcd import Etcd, EtcdError, EtcdUnavailable
from pxcontrol.state import StateNotSaved


class SharedState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epoch: int
    placement: dict[str, str]
    auto: dict[str, bool]
    term: int  # of the director that wrote it
    by: str


class StateInEtcd:
    """`charge()` says this director's term and the seconds of charge it has left (0, 0
    when it is not in charge): what the election knows."""

    def __init__(
        self, etcd: Etcd, name: str, charge: Callable[[], tuple[int, float]], election_key: str
    ) -> None:
        self.etcd = etcd
        self.name = name
        self.charge = charge
        self.guard = election_key
        self.key = f"{election_key}/state"

    async def save(self, epoch: int, placement: dict[str, str], auto: dict[str, bool]) -> None:
        """Write a decision, or raise StateNotSaved: the decision is then not made."""
        term, left = self.charge()
        if term == 0 or left <= 0:
            raise StateNotSaved(f"{self.name} is no longer in charge: the decision was not made")
        value = SharedState(
            epoch=epoch,
            placement=dict(placement),
            auto=dict(auto),
            term=term,
            by=self.name,
        ).model_dump_json()
        try:
            written = await self.etcd.put_if_created_at(
                self.guard, term, self.key, value, timeout=left
            )
        except (EtcdUnavailable, EtcdError) as exc:
            raise StateNotSaved(
                f"the decision could not be written to etcd before this director's charge "
                f"ran out ({exc}): it was not made"
            ) from None
        if not written:
            raise StateNotSaved(
                f"{self.name} is no longer in charge (its election key of term "
                f"{term} is gone): the decision was not made"
            )

    async def load(self, timeout: float) -> SharedState | None:
        """The state the directors in charge wrote, None when none has yet."""
        held = await self.etcd.get(self.key, timeout=timeout)
        if held is None:
            return None
        try:
            return SharedState.model_validate_json(held.value)
        except ValidationError as exc:
            raise EtcdError(f"the show's state at {self.key} is not pxcontrol's: {exc}") from None
