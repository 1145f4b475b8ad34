"""An asyncio etcd v3 client over etcd's JSON gateway (HTTP), with a time limit on every call.

Only what electing a director needs: leases, a create-if-absent transaction, a read.
Why not a gRPC client (aetcd): see docs/standby.md, "Why etcd's JSON gateway". In short,
httpx is already a dependency and gRPC's native wheels are not; and the election needs a
failover between the endpoints and a hard time limit per call, both simple to own here.

Every call is given a time budget; within it the endpoints are tried in turn, starting
with the last that answered. A member that refuses, times out or has no leader (503)
passes the call on to the next; an answer etcd gives (a lease not found) does not.
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass
from typing import Any

import httpx

#: A member that does not answer within this share of the budget gives way to the next.
ATTEMPT_SHARE = 0.5
MIN_ATTEMPT = 0.05
#: After every member refused at once (nothing listens), a pause before the next round.
ROUND_PAUSE = 0.02


class EtcdUnavailable(Exception):
    """No endpoint gave an answer within the time: etcd's quorum may be lost."""


class EtcdError(Exception):
    """etcd answered, and refused: the message is its own."""


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: str
    create_revision: int
    mod_revision: int
    lease: int


@dataclass(frozen=True)
class Created:
    """The result of `create`: made by us at `revision`, or held by someone (`held`)."""

    ok: bool
    revision: int
    held: KeyValue | None


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _text(b64: str | None) -> str:
    return base64.b64decode(b64 or "").decode()


def _kv(raw: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=_text(raw.get("key")),
        value=_text(raw.get("value")),
        create_revision=int(raw.get("create_revision", 0)),
        mod_revision=int(raw.get("mod_revision", 0)),
        lease=int(raw.get("lease", 0)),
    )


