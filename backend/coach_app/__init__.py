"""The coach app: a Panel dashboard behind the Hub login (Panel's generic OAuth provider
pointed at JupyterHub).

It holds no database credentials: every byte it shows comes from the governed backend,
asked over HTTPS with the signed-in coach's own Hub token (`client.py`), so the backend's
guard, consent rules and audit apply to each request the page makes exactly as to a
notebook's. Pages: the triage list (`triage.py`) and a member page (`member.py`) with
zoomable timelines (`timelines.py`, resolution chosen in `zoom.py`). The server entry
point is `server.py`; the local stack runs it as the supervised service `coach`."""
