"""The public API: RPC handlers, request validation, uploads and API-key authentication."""
