//! The worker process the crash test SIGKILLs: `pgwf-crash-worker DSN EXECUTOR_ID`.
//!
//! Its workflow `crashy` runs a transaction that writes one row to `crash_ledger`, then a
//! step. With PGWF_CRASH_AT=tx it stops inside the open transaction (after its INSERT), with
//! PGWF_CRASH_AT=step inside the step after the transaction committed: it prints
//! `paused <where> <workflow_id>` and waits to be killed. Without it the run finishes. SIGTERM
//! drains and exits 0.

use std::io::Write;
use std::time::Duration;

use pg_workflow_client::{App, Ctx, Options};

fn pause(at: &str, id: &str) -> bool {
    if std::env::var("PGWF_CRASH_AT").as_deref() != Ok(at) {
        return false;
    }
    println!("paused {at} {id}");
    std::io::stdout().flush().unwrap();
    true
}

#[tokio::main]
async fn main() -> Result<(), pg_workflow_client::Error> {
    let mut args = std::env::args().skip(1);
    let dsn = args.next().expect("DSN");
    let executor = args.next().expect("EXECUTOR_ID");
    let app = App::connect(&dsn, Options::default().executor_id(executor)).await?;
    app.workflow("crashy", |ctx: Ctx, amount: i32| async move {
        let id = ctx.workflow_id().to_string();
        let rows: i64 = ctx
            .transaction("debit", |tx| {
                let id = id.clone();
                async move {
                    tx.execute("INSERT INTO crash_ledger VALUES ($1, $2)", &[&id, &amount]).await?;
                    if pause("tx", &id) {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    Ok(tx.query_one("SELECT count(*) FROM crash_ledger WHERE workflow_id = $1", &[&id]).await?.get(0))
                }
            })
            .await?;
        ctx.step("after", || async {
            if pause("step", &id) {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Ok(())
        })
        .await?;
        Ok(rows)
    });
    println!("worker up");
    std::io::stdout().flush().unwrap();
    app.worker(&["default"], 4).poll(Duration::from_millis(200)).run().await
}
