"""The gateway: the only public surface. Composition root in server.py; flows in ingest/ and query/."""
