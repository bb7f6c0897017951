//! Helpers of the integration tests: the server (PGWF_HOST, PGWF_PORT, PGWF_USER) and
//! scratch databases with the extension, dropped after the test.

use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

pub fn host() -> String {
    std::env::var("PGWF_HOST").unwrap_or_else(|_| "/tmp/wtr-1".into())
}

pub fn port() -> String {
    std::env::var("PGWF_PORT").unwrap_or_else(|_| "5631".into())
}

pub fn user() -> String {
    std::env::var("PGWF_USER").unwrap_or_else(|_| "postgres".into())
}

pub fn dsn(db: &str) -> String {
    format!("host={} port={} user={} dbname={db}", host(), port(), user())
}

pub async fn connect(db: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(&dsn(db), NoTls).await.unwrap_or_else(|e| {
        panic!("cannot connect to {} (start one: scripts/server.sh start {} {}): {e}", dsn(db), host(), port())
    });
    tokio::spawn(conn);
    client
}

/// A database of its own for one test, with the extension (or without, for the test of a
/// missing one); dropped when the value is dropped.
pub struct ScratchDb {
    pub name: String,
}

impl ScratchDb {
    pub async fn new() -> ScratchDb {
        let db = ScratchDb::without_extension().await;
        db.sql().await.batch_execute("CREATE EXTENSION pg_workflow").await.unwrap();
        db
    }

    pub async fn without_extension() -> ScratchDb {
        let name = format!("pgwf_rs_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        connect("postgres").await.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        ScratchDb { name }
    }

    pub fn dsn(&self) -> String {
        dsn(&self.name)
    }

    /// A plain connection, for setting up and checking.
    pub async fn sql(&self) -> Client {
        connect(&self.name).await
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime: a thread of its own does the async call.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok((client, conn)) = tokio_postgres::connect(&dsn("postgres"), NoTls).await {
                    tokio::spawn(conn);
                    let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                }
            })
        })
        .join();
    }
}

/// Polls `check` until it returns Some, or panics after `deadline` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A run's status, straight from the database.
pub async fn status(db: &Client, id: &str) -> Option<String> {
    db.query_opt("SELECT status FROM workflow.runs WHERE workflow_id = $1", &[&id]).await.unwrap().map(|r| r.get(0))
}

/// The generous deadline every wait in these tests uses.
pub const LONG: Duration = Duration::from_secs(60);
