"""The web process in-process (uvicorn on a free port in a thread, talking gRPC to the session's real gateway),
and headless Chromium for the page's tests."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
                                log_level="warning", lifespan="off", ws="wsproto")
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


CHROMIUM = Path("/usr/bin/chromium")


def chromium_args(microphone: Path) -> list[str]:
    return [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required",
        # A microphone that plays a known file, and no permission prompt.
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}",
    ]


@contextlib.contextmanager
def chromium(microphone: Path) -> Iterator[Any]:
    """Headless Chromium whose microphone plays `microphone` in a loop; skipped without Debian's chromium,
    except in CI (CI set), where the browser tests must run."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: `apt-get install chromium` (Debian) to run the browser tests"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run them")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=chromium_args(microphone))
        try:
            yield browser
        finally:
            browser.close()


class Watched:
    """A page on `collection` that records every request it makes and every script error it hits."""

    def __init__(self, browser: Any, web_url: str, collection: str, **context_options: object) -> None:
        self.context = browser.new_context(**context_options)
        self.context.grant_permissions(["microphone"], origin=web_url)
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.add_init_script(f"localStorage.setItem('audiosearch.collection', '{collection}')")
        self.page.goto(web_url)
        self.page.wait_for_function(f"() => document.getElementById('collection').value === '{collection}'")

    def search_with(self, path: Path) -> Any:
        self.page.set_input_files("#clip", str(path))
        top = self.page.locator("#results .card").first
        top.wait_for()
        self.page.wait_for_function("() => document.querySelector('#results .card')?.dataset.ready === 'true'")
        return top

    def close(self, web_url: str) -> None:
        foreign = [url for url in self.requests if not url.startswith((web_url, "blob:", "data:"))]
        assert foreign == [], "the page loaded something from elsewhere"
        assert self.errors == []
        self.context.close()
