"""What the integration tests share beyond the root conftest's suite."""

from __future__ import annotations

import pytest

from audiosearch.v1 import audiosearch_pb2_grpc
from devtools.support.gateway import stub


@pytest.fixture(scope="module")
def client(gateway_address: str) -> audiosearch_pb2_grpc.AudioSearchServiceStub:
    """A stub of the suite's gateway (modules that need more override this fixture)."""
    return stub(gateway_address)
