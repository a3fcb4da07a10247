"""What `make run` shows: a sample set ingested into the `demo` collection, then a search with an excerpt."""

from __future__ import annotations

import io
from pathlib import Path

import grpc
import numpy as np
import soundfile

from audiosearch.common.errors import reason_of
from audiosearch.v1 import audiosearch_pb2 as pb
from audiosearch.v1 import audiosearch_pb2_grpc

COLLECTION = "demo"
SAMPLE_RATE = 44_100
CHUNK_BYTES = 64 * 1024


def synth(kind: str, seconds: float = 4.0, rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    if kind == "siren":
        signal = np.sin(2 * np.pi * (700 + 300 * np.sin(2 * np.pi * 0.5 * t)) * t)
    elif kind == "drums":
        signal = np.zeros_like(t)
        for beat in np.arange(0, seconds, 0.25):
            start = int(beat * rate)
            hit = rng.standard_normal(2000) * np.exp(-np.arange(2000) / 300)
            signal[start : start + 2000] += hit[: len(signal) - start]
    elif kind == "chord":
        signal = sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)) / 3
    elif kind == "chirp":
        signal = np.sin(2 * np.pi * (200 * t + 900 * t**2))
    elif kind == "rain":
        signal = np.convolve(rng.standard_normal(len(t)), np.ones(8) / 8, mode="same")
    elif kind == "morse":
        signal = np.sin(2 * np.pi * 880 * t) * (np.sin(2 * np.pi * 3 * t) > 0.3)
    elif kind == "hum":
        signal = sum(np.sin(2 * np.pi * 50 * k * t) / k for k in range(1, 8)) + 0.05 * rng.standard_normal(len(t))
    elif kind == "birds":
        signal = np.zeros_like(t)
        for start in rng.uniform(0, seconds - 0.2, 12):
            n = int(0.15 * rate)
            tt = np.arange(n) / rate
            chirp = np.sin(2 * np.pi * (3000 + 8000 * tt) * tt) * np.hanning(n)
            index = int(start * rate)
            signal[index : index + n] += chirp
    else:
        raise ValueError(kind)
    return (0.4 * signal / np.max(np.abs(signal))).astype(np.float32)


def sample_set(folder: Path) -> Path:
    """Six distinct synthetic sounds in several formats; made once, offline."""
    folder.mkdir(parents=True, exist_ok=True)
    formats = {"siren": "flac", "drums": "wav", "chord": "ogg", "chirp": "wav", "rain": "flac", "morse": "wav"}
    for seed, (kind, extension) in enumerate(formats.items()):
        path = folder / f"{kind}.{extension}"
        if not path.exists():
            soundfile.write(path, synth(kind, 6.0, seed=seed), SAMPLE_RATE)
    return folder


def _ingest(stub: audiosearch_pb2_grpc.AudioSearchServiceStub, path: Path) -> pb.IngestAudioResponse:
    data = path.read_bytes()
    messages = [pb.IngestAudioRequest(header=pb.IngestAudioHeader(collection=COLLECTION, name=path.name,
                                                                  metadata={"source": "demo"}))]
    messages += [pb.IngestAudioRequest(chunk=data[i : i + CHUNK_BYTES]) for i in range(0, len(data), CHUNK_BYTES)]
    return stub.IngestAudio(iter(messages), timeout=300)


def _excerpt(path: Path) -> bytes:
    samples, rate = soundfile.read(path, dtype="float32")
    excerpt = samples[int(1.5 * rate) : int(4.5 * rate)] * 0.5
    buffer = io.BytesIO()
    soundfile.write(buffer, excerpt, rate, format="WAV")
    return buffer.getvalue()


def show(gateway: str, samples: Path) -> None:
    with grpc.insecure_channel(gateway) as channel:
        stub = audiosearch_pb2_grpc.AudioSearchServiceStub(channel)
        try:
            stub.CreateCollection(pb.CreateCollectionRequest(name=COLLECTION, description="make run demo"))
        except grpc.RpcError as error:
            if reason_of(error) != "COLLECTION_EXISTS":
                raise
        model = stub.GetCollection(pb.GetCollectionRequest(name=COLLECTION)).collection.model
        print(f"\nembedding model: {model.name} {model.version}")
        if model.untrained:
            print("  UNTRAINED weights (no checkpoint found; `make weights` fetches it): scores and tags measure the\n"
                  "  pipeline, not the model")
        files = sorted(p for p in samples.iterdir() if p.is_file())
        print(f"\ningesting {len(files)} sounds from {samples} into collection {COLLECTION!r}:")
        for path in files:
            reply = _ingest(stub, path)
            audio = reply.audio
            tags = ", ".join(tag.label for tag in audio.tags[:3])
            state = "already there" if reply.already_existed else "ingested"
            print(f"  {path.name:24s} {state:13s} {audio.duration_seconds:5.1f} s  {audio.codec:18s} tags: {tags}")
        query = files[0]
        print(f"\nsearching with a 3 s excerpt of {query.name} (from 1.5 s, at half the volume):")
        result = stub.SearchAudio(pb.SearchAudioRequest(collection=COLLECTION, audio_content=_excerpt(query),
                                                        top_k=5, min_score=-1.0), timeout=60)
        for rank, match in enumerate(result.matches, 1):
            ref, qry = match.reference_range, match.query_range
            print(f"  {rank}. {match.audio.name:24s} score {match.score:.3f}  "
                  f"reference {ref.start_seconds:.1f}-{ref.end_seconds:.1f} s  "
                  f"query {qry.start_seconds:.1f}-{qry.end_seconds:.1f} s")
        print(f"\ntry: .venv/bin/audiosearch search --collection {COLLECTION} {query}")
