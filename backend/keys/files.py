"""Key material on disk: files created once, atomically, by whichever process gets there
first (several backend workers may start together)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_once(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `data` (durably, with `mode`) unless it exists: written under a
    temporary name and linked into place, so a reader never sees half a file and a second
    writer never replaces the first one's."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
