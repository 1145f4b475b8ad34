"""A real three-member etcd cluster on loopback, shared by the tests of one module.

Tests that kill members take a cluster of their own (`fresh_etcd`), so the shared one
stays whole for the others.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from pxcontrol.etcd_cluster import EtcdCluster

# Each cluster its own three loopback addresses: a cluster that is closing never meets
# the next one's members.
_subnets = itertools.count(1)


def _next_hosts() -> tuple[str, ...]:
    subnet = next(_subnets) % 250
    return tuple(f"127.0.{subnet}.{host}" for host in (71, 72, 73))


@pytest.fixture(scope="module")
def etcd(tmp_path_factory) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"), _next_hosts())
    with cluster:
        yield cluster


@pytest.fixture
def fresh_etcd(tmp_path) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path / "etcd", _next_hosts())
    with cluster:
        yield cluster
