"""A handle on a run: its id, its status and its result, from this process or any other."""
from __future__ import annotations

import time
from concurrent.futures import Future, TimeoutError as FutureTimeout
from typing import Any, Optional

from . import sql
from .errors import WorkflowFailed
from .execution import outcome
from .steps import secs


class WorkflowHandle:
    def __init__(self, app: Any, workflow_id: str, future: Optional[Future] = None):
        self.app = app
        self.workflow_id = workflow_id
        self._future = future  # set when this process runs the body: no database wait needed

    def __repr__(self) -> str:
        return f"WorkflowHandle({self.workflow_id!r})"

    def status(self) -> Optional[str]:
        """PENDING, ENQUEUED, DELAYED, SUCCESS, ERROR, CANCELLED or MAX_RECOVERY_ATTEMPTS_EXCEEDED."""
        row = self.app.call_retrying(sql.STATUS, (self.workflow_id,))
        return row[0] if row else None

    def result(self, timeout: Optional[float] = None) -> Any:
        """The output. Raises WorkflowFailed (the original type name, message and traceback),
        WorkflowCancelled, or TimeoutError when the run has not ended within `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._future is not None:
            try:
                local = self._future.result(timeout)
            except FutureTimeout:
                raise TimeoutError(f"workflow {self.workflow_id} has not ended after {timeout}s") from None
            if local is not None:
                status, value = local
                if status == "ERROR":
                    raise WorkflowFailed.from_error(self.workflow_id, value)
                return value
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        status, output, error = self.app.call_retrying(sql.WAIT, (self.workflow_id, secs(left)))
        if status not in sql.TERMINAL:
            raise TimeoutError(f"workflow {self.workflow_id} is {status} after {timeout}s")
        return outcome(self.workflow_id, status, output, error)

    def cancel(self) -> bool:
        """Cancels the run; its body stops at its next step. False if it had already ended."""
        return bool(self.app.call_retrying(sql.CANCEL, (self.workflow_id,))[0])

    def get_event(self, key: str, timeout: float = 60.0) -> Any:
        return self.app.get_event(self.workflow_id, key, timeout=timeout)


