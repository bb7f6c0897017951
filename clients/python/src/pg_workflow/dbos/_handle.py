"""WorkflowHandle: reads the run from the database by id, so a handle from start_workflow,
enqueue or retrieve_workflow behaves the same, in any process."""
from typing import Any, Generic, Optional, TypeVar

from . import _errors, _status

R = TypeVar("R")


class WorkflowHandle(Generic[R]):
    def __init__(self, dbos: Any, workflow_id: str) -> None:
        self._dbos = dbos
        self.workflow_id = workflow_id

    def get_workflow_id(self) -> str:
        return self.workflow_id

    def get_result(self, *, polling_interval_sec: float = 1.0) -> R:
        """Blocks until the run ends (workflow.wait sleeps on the server, no polling), then
        returns its output or raises what DBOS raises."""
        del polling_interval_sec  # waiting is woken by the run's commit
        with self._dbos._connect() as c:
            status, output, error = c.execute(
                "SELECT status, output, error FROM workflow.wait(%s, NULL)", (self.workflow_id,)).fetchone()
            name = c.execute("SELECT name FROM workflow.runs WHERE workflow_id = %s",
                             (self.workflow_id,)).fetchone()[0]
        if status == "SUCCESS":
            return output
        if status == "CANCELLED":
            raise _errors.DBOSAwaitedWorkflowCancelledError(self.workflow_id)
        if status == "MAX_RECOVERY_ATTEMPTS_EXCEEDED":
            raise _errors.DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded(self.workflow_id)
        raise _status.rebuild_error(error, self._dbos._module_of(name))  # type: ignore[misc]

    def get_status(self) -> _status.WorkflowStatus:
        found = self._dbos.list_workflows(workflow_ids=[self.workflow_id])
        if not found:
            raise _errors.DBOSNonExistentWorkflowError("target", self.workflow_id)
        return found[0]

    def __repr__(self) -> str:
        return f"WorkflowHandle({self.workflow_id!r})"


def get_status(dbos: Any, workflow_id: str) -> Optional[_status.WorkflowStatus]:
    found = dbos.list_workflows(workflow_ids=[workflow_id])
    return found[0] if found else None
