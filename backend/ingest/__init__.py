"""Ingestion: parse health formats, land payloads in the raw zone."""
