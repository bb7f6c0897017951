"""WorkflowStatus, StepInfo and the list queries, read from the extension's views
(workflow.runs, workflow.steps) with DBOS's field names."""
import builtins
import sys
from datetime import datetime
from enum import Enum
from typing import Any, Dict, List, Optional, TypedDict

from psycopg import sql


class WorkflowStatusString(Enum):
    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    MAX_RECOVERY_ATTEMPTS_EXCEEDED = "MAX_RECOVERY_ATTEMPTS_EXCEEDED"
    CANCELLED = "CANCELLED"
    ENQUEUED = "ENQUEUED"
    DELAYED = "DELAYED"


class WorkflowStatus:
    """One run as DBOS shows it. Times are Unix epoch milliseconds, as in DBOS."""
    workflow_id: str
    status: str
    name: str
    class_name: Optional[str] = None
    config_name: Optional[str] = None
    authenticated_user: Optional[str] = None
    assumed_role: Optional[str] = None
    authenticated_roles: Optional[List[str]] = None
    input: Any = None
    output: Any = None
    error: Optional[BaseException] = None
    created_at: Optional[int] = None
    updated_at: Optional[int] = None
    queue_name: Optional[str] = None
    executor_id: Optional[str] = None
    app_version: Optional[str] = None
    workflow_timeout_ms: Optional[int] = None
    workflow_deadline_epoch_ms: Optional[int] = None
    deduplication_id: Optional[str] = None
    priority: Optional[int] = None
    queue_partition_key: Optional[str] = None
    forked_from: Optional[str] = None
    parent_workflow_id: Optional[str] = None
    dequeued_at: Optional[int] = None
    completed_at: Optional[int] = None
    app_id: Optional[str] = None
    recovery_attempts: Optional[int] = None

    def __repr__(self) -> str:
        return f"WorkflowStatus({self.workflow_id!r}, {self.status!r}, {self.name!r})"


class StepInfo(TypedDict):
    function_id: int
    function_name: str
    output: Optional[Any]
    error: Optional[Exception]
    child_workflow_id: Optional[str]
    started_at_epoch_ms: Optional[int]
    completed_at_epoch_ms: Optional[int]


def _ms(t: Optional[datetime]) -> Optional[int]:
    return int(t.timestamp() * 1000) if t is not None else None


def rebuild_error(error: Any, module: Optional[str] = None) -> Optional[BaseException]:
    """The stored {"type", "message"} as an exception of that type, when the type is a builtin
    or defined in the workflow's module (DBOS pickles exceptions; JSON keeps only these two)."""
    if error is None:
        return None
    if not isinstance(error, dict):
        return Exception(str(error))
    name, message = str(error.get("type", "Exception")), str(error.get("message", ""))
    scope = vars(sys.modules[module]) if module in sys.modules else {}
    cls = scope.get(name) or getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, BaseException):
        try:
            return cls(message)
        except Exception:
            pass
    return Exception(f"{name}: {message}")


_RUN_COLUMNS = ("workflow_id, name, status, queue, executor_id, app_version, parent_id, input, output, "
                "error, created_at, started_at, finished_at, deadline, timeout, deduplication_id, "
                "priority, partition_key, forked_from, recovery_attempts")


def status_of(row: Dict[str, Any], decode_input: Any, module_of: Any) -> WorkflowStatus:
    s = WorkflowStatus()
    s.workflow_id, s.name, s.status = row["workflow_id"], row["name"], row["status"]
    s.queue_name = row["queue"]
    s.executor_id, s.app_version = row["executor_id"], row["app_version"]
    s.parent_workflow_id, s.forked_from = row["parent_id"], row["forked_from"]
    if row["input"] is not None:
        args, kwargs = decode_input(row["input"])
        s.input = {"args": tuple(args), "kwargs": kwargs}
    s.output = row["output"]
    s.error = rebuild_error(row["error"], module_of(row["name"]))
    s.created_at = _ms(row["created_at"])
    s.updated_at = _ms(row["finished_at"] or row["started_at"] or row["created_at"])
    s.dequeued_at = _ms(row["started_at"]) if row["queue"] else None
    s.completed_at = _ms(row["finished_at"])
    s.workflow_deadline_epoch_ms = _ms(row["deadline"])
    s.workflow_timeout_ms = int(row["timeout"].total_seconds() * 1000) if row["timeout"] else None
    s.deduplication_id, s.priority = row["deduplication_id"], row["priority"]
    s.queue_partition_key, s.recovery_attempts = row["partition_key"], row["recovery_attempts"]
    return s


def _any(value: Any) -> Optional[List[Any]]:
    return None if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


def list_query(*, workflow_ids=None, status=None, start_time=None, end_time=None, name=None,
               app_version=None, forked_from=None, parent_workflow_id=None, queue_name=None,
               limit=None, offset=None, sort_desc=False, workflow_id_prefix=None, executor_id=None,
               queues_only=False, **unsupported: Any):
    """The SELECT on workflow.runs for DBOS.list_workflows' filters; a list matches any of it."""
    if any(v is not None for v in unsupported.values()):
        raise NotImplementedError(f"list_workflows filters {sorted(unsupported)} are not supported")
    where, params = [], []
    for column, value in (("workflow_id", workflow_ids), ("status", status), ("name", name),
                          ("app_version", app_version), ("forked_from", forked_from),
                          ("parent_id", parent_workflow_id), ("queue", queue_name),
                          ("executor_id", executor_id)):
        if (values := _any(value)) is not None:
            where.append(sql.SQL("{} = ANY(%s)").format(sql.Identifier(column)))
            params.append(values)
    if (prefixes := _any(workflow_id_prefix)) is not None:
        where.append(sql.SQL("workflow_id LIKE ANY(%s)"))
        params.append([p.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                       for p in prefixes])
    if start_time is not None:
        where.append(sql.SQL("created_at >= %s::timestamptz"))
        params.append(start_time)
    if end_time is not None:
        where.append(sql.SQL("created_at <= %s::timestamptz"))
        params.append(end_time)
    if queues_only:
        where.append(sql.SQL("queue IS NOT NULL AND status IN ('ENQUEUED', 'DELAYED', 'PENDING')"))
    q = sql.SQL("SELECT {} FROM workflow.runs").format(sql.SQL(_RUN_COLUMNS))
    if where:
        q += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where)
    q += sql.SQL(" ORDER BY created_at DESC, workflow_id DESC" if sort_desc
                 else " ORDER BY created_at, workflow_id")
    if limit is not None:
        q += sql.SQL(" LIMIT %s")
        params.append(limit)
    if offset is not None:
        q += sql.SQL(" OFFSET %s")
        params.append(offset)
    return q, params


STEPS = ("SELECT step, step_name, output, error, recorded_at, "
         "lag(recorded_at) OVER (ORDER BY step) AS previous "
         "FROM workflow.steps WHERE workflow_id = %s ORDER BY step")


def step_info(row: Dict[str, Any], module: Optional[str]) -> StepInfo:
    return StepInfo(function_id=row["step"], function_name=row["step_name"], output=row["output"],
                    error=rebuild_error(row["error"], module), child_workflow_id=None,
                    started_at_epoch_ms=_ms(row["previous"]), completed_at_epoch_ms=_ms(row["recorded_at"]))
