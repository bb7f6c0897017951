//! Bad input and bad use get typed errors; SQLSTATEs are kept.

use std::collections::HashMap;
use std::time::Duration;

use pg_workflow_client::{App, Ctx, EnqueueOptions, Error, Options, ScheduleOptions, StartOptions};
use serde::Deserialize;

use crate::*;

#[derive(Deserialize)]
#[allow(dead_code)]
struct Order {
    id: String,
}

#[tokio::test]
async fn bad_calls_get_typed_errors() {
    let db = ScratchDb::new().await;
    let app = app(&db).await;
    app.workflow("noop", |_ctx: Ctx, _: ()| async move { Ok(()) });
    assert!(matches!(app.start("nope", &(), StartOptions::default()).await, Err(Error::NotRegistered(_))));
    assert!(matches!(app.enqueue("no_such_queue", "noop", &(), EnqueueOptions::default()).await, Err(Error::UnknownQueue(_))));
    match app.start("noop", &(), StartOptions::id("")).await {
        Err(e @ Error::Sql { .. }) => assert_eq!(e.sqlstate(), Some("22023")),
        other => panic!("expected 22023, got {other:?}"),
    }
    match app.schedule("s", "not a cron", "noop", &(), ScheduleOptions::default()).await {
        Err(Error::Sql { sqlstate, .. }) => assert_eq!(sqlstate, "22023"),
        other => panic!("expected 22023, got {other:?}"),
    }
    let opts = || EnqueueOptions::default().deduplication_id("d-1").delay(Duration::from_secs(3600));
    app.enqueue("default", "noop", &(), opts()).await.unwrap();
    assert!(matches!(app.enqueue("default", "noop", &(), opts()).await, Err(Error::Duplicate(_))));
    // A non-JSON value (a map with non-string keys) is refused before anything is sent.
    let bad: HashMap<(i32, i32), i32> = HashMap::from([((1, 2), 3)]);
    assert!(matches!(app.start("noop", &bad, StartOptions::default()).await, Err(Error::Serialization(_))));
    assert!(matches!(app.start_args("noop", &5, StartOptions::default()).await, Err(Error::Serialization(_))));
    assert!(matches!(app.worker(&["default"], 100).run().await, Err(Error::Usage(_))));
    match app.worker(&["no_such_queue"], 2).handle_signals(false).run().await {
        Err(Error::UnknownQueue(_)) => {}
        other => panic!("expected UnknownQueue, got {other:?}"),
    }
    assert!(matches!(app.handle("nobody").status().await, Ok(None)));
}

#[tokio::test]
async fn a_database_without_the_extension_is_named() {
    let db = ScratchDb::without_extension().await;
    assert!(matches!(App::connect(&db.dsn(), Options::default()).await, Err(Error::ExtensionMissing(_))));
    assert!(matches!(App::connect("host=/nonexistent port=1 connect_timeout=1", Options::default().reconnect_timeout(Duration::ZERO)).await, Err(Error::Connection(_))));
    assert!(matches!(App::connect("postgresql://[", Options::default()).await, Err(Error::Usage(_))));
}

#[tokio::test]
async fn a_run_with_input_of_another_shape_fails_with_a_serialization_error() {
    let db = ScratchDb::new().await;
    let app = app(&db).await;
    app.workflow("typed", |_ctx: Ctx, o: Order| async move { Ok(o.id) });
    let h = app.start_args("typed", &[42], StartOptions::id("bad-input")).await.unwrap();
    match h.result::<String>(LONG).await {
        Err(Error::WorkflowFailed { type_, .. }) => assert_eq!(type_, "SerializationError"),
        other => panic!("expected WorkflowFailed(SerializationError), got {other:?}"),
    }
}

#[tokio::test]
async fn nondeterminism_and_misuse_inside_a_body() {
    let db = ScratchDb::new().await;
    db.sql()
        .await
        .batch_execute("SELECT workflow.start('renamed', NULL, 'nd-1'); SELECT workflow.step_put('nd-1', 1, 'old_name', '1');")
        .await
        .unwrap();
    let app = app(&db).await;
    app.workflow("renamed", |ctx: Ctx, _: ()| async move {
        let v: i32 = ctx.step("new_name", || async { Ok(2) }).await?;
        Ok(v)
    });
    let h = app.start("renamed", &(), StartOptions::id("nd-1")).await.unwrap();
    match h.result::<i32>(LONG).await {
        Err(Error::WorkflowFailed { type_, .. }) => assert_eq!(type_, "NondeterminismError"),
        other => panic!("expected NondeterminismError, got {other:?}"),
    }
    app.workflow("misuse", |ctx: Ctx, _: ()| async move {
        let inner = ctx.clone();
        let r: Result<String, Error> = ctx
            .step("outer", || {
                let inner = inner.clone();
                async move {
                    // Durable calls inside a step are refused; a nested step is a plain call.
                    let refused = inner.recv::<i32>(None, Duration::from_millis(1)).await;
                    let nested: i32 = inner.step("nested", || async { Ok(1) }).await?;
                    Ok(format!("{}:{nested}", matches!(refused, Err(Error::Usage(_)))))
                }
            })
            .await;
        Ok(r?)
    });
    let h = app.start("misuse", &(), StartOptions::id("mis-1")).await.unwrap();
    assert_eq!(h.result::<String>(LONG).await.unwrap(), "true:1");
    let steps: i64 = db.sql().await.query_one("SELECT count(*) FROM workflow.steps WHERE workflow_id = 'mis-1'", &[]).await.unwrap().get(0);
    assert_eq!(steps, 1, "the nested step took no number");
}
