"""Envelope encryption: a master key behind a small KMS interface wraps one data key per
member; erasing a member destroys their data key (crypto-shredding)."""
