"""The gateway's own Prometheus metrics, beside the per-RPC ones of audiosearch/common/metrics.py (same registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from audiosearch.common.metrics import LATENCY_BUCKETS

INGEST_OUTCOMES = ("created", "already_existed", "failed", "rejected")

INGEST_AUDIO_SECONDS = Counter(
    "audiosearch_ingest_audio_seconds", "Seconds of audio in newly created recordings (decoded duration)"
)
INGESTS = Counter(
    "audiosearch_ingests",
    "IngestAudio calls by outcome: created, already_existed (same bytes), failed, rejected (no free ingest slot)",
    ["outcome"],
)
INGESTS_IN_PROGRESS = Gauge("audiosearch_ingests_in_progress", "Ingests running now (the gateway's ingest queue)")
INGEST_SLOTS = Gauge("audiosearch_ingest_slots", "Concurrent ingests allowed (GATEWAY_MAX_CONCURRENT_INGESTS)")

EMBED_DURATION = Histogram(
    "audiosearch_embed_request_duration_seconds", "Duration of one Triton infer request, queueing included",
    buckets=LATENCY_BUCKETS,
)
EMBED_BATCH_SIZE = Histogram(
    "audiosearch_embed_batch_size", "Windows sent in one Triton infer request",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
EMBED_ADMISSION_WAIT = Histogram(
    "audiosearch_embed_admission_wait_seconds",
    "Time a request of each kind of work (interactive, monitor, bulk) waited in the gateway before going to Triton",
    ["work"], buckets=LATENCY_BUCKETS,
)
EMBED_ERRORS = Counter("audiosearch_embed_errors", "Triton infer requests that failed")
EMBED_DATATYPE_REFUSALS = Counter(
    "audiosearch_embed_datatype_refusals",
    "Triton infer attempts refused with INVALID_ARGUMENT; the gateway then tries the other waveform datatype "
    "(4 attempts at most)",
)

STAGE_DURATION = Histogram(
    "audiosearch_stage_duration_seconds",
    "Time in each stage of a flow: ingest (dedupe, decode, embed, catalog, vectors, ready), search (decode, "
    "embed, search, catalog)",
    ["flow", "stage"], buckets=LATENCY_BUCKETS,
)
SEARCH_QUERY_SEGMENTS = Histogram(
    "audiosearch_search_query_segments", "Query windows (segments searched) per SearchAudio",
    buckets=(1, 2, 5, 10, 20, 60, 120, 300, 600),
)

RECONCILER_REPAIRS = Counter(
    "audiosearch_reconciler_repairs",
    "Records the reconciler purged, by the status they were left in (ORPHAN_VECTORS: vectors without a record)",
    ["was"],
)

for _outcome in INGEST_OUTCOMES:  # every series exists from the start, so rate() and alerts see a zero
    INGESTS.labels(_outcome)
for _status in ("AUDIO_STATUS_PENDING", "AUDIO_STATUS_DELETING", "ORPHAN_VECTORS"):
    RECONCILER_REPAIRS.labels(_status)
