"""Calls on runs that need no running body: queues, messages, events, operations, cron.
A mixin of App; every call is safe to retry after a lost connection."""
from __future__ import annotations

import uuid

import psycopg
from typing import Any, Callable, Optional, Sequence

from . import sql
from .codec import dumps, encode_input
from .context import current
from .handle import WorkflowHandle
from .steps import secs


class ClientCalls:
    # Provided by App.
    json_default: Any
    app_version: Optional[str]
    call_retrying: Callable[..., Any]
    workflow_def: Callable[..., Any]
    _ids: Callable[..., Any]

    def enqueue(self, queue: str, fn: Callable[..., Any], *args: Any, workflow_id: Optional[str] = None,
                priority: int = 0, deduplication_id: Optional[str] = None,
                partition_key: Optional[str] = None, delay: Optional[float] = None,
                timeout: Optional[float] = None, **kwargs: Any) -> WorkflowHandle:
        """Puts a run on a queue for a worker of this app_version (idempotent on workflow_id;
        an id is made up here when none is given, so that a retried call enqueues once)."""
        wf = self.workflow_def(fn)
        workflow_id, parent_id = self._ids(workflow_id)
        params = (queue, wf.name, encode_input(wf.fn, args, kwargs, self.json_default), workflow_id,
                  priority, deduplication_id, partition_key, secs(delay), secs(timeout),
                  self.app_version, parent_id)
        parent = current.get()
        if parent is not None and parent_id is not None and not parent.is_async:
            parent.call(sql.ENQUEUE, params)
        else:
            self.call_retrying(sql.ENQUEUE, params)
        return WorkflowHandle(self, workflow_id)

    def handle(self, workflow_id: str) -> WorkflowHandle:
        """A handle on any run by its id."""
        return WorkflowHandle(self, workflow_id)

    def send(self, destination_id: str, message: Any, topic: Optional[str] = None,
             idempotency_key: Optional[str] = None) -> None:
        """Sends a message to a workflow; delivered once, even when a lost connection makes
        this call retry (the key is made up here when none is given)."""
        key = idempotency_key or f"send:{uuid.uuid4()}"
        self.call_retrying(sql.SEND, (destination_id, dumps(message, self.json_default, "the message"),
                                      topic, key))

    def get_event(self, workflow_id: str, key: str, timeout: float = 60.0) -> Any:
        """Waits until the workflow has set `key`, then returns its latest value (None after the timeout)."""
        return self.call_retrying(sql.GET_EVENT, (workflow_id, key, secs(timeout)))[0]

    def list(self, status: Optional[str] = None, name: Optional[str] = None, limit: int = 50) -> list:
        """The newest runs first, as RunInfo rows; filter by status and workflow name."""
        from .app import RunInfo
        rows = self.call_retrying(sql.LIST, {"status": status, "name": name, "limit": limit}, fetch="all")
        return [RunInfo(*row) for row in rows]

    def cancel(self, workflow_id: str) -> bool:
        return bool(self.call_retrying(sql.CANCEL, (workflow_id,))[0])

    def resume(self, workflow_id: str) -> WorkflowHandle:
        """Puts a CANCELLED, ERROR or dead-lettered run back on its queue, from its checkpoints."""
        self.call_retrying(sql.RESUME, (workflow_id,))
        return WorkflowHandle(self, workflow_id)

    def fork(self, workflow_id: str, from_step: int = 1, new_workflow_id: Optional[str] = None,
             queue: str = "default") -> WorkflowHandle:
        """A new run with the input and the checkpoints of the steps before from_step, enqueued."""
        new_id = self.call_retrying(sql.FORK, (workflow_id, from_step,
                                               new_workflow_id or str(uuid.uuid4()), queue))[0]
        return WorkflowHandle(self, new_id)

    def create_queue(self, name: str, concurrency: Optional[int] = None,
                     worker_concurrency: Optional[int] = None, rate_limit: Optional[int] = None,
                     rate_period: Optional[float] = None, partition_concurrency: Optional[int] = None,
                     exist_ok: bool = True) -> None:
        """Creates a queue (admin); an existing one is kept when exist_ok."""
        try:
            self.call_retrying(sql.CREATE_QUEUE, (name, concurrency, worker_concurrency, rate_limit,
                                                  secs(rate_period), partition_concurrency))
        except psycopg.errors.DuplicateObject:
            if not exist_ok:
                raise

    def schedule(self, name: str, cron: str, fn: Callable[..., Any], *args: Any,
                 queue: str = "default", timezone: str = "UTC") -> Any:
        """A workflow.schedule row: each fire enqueues fn(*args) on `queue`, for a worker to
        run. Upsert on name; returns the next fire time."""
        wf = self.workflow_def(fn)
        encoded = dumps(list(args), self.json_default, "the schedule's input")
        return self.call_retrying(sql.SCHEDULE, (name, cron, wf.name, encoded, queue, timezone))[0]

    def unschedule(self, name: str) -> None:
        self.call_retrying(sql.UNSCHEDULE, (name,))

    def worker(self, queues: Sequence[str] = ("default",), concurrency: int = 8,
               poll: float = 1.0) -> Any:
        """A worker that dequeues and runs this app's workflows: .run() blocks (SIGTERM and
        SIGINT drain it), .start()/.stop() run it in the background."""
        from .worker import Worker
        return Worker(self, list(queues), concurrency, poll)
