"""Start the embedder (launcher + tritonserver) as a child process and wait until `panns_cnn14` is ready.

For tests and tools of any service:

    handle = start_embedder(tmp_path / "embedder", untrained=True)
    try:
        client = tritonclient.grpc.InferenceServerClient(handle.grpc_address)
        ...
    finally:
        handle.stop()
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from audiosearch.common.ports import free_ports
from audiosearch.common.tls import ClientTls
from audiosearch.embedder.identity import TRITON_MODEL_NAME
from audiosearch.embedder.tritonserver import REPO_ROOT

_PORT_ATTEMPTS = 3


class EmbedderStartError(RuntimeError):
    """The embedder exited or did not become ready in time; the message ends with its last log lines."""


@dataclass
class EmbedderHandle:
    process: subprocess.Popen[bytes]
    host: str
    grpc_port: int
    http_port: int
    metrics_port: int
    state_dir: Path
    log_path: Path
    tls: ClientTls | None = None  # how to reach a TLS-enabled embedder (EMBEDDER_TLS_* in its env)

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def client(self) -> triton.InferenceServerClient:
        return triton.InferenceServerClient(self.grpc_address, **(self.tls.triton_arguments() if self.tls else {}))

    def is_ready(self) -> bool:
        client = self.client()
        try:
            return bool(client.is_server_ready(client_timeout=2.0)) and bool(
                client.is_model_ready(TRITON_MODEL_NAME, client_timeout=2.0)
            )
        except InferenceServerException:
            return False
        finally:
            client.close()

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout_seconds: float = 60.0) -> int:
        """SIGTERM (Triton drains in-flight requests), SIGKILL after the timeout; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> EmbedderHandle:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def wait_until_ready(handle: EmbedderHandle, timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if handle.process.poll() is not None:
            raise EmbedderStartError(
                f"the embedder exited with {handle.process.returncode}; last lines of {handle.log_path}:\n"
                + handle.log_tail()
            )
        if handle.is_ready():
            return
        time.sleep(0.25)
    handle.stop()
    raise EmbedderStartError(
        f"the embedder was not ready after {timeout_seconds:.0f} s:\n{handle.log_tail()}"
    )


def _spawn(state_dir: Path, host: str, ports: tuple[int, int, int], env: dict[str, str],
           tls: ClientTls | None) -> EmbedderHandle:
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "embedder.log"
    full_env = {
        **os.environ,
        **env,
        "EMBEDDER_STATE_DIR": str(state_dir),
        "EMBEDDER_HOST": host,
        "EMBEDDER_GRPC_PORT": str(ports[0]),
        "EMBEDDER_HTTP_PORT": str(ports[1]),
        "EMBEDDER_METRICS_PORT": str(ports[2]),
        "PYTHONUNBUFFERED": "1",
    }
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "audiosearch.embedder.server"],
            cwd=REPO_ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return EmbedderHandle(process, host, *ports, state_dir=state_dir, log_path=log_path, tls=tls)


def start_embedder(
    state_dir: Path,
    *,
    untrained: bool = True,
    seed: int = 0,
    checkpoint_path: Path | None = None,
    host: str = "127.0.0.1",
    ports: tuple[int, int, int] | None = None,
    env: dict[str, str] | None = None,
    timeout_seconds: float = 300.0,
    client_tls: ClientTls | None = None,
) -> EmbedderHandle:
    """Start `python -m audiosearch.embedder.server` and return once panns_cnn14 is ready.

    `ports` is (grpc, http, metrics); by default free ones are picked (and picked again if taken meanwhile).
    `env` adds or overrides EMBEDDER_* settings; with EMBEDDER_TLS_* there, `client_tls` says how to reach it.
    """
    settings = {"EMBEDDER_UNTRAINED": "true" if untrained else "false", "EMBEDDER_SEED": str(seed)}
    if checkpoint_path is not None:
        settings["EMBEDDER_CHECKPOINT_PATH"] = str(checkpoint_path)
    settings.update(env or {})
    attempts = 1 if ports else _PORT_ATTEMPTS
    for attempt in range(1, attempts + 1):
        chosen = ports or tuple(free_ports(3, host))
        handle = _spawn(state_dir, host, chosen, settings, client_tls)
        try:
            wait_until_ready(handle, timeout_seconds)
        except EmbedderStartError as error:
            if attempt == attempts or "address already in use" not in str(error).lower():
                raise
            continue
        return handle
    raise AssertionError("unreachable")
