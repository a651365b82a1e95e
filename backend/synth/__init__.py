"""Synthetic cohorts: deterministic members and their data in every input format.

`backend.synth.cohort` is the entry point (`python -m backend.synth.cohort`); the other
modules each write one format. Nothing here reads the clock, the environment or an
unseeded random source, so a seed names a cohort byte for byte.
"""
