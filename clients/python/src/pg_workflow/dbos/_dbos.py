"""The DBOS class: DBOS Transact's entry point, as a thin layer over pg_workflow.App."""
import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional, TypedDict

import psycopg
from psycopg.rows import dict_row

from . import _core as pw
from pg_workflow import codec

from . import _context, _errors, _registry, _status
from ._handle import WorkflowHandle, get_status

logger = logging.getLogger("dbos")


class DBOSConfig(TypedDict, total=False):
    name: str
    system_database_url: Optional[str]
    application_database_url: Optional[str]
    database_url: Optional[str]
    application_version: Optional[str]
    executor_id: Optional[str]
    log_level: Optional[str]


class _classproperty:
    def __init__(self, fget: Callable[[Any], Any]) -> None:
        self.fget = fget

    def __get__(self, obj: Any, owner: Any) -> Any:
        return self.fget(owner)


def libpq_url(url: str) -> str:
    """DBOS configs use SQLAlchemy URLs (postgresql+psycopg://); libpq takes postgresql://."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+')[0]}{sep}{rest}" if sep else url


_instance: Optional["DBOS"] = None


def _live() -> "DBOS":
    if _instance is None or not _instance._launched:
        raise _errors.DBOSException("DBOS is not launched: call DBOS(config=...) and DBOS.launch() first")
    return _instance


def _call(reg: _registry.Registration, args: tuple, kwargs: dict) -> Any:
    return _live()._invoke(reg, args, kwargs)


class DBOS:
    """One per process (DBOS(config=...) returns the existing instance until destroy)."""

    def __new__(cls, *, config: DBOSConfig, **_ignored: Any) -> "DBOS":
        global _instance
        if _instance is None:
            _instance = super().__new__(cls)
            _instance._setup(config)
        return _instance

    def __init__(self, *, config: DBOSConfig, **_ignored: Any) -> None:
        pass  # __new__ did it, once

    def _setup(self, config: DBOSConfig) -> None:
        url = config.get("system_database_url") or config.get("database_url")
        if not url:
            raise _errors.DBOSInitializationError("pg_workflow needs system_database_url (a PostgreSQL "
                                                  "database with CREATE EXTENSION pg_workflow)")
        self.config = config
        self._dsn = libpq_url(url)
        self._launched = False
        self._bound: Dict[int, Any] = {}  # id(Registration) -> what app.workflow/step/... returned
        self._workers: List[Any] = []
        self._queues_listened: set = set()
        self._lock = threading.RLock()
        logger.setLevel(config.get("log_level") or "INFO")  # DBOS logs at INFO by default
        kw: Dict[str, Any] = {}
        if config.get("executor_id"):
            kw["executor_id"] = config["executor_id"]
        if config.get("application_version"):
            kw["app_version"] = config["application_version"]
        self._app = pw.App(self._dsn, **kw)

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def launch(cls) -> None:
        if _instance is None:
            raise _errors.DBOSException("DBOS(config=...) must be created before launch()")
        _instance._launch()

    def _launch(self) -> None:
        with self._lock:
            if self._launched:
                logger.warning("DBOS was already launched")
                return
            reg = _registry.registry
            with reg.lock:
                functions = list(reg.functions)
                reg.listeners.append(self._bind)
            for r in functions:
                self._bind(r)
            for queue in list(reg.queues.values()):
                queue._declare(self)
            for r, cron in reg.scheduled:
                self._schedule_decorated(r, cron)
            self._app.launch()
            self._launched = True
            self._listen(["default", *reg.queues])
        logger.info("DBOS launched on pg_workflow")

    @classmethod
    def destroy(cls, *, destroy_registry: bool = False, workflow_completion_timeout_sec: int = 0) -> None:
        global _instance
        inst, _instance = _instance, None
        if inst is not None:
            inst._shutdown(workflow_completion_timeout_sec)
        if destroy_registry:
            _registry.reset()

    def _shutdown(self, timeout: float) -> None:
        with _registry.registry.lock:
            if self._bind in _registry.registry.listeners:
                _registry.registry.listeners.remove(self._bind)
        for worker in self._workers:
            worker.stop()
        self._app.close(wait=timeout)  # DBOS's workflow_completion_timeout_sec (default 0)
        self._launched = False

    def _listen(self, queues: List[str]) -> None:
        """One worker for the queues not yet served (a queue declared after launch gets its own)."""
        new = [q for q in dict.fromkeys(queues) if q not in self._queues_listened]
        if not new or not self._launched:
            return
        if not hasattr(self._app, "worker"):
            logger.warning("this pg_workflow has no App.worker yet: queues %s are not served", new)
            return
        self._queues_listened.update(new)
        worker = self._app.worker(queues=new)
        worker.start()
        self._workers.append(worker)

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self._dsn, autocommit=True)

    # -- decorators ------------------------------------------------------------------------

    def _bind(self, reg: _registry.Registration) -> None:
        if reg.kind == "workflow":
            bound = self._app.workflow(name=reg.name)(reg.fn)
        elif reg.kind == "step":
            bound = self._app.step(name=reg.name)(_retrying(reg))
        else:
            from ._sqlalchemy import transaction_body
            bound = self._app.transaction(name=reg.name)(transaction_body(reg, self))
        self._bound[id(reg)] = bound

    def _invoke(self, reg: _registry.Registration, args: tuple, kwargs: dict) -> Any:
        bound = self._bound[id(reg)]
        if reg.kind != "workflow":
            return bound(*args, **kwargs)
        opts = _context.current()
        if "workflow_id" in opts or opts.get("timeout"):
            # A call runs the workflow in this thread (a child, inside a workflow), as DBOS does.
            return self._app.run(bound, *args, workflow_id=_context.take_workflow_id(),
                                 timeout=opts.get("timeout"), **kwargs)
        return bound(*args, **kwargs)

    def _start(self, reg: _registry.Registration, args: tuple, kwargs: dict) -> WorkflowHandle:
        wid = _context.take_workflow_id()
        timeout = _context.current().get("timeout")
        handle = self._app.start(self._bound[id(reg)], *args, workflow_id=wid, timeout=timeout, **kwargs)
        return WorkflowHandle(self, handle.workflow_id)

    def _module_of(self, name: str) -> Optional[str]:
        reg = _registry.registry.by_name(name)
        return reg.fn.__module__ if reg else None

    @classmethod
    def workflow(cls, *, name: Optional[str] = None, max_recovery_attempts: Optional[int] = None,
                 **_ignored: Any) -> Callable[[Callable], Callable]:
        # max_recovery_attempts: the server's workflow.max_recovery_attempts applies to every run.
        def decorate(fn: Callable) -> Callable:
            reg = _registry.Registration("workflow", fn, name or fn.__qualname__)
            wrapper = _registry.wrap(reg, _call)
            _registry.registry.add(reg)
            return wrapper
        return decorate

    @classmethod
    def step(cls, *, name: Optional[str] = None, retries_allowed: bool = False,
             interval_seconds: float = 1.0, max_attempts: int = 3, backoff_rate: float = 2.0,
             should_retry: Optional[Callable[[BaseException], bool]] = None,
             **_ignored: Any) -> Callable[[Callable], Callable]:
        def decorate(fn: Callable) -> Callable:
            reg = _registry.Registration("step", fn, name or fn.__qualname__, dict(
                retries_allowed=retries_allowed, interval_seconds=interval_seconds,
                max_attempts=max_attempts, backoff_rate=backoff_rate, should_retry=should_retry))
            wrapper = _registry.wrap(reg, _call)
            _registry.registry.add(reg)
            return wrapper
        return decorate

    @classmethod
    def transaction(cls, isolation_level: str = "SERIALIZABLE", *,
                    name: Optional[str] = None) -> Callable[[Callable], Callable]:
        def decorate(fn: Callable) -> Callable:
            reg = _registry.Registration("transaction", fn, name or fn.__qualname__,
                                         dict(isolation_level=isolation_level))
            wrapper = _registry.wrap(reg, _call)
            _registry.registry.add(reg)
            return wrapper
        return decorate

    @classmethod
    def scheduled(cls, cron: str) -> Callable[[Callable], Callable]:
        """Above @DBOS.workflow(): fn(scheduled_time, actual_time) runs at every cron time."""
        def decorate(fn: Callable) -> Callable:
            reg = _registry.registration_of(fn)
            if reg is None or reg.kind != "workflow":
                raise _errors.DBOSException("@DBOS.scheduled must be applied above @DBOS.workflow()")
            _registry.registry.scheduled.append((reg, cron))
            if _instance is not None and _instance._launched:
                _instance._schedule_decorated(reg, cron)
            return fn
        return decorate

    def _schedule_decorated(self, reg: _registry.Registration, cron: str) -> None:
        from ._schedule import schedule_decorated
        schedule_decorated(self, reg, cron)

    @classmethod
    def create_schedule(cls, *, schedule_name: str, workflow_fn: Callable, schedule: str,
                        context: Any = None, automatic_backfill: bool = False,
                        cron_timezone: Optional[str] = None, queue_name: Optional[str] = None) -> None:
        from ._schedule import create_schedule
        create_schedule(_live(), schedule_name, workflow_fn, schedule, context, cron_timezone, queue_name)

    @classmethod
    def delete_schedule(cls, name: str) -> None:
        with _live()._connect() as c:
            c.execute("SELECT workflow.unschedule(%s)", (name,))

    # -- starting and queues ---------------------------------------------------------------

    @classmethod
    def start_workflow(cls, func: Callable, *args: Any, **kwargs: Any) -> WorkflowHandle:
        reg = _registry.registration_of(func)
        if reg is None or reg.kind != "workflow":
            raise _errors.DBOSException(f"{getattr(func, '__qualname__', func)} is not a @DBOS.workflow()")
        return _live()._start(reg, args, kwargs)

    @classmethod
    def register_queue(cls, name: str, *, worker_concurrency: Optional[int] = None,
                       global_concurrency: Optional[int] = None, concurrency: Optional[int] = None,
                       limiter: Optional[Dict[str, float]] = None, partition_concurrency: Optional[int] = None,
                       priority_enabled: bool = False, partition_queue: bool = False,
                       **_ignored: Any) -> Any:
        from ._queue import Queue
        return Queue(name, global_concurrency if global_concurrency is not None else concurrency,
                     limiter, worker_concurrency=worker_concurrency,
                     partition_concurrency=partition_concurrency, priority_enabled=priority_enabled,
                     partition_queue=partition_queue, _replace=True)

    @classmethod
    def enqueue_workflow(cls, queue_name: str, func: Callable, *args: Any, **kwargs: Any) -> WorkflowHandle:
        from ._queue import enqueue
        return enqueue(_live(), queue_name, func, args, kwargs)

    # -- communication ---------------------------------------------------------------------

    @classmethod
    def send(cls, destination_id: str, message: Any, topic: Optional[str] = None, *,
             idempotency_key: Optional[str] = None) -> None:
        dbos = _live()
        if pw.workflow_id() is not None and idempotency_key is None:
            pw.send(destination_id, message, topic)  # a durable step: delivered once on replay
            return
        with dbos._connect() as c:
            c.execute("SELECT workflow.send(%s, %s::jsonb, %s, %s)",
                      (destination_id, codec.dumps(message, what="the message"), topic, idempotency_key))

    @classmethod
    def recv(cls, topic: Optional[str] = None, timeout_seconds: float = 60) -> Any:
        if pw.workflow_id() is None:
            raise _errors.DBOSException("recv() must be called from within a workflow")
        return pw.recv(topic, timeout=timeout_seconds)

    @classmethod
    def set_event(cls, key: str, value: Any) -> None:
        if pw.workflow_id() is None:
            raise _errors.DBOSException("set_event() must be called from within a workflow")
        pw.set_event(key, value)

    @classmethod
    def get_event(cls, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        return _live()._app.get_event(workflow_id, key, timeout=timeout_seconds)

    @classmethod
    def sleep(cls, seconds: float) -> None:
        if seconds <= 0:
            return
        if pw.workflow_id() is None:
            time.sleep(seconds)
        else:
            pw.sleep(seconds)

    # -- management ------------------------------------------------------------------------

    @classmethod
    def retrieve_workflow(cls, workflow_id: str, existing_workflow: bool = True) -> WorkflowHandle:
        dbos = _live()
        if existing_workflow and get_status(dbos, workflow_id) is None:
            raise _errors.DBOSNonExistentWorkflowError("target", workflow_id)
        return WorkflowHandle(dbos, workflow_id)

    @classmethod
    def get_workflow_status(cls, workflow_id: str) -> Optional[_status.WorkflowStatus]:
        return get_status(_live(), workflow_id)

    @classmethod
    def get_result(cls, workflow_id: str) -> Any:
        return cls.retrieve_workflow(workflow_id).get_result()

    @classmethod
    def cancel_workflow(cls, workflow_id: str, **_ignored: Any) -> None:
        with _live()._connect() as c:
            c.execute("SELECT workflow.cancel(%s)", (workflow_id,))

    @classmethod
    def resume_workflow(cls, workflow_id: str, **_ignored: Any) -> WorkflowHandle:
        dbos = _live()
        with dbos._connect() as c:
            status = c.execute("SELECT status FROM workflow.runs WHERE workflow_id = %s", (workflow_id,)).fetchone()
            # DBOS resumes a still-ENQUEUED run by starting it now; here its queue's worker will.
            if status and status[0] not in ("SUCCESS", "PENDING", "ENQUEUED", "DELAYED"):
                c.execute("SELECT workflow.resume(%s)", (workflow_id,))
        return WorkflowHandle(dbos, workflow_id)

    @classmethod
    def fork_workflow(cls, workflow_id: str, start_step: int, *, queue_name: Optional[str] = None,
                      **_ignored: Any) -> WorkflowHandle:
        dbos = _live()
        with dbos._connect() as c:
            new_id = c.execute("SELECT workflow.fork(%s, %s, %s, %s)",
                               (workflow_id, max(start_step, 1), _context.take_workflow_id(),
                                queue_name or "default")).fetchone()[0]
        return WorkflowHandle(dbos, new_id)

    @classmethod
    def list_workflows(cls, **filters: Any) -> List[_status.WorkflowStatus]:
        dbos = _live()
        load_input, load_output = filters.pop("load_input", True), filters.pop("load_output", True)
        q, params = _status.list_query(**filters)
        with dbos._connect() as c, c.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(q, params).fetchall()
        out = [_status.status_of(r, codec.decode_input, dbos._module_of) for r in rows]
        for s in out:
            s.input = s.input if load_input else None
            s.output = s.output if load_output else None
        return out

    @classmethod
    def list_queued_workflows(cls, **filters: Any) -> List[_status.WorkflowStatus]:
        return cls.list_workflows(queues_only=True, **filters)

    @classmethod
    def list_workflow_steps(cls, workflow_id: str, **_ignored: Any) -> List[_status.StepInfo]:
        dbos = _live()
        with dbos._connect() as c, c.cursor(row_factory=dict_row) as cur:
            name = cur.execute("SELECT name FROM workflow.runs WHERE workflow_id = %s", (workflow_id,)).fetchone()
            rows = cur.execute(_status.STEPS, (workflow_id,)).fetchall()
        module = dbos._module_of(name["name"]) if name else None
        return [_status.step_info(r, module) for r in rows]

    # -- context ---------------------------------------------------------------------------

    @_classproperty
    def logger(cls) -> logging.Logger:
        return logger

    @_classproperty
    def workflow_id(cls) -> Optional[str]:
        return pw.workflow_id()

    @_classproperty
    def step_id(cls) -> Optional[int]:
        return pw.step_id() if pw.workflow_id() is not None else None

    @_classproperty
    def sql_session(cls) -> Any:
        from ._sqlalchemy import current_session
        return current_session()

    @_classproperty
    def executor_id(cls) -> str:
        return _live()._app.executor_id

    @_classproperty
    def application_version(cls) -> Optional[str]:
        return getattr(_live()._app, "app_version", None)


def _retrying(reg: _registry.Registration) -> Callable:
    """DBOS's retry policy runs inside the one step, so only the final outcome is checkpointed,
    and exhausting it raises DBOSMaxStepRetriesExceeded as DBOS does."""
    import functools
    o = reg.options

    @functools.wraps(reg.fn)
    def body(*args: Any, **kwargs: Any) -> Any:
        if not o["retries_allowed"]:
            return reg.fn(*args, **kwargs)
        errors: List[Exception] = []
        delay = o["interval_seconds"]
        for attempt in range(1, o["max_attempts"] + 1):
            try:
                return reg.fn(*args, **kwargs)
            except Exception as e:
                errors.append(e)
                if o["should_retry"] is not None and not o["should_retry"](e):
                    raise
                if attempt == o["max_attempts"]:
                    break
                logger.warning("Step %s failed (attempt %d of %d): %s", reg.name, attempt,
                               o["max_attempts"], e)
                time.sleep(delay)
                delay *= o["backoff_rate"]
        raise _errors.DBOSMaxStepRetriesExceeded(reg.name, o["max_attempts"], errors)

    body.__qualname__ = reg.name
    return body
