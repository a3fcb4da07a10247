"""TLS on the public hop and mTLS on the internal ones, with certificates made at test time: a real catalog
(SQLite) admitting only the gateway's certificate, and a real gateway serving TLS in front of it."""

from __future__ import annotations

import json
import shutil

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from audiosearch.catalog.server import CatalogSettings
from audiosearch.catalog.server import build_server as build_catalog
from audiosearch.catalog.v1 import catalog_pb2 as cpb
from audiosearch.catalog.v1 import catalog_pb2_grpc
from audiosearch.common.errors import reason_of
from audiosearch.common.grpc_server import start_server
from audiosearch.common.tls import ClientTls
from audiosearch.gateway.api.auth import hash_key
from audiosearch.gateway.backends.stubs import Backends
from audiosearch.gateway.server import build_server as build_gateway
from audiosearch.gateway.settings import GatewaySettings
from audiosearch.v1 import audiosearch_pb2 as pb
from audiosearch.v1 import audiosearch_pb2_grpc
from devtools.support.certs import make_pki
from tests.common.probe_server import ProbeSettings

KEY = "as_tls-test-key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def catalog_server(pki, tmp_path_factory):
    """A catalog that speaks mTLS only and admits only clients whose certificate names the gateway, with a
    plaintext health-only port for probes."""
    database = tmp_path_factory.mktemp("catalog") / "catalog.db"
    settings = CatalogSettings(
        port=0, max_workers=4, dsn=f"sqlite:///{database}", tls_cert_file=pki.server.cert,
        tls_key_file=pki.server.key, tls_client_ca_file=pki.ca, tls_allowed_client_names="gateway", health_port=0)
    running = build_catalog(settings)
    try:
        yield running
    finally:
        running.stop(0)


@pytest.fixture(scope="module")
def catalog(catalog_server):
    return f"localhost:{catalog_server.port}"


def client_tls(pki, name: str | None) -> ClientTls:
    pair = pki.clients[name] if name else None
    return ClientTls(pki.ca, pair.cert if pair else None, pair.key if pair else None)


def list_collections(channel: grpc.Channel) -> cpb.ListCollectionsResponse:
    return catalog_pb2_grpc.CatalogServiceStub(channel).ListCollections(cpb.ListCollectionsRequest(), timeout=5)


def test_the_gateways_certificate_is_admitted_by_an_internal_service(pki, catalog):
    backends = Backends(catalog, catalog, 5.0, client_tls(pki, "gateway"))
    try:
        assert backends.catalog.ListCollections(cpb.ListCollectionsRequest()).collections == []
        assert backends.serving()["catalog"]
    finally:
        backends.close()


@pytest.mark.parametrize("client", ["plaintext", "tls without a client certificate"])
def test_an_internal_service_with_mtls_refuses_clients_without_a_certificate(pki, catalog, client):
    channel = (grpc.insecure_channel(catalog) if client == "plaintext"
               else grpc.secure_channel(catalog, client_tls(pki, None).credentials()))
    with channel, pytest.raises(grpc.RpcError) as failure:
        list_collections(channel)
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE


def test_an_internal_service_refuses_a_certificate_of_another_name(pki, catalog):
    with grpc.secure_channel(catalog, client_tls(pki, "intruder").credentials()) as channel:
        with pytest.raises(grpc.RpcError) as failure:
            list_collections(channel)
        assert failure.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert reason_of(failure.value) == "PERMISSION_DENIED"
        # health stays open to any client the CA vouches for (probes)
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_the_health_port_answers_plaintext_probes_and_nothing_else(catalog_server):
    with grpc.insecure_channel(f"127.0.0.1:{catalog_server.health_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "audiosearch.catalog.v1.CatalogService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as failure:
            list_collections(channel)
        assert failure.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_the_health_port_reports_what_the_main_port_reports(catalog_server):
    with grpc.insecure_channel(f"127.0.0.1:{catalog_server.health_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        catalog_server.set_serving(False)
        try:
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
                health_pb2.HealthCheckResponse.NOT_SERVING
        finally:
            catalog_server.set_serving(True)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
            health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def gateway(pki, catalog, tmp_path_factory):
    """A gateway serving TLS with API keys, reaching the catalog over mTLS as `gateway`."""
    keys = tmp_path_factory.mktemp("keys") / "keys.json"
    keys.write_text(json.dumps([{"name": "t", "sha256": hash_key(KEY), "collections": ["*"], "access": "read"}]))
    settings = GatewaySettings(
        port=0, max_workers=4, tls_cert_file=pki.server.cert, tls_key_file=pki.server.key, api_keys_file=keys,
        catalog_address=catalog, search_address="127.0.0.1:9", embedder_url="127.0.0.1:9",
        internal_tls_ca_file=pki.ca, internal_tls_cert_file=pki.clients["gateway"].cert,
        internal_tls_key_file=pki.clients["gateway"].key)
    running = build_gateway(settings)
    try:
        yield f"localhost:{running.port}"
    finally:
        running.stop(0)


def test_a_tls_gateway_serves_tls_clients_through_the_mtls_hop(pki, gateway):
    with grpc.secure_channel(gateway, grpc.ssl_channel_credentials(pki.ca.read_bytes())) as channel:
        reply = audiosearch_pb2_grpc.AudioSearchServiceStub(channel).ListCollections(
            pb.ListCollectionsRequest(), metadata=[("authorization", f"Bearer {KEY}")], timeout=10)
    assert list(reply.collections) == []


def test_a_tls_gateway_refuses_plaintext(gateway):
    with grpc.insecure_channel(gateway) as channel, pytest.raises(grpc.RpcError) as failure:
        audiosearch_pb2_grpc.AudioSearchServiceStub(channel).ListCollections(
            pb.ListCollectionsRequest(), metadata=[("authorization", f"Bearer {KEY}")], timeout=5)
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tls_settings_must_be_complete(pki):
    with pytest.raises(ValueError, match="go together"):
        GatewaySettings(tls_cert_file=pki.server.cert)
    with pytest.raises(ValueError, match="needs tls_client_ca_file"):
        GatewaySettings(tls_cert_file=pki.server.cert, tls_key_file=pki.server.key, tls_allowed_client_names="x")
    with pytest.raises(ValueError, match="needs internal_tls_ca_file"):
        GatewaySettings(internal_tls_cert_file=pki.clients["gateway"].cert,
                        internal_tls_key_file=pki.clients["gateway"].key)


def test_a_renewed_certificate_is_served_to_new_connections_without_a_restart(tmp_path):
    first, renewed = make_pki(tmp_path / "first", ()), make_pki(tmp_path / "renewed", ())
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    cert, key = mounted / "tls.crt", mounted / "tls.key"
    shutil.copyfile(first.server.cert, cert)
    shutil.copyfile(first.server.key, key)
    settings = ProbeSettings(port=0, max_workers=2, tls_cert_file=cert, tls_key_file=key)
    running = start_server(settings, lambda server: [])
    try:
        assert health_over_tls(running.port, first.ca) == health_pb2.HealthCheckResponse.SERVING
        shutil.copyfile(renewed.server.cert, cert)
        shutil.copyfile(renewed.server.key, key)
        assert health_over_tls(running.port, renewed.ca) == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as failure:
            health_over_tls(running.port, first.ca)
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        running.stop(0)


def health_over_tls(port: int, ca_file) -> int:
    credentials = grpc.ssl_channel_credentials(ca_file.read_bytes())
    with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
