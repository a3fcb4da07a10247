"""Benchmarks run against a live suite through the public API (`make bench`); not tests."""
