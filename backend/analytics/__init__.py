"""The analytics zone: rollups and summaries derived from the processed zone."""
