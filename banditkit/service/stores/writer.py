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
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

#: A job gets the connection and a function to register a hook to run after the commit (the store's own
#: bookkeeping, such as its row counts: what a caller needs comes back as the job's result).
Job = Callable[[sqlite3.Connection, Callable[[Callable[[], None]], None]], Any]
MAX_GROUP = 4096
logger = logging.getLogger("banditkit.service")
_STOP = object()


class GroupCommitWriter:
    """Runs jobs on one SQLite connection in a background thread, committing them in groups."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], interval_s: float = 0.0) -> None:
        self._connect = connect
        self._interval_s = interval_s
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="banditkit-sqlite-writer", daemon=True)
        self._closed = False
        self.groups_committed = 0
        self.jobs_committed = 0
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
                first = carried if carried is not None else self._queue.get()
                if first is _STOP:
                    break
                group, carried, stopping = self._gather(first)
                self._commit(connection, group)
            if carried is not None:
                self._commit(connection, [carried])
        finally:
            connection.close()

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
        try:
            connection.execute("BEGIN IMMEDIATE")
            for job, _, _ in group:
                results.append(job(connection, hooks.append))
            connection.execute("COMMIT")
        except Exception as error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            if len(group) > 1 and len(results) < len(group):  # one bad job must not sink its group
                for item in group:
                    self._commit(connection, [item])
                return
            for _, future, _ in group:
                future.set_exception(error)
            return
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
