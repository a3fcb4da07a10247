"""The embedder's memory under requests of every size, without the rest of the suite: where it settles, and where.

    python -m bench.embedder_memory [--minutes 8] [--clients 4] [--max-windows 64] [--interval 10]
                                    [--warmup-seconds 120] [--env KEY=VALUE ...] [--checkpoint FILE] [--json [FILE]]

`bench.load` reads the embedder's resident memory while 16 clients search and ingest; on a slow machine it makes
few calls, and a 2-minute warm-up may end before the embedder has seen the request sizes that set its size. This
bench starts the embedder as deployed (`python -m audiosearch.embedder.server`: tritonserver, Python backend,
dynamic batching; untrained weights unless --checkpoint) and keeps it busy: --clients threads, each sending
requests of a random number (1 to --max-windows) of 2 s windows of noise as FP16, the gateway's wire format.
`--env` adds environment to the embedder's (EMBEDDER_PRECISION=float32, MALLOC_ARENA_MAX=2, ...), to try a
setting against the same load.

Per interval it prints the calls so far and the resident memory of each process of the embedder (the launcher,
tritonserver, the model instance's Python stub). At the end, per process and in all, from the end of the warm-up:
the start-to-end growth (means of MEMORY_SAMPLES readings), the trend (rise of a fitted line), and the peak.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton

from audiosearch.embedder.cnn14 import SAMPLE_RATE
from audiosearch.embedder.identity import TRITON_MODEL_NAME
from audiosearch.embedder.launch import EmbedderHandle, start_embedder
from bench.load import MEMORY_SAMPLES, memory_growth
from bench.metrics import emit
from bench.support import key_values, machine, process_rss
from devtools.support.processes import process_tree

WINDOW = 2 * SAMPLE_RATE


class Clients:
    """Threads sending requests of random sizes until `stop` is set; counts calls and windows."""

    def __init__(self, handle: EmbedderHandle, count: int, max_windows: int, seed: int) -> None:
        self._handle = handle
        self._max_windows = max_windows
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.calls = self.windows = 0
        self._threads = [threading.Thread(target=self._run, args=(seed + index,), daemon=True)
                         for index in range(count)]

    def __enter__(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        client = self._handle.client()
        while not self._stop.is_set():
            count = int(rng.integers(1, self._max_windows + 1))
            waveform = triton.InferInput("waveform", [count, WINDOW], "FP16")
            waveform.set_data_from_numpy((rng.standard_normal((count, WINDOW)) * 0.1).astype(np.float16))
            client.infer(TRITON_MODEL_NAME, [waveform], client_timeout=600)
            with self._lock:
                self.calls += 1
                self.windows += count


def rss_by_process(pid: int) -> dict[str, int]:
    """Resident MiB of each process in the tree under `pid`, by its command name (the same name summed)."""
    found: dict[str, int] = {}
    for name, rss in filter(None, map(process_rss, process_tree(pid))):
        found[name] = found.get(name, 0) + rss // 2**20
    return found


def run(args: argparse.Namespace, handle: EmbedderHandle) -> dict:
    rows: list[dict] = []
    started = time.monotonic()
    with Clients(handle, args.clients, args.max_windows, args.seed) as clients:
        while (elapsed := time.monotonic() - started) < args.minutes * 60:
            time.sleep(max(0.0, args.interval * (len(rows) + 1) - elapsed))
            memory = rss_by_process(handle.process.pid)
            rows.append({"seconds": round(time.monotonic() - started), "calls": clients.calls,
                         "windows": clients.windows, "rss_mb": {**memory, "all": sum(memory.values())}})
            listed = " ".join(f"{name} {mb}" for name, mb in rows[-1]["rss_mb"].items())
            print(f"{rows[-1]['seconds']:5d} s  {clients.calls:5d} calls  RSS MB: {listed}", file=sys.stderr,
                  flush=True)
        wall = time.monotonic() - started
        calls, windows = clients.calls, clients.windows
    settled = [row["rss_mb"] for row in rows if row["seconds"] >= args.warmup_seconds]
    names = sorted({name for reading in settled for name in reading})
    growth = ({name: memory_growth([reading.get(name, 0) for reading in settled]) for name in names}
              if len(settled) >= 2 * MEMORY_SAMPLES else {})
    return {"minutes": args.minutes, "clients": args.clients, "max_windows": args.max_windows, "env": args.env,
            "calls": calls, "windows": windows, "audio_seconds_per_second": windows * WINDOW / SAMPLE_RATE / wall,
            "intervals": rows, "growth": growth, "warmup_seconds": args.warmup_seconds, "machine": machine()}


def table(result: dict) -> str:
    lines = [f"{result['calls']} calls, {result['windows']} windows of 2 s "
             f"({result['audio_seconds_per_second']:.1f} audio s/s) from {result['clients']} clients in "
             f"{result['minutes']:g} min; env {result['env'] or 'as deployed'}",
             f"memory (RSS MB) after the {result['warmup_seconds']:g} s warm-up -> end (means of {MEMORY_SAMPLES} "
             "readings); trend over the window; peak"]
    for name, item in result["growth"].items():
        lines.append(f"  {name:28s} {item['after_warmup_mb']:6d} -> {item['end_mb']:6d}  ({item['growth']:+.1%}; "
                     f"trend {item['trend']:+.1%}; peak {item['peak_mb']})")
    if not result["growth"]:
        lines.append("  too few readings after the warm-up: run longer or read more often")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.embedder_memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-windows", type=int, default=64, help="most windows per request (the embedder's "
                        "default max batch: 64)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds per reading")
    parser.add_argument("--warmup-seconds", type=float, default=120.0, help="growth is measured from here on")
    parser.add_argument("--env", nargs="*", default=[], metavar="KEY=VALUE", help="added to the embedder's env")
    parser.add_argument("--checkpoint", type=Path, help="Cnn14_mAP=0.431.pth; default: untrained weights")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE", help="JSON to FILE, or stdout")
    args = parser.parse_args()
    env = key_values(args.env, "--env")
    with tempfile.TemporaryDirectory(prefix="audiosearch-embedder-memory-") as state, start_embedder(
            Path(state), untrained=args.checkpoint is None, checkpoint_path=args.checkpoint, env=env,
            timeout_seconds=900) as handle:
        result = run(args, handle)
    emit(table(result), result, args.json)


if __name__ == "__main__":
    main()
