//! Steps, replay, transactions, handles, child runs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pg_workflow_client::{Ctx, Error, StartOptions, StepOptions};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::*;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Order {
    id: String,
    qty: i32,
}

#[tokio::test]
async fn steps_run_once_and_the_output_is_typed() {
    let db = ScratchDb::new().await;
    let app = app(&db).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    app.workflow("order", move |ctx: Ctx, o: Order| {
        let c = c.clone();
        async move {
            let charged: String = ctx
                .step("charge", || async {
                    c.fetch_add(1, Ordering::SeqCst);
                    Ok(format!("ch_{}", o.qty))
                })
                .await?;
            let n: i32 = ctx.step("double", || async { Ok(o.qty * 2) }).await?;
            Ok(json!({ "order": o.id, "c": charged, "n": n }))
        }
    });
    let o = Order { id: "o-42".into(), qty: 5 };
    let h = app.start("order", &o, StartOptions::id("order-42")).await.unwrap();
    assert_eq!(h.workflow_id(), "order-42");
    let out: Value = h.result(LONG).await.unwrap();
    assert_eq!(out, json!({"order": "o-42", "c": "ch_5", "n": 10}));
    assert_eq!(h.status().await.unwrap().as_deref(), Some("SUCCESS"));

    // Idempotent on the id: the same run, not run again.
    let again = app.start("order", &o, StartOptions::id("order-42")).await.unwrap();
    assert_eq!(again.result::<Value>(LONG).await.unwrap()["c"], "ch_5");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // The wire format: input is a one-element array, steps are numbered in call order.
    let sql = db.sql().await;
    let input: Value = sql.query_one("SELECT input FROM workflow.runs WHERE workflow_id = 'order-42'", &[]).await.unwrap().get(0);
    assert_eq!(input, json!([{"id": "o-42", "qty": 5}]));
    let steps: Vec<(i32, String, Value)> = sql
        .query("SELECT step, step_name, output FROM workflow.steps WHERE workflow_id = 'order-42' ORDER BY step", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(steps, vec![(1, "charge".into(), json!("ch_5")), (2, "double".into(), json!(10))]);
}

#[tokio::test]
async fn a_replay_reads_checkpoints_and_runs_only_the_rest() {
    let db = ScratchDb::new().await;
    let sql = db.sql().await;
    // A run left PENDING by someone else (psql, another SDK) with two checkpoints and no owner.
    sql.batch_execute(
        "SELECT workflow.start('three', '[\"o-1\", 5]', 'r-1');
         SELECT workflow.step_put('r-1', 1, 'one', '\"from-before\"');
         SELECT workflow.step_put('r-1', 2, 'two', '2');",
    )
    .await
    .unwrap();
    let app = app(&db).await;
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    app.workflow("three", move |ctx: Ctx, (id, qty): (String, i32)| {
        let r = r.clone();
        async move {
            let a: String = ctx.step("one", || async { r.fetch_add(1, Ordering::SeqCst); Ok("fresh".to_string()) }).await?;
            let b: i32 = ctx.step("two", || async { r.fetch_add(1, Ordering::SeqCst); Ok(-1) }).await?;
            let c: i32 = ctx.step("three", || async { r.fetch_add(1, Ordering::SeqCst); Ok(qty + b) }).await?;
            Ok(json!([id, a, b, c]))
        }
    });
    let h = app.start("three", &(), StartOptions::id("r-1")).await.unwrap();
    assert_eq!(h.result::<Value>(LONG).await.unwrap(), json!(["o-1", "from-before", 2, 7]));
    assert_eq!(ran.load(Ordering::SeqCst), 1, "only step 3 ran");
}

#[tokio::test]
async fn joined_steps_are_numbered_in_call_order() {
    let db = ScratchDb::new().await;
    let app = app(&db).await;
    app.workflow("joined", |ctx: Ctx, _: ()| async move {
        let slow = ctx.step("slow", || async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(1)
        });
        let fast = ctx.step("fast", || async { Ok(2) });
        let (a, b): (pg_workflow_client::Result<i32>, _) = tokio::join!(slow, fast);
        let last: i32 = ctx.step("last", || async { Ok(3) }).await?;
        Ok(vec![a?, b?, last])
    });
    let h = app.start("joined", &(), StartOptions::id("j-1")).await.unwrap();
    assert_eq!(h.result::<Vec<i32>>(LONG).await.unwrap(), vec![1, 2, 3]);
    let names: Vec<String> = db
        .sql()
        .await
        .query("SELECT step_name FROM workflow.steps WHERE workflow_id = 'j-1' ORDER BY step", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["slow", "fast", "last"]);
}

