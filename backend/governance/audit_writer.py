"""Group commit for the audit trail.

Every governed request waits for its audit record to be durable before it answers. The
chain makes appends serial (one lock, one hash after another), so one transaction and one
WAL flush per request caps the whole backend at a few hundred requests a second and
queues concurrent requests behind each other. The writer thread instead takes every
record waiting at that moment and appends them in one transaction, pipelined: one round
trip and one flush for the lot. Each request still returns only after its own record is
committed, in the order the records were handed over.

The writer also anchors the chain outside the database (audit_anchor.py): after every
`ANCHOR_EVERY` records, after `ANCHOR_SECONDS` with unanchored records, and on close.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager

import psycopg

from backend.governance.audit import AuditEvent, append_sql
from backend.governance.audit_anchor import ANCHOR_EVERY, ANCHOR_SECONDS, AnchorSigner
from backend.logs import get as get_logger

log = get_logger(__name__)

# Records per transaction at most: bounds the lock hold time and one failure's reach.
MAX_BATCH = 256


class AuditWriter:
    def __init__(
        self,
        connect: Callable[[], AbstractContextManager[psycopg.Connection]],
        anchor: AnchorSigner | None = None,
        anchor_every: int = ANCHOR_EVERY,
        anchor_seconds: float = ANCHOR_SECONDS,
    ) -> None:
        self._connect = connect
        self._anchor = anchor
        self._anchor_every = anchor_every
        self._anchor_seconds = anchor_seconds
        self._unanchored = 0
        self._since = time.monotonic()
        self._queue: queue.Queue[tuple[AuditEvent, Future[int]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def write(self, event: AuditEvent, timeout: float = 30.0) -> int:
        """Append one record; returns its sequence number once it is committed."""
        done: Future[int] = Future()
        self._queue.put((event, done))
        return done.result(timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(10)

    def _run(self) -> None:
        while True:
            try:
                # Asleep with unanchored records: wake up when they are due.
                first = self._queue.get(timeout=self._due() if self._unanchored else None)
            except queue.Empty:
                self._anchor_now()
                continue
            if first is None:
                self._anchor_now()
                return
            batch = [first]
            stopping = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._commit(batch)
            self._unanchored += len(batch)
            if self._unanchored >= self._anchor_every or self._due() == 0:
                self._anchor_now()
            if stopping:
                self._anchor_now()
                return

    def _due(self) -> float:
        return max(0.0, self._anchor_seconds - (time.monotonic() - self._since))

    def _anchor_now(self) -> None:
        self._since = time.monotonic()
        if self._anchor is None or not self._unanchored:
            self._unanchored = 0
            return
        try:
            with self._connect() as conn:
                self._anchor.anchor(conn)
            self._unanchored = 0
        except Exception as e:
            # Requests go on being audited; the records wait for the next anchor.
            log.error("could not anchor the audit chain", error=type(e).__name__)

    def _commit(self, batch: list[tuple[AuditEvent, Future[int]]]) -> None:
        try:
            seqs = self._append(batch)
        except Exception as e:
            if len(batch) == 1:
                batch[0][1].set_exception(e)
                return
            # One record the database refuses must not sink the others: one by one.
            log.warning("audit batch failed; retrying singly", error=type(e).__name__)
            for item in batch:
                self._commit([item])
            return
        for (_, done), seq in zip(batch, seqs, strict=True):
            done.set_result(seq)

    def _append(self, batch: list[tuple[AuditEvent, Future[int]]]) -> list[int]:
        with self._connect() as conn, conn.transaction():
            if len(batch) == 1:
                # Alone (the usual case at low load): a pipeline's extra sync costs more
                # than it saves.
                row = conn.execute(*append_sql(batch[0][0])).fetchone()
                return [int(row[0])] if row else []
            with conn.pipeline():
                cursors = [conn.execute(*append_sql(event)) for event, _ in batch]
            return [int(row[0]) for cur in cursors if (row := cur.fetchone()) is not None]
