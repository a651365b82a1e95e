"""Governance: who may see what, with whose consent, and the record of every request."""
