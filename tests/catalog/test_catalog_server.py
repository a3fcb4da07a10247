"""`python -m audiosearch.catalog.server`: configured from CATALOG_* variables, healthy, and stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from audiosearch.catalog.server import CatalogSettings
from audiosearch.common.ports import free_port

REPO = Path(__file__).resolve().parents[2]


def test_settings_come_from_catalog_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALOG_PORT", "6000")
    monkeypatch.setenv("CATALOG_DSN", "mysql://u:secret@db:3306/catalog")
    monkeypatch.setenv("CATALOG_DB_POOL_SIZE", "4")

    settings = CatalogSettings()

    assert (settings.port, settings.db_pool_size) == (6000, 4)
    assert settings.dsn.get_secret_value() == "mysql://u:secret@db:3306/catalog"
    assert "secret" not in repr(settings)


def test_defaults_serve_on_50053_from_a_local_sqlite_file(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("CATALOG_")]:
        monkeypatch.delenv(name)

    settings = CatalogSettings()

    assert settings.port == 50053
    assert settings.dsn.get_secret_value().startswith("sqlite:///")


def test_module_serves_until_sigterm_then_exits_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO)]),
        "CATALOG_PORT": str(port),
        "CATALOG_DSN": f"sqlite:///{tmp_path / 'catalog.db'}",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "audiosearch.catalog.server"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest()).status
        process.send_signal(signal.SIGTERM)
        _, logs = process.communicate(timeout=30)
    finally:
        process.kill()

    assert status == health_pb2.HealthCheckResponse.SERVING
    assert process.returncode == 0, logs
    assert '"msg": "schema migration applied"' in logs
    assert (tmp_path / "catalog.db").exists()


def test_bad_dsn_exits_with_a_readable_message(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO)]),
        "CATALOG_DSN": "postgres://nope",
    }

    result = subprocess.run(
        [sys.executable, "-m", "audiosearch.catalog.server"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode != 0
    assert "CATALOG_DSN" in result.stderr
    assert "Traceback" not in result.stderr
