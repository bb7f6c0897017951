//! Durable sleep, messages and events, inside and outside workflows.

use std::time::{Duration, Instant};

use pg_workflow_client::{Ctx, StartOptions};
use serde_json::{json, Value};

use crate::*;

#[tokio::test]
async fn sleep_is_durable_and_recorded_once() {
    let db = ScratchDb::new().await;
    let app = app(&db).await;
    app.workflow("nap", |ctx: Ctx, ms: u64| async move {
        ctx.sleep(Duration::from_millis(ms)).await?;
        Ok("awake")
    });
    let t0 = Instant::now();
    let h = app.start("nap", &300u64, StartOptions::id("nap-1")).await.unwrap();
    assert_eq!(h.result::<String>(LONG).await.unwrap(), "awake");
    assert!(t0.elapsed() >= Duration::from_millis(300), "it slept");
    let steps: i64 = db.sql().await.query_one("SELECT count(*) FROM workflow.steps WHERE workflow_id = 'nap-1'", &[]).await.unwrap().get(0);
    assert_eq!(steps, 1, "the wake-up time is a checkpoint");
}

#[tokio::test]
async fn messages_and_events_cross_workflows() {
    let db = ScratchDb::new().await;
    let app = app(&db).await;
    app.workflow("approver", |ctx: Ctx, target: String| async move {
        ctx.send(&target, &json!({"ok": true}), Some("approval")).await?;
        Ok(())
    });
    app.workflow("order", |ctx: Ctx, _: ()| async move {
        ctx.set_event("stage", &"waiting").await?;
        let msg: Option<Value> = ctx.recv(Some("approval"), Duration::from_secs(60)).await?;
        let none: Option<Value> = ctx.recv(Some("never"), Duration::from_millis(50)).await?;
        ctx.set_event("stage", &"approved").await?;
        Ok(json!({ "msg": msg, "none": none }))
    });
    let h = app.start("order", &(), StartOptions::id("order-1")).await.unwrap();
    let stage: Option<String> = h.get_event("stage", LONG).await.unwrap();
    assert!(stage.is_some());
    let a = app.start("approver", &"order-1", StartOptions::id("appr-1")).await.unwrap();
    a.result::<()>(LONG).await.unwrap();
    assert_eq!(h.result::<Value>(LONG).await.unwrap(), json!({"msg": {"ok": true}, "none": null}));
    assert_eq!(app.get_event::<String>("order-1", "stage", LONG).await.unwrap().as_deref(), Some("approved"));
    // A send inside a workflow carries the idempotency key <workflow_id>:<step>.
    let key: String = db
        .sql()
        .await
        .query_one("SELECT idempotency_key FROM workflow.message WHERE destination_id = 'order-1'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(key, "appr-1:1");
    // From outside: an explicit key delivers once.
    app.workflow("inbox", |ctx: Ctx, _: ()| async move {
        let a: Option<i32> = ctx.recv(None, Duration::from_secs(60)).await?;
        let b: Option<i32> = ctx.recv(None, Duration::from_millis(100)).await?;
        Ok((a, b))
    });
    let h = app.start("inbox", &(), StartOptions::id("inbox-1")).await.unwrap();
    app.send("inbox-1", &5, None, Some("k1")).await.unwrap();
    app.send("inbox-1", &6, None, Some("k1")).await.unwrap();
    assert_eq!(h.result::<(Option<i32>, Option<i32>)>(LONG).await.unwrap(), (Some(5), None));
    assert_eq!(app.get_event::<i32>("inbox-1", "nothing", Duration::from_millis(50)).await.unwrap(), None);
}
