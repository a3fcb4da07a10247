"""Client channels to the internal services: round robin over every resolved address, bounded retries."""

from __future__ import annotations

import json

import grpc

from audiosearch.common.grpc_server import MAX_MESSAGE_BYTES
from audiosearch.common.tls import ClientTls
from audiosearch.common.tracing import ClientTracingInterceptor

# Retries only on UNAVAILABLE (the callee is down or restarting), with exponential backoff that gRPC jitters
# (each wait is drawn uniformly below the current backoff). The internal calls are idempotent by design (upserts
# by id, deletes, reads, EnsureCollection) and safe to repeat; CreateAudio is too, because the catalog
# deduplicates by content sha256: a retry of an attempt that did land finds that PENDING record, the gateway
# answers INGEST_IN_PROGRESS and the reconciler clears it - never a duplicate. The calls that are not safe to
# repeat are listed without a retry policy: a repeated CreateCollection reports COLLECTION_EXISTS for the
# collection it just created, and a repeated conditional SetAudioStatus (PENDING -> READY) fails its own
# precondition and would roll back an ingest that had succeeded. Transparent retries (the request never left
# the client) still apply to them; that is always safe.
_NOT_RETRIED = [
    {"service": "audiosearch.catalog.v1.CatalogService", "method": "CreateCollection"},
    {"service": "audiosearch.catalog.v1.CatalogService", "method": "SetAudioStatus"},
]
_SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{}],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.1s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        },
        {"name": _NOT_RETRIED},
    ],
}

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.service_config", json.dumps(_SERVICE_CONFIG)),
    ("grpc.enable_retries", 1),
    ("grpc.keepalive_time_ms", 30_000),
    # A restarted dependency is reconnected within seconds, not after gRPC's default backoff of up to 120 s.
    ("grpc.max_reconnect_backoff_ms", 5_000),
]


def open_channel(address: str, tls: ClientTls | None = None) -> grpc.Channel:
    """A channel to `address`; a `dns:///name:port` address balances over every pod behind a headless Service.
    Each call carries the current trace context (`traceparent`), so the callee's spans join the caller's trace.
    With `tls` the channel speaks TLS (mTLS when it carries a client certificate); plaintext otherwise."""
    if tls is None:
        channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    else:
        channel = grpc.secure_channel(address, tls.credentials(), options=CHANNEL_OPTIONS + tls.options())
    return grpc.intercept_channel(channel, ClientTracingInterceptor())
