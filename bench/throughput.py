"""Embedding throughput: seconds of audio embedded per second of wall time, end to end and against baselines.

    python -m bench.throughput [--sounds DIR] [--json [FILE]] [--via import|ingest] [--parallel N] [--copies N]
                               [--precision auto|float32|bfloat16|int8] [--limit N] [--budget SECONDS]

In one run, on the same machine:

  (a) the reference solution, emulated: for each file a freshly built Cnn14 (`audiosearch.embedder.cnn14`, the
      checkpoint loaded into it when there is one) embeds the whole decoded file at batch 1;
  (b) the same with the model kept in memory;
  (c) the gateway end to end: its own suite on free ports (Milvus Lite, SQLite, Triton; untrained weights unless
      var/models holds the checkpoint), every file through ImportAudio (or concurrent IngestAudio with
      --via ingest): upload, sha256, decode, resample, segment, embed in Triton, catalog, vectors, READY.
      --copies N ingests every file into N collections, for N times the work where the folder is small next to
      a GPU's rate. It also reports the cores each service kept busy and, with a GPU, nvidia-smi's utilisation;
  (d) the model alone, batched (32 windows of 2 s per forward pass on the CPU, 256 on a GPU): the ceiling;
  (e) the gateway's host path alone, in one thread: decode, resample, cut into stored windows, level, float16,
      landmarks, as the gateway does before it calls the embedder. Its rate per core says how many gateway cores one
      embedder (a GPU's figure from bench.embedder_serving) needs to be fed.

(a) and (b) include decoding and run for --budget seconds each over the files in a seeded order; (c) runs over
every file (or --limit of them). Rates are "audio s/s" (the files' decoded duration per wall second) and
"model-input s/s" (seconds of waveform the model saw: the gateway stores 2 s windows every 2 s, the last one
aligned to the end, and loops sounds shorter than a window to fill it). For (c) it also reads the gateway's
per-stage histograms (`audiosearch_stage_duration_seconds`) and Triton's batch statistics from their /metrics.

The load average before and after is printed: on a shared machine the rates are depressed.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import get_args

import grpc
import numpy as np
import torch

from audiosearch.common.loudness import normalise_loudness
from audiosearch.embedder.cnn14 import SAMPLE_RATE, Cnn14
from audiosearch.embedder.engine import MIN_SAMPLES, Embedder, Precision, RuntimeOptions, WeightsSource
from audiosearch.gateway.audio.decoding import AudioError, decode_audio
from audiosearch.gateway.audio.fingerprints import extract_landmarks
from audiosearch.gateway.audio.segments import cut_segments
from audiosearch.gateway.settings import GatewaySettings
from audiosearch.v1 import audiosearch_pb2 as pb
from audiosearch.v1 import audiosearch_pb2_grpc
from bench.metrics import delta, emit, gpu_sampler, scrape
from bench.support import (
    DEFAULT_SOUNDS,
    BenchSuite,
    checkpoint_env,
    machine,
    own_suite,
    shared_load_note,
    sound_files,
    tree_cpu_seconds,
)

CHUNK = 256 * 1024
COLLECTION = "bench_throughput"
GATEWAY_DEFAULT_PARALLEL_FILES: int = GatewaySettings.model_fields["import_parallel_files"].default
WINDOW_SECONDS = 2.0
INGEST_STAGES = ("dedupe", "decode", "embed", "catalog", "blob", "vectors", "ready")


# ------------------------------------------------------------------------------------------ in-process baselines


def _decoded(path: Path) -> np.ndarray | None:
    try:
        return decode_audio(path.read_bytes(), SAMPLE_RATE).samples
    except AudioError:
        return None


def _fresh_model(checkpoint: str | None) -> Cnn14:
    model = Cnn14()
    if checkpoint:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("model", state), strict=True)
    return model.eval()


def _whole_file(model: Cnn14, samples: np.ndarray) -> None:
    waveform = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None, :]
    if waveform.shape[1] < MIN_SAMPLES:  # the reference pads short sounds too: Cnn14 pools 32x in time
        waveform = waveform.repeat(1, -(-MIN_SAMPLES // waveform.shape[1]))[:, :MIN_SAMPLES]
    with torch.inference_mode():
        model(waveform)


def per_file_batch_1(files: list[Path], budget: float, fresh: bool, checkpoint: str | None, seed: int) -> dict:
    """(a) fresh=True: a new Cnn14 per file; (b) fresh=False: one model. Decoding included. Whole files, batch 1."""
    order = files[:]
    random.Random(seed).shuffle(order)
    model = None if fresh else _fresh_model(checkpoint)
    audio = model_input = 0.0
    done = 0
    started = time.perf_counter()
    for path in order:
        samples = _decoded(path)
        if samples is not None:
            current = _fresh_model(checkpoint) if fresh else model
            _whole_file(current, samples)
            audio += len(samples) / SAMPLE_RATE
            model_input += max(len(samples), MIN_SAMPLES) / SAMPLE_RATE
        done += 1
        if time.perf_counter() - started >= budget:
            break
    wall = time.perf_counter() - started
    return {"files": done, "audio_seconds": audio, "model_input_seconds": model_input, "wall_seconds": wall,
            "audio_per_second": audio / wall, "model_input_per_second": model_input / wall}


def model_ceiling(precision: str, budget: float, batch: int = 32, device: str = "cpu") -> dict:
    """(d) the engine alone, batches of 2 s windows, no decoding, no RPC."""
    options = RuntimeOptions(device=device, precision=precision, channels_last=device == "cuda")  # type: ignore[arg-type]
    embedder = Embedder.load(WeightsSource(untrained_seed=0), options)
    windows = (0.1 * np.random.default_rng(0).standard_normal((batch, int(WINDOW_SECONDS * SAMPLE_RATE)))
               ).astype(np.float32)
    embedder.embed(windows)
    calls = 0
    started = time.perf_counter()
    while time.perf_counter() - started < budget or calls < 2:
        embedder.embed(windows)
        calls += 1
    wall = time.perf_counter() - started
    seconds = calls * batch * WINDOW_SECONDS
    if device == "cuda":
        torch.cuda.synchronize()
    return {"precision": f"{precision}, {device}", "batch": batch, "model_input_seconds": seconds, "wall_seconds": wall,
            "model_input_per_second": seconds / wall}


def host_path(files: list[Path], budget: float, seed: int) -> dict:
    """(e) what the gateway does on its own cores before Triton, file after file in one thread."""
    order = files[:]
    random.Random(seed).shuffle(order)
    audio = model_input = 0.0
    done = 0
    by_format: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    for path in order:
        file_started = time.perf_counter()
        try:
            samples = decode_audio(path.read_bytes(), SAMPLE_RATE).samples
        except AudioError:
            samples = None
        if samples is not None:
            segments = cut_segments(samples, SAMPLE_RATE, WINDOW_SECONDS, WINDOW_SECONDS)
            wire = normalise_loudness(segments.windows).astype(np.float16)
            extract_landmarks(samples, SAMPLE_RATE)
            audio += len(samples) / SAMPLE_RATE
            model_input += wire.shape[0] * WINDOW_SECONDS
            kind = by_format.setdefault(path.suffix.lower(), {"files": 0, "audio_seconds": 0.0, "wall_seconds": 0.0})
            kind["files"] += 1
            kind["audio_seconds"] += len(samples) / SAMPLE_RATE
            kind["wall_seconds"] += time.perf_counter() - file_started
        done += 1
        if time.perf_counter() - started >= budget:
            break
    wall = time.perf_counter() - started
    return {"files": done, "audio_seconds": audio, "model_input_seconds": model_input, "wall_seconds": wall,
            "audio_per_second": audio / wall, "model_input_per_second": model_input / wall, "by_format": by_format}


# ------------------------------------------------------------------------------------------------- end to end


def _file_messages(path: Path) -> Iterator[pb.ImportAudioRequest]:
    yield pb.ImportAudioRequest(file=pb.ImportFileHeader(name=path.name))
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            yield pb.ImportAudioRequest(chunk=chunk)
    yield pb.ImportAudioRequest(file_end=pb.ImportFileEnd())


def via_import(client: audiosearch_pb2_grpc.AudioSearchServiceStub, files: list[Path]) -> list[dict]:
    def messages() -> Iterator[pb.ImportAudioRequest]:
        yield pb.ImportAudioRequest(header=pb.ImportAudioHeader(collection=COLLECTION))
        for path in files:
            yield from _file_messages(path)

    outcomes = []
    for response in client.ImportAudio(messages(), timeout=24 * 3600):
        kind = response.WhichOneof("event")
        if kind == "file":
            outcomes.append(_outcome(response.file.name, response.file.audio, response.file.already_existed,
                                     response.file.error.reason if response.file.HasField("error") else None))
        elif kind == "progress":
            progress = response.progress
            print(f"  {progress.files_done}/{len(files)} files, {progress.audio_seconds:.0f} s audio, "
                  f"{progress.audio_seconds_per_second:.1f} s/s, {progress.errors} errors", file=sys.stderr)
    return outcomes


def via_ingest(client: audiosearch_pb2_grpc.AudioSearchServiceStub, files: list[Path], parallel: int,
               collections: list[str]) -> list[dict]:
    def one(job: tuple[str, Path]) -> dict:
        collection, path = job

        def messages() -> Iterator[pb.IngestAudioRequest]:
            yield pb.IngestAudioRequest(header=pb.IngestAudioHeader(collection=collection, name=path.name))
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    yield pb.IngestAudioRequest(chunk=chunk)

        try:
            reply = client.IngestAudio(messages(), timeout=3600)
        except grpc.RpcError as error:
            return _outcome(path.name, None, False, error.code().name)
        return _outcome(path.name, reply.audio, reply.already_existed, None)

    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(one, [(collection, path) for collection in collections for path in files]))


def _outcome(name: str, audio: pb.AudioRecord | None, already: bool, error: str | None) -> dict:
    if error is not None or audio is None:
        return {"name": name, "error": error or "UNKNOWN"}
    return {"name": name, "duration": audio.duration_seconds, "segments": audio.segment_count,
            "already_existed": already}


def copy_collections(copies: int) -> list[str]:
    """Where each copy of the files goes: the same bytes in another collection are stored again, not deduplicated."""
    return [COLLECTION, *(f"{COLLECTION}_{copy}" for copy in range(1, copies))]


def service_cpu_seconds(bench: BenchSuite) -> dict[str, float]:
    """CPU seconds used so far by each service's process tree (the embedder's holds tritonserver and its stubs)."""
    pairs = zip(bench.suite.plans, bench.suite.processes, strict=True)
    return {plan.name: tree_cpu_seconds(process.pid) for plan, process in pairs}


def _gpu_summary(samples: list[tuple[float, float]]) -> dict | None:
    if not samples:
        return None
    return {"mean_utilisation_percent": float(np.mean([busy for busy, _ in samples])),
            "peak_memory_mib": max(memory for _, memory in samples), "samples": len(samples)}


def end_to_end(bench: BenchSuite, files: list[Path], via: str, parallel: int, copies: int = 1) -> dict:
    channel = grpc.insecure_channel(bench.gateway, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
    client = audiosearch_pb2_grpc.AudioSearchServiceStub(channel)
    collections = copy_collections(copies)
    for collection in collections:
        client.CreateCollection(pb.CreateCollectionRequest(name=collection))
    gateway_before, triton_before = scrape(bench.ports.gateway_metrics), scrape(bench.ports.triton_metrics)
    cpu_before = service_cpu_seconds(bench)
    started = time.perf_counter()
    with gpu_sampler() as gpu:
        outcomes = (via_import(client, files) if via == "import"
                    else via_ingest(client, files, parallel, collections))
    wall = time.perf_counter() - started
    cpu_after = service_cpu_seconds(bench)
    gateway_after, triton_after = scrape(bench.ports.gateway_metrics), scrape(bench.ports.triton_metrics)
    channel.close()
    stored = [outcome for outcome in outcomes if "error" not in outcome and not outcome["already_existed"]]
    audio = sum(outcome["duration"] for outcome in stored)
    model_input = sum(outcome["segments"] for outcome in stored) * WINDOW_SECONDS
    stages = {stage: delta(gateway_after, gateway_before, "audiosearch_stage_duration_seconds_sum",
                           flow="ingest", stage=stage) for stage in INGEST_STAGES}
    compute_us = delta(triton_after, triton_before, "nv_inference_compute_infer_duration_us_total")
    executions = delta(triton_after, triton_before, "nv_inference_exec_count_total")
    inferences = delta(triton_after, triton_before, "nv_inference_count_total")
    requests = delta(triton_after, triton_before, "nv_inference_request_success_total")
    return {
        "via": via, "files": len(outcomes), "copies": copies, "stored": len(stored),
        "errors": [[outcome["name"], outcome["error"]] for outcome in outcomes if "error" in outcome],
        "audio_seconds": audio, "model_input_seconds": model_input, "wall_seconds": wall,
        "audio_per_second": audio / wall, "model_input_per_second": model_input / wall,
        "stage_thread_seconds": stages,
        "service_cores": {name: (cpu_after[name] - cpu_before[name]) / wall for name in cpu_before},
        "gpu": _gpu_summary(gpu),
        "triton": {
            "requests": requests, "windows": inferences, "batches": executions,
            "mean_batch": inferences / executions if executions else 0.0,
            "mean_queue_ms": delta(triton_after, triton_before, "nv_inference_queue_duration_us_total") / 1000
            / max(requests, 1),
            # Triton adds a batch's compute time to each request in it: per request, not per execution.
            "mean_compute_ms_per_request": compute_us / 1000 / max(requests, 1),
        },
    }


# ------------------------------------------------------------------------------------------------- report


def _rate_rows(result: dict) -> list[tuple[str, str, str, str]]:
    entries = [("(a) reference: new Cnn14 per file, batch 1", result.get("baseline_new_model")),
               ("(b) model in memory, whole file, batch 1", result.get("baseline_model_in_memory"))]
    e2e = result.get("end_to_end")
    if e2e:
        copies = f" x {e2e['copies']} collections" if e2e.get("copies", 1) > 1 else ""
        entries.append((f"(c) gateway end to end ({e2e['via']}, {e2e['files'] // e2e.get('copies', 1)} files{copies})",
                        e2e))
    entries += [(f"(d) model only, batch {c['batch']} x 2 s, {c['precision']}", c) for c in result.get("ceilings", [])]
    entries.append(("(e) gateway host path only, one thread", result.get("host_path")))
    rows = []
    for label, entry in entries:
        if entry is None:
            continue
        audio = f"{entry['audio_per_second']:.1f}" if "audio_per_second" in entry else "-"
        work = entry.get("audio_seconds", entry["model_input_seconds"])
        rows.append((label, audio, f"{entry['model_input_per_second']:.1f}",
                     f"{work:.0f} s in {entry['wall_seconds']:.0f} s"))
    return rows


def _end_to_end_lines(e2e: dict, base: dict | None) -> list[str]:
    lines = []
    rate = e2e["audio_per_second"]
    if base:
        lines.append(f"\nend to end vs the reference baseline: {rate:.1f} vs {base['audio_per_second']:.1f} "
                     f"audio s/s ({rate / base['audio_per_second']:.1f}x)")
    overlap = e2e["model_input_seconds"] / max(e2e["audio_seconds"], 1e-9)
    lines.append(f"the gateway's windows cost {overlap:.2f} s of model input per s of audio "
                 "(stored windows: 2 s every 2 s, the last one end-aligned; short sounds looped to 2 s, plus a "
                 "core loop where they decay)")
    stages = e2e["stage_thread_seconds"]
    busy = sum(stages.values()) or 1.0
    lines.append("\ngateway stages (thread-seconds summed over concurrent files; from its /metrics):")
    lines += [f"  {stage:8s} {seconds:8.1f} s  {100 * seconds / busy:5.1f} %"
              for stage, seconds in stages.items() if seconds > 0]
    cores = ", ".join(f"{name} {used:.1f}" for name, used in e2e["service_cores"].items())
    lines.append(f"cores busy during (c), per service (CPU seconds / wall seconds): {cores}")
    gpu = e2e.get("gpu")
    if gpu:
        lines.append(f"GPU during (c): busy {gpu['mean_utilisation_percent']:.0f} % on average "
                     f"({gpu['samples']} nvidia-smi samples), peak memory {gpu['peak_memory_mib']:.0f} MiB")
    triton = e2e["triton"]
    lines.append(f"triton: {triton['requests']:.0f} requests, {triton['windows']:.0f} windows in "
                 f"{triton['batches']:.0f} batches (mean batch {triton['mean_batch']:.1f}), mean queue "
                 f"{triton['mean_queue_ms']:.0f} ms/request, compute (its batch's run) "
                 f"{triton['mean_compute_ms_per_request']:.0f} ms/request")
    if e2e["errors"]:
        distinct = sorted({(name, reason) for name, reason in e2e["errors"]})
        shown = ", ".join(f"{name}: {reason}" for name, reason in distinct[:5])
        lines.append(f"ingests refused: {len(e2e['errors'])} ({shown})")
        if any(reason == "ABORTED" for _, reason in distinct):
            lines.append("  (ABORTED: the same bytes, under another name, were being ingested into that collection)")
    return lines


def table(result: dict) -> str:
    rows = _rate_rows(result)
    width = max((len(row[0]) for row in rows), default=10)
    lines = [f"{'measurement':{width}s}  {'audio s/s':>9s}  {'model-input s/s':>15s}  work",
             *(f"{a:{width}s}  {b:>9s}  {c:>15s}  {d}" for a, b, c, d in rows)]
    if result.get("end_to_end"):
        lines += _end_to_end_lines(result["end_to_end"], result.get("baseline_new_model"))
    if result.get("host_path"):
        formats = sorted(result["host_path"]["by_format"].items(), key=lambda item: -item[1]["audio_seconds"])
        lines.append("\n(e) by format: " + ", ".join(
            f"{suffix} {kind['audio_seconds'] / kind['wall_seconds']:.0f} audio s/s "
            f"({kind['files']} files, {1000 * kind['wall_seconds'] / kind['files']:.0f} ms each)"
            for suffix, kind in formats))
    lines.append("\n" + result["load_note"])
    if not result.get("cuda"):
        lines.append("GPU: unmeasured (no GPU on this machine); the embedder uses KIND_GPU and float16 when torch "
                     "sees CUDA, and this bench adds the model-only GPU ceilings there")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    files = sound_files(args.sounds)
    if args.limit:
        files = sorted(random.Random(args.seed).sample(files, min(args.limit, len(files))))
    checkpoint = checkpoint_env().get("EMBEDDER_CHECKPOINT_PATH")
    before = machine()
    result: dict = {"sounds": str(args.sounds), "files": len(files), "checkpoint": checkpoint or "untrained",
                    "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
                    "machine_before": before}
    overrides = {"GATEWAY_IMPORT_PARALLEL_FILES": str(args.parallel),
                 "GATEWAY_MAX_CONCURRENT_INGESTS": str(max(args.parallel, 8))}
    if args.precision != "auto":
        overrides["EMBEDDER_PRECISION"] = args.precision
    steps: list[tuple[str, Callable[[], object]]] = []
    if not args.skip_gateway:
        def gateway() -> dict:
            with own_suite(overrides, keep_state=args.keep_state) as bench:
                print(f"(c) end to end through the gateway, {len(files)} files x {args.copies} ...", file=sys.stderr)
                return end_to_end(bench, files, args.via, args.parallel, args.copies)
        steps.append(("end_to_end", gateway))
    if not args.skip_baseline:
        steps.append(("baseline_model_in_memory",
                      lambda: per_file_batch_1(files, args.budget, False, checkpoint, args.seed)))
        steps.append(("baseline_new_model", lambda: per_file_batch_1(files, args.budget, True, checkpoint, args.seed)))
    ceilings = [("float32", "cpu", 32), ("bfloat16", "cpu", 32), ("int8", "cpu", 32)]
    if torch.cuda.is_available():
        ceilings += [("float16", "cuda", 256), ("float32", "cuda", 256)]
    steps.append(("ceilings", lambda: [model_ceiling(precision, args.budget / 3, batch, device)
                                       for precision, device, batch in ceilings]))
    steps.append(("host_path", lambda: host_path(files, args.budget, args.seed)))
    for name, step in steps:
        print(f"running {name} ...", file=sys.stderr)
        result[name] = step()
    result["machine_after"] = machine()
    result["load_note"] = shared_load_note(before, result["machine_after"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sounds", type=Path, default=DEFAULT_SOUNDS, help="folder of sounds (default %(default)s)")
    parser.add_argument("--via", choices=["import", "ingest"], default="import",
                        help="ImportAudio stream (default) or concurrent IngestAudio calls")
    parser.add_argument("--parallel", type=int, default=GATEWAY_DEFAULT_PARALLEL_FILES,
                        help="files in flight: GATEWAY_IMPORT_PARALLEL_FILES, or IngestAudio calls (default "
                             "%(default)s, the gateway's own)")
    parser.add_argument("--precision", choices=["auto", *get_args(Precision)], default="auto",
                        help="the suite embedder's EMBEDDER_PRECISION (default: its own choice)")
    parser.add_argument("--limit", type=int, help="end to end over N files only (a seeded random choice)")
    parser.add_argument("--copies", type=int, default=1,
                        help="with --via ingest: every file into N collections, N times the audio (default 1)")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds for each baseline (default 60)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-baseline", action="store_true", help="leave out (a) and (b)")
    parser.add_argument("--skip-gateway", action="store_true", help="leave out (c)")
    parser.add_argument("--keep-state", action="store_true", help="keep the suite's state directory (logs)")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE", help="JSON to FILE, or stdout")
    args = parser.parse_args()
    if args.copies < 1 or (args.copies > 1 and args.via != "ingest"):
        parser.error("--copies N needs N >= 1, and N > 1 needs --via ingest")
    result = run(args)
    emit(table(result), result, args.json)


if __name__ == "__main__":
    main()
