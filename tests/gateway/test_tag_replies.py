"""Replies that carry tags name the model that computed them, so a caller can tell an untrained model's tags (a
random init's probabilities) from classifications."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from audiosearch.gateway.audio.decoding import DecodedAudio
from audiosearch.gateway.audio.pipeline import EmbeddedAudio
from audiosearch.gateway.audio.segments import Segments
from audiosearch.gateway.backends.embedder import Embeddings
from audiosearch.gateway.query.search import Query
from audiosearch.gateway.settings import GatewaySettings
from audiosearch.search.v1 import search_pb2 as spb
from audiosearch.v1 import audiosearch_pb2 as pb

UNTRAINED = pb.ModelIdentity(name="panns_cnn14", version="untrained-seed0", embedding_dim=4, sample_rate_hz=32_000,
                             untrained=True)
TRAINED = pb.ModelIdentity(name="panns_cnn14", version="sha256=abcd", embedding_dim=4, sample_rate_hz=32_000)
SEGMENT_CONFIG = pb.SegmentConfig(window_seconds=2.0, hop_seconds=2.0)


class TwoWindowPipeline:
    """Four seconds cut in two windows; every window's loudest tag is class 0 at 0.51."""

    def __init__(self) -> None:
        self.rates: list[int] = []

    def decode(self, data, sample_rate_hz, max_duration_seconds=None):
        self.rates.append(sample_rate_hz)
        return DecodedAudio(np.zeros(4 * sample_rate_hz, np.float32), sample_rate_hz, 44_100, 1, "wav/pcm_16")

    def embed(self, audio, segment_config, cut):
        segments = Segments(np.zeros((2, 64_000), np.float32), np.array([0.0, 2.0]), np.array([2.0, 4.0]))
        probabilities = np.full((2, 527), 0.01, np.float32)
        probabilities[:, 0] = 0.51
        vectors = np.tile(np.array([1.0, 0.0, 0.0, 0.0], np.float32), (2, 1))
        return EmbeddedAudio(audio, segments, Embeddings(vectors, probabilities))


def no_hits(request: spb.SearchSegmentsRequest) -> spb.SearchSegmentsResponse:
    return spb.SearchSegmentsResponse(results=[spb.QueryHits() for _ in request.vectors])


@pytest.fixture
def pipeline() -> TwoWindowPipeline:
    return TwoWindowPipeline()


@pytest.fixture
def query(pipeline: TwoWindowPipeline) -> Query:
    backends = SimpleNamespace(search=SimpleNamespace(SearchSegments=no_hits), catalog=None)
    return Query(backends, pipeline, GatewaySettings())  # type: ignore[arg-type]


@pytest.mark.parametrize("model", [UNTRAINED, TRAINED], ids=["untrained", "trained"])
def test_tag_reply_names_the_model_that_computed_its_tags(query, pipeline, model) -> None:
    reply = query.tag(b"clip", model, SEGMENT_CONFIG, top_k=3)
    assert reply.model == model
    assert reply.model.untrained is model.untrained
    assert reply.tags[0].score == pytest.approx(0.51)
    assert len(reply.segments) == 2
    assert pipeline.rates == [model.sample_rate_hz]  # decoded at the rate of the model it names


@pytest.mark.parametrize("model", [UNTRAINED, TRAINED], ids=["untrained", "trained"])
def test_search_reply_names_the_collection_model_behind_its_query_tags(query, model) -> None:
    collection = pb.Collection(name="library", model=model, segment_config=SEGMENT_CONFIG, score_threshold=0.5)
    reply = query.search(collection, pb.SearchAudioRequest(collection="library", audio_content=b"clip"))
    assert reply.query_tags
    assert not reply.matches
    assert reply.model == model
    assert reply.model.untrained is model.untrained
