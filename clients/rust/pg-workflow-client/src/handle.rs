//! A handle on a run: its id, its status and its result, from this process or any other.

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::watch;

use crate::app::App;
use crate::codec;
use crate::error::{Error, Result};
use crate::run::Outcome;
use crate::sql;

#[derive(Clone)]
pub struct Handle {
    app: App,
    workflow_id: String,
    /// Set when this process runs the body: its outcome, without a database wait.
    local: Option<watch::Receiver<Option<Outcome>>>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Handle({:?})", self.workflow_id)
    }
}

impl Handle {
    pub(crate) fn new(app: App, workflow_id: String, local: Option<watch::Receiver<Option<Outcome>>>) -> Handle {
        Handle { app, workflow_id, local }
    }

    pub fn workflow_id(&self) -> &str {
        &self.workflow_id
    }

    /// PENDING, ENQUEUED, DELAYED, SUCCESS, ERROR, CANCELLED or MAX_RECOVERY_ATTEMPTS_EXCEEDED;
    /// `None` for an unknown id.
    pub async fn status(&self) -> Result<Option<String>> {
        Ok(self.app.call_opt(sql::STATUS, &[&self.workflow_id]).await?.map(|r| r.get(0)))
    }

    /// The output, once the run has ended: [`Error::WorkflowFailed`] (the recorded type,
    /// message and traceback), [`Error::Cancelled`], or [`Error::Timeout`] when it has not
    /// ended within `timeout` (it goes on).
    pub async fn result<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T> {
        let deadline = Instant::now() + timeout;
        if let Some(mut rx) = self.local.clone() {
            let ended = tokio::time::timeout(timeout, rx.wait_for(|o| o.is_some())).await;
            match ended {
                Err(_) => return Err(self.timeout(timeout, "PENDING")),
                Ok(Ok(o)) => match o.clone() {
                    Some(Outcome::Success(v)) => return codec::decode(v, "the workflow's output"),
                    Some(Outcome::Failed(e)) => return Err(Error::from_wire_run(&self.workflow_id, &e)),
                    _ => {} // not ended here: ask the database
                },
                Ok(Err(_)) => {}
            }
        }
        let left = deadline.saturating_duration_since(Instant::now()).as_secs_f64();
        let row = self.app.call(sql::WAIT, &[&self.workflow_id, &left]).await?;
        let status: Option<String> = row.get(0);
        let status = status.unwrap_or_default();
        match status.as_str() {
            "SUCCESS" => codec::decode(row.get::<_, Option<Value>>(1).unwrap_or(Value::Null), "the workflow's output"),
            "ERROR" => Err(Error::from_wire_run(&self.workflow_id, &row.get::<_, Option<Value>>(2).unwrap_or(Value::Null))),
            "CANCELLED" => Err(Error::Cancelled(format!("workflow {} was cancelled", self.workflow_id))),
            "MAX_RECOVERY_ATTEMPTS_EXCEEDED" => Err(Error::WorkflowFailed {
                workflow_id: self.workflow_id.clone(),
                type_: "MaxRecoveryAttemptsExceeded".into(),
                message: "dead-lettered after too many recovery attempts".into(),
                traceback: None,
            }),
            other => Err(self.timeout(timeout, other)),
        }
    }

    fn timeout(&self, timeout: Duration, status: &str) -> Error {
        Error::Timeout(format!("workflow {} is {status} after {timeout:?}", self.workflow_id))
    }

    /// Cancels the run; its body stops at its next step. False if it had already ended.
    pub async fn cancel(&self) -> Result<bool> {
        self.app.cancel(&self.workflow_id).await
    }

    pub async fn get_event<T: DeserializeOwned>(&self, key: &str, timeout: Duration) -> Result<Option<T>> {
        self.app.get_event(&self.workflow_id, key, timeout).await
    }
}
