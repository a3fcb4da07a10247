"""The search service: segment vectors in Milvus (Lite file, standalone server or cluster) behind gRPC."""
