"""The embedding engine: deterministic untrained weights, checkpoints, centering, any input length."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from audiosearch.common.loudness import normalise_loudness
from audiosearch.embedder.engine import (
    Embedder,
    EmbeddingBatch,
    InputError,
    RuntimeOptions,
    WeightsSource,
    chunk_sizes,
    row_groups,
    untrained_cnn14,
)
from tests.embedder.sounds import plucked_string, rain, siren

OPTIONS = RuntimeOptions(num_threads=2)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder.load(WeightsSource(untrained_seed=0), OPTIONS)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_embeddings_are_unit_vectors_and_tags_probabilities(embedder: Embedder) -> None:
    batch = embedder.embed(np.stack([plucked_string(), rain(), siren()]))

    assert batch.embeddings.shape == (3, 2048)
    assert batch.tags.shape == (3, 527)
    np.testing.assert_allclose(np.linalg.norm(batch.embeddings, axis=1), 1.0, atol=1e-5)
    assert ((batch.tags >= 0) & (batch.tags <= 1)).all()


def test_untrained_model_is_identical_across_loads_and_says_so(embedder: Embedder) -> None:
    sounds = np.stack([plucked_string(), rain()])
    again = Embedder.load(WeightsSource(untrained_seed=0), OPTIONS)

    assert np.array_equal(embedder.embed(sounds).embeddings, again.embed(sounds).embeddings)
    assert str(embedder.identity).startswith("panns_cnn14:untrained-seed0:center=")
    assert embedder.identity.untrained


def test_another_seed_is_another_identity(embedder: Embedder) -> None:
    other = Embedder.load(WeightsSource(untrained_seed=1), OPTIONS)

    assert str(other.identity) != str(embedder.identity)
    assert "untrained-seed1" in str(other.identity)


def test_a_gain_changed_copy_is_closer_than_an_unrelated_sound(embedder: Embedder) -> None:
    sound = plucked_string()
    out = embedder.embed(np.stack([sound, 0.5 * sound, rain(), siren()])).embeddings

    same = cosine(out[0], out[1])
    assert same > 0.9
    assert same > cosine(out[0], out[2]) + 0.2
    assert same > cosine(out[0], out[3]) + 0.2


def test_centering_removes_the_direction_all_raw_embeddings_share(embedder: Embedder) -> None:
    sounds = np.stack([plucked_string(), rain(), siren()])
    raw = embedder.raw_embeddings(sounds).numpy()
    centred = embedder.embed(sounds).embeddings

    raw_cosines = [cosine(raw[i], raw[j]) for i, j in ((0, 1), (0, 2), (1, 2))]
    centred_cosines = [cosine(centred[i], centred[j]) for i, j in ((0, 1), (0, 2), (1, 2))]
    assert min(raw_cosines) > 0.9
    assert max(centred_cosines) < min(raw_cosines) - 0.2


@pytest.mark.parametrize("samples", [1, 100, 16000])
def test_inputs_shorter_than_a_second_are_loop_padded(embedder: Embedder, samples: int) -> None:
    short = rain()[:samples]
    padded = np.resize(short, 32000)

    out = embedder.embed(np.stack([short])).embeddings

    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, embedder.embed(padded[None]).embeddings, atol=1e-5)


def as_the_gateway_sends(sounds: np.ndarray) -> np.ndarray:
    """Each window at -20 dBFS over a noise floor 40 dB under it."""
    return normalise_loudness(sounds)


def test_float16_rows_as_sent_on_the_wire_embed_like_their_float32_originals(embedder: Embedder) -> None:
    # float16 rounding noise lies ~66 dB under the signal, far below the gateway's noise floor. (Bare synthetic
    # tones, with mel bands near -inf dB, would move: siren() alone comes out at cosine 0.88.)
    sounds = as_the_gateway_sends(np.stack([plucked_string(), rain(), siren()]))
    exact = embedder.embed(sounds).embeddings

    wire = embedder.embed(sounds.astype(np.float16)).embeddings

    for index in range(len(sounds)):
        assert cosine(wire[index], exact[index]) > 0.9999
        others = [cosine(wire[index], exact[other]) for other in range(len(sounds)) if other != index]
        assert cosine(wire[index], exact[index]) > max(others) + 0.2


def test_embed_many_merges_same_length_requests_and_splits_them_back(embedder: Embedder) -> None:
    first, second, other_length = np.stack([rain(), siren()]), plucked_string()[None], rain(1.5)[None]

    results = embedder.embed_many([first, second, other_length])

    assert [r.embeddings.shape[0] for r in results] == [2, 1, 1]
    alone = embedder.embed(second).embeddings
    np.testing.assert_allclose(results[1].embeddings, alone, atol=1e-5)


def test_invalid_requests_get_an_error_and_do_not_spoil_the_others(embedder: Embedder) -> None:
    with_nan, with_inf = rain()[None].copy(), np.stack([siren(), rain()])
    with_nan[0, 100] = np.nan
    with_inf[1, 5] = -np.inf
    healthy = plucked_string()[None]
    assert with_nan.shape[1] == healthy.shape[1] == with_inf.shape[1]  # one forward pass holds all three

    results = embedder.embed_many([with_nan, healthy, with_inf, np.zeros((1, 0), np.float32)])

    assert [type(result) for result in results] == [InputError, EmbeddingBatch, InputError, InputError]
    assert "NaN or infinite" in str(results[0])
    assert "NaN or infinite" in str(results[2])
    assert "empty" in str(results[3])
    np.testing.assert_allclose(results[1].embeddings, embedder.embed(healthy).embeddings, atol=1e-5)
    with pytest.raises(InputError, match="NaN or infinite"):
        embedder.embed(with_nan)


def test_requests_split_across_forward_passes_come_back_whole_and_in_order(embedder: Embedder) -> None:
    requests = [np.stack([rain(), siren(), plucked_string()]), siren()[None], np.stack([plucked_string(), rain()])]
    two_rows_per_pass = Embedder.load(
        WeightsSource(untrained_seed=0), RuntimeOptions(num_threads=2, batch_samples=2 * 32000)
    )

    results = two_rows_per_pass.embed_many(requests)

    for request, result in zip(requests, results, strict=True):
        np.testing.assert_allclose(result.embeddings, embedder.embed(request).embeddings, atol=1e-5)


def test_row_groups_cut_the_rows_of_all_parts_into_groups_of_the_given_sizes() -> None:
    parts = [np.arange(3)[:, None], np.arange(3, 4)[:, None], np.arange(4, 9)[:, None]]

    groups = [np.concatenate(group).ravel().tolist() for group in row_groups(parts, [4, 2, 2, 1])]

    assert groups == [[0, 1, 2, 3], [4, 5], [6, 7], [8]]


def test_row_groups_refuse_sizes_that_leave_rows_over() -> None:
    with pytest.raises(ValueError, match="do not cover"):
        list(row_groups([np.zeros((5, 1))], [4]))


@pytest.mark.parametrize(
    ("rows", "sizes"),
    [(0, []), (32, [32]), (75, [32, 32, 8, 2, 1]), (31, [16, 8, 4, 2, 1]), (33, [32, 1]), (6, [4, 2])],
)
def test_forward_passes_take_full_chunks_then_powers_of_two(rows: int, sizes: list[int]) -> None:
    assert chunk_sizes(rows, 32) == sizes


def test_unbounded_passes_take_full_chunks_then_the_rest() -> None:
    assert chunk_sizes(75, 32, bounded=False) == [32, 32, 11]
    assert chunk_sizes(64, 32, bounded=False) == [32, 32]


def test_a_cpu_embedder_cuts_a_batch_into_full_chunks_then_powers_of_two(embedder: Embedder) -> None:
    one_second_rows = [np.zeros((70, 32000), np.float32), np.zeros((5, 32000), np.float32)]

    chunk_rows = [chunk.shape[0] for chunk in embedder._chunks(one_second_rows)]

    assert chunk_rows == [64, 8, 2, 1]  # 64 s of audio per pass by default


def test_any_mix_of_requests_runs_in_few_shapes() -> None:
    shapes = {size for rows in range(1, 200) for size in chunk_sizes(rows, 24)}

    assert shapes == {24, 16, 8, 4, 2, 1}


def test_too_long_inputs_are_refused() -> None:
    small = Embedder.load(WeightsSource(untrained_seed=0), RuntimeOptions(num_threads=2, max_samples=32000))

    with pytest.raises(InputError, match="exceeds the limit"):
        small.embed(np.zeros((1, 32001), np.float32))


def test_a_checkpoint_serves_its_weights_under_its_sha256(tmp_path: Path, embedder: Embedder) -> None:
    path = tmp_path / "cnn14.pth"
    torch.save({"model": untrained_cnn14(0).state_dict()}, path)

    loaded = Embedder.load(WeightsSource(checkpoint_path=path), OPTIONS)

    assert loaded.identity.checkpoint_sha256 is not None
    assert f"sha256={loaded.identity.checkpoint_sha256[:16]}" in str(loaded.identity)
    assert not loaded.identity.untrained
    sounds = np.stack([plucked_string(), rain()])
    np.testing.assert_array_equal(loaded.embed(sounds).embeddings, embedder.embed(sounds).embeddings)
