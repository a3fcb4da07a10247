"""What the search service refuses before Milvus sees it: names, ids, vectors."""

from __future__ import annotations

import numpy as np
import pytest

from audiosearch.common.errors import InvalidArgument
from audiosearch.search import validation
from audiosearch.search.store import audio_filter


def test_vector_bytes_decode_as_little_endian_float32() -> None:
    values = np.array([0.5, -1.0, 2.0], dtype="<f4")

    decoded = validation.decode_vector(values.tobytes(), 3, "vector")

    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, values)


@pytest.mark.parametrize("length", [0, 8, 11, 16])
def test_vector_of_the_wrong_byte_length_is_refused(length: int) -> None:
    with pytest.raises(InvalidArgument) as raised:
        validation.decode_vector(b"\x00" * length, 3, "vectors[2]")
    assert raised.value.reason == "INVALID_FIELD"
    assert raised.value.metadata == {"field": "vectors[2]"}


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_vector_with_non_finite_values_is_refused(bad: float) -> None:
    with pytest.raises(InvalidArgument):
        validation.decode_vector(np.array([0.0, bad], dtype="<f4").tobytes(), 2, "vector")


def test_several_vectors_decode_into_one_matrix() -> None:
    rows = np.arange(6, dtype="<f4").reshape(2, 3)

    matrix = validation.decode_vectors([row.tobytes() for row in rows], 3, "vectors")

    np.testing.assert_array_equal(matrix, rows)


@pytest.mark.parametrize("name", ["a", "demo", "my_collection_2", "a" * 63])
def test_collection_names_of_the_catalog_are_accepted(name: str) -> None:
    validation.check_collection_name(name)


@pytest.mark.parametrize("name", ["", "A", "_x", "9x", "x-y", "x y", "a" * 64, "x;drop"])
def test_other_collection_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidArgument):
        validation.check_collection_name(name)


@pytest.mark.parametrize("audio_id", ["0123456789abcdef0123456789abcdef", "rec-1", "a.b:c_d"])
def test_safe_audio_ids_are_accepted(audio_id: str) -> None:
    validation.check_audio_id(audio_id)


@pytest.mark.parametrize("audio_id", ["", 'x"', "x'", "x\\", "x y", "x]", "é", "x" * 65])
def test_audio_ids_that_could_break_a_filter_are_refused(audio_id: str) -> None:
    with pytest.raises(InvalidArgument):
        validation.check_audio_id(audio_id)


def test_too_many_audio_ids_are_refused() -> None:
    with pytest.raises(InvalidArgument):
        validation.check_audio_ids([f"a{i}" for i in range(validation.MAX_BATCH_IDS + 1)])


@pytest.mark.parametrize(("start", "end"), [(-1.0, 1.0), (2.0, 1.0), (np.nan, 1.0), (0.0, np.inf)])
def test_impossible_segment_times_are_refused(start: float, end: float) -> None:
    with pytest.raises(InvalidArgument):
        validation.check_segment_times(start, end, "segments[0].start_seconds")


def test_audio_filter_quotes_each_id() -> None:
    assert audio_filter(["a1", "b2"]) == 'audio_id in ["a1", "b2"]'
    assert audio_filter([]) == ""
