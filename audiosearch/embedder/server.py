"""Composition root of the embedder: settings -> weights -> identity -> model repository -> tritonserver.

    python -m audiosearch.embedder.server      # configured by EMBEDDER_* environment variables (settings.py)

Runs the real Triton Inference Server (bundled with nvidia-pytriton) hosting `panns_cnn14` on its Python
backend. The checkpoint is verified here, before Triton starts, and again by every model instance, which also
checks that it computes the identity announced in the config. SIGTERM/SIGINT are forwarded to Triton for a
graceful stop; the launcher exits with Triton's exit code. Logs: one JSON object per line on stderr, Triton's
own included.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

import torch

from audiosearch.common.allocator import AllocatorError
from audiosearch.common.logs import configure_logging
from audiosearch.common.settings import load_settings
from audiosearch.embedder.checkpoint import CheckpointError, verify_checkpoint
from audiosearch.embedder.cnn14 import SAMPLE_RATE
from audiosearch.embedder.engine import WeightsSource, available_cores, default_threads, identity_for
from audiosearch.embedder.identity import ModelIdentity
from audiosearch.embedder.instance import InstancePlan
from audiosearch.embedder.repository import read_template, render_config, write_repository
from audiosearch.embedder.settings import EmbedderSettings
from audiosearch.embedder.tritonserver import (
    TritonDistribution,
    TritonNotFound,
    build_backend_dir,
    server_command,
    server_env,
)

LOG = logging.getLogger("audiosearch.embedder.server")
TRITON_LOG = logging.getLogger("tritonserver")
EXIT_CONFIG_ERROR = 2
_TRITON_LINE = re.compile(r'^([IWEF])\d{4} [\d:.]+\s+\d+ ([^\]]+)\]\s?"?(.*?)"?$')
_TRITON_LEVELS = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL}

# Exec'd in the child so that tritonserver gets SIGTERM if this launcher dies without forwarding a signal.
_EXEC_WITH_PARENT_DEATH_SIGNAL = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"  # 1 = PR_SET_PDEATHSIG
    "os.getppid() == 1 and sys.exit(1)\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


class StartupError(Exception):
    """A configuration the embedder refuses to start with."""


@dataclass(frozen=True)
class LaunchPlan:
    identity: ModelIdentity
    command: list[str]
    env: dict[str, str]
    model_repository: Path


def weights_source(settings: EmbedderSettings) -> WeightsSource:
    if settings.untrained:
        if settings.checkpoint_path is not None:
            LOG.warning(
                "EMBEDDER_UNTRAINED=true: ignoring EMBEDDER_CHECKPOINT_PATH=%s", settings.checkpoint_path
            )
        return WeightsSource(untrained_seed=settings.seed)
    if settings.checkpoint_path is None:
        raise StartupError(
            "no model weights: set EMBEDDER_CHECKPOINT_PATH to the PANNs Cnn14 checkpoint "
            "(Cnn14_mAP=0.431.pth; `make weights` downloads it), or EMBEDDER_UNTRAINED=true for a seeded "
            "untrained model (tests only)"
        )
    return WeightsSource(checkpoint_path=settings.checkpoint_path, expected_sha256=settings.checkpoint_sha256)


def use_gpu(settings: EmbedderSettings) -> bool:
    available = torch.cuda.is_available()
    if settings.device == "cuda" and not available:
        raise StartupError("EMBEDDER_DEVICE=cuda but torch sees no CUDA device")
    return settings.device == "cuda" or (settings.device == "auto" and available)


def cpu_has_amx_bfloat16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU has AMX's bfloat16 matrix units. AVX512-BF16 alone is not enough: without AMX, bfloat16 is
    not reliably faster than float32 across hosts (docs/benchmarks.md, bench.throughput)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "amx_bf16" in flags


def auto_precision(gpu: bool) -> str:
    """float16 on a GPU; bfloat16 on a CPU with AMX, faster there than float32 and with embeddings within cosine
    0.999 of float32's (docs/benchmarks.md, bench.throughput); float32 elsewhere. EMBEDDER_PRECISION overrides it."""
    if gpu:
        return "float16"
    return "bfloat16" if cpu_has_amx_bfloat16() else "float32"


def instance_count(settings: EmbedderSettings, gpu: bool) -> int:
    """EMBEDDER_INSTANCE_COUNT, or by default one instance on a GPU and two single-threaded ones on a CPU: on cores
    shared with a gateway, two instances of one thread embed more end to end than one instance of two threads
    (docs/benchmarks.md, bench.throughput)."""
    if settings.instance_count:
        return settings.instance_count
    return 1 if gpu else min(2, available_cores())


