"""This process's executor lease: a background thread renews it on its own connection, so
that a pool busy with long waits can never starve the heartbeat."""
from __future__ import annotations

import logging
import threading
from typing import Any

import psycopg

from . import sql

log = logging.getLogger("pg_workflow")


class Heartbeat:
    def __init__(self, app: Any, lease: float):
        self.app = app
        self.lease = lease
        self._stop = threading.Event()
        self._conn: Any = None
        self._thread = threading.Thread(target=self._loop, name="pgwf-heartbeat", daemon=True)
        self._thread.start()

    def _interval(self) -> float:
        # Three beats per lease: one lost beat never expires it. workflow.executor_timeout may
        # change at any time (a reload), and every beat reports the lease it granted.
        return max(0.05, min(self.lease / 3.0, 10.0))

    def _beat(self) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.app.dsn, autocommit=True, connect_timeout=10,
                                         **self.app.connect_kwargs())
        try:
            self.lease = self._conn.execute(sql.HEARTBEAT, (self.app.executor_id,)).fetchone()[0]
        except psycopg.Error as e:
            if e.sqlstate != "WF004":
                raise
            # Unknown executor (its row was deleted, or the database was restored): register again.
            self.lease = self._conn.execute(sql.REGISTER, (self.app.executor_id,
                                                           self.app.app_version)).fetchone()[0]

    def _loop(self) -> None:
        delay = 0.1
        while not self._stop.wait(self._interval()):
            while not self._stop.is_set():
                try:
                    self._beat()
                    delay = 0.1
                    break
                except psycopg.Error as e:
                    log.warning("heartbeat of %s failed (%s); retrying in %.1fs",
                                self.app.executor_id, e, delay)
                    if self._conn is not None:
                        self._conn.close()
                        self._conn = None
                    self._stop.wait(delay)
                    delay = min(delay * 2, max(0.2, self.lease / 3.0))
        if self._conn is not None:
            self._conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
