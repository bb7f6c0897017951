//! W1/W2 for the Rust SDK and for a hand-written tokio-postgres loop over the same SQL, like
//! bench/sdk_vs_dbos/bench.py does for Python (bench/rust_sdk.sh runs it and takes medians).
//!
//!   pg-workflow-bench hand|sdk N      env: BENCH_DSN, BENCH_QUEUE (created beforehand), WARMUP
//!
//! W1: N ten-step workflows one after another (each step returns a small JSON object).
//! W2: N such workflows enqueued, drained by 16 concurrent workers in this process; the clock
//!     runs from the first enqueue until the last run has ended, workers already started.
//! Prints "W1 W2" in workflows per second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_workflow_client::{App, Ctx, EnqueueOptions, Options, StartOptions};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_postgres::{Client, NoTls, Statement};

const STEPS: i32 = 10;
const WORKERS: usize = 16;

fn step_output(n: i64, i: i32) -> Value {
    json!({ "n": n, "step": i, "ok": true })
}

async fn connect(dsn: &str) -> Client {
    let (c, conn) = tokio_postgres::connect(dsn, NoTls).await.expect("connect");
    tokio::spawn(conn);
    c
}

/// The hand loop's statements, prepared once per connection.
struct Prepared {
    put: Statement,
    finish: Statement,
}

async fn prepare(c: &Client) -> Prepared {
    Prepared {
        put: c.prepare("SELECT workflow.step_put($1, $2, $3, $4::jsonb, NULL, $5)").await.unwrap(),
        finish: c.prepare("SELECT workflow.finish($1, $2::jsonb, $3)").await.unwrap(),
    }
}

/// start (or dequeue) has claimed `wid`: 10 step_put, then finish, fenced with executor_id.
async fn hand_body(c: &Client, p: &Prepared, wid: &str, n: i64, executor: &str) {
    let mut last = Value::Null;
    for i in 1..=STEPS {
        last = step_output(n, i);
        c.query_one(&p.put, &[&wid, &i, &format!("step{i}"), &last, &executor]).await.unwrap();
    }
    c.query_one(&p.finish, &[&wid, &last, &executor]).await.unwrap();
}

async fn bench_hand(dsn: &str, queue: &str, n: i64, warmup: i64) -> (f64, f64) {
    let executor = format!("hand-{}", uuid::Uuid::new_v4());
    let c = connect(dsn).await;
    c.query_one("SELECT workflow.register_executor($1, 'bench')", &[&executor]).await.unwrap();
    let start = c
        .prepare("SELECT status, last_step, claimed FROM workflow.start('ten_steps', $1::jsonb, $2, $3)")
        .await
        .unwrap();
    let prepared = prepare(&c).await;
    let one = |k: i64| {
        let (c, start, executor, prepared) = (&c, &start, &executor, &prepared);
        async move {
            let wid = uuid::Uuid::new_v4().to_string();
            let row = c.query_one(start, &[&json!({ "n": k }), &wid, executor]).await.unwrap();
            assert!(row.get::<_, bool>(2) && row.get::<_, i32>(1) == 0);
            hand_body(c, prepared, &wid, k, executor).await;
        }
    };
    for k in 0..warmup {
        one(k).await;
    }
    let t0 = Instant::now();
    for k in 0..n {
        one(k).await;
    }
    let w1 = t0.elapsed();

    let done = Arc::new(Semaphore::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ready = Arc::new(tokio::sync::Barrier::new(WORKERS + 1));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (dsn, queue, executor) = (dsn.to_string(), queue.to_string(), executor.clone());
        let (done, stop, ready) = (done.clone(), stop.clone(), ready.clone());
        workers.push(tokio::spawn(async move {
            let c = connect(&dsn).await;
            let dq = c
                .prepare("SELECT workflow_id, input FROM workflow.dequeue($1, $2, 1, '200 ms')")
                .await
                .unwrap();
            let prepared = prepare(&c).await;
            ready.wait().await;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Some(row) = c.query_opt(&dq, &[&queue, &executor]).await.unwrap() {
                    let input: Value = row.get(1);
                    hand_body(&c, &prepared, row.get(0), input["n"].as_i64().unwrap(), &executor).await;
                    done.add_permits(1);
                }
            }
        }));
    }
    ready.wait().await;
    let enq = c
        .prepare("SELECT workflow.enqueue($1, 'ten_steps', $2::jsonb, app_version => 'bench')")
        .await
        .unwrap();
    let t0 = Instant::now();
    for k in 0..n {
        c.query_one(&enq, &[&queue, &json!({ "n": k })]).await.unwrap();
    }
    let _ = done.acquire_many(n as u32).await.unwrap();
    let w2 = t0.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    (n as f64 / w1.as_secs_f64(), n as f64 / w2.as_secs_f64())
}

async fn bench_sdk(dsn: &str, queue: &str, n: i64, warmup: i64) -> (f64, f64) {
    let app = App::connect(dsn, Options::default().app_version("bench")).await.unwrap();
    app.workflow("ten_steps", |ctx: Ctx, wf_n: i64| async move {
        let mut last = Value::Null;
        for i in 1..=STEPS {
            last = ctx.step(&format!("step{i}"), || async move { Ok(step_output(wf_n, i)) }).await?;
        }
        Ok(last)
    });
    let forever = Duration::from_secs(600);
    for k in 0..warmup {
        app.start("ten_steps", &k, StartOptions::default()).await.unwrap().result::<Value>(forever).await.unwrap();
    }
    let t0 = Instant::now();
    for k in 0..n {
        app.start("ten_steps", &k, StartOptions::default()).await.unwrap().result::<Value>(forever).await.unwrap();
    }
    let w1 = t0.elapsed();

    let worker = app.worker(&[queue], WORKERS).poll(Duration::from_millis(200)).handle_signals(false);
    let stop = worker.stopper();
    let running = tokio::spawn(worker.run());
    let t0 = Instant::now();
    let mut handles = Vec::with_capacity(n as usize);
    for k in 0..n {
        handles.push(app.enqueue(queue, "ten_steps", &k, EnqueueOptions::default()).await.unwrap());
    }
    for h in handles {
        h.result::<Value>(forever).await.unwrap();
    }
    let w2 = t0.elapsed();
    stop.stop();
    running.await.unwrap().unwrap();
    app.close().await;
    (n as f64 / w1.as_secs_f64(), n as f64 / w2.as_secs_f64())
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().expect("hand|sdk");
    let n: i64 = args.next().map(|s| s.parse().expect("N")).unwrap_or(300);
    let dsn = std::env::var("BENCH_DSN").expect("BENCH_DSN");
    let queue = std::env::var("BENCH_QUEUE").expect("BENCH_QUEUE");
    let warmup: i64 = std::env::var("WARMUP").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let (w1, w2) = match which.as_str() {
        "hand" => bench_hand(&dsn, &queue, n, warmup).await,
        "sdk" => bench_sdk(&dsn, &queue, n, warmup).await,
        other => panic!("unknown library {other}: hand or sdk"),
    };
    println!("{w1:.1} {w2:.1}");
}
