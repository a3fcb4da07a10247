"""The launcher up to the tritonserver command: settings, refusal without weights, generated repository."""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from google.protobuf import text_format
from pydantic import ValidationError
from tritonclient.grpc import model_config_pb2

from audiosearch.common.allocator import JEMALLOC_LIBRARY
from audiosearch.embedder.engine import WeightsSource, available_cores, untrained_cnn14
from audiosearch.embedder.identity import ModelIdentity
from audiosearch.embedder.instance import InstancePlan, device_for_instance, parameters_from_model_config
from audiosearch.embedder.repository import read_template, render_config, write_repository
from audiosearch.embedder.server import (
    StartupError,
    cpu_has_amx_bfloat16,
    instance_count,
    instance_plan,
    prepare,
    weights_source,
)
from audiosearch.embedder.settings import EmbedderSettings
from audiosearch.embedder.tritonserver import REPO_ROOT, TritonDistribution, build_backend_dir

IDENTITY = ModelIdentity(checkpoint_sha256=None, seed=0, centering_tag="abcd1234")


def settings(**values: object) -> EmbedderSettings:
    return EmbedderSettings(**values)  # type: ignore[arg-type]


def test_without_a_checkpoint_the_launcher_refuses_to_start() -> None:
    with pytest.raises(StartupError, match=r"EMBEDDER_CHECKPOINT_PATH.*EMBEDDER_UNTRAINED=true"):
        weights_source(settings())


