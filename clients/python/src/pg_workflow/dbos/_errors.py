"""DBOS's exception classes, with DBOS's names, codes and constructor arguments, so that
`except DBOSException` and friends in a moved app keep catching what they caught."""
from enum import Enum
from typing import Any, List, Optional


class DBOSErrorCode(Enum):
    ConflictingIDError = 1
    RecoveryError = 2
    InitializationError = 3
    WorkflowFunctionNotFound = 4
    NonExistentWorkflowError = 5
    MaxRecoveryAttemptsExceeded = 6
    MaxStepRetriesExceeded = 7
    NotAuthorized = 8
    ConflictingWorkflowError = 9
    WorkflowCancelled = 10
    UnexpectedStep = 11
    QueueDeduplicated = 12
    AwaitedWorkflowCancelled = 13
    AwaitedWorkflowMaxRecoveryAttemptsExceeded = 14


class _Coded:
    def _setup(self, message: str, code: Optional[DBOSErrorCode]) -> None:
        self.message = message
        self.dbos_error_code = code.value if code else None
        self.status_code: Optional[int] = None

    def __str__(self) -> str:
        if self.dbos_error_code:
            return f"DBOS Error {self.dbos_error_code}: {self.message}"
        return f"DBOS Error: {self.message}"


class DBOSException(_Coded, Exception):
    def __init__(self, message: str, dbos_error_code: Optional[int] = None):
        Exception.__init__(self, message)
        self.message, self.dbos_error_code, self.status_code = message, dbos_error_code, None


class DBOSBaseException(_Coded, BaseException):
    """Not an Exception: user code's `except Exception` must not swallow a cancellation."""

    def __init__(self, message: str, dbos_error_code: Optional[int] = None):
        BaseException.__init__(self, message)
        self.message, self.dbos_error_code, self.status_code = message, dbos_error_code, None


def _init(exc: Any, message: str, code: DBOSErrorCode, *args: Any) -> None:
    # Keep the constructor arguments in args, so the exception pickles back to itself.
    (Exception if isinstance(exc, Exception) else BaseException).__init__(exc, *args)
    exc._setup(message, code)


class DBOSConflictingWorkflowError(DBOSException):
    def __init__(self, workflow_id: str, message: Optional[str] = None):
        _init(self, f"Conflicting workflow invocation with the same ID ({workflow_id}): {message}",
              DBOSErrorCode.ConflictingWorkflowError, workflow_id, message)


class DBOSNonExistentWorkflowError(DBOSException):
    def __init__(self, destination: str, destination_id: str):
        _init(self, f"Sent to non-existent {destination} workflow ID: {destination_id}",
              DBOSErrorCode.NonExistentWorkflowError, destination, destination_id)


class DBOSWorkflowFunctionNotFoundError(DBOSException):
    def __init__(self, workflow_id: str, message: Optional[str] = None):
        _init(self, f"Workflow function not found for {workflow_id}: {message}",
              DBOSErrorCode.WorkflowFunctionNotFound, workflow_id, message)


class DBOSInitializationError(DBOSException):
    def __init__(self, message: str):
        _init(self, f"Error initializing DBOS: {message}", DBOSErrorCode.InitializationError, message)


class DBOSRecoveryError(DBOSException):
    def __init__(self, workflow_id: str, message: Optional[str] = None):
        _init(self, f"Recovery error for {workflow_id}: {message}",
              DBOSErrorCode.RecoveryError, workflow_id, message)


class MaxRecoveryAttemptsExceededError(DBOSException):
    def __init__(self, wf_id: str, max_retries: Optional[int] = None):
        _init(self, f"Workflow {wf_id} has exceeded its maximum of {max_retries} recovery attempts",
              DBOSErrorCode.MaxRecoveryAttemptsExceeded, wf_id, max_retries)


class DBOSNotAuthorizedError(DBOSException):
    def __init__(self, msg: str):
        _init(self, msg, DBOSErrorCode.NotAuthorized, msg)


class DBOSMaxStepRetriesExceeded(DBOSException):
    def __init__(self, step_name: str, max_retries: int, errors: Optional[List[Exception]] = None):
        self.step_name, self.max_retries, self.errors = step_name, max_retries, errors or []
        _init(self, f"Step {step_name} has exceeded its maximum of {max_retries} retries",
              DBOSErrorCode.MaxStepRetriesExceeded, step_name, max_retries, self.errors)


class DBOSUnexpectedStepError(DBOSException):
    def __init__(self, workflow_id: str, step_id: int, expected_name: str, recorded_name: str):
        _init(self, f"During execution of workflow {workflow_id} step {step_id}, function "
              f"{recorded_name} was recorded when {expected_name} was expected. Check that your "
              "workflow is deterministic.", DBOSErrorCode.UnexpectedStep,
              workflow_id, step_id, expected_name, recorded_name)


class DBOSQueueDeduplicatedError(DBOSException):
    def __init__(self, workflow_id: str, queue_name: str, deduplication_id: str):
        self.workflow_id, self.queue_name, self.deduplication_id = workflow_id, queue_name, deduplication_id
        _init(self, f"Workflow {workflow_id} was deduplicated due to an existing workflow in queue "
              f"{queue_name} with deduplication ID {deduplication_id}.",
              DBOSErrorCode.QueueDeduplicated, workflow_id, queue_name, deduplication_id)


class DBOSAwaitedWorkflowCancelledError(DBOSException):
    def __init__(self, workflow_id: str):
        self.workflow_id = workflow_id
        _init(self, f"Awaited workflow {workflow_id} was cancelled",
              DBOSErrorCode.AwaitedWorkflowCancelled, workflow_id)


class DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded(DBOSException):
    def __init__(self, workflow_id: str):
        self.workflow_id = workflow_id
        _init(self, f"Awaited workflow {workflow_id} exceeded its maximum recovery attempts",
              DBOSErrorCode.AwaitedWorkflowMaxRecoveryAttemptsExceeded, workflow_id)


class DBOSWorkflowCancelledError(DBOSBaseException):
    def __init__(self, msg: str):
        _init(self, msg, DBOSErrorCode.WorkflowCancelled, msg)


class DBOSWorkflowConflictIDError(DBOSBaseException):
    def __init__(self, workflow_id: str):
        _init(self, f"Conflicting workflow ID {workflow_id}", DBOSErrorCode.ConflictingIDError, workflow_id)
