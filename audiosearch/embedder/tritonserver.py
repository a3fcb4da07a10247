"""The `tritonserver` bundled in the nvidia-pytriton wheel: where it is, its backend dir, its command and env.

The installed package is never modified: the backend directory Triton needs (`python/` with the backend
library, its utils module and the stub built for this interpreter's Python version) is assembled from symlinks
in the state dir.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shlex
import site
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from audiosearch.common.allocator import preloads_jemalloc, with_allocator, without_jemalloc
from audiosearch.embedder.settings import EmbedderSettings

REPO_ROOT = Path(__file__).resolve().parents[2]


class TritonNotFound(RuntimeError):
    """The nvidia-pytriton wheel (which carries tritonserver) is not installed for this interpreter."""


@dataclass(frozen=True)
class TritonDistribution:
    server: Path
    python_backend: Path
    stub: Path
    libs: Path

    @classmethod
    def locate(cls) -> TritonDistribution:
        # find_spec does not import pytriton (whose import is slow and pulls in much more than is needed here).
        spec = importlib.util.find_spec("pytriton")
        if spec is None or not spec.submodule_search_locations:
            raise TritonNotFound("nvidia-pytriton is not installed: `pip install nvidia-pytriton==0.7.0`")
        package = Path(next(iter(spec.submodule_search_locations)))
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        dist = cls(
            server=package / "tritonserver" / "bin" / "tritonserver",
            python_backend=package / "tritonserver" / "backends" / "python",
            stub=package / "tritonserver" / "python_backend_stubs" / version / "triton_python_backend_stub",
            libs=package.parent / "nvidia_pytriton.libs",
        )
        missing = [path for path in (dist.server, dist.python_backend, dist.stub) if not path.exists()]
        if missing:
            raise TritonNotFound(f"incomplete nvidia-pytriton install (Python {version}); missing: {missing}")
        return dist


def build_backend_dir(dist: TritonDistribution, destination: Path, server_preload: str = "") -> Path:
    """`destination/python/` with symlinks to the backend library, its utils and this Python's stub.

    Where tritonserver runs on jemalloc (`server_preload`), the stub is a launcher that starts the real stub on
    glibc's malloc instead: PyTorch's forward passes run slower on jemalloc, while tritonserver's own memory stays
    flat only on jemalloc (audiosearch/common/allocator.py; docs/benchmarks.md, bench.embedder_memory).
    """
    python_dir = destination / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    links = {
        "libtriton_python.so": dist.python_backend / "libtriton_python.so",
        "triton_python_backend_utils.py": dist.python_backend / "triton_python_backend_utils.py",
        "triton_python_backend_stub": dist.stub,
    }
    for name, target in links.items():
        link = python_dir / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    if preloads_jemalloc(server_preload) and not mounted_noexec(python_dir):
        launcher = python_dir / "triton_python_backend_stub"
        launcher.unlink()
        launcher.write_text(stub_launcher(dist.stub, without_jemalloc(server_preload)))
        launcher.chmod(0o755)
    return destination


def mounted_noexec(path: Path) -> bool:
    """True where files under `path` cannot be executed (`docker run --tmpfs` mounts noexec by default): there
    the stub stays a symlink and runs on tritonserver's allocator rather than not at all."""
    return bool(os.statvfs(path).f_flag & os.ST_NOEXEC)


def stub_launcher(stub: Path, preload: str) -> str:
    set_preload = f"export LD_PRELOAD={shlex.quote(preload)}" if preload else "unset LD_PRELOAD"
    return f'#!/bin/sh\n{set_preload}\nexec {shlex.quote(str(stub))} "$@"\n'


def site_dirs(pythonpath: str = "") -> list[str]:
    """The launcher's import path for the model's shim: the repository root, PYTHONPATH, this interpreter's
    site-packages."""
    return [str(REPO_ROOT), *(part for part in pythonpath.split(os.pathsep) if part), *site.getsitepackages()]


def server_env(dist: TritonDistribution, base: dict[str, str], log_level: str) -> dict[str, str]:
    env = with_allocator(base)
    # The stub's embedded Python finds its prefix (hence site-packages, numpy, torch) via `python3` on PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), base.get("PATH", "/usr/bin:/bin")])
    # Without the interpreter's own libpython first, the stub binds to another and model load fails.
    library_path = [sysconfig.get_config_var("LIBDIR") or "", str(dist.libs), base.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(part for part in library_path if part)
    env["EMBEDDER_SITE_DIRS"] = os.pathsep.join(site_dirs(base.get("PYTHONPATH", "")))
    env["EMBEDDER_LOG_LEVEL"] = log_level
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def server_command(
    dist: TritonDistribution, settings: EmbedderSettings, model_repository: Path, backend_dir: Path, gpu: bool
) -> list[str]:
    host = settings.host
    command = [
        str(dist.server),
        f"--model-repository={model_repository}",
        f"--backend-directory={backend_dir}",
        f"--grpc-address={host}",
        f"--grpc-port={settings.grpc_port}",
        f"--http-address={host}",
        f"--http-port={settings.http_port}",
        f"--metrics-address={host}",
        f"--metrics-port={settings.metrics_port}",
        f"--exit-timeout-secs={settings.exit_timeout_seconds}",
        "--strict-readiness=true",
        "--exit-on-error=true",
        "--disable-auto-complete-config",
        # A full batch (64 windows of 2 s) is 16 MB: start the stub's shared memory big enough for it rather
        # than growing it 1 MB at a time.
        "--backend-config=python,shm-default-byte-size=33554432",
        "--backend-config=python,shm-growth-byte-size=16777216",
    ]
    if not gpu:
        command += ["--pinned-memory-pool-byte-size=0", "--allow-gpu-metrics=false"]
    return command + tls_arguments(settings)


# Everything Triton's HTTP endpoint offers but health: with TLS on gRPC, plaintext HTTP stays for probes only.
HTTP_APIS_BEHIND_TLS = "metadata,inference,shared-memory,model-config,model-repository,statistics,trace,logging"


def tls_arguments(settings: EmbedderSettings) -> list[str]:
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return []
    arguments = ["--grpc-use-ssl=true", f"--grpc-server-cert={settings.tls_cert_file}",
                 f"--grpc-server-key={settings.tls_key_file}"]
    if settings.tls_client_ca_file is not None:
        arguments += ["--grpc-use-ssl-mutual=true", f"--grpc-root-cert={settings.tls_client_ca_file}"]
    # The header value is a secret nobody holds: those APIs are simply closed on HTTP.
    arguments.append(f"--http-restricted-api={HTTP_APIS_BEHIND_TLS}:audiosearch-closed={secrets.token_hex(16)}")
    return arguments
