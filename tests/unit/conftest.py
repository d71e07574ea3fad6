"""Fixtures for the unit tests. The gateway tests (fake searcher, real gRPC server, real pymilvus)
define their own ``gw`` fixture, a ``RunningGateway``; ``client`` connects pymilvus to it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from pymilvus import MilvusClient

from tests.memory import RunningGateway


@pytest.fixture(scope="module")
def client(gw: RunningGateway) -> Iterator[MilvusClient]:
    c = MilvusClient(gw.uri)
    yield c
    c.close()


@pytest.fixture(autouse=True, scope="module")
def _quiet_pymilvus() -> Iterator[None]:
    """pymilvus logs every failed RPC with a traceback; these tests fail RPCs on purpose."""
    logger = logging.getLogger("pymilvus")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)
