"""Fixtures for Kubernetes mode: the API stand-in on loopback and the real kubernetes_asyncio client on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from kthena_router.sources.kube import KubeApi, WatchTimings, api_client
from tests.kube.apiserver import FakeApiServer

# Short enough that faults heal within a test, long enough not to spin.
FAST = WatchTimings(server_timeout=30, inactivity_timeout=5, backoff_initial=0.05, backoff_max=0.3,
                    coalesce=0.02)


@pytest.fixture
async def apiserver() -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer(bookmark_interval=0.2)
    await server.start()
    yield server
    await server.stop()


def write_kubeconfig(server: FakeApiServer, directory: Path) -> Path:
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump(server.kubeconfig()))
    return path


@pytest.fixture
async def kube_api(apiserver: FakeApiServer, tmp_path: Path) -> AsyncIterator[KubeApi]:
    client = await api_client(str(write_kubeconfig(apiserver, tmp_path)))
    yield KubeApi(client, request_timeout=5)
    await client.close()
