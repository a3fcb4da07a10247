"""Embedder throughput on Triton: seconds of audio embedded per wall second, served and in process, one run.

    python -m bench.embedder_serving [--device auto|cpu|cuda] [--precision auto|float32|float16|bfloat16|int8]
        [--instances N] [--max-batch N] [--batch-seconds S] [--channels-last auto|true|false] [--compile]
        [--clients P] [--threads T] [--request-windows B] [--duration S] [--warmup S] [--skip-engine]
        [--checkpoint FILE] [--json [FILE]]

  (a) the engine alone: `Embedder.embed` in this process, built from the same settings the served model
      instances get, on batches of --max-batch windows of 2 s: the ceiling for the served figure;
  (b) the embedder as deployed: `python -m audiosearch.embedder.server` (tritonserver, Python backend, dynamic
      batching) and P client processes with T threads each, every thread on its own gRPC channel, each sending
      requests of B windows of 2 s of noise as FP16 tensors, as the gateway does, for --duration seconds after
      --warmup seconds.

Reported: audio s/s for both, request latency p50/p99, Triton's executions (mean batch in windows), its queue and
compute time per request, and the GPU's utilisation and memory sampled with nvidia-smi when there is a GPU. The
weights are untrained unless --checkpoint is given: the speed is the same.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import numpy as np
import torch
import tritonclient.grpc as triton

from audiosearch.embedder.cnn14 import SAMPLE_RATE
from audiosearch.embedder.engine import Embedder, Precision
from audiosearch.embedder.identity import TRITON_MODEL_NAME
from audiosearch.embedder.launch import EmbedderHandle, start_embedder
from audiosearch.embedder.server import instance_plan, use_gpu, weights_source
from audiosearch.embedder.settings import EmbedderSettings
from bench.metrics import delta, emit, gpu_sampler, percentiles, scrape

WINDOW_SECONDS = 2.0
WINDOW = int(WINDOW_SECONDS * SAMPLE_RATE)
DISTINCT_INPUTS = 3  # requests rotate through a few arrays, so no cache sees the same bytes twice in a row


@dataclass(frozen=True)
class ClientPlan:
    address: str
    threads: int
    request_windows: int
    start_at: float  # time.time() shared by every client process
    measure_until: float
    seed: int


@dataclass(frozen=True)
class Completion:
    finished_at: float
    latency_seconds: float
    windows: int


def server_env(args: argparse.Namespace) -> dict[str, str]:
    """The EMBEDDER_* settings the served embedder gets; the in-process engine is built from the same."""
    return {
        "EMBEDDER_DEVICE": args.device,
        "EMBEDDER_PRECISION": args.precision,
        "EMBEDDER_CHANNELS_LAST": args.channels_last,
        "EMBEDDER_COMPILE": str(args.compile).lower(),
        "EMBEDDER_INSTANCE_COUNT": str(args.instances),
        "EMBEDDER_MAX_BATCH_SIZE": str(args.max_batch),
        "EMBEDDER_BATCH_SECONDS": str(args.batch_seconds),
        "EMBEDDER_MAX_QUEUE_DELAY_US": str(args.max_queue_delay_us),
        "EMBEDDER_UNTRAINED": str(args.checkpoint is None).lower(),
        "EMBEDDER_CHECKPOINT_PATH": str(args.checkpoint or ""),
        "EMBEDDER_LOG_LEVEL": "WARNING",
    }


def settings_from(env: dict[str, str]) -> EmbedderSettings:
    return EmbedderSettings(**{key.removeprefix("EMBEDDER_").lower(): value for key, value in env.items()})


def engine_rate(settings: EmbedderSettings, seconds: float) -> dict[str, object]:
    """The in-process engine, built exactly as a served model instance builds it, on full batches."""
    gpu = use_gpu(settings)
    _, plan = instance_plan(settings, weights_source(settings), gpu)
    embedder = Embedder.load(plan.weights(), plan.runtime("cuda:0" if gpu else "cpu"))
    rng = np.random.default_rng(0)
    batches = [(0.1 * rng.standard_normal((settings.max_batch_size, WINDOW))).astype(np.float16)
               for _ in range(DISTINCT_INPUTS)]
    for batch in batches:  # warm-up: allocator, cuDNN algorithm choice, compilation
        embedder.embed(batch)
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or calls < DISTINCT_INPUTS:
        embedder.embed(batches[calls % DISTINCT_INPUTS])
        calls += 1
    elapsed = time.perf_counter() - started
    del embedder
    if gpu:
        torch.cuda.empty_cache()
    audio = calls * settings.max_batch_size * WINDOW_SECONDS
    return {"audio_seconds_per_second": audio / elapsed, "calls": calls, "elapsed_s": elapsed,
            "precision": plan.precision, "channels_last": plan.channels_last, "compile": plan.compile,
            "batch_windows": settings.max_batch_size}


def _client_thread(plan: ClientPlan, seed: int, completions: list[Completion]) -> None:
    rng = np.random.default_rng(seed)
    inputs = []
    for _ in range(DISTINCT_INPUTS):
        waveform = triton.InferInput("waveform", [plan.request_windows, WINDOW], "FP16")
        waveform.set_data_from_numpy((0.1 * rng.standard_normal((plan.request_windows, WINDOW))).astype(np.float16))
        inputs.append(waveform)
    outputs = [triton.InferRequestedOutput("embedding"), triton.InferRequestedOutput("tags")]
    client = triton.InferenceServerClient(plan.address)
    time.sleep(max(0.0, plan.start_at - time.time()))
    sent = 0
    while time.time() < plan.measure_until:
        began = time.time()
        result = client.infer(TRITON_MODEL_NAME, [inputs[sent % DISTINCT_INPUTS]], outputs=outputs,
                              client_timeout=120.0)
        finished = time.time()
        if result.as_numpy("embedding").shape != (plan.request_windows, 2048):
            raise RuntimeError("the embedder answered with the wrong shape")
        completions.append(Completion(finished, finished - began, plan.request_windows))
        sent += 1
    client.close()


def client_process(plan: ClientPlan) -> list[Completion]:
    """One client process: `plan.threads` threads, each with its own channel; completions of every request."""
    completions: list[Completion] = []
    threads = [threading.Thread(target=_client_thread, args=(plan, plan.seed * 1000 + index, completions))
               for index in range(plan.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return completions


def served_rate(handle: EmbedderHandle, args: argparse.Namespace) -> dict[str, object]:
    start_at = time.time() + 10.0  # every client process is up and has its inputs before anyone sends
    measure_from = start_at + args.warmup
    measure_until = measure_from + args.duration
    plans = [ClientPlan(handle.grpc_address, args.threads, args.request_windows, start_at, measure_until, seed)
             for seed in range(args.clients)]
    context = multiprocessing.get_context("spawn")  # never fork a process that may hold a CUDA context
    with context.Pool(args.clients) as pool:
        pending = pool.map_async(client_process, plans)
        time.sleep(max(0.0, measure_from - time.time()))
        before = scrape(handle.metrics_port)
        with gpu_sampler() as gpu:
            time.sleep(max(0.0, measure_until - time.time()))
        after = scrape(handle.metrics_port)
        completions = [completion for batch in pending.get() for completion in batch]
    measured = [c for c in completions if measure_from <= c.finished_at <= measure_until]
    windows = sum(c.windows for c in measured)
    requests = delta(after, before, "nv_inference_request_success_total", model=TRITON_MODEL_NAME)
    executions = delta(after, before, "nv_inference_exec_count_total", model=TRITON_MODEL_NAME)
    inferences = delta(after, before, "nv_inference_count_total", model=TRITON_MODEL_NAME)

    def per_request_ms(name: str) -> float:
        return delta(after, before, name, model=TRITON_MODEL_NAME) / max(requests, 1) / 1000

    utilisation = [u for u, _ in gpu]
    return {
        "audio_seconds_per_second": windows * WINDOW_SECONDS / args.duration,
        "requests": len(measured),
        "latency_ms": {key: value * 1000 for key, value in percentiles([c.latency_seconds for c in measured]).items()},
        "triton_mean_batch_windows": inferences / executions if executions else 0.0,
        "triton_queue_ms_per_request": per_request_ms("nv_inference_queue_duration_us_total"),
        "triton_compute_ms_per_request": per_request_ms("nv_inference_compute_infer_duration_us_total"),
        "gpu_utilisation_mean_pct": float(np.mean(utilisation)) if utilisation else None,
        "gpu_memory_max_mib": max((m for _, m in gpu), default=None),
    }


def report(args: argparse.Namespace, engine: dict[str, object] | None, served: dict[str, object]) -> str:
    device = torch.cuda.get_device_name(0) if use_gpu(settings_from(server_env(args))) else "CPU"
    lines = [f"embedder throughput on {device}: {args.instances} instance(s), max batch {args.max_batch} windows, "
             f"{args.clients}x{args.threads} clients sending {args.request_windows} windows of 2 s per request, "
             f"{args.duration:g} s measured after {args.warmup:g} s warm-up"]
    if engine is not None:
        lines.append(f"  (a) engine in process ({engine['precision']}, channels_last={engine['channels_last']}, "
                     f"compile={engine['compile']}, batch {engine['batch_windows']}): "
                     f"{engine['audio_seconds_per_second']:,.0f} s/s")
    latency = served["latency_ms"]
    assert isinstance(latency, dict)
    lines.append(f"  (b) served by Triton over gRPC: {served['audio_seconds_per_second']:,.0f} s/s; "
                 f"request p50 {latency.get('p50', 0):.0f} ms p99 {latency.get('p99', 0):.0f} ms")
    lines.append(f"      mean executed batch {served['triton_mean_batch_windows']:.1f} windows; per request: "
                 f"queue {served['triton_queue_ms_per_request']:.1f} ms, "
                 f"compute {served['triton_compute_ms_per_request']:.1f} ms")
    if served["gpu_utilisation_mean_pct"] is not None:
        lines.append(f"      GPU utilisation mean {served['gpu_utilisation_mean_pct']:.0f} %, memory max "
                     f"{served['gpu_memory_max_mib']:.0f} MiB")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--precision", choices=["auto", *get_args(Precision)], default="auto")
    parser.add_argument("--channels-last", choices=["auto", "true", "false"], default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--instances", type=int, default=1, help="model instances (Triton instance_group count)")
    parser.add_argument("--max-batch", type=int, default=64, help="windows per Triton batch")
    parser.add_argument("--batch-seconds", type=float, default=64.0, help="audio per forward pass")
    parser.add_argument("--max-queue-delay-us", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--threads", type=int, default=2, help="threads per client process")
    parser.add_argument("--request-windows", type=int, default=16, help="2 s windows per request")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--engine-seconds", type=float, default=10.0)
    parser.add_argument("--skip-engine", action="store_true")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--json", nargs="?", const="-", help="write the figures as JSON (to stdout with no FILE)")
    args = parser.parse_args()

    env = server_env(args)
    engine = None if args.skip_engine else engine_rate(settings_from(env), args.engine_seconds)
    with tempfile.TemporaryDirectory(prefix="audiosearch-embedder-bench-") as state:
        handle = start_embedder(Path(state), env=env, timeout_seconds=900)
        try:
            served = served_rate(handle, args)
        finally:
            handle.stop()
    emit(report(args, engine, served), {"engine": engine, "served": served, "arguments": vars(args)}, args.json)


if __name__ == "__main__":
    main()
