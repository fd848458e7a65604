"""The ingest API's logic: authenticate, read, validate and queue what clients send."""
