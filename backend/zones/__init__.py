"""The data zones: raw (landed payloads), processed, analytics, governance."""
