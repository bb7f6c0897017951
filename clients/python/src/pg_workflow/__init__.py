"""pg_workflow: durable workflows as ordinary Python functions, checkpointed in PostgreSQL.

    import pg_workflow as pw
    app = pw.App("postgresql://app@db/prod", app_version="v1")

    @app.step(retries=3)
    def charge(amount: int) -> str: ...

    @app.workflow()
    def order(order_id: str) -> dict:
        return {"charge": charge(5)}

    app.start(order, "o-42", workflow_id="order-42").result(timeout=30)
"""
from .aio import recv_async, send_async, set_event_async, sleep_async
from .app import App, RunInfo
from .context import step_id, workflow_id
from .errors import (ConnectionLost, DuplicateWorkflow, ExtensionMissing, NondeterminismError,
                     NotOwnerError, PgWorkflowError, SerializationError, StepFailed, UnknownQueue,
                     WorkflowCancelled, WorkflowFailed, WorkflowNotRegistered)
from .handle import WorkflowHandle
from .steps import recv, send, set_event, sleep
from .worker import Worker

__all__ = [
    "App", "RunInfo", "WorkflowHandle", "Worker",
    "workflow_id", "step_id", "sleep", "recv", "send", "set_event",
    "sleep_async", "recv_async", "send_async", "set_event_async",
    "PgWorkflowError", "WorkflowFailed", "StepFailed", "NotOwnerError", "NondeterminismError",
    "WorkflowCancelled", "WorkflowNotRegistered", "SerializationError", "ExtensionMissing",
    "UnknownQueue", "DuplicateWorkflow", "ConnectionLost",
]
__version__ = "0.2.0"
