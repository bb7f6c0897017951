//! Durable workflows in Rust on the `pg_workflow` PostgreSQL extension: the Rust twin of the
//! Python SDK (clients/python), with the same semantics and the same JSON wire format, so
//! that runs cross languages. See README.md.
//!
//! ```no_run
//! use pg_workflow_client::{App, Ctx, Options, StartOptions};
//! # async fn demo() -> Result<(), pg_workflow_client::Error> {
//! let app = App::connect("host=/tmp/pg port=5432 user=postgres", Options::default().app_version("v1")).await?;
//! app.workflow("order", |ctx: Ctx, qty: i32| async move {
//!     let c: String = ctx.step("charge", || async move { Ok(format!("ch_{qty}")) }).await?;
//!     Ok(serde_json::json!({ "c": c }))
//! });
//! let h = app.start("order", &5, StartOptions::id("order-42")).await?;
//! let out: serde_json::Value = h.result(std::time::Duration::from_secs(30)).await?;
//! # Ok(()) }
//! ```

mod app;
mod client;
mod codec;
mod ctx;
mod db;
mod error;
mod executor;
mod handle;
mod run;
mod sql;
mod tx;
mod worker;

pub use app::{App, Options, StartOptions};
pub use client::{EnqueueOptions, QueueLimits, RunInfo, ScheduleOptions};
pub use codec::decode_input;
pub use ctx::{Ctx, StepOptions};
pub use error::{BoxError, Error, Failure, Result};
pub use handle::Handle;
pub use tx::Tx;
pub use worker::{Stopper, Worker};
/// The database types a transaction's statements use (`ToSql`, `Row`).
pub use tokio_postgres::{types::ToSql, Row};
