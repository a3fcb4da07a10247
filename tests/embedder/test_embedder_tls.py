"""Triton behind mutual TLS, as the gateway reaches it when internal mTLS is on: the gateway's certificate gets
embeddings; plaintext, a client without a certificate and the HTTP inference API are refused; HTTP health
(Kubernetes probes) stays open."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from audiosearch.common.tls import ClientTls
from audiosearch.embedder.launch import EmbedderHandle, start_embedder
from audiosearch.embedder.settings import EmbedderSettings
from audiosearch.embedder.tritonserver import tls_arguments
from audiosearch.gateway.backends.embedder import EmbedderClient
from devtools.support.certs import Pki, make_pki
from tests.embedder.sounds import rain, siren


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def gateway_tls(pki: Pki) -> ClientTls:
    return ClientTls(pki.ca, pki.clients["gateway"].cert, pki.clients["gateway"].key)


@pytest.fixture(scope="module")
def tls_embedder(pki: Pki, gateway_tls: ClientTls, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[EmbedderHandle]:
    env = {"EMBEDDER_TLS_CERT_FILE": str(pki.server.cert), "EMBEDDER_TLS_KEY_FILE": str(pki.server.key),
           "EMBEDDER_TLS_CLIENT_CA_FILE": str(pki.ca), "EMBEDDER_PRECISION": "float32"}
    handle = start_embedder(tmp_path_factory.mktemp("tls-embedder"), untrained=True, env=env,
                            client_tls=gateway_tls)
    try:
        yield handle
    finally:
        handle.stop()


def test_the_gateways_certificate_gets_embeddings(tls_embedder: EmbedderHandle, gateway_tls: ClientTls) -> None:
    client = EmbedderClient(tls_embedder.grpc_address, timeout_seconds=120, tls=gateway_tls)
    try:
        assert client.is_ready()
        embeddings = client.embed(np.stack([rain(), siren()]))
    finally:
        client.close()
    assert embeddings.vectors.shape == (2, 2048)
    assert np.allclose(np.linalg.norm(embeddings.vectors, axis=1), 1.0, atol=1e-4)


def test_plaintext_is_refused(tls_embedder: EmbedderHandle) -> None:
    client = triton.InferenceServerClient(tls_embedder.grpc_address)
    try:
        with pytest.raises(InferenceServerException):
            client.is_server_ready(client_timeout=5.0)
    finally:
        client.close()


def test_a_client_without_a_certificate_is_refused(tls_embedder: EmbedderHandle, pki: Pki) -> None:
    client = triton.InferenceServerClient(tls_embedder.grpc_address, **ClientTls(pki.ca).triton_arguments())
    try:
        with pytest.raises(InferenceServerException):
            client.is_server_ready(client_timeout=5.0)
    finally:
        client.close()


def test_plaintext_http_answers_health_and_nothing_else(tls_embedder: EmbedderHandle) -> None:
    with urllib.request.urlopen(f"{tls_embedder.http_url}/v2/health/ready", timeout=5) as response:
        assert response.status == 200
    for path in ("/v2/models/panns_cnn14/config", "/v2/models/panns_cnn14", "/v2/models/stats"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{tls_embedder.http_url}{path}", timeout=5)
        assert refused.value.code in (401, 403), path
    request = urllib.request.Request(f"{tls_embedder.http_url}/v2/models/panns_cnn14/infer", data=b"{}",
                                     method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code in (401, 403)


def test_tls_arguments_follow_the_settings(pki: Pki) -> None:
    assert tls_arguments(EmbedderSettings(untrained=True)) == []
    one_way = tls_arguments(EmbedderSettings(untrained=True, tls_cert_file=pki.server.cert,
                                             tls_key_file=pki.server.key))
    assert "--grpc-use-ssl=true" in one_way
    assert not any(argument.startswith("--grpc-use-ssl-mutual") for argument in one_way)
    mutual = tls_arguments(EmbedderSettings(untrained=True, tls_cert_file=pki.server.cert,
                                            tls_key_file=pki.server.key, tls_client_ca_file=pki.ca))
    assert "--grpc-use-ssl-mutual=true" in mutual
    assert f"--grpc-root-cert={pki.ca}" in mutual


def test_tls_settings_must_be_complete(pki: Pki) -> None:
    with pytest.raises(ValueError, match="go together"):
        EmbedderSettings(untrained=True, tls_cert_file=pki.server.cert)
    with pytest.raises(ValueError, match="needs"):
        EmbedderSettings(untrained=True, tls_client_ca_file=pki.ca)
