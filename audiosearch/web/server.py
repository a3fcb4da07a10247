"""Composition root of the web process: settings -> a gRPC channel to the gateway -> the FastAPI app -> uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from audiosearch.common.channels import open_channel
from audiosearch.common.logs import configure_logging
from audiosearch.common.settings import load_settings
from audiosearch.web.app import create_app
from audiosearch.web.settings import WebSettings

log = logging.getLogger(__name__)


def main() -> None:
    settings = load_settings(WebSettings)
    configure_logging("web", settings.log_level)
    channel = open_channel(settings.gateway_address)
    app = create_app(settings, channel)
    log.info("serving", extra={"address": f"http://{settings.host}:{settings.port}",
                               "gateway": settings.gateway_address})
    try:
        # uvicorn handles SIGINT/SIGTERM: it stops accepting, finishes requests in flight, then returns.
        uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, ws="wsproto",
                    timeout_graceful_shutdown=int(settings.grace_seconds))
    finally:
        channel.close()


if __name__ == "__main__":
    main()
