//! Queues and workers: enqueue options, child enqueues, drain on stop, own runs taken back,
//! resume, fork, list, and schedules (on `postgres`, the database the scheduler serves).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pg_workflow_client::{App, Ctx, EnqueueOptions, Error, Options, QueueLimits, ScheduleOptions};
use serde_json::json;

use crate::*;

fn background(app: &App, queues: &[&str], concurrency: usize) -> (pg_workflow_client::Stopper, tokio::task::JoinHandle<pg_workflow_client::Result<()>>) {
    let w = app.worker(queues, concurrency).poll(Duration::from_millis(200)).handle_signals(false);
    let stop = w.stopper();
    (stop, tokio::spawn(w.run()))
}

#[tokio::test]
async fn a_worker_drains_a_queue_in_priority_order_with_delays_and_children() {
    let db = ScratchDb::new().await;
    let app = app(&db).await;
    app.create_queue("emails", QueueLimits { concurrency: Some(1), ..Default::default() }).await.unwrap();
    app.create_queue("emails", QueueLimits::default()).await.unwrap(); // exists: kept
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    app.workflow("mail", move |_ctx: Ctx, n: i32| {
        let o = o.clone();
        async move {
            o.lock().unwrap().push(n);
            Ok(n)
        }
    });
    app.workflow("fan_out", |ctx: Ctx, n: i32| async move {
        let mut handles = Vec::new();
        for i in 0..n {
            handles.push(ctx.enqueue("emails", "mail", &(100 + i), EnqueueOptions::default().priority(20)).await?);
        }
        let mut sum = 0;
        for h in handles {
            sum += h.result::<i32>(Duration::from_secs(60)).await?;
        }
        Ok(sum)
    });
    for (n, priority) in [(1, 5), (2, 1), (3, 3)] {
        app.enqueue("emails", "mail", &n, EnqueueOptions::default().priority(priority).partition_key("t-1")).await.unwrap();
    }
    let delayed = app.enqueue("emails", "mail", &9, EnqueueOptions::id("late").priority(10).delay(Duration::from_millis(500))).await.unwrap();
    assert_eq!(delayed.status().await.unwrap().as_deref(), Some("DELAYED"));
    let fan = app.enqueue("default", "fan_out", &2, EnqueueOptions::id("fan")).await.unwrap();

    let (stop, worker) = background(&app, &["emails", "default"], 4);
    assert_eq!(fan.result::<i32>(LONG).await.unwrap(), 201);
    assert_eq!(delayed.result::<i32>(LONG).await.unwrap(), 9);
    assert_eq!(order.lock().unwrap()[..3], [2, 3, 1], "lower priority first");
    let children = app.list(Some("SUCCESS"), Some("mail"), 100).await.unwrap();
    let mut ids: Vec<_> = children.iter().filter(|r| r.parent_id.as_deref() == Some("fan")).map(|r| r.workflow_id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["fan-1", "fan-2"]);
    stop.stop();
    worker.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_stopped_worker_drains_its_runs_and_a_new_one_takes_back_its_own() {
    let db = ScratchDb::new().await;
    let sql = db.sql().await;
    let app = App::connect(&db.dsn(), Options::default().executor_id("w-1")).await.unwrap();
    app.workflow("slow", |ctx: Ctx, ms: u64| async move {
        ctx.sleep(Duration::from_millis(ms)).await?;
        Ok(ms)
    });
    let h = app.enqueue("default", "slow", &500u64, EnqueueOptions::id("slow-1")).await.unwrap();
    let (stop, worker) = background(&app, &["default"], 2);
    wait_for("the run to be claimed", LONG, || async { (status(&sql, "slow-1").await.as_deref() == Some("PENDING")).then_some(()) }).await;
    stop.stop();
    worker.await.unwrap().unwrap();
    assert_eq!(status(&sql, "slow-1").await.as_deref(), Some("SUCCESS"), "run drained before run() returned");
    assert_eq!(h.result::<u64>(LONG).await.unwrap(), 500);

    // A run this executor owns (PENDING, e.g. from before a crash) is taken back at start.
    sql.batch_execute("SELECT workflow.start('slow', '[10]', 'own-1', 'w-1')").await.unwrap();
    let (stop, worker) = background(&app, &["default"], 2);
    assert_eq!(app.handle("own-1").result::<u64>(LONG).await.unwrap(), 10);
    stop.stop();
    worker.await.unwrap().unwrap();
}

#[tokio::test]
async fn resume_fork_and_list() {
    let db = ScratchDb::new().await;
    let app = app(&db).await;
    let fail = Arc::new(AtomicUsize::new(1));
    let runs = Arc::new(AtomicUsize::new(0));
    let (f, r) = (fail.clone(), runs.clone());
    app.workflow("fragile", move |ctx: Ctx, _: ()| {
        let (f, r) = (f.clone(), r.clone());
        async move {
            let a: i32 = ctx.step("first", || async { r.fetch_add(1, Ordering::SeqCst); Ok(1) }).await?;
            let b: i32 = ctx
                .step("second", || async {
                    if f.load(Ordering::SeqCst) == 1 {
                        return Err("boom".into());
                    }
                    Ok(2)
                })
                .await?;
            Ok(a + b)
        }
    });
    let h = app.enqueue("default", "fragile", &(), EnqueueOptions::id("fr-1")).await.unwrap();
    let (stop, worker) = background(&app, &["default"], 2);
    match h.result::<i32>(LONG).await {
        Err(Error::WorkflowFailed { type_, message, .. }) => assert_eq!((type_.as_str(), message.as_str()), ("Error", "boom")),
        other => panic!("expected WorkflowFailed, got {other:?}"),
    }
    assert_eq!(app.list(Some("ERROR"), Some("fragile"), 10).await.unwrap()[0].workflow_id, "fr-1");
    fail.store(0, Ordering::SeqCst);
    // Fork from step 2: step 1's checkpoint is kept, step 2 runs again.
    let forked = app.fork("fr-1", 2, Some("fr-2"), "default").await.unwrap();
    assert_eq!(forked.result::<i32>(LONG).await.unwrap(), 3);
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the fork replayed step 1");
    // Resume a cancelled run: it goes back on its queue and finishes.
    let c = app.enqueue("default", "fragile", &(), EnqueueOptions::id("fr-3").delay(Duration::from_secs(3600))).await.unwrap();
    assert!(c.cancel().await.unwrap());
    app.resume("fr-3").await.unwrap();
    assert_eq!(c.result::<i32>(LONG).await.unwrap(), 3);
    let all = app.list(None, None, 10).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|r| r.input == Some(json!([]))), "() is written as no arguments");
    stop.stop();
    worker.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_schedule_fires_into_a_queue_that_a_worker_drains() {
    // The server's scheduler serves `postgres`: names are unique per test run.
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let (queue, wf, sched) = (format!("rs_q_{tag}"), format!("rs_cron_{tag}"), format!("rs_s_{tag}"));
    let sql = connect("postgres").await;
    sql.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_workflow").await.unwrap();
    let app = App::connect(&dsn("postgres"), Options::default()).await.unwrap();
    app.create_queue(&queue, QueueLimits::default()).await.unwrap();
    app.workflow(&wf, |_ctx: Ctx, x: String| async move { Ok(x) });
    let next = app.schedule(&sched, "* * * * * *", &wf, &"tick", ScheduleOptions::default().queue(&queue)).await.unwrap();
    assert!(next <= Duration::from_secs(2));
    let (stop, worker) = background(&app, &[&queue], 2);
    let run = wait_for("a fired run to succeed", LONG, || async {
        app.list(Some("SUCCESS"), Some(&wf), 1).await.unwrap().into_iter().next()
    })
    .await;
    assert_eq!(run.output, Some(json!("tick")));
    assert!(run.workflow_id.starts_with(&format!("cron:{sched}:")));
    app.unschedule(&sched).await.unwrap();
    stop.stop();
    worker.await.unwrap().unwrap();
    // Leave `postgres` as it was: the runs, then the queue.
    sql.batch_execute(&format!(
        "SELECT workflow.cancel(workflow_id) FROM workflow.runs WHERE name = '{wf}';
         SELECT workflow.delete(workflow_id) FROM workflow.runs WHERE name = '{wf}';
         SELECT workflow.drop_queue('{queue}');"
    ))
    .await
    .unwrap();
}
