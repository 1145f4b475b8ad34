"""The etcd client against a real three-member etcd 3.4 on loopback (Debian etcd-server)."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from pxcontrol.etcd import Etcd, EtcdUnavailable
from pxcontrol.etcd_cluster import EtcdCluster

from .etcd_fixtures import etcd, fresh_etcd

__all__ = ["etcd", "fresh_etcd"]


async def test_a_key_created_with_a_lease_is_refused_to_the_next_and_goes_with_its_lease(
    etcd: EtcdCluster,
):
    client = Etcd(etcd.endpoints)
    try:
        lease = await client.grant(1)
        made = await client.create("election/a", "DirA", lease)
        assert made.ok and made.revision > 0
        other = await client.grant(1)
        refused = await client.create("election/a", "DirB", other)
        assert not refused.ok
        assert refused.held is not None and refused.held.value == "DirA"
        assert refused.held.create_revision == made.revision
        assert refused.held.lease == lease
        assert await client.keepalive(lease) == 1
        await client.revoke(lease)
        assert await client.get("election/a") is None
        assert await client.keepalive(lease) == 0  # gone: renewing says so, not an error
        await client.revoke(lease)  # a lease already gone is no error either
    finally:
        await client.close()


async def test_a_lease_left_unrenewed_expires_and_frees_its_key(etcd: EtcdCluster):
    client = Etcd(etcd.endpoints)
    try:
        lease = await client.grant(1)
        assert (await client.create("election/b", "DirA", lease)).ok
        # Nobody renews it: etcd ends it after its second, at its next check.
        start = time.monotonic()
        while await client.get("election/b") is not None:
            assert time.monotonic() - start < 10, "the lease never expired"
            await asyncio.sleep(0.02)
        assert (await client.create("election/b", "DirB", await client.grant(1))).ok
    finally:
        await client.close()


async def test_a_killed_member_is_passed_over_and_two_killed_is_unavailable_in_time(
    fresh_etcd: EtcdCluster,
):
    # The first endpoint the client tries is the one killed.
    client = Etcd(fresh_etcd.endpoints, timeout=1.0)
    try:
        fresh_etcd.kill(0)
        lease = await client.grant(1)
        assert (await client.create("election/c", "DirA", lease)).ok
        assert client.endpoint != fresh_etcd.endpoints[0]
        fresh_etcd.kill(1)
        start = time.monotonic()
        with pytest.raises(EtcdUnavailable, match="no etcd member answered"):
            await client.get("election/c", timeout=0.5)
        # Within its budget (plus scheduling), never etcd's own long request timeout.
        assert time.monotonic() - start < 2.0
        fresh_etcd.restart(1)
        found = await _get_when_back(client, "election/c")
        assert found is not None and found.value == "DirA"
    finally:
        await client.close()


async def test_a_paused_member_costs_at_most_its_share_of_the_budget(fresh_etcd: EtcdCluster):
    member = fresh_etcd.members[0]
    assert member.proc is not None
    client = Etcd(fresh_etcd.endpoints, timeout=0.6)
    member.proc.send_signal(signal.SIGSTOP)  # accepts connections, answers nothing
    try:
        assert await client.get("election/d") is None  # answered by the next member
        assert client.endpoint != member.client_url
    finally:
        member.proc.send_signal(signal.SIGCONT)
        await client.close()


async def _get_when_back(client: Etcd, key: str):
    """The key once the cluster has a quorum again (a member restarting takes a moment)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return await client.get(key, timeout=0.5)
        except EtcdUnavailable:
            if time.monotonic() > deadline:
                raise