class Etcd:
    """A client of one etcd cluster, given its members' client URLs."""

    def __init__(self, endpoints: list[str], timeout: float = 1.0) -> None:
        if not endpoints:
            raise ValueError("etcd needs at least one endpoint")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.timeout = timeout
        self._current = 0
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        )

    @property
    def endpoint(self) -> str:
        """The endpoint the next call tries first (the last one that answered)."""
        return self.endpoints[self._current]

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, path: str, body: dict[str, Any], timeout: float | None) -> dict:
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        per_attempt = max(budget * ATTEMPT_SHARE, MIN_ATTEMPT)
        failures: list[str] = []
        tried = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or (tried >= len(self.endpoints) and failures and left < MIN_ATTEMPT):
                raise EtcdUnavailable(
                    f"no etcd member answered {path} within {budget:g} s: "
                    + "; ".join(failures[-len(self.endpoints) :])
                )
            if tried and tried % len(self.endpoints) == 0:
                await asyncio.sleep(min(ROUND_PAUSE, left))
            endpoint = self.endpoints[self._current]
            tried += 1
            try:
                # httpx's timeout bounds each step (connect, read …); this bounds the whole.
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that comes as the call ends, and a stopping director then never stops.
                async with asyncio.timeout(min(left, per_attempt)):
                    answer = await self._http.post(f"{endpoint}{path}", json=body)
            except (TimeoutError, httpx.HTTPError, OSError) as exc:
                failures.append(f"{endpoint}: {type(exc).__name__} {exc}".strip())
                self._next()
                continue
            if answer.status_code >= 500:  # no leader, or stopping: another member may do
                failures.append(f"{endpoint}: {answer.status_code} {_error_of(answer)}")
                self._next()
                continue
            if answer.status_code != 200:
                raise EtcdError(f"etcd refused {path}: {_error_of(answer)}")
            return answer.json()

    async def member_status(self, endpoint: str, timeout: float) -> dict:
        """Ask one member, and only it, how it is (its leader, its raft term): for alarms on
        a lost member. Raises EtcdUnavailable when it does not answer in time."""
        try:
            async with asyncio.timeout(timeout):
                answer = await self._http.post(f"{endpoint}/v3/maintenance/status", json={})
        except (TimeoutError, httpx.HTTPError, OSError) as exc:
            raise EtcdUnavailable(f"{endpoint}: {type(exc).__name__} {exc}".strip()) from None
        if answer.status_code != 200:
            raise EtcdUnavailable(f"{endpoint}: {answer.status_code} {_error_of(answer)}")
        return answer.json()

    def _next(self) -> None:
        self._current = (self._current + 1) % len(self.endpoints)

    # --- leases ---

    async def grant(self, ttl: int, timeout: float | None = None) -> int:
        """A new lease of `ttl` seconds; its id."""
        answer = await self._call("/v3/lease/grant", {"TTL": ttl}, timeout)
        if answer.get("error"):
            raise EtcdError(f"etcd refused a lease: {answer['error']}")
        return int(answer["ID"])

    async def keepalive(self, lease: int, timeout: float | None = None) -> int:
        """Renew a lease once; the seconds it now has (0: it is gone, expired or revoked)."""
        answer = await self._call("/v3/lease/keepalive", {"ID": lease}, timeout)
        result = answer.get("result", answer)
        return int(result.get("TTL", 0))

    async def revoke(self, lease: int, timeout: float | None = None) -> None:
        """End a lease now; its keys go with it. A lease already gone is no error."""
        try:
            await self._call("/v3/lease/revoke", {"ID": lease}, timeout)
        except EtcdError as exc:
            if "not found" not in str(exc):
                raise

    # --- keys ---

    async def get(self, key: str, timeout: float | None = None) -> KeyValue | None:
        """The key as the cluster's majority has it now (a linearizable read)."""
        answer = await self._call("/v3/kv/range", {"key": _b64(key)}, timeout)
        kvs = answer.get("kvs") or []
        return _kv(kvs[0]) if kvs else None

    async def put(self, key: str, value: str, lease: int, timeout: float | None = None) -> None:
        await self._call(
            "/v3/kv/put", {"key": _b64(key), "value": _b64(value), "lease": lease}, timeout
        )

    async def get_prefix(self, prefix: str, timeout: float | None = None) -> list[KeyValue]:
        """Every key that starts with `prefix`, in key order (a linearizable read)."""
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        body = {"key": _b64(prefix), "range_end": _b64(end)}
        answer = await self._call("/v3/kv/range", body, timeout)
        return [_kv(raw) for raw in answer.get("kvs") or []]

    async def put_if_created_at(
        self, guard: str, revision: int, key: str, value: str, timeout: float | None = None
    ) -> bool:
        """Put `key` only while `guard` exists as created at `revision` (a fencing token: a
        director writes the show's state only while its own election key stands)."""
        body = {
            "compare": [{"key": _b64(guard), "target": "CREATE", "create_revision": str(revision)}],
            "success": [{"request_put": {"key": _b64(key), "value": _b64(value)}}],
            "failure": [],
        }
        answer = await self._call("/v3/kv/txn", body, timeout)
        return bool(answer.get("succeeded"))

    async def create(
        self, key: str, value: str, lease: int, timeout: float | None = None
    ) -> Created:
        """Put the key with this lease only if it does not exist, in one transaction."""
        body = {
            "compare": [{"key": _b64(key), "target": "CREATE", "create_revision": "0"}],
            "success": [{"request_put": {"key": _b64(key), "value": _b64(value), "lease": lease}}],
            "failure": [{"request_range": {"key": _b64(key)}}],
        }
        answer = await self._call("/v3/kv/txn", body, timeout)
        revision = int(answer.get("header", {}).get("revision", 0))
        if answer.get("succeeded"):
            return Created(True, revision, None)
        responses = answer.get("responses") or [{}]
        kvs = responses[0].get("response_range", {}).get("kvs") or []
        return Created(False, revision, _kv(kvs[0]) if kvs else None)


def _error_of(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:200]
    return str(body.get("error") or body.get("message") or body)[:200]
