"""DBOS's "Queues" tutorial (2.x Queue, 3.x register_queue/enqueue_workflow) and scheduled
workflows (2.x @DBOS.scheduled, 3.x create_schedule), with the import changed. Schedules are
fired with trigger_schedule, so no test waits for a clock."""
import uuid
from datetime import datetime

import pytest

from pg_workflow.dbos import DBOS, DBOSQueueDeduplicatedError, Queue, SetEnqueueOptions, SetWorkflowID


def test_queue_enqueue_and_results(dbos):
    queue = Queue(f"q-{uuid.uuid4().hex[:8]}", concurrency=2, worker_concurrency=2,
                  limiter={"limit": 100, "period": 1}, priority_enabled=True)

    @DBOS.step()
    def square(x):
        return x * x

    @DBOS.workflow()
    def task(x):
        return square(x)

    handles = [queue.enqueue(task, i) for i in range(5)]
    assert [h.get_result() for h in handles] == [0, 1, 4, 9, 16]
    assert handles[0].get_status().queue_name == queue.name


def test_enqueue_options_and_deduplication(dbos):
    queue = Queue(f"q-{uuid.uuid4().hex[:8]}")

    @DBOS.workflow()
    def waits_for_go():
        return DBOS.recv("go", timeout_seconds=60)

    with SetEnqueueOptions(deduplication_id="user-7", priority=3):
        with SetWorkflowID(wid := uuid.uuid4().hex):
            first = queue.enqueue(waits_for_go)
        with pytest.raises(DBOSQueueDeduplicatedError):
            queue.enqueue(waits_for_go)
    assert first.workflow_id == wid and first.get_status().priority == 3
    DBOS.send(wid, "went", "go")
    assert first.get_result() == "went"


def test_register_queue_and_enqueue_workflow(dbos):
    name = f"q3-{uuid.uuid4().hex[:8]}"
    DBOS.register_queue(name, global_concurrency=1, worker_concurrency=1)

    @DBOS.workflow()
    def hello(who):
        return f"hi {who}"

    assert DBOS.enqueue_workflow(name, hello, "eve").get_result() == "hi eve"


def test_scheduled_decorator(dbos, sql):
    @DBOS.scheduled("0 3 * * *")
    @DBOS.workflow()
    def nightly(scheduled_time: datetime, actual_time: datetime):
        return [DBOS.workflow_id, type(scheduled_time).__name__, type(actual_time).__name__]

    schedule = sql("SELECT name FROM workflow.schedules WHERE workflow_name LIKE %s", "%nightly")[0][0]
    wid = sql("SELECT workflow.trigger_schedule(%s)", schedule)[0][0]
    assert DBOS.retrieve_workflow(wid).get_result() == [wid, "datetime", "datetime"]


def test_create_schedule_passes_context(dbos, sql):
    @DBOS.workflow()
    def report(scheduled_time: datetime, context):
        return context["kind"]

    name = f"report-{uuid.uuid4().hex[:8]}"
    DBOS.create_schedule(schedule_name=name, workflow_fn=report, schedule="0 0 * * * *",
                         context={"kind": "hourly"}, cron_timezone="Europe/Paris")
    wid = sql("SELECT workflow.trigger_schedule(%s)", name)[0][0]
    assert DBOS.retrieve_workflow(wid).get_result() == "hourly"
    DBOS.delete_schedule(name)
