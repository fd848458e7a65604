"""Bulk imports from S3: a CSV or NDJSON file split into byte ranges and queued for the sender (docs/imports.md)."""
