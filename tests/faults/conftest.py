import pytest

from tests.integration.harness import free_port

# Loopback addresses of the misbehaving endpoints.
IPS = ("127.0.0.21", "127.0.0.22", "127.0.0.23")


@pytest.fixture
def port() -> int:
    return free_port(*IPS)
