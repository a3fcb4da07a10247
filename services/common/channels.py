"""Client channels to the internal services: round robin over every resolved address, bounded retries."""

from __future__ import annotations

import json

import grpc

from services.common.grpc_server import MAX_MESSAGE_BYTES

# Retries only on UNAVAILABLE: the internal calls the gateway retries are idempotent by design
# (upserts by id, deletes, reads), and non-idempotent ones are never retried by the channel.
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
        }
    ],
}

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.service_config", json.dumps(_SERVICE_CONFIG)),
    ("grpc.enable_retries", 1),
    ("grpc.keepalive_time_ms", 30_000),
]


def open_channel(address: str) -> grpc.Channel:
    """A channel to `address`; a `dns:///name:port` address balances over every pod behind a headless Service."""
    return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
