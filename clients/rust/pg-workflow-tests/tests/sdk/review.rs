//! Regressions of the SDK review (/tmp/sdk_review.md): each test reproduces one defect.

#![allow(unused_imports)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pg_workflow_client::{App, Ctx, EnqueueOptions, Error, Options, StartOptions};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::*;

async fn input_of(sql: &tokio_postgres::Client, id: &str) -> Value {
    sql.query_one("SELECT input FROM workflow.runs WHERE workflow_id = $1", &[&id]).await.unwrap().get(0)
}

/// Review item 7: `()` is written as `[]` (no arguments, as Python, Node, psql and schedules
/// write it), and `[]` and `{}` are read as no arguments.
#[tokio::test]
async fn unit_input_is_no_arguments_both_ways() {
    let db = ScratchDb::new().await;
    let sql = db.sql().await;
    let app = app(&db).await;
    app.workflow("unit", |_ctx: Ctx, _: ()| async move { Ok("ran") });
    let h = app.start("unit", &(), StartOptions::id("u-1")).await.unwrap();
    assert_eq!(h.result::<String>(LONG).await.unwrap(), "ran");
    assert_eq!(input_of(&sql, "u-1").await, json!([]));
    app.enqueue("default", "unit", &(), EnqueueOptions::id("u-2").delay(Duration::from_secs(3600))).await.unwrap();
    assert_eq!(input_of(&sql, "u-2").await, json!([]));
    app.enqueue("default", "unit", &None::<i32>, EnqueueOptions::id("u-3").delay(Duration::from_secs(3600))).await.unwrap();
    assert_eq!(input_of(&sql, "u-3").await, json!([]));
    // What Python, Node and psql write for no arguments.
    sql.batch_execute(
        "SELECT workflow.enqueue('default', 'unit', '[]', 'py-1'); SELECT workflow.enqueue('default', 'unit', '{}', 'py-2');",
    )
    .await
    .unwrap();
    let w = app.worker(&["default"], 2).poll(Duration::from_millis(200)).handle_signals(false);
    let stop = w.stopper();
    let running = tokio::spawn(w.run());
    for id in ["py-1", "py-2"] {
        assert_eq!(app.handle(id).result::<String>(LONG).await.unwrap(), "ran", "{id}");
    }
    stop.stop();
    running.await.unwrap().unwrap();
}

/// Review item 8: a `start` that claims an existing run (no checkpoints yet) runs it with the
/// stored input, not the caller's (the first input wins).
#[tokio::test]
async fn a_claimed_run_without_checkpoints_keeps_its_first_input() {
    let db = ScratchDb::new().await;
    let sql = db.sql().await;
    sql.batch_execute("SELECT workflow.start('echo', '[1]', 'fi-1')").await.unwrap();
    let app = app(&db).await;
    app.workflow("echo", |_ctx: Ctx, x: i32| async move { Ok(x) });
    let h = app.start("echo", &2, StartOptions::id("fi-1")).await.unwrap();
    assert_eq!(h.result::<i32>(LONG).await.unwrap(), 1, "the stored input");
    // A fresh run gets the caller's.
    assert_eq!(app.start("echo", &3, StartOptions::id("fi-2")).await.unwrap().result::<i32>(LONG).await.unwrap(), 3);
}

/// Review item 3: a `query_one` that finds no row inside a transaction is the user's error:
/// recorded as the step's error, not taken for a lost connection (which replayed it forever).
#[tokio::test]
async fn a_query_one_without_a_row_in_a_transaction_is_a_step_error() {
    let db = ScratchDb::new().await;
    let sql = db.sql().await;
    let app = app(&db).await;
    app.workflow("norow", |ctx: Ctx, _: ()| async move {
        let r = ctx
            .transaction("lookup", |tx| async move {
                let row = tx.query_one("SELECT 1 WHERE false", &[]).await?;
                Ok(row.get::<_, i32>(0))
            })
            .await;
        match r {
            Err(Error::StepFailed { message, .. }) => Ok(message),
            other => Err(format!("expected StepFailed, got {other:?}").into()),
        }
    });
    let h = app.start("norow", &(), StartOptions::id("nr-1")).await.unwrap();
    let message = h.result::<String>(LONG).await.unwrap();
    assert!(message.contains("number of rows"), "{message}");
    let error: Option<Value> =
        sql.query_one("SELECT error FROM workflow.steps WHERE workflow_id = 'nr-1' AND step = 1", &[]).await.unwrap().get(0);
    assert!(error.is_some(), "the step's error is recorded");
}

