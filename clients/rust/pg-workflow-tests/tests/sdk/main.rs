//! The SDK's integration suite: a real server with the real extension, one scratch database
//! per test (the schedule test uses `postgres`, which the server's scheduler serves).

mod basics;
mod crash;
mod durable;
mod errors;
mod ownership;
mod queues;
mod review;

use pg_workflow_client::{App, Options};

pub use pg_workflow_tests::*;

pub async fn app(db: &ScratchDb) -> App {
    App::connect(&db.dsn(), Options::default()).await.expect("connect")
}
