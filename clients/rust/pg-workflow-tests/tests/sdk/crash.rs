//! A worker process SIGKILLed mid-run; a restarted one (same executor id) takes its run back
//! at start and finishes it, with the transaction's row written exactly once.

use std::process::Stdio;
use std::time::Duration;

use pg_workflow_client::EnqueueOptions;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::*;

fn worker(db: &ScratchDb, executor: &str, crash_at: Option<&str>) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgwf-crash-worker"));
    cmd.arg(db.dsn()).arg(executor).stdout(Stdio::piped()).kill_on_drop(true);
    match crash_at {
        Some(at) => cmd.env("PGWF_CRASH_AT", at),
        None => cmd.env_remove("PGWF_CRASH_AT"),
    };
    let mut child = cmd.spawn().expect("spawn pgwf-crash-worker");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

async fn line_with(lines: &mut Lines<BufReader<ChildStdout>>, prefix: &str) -> String {
    tokio::time::timeout(LONG, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with(prefix) {
                return line;
            }
        }
        panic!("the worker exited before printing {prefix:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("no {prefix:?} from the worker within {LONG:?}"))
}

async fn crash_and_recover(crash_at: &str) {
    let db = ScratchDb::new().await;
    let sql = db.sql().await;
    sql.batch_execute("CREATE TABLE crash_ledger (workflow_id text, amount int)").await.unwrap();
    let app = app(&db).await;
    let id = format!("crash-{crash_at}");
    let h = app.enqueue("default", "crashy", &5, EnqueueOptions::id(&id)).await.unwrap();
    let executor = format!("crash-exec-{crash_at}");

    let (mut first, mut out) = worker(&db, &executor, Some(crash_at));
    line_with(&mut out, &format!("paused {crash_at} {id}")).await;
    first.start_kill().unwrap(); // SIGKILL
    first.wait().await.unwrap();
    let committed: i64 = sql.query_one("SELECT count(*) FROM crash_ledger", &[]).await.unwrap().get(0);
    assert_eq!(committed, if crash_at == "tx" { 0 } else { 1 }, "what the killed worker committed");
    assert_eq!(status(&sql, &id).await.as_deref(), Some("PENDING"));

    let (mut second, mut out) = worker(&db, &executor, None);
    line_with(&mut out, "worker up").await;
    assert_eq!(h.result::<i64>(LONG).await.unwrap(), 1, "the transaction saw its one row");
    let rows: i64 = sql.query_one("SELECT count(*) FROM crash_ledger", &[]).await.unwrap().get(0);
    assert_eq!(rows, 1, "the transactional step happened exactly once");
    let owner: String = sql.query_one("SELECT executor_id FROM workflow.runs WHERE workflow_id = $1", &[&id]).await.unwrap().get(0);
    assert_eq!(owner, executor);

    // SIGTERM: the worker drains and exits 0.
    let pid = second.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let exit = tokio::time::timeout(LONG, second.wait()).await.expect("the worker exits after SIGTERM").unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn a_worker_killed_inside_a_transaction_is_finished_by_its_restart() {
    crash_and_recover("tx").await;
}

#[tokio::test]
async fn a_worker_killed_after_a_transaction_is_finished_by_its_restart() {
    crash_and_recover("step").await;
}

/// Review item 9: SIGTERM while the worker takes back its own runs (here waiting for a free
/// slot: five runs, four slots, the four paused) stops it gracefully instead of killing it.
#[tokio::test]
async fn sigterm_while_taking_back_own_runs_stops_the_worker() {
    let db = ScratchDb::new().await;
    let sql = db.sql().await;
    sql.batch_execute("CREATE TABLE crash_ledger (workflow_id text, amount int)").await.unwrap();
    let executor = "sig-exec";
    sql.execute("SELECT workflow.register_executor($1)", &[&executor]).await.unwrap();
    for i in 0..5 {
        sql.execute("SELECT workflow.start('crashy', '[1]', $1, $2)", &[&format!("sig-{i}"), &executor]).await.unwrap();
    }
    let (mut child, mut out) = worker(&db, executor, Some("step"));
    for _ in 0..4 {
        line_with(&mut out, "paused step").await;
    }
    // Its four slots are taken by paused runs; it waits for one to take back the fifth.
    let pid = child.id().unwrap().to_string();
    let exit = tokio::time::timeout(LONG, async {
        loop {
            // The first SIGTERM starts a drain (of runs that never end), a later one returns.
            let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
            if let Ok(Some(exit)) = child.try_wait() {
                return exit;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
    .expect("the worker exits after SIGTERMs");
    assert!(exit.success(), "the worker handled SIGTERM and exited 0: {exit:?}");
}
