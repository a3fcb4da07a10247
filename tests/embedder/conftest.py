"""Session-wide real embedder: tritonserver hosting panns_cnn14 (untrained, seed 0) on free local ports.

Other suites can use these fixtures (`pytest_plugins = ["tests.embedder.conftest"]` in the root conftest) or
call `audiosearch.embedder.launch.start_embedder` directly.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from audiosearch.embedder.launch import EmbedderHandle, start_embedder


@pytest.fixture(scope="session")
def embedder_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbedderHandle]:
    # float32 whatever the CPU, so the server's outputs can be compared with the in-process engine's exactly.
    handle = start_embedder(tmp_path_factory.mktemp("embedder"), untrained=True, seed=0,
                            env={"EMBEDDER_PRECISION": "float32"})
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def embedder_address(embedder_server: EmbedderHandle) -> str:
    """host:port of the embedder's KServe v2 gRPC endpoint."""
    return embedder_server.grpc_address
