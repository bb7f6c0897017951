"""A worker: dequeues its queues' runs and executes them, `concurrency` at a time.

One dispatcher thread per queue holds its own connection for dequeue (which waits on the
server up to `poll` seconds); each claimed run executes in a pool thread on a pooled
connection. At start, the worker takes back the runs this executor owned when its process
died (same executor_id): they resume from their last checkpoint.

Runs execute in daemon threads, so that a stop whose drain deadline passes (or a second
SIGTERM/SIGINT) lets the process exit while runs wait in pw.sleep or recv: those are left
PENDING and resume elsewhere when this executor's lease expires, or here when a worker with
the same executor_id starts again."""
from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any, Optional

import psycopg

from . import sql
from .codec import dumps, error_of
from .context import is_disconnect
from .errors import WorkflowNotRegistered, translate
from .execution import spawn
from .steps import secs

log = logging.getLogger("pg_workflow")


# Pooled connections a worker leaves for what its runs do besides their own connection:
# result() waits, child starts, client calls from bodies and steps.
POOL_MARGIN = 4


class Worker:
    def __init__(self, app: Any, queues: list[str], concurrency: int, poll: float):
        if concurrency < 1:
            raise ValueError(f"worker concurrency must be at least 1, not {concurrency}")
        if concurrency > app.pool_size - POOL_MARGIN:
            # Each run holds one pooled connection for its whole body (sleeps and recv
            # included): more runs than connections would wait on the pool and time out.
            raise ValueError(f"worker concurrency {concurrency} needs a larger pool: "
                             f"App(pool_size >= {concurrency + POOL_MARGIN}) (it is {app.pool_size}; "
                             f"{POOL_MARGIN} connections are kept for waits and child starts)")
        self.app, self.queues, self.concurrency, self.poll = app, queues, concurrency, poll
        self._slots = threading.Semaphore(concurrency)
        self._stopping = threading.Event()
        self._runs: set[threading.Thread] = set()  # runs in flight, one daemon thread each
        self._runs_lock = threading.Lock()
        self._dispatchers: list[threading.Thread] = []
        self.error: Optional[BaseException] = None  # a fatal error of a dispatcher (unknown queue)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "Worker":
        """Runs in background threads; returns at once. Works from any thread."""
        self.app.launch()
        self._recover_own_runs()
        for queue in self.queues:
            t = threading.Thread(target=self._dispatch, args=(queue,), name=f"pgwf-dequeue-{queue}",
                                 daemon=True)
            t.start()
            self._dispatchers.append(t)
        return self

    def stop(self, drain: bool = True, timeout: Optional[float] = None) -> None:
        """Stops dequeuing; with drain, waits for the runs in flight to end, for at most
        `timeout` seconds when given (None: however long they take, pw.sleep and recv
        included). Runs still in flight when it returns go on in their daemon threads until
        the process exits; then they stay PENDING until this executor's lease expires (the
        server puts them back on their queue) or a worker with this executor_id starts."""
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)

        def left(cap: Optional[float] = None) -> Optional[float]:
            if deadline is None:
                return cap
            rest = max(0.0, deadline - time.monotonic())
            return rest if cap is None else min(rest, cap)
        self._stopping.set()
        for t in self._dispatchers:
            t.join(left(self.poll + 30))
        if not drain:
            return
        while True:
            with self._runs_lock:
                runs = list(self._runs)
            if not runs:
                return
            for t in runs:
                t.join(left())
            if deadline is not None and time.monotonic() >= deadline:
                with self._runs_lock:
                    if self._runs:
                        log.warning("worker %s stops with %d run(s) in flight: they stay PENDING and "
                                    "resume after its lease expires (or when it restarts)",
                                    self.app.executor_id, len(self._runs))
                return

    def run(self, drain_timeout: Optional[float] = None) -> None:
        """Blocks until SIGTERM or SIGINT (main thread) or stop(), then drains (for at most
        drain_timeout seconds, when given) and returns. A second SIGTERM or SIGINT during the
        drain exits at once (SystemExit 128 + signal number); the runs in flight stay PENDING."""
        previous = {}

        def on_signal(signum: int, _frame: Any) -> None:
            if self._stopping.is_set():  # the second one (or one during a stop)
                log.warning("worker %s: second signal, exiting without waiting for its runs",
                            self.app.executor_id)
                raise SystemExit(128 + signum)
            self._stopping.set()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, on_signal)
        try:
            self.start()
            while not self._stopping.wait(0.5):
                pass
            log.info("worker %s draining", self.app.executor_id)
            self.stop(drain=True, timeout=drain_timeout)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.error is not None:
            raise self.error

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- claiming ----------------------------------------------------------------------------

    def _recover_own_runs(self) -> None:
        rows = self.app.call_retrying(sql.OWN_PENDING, (self.app.executor_id,), fetch="all")
        for workflow_id, name, input_json in rows:
            self._slots.acquire()
            self._submit(workflow_id, name, input_json, None)

    def _submit(self, workflow_id: str, name: str, input_json: Any, last_step: Optional[int]) -> None:
        t = threading.Thread(target=self._execute, args=(workflow_id, name, input_json, last_step),
                             name=f"pgwf-run-{workflow_id}"[:60], daemon=True)
        with self._runs_lock:
            self._runs.add(t)
        t.start()

    def _execute(self, workflow_id: str, name: str, input_json: Any, last_step: Optional[int]) -> None:
        try:
            try:
                wf = self.app.workflow_def(name)
            except WorkflowNotRegistered as e:
                # Not a hang: the run fails with a clear error that result() re-raises.
                log.error("%s (run %s)", e, workflow_id)
                self.app.call_retrying(sql.FAIL, (workflow_id, dumps(error_of(e)), self.app.executor_id))
                return
            if last_step is None:  # a run of ours from before a crash: claim it again
                status, _, _, last_step, claimed, _ = self.app.call_retrying(
                    sql.START, (name, dumps(input_json), workflow_id, self.app.executor_id, None, None))
                if not claimed:
                    return
            spawn(self.app, wf, workflow_id, input_json, last_step, inline=True)
        except Exception:
            log.exception("run %s could not be executed", workflow_id)
        finally:
            with self._runs_lock:
                self._runs.discard(threading.current_thread())
            self._slots.release()

    def _dispatch(self, queue: str) -> None:
        conn = None
        delay = 0.05
        while not self._stopping.is_set():
            if not self._slots.acquire(timeout=self.poll):
                continue
            taken = 1
            while taken < self.concurrency and self._slots.acquire(blocking=False):
                taken += 1
            rows: list = []
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.app.dsn, autocommit=True, prepare_threshold=0,
                                           connect_timeout=10, **self.app.connect_kwargs())
                rows = conn.execute(sql.DEQUEUE, (queue, self.app.executor_id, taken,
                                                  secs(self.poll))).fetchall()
                delay = 0.05
            except psycopg.Error as e:
                if not is_disconnect(e, conn) and not isinstance(e, psycopg.OperationalError):
                    self.error = translate(e, f"dequeue from {queue!r}")
                    log.error("worker stops: %s", self.error)
                    self._stopping.set()
                else:
                    log.warning("dequeue from %s failed (%s); reconnecting in %.2fs", queue, e, delay)
                    if conn is not None:
                        conn.close()
                    conn = None
                    self._stopping.wait(delay)
                    delay = min(delay * 2, 2.0)
            for workflow_id, name, input_json, last_step in rows:
                self._submit(workflow_id, name, input_json, last_step)
            for _ in range(taken - len(rows)):
                self._slots.release()
        if conn is not None:
            conn.close()
