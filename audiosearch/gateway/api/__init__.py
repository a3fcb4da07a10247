"""The public API: the RPC handlers and API-key authentication."""
