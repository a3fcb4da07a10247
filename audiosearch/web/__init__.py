"""The HTTP/JSON API, its OpenAPI document and the web page, over the gateway's gRPC API."""
