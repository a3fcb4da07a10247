"""The web process in-process: uvicorn on a free port in a thread, talking gRPC to the session's real gateway."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from audiosearch.common.channels import open_channel
from audiosearch.common.ports import free_port
from audiosearch.web.app import create_app
from audiosearch.web.settings import WebSettings


class WebServer:
    """A uvicorn server in a daemon thread; `stop()` lets requests in flight finish."""

    def __init__(self, gateway_address: str, **settings: object) -> None:
        self.port = free_port()
        self.channel = open_channel(gateway_address)
        settings = WebSettings(port=self.port, gateway_address=gateway_address, **settings)
        config = uvicorn.Config(create_app(settings, self.channel), host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="web", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WebServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the web server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.channel.close()


@contextlib.contextmanager
def served(gateway_address: str, **settings: object) -> Iterator[httpx.Client]:
    """The web process for `gateway_address`, and an HTTP client of it."""
    server = WebServer(gateway_address, **settings).start()
    try:
        with httpx.Client(base_url=server.url, timeout=300) as client:
            yield client
    finally:
        server.stop()


@pytest.fixture(scope="session")
def web_url(gateway_address: str) -> Iterator[str]:
    server = WebServer(gateway_address).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def http(web_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=web_url, timeout=300) as client:
        yield client
