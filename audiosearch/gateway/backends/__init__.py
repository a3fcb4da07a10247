"""Clients of the internal services (embedder, search, catalog) and the store of originals."""
