import pytest

from tests.integration.harness import free_port

# Loopback addresses the integration tests give their pods (Linux routes all of 127.0.0.0/8 to lo).
POD_IPS = ("127.0.0.11", "127.0.0.12", "127.0.0.13")


@pytest.fixture
def pod_port() -> int:
    return free_port(*POD_IPS)
