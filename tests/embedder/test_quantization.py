"""The int8 engine: its own model identity, reproducible, and close enough to float32 to keep neighbours."""

from __future__ import annotations

import numpy as np
import pytest

from audiosearch.embedder.engine import Embedder, RuntimeOptions, WeightsSource
from audiosearch.embedder.server import StartupError, instance_plan
from audiosearch.embedder.settings import EmbedderSettings
from tests.embedder.sounds import plucked_string, rain, siren
from tests.embedder.test_engine import as_the_gateway_sends, cosine

INT8 = RuntimeOptions(num_threads=2, precision="int8")
FLOAT32 = RuntimeOptions(num_threads=2)


@pytest.fixture(scope="module")
def int8() -> Embedder:
    return Embedder.load(WeightsSource(untrained_seed=0), INT8)


@pytest.fixture(scope="module")
def float32() -> Embedder:
    return Embedder.load(WeightsSource(untrained_seed=0), FLOAT32)


def sounds() -> np.ndarray:
    return as_the_gateway_sends(np.stack([plucked_string(), rain(), siren(), plucked_string(f0=523.0)]))


def test_int8_is_a_model_of_its_own(int8: Embedder, float32: Embedder) -> None:
    assert str(int8.identity) != str(float32.identity)
    assert str(int8.identity).startswith("panns_cnn14:untrained-seed0:int8-")
    assert int8.identity.centering_tag == float32.identity.centering_tag


def test_int8_embeddings_are_identical_across_loads(int8: Embedder) -> None:
    again = Embedder.load(WeightsSource(untrained_seed=0), INT8)

    assert str(again.identity) == str(int8.identity)
    assert np.array_equal(again.embed(sounds()).embeddings, int8.embed(sounds()).embeddings)


def test_int8_runs_quantized_yet_stays_near_float32(int8: Embedder, float32: Embedder) -> None:
    raw_int8 = int8.raw_embeddings(sounds()).numpy()
    raw_float32 = float32.raw_embeddings(sounds()).numpy()
    tags_int8, tags_float32 = int8.embed(sounds()).tags, float32.embed(sounds()).tags

    assert not np.array_equal(raw_int8, raw_float32)
    assert min(cosine(a, b) for a, b in zip(raw_int8, raw_float32, strict=True)) > 0.98
    assert np.abs(tags_int8 - tags_float32).max() < 0.02


def test_int8_finds_each_sound_from_a_noisy_copy(int8: Embedder) -> None:
    clean = sounds()
    noise = np.random.default_rng(7).standard_normal(clean.shape).astype(np.float32)
    noisy = as_the_gateway_sends(clean + 0.1 * np.sqrt(np.mean(clean**2, axis=1, keepdims=True)) * noise)

    stored = int8.embed(clean).embeddings
    queries = int8.embed(noisy).embeddings

    assert ((queries @ stored.T).argmax(axis=1) == np.arange(len(clean))).all()


@pytest.mark.parametrize("options", [{"device": "cuda"}, {"compile": True}])
def test_int8_is_refused_off_the_cpu_or_compiled(options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="int8"):
        RuntimeOptions(precision="int8", **options)  # type: ignore[arg-type]


def test_the_launcher_refuses_int8_on_a_gpu() -> None:
    settings = EmbedderSettings(untrained=True, precision="int8")  # type: ignore[call-arg]

    with pytest.raises(StartupError, match="int8"):
        instance_plan(settings, WeightsSource(untrained_seed=0), gpu=True)


def test_the_launcher_announces_the_int8_identity_its_instances_load(int8: Embedder) -> None:
    settings = EmbedderSettings(untrained=True, precision="int8")  # type: ignore[call-arg]

    identity, plan = instance_plan(settings, WeightsSource(untrained_seed=0), gpu=False)

    assert plan.precision == "int8"
    assert str(identity) == str(int8.identity)
