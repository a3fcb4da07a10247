"""bench.vector_index's pure parts on tiny inputs: the queries, the exact top 10, recall, the projection and the
memory extrapolation (the Milvus runs are the bench's own)."""

from __future__ import annotations

import numpy as np

from bench.vector_index import (
    DIM,
    Projection,
    candidates,
    exact_top_k,
    extrapolated_bytes,
    noisy_copies,
    recall_at_k,
    synthetic_vectors,
    unit_rows,
)


def test_synthetic_vectors_are_unit_rows_of_the_full_dimension() -> None:
    vectors = synthetic_vectors(50, seed=0)
    assert vectors.shape == (50, DIM)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_noisy_copies_stay_near_a_stored_vector() -> None:
    vectors = unit_rows(np.random.default_rng(0).standard_normal((200, 64)))
    queries = noisy_copies(vectors, 20, np.random.default_rng(1))
    assert queries.shape == (20, 64)
    nearest = (queries @ vectors.T).max(axis=1)
    assert np.all(nearest > 0.8)


def test_the_exact_top_k_of_a_stored_vector_starts_with_itself() -> None:
    vectors = unit_rows(np.random.default_rng(2).standard_normal((300, 32)))
    truth = exact_top_k(vectors[:5], vectors, k=10)
    assert truth.shape == (5, 10)
    assert all(row in set(ids.tolist()) for row, ids in enumerate(truth))


def test_recall_counts_the_true_neighbours_among_the_first_k_found() -> None:
    truth = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    assert recall_at_k([[4, 3, 2, 1, 9], [8, 7, 6, 5]], truth, k=4) == 1.0
    assert recall_at_k([[1, 2, 0, 0], [9, 9, 9, 5]], truth, k=4) == 3 / 8
    assert recall_at_k([[0, 0, 0, 0, 1], [5, 6, 7, 8]], truth, k=4) == 0.5  # a hit past the first k does not count


def test_a_projection_that_keeps_every_direction_ranks_as_the_full_vectors() -> None:
    rng = np.random.default_rng(3)
    vectors = unit_rows(rng.standard_normal((400, 8)) @ rng.standard_normal((8, 64)))  # rank 8 in 64-d
    queries = noisy_copies(vectors, 10, rng)
    projection = Projection.fit(vectors, 16)
    assert projection.basis.shape == (16, 64)
    assert projection.explained(vectors) > 0.999
    truth = exact_top_k(queries, vectors)
    assert recall_at_k(exact_top_k(projection.query(queries), projection.stored(vectors)), truth) > 0.99


def test_memory_is_extrapolated_per_catalog_hour() -> None:
    assert extrapolated_bytes(1000.0, 1800) == {"10h": 18e6, "100h": 180e6, "1000h": 1.8e9}


def test_compressed_indexes_hold_fewer_bytes_per_vector_by_their_layout() -> None:
    by_name = {name: candidate.model_bytes_per_vector() for name, candidate in candidates().items()}
    assert by_name["IVF_PQ64"] < by_name["IVF_PQ128"] < by_name["IVF_SQ8"] < by_name["FLAT"] < by_name["HNSW"]
    assert by_name["PCA256_IVF_SQ8"] < by_name["PCA512_IVF_SQ8"] < by_name["IVF_SQ8"]
