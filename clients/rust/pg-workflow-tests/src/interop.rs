//! The Rust part of the three-language test (tests/integration/test_three_languages.py):
//! `pgwf-interop DSN WORKFLOW_ID` waits for the run's event `stage`, then sends it the message
//! it waits for (topic `approval`), and prints the event it saw.

use std::time::Duration;

use pg_workflow_client::{App, Options};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), pg_workflow_client::Error> {
    let mut args = std::env::args().skip(1);
    let dsn = args.next().expect("DSN");
    let workflow_id = args.next().expect("WORKFLOW_ID");
    let app = App::connect(&dsn, Options::default()).await?;
    let stage: Option<Value> = app.get_event(&workflow_id, "stage", Duration::from_secs(120)).await?;
    let stage = stage.expect("the run set its event `stage` within 120 s");
    app.send(&workflow_id, &json!({ "approved_by": "rust", "after": stage }), Some("approval"), None).await?;
    println!("{stage}");
    Ok(())
}
