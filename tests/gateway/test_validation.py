import pytest

from audiosearch.common.errors import InvalidArgument
from audiosearch.gateway import validation
from audiosearch.v1 import audiosearch_pb2 as pb


@pytest.mark.parametrize("name", ["", "Upper", "1starts_with_digit", "has-dash", "x" * 64, "a/b", "../etc"])
def test_bad_collection_names_are_refused(name):
    with pytest.raises(InvalidArgument) as failure:
        validation.collection_name(name)
    assert failure.value.metadata["field"] == "collection"


@pytest.mark.parametrize("name", ["", "   ", "a\x00b", "x" * 513, "line\nbreak"])
def test_bad_audio_names_are_refused(name):
    with pytest.raises(InvalidArgument):
        validation.audio_name(name)


def test_names_with_path_separators_and_unicode_are_plain_labels():
    assert validation.audio_name("../../etc/passwd — ünïcødé.wav") == "../../etc/passwd — ünïcødé.wav"


def test_top_k_zero_takes_default_and_huge_is_refused():
    assert validation.top_k(0, default=10) == 10
    with pytest.raises(InvalidArgument):
        validation.top_k(10**9, default=10)


def test_oversized_metadata_is_refused():
    with pytest.raises(InvalidArgument):
        validation.metadata({"k": "v" * 2000})
    with pytest.raises(InvalidArgument):
        validation.metadata({f"k{i}": "v" for i in range(65)})


def test_segment_config_defaults_and_bounds():
    config = validation.segment_config(pb.SegmentConfig(), 2.0, 1.0)
    assert (config.window_seconds, config.hop_seconds) == (2.0, 1.0)
    with pytest.raises(InvalidArgument):
        validation.segment_config(pb.SegmentConfig(window_seconds=2.0, hop_seconds=3.0), 2.0, 1.0)