def instance_plan(
    settings: EmbedderSettings, source: WeightsSource, gpu: bool
) -> tuple[ModelIdentity, InstancePlan]:
    """Verify the weights and derive the identity and what every model instance needs."""
    sha256 = None
    if source.checkpoint_path is not None:
        verified = verify_checkpoint(source.checkpoint_path, source.expected_sha256)
        sha256 = verified.sha256
        LOG.info("checkpoint verified", extra={"path": str(verified.path), "sha256": sha256})
    precision = settings.precision if settings.precision != "auto" else auto_precision(gpu)
    if precision == "int8" and gpu:
        raise StartupError("EMBEDDER_PRECISION=int8 runs on the CPU only; set EMBEDDER_DEVICE=cpu")
    identity = identity_for(source, sha256, settings.centering_components, precision)
    channels_last = settings.channels_last == "true" or (settings.channels_last == "auto" and gpu)
    plan = InstancePlan(
        checkpoint_path=str(source.checkpoint_path.resolve()) if source.checkpoint_path else "",
        checkpoint_sha256=sha256 or "",
        untrained_seed=source.untrained_seed if source.untrained_seed is not None else -1,
        precision=precision,
        num_threads=settings.num_threads or default_threads(instance_count(settings, gpu)),
        channels_last=channels_last,
        compile=settings.compile,
        batch_samples=int(settings.batch_seconds * SAMPLE_RATE),
        max_samples=int(settings.max_input_seconds * SAMPLE_RATE),
        centering_components=settings.centering_components,
    )
    return identity, plan


def prepare(settings: EmbedderSettings, base_env: dict[str, str]) -> LaunchPlan:
    """Everything up to the tritonserver command: fail here, with a clear message, not inside Triton."""
    source = weights_source(settings)
    gpu = use_gpu(settings)
    identity, plan = instance_plan(settings, source, gpu)
    dist = TritonDistribution.locate()
    state_dir = settings.state_dir.resolve()
    config = render_config(
        read_template(),
        plan.to_parameters(identity),
        gpu,
        instance_count(settings, gpu),
        settings.max_queue_delay_us,
        settings.max_batch_size,
        settings.waveform_dtype,
    )
    repository = write_repository(state_dir / "model_repository", config)
    env = server_env(dist, base_env, settings.log_level)
    backend_dir = build_backend_dir(dist, state_dir / "backends", env.get("LD_PRELOAD", ""))
    command = server_command(dist, settings, repository, backend_dir, gpu)
    wrapped = [sys.executable, "-c", _EXEC_WITH_PARENT_DEATH_SIGNAL, *command]
    return LaunchPlan(identity, wrapped, env, repository)


def _log_triton_output(stream: IO[bytes]) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace").rstrip()
        if not line:
            continue
        if line.startswith("{"):  # already JSON: the model instances log through audiosearch.common.logs
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
            continue
        match = _TRITON_LINE.match(line)
        if match:
            level, source, message = match.groups()
            TRITON_LOG.log(_TRITON_LEVELS[level], message, extra={"source": source})
        else:
            TRITON_LOG.info(line)


def run_triton(plan: LaunchPlan) -> int:
    process = subprocess.Popen(
        plan.command, env=plan.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )

    def forward(signum: int, _frame: FrameType | None) -> None:
        LOG.info("forwarding %s to tritonserver", signal.Signals(signum).name)
        if process.poll() is None:
            process.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    pump = threading.Thread(target=_log_triton_output, args=(process.stdout,), name="triton-log", daemon=True)
    pump.start()
    code = process.wait()
    pump.join(timeout=5)
    LOG.info("tritonserver exited", extra={"exit_code": code})
    return code if code >= 0 else 128 - code


def main() -> None:
    settings = load_settings(EmbedderSettings)
    configure_logging("embedder", settings.log_level)
    try:
        plan = prepare(settings, dict(os.environ))
    except (StartupError, CheckpointError, TritonNotFound, AllocatorError) as error:
        LOG.error("embedder not started: %s", error)
        sys.exit(EXIT_CONFIG_ERROR)
    LOG.info(
        "starting tritonserver",
        extra={
            "identity": str(plan.identity),
            "grpc": f"{settings.host}:{settings.grpc_port}",
            "http": f"{settings.host}:{settings.http_port}",
            "model_repository": str(plan.model_repository),
        },
    )
    if plan.identity.untrained:
        LOG.warning("serving an UNTRAINED model (%s): embeddings are not meaningful", plan.identity)
    sys.exit(run_triton(plan))


if __name__ == "__main__":
    main()
