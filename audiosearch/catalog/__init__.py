"""The catalog service: collections, recordings and their segments, kept in MySQL (SQLite offline)."""
