"""The local stack: provisioning and supervising TimescaleDB, Redis and Prefect on one machine."""
