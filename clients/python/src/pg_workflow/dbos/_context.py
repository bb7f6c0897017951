"""DBOS's `with` blocks. Each sets one option for the next workflow started or enqueued
in the block (by this thread or task), as DBOS does; blocks nest and restore on exit."""
import contextvars
from typing import Any, Dict, Optional

# One dict of pending options; each block copies it, so nesting and threads do not interfere.
_options: contextvars.ContextVar[Dict[str, Any]] = contextvars.ContextVar("pgwf_dbos_options", default={})


def current() -> Dict[str, Any]:
    return _options.get()


def take_workflow_id() -> Optional[str]:
    """The id of SetWorkflowID applies to the one next workflow only (DBOS clears it on use)."""
    opts = _options.get()
    if "workflow_id" not in opts:
        return None
    rest = dict(opts)
    wid = rest.pop("workflow_id")
    _options.set(rest)
    return wid


class _Set:
    def __init__(self, **values: Any) -> None:
        self._values = values
        self._token: Optional[contextvars.Token] = None

    def __enter__(self) -> "_Set":
        self._token = _options.set({**_options.get(), **self._values})
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._token is not None
        _options.reset(self._token)


class SetWorkflowID(_Set):
    """`with SetWorkflowID(id): wf()` runs wf with that id; a second run with it is idempotent."""

    def __init__(self, wfid: str) -> None:
        super().__init__(workflow_id=wfid)


class SetWorkflowTimeout(_Set):
    """Start-to-close timeout in seconds for the workflows started in the block (None: none)."""

    def __init__(self, workflow_timeout_sec: Optional[float]) -> None:
        if workflow_timeout_sec is not None and workflow_timeout_sec <= 0:
            raise Exception(f"Invalid workflow timeout {workflow_timeout_sec}. Timeouts must be positive.")
        super().__init__(timeout=workflow_timeout_sec)


class SetEnqueueOptions(_Set):
    """Options of the enqueues in the block: deduplication_id, priority, partition key, delay."""

    def __init__(self, *, deduplication_id: Optional[str] = None, priority: Optional[int] = None,
                 app_version: Optional[str] = None, queue_partition_key: Optional[str] = None,
                 delay_seconds: Optional[float] = None) -> None:
        if priority is not None and not (0 <= priority <= 2**31 - 1):
            raise Exception(f"Invalid priority {priority}. Priority must be between 0~{2**31 - 1}.")
        super().__init__(deduplication_id=deduplication_id, priority=priority, app_version=app_version,
                         queue_partition_key=queue_partition_key, delay_seconds=delay_seconds)
