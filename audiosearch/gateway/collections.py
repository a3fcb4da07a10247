"""Collections: bound to the embedder's model identity at creation, checked on every write and query."""

from __future__ import annotations

from audiosearch.catalog.v1 import catalog_pb2 as cpb
from audiosearch.common.errors import FailedPrecondition
from audiosearch.gateway import validation
from audiosearch.gateway.backends.blobs import BlobStore
from audiosearch.gateway.backends.embedder import EmbedderClient, same_model
from audiosearch.gateway.backends.stubs import Backends
from audiosearch.gateway.settings import GatewaySettings
from audiosearch.search.v1 import search_pb2 as spb
from audiosearch.v1 import audiosearch_pb2 as pb


class Collections:
    def __init__(self, backends: Backends, embedder: EmbedderClient, settings: GatewaySettings,
                 blobs: BlobStore | None = None) -> None:
        self._backends = backends
        self._blobs = blobs
        self._embedder = embedder
        self._settings = settings

    def create(self, request: pb.CreateCollectionRequest) -> pb.Collection:
        name = validation.collection_name(request.name, field="name")
        model = self._embedder.model_identity()
        collection = pb.Collection(
            name=name,
            description=request.description[:2000],
            model=model,
            segment_config=validation.segment_config(
                request.segment_config, self._settings.default_window_seconds, self._settings.default_hop_seconds
            ),
            score_threshold=validation.score_threshold(
                request.score_threshold or self._settings.default_score_threshold
            ),
            threshold_source="default" if not request.score_threshold else "set at creation",
            landmark_threshold=0 if request.disable_landmarks else self._settings.default_landmark_threshold,
        )
        self._backends.search.EnsureCollection(
            spb.EnsureCollectionRequest(collection=name, dimension=model.embedding_dim),
            timeout=self._settings.admin_rpc_timeout_seconds,
        )
        return self._backends.catalog.CreateCollection(cpb.CreateCollectionRequest(collection=collection)).collection

    def get(self, name: str) -> pb.Collection:
        validation.collection_name(name)
        return self._backends.catalog.GetCollection(cpb.GetCollectionRequest(name=name)).collection

    def serving_model(self) -> pb.ModelIdentity:
        return self._embedder.model_identity()

    def get_for_model(self, name: str) -> pb.Collection:
        """The collection, refused when it was built with another model than the one serving now."""
        collection = self.get(name)
        serving = self._embedder.model_identity()
        if not same_model(collection.model, serving):
            raise FailedPrecondition(
                f"collection {name!r} holds vectors of model {collection.model.name}:{collection.model.version}, "
                f"but the embedder serves {serving.name}:{serving.version}; re-ingest into a new collection",
                reason="MODEL_MISMATCH", collection=name,
                collection_model=collection.model.version, serving_model=serving.version,
            )
        return collection

    def delete(self, name: str) -> None:
        validation.collection_name(name, field="name")
        self._backends.search.DropCollection(spb.DropCollectionRequest(collection=name),
                                             timeout=self._settings.admin_rpc_timeout_seconds)
        if self._blobs is not None:
            self._blobs.delete_prefix(name)
        self._backends.catalog.DeleteCollection(cpb.DeleteCollectionRequest(name=name))
