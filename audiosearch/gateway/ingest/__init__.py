"""The write flows: one ingest, bulk import, and the reconciler that repairs interrupted writes."""
