"""The backend's HTTP API (FastAPI), served over HTTPS."""
