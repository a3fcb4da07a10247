"""The write flows: reading uploads, one ingest, bulk import, and the reconciler that repairs interrupted writes."""
