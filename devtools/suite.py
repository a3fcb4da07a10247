"""Runs the four services on one machine: `python -m devtools.suite up|down|run|status`.

`up` starts them in the background and returns once all four are healthy; `down` stops them; `run` starts
them in the foreground, ingests a sample set, shows a search and serves until Ctrl-C. Everything lives under
one state directory (default ./var): Milvus Lite file, SQLite catalog, Triton model repository, logs, pids.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from audiosearch.common.allocator import with_allocator
from audiosearch.common.ports import free_ports

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = "models/Cnn14_mAP=0.431.pth"


@dataclass(frozen=True)
class ServicePlan:
    name: str
    module: str
    health_address: str
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SuitePorts:
    gateway: int = 50051
    search: int = 50052
    catalog: int = 50053
    triton_grpc: int = 8001
    triton_http: int = 8000
    triton_metrics: int = 8002
    # Prometheus /metrics of the gRPC services (Triton's is triton_metrics).
    gateway_metrics: int = 9091
    search_metrics: int = 9092
    catalog_metrics: int = 9093

    @classmethod
    def free(cls) -> SuitePorts:
        """Every port a free one, for suites that run beside another (tests, benchmarks)."""
        return cls(*free_ports(len(fields(cls))))


def plan_suite(state_dir: Path, ports: SuitePorts, extra_env: dict[str, str] | None = None) -> list[ServicePlan]:
    """The four services, dependencies first, configured from the state dir unless the environment says more.

    Each `extra_env` entry goes to the service its prefix names (`GATEWAY_...` to the gateway, and so on).
    """
    env = {**os.environ, **(extra_env or {})}
    checkpoint = Path(env.get("EMBEDDER_CHECKPOINT_PATH", state_dir / DEFAULT_CHECKPOINT))
    untrained = env.get("EMBEDDER_UNTRAINED") or ("false" if checkpoint.exists() else "true")
    embedder_env = {
        "EMBEDDER_CHECKPOINT_PATH": str(checkpoint), "EMBEDDER_UNTRAINED": untrained,
        "EMBEDDER_STATE_DIR": str(state_dir / "embedder"), "EMBEDDER_GRPC_PORT": str(ports.triton_grpc),
        "EMBEDDER_HTTP_PORT": str(ports.triton_http), "EMBEDDER_METRICS_PORT": str(ports.triton_metrics),
    }
    search_env = {"SEARCH_PORT": str(ports.search), "SEARCH_METRICS_PORT": str(ports.search_metrics),
                  "SEARCH_MILVUS_URI": env.get("SEARCH_MILVUS_URI", str(state_dir / "milvus.db"))}
    catalog_env = {"CATALOG_PORT": str(ports.catalog), "CATALOG_METRICS_PORT": str(ports.catalog_metrics),
                   "CATALOG_DSN": env.get("CATALOG_DSN", f"sqlite:///{state_dir / 'catalog.db'}")}
    gateway_env = {
        "GATEWAY_PORT": str(ports.gateway), "GATEWAY_METRICS_PORT": str(ports.gateway_metrics),
        "GATEWAY_EMBEDDER_URL": f"127.0.0.1:{ports.triton_grpc}",
        "GATEWAY_SEARCH_ADDRESS": f"127.0.0.1:{ports.search}",
        "GATEWAY_CATALOG_ADDRESS": f"127.0.0.1:{ports.catalog}",
        "GATEWAY_BLOB_URI": env.get("GATEWAY_BLOB_URI", f"file://{(state_dir / 'blobs').resolve()}"),
    }
    plans = [
        ServicePlan("embedder", "audiosearch.embedder.server", f"triton:127.0.0.1:{ports.triton_grpc}", embedder_env),
        ServicePlan("search", "audiosearch.search.server", f"127.0.0.1:{ports.search}", search_env),
        ServicePlan("catalog", "audiosearch.catalog.server", f"127.0.0.1:{ports.catalog}", catalog_env),
        ServicePlan("gateway", "audiosearch.gateway.server", f"127.0.0.1:{ports.gateway}", gateway_env),
    ]
    for plan in plans:
        prefix = plan.name.upper() + "_"
        plan.env.update({key: value for key, value in (extra_env or {}).items() if key.startswith(prefix)})
    return plans


def start_service(plan: ServicePlan, log_dir: Path, detach: bool = False) -> subprocess.Popen[bytes]:
    log_dir.mkdir(parents=True, exist_ok=True)
    env = with_allocator({**os.environ, **plan.env, "PYTHONUNBUFFERED": "1"})
    with (log_dir / f"{plan.name}.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", plan.module], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=detach,
        )


def is_healthy(address: str) -> bool:
    if address.startswith("triton:"):
        return _triton_ready(address.removeprefix("triton:"))
    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2.0)
        except grpc.RpcError:
            return False
    return response.status == health_pb2.HealthCheckResponse.SERVING


def _triton_ready(address: str) -> bool:
    import tritonclient.grpc as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(address)
    try:
        return bool(client.is_server_ready(client_timeout=2.0))
    except InferenceServerException:
        return False
    finally:
        client.close()


def wait_healthy(plan: ServicePlan, process: subprocess.Popen[bytes], log_dir: Path, timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{plan.name} exited with {process.returncode}; see {log_dir / plan.name}.log:\n"
                               + _tail(log_dir / f"{plan.name}.log"))
        if is_healthy(plan.health_address):
            return
        time.sleep(0.5)
    raise RuntimeError(f"{plan.name} not healthy after {timeout_seconds:.0f} s; see {log_dir / plan.name}.log")


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@dataclass
class RunningSuite:
    plans: list[ServicePlan]
    processes: list[subprocess.Popen[bytes]]
    log_dir: Path | None = None  # <service>.log for each plan

    @property
    def gateway_address(self) -> str:
        return self.plans[-1].health_address

    def stop(self, timeout_seconds: float = 30.0) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout_seconds)
            except subprocess.TimeoutExpired:
                process.kill()


def start_suite(plans: list[ServicePlan], log_dir: Path, detach: bool = False,
                timeout_seconds: float = 300.0) -> RunningSuite:
    """Starts each service and waits for it to be healthy before the next (the gateway needs the others)."""
    suite = RunningSuite(plans, [], log_dir)
    try:
        for plan in plans:
            process = start_service(plan, log_dir, detach)
            suite.processes.append(process)
            wait_healthy(plan, process, log_dir, timeout_seconds)
            print(f"  {plan.name:9s} healthy at {plan.health_address.removeprefix('triton:')}", flush=True)
    except BaseException:
        suite.stop()
        raise
    return suite


def _pid_file(state_dir: Path) -> Path:
    return state_dir / "suite.pids"


def command_up(state_dir: Path, ports: SuitePorts) -> RunningSuite:
    pids = _pid_file(state_dir)
    if pids.exists() and any(_alive(int(pid)) for pid in pids.read_text().split()):
        raise SystemExit(f"the suite is already up (pids in {pids}); run `make down` first")
    state_dir.mkdir(parents=True, exist_ok=True)
    suite = start_suite(plan_suite(state_dir, ports), state_dir / "logs", detach=True)
    pids.write_text(" ".join(str(process.pid) for process in suite.processes))
    print(f"suite up; gateway at {suite.gateway_address}; logs in {state_dir / 'logs'}")
    return suite


def command_down(state_dir: Path) -> None:
    pids = _pid_file(state_dir)
    if not pids.exists():
        print("suite is not up")
        return
    running = [int(pid) for pid in pids.read_text().split() if _alive(int(pid))]
    for pid in reversed(running):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in running) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    pids.unlink()
    print("suite down")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    return True


@contextlib.contextmanager
def _foreground_suite(state_dir: Path, ports: SuitePorts) -> Iterator[RunningSuite]:
    state_dir.mkdir(parents=True, exist_ok=True)
    suite = start_suite(plan_suite(state_dir, ports), state_dir / "logs")
    try:
        yield suite
    finally:
        print("stopping the suite...")
        suite.stop()


def command_run(state_dir: Path, ports: SuitePorts, samples: Path | None) -> None:
    from services import demo

    with _foreground_suite(state_dir, ports) as suite:
        demo.show(suite.gateway_address, samples or demo.sample_set(state_dir / "samples"))
        print(f"\nthe suite is serving at {suite.gateway_address}; Ctrl-C stops it")
        _wait_for_interrupt()


def _wait_for_interrupt() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        while True:
            time.sleep(3600)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.suite", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "run", "status"])
    parser.add_argument("--state-dir", type=Path, default=Path(os.environ.get("AUDIOSEARCH_STATE_DIR", "var")))
    parser.add_argument("--samples", type=Path, help="folder of sounds for `run` (default: generated ones)")
    args = parser.parse_args()
    state_dir = args.state_dir.resolve()
    ports = SuitePorts()
    if args.command == "up":
        command_up(state_dir, ports)
    elif args.command == "down":
        command_down(state_dir)
    elif args.command == "run":
        command_run(state_dir, ports, args.samples)
    else:
        for plan in plan_suite(state_dir, ports):
            state = "healthy" if is_healthy(plan.health_address) else "down"
            print(f"{plan.name:9s} {plan.health_address.removeprefix('triton:'):22s} {state}")


if __name__ == "__main__":
    main()
