"""deploy/monitoring: the alert rules and the Grafana dashboard read series the services really export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import audiosearch.common.metrics
import audiosearch.gateway.metrics
import audiosearch.search.store  # noqa: F401 - registers the Milvus latency histogram
from audiosearch.common.metrics import HEAP_SERIES

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
SERIES = re.compile(r"\b((?:audiosearch|nv)_[a-z0-9_]+)")
# What Triton exports per model (checked against a live Triton in tests/integration/test_observability.py).
TRITON_SERIES = {
    "nv_inference_count", "nv_inference_exec_count", "nv_inference_queue_duration_us", "nv_inference_request_success",
    "nv_inference_request_failure", "nv_inference_pending_request_count", "nv_inference_request_duration_us",
}


# Exported only by a process on jemalloc (checked in tests/common/test_metrics.py); pytest runs on glibc.
ALLOCATOR_SERIES = {HEAP_SERIES}


def alert_rules() -> list[dict]:
    document = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    assert (document["apiVersion"], document["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    return [rule for group in document["spec"]["groups"] for rule in group["rules"]]


def dashboard() -> dict:
    return json.loads((MONITORING / "grafana-dashboard.json").read_text())


def dashboard_queries() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel.get("targets", [])]


def used_series() -> set[str]:
    """Every series name the dashboard's queries and the alert rules read."""
    queries = [*dashboard_queries(), *(rule["expr"] for rule in alert_rules())]
    return {name for query in queries for name in SERIES.findall(query)}


def exported_series() -> set[str]:
    """Sample names of the audiosearch metrics in the default registry, as Prometheus stores them."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {
        family.name + suffix
        for family in REGISTRY.collect() if family.name.startswith("audiosearch_")
        for suffix in suffixes.get(family.type, ("",))
    }


def test_alerts_and_dashboard_query_only_series_that_exist() -> None:
    known = exported_series() | TRITON_SERIES | ALLOCATOR_SERIES
    used = used_series()
    assert used, "no series found in deploy/monitoring"
    assert used <= known, f"unknown series: {sorted(used - known)}"


def test_alerts_cover_errors_latency_embedder_queue_availability_and_repairs() -> None:
    rules = alert_rules()
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
    exprs = {rule["alert"]: rule["expr"] for rule in rules}
    assert "audiosearch_rpc_total" in exprs["AudiosearchHighErrorRatio"]
    assert "audiosearch_rpc_duration_seconds_bucket" in exprs["AudiosearchSearchLatencyHigh"]
    assert "nv_inference_queue_duration_us" in exprs["AudiosearchEmbedderQueueTimeHigh"]
    assert "audiosearch_reconciler_repairs_total" in exprs["AudiosearchReconcilerRepairing"]
    absent = {rule["labels"]["service"] for rule in rules if rule["alert"] == "AudiosearchServiceAbsent"}
    assert absent == {"gateway", "embedder", "search", "catalog"}


def test_dashboard_shows_rpcs_ingest_embedder_batches_triton_queue_and_memory() -> None:
    board = dashboard()
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    queries = "\n".join(dashboard_queries())
    for series in ("audiosearch_rpc_total", "audiosearch_rpc_duration_seconds_bucket",
                   "audiosearch_ingest_audio_seconds_total", "audiosearch_embed_batch_size_sum",
                   "audiosearch_ingests_in_progress", "nv_inference_queue_duration_us", "nv_inference_exec_count",
                   "nv_inference_pending_request_count", HEAP_SERIES, "process_resident_memory_bytes"):
        assert series in queries, series
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