def test_the_server_process_exits_non_zero_with_a_clear_message_without_weights(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "EMBEDDER_STATE_DIR": str(tmp_path), "EMBEDDER_CHECKPOINT_PATH": ""}
    result = subprocess.run(
        [sys.executable, "-m", "audiosearch.embedder.server"],
        check=False,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 2
    assert "no model weights" in result.stderr


def test_a_missing_checkpoint_file_stops_the_launcher(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="not found"):
        prepare(settings(checkpoint_path=tmp_path / "absent.pth", state_dir=tmp_path), {})


def test_untrained_mode_wins_over_a_checkpoint_path() -> None:
    source = weights_source(settings(untrained=True, seed=5, checkpoint_path=Path("absent.pth")))

    assert source == WeightsSource(untrained_seed=5)


def test_settings_reject_bad_values() -> None:
    with pytest.raises(ValidationError, match="64 hexadecimal"):
        settings(checkpoint_sha256="abc")
    with pytest.raises(ValidationError, match="must differ"):
        settings(grpc_port=9000, http_port=9000)


def test_settings_come_from_embedder_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDDER_UNTRAINED", "true")
    monkeypatch.setenv("EMBEDDER_GRPC_PORT", "18001")

    loaded = EmbedderSettings()

    assert loaded.untrained
    assert loaded.grpc_port == 18001


def test_the_checkpoint_sha256_is_pinned_for_the_model_instances(tmp_path: Path) -> None:
    path = tmp_path / "cnn14.pth"
    torch.save({"model": untrained_cnn14(0).state_dict()}, path)
    source = weights_source(settings(checkpoint_path=path))

    identity, plan = instance_plan(settings(checkpoint_path=path), source, gpu=False)

    assert plan.checkpoint_sha256 == identity.checkpoint_sha256
    assert plan.weights().expected_sha256 == identity.checkpoint_sha256
    assert plan.precision == ("bfloat16" if cpu_has_amx_bfloat16() else "float32")
    assert not plan.channels_last


def test_on_a_cpu_bfloat16_is_chosen_only_where_the_cpu_has_amx(tmp_path: Path) -> None:
    amx, avx512_only, without = tmp_path / "amx", tmp_path / "avx512", tmp_path / "plain"
    amx.write_text("processor : 0\nflags : fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n")
    avx512_only.write_text("processor : 0\nflags : fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n")
    without.write_text("processor : 0\nflags : fpu sse avx2 avx512f avx512bw\n")

    assert cpu_has_amx_bfloat16(amx)
    assert not cpu_has_amx_bfloat16(avx512_only)
    assert not cpu_has_amx_bfloat16(without)
    assert not cpu_has_amx_bfloat16(tmp_path / "missing")


def test_on_a_gpu_instances_default_to_float16_and_channels_last() -> None:
    _, plan = instance_plan(settings(untrained=True), WeightsSource(untrained_seed=0), gpu=True)

    assert plan.precision == "float16"
    assert plan.channels_last


def test_by_default_a_gpu_gets_one_instance_and_a_cpu_two_single_threaded_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("audiosearch.embedder.server.available_cores", lambda: 2)
    monkeypatch.setattr("audiosearch.embedder.engine.available_cores", lambda: 2)

    assert instance_count(settings(), gpu=True) == 1
    assert instance_count(settings(), gpu=False) == 2
    assert instance_count(settings(instance_count=3), gpu=False) == 3
    _, plan = instance_plan(settings(untrained=True), WeightsSource(untrained_seed=0), gpu=False)
    assert plan.num_threads == 1


def test_one_core_gets_one_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("audiosearch.embedder.server.available_cores", lambda: 1)

    assert instance_count(settings(), gpu=False) == 1


def test_a_cgroup_cpu_quota_caps_the_cores_the_engine_counts(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"

    cpu_max.write_text("150000 100000\n")  # a pod limited to 1.5 cores
    assert available_cores(cpu_max) == min(affinity, 2)
    cpu_max.write_text("max 100000\n")
    assert available_cores(cpu_max) == affinity
    assert available_cores(tmp_path / "missing") == affinity


def test_instance_parameters_round_trip_through_strings() -> None:
    plan = InstancePlan(
        untrained_seed=3, precision="bfloat16", num_threads=4, compile=True, batch_samples=1000
    )

    parameters = plan.to_parameters(IDENTITY)

    assert all(isinstance(value, str) for value in parameters.values())
    assert InstancePlan.from_parameters(parameters) == plan
    assert parameters["model_identity"] == "panns_cnn14:untrained-seed0:center=abcd1234"
    assert parameters["model_version"] == "untrained-seed0:center=abcd1234"
    assert parameters["untrained"] == "true"


def test_the_generated_config_has_the_contract_the_gateway_reads(tmp_path: Path) -> None:
    config = render_config(read_template(), InstancePlan().to_parameters(IDENTITY), False, 2, 1234, 64)
    repository = write_repository(tmp_path / "repo", config)

    written = model_config_pb2.ModelConfig()
    text_format.Parse((repository / "panns_cnn14" / "config.pbtxt").read_text(), written)
    assert (repository / "panns_cnn14" / "1" / "model.py").is_file()
    assert written.name == "panns_cnn14"
    assert written.backend == "python"
    assert written.max_batch_size == 64
    assert [(i.name, i.dims) for i in written.input] == [("waveform", [-1])]
    assert [(o.name, list(o.dims)) for o in written.output] == [("embedding", [2048]), ("tags", [527])]
    assert written.dynamic_batching.max_queue_delay_microseconds == 1234
    assert [(g.kind, g.count) for g in written.instance_group] == [
        (model_config_pb2.ModelInstanceGroup.KIND_CPU, 2)
    ]
    public = {
        key: written.parameters[key].string_value for key in ("embedding_dim", "sample_rate", "untrained")
    }
    assert public == {"embedding_dim": "2048", "sample_rate": "32000", "untrained": "true"}


def test_max_batch_size_sets_the_batch_limit_and_the_preferred_sizes() -> None:
    config = render_config(read_template(), {}, True, 4, 100, max_batch_size=256)

    assert config.max_batch_size == 256
    assert list(config.dynamic_batching.preferred_batch_size) == [128, 256]
    assert [(g.kind, g.count) for g in config.instance_group] == [(model_config_pb2.ModelInstanceGroup.KIND_GPU, 4)]


def test_the_waveform_input_is_float16_unless_float32_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDDER_WAVEFORM_DTYPE", "float32")
    chosen = EmbedderSettings().waveform_dtype

    default = render_config(read_template(), {}, False, 1, 100, 64)
    full = render_config(read_template(), {}, False, 1, 100, 64, waveform_dtype=chosen)

    assert [(i.name, i.data_type) for i in default.input] == [("waveform", model_config_pb2.DataType.TYPE_FP16)]
    assert [(i.name, i.data_type) for i in full.input] == [("waveform", model_config_pb2.DataType.TYPE_FP32)]
    with pytest.raises(ValidationError, match="waveform_dtype"):
        settings(waveform_dtype="int16")


def test_a_gpu_gets_a_gpu_instance_group() -> None:
    config = render_config(read_template(), {}, True, 1, 100, 64)

    assert [g.kind for g in config.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_GPU]


def test_triton_json_parameters_and_instance_kinds_are_read() -> None:
    config = {"parameters": {"model_identity": {"string_value": "x"}, "empty": {}}}

    assert parameters_from_model_config(config) == {"model_identity": "x", "empty": ""}
    assert device_for_instance("GPU", "1") == "cuda:1"
    assert device_for_instance("CPU", "0") == "cpu"


def test_prepare_writes_repository_and_backend_dir_and_sets_the_interpreter_env(tmp_path: Path) -> None:
    plan = prepare(
        settings(untrained=True, state_dir=tmp_path, grpc_port=18101, http_port=18100), {"PATH": "/bin"}
    )

    backend = tmp_path / "backends" / "python"
    assert {p.name for p in backend.iterdir()} == {
        "libtriton_python.so",
        "triton_python_backend_utils.py",
        "triton_python_backend_stub",
    }
    assert all(p.resolve().exists() for p in backend.iterdir())
    assert plan.env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert str(REPO_ROOT) in plan.env["EMBEDDER_SITE_DIRS"].split(":")
    assert "--grpc-port=18101" in plan.command
    assert "--grpc-address=127.0.0.1" in plan.command
    assert _written_parameters(plan.model_repository)["model_identity"] == str(plan.identity)


def test_the_model_sees_the_launchers_pythonpath_between_the_repository_and_site_packages(tmp_path: Path) -> None:
    plan = prepare(
        settings(untrained=True, state_dir=tmp_path), {"PATH": "/bin", "PYTHONPATH": f"/opt/extra{os.pathsep}/opt/more"}
    )

    site_dirs = plan.env["EMBEDDER_SITE_DIRS"].split(os.pathsep)
    assert site_dirs[:3] == [str(REPO_ROOT), "/opt/extra", "/opt/more"]
    assert site_dirs[3:] == site.getsitepackages()


def _written_parameters(repository: Path) -> dict[str, str]:
    config = model_config_pb2.ModelConfig()
    text_format.Parse((repository / "panns_cnn14" / "config.pbtxt").read_text(), config)
    return {key: value.string_value for key, value in config.parameters.items()}


def _fake_distribution(tmp_path: Path) -> TritonDistribution:
    stub = tmp_path / "dist" / "triton_python_backend_stub"
    stub.parent.mkdir()
    stub.write_text('#!/bin/sh\necho "${LD_PRELOAD-unset}|$*"\n')
    stub.chmod(0o755)
    return TritonDistribution(server=tmp_path / "dist" / "tritonserver", python_backend=tmp_path / "dist",
                              stub=stub, libs=tmp_path / "dist")


def test_a_server_on_jemalloc_starts_the_model_stub_on_glibc_keeping_other_preloads(tmp_path: Path) -> None:
    dist = _fake_distribution(tmp_path)
    backend = build_backend_dir(dist, tmp_path / "backends", f"/usr/lib/{JEMALLOC_LIBRARY} /opt/trace.so")

    launcher = backend / "python" / "triton_python_backend_stub"
    assert not launcher.is_symlink()
    env = {"PATH": "/usr/bin:/bin", "LD_PRELOAD": f"/usr/lib/{JEMALLOC_LIBRARY} /opt/trace.so"}
    printed = subprocess.run([str(launcher), "model", "--key=1"], env=env, capture_output=True, text=True, check=True)
    assert printed.stdout.strip() == "/opt/trace.so|model --key=1"


def test_a_launcher_with_nothing_else_preloaded_unsets_the_preload(tmp_path: Path) -> None:
    backend = build_backend_dir(_fake_distribution(tmp_path), tmp_path / "backends", f"/usr/lib/{JEMALLOC_LIBRARY}")

    env = {"PATH": "/usr/bin:/bin", "LD_PRELOAD": f"/usr/lib/{JEMALLOC_LIBRARY}"}
    printed = subprocess.run([str(backend / "python" / "triton_python_backend_stub")], env=env, capture_output=True,
                             text=True, check=True)
    assert printed.stdout.strip() == "unset|"


def test_on_a_noexec_mount_the_stub_stays_a_symlink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("audiosearch.embedder.tritonserver.mounted_noexec", lambda path: True)
    dist = _fake_distribution(tmp_path)
    backend = build_backend_dir(dist, tmp_path / "backends", f"/usr/lib/{JEMALLOC_LIBRARY}")

    assert (backend / "python" / "triton_python_backend_stub").resolve() == dist.stub


def test_without_jemalloc_the_stub_is_the_distributions_own(tmp_path: Path) -> None:
    dist = _fake_distribution(tmp_path)
    backend = build_backend_dir(dist, tmp_path / "backends", "/opt/trace.so")

    assert (backend / "python" / "triton_python_backend_stub").resolve() == dist.stub


def test_the_system_allocator_choice_leaves_tritonserver_without_a_preload(tmp_path: Path) -> None:
    plan = prepare(settings(untrained=True, state_dir=tmp_path), {"PATH": "/bin", "AUDIOSEARCH_MALLOC": "system"})

    assert "LD_PRELOAD" not in plan.env
    assert (tmp_path / "backends" / "python" / "triton_python_backend_stub").is_symlink()
