"""Real Milvus servers for tests.

`start_milvus_server(data_dir)` starts the standalone Milvus that the `milvus` package (2.3.x) bundles, on free
ports (several can run side by side), waits until it answers, and returns a handle with its `uri` and `stop()`.
Everything it writes (the binaries it unpacks, data, logs) stays under `data_dir`; its console output goes to
`data_dir/milvus-server.log`.

`start_milvus_lite_server(data_dir)` starts `milvus-lite server` (the `milvus-lite` package): Milvus Lite's engine
behind Milvus's gRPC API on a TCP port. It holds sparse vectors, which Milvus 2.3 lacks, so the tests' landmark
index lives there (SEARCH_LANDMARK_MILVUS_URI); no Milvus 2.4 or later is published on the registries this
project installs from.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pymilvus import MilvusClient, MilvusException

from audiosearch.common.ports import free_ports

START_TIMEOUT_S = 120.0
LITE_START_TIMEOUT_S = 60.0
STOP_GRACE_S = 5.0
_READY_BANNER = "Process:"
_START_ATTEMPTS = 2
# The wrapper's flags for every port the standalone binary listens on (besides the metrics port, which the
# wrapper itself picks free from 9091 upward, and etcd's peer port, set through the etcd config file below).
_PORT_FLAGS = (
    "--proxy-port", "--etcd-port", "--proxy-internal-port", "--root-coord-port", "--query-coord-port",
    "--query-node-port", "--index-coord-port", "--index-node-port", "--data-coord-port", "--data-node-port",
)
# Embedded etcd ignores `--etcd-port` (clients use it, the server listens on 2379/2380) unless its own config
# file says so; Milvus reads `etcd.config.path` from the environment as ETCD_CONFIG_PATH.
_ETCD_CONFIG = """\
name: default
listen-client-urls: http://127.0.0.1:{client}
advertise-client-urls: http://127.0.0.1:{client}
listen-peer-urls: http://127.0.0.1:{peer}
initial-advertise-peer-urls: http://127.0.0.1:{peer}
initial-cluster: default=http://127.0.0.1:{peer}
"""


class MilvusServerError(RuntimeError):
    """The server could not be started; the message carries the end of its log."""


@dataclass
class MilvusServer:
    uri: str
    port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict, repr=False)

    def restart(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Starts it again on the same ports and data (after `stop()`, a crash or a kill -9); returns once it
        serves, or raises MilvusServerError.

        Runs the unpacked `bin/milvus run standalone` directly with the config the wrapper wrote at the first
        start: the wrapper test-binds every port without SO_REUSEADDR, which fails for a minute after a kill
        (the old connections sit in TIME_WAIT), and then silently moves the server to the next free port."""
        self.stop()
        binary = self.data_dir / "bin" / "milvus"
        env = {**self.env, "DEPLOY_MODE": "STANDALONE", "METRICS_PORT": str(free_ports(1)[0]),
               "MILVUS_RUN_DIR": str(self.data_dir / "run"),
               "LD_LIBRARY_PATH": f"{binary.parent}:{self.env.get('LD_LIBRARY_PATH', '')}"}
        self.process = _spawn([str(binary), "run", "standalone"], env, self.data_dir,
                              self.data_dir / "logs" / "milvus-stdout.log")
        deadline = time.monotonic() + timeout_s
        while not _answers(self.uri):
            if self.process.poll() is not None:
                raise MilvusServerError(f"milvus exited with {self.process.returncode} on restart:\n"
                                        f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise MilvusServerError(f"milvus not serving {timeout_s:.0f} s after a restart:\n{self.log_tail()}")
            time.sleep(0.5)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM to the wrapper and the server (one process group), then SIGKILL to what is left."""
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, grace_s)):
            if not self._group_alive():
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            deadline = time.monotonic() + wait_s
            while self._group_alive() and time.monotonic() < deadline:
                time.sleep(0.1)

    def _group_alive(self) -> bool:
        self.process.poll()
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def log_tail(self, lines: int = 30) -> str:
        server_log = self.data_dir / "logs" / "milvus-stdout.log"
        return "\n".join(f"--- {path}\n{_tail(path, lines)}" for path in (self.log_path, server_log))


def milvus_server_executable() -> str:
    beside_python = Path(sys.executable).with_name("milvus-server")
    found = str(beside_python) if beside_python.exists() else shutil.which("milvus-server")
    if not found:
        raise MilvusServerError("milvus-server not found: install the dev dependencies (`milvus==2.3.5`)")
    return found


def start_milvus_server(data_dir: Path, timeout_s: float = START_TIMEOUT_S,
                        config: Mapping[str, str | int | float] | None = None) -> MilvusServer:
    """Starts a standalone Milvus under `data_dir` and returns once it serves, or raises MilvusServerError.

    `config` overrides milvus.yaml entries by dotted key (e.g. {"dataCoord.segment.maxSize": 4096})."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, _START_ATTEMPTS + 1):
        server = _launch(data_dir, config or {})
        try:
            _wait_ready(server, timeout_s)
        except _ExitedEarly:
            server.stop()
            if attempt == _START_ATTEMPTS:
                raise MilvusServerError(f"milvus-server exited early:\n{server.log_tail()}") from None
            continue  # most likely a port taken between picking and binding: try again with fresh ports
        except BaseException:
            server.stop()
            raise
        return server
    raise AssertionError("unreachable")


def _launch(data_dir: Path, config: Mapping[str, str | int | float]) -> MilvusServer:
    *ports, etcd_peer_port = free_ports(len(_PORT_FLAGS) + 1)
    port_of = dict(zip(_PORT_FLAGS, ports, strict=True))
    etcd_config = data_dir / "etcd.yaml"
    etcd_config.write_text(_ETCD_CONFIG.format(client=port_of["--etcd-port"], peer=etcd_peer_port))
    command = [milvus_server_executable(), "--data", str(data_dir)]
    for flag, port in port_of.items():
        command += [flag, str(port)]
    for key, value in config.items():
        command += ["--extra-config", f"{key}={value}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ETCD_CONFIG_PATH": str(etcd_config)}
    log_path = data_dir / "milvus-server.log"
    process = _spawn(command, env, data_dir, log_path)
    proxy_port = port_of["--proxy-port"]
    return MilvusServer(f"http://127.0.0.1:{proxy_port}", proxy_port, data_dir, log_path, process, env)


def _spawn(command: list[str], env: dict[str, str], data_dir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command, cwd=data_dir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


class _ExitedEarly(Exception):
    pass


def _wait_ready(server: MilvusServer, timeout_s: float) -> None:
    # The wrapper prints its banner (with the server's pid) only once Milvus reports itself healthy.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise _ExitedEarly
        if _READY_BANNER in _tail(server.log_path, 40) and _answers(server.uri):
            return
        time.sleep(0.5)
    raise MilvusServerError(f"milvus-server not ready after {timeout_s:.0f} s:\n{server.log_tail()}")


def _answers(uri: str) -> bool:
    try:
        client = MilvusClient(uri=uri, timeout=5)
        try:
            client.list_collections(timeout=5)
        finally:
            client.close()
    except MilvusException:
        return False
    return True


def _tail(path: Path, lines: int) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@dataclass
class MilvusLiteServer:
    uri: str
    port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(grace_s)

    def restart(self, timeout_s: float = LITE_START_TIMEOUT_S) -> None:
        """Starts it again on the same port and data (after `stop()` or a kill -9)."""
        self.stop()
        self.process = _spawn(_lite_command(self.data_dir, self.port), dict(os.environ), self.data_dir,
                              self.log_path)
        _wait_lite_ready(self, timeout_s)


def start_milvus_lite_server(data_dir: Path, timeout_s: float = LITE_START_TIMEOUT_S) -> MilvusLiteServer:
    """Starts `milvus-lite server` on a free port with its data under `data_dir`; returns once it answers."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_ports(1)[0]
    log_path = data_dir / "milvus-lite-server.log"
    process = _spawn(_lite_command(data_dir / "data", port), dict(os.environ), data_dir, log_path)
    server = MilvusLiteServer(f"http://127.0.0.1:{port}", port, data_dir / "data", log_path, process)
    try:
        _wait_lite_ready(server, timeout_s)
    except BaseException:
        server.stop()
        raise
    return server


def _lite_command(data_dir: Path, port: int) -> list[str]:
    beside_python = Path(sys.executable).with_name("milvus-lite")
    executable = str(beside_python) if beside_python.exists() else shutil.which("milvus-lite")
    if not executable:
        raise MilvusServerError("milvus-lite not found: install the dependencies (`milvus-lite`)")
    return [executable, "server", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port)]


def _wait_lite_ready(server: MilvusLiteServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise MilvusServerError(f"milvus-lite server exited:\n{_tail(server.log_path, 30)}")
        if _answers(server.uri):
            return
        time.sleep(0.3)
    raise MilvusServerError(f"milvus-lite server not answering after {timeout_s:.0f} s:\n"
                            f"{_tail(server.log_path, 30)}")
