"""Group commit for the audit trail.

Every governed request waits for its audit record to be durable before it answers. The
chain makes appends serial (one lock, one hash after another), so one transaction and one
WAL flush per request caps the whole backend at a few hundred requests a second and
queues concurrent requests behind each other. Instead, records are appended in groups: a
request that finds no commit in progress commits every record waiting at that moment
(its own among them) in one transaction, pipelined, on its own thread; requests arriving
meanwhile wait for the next group, which one of them commits. One round trip and one
flush for the lot, and a lone request pays no hand-off to another thread (that hand-off
cost about as much as the commit itself). Each request returns only after its own record
is committed, in the order the records were handed over.

The writer also anchors the chain outside the database (audit_anchor.py): after every
`ANCHOR_EVERY` records and after `ANCHOR_SECONDS` with unanchored records (a small
thread, so that no request waits for an anchor), and on close.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from functools import partial

import psycopg

from backend.governance.audit import AuditEvent, append_sql
from backend.governance.audit_anchor import ANCHOR_EVERY, ANCHOR_SECONDS, AnchorSigner
from backend.logs import get as get_logger

log = get_logger(__name__)

# Records per transaction at most: bounds the lock hold time and one failure's reach.
MAX_BATCH = 256


class AuditWriterClosed(RuntimeError):
    pass


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
        # Guarded by _cond; the counters below by holding the turn (_busy).
        self._cond = threading.Condition()
        self._pending: list[tuple[AuditEvent, Future[int]]] = []
        self._busy = False
        self._closed = False
        self._unanchored = 0
        self._since = time.monotonic()
        self._timer = threading.Thread(target=self._anchor_on_time, name="audit-anchor")
        self._timer.daemon = True
        self._timer.start()

    def write(self, event: AuditEvent, timeout: float = 30.0) -> int:
        """Append one record; returns its sequence number once it is committed."""
        done: Future[int] = Future()
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._closed:
                raise AuditWriterClosed("the audit writer is closed")
            self._pending.append((event, done))
            while not done.done():
                if self._busy:
                    left = deadline - time.monotonic()
                    timed_out = left <= 0 or not self._cond.wait(left)
                    if timed_out and not done.done():
                        raise TimeoutError("audit record not committed in time")
                    continue
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                self._take_turn(partial(self._commit_and_count, batch))
        return done.result()

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._timer.join(10)
        with self._cond:
            while self._busy:
                self._cond.wait()
            self._take_turn(self._anchor_now)

    def _take_turn(self, work: Callable[[], None]) -> None:
        """Run `work` as the one thread writing to the chain; called holding _cond, which
        is released meanwhile so that others can queue their records."""
        self._busy = True
        self._cond.release()
        try:
            work()
        finally:
            self._cond.acquire()
            self._busy = False
            self._cond.notify_all()

    def _commit_and_count(self, batch: list[tuple[AuditEvent, Future[int]]]) -> None:
        try:
            self._commit(batch)
        except BaseException as e:
            # Nobody may wait forever for a group that went wrong in an unforeseen way.
            for _, done in batch:
                if not done.done():
                    done.set_exception(e)
            raise
        # Anchoring (a query, a signature, an fsync'd append) is the timer thread's job,
        # woken by the notify at the end of this turn: no request waits for it.
        self._unanchored += len(batch)

    def _anchor_on_time(self) -> None:
        with self._cond:
            while not self._closed:
                # Asleep with unanchored records: wake up when they are due.
                if self._busy:
                    self._cond.wait()  # the turn's end notifies
                elif not self._anchor_due():
                    due = max(self._due(), 0.05) if self._unanchored else self._anchor_seconds
                    self._cond.wait(due)
                if self._closed:
                    return
                if self._anchor_due() and not self._busy:
                    self._take_turn(self._anchor_now)

    def _anchor_due(self) -> bool:
        return bool(self._unanchored) and (
            self._unanchored >= self._anchor_every or self._due() == 0
        )

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
