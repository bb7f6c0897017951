"""DBOS Transact's Python API on pg_workflow: move an app by changing
`from dbos import ...` to `from pg_workflow.dbos import ...` (see the README)."""
from . import _errors as error
from ._context import SetEnqueueOptions, SetWorkflowID, SetWorkflowTimeout
from ._dbos import DBOS, DBOSConfig
from ._errors import (DBOSAwaitedWorkflowCancelledError, DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded,
                      DBOSBaseException, DBOSConflictingWorkflowError, DBOSErrorCode, DBOSException,
                      DBOSInitializationError, DBOSMaxStepRetriesExceeded, DBOSNonExistentWorkflowError,
                      DBOSNotAuthorizedError, DBOSQueueDeduplicatedError, DBOSRecoveryError,
                      DBOSUnexpectedStepError, DBOSWorkflowCancelledError, DBOSWorkflowConflictIDError,
                      DBOSWorkflowFunctionNotFoundError, MaxRecoveryAttemptsExceededError)
from ._handle import WorkflowHandle
from ._queue import Queue
from ._sqlalchemy import SQLAlchemyDatasource
from ._status import StepInfo, WorkflowStatus, WorkflowStatusString

__all__ = [
    "DBOS", "DBOSConfig", "Queue", "SQLAlchemyDatasource", "SetEnqueueOptions", "SetWorkflowID",
    "SetWorkflowTimeout", "StepInfo", "WorkflowHandle", "WorkflowStatus", "WorkflowStatusString", "error",
    "DBOSException", "DBOSBaseException", "DBOSErrorCode", "DBOSAwaitedWorkflowCancelledError",
    "DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded", "DBOSConflictingWorkflowError",
    "DBOSInitializationError", "DBOSMaxStepRetriesExceeded", "DBOSNonExistentWorkflowError",
    "DBOSNotAuthorizedError", "DBOSQueueDeduplicatedError", "DBOSRecoveryError", "DBOSUnexpectedStepError",
    "DBOSWorkflowCancelledError", "DBOSWorkflowConflictIDError", "DBOSWorkflowFunctionNotFoundError",
    "MaxRecoveryAttemptsExceededError",
]