/// Review item 6: a body that catches NotOwner and carries on does not run its later steps'
/// or transactions' closures (their side effects) on a run it no longer owns.
#[tokio::test]
async fn a_caught_not_owner_runs_no_later_closures() {
    let db = ScratchDb::new().await;
    let sql = db.sql().await;
    let stale = App::connect(&db.dsn(), Options::default().executor_id("exec-a")).await.unwrap();
    let go = Arc::new(Notify::new());
    let later = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<Option<Vec<Option<Error>>>>> = Arc::new(Mutex::new(None));
    let (g, l, s) = (go.clone(), later.clone(), seen.clone());
    stale.workflow("fenced", move |ctx: Ctx, _: ()| {
        let (g, l, s) = (g.clone(), l.clone(), s.clone());
        async move {
            let _: i32 = ctx.step("one", || async { Ok(1) }).await?;
            g.notified().await; // the run is taken over meanwhile
            let two = ctx.step("two", || async { Ok(2) }).await.err(); // caught
            let l3 = l.clone();
            let three = ctx
                .step("three", move || {
                    let l3 = l3.clone();
                    async move {
                        l3.fetch_add(1, Ordering::SeqCst);
                        Ok(3)
                    }
                })
                .await
                .err();
            let l4 = l.clone();
            let four = ctx
                .transaction("four", move |_tx| {
                    let l4 = l4.clone();
                    async move {
                        l4.fetch_add(1, Ordering::SeqCst);
                        Ok(4)
                    }
                })
                .await
                .err();
            *s.lock().unwrap() = Some(vec![two, three, four]);
            Ok("carried on")
        }
    });
    stale.start("fenced", &(), StartOptions::id("f-2")).await.unwrap();
    wait_for("step 1", LONG, || async {
        let n: i64 = sql.query_one("SELECT count(*) FROM workflow.steps WHERE workflow_id = 'f-2'", &[]).await.unwrap().get(0);
        (n == 1).then_some(())
    })
    .await;
    sql.batch_execute(
        "UPDATE workflow.executor SET last_heartbeat = now() - interval '1 hour' WHERE executor_id = 'exec-a';
         SELECT workflow.register_executor('exec-b');
         SELECT workflow.start('fenced', NULL, 'f-2', 'exec-b');",
    )
    .await
    .unwrap();
    go.notify_one();
    let errors = wait_for("the stale body's errors", LONG, || async { seen.lock().unwrap().clone() }).await;
    for e in &errors {
        assert!(matches!(e, Some(Error::NotOwner(_))), "{errors:?}");
    }
    assert_eq!(later.load(Ordering::SeqCst), 0, "no closure ran after the NotOwner");
}

/// Review item 9: a COMMIT that fails for good (a deferred constraint) is recorded as the
/// transaction step's error, like any other failure of the transaction.
#[tokio::test]
async fn a_failed_commit_is_recorded_as_the_steps_error() {
    let db = ScratchDb::new().await;
    let sql = db.sql().await;
    sql.batch_execute(
        "CREATE TABLE parent (id int PRIMARY KEY);
         CREATE TABLE child (pid int REFERENCES parent DEFERRABLE INITIALLY DEFERRED);",
    )
    .await
    .unwrap();
    let app = app(&db).await;
    app.workflow("deferred", |ctx: Ctx, _: ()| async move {
        let r = ctx
            .transaction("orphan", |tx| async move {
                tx.execute("INSERT INTO child VALUES (99)", &[]).await?;
                Ok(1)
            })
            .await;
        match r {
            Err(Error::StepFailed { message, .. }) => Ok(message),
            other => Err(format!("expected StepFailed, got {other:?}").into()),
        }
    });
    let h = app.start("deferred", &(), StartOptions::id("d-1")).await.unwrap();
    let message = h.result::<String>(LONG).await.unwrap();
    assert!(message.contains("foreign key"), "{message}");
    let error: Option<Value> =
        sql.query_one("SELECT error FROM workflow.steps WHERE workflow_id = 'd-1' AND step = 1", &[]).await.unwrap().get(0);
    assert!(error.is_some(), "the step's error is recorded");
    let n: i64 = sql.query_one("SELECT count(*) FROM child", &[]).await.unwrap().get(0);
    assert_eq!(n, 0);
}