#[tokio::test]
async fn step_retries_with_backoff_then_records_the_error() {
    let db = ScratchDb::new().await;
    let app = app(&db).await;
    let tries = Arc::new(AtomicUsize::new(0));
    let t = tries.clone();
    app.workflow("flaky", move |ctx: Ctx, fail_always: bool| {
        let t = t.clone();
        async move {
            let opts = StepOptions::retries(3).backoff(Duration::from_millis(10));
            let v: usize = ctx
                .step_with("flaky", opts, || async {
                    let n = t.fetch_add(1, Ordering::SeqCst) + 1;
                    if fail_always || n < 3 {
                        return Err(pg_workflow_client::Failure::new("ValueError", format!("try {n}")).into());
                    }
                    Ok(n)
                })
                .await?;
            Ok(v)
        }
    });
    let ok = app.start("flaky", &false, StartOptions::default()).await.unwrap();
    assert_eq!(ok.result::<usize>(LONG).await.unwrap(), 3);

    tries.store(0, Ordering::SeqCst);
    let bad = app.start("flaky", &true, StartOptions::id("flaky-bad")).await.unwrap();
    match bad.result::<usize>(LONG).await {
        Err(Error::WorkflowFailed { type_, message, .. }) => {
            assert_eq!(type_, "ValueError");
            assert_eq!(message, "try 4");
        }
        other => panic!("expected WorkflowFailed, got {other:?}"),
    }
    assert_eq!(tries.load(Ordering::SeqCst), 4, "the first try and 3 retries");
    let error: Value = db
        .sql()
        .await
        .query_one("SELECT error FROM workflow.steps WHERE workflow_id = 'flaky-bad' AND step = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(error["type"], "ValueError");
    assert_eq!(error["message"], "try 4");
    let run_error: Value = db
        .sql()
        .await
        .query_one("SELECT error FROM workflow.runs WHERE workflow_id = 'flaky-bad'", &[])
        .await
        .unwrap()
        .get(0);
    let mut keys: Vec<_> = run_error.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["message", "traceback", "type"]);
}

#[tokio::test]
async fn a_transaction_commits_with_its_checkpoint_and_retries_serialization_failures() {
    let db = ScratchDb::new().await;
    let sql = db.sql().await;
    sql.batch_execute("CREATE TABLE ledger (workflow_id text, amount int)").await.unwrap();
    let app = app(&db).await;
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    app.workflow("pay", move |ctx: Ctx, amount: i32| {
        let a = a.clone();
        async move {
            let id = ctx.workflow_id().to_string();
            let rows: i64 = ctx
                .transaction("debit", |tx| {
                    let (a, id) = (a.clone(), id.clone());
                    async move {
                        tx.execute("INSERT INTO ledger VALUES ($1, $2)", &[&id, &amount]).await?;
                        if a.fetch_add(1, Ordering::SeqCst) == 0 {
                            // The first attempt fails as a serialization failure: it runs again.
                            tx.batch_execute("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$").await?;
                        }
                        let row = tx.query_one("SELECT count(*) FROM ledger WHERE workflow_id = $1", &[&id]).await?;
                        Ok(row.get::<_, i64>(0))
                    }
                })
                .await?;
            let failed = ctx
                .transaction("bad", |tx| async move {
                    tx.execute("INSERT INTO ledger VALUES ('bad', 1)", &[]).await?;
                    Err::<(), _>(pg_workflow_client::Failure::new("KeyError", "nope").into())
                })
                .await;
            match failed {
                Err(Error::StepFailed { type_, .. }) if type_ == "KeyError" => {}
                other => panic!("expected StepFailed(KeyError), got {other:?}"),
            }
            Ok(rows)
        }
    });
    let h = app.start("pay", &7, StartOptions::id("pay-1")).await.unwrap();
    assert_eq!(h.result::<i64>(LONG).await.unwrap(), 1);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    let n: i64 = sql.query_one("SELECT count(*) FROM ledger WHERE workflow_id = 'pay-1'", &[]).await.unwrap().get(0);
    assert_eq!(n, 1, "the rolled-back attempt left nothing");
    let bad: i64 = sql.query_one("SELECT count(*) FROM ledger WHERE workflow_id = 'bad'", &[]).await.unwrap().get(0);
    assert_eq!(bad, 0, "a failed transaction rolls back");
    let recorded: Value = sql.query_one("SELECT output FROM workflow.steps WHERE workflow_id = 'pay-1' AND step = 1", &[]).await.unwrap().get(0);
    assert_eq!(recorded, json!(1));
}

#[tokio::test]
async fn child_runs_get_deterministic_ids_and_their_parent() {
    let db = ScratchDb::new().await;
    let app = app(&db).await;
    app.workflow("child", |_ctx: Ctx, x: i32| async move { Ok(x * 10) });
    app.workflow("parent", |ctx: Ctx, x: i32| async move {
        let first: i32 = ctx.step("prep", || async { Ok(x + 1) }).await?;
        let child = ctx.start("child", &first, StartOptions::default()).await?;
        let out: i32 = child.result(Duration::from_secs(60)).await?;
        Ok((child.workflow_id().to_string(), out))
    });
    let h = app.start("parent", &1, StartOptions::id("p-1")).await.unwrap();
    let (child_id, out): (String, i32) = h.result(LONG).await.unwrap();
    assert_eq!(child_id, "p-1-2");
    assert_eq!(out, 20);
    let runs = app.list(None, Some("child"), 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].parent_id.as_deref(), Some("p-1"));
    assert_eq!(runs[0].status, "SUCCESS");
}
