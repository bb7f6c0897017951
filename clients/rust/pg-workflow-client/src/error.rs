//! The SDK's error enum, and the one place that maps the extension's SQLSTATEs onto it
//! (README.md, "Errors"; the Python SDK's errors.py does the same mapping).

use std::fmt;

/// What a step or a workflow body returns on failure: any error converts into it with `?`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result<T, pg_workflow_client::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error the SDK returns. Database errors keep their SQLSTATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Any other database error, with its SQLSTATE (e.g. `22023` for a bad argument).
    Sql { sqlstate: String, message: String },
    /// WF007, or a step recorded by another executor: the run has a new owner. The body stops
    /// without finishing or failing the run.
    NotOwner(String),
    /// WF003: the run was cancelled or passed its deadline. The body stops.
    Cancelled(String),
    /// WF002: on replay, the step recorded at this position has another name.
    Nondeterminism(String),
    /// WF005: the queue does not exist.
    UnknownQueue(String),
    /// 23505 on start or enqueue: the id belongs to a run of another workflow, or a
    /// deduplication_id is held by an active run.
    Duplicate(String),
    /// The database has no pg_workflow extension.
    ExtensionMissing(String),
    /// A run names a workflow this App has not registered with `app.workflow(...)`.
    NotRegistered(String),
    /// A value (input, output, message, event) that is not JSON, or JSON of the wrong shape.
    Serialization(String),
    /// A run ended with ERROR: the recorded error's type, message and traceback.
    WorkflowFailed { workflow_id: String, type_: String, message: String, traceback: Option<String> },
    /// A step failed after its retries (first run and replay alike): the recorded error.
    StepFailed { type_: String, message: String, traceback: Option<String> },
    /// `result()` or a wait ran out of time; the run goes on.
    Timeout(String),
    /// The database could not be reached (after retrying up to `reconnect_timeout`), or a
    /// running body's connection broke (the runner reconnects and replays it).
    Connection(String),
    /// The API was used in a way it does not allow (e.g. `recv` inside a step), or a
    /// statement's client-side error (`query_one` without a row, a type mismatch).
    Usage(String),
}

impl Error {
    /// The SQLSTATE this error came from, when it came from the database.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Sql { sqlstate, .. } => Some(sqlstate),
            Error::NotOwner(_) => Some("WF007"),
            Error::Cancelled(_) => Some("WF003"),
            Error::Nondeterminism(_) => Some("WF002"),
            Error::UnknownQueue(_) => Some("WF005"),
            Error::Duplicate(_) => Some("23505"),
            _ => None,
        }
    }

    /// The `type` recorded in the wire format's error object for this error (the names of
    /// the Python SDK's exceptions, so that both SDKs read them alike).
    pub fn type_name(&self) -> &str {
        match self {
            Error::Sql { .. } => "DatabaseError",
            Error::NotOwner(_) => "NotOwnerError",
            Error::Cancelled(_) => "WorkflowCancelled",
            Error::Nondeterminism(_) => "NondeterminismError",
            Error::UnknownQueue(_) => "UnknownQueue",
            Error::Duplicate(_) => "DuplicateWorkflow",
            Error::ExtensionMissing(_) => "ExtensionMissing",
            Error::NotRegistered(_) => "WorkflowNotRegistered",
            Error::Serialization(_) => "SerializationError",
            Error::WorkflowFailed { .. } => "WorkflowFailed",
            Error::StepFailed { type_, .. } => type_,
            Error::Timeout(_) => "TimeoutError",
            Error::Connection(_) => "ConnectionError",
            Error::Usage(_) => "UsageError",
        }
    }

    /// Errors that stop a body without recording anything: another executor owns the run,
    /// it was cancelled, or its connection broke (the runner replays it).
    pub(crate) fn stops_body(&self) -> bool {
        matches!(self, Error::NotOwner(_) | Error::Cancelled(_) | Error::Connection(_))
    }

    pub(crate) fn from_pg(e: tokio_postgres::Error, what: &str) -> Error {
        let Some(db) = e.as_db_error() else {
            let text = if what.is_empty() { e.to_string() } else { format!("{what}: {e}") };
            // Only a broken transport is a lost connection (the runner reconnects and replays);
            // the caller's own mistakes (no row for query_one, a type mismatch, a bad column or
            // parameter count, a bad configuration) are errors of the call.
            return if is_transport(&e) { Error::Connection(text) } else { Error::Usage(text) };
        };
        let state = db.code().code();
        let message = if what.is_empty() { db.message().to_string() } else { format!("{what}: {}", db.message()) };
        match state {
            "WF007" => Error::NotOwner(message),
            "WF003" => Error::Cancelled(message),
            "WF002" => Error::Nondeterminism(message),
            "WF005" => Error::UnknownQueue(message),
            "23505" => Error::Duplicate(message),
            "3F000" | "42883" | "42P01" => Error::ExtensionMissing(format!(
                "the database has no pg_workflow extension (CREATE EXTENSION pg_workflow): {message}")),
            s if s.starts_with("08") || matches!(s, "57P01" | "57P02" | "57P03" | "53300") => Error::Connection(message),
            _ => Error::Sql { sqlstate: state.to_string(), message },
        }
    }

    /// The wire format's error object: `{"type", "message", "traceback"}`.
    pub(crate) fn wire(type_: &str, message: &str, traceback: Option<&str>) -> serde_json::Value {
        serde_json::json!({ "type": type_, "message": message, "traceback": traceback.unwrap_or("") })
    }

    /// The recorded form of any body or step error.
    pub(crate) fn to_wire(e: &(dyn std::error::Error + Send + Sync + 'static)) -> serde_json::Value {
        if let Some(ours) = e.downcast_ref::<Error>() {
            return match ours {
                Error::StepFailed { type_, message, traceback } => Error::wire(type_, message, traceback.as_deref()),
                _ => Error::wire(ours.type_name(), &ours.to_string(), None),
            };
        }
        if let Some(f) = e.downcast_ref::<Failure>() {
            return Error::wire(&f.type_, &f.message, None);
        }
        Error::wire("Error", &e.to_string(), Some(&format!("{e:?}")))
    }

    pub(crate) fn from_wire_step(error: &serde_json::Value) -> Error {
        let (type_, message, traceback) = parts(error);
        Error::StepFailed { type_, message, traceback }
    }

    pub(crate) fn from_wire_run(workflow_id: &str, error: &serde_json::Value) -> Error {
        let (type_, message, traceback) = parts(error);
        Error::WorkflowFailed { workflow_id: workflow_id.to_string(), type_, message, traceback }
    }
}