/// Review item 9: WF004 (this executor's row is gone) at dequeue registers it again instead
/// of stopping the worker.
#[tokio::test]
async fn a_worker_registers_again_when_its_executor_row_is_gone() {
    let db = ScratchDb::new().await;
    let sql = db.sql().await;
    let app = app(&db).await;
    app.workflow("hello", |_ctx: Ctx, _: ()| async move { Ok("hi") });
    let w = app.worker(&["default"], 2).poll(Duration::from_millis(100)).handle_signals(false);
    let stop = w.stopper();
    let running = tokio::spawn(w.run());
    app.enqueue("default", "hello", &(), EnqueueOptions::id("h-1")).await.unwrap().result::<String>(LONG).await.unwrap();
    sql.execute("DELETE FROM workflow.executor WHERE executor_id = $1", &[&app.executor_id()]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await; // a few dequeues meet WF004
    let h = app.enqueue("default", "hello", &(), EnqueueOptions::id("h-2")).await.unwrap();
    assert_eq!(h.result::<String>(LONG).await.unwrap(), "hi");
    assert!(!running.is_finished(), "the worker goes on");
    stop.stop();
    running.await.unwrap().unwrap();
}

/// Review item 9: connecting to a server that accepts the socket but never answers gives up
/// after the connect timeout (here the DSN's connect_timeout=1) instead of hanging.
#[tokio::test]
async fn a_silent_server_is_a_connection_error_not_a_hang() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket); // accepted, never answered
        }
    });
    let dsn = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=1");
    let r = tokio::time::timeout(LONG, App::connect(&dsn, Options::default().reconnect_timeout(Duration::ZERO))).await;
    match r {
        Ok(Err(Error::Connection(_))) => {}
        Ok(other) => panic!("expected Error::Connection, got {:?}", other.map(|_| ())),
        Err(_) => panic!("App::connect hung on a silent server"),
    }
}

async fn count(sql: &tokio_postgres::Client, q: &str) -> i64 {
    sql.query_one(q, &[]).await.unwrap().get(0)
}

async fn wait_status(sql: &tokio_postgres::Client, id: &str, want: &str) {
    wait_for(&format!("{id} {want} in the database"), LONG, || async {
        (status(sql, id).await.as_deref() == Some(want)).then_some(())
    })
    .await
}

/// Review item 1: a transaction dropped midway by a `tokio::time::timeout` leaves its writes
/// on the run's connection inside BEGIN. They must not commit with the run's later steps and
/// finish: the run's next call finds the connection broken, and the run replays, with the
/// transaction's row exactly once.
#[tokio::test]
async fn a_transaction_dropped_by_a_timeout_replays_and_commits_once() {
    let db = ScratchDb::new().await;
    let sql = db.sql().await;
    sql.batch_execute("CREATE TABLE ledger (workflow_id text)").await.unwrap();
    let app = app(&db).await;
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    app.workflow("dropped", move |ctx: Ctx, _: ()| {
        let a = a.clone();
        async move {
            let id = ctx.workflow_id().to_string();
            let tx = ctx.transaction("debit", move |tx| {
                let (a, id) = (a.clone(), id.clone());
                async move {
                    tx.execute("INSERT INTO ledger VALUES ($1)", &[&id]).await?;
                    if a.fetch_add(1, Ordering::SeqCst) == 0 {
                        tokio::time::sleep(Duration::from_secs(3600)).await; // dropped by the timeout
                    }
                    Ok(())
                }
            });
            let done = tokio::time::timeout(Duration::from_millis(300), tx).await.is_ok();
            let _: () = ctx.step("after", || async { Ok(()) }).await?;
            Ok(done)
        }
    });
    let h = app.start("dropped", &(), StartOptions::id("dr-1")).await.unwrap();
    wait_status(&sql, "dr-1", "SUCCESS").await;
    assert!(h.result::<bool>(LONG).await.unwrap(), "the replay's transaction completed");
    assert_eq!(count(&sql, "SELECT count(*) FROM ledger WHERE workflow_id = 'dr-1'").await, 1);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
}

/// Review item 1: a transaction whose closure panics in a task the body spawned: its writes
/// are not committed by whoever uses the connection next; the run replays and commits the
/// transaction once.
#[tokio::test]
async fn a_transaction_that_panics_in_a_spawned_task_replays_and_commits_once() {
    let db = ScratchDb::new().await;
    let sql = db.sql().await;
    sql.batch_execute("CREATE TABLE ledger (workflow_id text)").await.unwrap();
    let app = app(&db).await;
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    app.workflow("spawned", move |ctx: Ctx, _: ()| {
        let a = a.clone();
        async move {
            let id = ctx.workflow_id().to_string();
            let tx = ctx.transaction("debit", move |tx| {
                let (a, id) = (a.clone(), id.clone());
                async move {
                    tx.execute("INSERT INTO ledger VALUES ($1)", &[&id]).await?;
                    if a.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("boom inside the transaction");
                    }
                    Ok(())
                }
            });
            let joined = tokio::spawn(tx).await;
            let _: () = ctx.step("after", || async { Ok(()) }).await?;
            Ok(joined.is_ok())
        }
    });
    let h = app.start("spawned", &(), StartOptions::id("sp-1")).await.unwrap();
    wait_status(&sql, "sp-1", "SUCCESS").await;
    assert!(h.result::<bool>(LONG).await.unwrap());
    assert_eq!(count(&sql, "SELECT count(*) FROM ledger WHERE workflow_id = 'sp-1'").await, 1);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
}

