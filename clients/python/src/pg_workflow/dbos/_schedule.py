"""Cron on the server's schedules (workflow.schedule). A fire enqueues a run of a small
wrapper workflow, which gives the user's function the arguments DBOS gives it (the fire time
is in the run's id, cron:<name>:<UTC time>) and runs its steps as its own."""
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from . import _core as pw
from pg_workflow import codec

from . import _errors, _registry


def _fire_time() -> datetime:
    """The scheduled time from this run's id; a manual trigger (…:manual:<uuid>) fires now."""
    stamp = (pw.workflow_id() or "").rsplit(":", 3)
    try:
        return datetime.strptime(":".join(stamp[-3:]), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return datetime.now(timezone.utc)


def _wrapper(dbos: Any, name: str, body: Callable[..., Any]) -> _registry.Registration:
    existing = _registry.registry.by_name(name)
    if existing is not None:
        return existing
    body.__qualname__ = body.__name__ = name
    reg = _registry.Registration("workflow", body, name)
    _registry.registry.add(reg)
    if id(reg) not in dbos._bound:
        dbos._bind(reg)
    return reg


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def schedule_decorated(dbos: Any, reg: _registry.Registration, cron: str) -> None:
    """@DBOS.scheduled(cron) over a workflow fn(scheduled_time, actual_time)."""
    actual = dbos._app.step(name="DBOS.actual_time")(_now)

    def fire() -> Any:
        # The actual time is a step: a replay sees the time of the first execution.
        return reg.fn(_fire_time(), datetime.fromisoformat(actual()))

    wrapper = _wrapper(dbos, f"dbos.scheduled:{reg.name}", fire)
    _upsert(dbos, reg.name, cron, wrapper.name, None, "default", None)


def create_schedule(dbos: Any, schedule_name: str, workflow_fn: Callable, cron: str, context: Any,
                    cron_timezone: Optional[str], queue_name: Optional[str]) -> None:
    """DBOS.create_schedule: workflow_fn(scheduled_time, context) at every cron time."""
    reg = _registry.registration_of(workflow_fn)
    if reg is None or reg.kind != "workflow":
        raise _errors.DBOSException(f"Workflow function '{workflow_fn}' is not registered")

    def fire(context: Any = None) -> Any:
        return reg.fn(_fire_time(), context)

    wrapper = _wrapper(dbos, f"dbos.schedule:{reg.name}", fire)
    _upsert(dbos, schedule_name, cron, wrapper.name, [context], queue_name or "default", cron_timezone)


def _upsert(dbos: Any, name: str, cron: str, workflow_name: str, input: Any, queue: str,
            tz: Optional[str]) -> None:
    import psycopg
    with dbos._connect() as c:
        try:
            c.execute("SELECT workflow.schedule(%s, %s, %s, %s::jsonb, %s, %s)",
                      (name, cron, workflow_name, codec.dumps(input, what="the schedule's context"),
                       queue, tz or "UTC"))
        except psycopg.errors.InvalidParameterValue as e:
            raise _errors.DBOSException(f"Invalid cron schedule: '{cron}' ({e})") from None
    dbos._listen([queue])
