"""DBOS queues on pg_workflow queues: the limits are the server's (create_queue), and
SetEnqueueOptions maps onto enqueue's arguments."""
from typing import Any, Callable, Dict, Optional

import psycopg

from pg_workflow.errors import DuplicateWorkflow

from . import _context, _errors, _registry
from ._handle import WorkflowHandle


class Queue:
    def __init__(self, name: str, concurrency: Optional[int] = None,
                 limiter: Optional[Dict[str, float]] = None, *, worker_concurrency: Optional[int] = None,
                 partition_concurrency: Optional[int] = None, priority_enabled: bool = False,
                 partition_queue: bool = False, _replace: bool = False, **_ignored: Any) -> None:
        # priority_enabled, partition_queue: priority and partition keys always work here.
        if name in _registry.registry.queues and not _replace:
            raise Exception(f"Queue {name} has already been declared")
        self.name = name
        self.concurrency, self.worker_concurrency = concurrency, worker_concurrency
        self.limiter, self.partition_concurrency = limiter, partition_concurrency
        self.priority_enabled, self.partition_queue = priority_enabled, partition_queue
        _registry.registry.queues[name] = self
        from . import _dbos
        if _dbos._instance is not None and _dbos._instance._launched:
            self._declare(_dbos._instance)
            _dbos._instance._listen([name])

    def _declare(self, dbos: Any) -> None:
        """Create the queue, or give an existing one these limits (DBOS upserts on launch)."""
        if self.name == "default":
            return
        rate = self.limiter or {}
        args = (self.name, self.concurrency, self.worker_concurrency, rate.get("limit"),
                f"{rate['period']} seconds" if rate else None, self.partition_concurrency)
        with dbos._connect() as c:
            try:
                c.execute("SELECT workflow.create_queue(%s, %s, %s, %s, %s::interval, %s)", args)
            except psycopg.errors.DuplicateObject:
                c.execute("SELECT workflow.alter_queue(%s, %s, %s, %s, %s::interval, %s)", args)

    def enqueue(self, func: Callable, *args: Any, **kwargs: Any) -> WorkflowHandle:
        from ._dbos import _live
        return enqueue(_live(), self.name, func, args, kwargs)


def enqueue(dbos: Any, queue: str, func: Callable, args: tuple, kwargs: dict) -> WorkflowHandle:
    reg = _registry.registration_of(func)
    if reg is None or reg.kind != "workflow":
        raise _errors.DBOSException(f"{getattr(func, '__qualname__', func)} is not a @DBOS.workflow()")
    opts = _context.current()
    wid = _context.take_workflow_id()
    dedup = opts.get("deduplication_id")
    try:
        handle = dbos._app.enqueue(queue, dbos._bound[id(reg)], *args, workflow_id=wid,
                                   priority=opts.get("priority") or 0, deduplication_id=dedup,
                                   partition_key=opts.get("queue_partition_key"),
                                   delay=opts.get("delay_seconds"), timeout=opts.get("timeout"), **kwargs)
    except DuplicateWorkflow:
        if dedup is None:
            raise
        raise _errors.DBOSQueueDeduplicatedError(wid or "", queue, dedup) from None
    return WorkflowHandle(dbos, handle.workflow_id if hasattr(handle, "workflow_id") else handle)