/// Review item 1: a body that panics (here inside a transaction) fails the run (type Panic)
/// instead of leaving it PENDING under a live lease; the transaction's writes are not
/// committed by the next run on the (one-connection) pool.
#[tokio::test]
async fn a_panicking_body_fails_the_run_and_its_transaction_never_commits() {
    let db = ScratchDb::new().await;
    let sql = db.sql().await;
    sql.batch_execute("CREATE TABLE ledger (workflow_id text)").await.unwrap();
    let app = App::connect(&db.dsn(), Options::default().pool_size(1)).await.unwrap();
    app.workflow("boom", |ctx: Ctx, _: ()| async move {
        ctx.transaction("debit", |tx| async move {
            tx.execute("INSERT INTO ledger VALUES ('boom')", &[]).await?;
            if true {
                panic!("boom inside the transaction");
            }
            Ok(())
        })
        .await?;
        Ok(())
    });
    app.workflow("fine", |ctx: Ctx, _: ()| async move {
        ctx.transaction("credit", |tx| async move {
            tx.execute("INSERT INTO ledger VALUES ('fine')", &[]).await?;
            Ok(())
        })
        .await?;
        Ok(())
    });
    let h = app.start("boom", &(), StartOptions::id("boom-1")).await.unwrap();
    match h.result::<()>(LONG).await {
        Err(Error::WorkflowFailed { type_, message, .. }) => {
            assert_eq!(type_, "Panic");
            assert!(message.contains("boom inside"), "{message}");
        }
        other => panic!("expected WorkflowFailed(Panic), got {other:?}"),
    }
    assert_eq!(status(&sql, "boom-1").await.as_deref(), Some("ERROR"));
    // Not stuck as running here: a start of the same id reads the ended run.
    let again = app.start("boom", &(), StartOptions::id("boom-1")).await.unwrap();
    assert!(matches!(again.result::<()>(LONG).await, Err(Error::WorkflowFailed { .. })));
    app.start("fine", &(), StartOptions::id("fine-1")).await.unwrap().result::<()>(LONG).await.unwrap();
    assert_eq!(count(&sql, "SELECT count(*) FROM ledger WHERE workflow_id = 'boom'").await, 0);
    assert_eq!(count(&sql, "SELECT count(*) FROM ledger WHERE workflow_id = 'fine'").await, 1);
}

/// Review item 2: the reconnect deadline counts from each outage, not from the run's start:
/// a run that loses its connection long after `reconnect_timeout` has passed since it began
/// still reconnects, replays and finishes.
#[tokio::test]
async fn a_lost_connection_after_the_first_deadline_is_retried_per_outage() {
    let db = ScratchDb::new().await;
    let sql = db.sql().await;
    let app = App::connect(&db.dsn(), Options::default().reconnect_timeout(Duration::from_secs(1))).await.unwrap();
    let go = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let g = go.clone();
    app.workflow("outage", move |ctx: Ctx, _: ()| {
        let g = g.clone();
        async move {
            let _: i32 = ctx.step("one", || async { Ok(1) }).await?;
            while !g.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _: i32 = ctx.step("two", || async { Ok(2) }).await?;
            Ok("done")
        }
    });
    let h = app.start("outage", &(), StartOptions::id("o-1")).await.unwrap();
    wait_for("step 1", LONG, || async {
        (count(&sql, "SELECT count(*) FROM workflow.steps WHERE workflow_id = 'o-1'").await == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // past a deadline counted from the start
    let killed = count(
        &sql,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .await;
    assert!(killed >= 1);
    go.store(true, Ordering::SeqCst);
    wait_status(&sql, "o-1", "SUCCESS").await;
    assert_eq!(h.result::<String>(LONG).await.unwrap(), "done");
}

/// Review item 4: a body waiting for a child run it started here cannot starve the pool: the
/// child executes on a connection outside the pool's budget (here a pool of one, held by the
/// parent for its whole body).
#[tokio::test]
async fn a_child_run_does_not_wait_for_its_parents_pool_connection() {
    let db = ScratchDb::new().await;
    let app = App::connect(&db.dsn(), Options::default().pool_size(1)).await.unwrap();
    app.workflow("child", |_ctx: Ctx, x: i32| async move { Ok(x * 10) });
    app.workflow("parent", |ctx: Ctx, x: i32| async move {
        let a = ctx.start("child", &x, StartOptions::default()).await?;
        let b = ctx.start("child", &(x + 1), StartOptions::default()).await?;
        let (a, b) = (a.result::<i32>(LONG).await?, b.result::<i32>(LONG).await?);
        Ok(a + b)
    });
    let h = app.start("parent", &1, StartOptions::id("pc-1")).await.unwrap();
    assert_eq!(h.result::<i32>(LONG).await.unwrap(), 30);
}
