"""Fixtures for the conformance-style suite: a harness per test, closed afterwards."""

from __future__ import annotations

import pytest

from tests.conformance.suite import GAIE_BACKENDS, GATEWAY_API_BACKENDS, Conformance


@pytest.fixture
async def gateway_api(tmp_path):
    """A harness with Gateway API's base backends; the test calls `start(gateway_api_base(), ...)`."""
    conf = Conformance(tmp_path, GATEWAY_API_BACKENDS)
    yield conf
    await conf.close()


@pytest.fixture
async def gaie(tmp_path):
    """A harness with the inference extension's base backends; the test calls `start(gaie_base(), ...)`."""
    conf = Conformance(tmp_path, GAIE_BACKENDS)
    yield conf
    await conf.close()
