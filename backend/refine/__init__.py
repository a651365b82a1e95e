"""Refinement: raw records -> normalised, validated observations (or quarantine)."""
