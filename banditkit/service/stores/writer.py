"""Group commit: one thread owns the SQLite write connection and commits many requests at once.

A request hands its write (a *job*: a function of the connection) to the
writer and waits on a future. The writer takes every job that is queued (and,
with ``interval_s`` > 0, those arriving within that time), runs them in one
transaction, commits once, and only then completes the futures (if a job
raises, the transaction is rolled back and each job runs alone). So a
request is answered only after its write is durable, and the cost of a
commit (one fsync with ``synchronous=FULL``) is shared by all the requests
of the group. An *exclusive* job (a change of the model's shape,
such as adding an arm) runs in a transaction of its own, after every earlier
job has committed and run its hooks.

When the storage refuses writes (a full disk), a group fails as a whole with
:class:`~.base.StoreUnavailableError` naming the cause, counted by the store's
:class:`~.base.Outage`; while the outage lasts, the writer tries a small probe
write whenever no job has come for :data:`PROBE_S`, so the outage ends without
waiting for traffic.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from .base import Outage

#: A job gets the connection and a function to register a hook to run after the commit (the store's own
#: bookkeeping, such as its row counts: what a caller needs comes back as the job's result).
Job = Callable[[sqlite3.Connection, Callable[[Callable[[], None]], None]], Any]
MAX_GROUP = 4096
#: Seconds without a job after which the writer probes a store that refuses writes.
PROBE_S = 0.5
logger = logging.getLogger("banditkit.service")
_STOP = object()


class GroupCommitWriter:
    """Runs jobs on one SQLite connection in a background thread, committing them in groups."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        interval_s: float = 0.0,
        *,
        outage: Outage | None = None,
        refusal: Callable[[Exception], str | None] | None = None,
        probe: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        """``refusal(error)`` says why the storage refused a write (None: the error is the job's own).

        ``outage`` counts such refusals and the commits, and ``probe`` is a small write tried while the
        outage lasts.
        """
        self._connect = connect
        self._outage = outage or Outage("the store", "", "")
        self._refusal = refusal or (lambda error: None)
        self._probe = probe
        self._interval_s = interval_s
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="banditkit-sqlite-writer", daemon=True)
        self._closed = False
        self.groups_committed = 0
        self.jobs_committed = 0
        #: The number of the transaction the writer runs now (a job can tell whether two calls share one).
        self.transaction = 0
        self._thread.start()

    def submit(self, job: Job, *, exclusive: bool = False) -> Future:
        """Queue ``job``; the future gives its result once its transaction has committed."""
        future: Future = Future()
        if self._closed:
            future.set_exception(RuntimeError("the store is closed"))
        else:
            self._queue.put((job, future, exclusive))
        return future

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join()

    # ---- the writer thread ---------------------------------------------------
    def _run(self) -> None:
        connection = self._connect()
        carried = None
        try:
            stopping = False
            while not stopping:
                first = carried if carried is not None else self._next(connection)
                if first is _STOP:
                    break
                group, carried, stopping = self._gather(first)
                self._commit(connection, group)
            if carried is not None:
                self._commit(connection, [carried])
        finally:
            connection.close()

    def _next(self, connection: sqlite3.Connection):
        """The next queued item; while the store refuses writes, a probe every :data:`PROBE_S` until it comes."""
        while self._outage.cause is not None and self._probe is not None:
            try:
                return self._queue.get(timeout=PROBE_S)
            except queue.Empty:
                self._try_probe(connection, self._probe)
        return self._queue.get()

    def _try_probe(self, connection: sqlite3.Connection, probe: Callable[[sqlite3.Connection], None]) -> None:
        try:
            connection.execute("BEGIN IMMEDIATE")
            probe(connection)
            connection.execute("COMMIT")
        except Exception:  # still refused, or an error a write will show
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            return
        self._outage.succeeded()

    def _gather(self, first) -> tuple[list, object, bool]:
        """The next group, the exclusive job that ended it (if any), and whether to stop after it."""
        group = [first]
        if first[2]:
            return group, None, False
        deadline = time.monotonic() + self._interval_s
        while len(group) < MAX_GROUP:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is _STOP:
                return group, None, True
            if item[2]:
                return group, item, False
            group.append(item)
        return group, None, False

    def _commit(self, connection: sqlite3.Connection, group: list) -> None:
        """Run the group's jobs in one transaction; if a job fails, run each job alone instead."""
        hooks: list[Callable[[], None]] = []
        results = []
        self.transaction += 1
        try:
            connection.execute("BEGIN IMMEDIATE")
            for job, _, _ in group:
                results.append(job(connection, hooks.append))
            connection.execute("COMMIT")
        except Exception as error:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # the transaction is abandoned either way
                    connection.execute("ROLLBACK")
            cause = self._refusal(error)
            if cause is not None:  # the storage refuses writes: every job of the group fails alike, unretried
                refused = self._outage.failed(cause)
                for _, future, _ in group:
                    future.set_exception(refused)
                return
            if len(group) > 1 and len(results) < len(group):  # one bad job must not sink its group
                for item in group:
                    self._commit(connection, [item])
                return
            for _, future, _ in group:
                future.set_exception(error)
            return
        self._outage.succeeded()
        self.groups_committed += 1
        self.jobs_committed += len(group)
        for hook in hooks:
            try:
                hook()
            except Exception:  # the write is committed; a failing hook must not hold requests
                logger.exception("after-commit hook failed")
        for (_, future, _), result in zip(group, results, strict=True):
            future.set_result(result)


class Checkpointer:
    """Copies the WAL back into the database every ``interval_s`` from its own connection and thread.

    SQLite would otherwise checkpoint inside the commit that crosses the WAL
    size limit, and every request waiting on that commit would wait for the
    copy (and, with ``synchronous=FULL``, its fsync) too. A PASSIVE checkpoint
    runs beside the writer and the readers without blocking them.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection], interval_s: float = 1.0) -> None:
        self._connect = connect
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="banditkit-sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        connection = self._connect()
        try:
            while not self._stop.wait(self._interval_s):
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:  # busy or locked: the next round catches up
                    logger.debug("WAL checkpoint deferred", exc_info=True)
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
