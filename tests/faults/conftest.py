"""Addresses and the port of the misbehaving endpoints of the fault tests."""

import pytest

from tests.integration.harness import free_port

# Loopback addresses of the misbehaving endpoints (Linux routes all of 127.0.0.0/8 to lo).
IPS = ("127.0.0.21", "127.0.0.22", "127.0.0.23")


@pytest.fixture
def port() -> int:
    return free_port(*IPS)
