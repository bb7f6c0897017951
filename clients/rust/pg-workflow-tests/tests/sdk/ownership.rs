//! Fencing (a stale executor gets NotOwner and stops), cancellation, version routing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pg_workflow_client::{App, Ctx, EnqueueOptions, Error, Options, StartOptions};
use tokio::sync::Notify;

use crate::*;

#[tokio::test]
async fn a_stale_executor_is_fenced_and_stops_without_finishing() {
    let db = ScratchDb::new().await;
    let sql = db.sql().await;
    let stale = App::connect(&db.dsn(), Options::default().executor_id("exec-a")).await.unwrap();
    let go = Arc::new(Notify::new());
    let seen: Arc<Mutex<Option<Error>>> = Arc::new(Mutex::new(None));
    let (g, s) = (go.clone(), seen.clone());
    stale.workflow("fenced", move |ctx: Ctx, _: ()| {
        let (g, s) = (g.clone(), s.clone());
        async move {
            let _: i32 = ctx.step("one", || async { Ok(1) }).await?;
            g.notified().await; // the run is taken over meanwhile
            let r = ctx.step("two", || async { Ok(2) }).await;
            *s.lock().unwrap() = r.as_ref().err().cloned();
            let _: i32 = r?;
            Ok("finished by the stale executor")
        }
    });
    stale.start("fenced", &(), StartOptions::id("f-1")).await.unwrap();
    wait_for("step 1", LONG, || async {
        let n: i64 = sql.query_one("SELECT count(*) FROM workflow.steps WHERE workflow_id = 'f-1'", &[]).await.unwrap().get(0);
        (n == 1).then_some(())
    })
    .await;
    // exec-a's lease expires; exec-b claims the run.
    sql.batch_execute(
        "UPDATE workflow.executor SET last_heartbeat = now() - interval '1 hour' WHERE executor_id = 'exec-a';
         SELECT workflow.register_executor('exec-b');",
    )
    .await
    .unwrap();
    let claimed: bool = sql
        .query_one("SELECT claimed FROM workflow.start('fenced', NULL, 'f-1', 'exec-b')", &[])
        .await
        .unwrap()
        .get(0);
    assert!(claimed);
    go.notify_one();
    wait_for("the stale body's error", LONG, || async { seen.lock().unwrap().clone() })
        .await
        .sqlstate()
        .map(|s| assert_eq!(s, "WF007"));
    assert!(matches!(seen.lock().unwrap().clone(), Some(Error::NotOwner(_))));
    // Nothing was finished or failed by the stale executor: exec-b owns a PENDING run.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let row = sql.query_one("SELECT status, executor_id FROM workflow.runs WHERE workflow_id = 'f-1'", &[]).await.unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1)), ("PENDING".into(), "exec-b".into()));
}

#[tokio::test]
async fn a_cancelled_run_stops_at_its_next_step() {
    let db = ScratchDb::new().await;
    let app = app(&db).await;
    let steps = Arc::new(AtomicUsize::new(0));
    let s = steps.clone();
    app.workflow("forever", move |ctx: Ctx, _: ()| {
        let s = s.clone();
        async move {
            loop {
                let _: () = ctx
                    .step("tick", || async {
                        s.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok(())
                    })
                    .await?;
            }
            #[allow(unreachable_code)]
            Ok(())
        }
    });
    let h = app.start("forever", &(), StartOptions::id("c-1")).await.unwrap();
    let steps_ref = steps.clone();
    wait_for("a few steps", LONG, || async { (steps_ref.load(Ordering::SeqCst) >= 3).then_some(()) }).await;
    assert!(h.cancel().await.unwrap());
    assert!(matches!(h.result::<()>(LONG).await, Err(Error::Cancelled(_))));
    let after = steps.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(steps.load(Ordering::SeqCst) <= after + 1, "the body stopped");
    assert!(!h.cancel().await.unwrap(), "an ended run is not cancelled again");
    assert_eq!(h.status().await.unwrap().as_deref(), Some("CANCELLED"));
}

#[tokio::test]
async fn workers_claim_only_runs_of_their_version() {
    let db = ScratchDb::new().await;
    let v1 = App::connect(&db.dsn(), Options::default().app_version("v1")).await.unwrap();
    let v2 = App::connect(&db.dsn(), Options::default().app_version("v2")).await.unwrap();
    for app in [&v1, &v2] {
        let version = app.app_version().unwrap().to_string();
        app.workflow("versioned", move |_ctx: Ctx, _: ()| {
            let v = version.clone();
            async move { Ok(v) }
        });
    }
    let h = v1.enqueue("default", "versioned", &(), EnqueueOptions::id("v-1")).await.unwrap();
    let w2 = v2.worker(&["default"], 2).poll(Duration::from_millis(200)).handle_signals(false);
    let stop2 = w2.stopper();
    let run2 = tokio::spawn(w2.run());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.status().await.unwrap().as_deref(), Some("ENQUEUED"), "a v2 worker leaves a v1 run");
    let w1 = v1.worker(&["default"], 2).poll(Duration::from_millis(200)).handle_signals(false);
    let stop1 = w1.stopper();
    let run1 = tokio::spawn(w1.run());
    assert_eq!(h.result::<String>(LONG).await.unwrap(), "v1");
    stop1.stop();
    stop2.stop();
    run1.await.unwrap().unwrap();
    run2.await.unwrap().unwrap();
}
