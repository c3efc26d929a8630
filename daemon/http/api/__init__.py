"""The HTTP API under `/api/v1`, one module per family of resources (docs/http-api.md)."""