/// A tokio-postgres error of the connection itself: closed, I/O (the connect phase included),
/// a timeout, TLS, or a protocol desync that leaves the connection unusable.
fn is_transport(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    let text = e.to_string();
    ["error communicating with the server", "error connecting to server", "timeout waiting for server",
     "error performing TLS handshake", "unexpected message from server", "error parsing response from server",
     "error encoding message to server"]
        .iter()
        .any(|t| text.starts_with(t))
}

fn parts(error: &serde_json::Value) -> (String, String, Option<String>) {
    match error {
        serde_json::Value::Object(o) => (
            o.get("type").and_then(|v| v.as_str()).unwrap_or("Error").to_string(),
            o.get("message").map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).unwrap_or_default(),
            o.get("traceback").and_then(|v| v.as_str()).filter(|s| !s.is_empty()).map(str::to_string),
        ),
        other => ("Error".to_string(), other.to_string(), None),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Sql { sqlstate, message } => write!(f, "{message} (SQLSTATE {sqlstate})"),
            Error::NotOwner(m) | Error::Cancelled(m) | Error::Nondeterminism(m) | Error::UnknownQueue(m)
            | Error::Duplicate(m) | Error::ExtensionMissing(m) | Error::NotRegistered(m)
            | Error::Serialization(m) | Error::Timeout(m) | Error::Connection(m) | Error::Usage(m) => f.write_str(m),
            Error::WorkflowFailed { workflow_id, type_, message, .. } => {
                write!(f, "workflow {workflow_id} failed: {type_}: {message}")
            }
            Error::StepFailed { type_, message, .. } => write!(f, "{type_}: {message}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Serialization(e.to_string())
    }
}

/// A failure with an explicit type name, for a step or body that wants its error recorded
/// as, e.g., `{"type": "ValueError", ...}` (which a Python reader raises as ValueError).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub type_: String,
    pub message: String,
}

impl Failure {
    pub fn new(type_: impl Into<String>, message: impl Into<String>) -> Failure {
        Failure { type_: type_.into(), message: message.into() }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.type_, self.message)
    }
}

impl std::error::Error for Failure {}

/// Our own error inside a body's `BoxError`, when it is one.
pub(crate) fn as_ours(e: &BoxError) -> Option<&Error> {
    e.downcast_ref::<Error>()
}
