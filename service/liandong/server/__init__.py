"""Serving rule sets over gRPC: configuration, conversion, errors, metrics, reload, and the server."""
