"""DBOS's "Workflow communication" tutorial (messages, events, durable sleep) and the
workflow management calls, with the import changed."""
import threading
import time
import uuid

import pytest

from pg_workflow.dbos import DBOS, DBOSAwaitedWorkflowCancelledError, SetWorkflowID, WorkflowStatus


def test_send_recv_and_events(dbos):
    @DBOS.workflow()
    def checkout():
        DBOS.set_event("payment_url", f"https://pay/{DBOS.workflow_id}")
        status = DBOS.recv("payment_status", timeout_seconds=60)
        DBOS.set_event("order_status", status)
        return status

    handle = DBOS.start_workflow(checkout)
    wid = handle.workflow_id
    assert DBOS.get_event(wid, "payment_url", timeout_seconds=60) == f"https://pay/{wid}"
    DBOS.send(wid, "paid", "payment_status")
    assert handle.get_result() == "paid"
    assert DBOS.get_event(wid, "order_status") == "paid"


def test_recv_times_out_with_none(dbos):
    @DBOS.workflow()
    def waits():
        return DBOS.recv("nothing", timeout_seconds=0.1)

    assert waits() is None


def test_durable_sleep_is_a_step(dbos):
    @DBOS.workflow()
    def sleeper():
        DBOS.sleep(0.05)
        return "woke"

    with SetWorkflowID(wid := uuid.uuid4().hex):
        assert sleeper() == "woke"
    assert len(DBOS.list_workflow_steps(wid)) == 1


def test_cancel_resume_and_fork(dbos):
    gate = threading.Event()
    runs = []

    @DBOS.step()
    def first():
        runs.append("first")
        return 1

    @DBOS.step()
    def second():
        gate.wait(60)
        runs.append("second")
        return 2

    @DBOS.workflow()
    def wf():
        return first() + second()

    handle = DBOS.start_workflow(wf)
    deadline = time.monotonic() + 60  # cancel once step 1 is checkpointed, so resume replays it
    while not DBOS.list_workflow_steps(handle.workflow_id) and time.monotonic() < deadline:
        time.sleep(0.02)
    DBOS.cancel_workflow(handle.workflow_id)
    gate.set()
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    assert handle.get_status().status == "CANCELLED"
    # Resume runs it again from its last checkpoint: `first` is not run again.
    resumed = DBOS.resume_workflow(handle.workflow_id)
    assert resumed.get_result() == 3
    assert runs.count("first") == 1
    # A fork from step 2 keeps step 1's checkpoint and runs step 2 anew, under a new id.
    forked = DBOS.fork_workflow(handle.workflow_id, 2)
    assert forked.workflow_id != handle.workflow_id and forked.get_result() == 3
    assert runs.count("first") == 1 and runs.count("second") >= 2


def test_list_workflows(dbos):
    @DBOS.workflow()
    def listed(i):
        return i

    ids = []
    for i in range(3):
        with SetWorkflowID(wid := f"listed-{i}-{uuid.uuid4().hex}"):
            listed(i)
        ids.append(wid)
    found = DBOS.list_workflows(workflow_ids=ids)
    assert sorted(s.workflow_id for s in found) == sorted(ids)
    assert all(isinstance(s, WorkflowStatus) and s.status == "SUCCESS" for s in found)
    assert [s.output for s in DBOS.list_workflows(workflow_ids=ids, sort_desc=False)] == [0, 1, 2]
    assert len(DBOS.list_workflows(name=found[0].name, limit=2)) == 2
    assert DBOS.list_workflows(workflow_ids=ids, status="ERROR") == []
