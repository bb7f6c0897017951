"""The SDK's exceptions, and the mapping from the extension's SQLSTATEs (README, Errors)."""
from __future__ import annotations

from typing import Any

import psycopg


class PgWorkflowError(Exception):
    """Base class of every error the SDK raises on its own."""


class WorkflowFailed(PgWorkflowError):
    """A run ended with ERROR. Carries the original exception's type name, message and traceback."""

    def __init__(self, workflow_id: str, type_name: str, message: str, traceback: str | None = None):
        super().__init__(f"workflow {workflow_id} failed: {type_name}: {message}")
        self.workflow_id = workflow_id
        self.type_name = type_name
        self.message = message
        self.traceback = traceback

    @classmethod
    def from_error(cls, workflow_id: str, error: Any) -> "WorkflowFailed":
        if not isinstance(error, dict):
            return cls(workflow_id, "Error", str(error))
        return cls(workflow_id, str(error.get("type", "Error")), str(error.get("message", "")),
                   error.get("traceback"))


class StepFailed(PgWorkflowError):
    """A replayed step whose first run raised an exception that cannot be rebuilt by type."""

    def __init__(self, type_name: str, message: str, traceback: str | None = None):
        super().__init__(f"{type_name}: {message}")
        self.type_name, self.message, self.traceback = type_name, message, traceback


class NotOwnerError(PgWorkflowError):
    """WF007 (or a step already written by another executor): this executor must stop the run."""


class NondeterminismError(PgWorkflowError):
    """WF002: on replay, the step recorded at this position has another name."""


class WorkflowCancelled(PgWorkflowError):
    """WF003: the run was cancelled or passed its deadline."""


class WorkflowNotRegistered(PgWorkflowError, LookupError):
    """A run names a workflow this process has not decorated with @app.workflow."""


class SerializationError(PgWorkflowError, TypeError):
    """A value (input, output, error, message) that cannot be stored as JSON."""


class ExtensionMissing(PgWorkflowError):
    """The database has no pg_workflow extension (CREATE EXTENSION pg_workflow)."""


class UnknownQueue(PgWorkflowError, LookupError):
    """WF005: enqueue or dequeue names a queue that does not exist."""


class DuplicateWorkflow(PgWorkflowError):
    """23505 on start or enqueue: the id belongs to a run of another workflow, or a
    deduplication_id is held by an active run."""


class StepTaken(PgWorkflowError):
    """Internal: 23505 on step_put, the step is already recorded (first write wins), e.g. by
    an executor whose step raced this one's takeover. The caller replays it with step_get."""


class ConnectionLost(BaseException):
    """Internal: the connection of a running workflow broke. A BaseException on purpose, so
    that a body's `except Exception` cannot swallow it; the runner reconnects and replays."""


def translate(e: psycopg.Error, what: str = "") -> BaseException:
    """The SDK exception for a database error, or the error itself."""
    state = e.sqlstate or ""
    detail = f"{what}: {e}" if what else str(e)
    if state == "WF007":
        return NotOwnerError(detail)
    if state == "WF002":
        return NondeterminismError(detail)
    if state == "WF003":
        return WorkflowCancelled(detail)
    if state == "WF005":
        return UnknownQueue(detail)
    if state == "23505":
        return DuplicateWorkflow(detail)
    if state in ("3F000", "42883", "42P01"):  # schema, function or view `workflow.*` missing
        return ExtensionMissing(f"the database has no pg_workflow extension "
                                f"(CREATE EXTENSION pg_workflow): {e}")
    return e
