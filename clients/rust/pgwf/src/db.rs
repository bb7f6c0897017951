//! The database side of pgwf: the connection (libpq's environment variables or --dsn) and every
//! query, each of which returns JSON built by the server (json_agg), so that the command line's
//! --json, its tables and the dashboard read the same shapes. Only the views are read (a
//! `workflow_reader` login is enough); actions call the extension's functions.

use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls};

pub const STATUSES: &[&str] =
    &["ENQUEUED", "DELAYED", "PENDING", "SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"];

/// A failure to show: a refusal by the server (its message), or no connection.
#[derive(Debug)]
pub struct DbError(pub String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(d) => {
                let mut s = format!("{} ({})", d.message(), d.code().code());
                if let Some(detail) = d.detail() {
                    s.push_str(&format!("\nDETAIL: {detail}"));
                }
                if let Some(hint) = d.hint() {
                    s.push_str(&format!("\nHINT: {hint}"));
                }
                DbError(s)
            }
            None => DbError(e.to_string()),
        }
    }
}

/// The connection settings: --dsn (a URL or key=value string) first, then PGHOST, PGPORT,
/// PGUSER, PGDATABASE, PGPASSWORD, then libpq's defaults (the Debian socket directory, 5432,
/// the OS user).
pub fn config(dsn: Option<&str>) -> Result<Config, DbError> {
    let mut c: Config = match dsn {
        Some(d) => d.parse().map_err(|e| DbError(format!("invalid --dsn: {e}")))?,
        None => Config::new(),
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if c.get_hosts().is_empty() {
        let hosts = env("PGHOST").unwrap_or_else(|| "/var/run/postgresql".into());
        for h in hosts.split(',') {
            c.host(h.trim());
        }
    }
    if c.get_ports().is_empty() {
        if let Some(p) = env("PGPORT") {
            for p in p.split(',') {
                c.port(p.trim().parse().map_err(|_| DbError(format!("invalid PGPORT: {p}")))?);
            }
        }
    }
    if c.get_user().is_none() {
        let user = env("PGUSER").or_else(|| env("USER")).unwrap_or_else(|| "postgres".into());
        c.user(&user);
    }
    if c.get_dbname().is_none() {
        if let Some(d) = env("PGDATABASE") {
            c.dbname(&d);
        }
    }
    if c.get_password().is_none() {
        if let Some(p) = env("PGPASSWORD") {
            c.password(p);
        }
    }
    if c.get_application_name().is_none() {
        c.application_name("pgwf");
    }
    Ok(c)
}

pub async fn connect(cfg: &Config) -> Result<Client, DbError> {
    let (client, conn) = cfg.connect(NoTls).await.map_err(|e| DbError(format!("cannot connect: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    // Every timestamp in UTC, whatever the role's setting.
    client.batch_execute("SET TimeZone = 'UTC'").await?;
    Ok(client)
}

/// The filters of a runs listing (the command line's flags and the dashboard's form).
#[derive(Default, Clone, Debug)]
pub struct RunFilter {
    pub status: Option<String>,
    pub name: Option<String>,
    pub queue: Option<String>,
    /// A PostgreSQL interval, e.g. "3600 seconds": created since now() minus this.
    pub since: Option<String>,
    /// Keyset paging: runs created before this (created_at, workflow_id).
    pub before: Option<(String, String)>,
    pub limit: i64,
}

/// "1h", "30m", "2d", "90s", "1w" → a PostgreSQL interval, or None when malformed.
pub fn parse_since(s: &str) -> Option<String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let seconds = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 604800,
        _ => return None,
    };
    Some(format!("{} seconds", n.checked_mul(seconds)?))
}

/// Upper-cases a status and checks it is one of the seven.
pub fn parse_status(s: &str) -> Option<String> {
    let up = s.trim().to_ascii_uppercase();
    STATUSES.contains(&up.as_str()).then_some(up)
}

const RUN_COLUMNS: &str = "workflow_id, name, status, queue, executor_id, priority, recovery_attempts, attempt,
    created_at, started_at, finished_at, deadline, last_step,
    round(extract(epoch FROM duration) * 1000)::float8 AS duration_ms,
    parent_id, forked_from, app_version, deduplication_id, partition_key, available_at";

pub async fn runs(c: &Client, f: &RunFilter) -> Result<Value, DbError> {
    let mut conds: Vec<String> = Vec::new();
    let mut params: Vec<String> = Vec::new();
    let mut add = |cond: &str, v: &str, params: &mut Vec<String>| {
        params.push(v.to_string());
        conds.push(cond.replace("$?", &format!("${}", params.len())));
    };
    if let Some(s) = &f.status {
        add("status = $?::text", s, &mut params);
    }
    if let Some(s) = &f.name {
        add("name = $?::text", s, &mut params);
    }
    if let Some(s) = &f.queue {
        add("queue = $?::text", s, &mut params);
    }
    if let Some(s) = &f.since {
        add("created_at > now() - $?::text::interval", s, &mut params);
    }
    if let Some((ts, id)) = &f.before {
        params.push(ts.clone());
        params.push(id.clone());
        let (a, b) = (params.len() - 1, params.len());
        conds.push(format!(
            "(created_at < ${a}::text::timestamptz OR (created_at = ${a}::text::timestamptz AND workflow_id < ${b}::text))"
        ));
    }
    let filter = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
    // The page is chosen without the view's last_step (a subquery per row, which would run for
    // every row the filter keeps, before the sort); last_step is looked up for the page only.
    let sql = format!(
        "SELECT coalesce(json_agg(t ORDER BY t.created_at DESC, t.workflow_id DESC), '[]') FROM (
           SELECT {}, coalesce((SELECT max(s.step) FROM workflow.steps s WHERE s.workflow_id = p.workflow_id), 0) AS last_step
             FROM (SELECT * FROM workflow.runs {filter} ORDER BY created_at DESC, workflow_id DESC LIMIT {}) p) t",
        RUN_COLUMNS.replace(" last_step,", ""),
        f.limit.max(1)
    );
    let p: Vec<&(dyn ToSql + Sync)> = params.iter().map(|s| s as &(dyn ToSql + Sync)).collect();
    Ok(c.query_one(sql.as_str(), &p).await?.get::<_, Option<Value>>(0).unwrap_or(Value::Null))
}

/// One run with everything about it, or Null when there is no such run.
pub async fn show(c: &Client, id: &str) -> Result<Value, DbError> {
    let has_events = has_relation(c, "workflow.events").await?;
    let events = if has_events {
        "(SELECT coalesce(json_agg(e ORDER BY e.updated_at, e.key), '[]')
            FROM (SELECT key, value, updated_at FROM workflow.events WHERE workflow_id = $1::text) e)"
    } else {
        "NULL::json"
    };
    let sql = format!(
        "SELECT CASE WHEN r IS NULL THEN NULL ELSE json_build_object(
           'run', row_to_json(r),
           'steps', (SELECT coalesce(json_agg(s ORDER BY s.step), '[]') FROM (
               SELECT step, step_name, succeeded, output, error,
                      coalesce(lag(recorded_at) OVER w, r.started_at, r.created_at) AS started_at,
                      recorded_at,
                      round(extract(epoch FROM coalesce(lag(recorded_at) OVER w, r.started_at, r.created_at)
                                               - coalesce(r.started_at, r.created_at)) * 1000)::float8 AS offset_ms,
                      round(extract(epoch FROM recorded_at - coalesce(lag(recorded_at) OVER w, r.started_at, r.created_at)) * 1000)::float8
                        AS duration_ms
                 FROM workflow.steps WHERE workflow_id = $1::text WINDOW w AS (ORDER BY step)) s),
           'events', {events},
           'messages', (SELECT coalesce(json_agg(m ORDER BY m.oldest), '[]') FROM (
               SELECT topic, messages, oldest FROM workflow.pending_messages WHERE workflow_id = $1::text) m),
           'children', (SELECT coalesce(json_agg(k ORDER BY k.created_at, k.workflow_id), '[]') FROM (
               SELECT workflow_id, name, status, queue, created_at, finished_at,
                      round(extract(epoch FROM duration) * 1000)::float8 AS duration_ms
                 FROM workflow.runs WHERE parent_id = $1::text) k),
           'span_ms', round(extract(epoch FROM coalesce(r.finished_at, now()) - coalesce(r.started_at, r.created_at)) * 1000)::float8,
           'now', now()) END
         FROM (SELECT 1) one LEFT JOIN (SELECT {RUN_COLUMNS}, input, output, error FROM workflow.runs WHERE workflow_id = $1::text) r ON true"
    );
    Ok(c.query_one(sql.as_str(), &[&id]).await?.get::<_, Option<Value>>(0).unwrap_or(Value::Null))
}

pub async fn has_relation(c: &Client, name: &str) -> Result<bool, DbError> {
    let row = c
        .query_one("SELECT to_regclass($1::text) IS NOT NULL AND has_table_privilege(to_regclass($1::text), 'SELECT')", &[&name])
        .await?;
    Ok(row.get(0))
}

pub async fn exists(c: &Client, id: &str) -> Result<Option<String>, DbError> {
    let row = c.query_opt("SELECT status FROM workflow.runs WHERE workflow_id = $1::text", &[&id]).await?;
    Ok(row.map(|r| r.get(0)))
}

/// The queues with their limits, backlog, PENDING runs per executor and the runs they finished
/// in each of the last 60 minutes (oldest first).
pub async fn queues(c: &Client) -> Result<Value, DbError> {
    let sql = "SELECT coalesce(json_agg(x ORDER BY x.name), '[]') FROM (
        SELECT q.name, q.concurrency, q.worker_concurrency, q.rate_limit, q.rate_period::text AS rate_period,
               q.partition_concurrency,
               coalesce(s.enqueued, 0) AS enqueued, coalesce(s.delayed, 0) AS delayed,
               coalesce(s.pending, 0) AS pending,
               round(extract(epoch FROM s.oldest_enqueued_age) * 1000)::float8 AS oldest_enqueued_ms,
               coalesce(s.pending_per_executor, '{}') AS pending_per_executor,
               coalesce(s.starts_in_rate_window, 0) AS starts_in_rate_window,
               (SELECT array_agg(coalesce(f.n, 0) ORDER BY g.m DESC)
                  FROM generate_series(0, 59) g(m)
                  LEFT JOIN (SELECT floor(extract(epoch FROM now() - r.finished_at) / 60)::int AS m, count(*) AS n
                               FROM workflow.runs r
                              WHERE r.finished_at > now() - interval '1 hour' AND r.queue = q.name
                              GROUP BY 1) f ON f.m = g.m) AS finished_per_minute
          FROM workflow.queues q LEFT JOIN workflow.queue_stats s ON s.queue = q.name) x";
    Ok(c.query_one(sql, &[]).await?.get::<_, Option<Value>>(0).unwrap_or(Value::Null))
}

pub async fn schedules(c: &Client) -> Result<Value, DbError> {
    let sql = "SELECT coalesce(json_agg(x ORDER BY x.next_fire_at NULLS LAST, x.name), '[]') FROM (
        SELECT name, cron, timezone, workflow_name, queue, paused, next_fire_at, last_fired_at,
               last_workflow_id, last_error, last_error_at, overlap, catch_up, skipped_fires
          FROM workflow.schedules) x";
    Ok(c.query_one(sql, &[]).await?.get::<_, Option<Value>>(0).unwrap_or(Value::Null))
}

pub async fn executors(c: &Client) -> Result<Value, DbError> {
    let sql = "SELECT coalesce(json_agg(x ORDER BY x.alive DESC, x.last_heartbeat DESC, x.executor_id), '[]') FROM (
        SELECT executor_id, app_version, registered_at, last_heartbeat, lease_expires_at, alive, pending_runs
          FROM workflow.executors) x";
    Ok(c.query_one(sql, &[]).await?.get::<_, Option<Value>>(0).unwrap_or(Value::Null))
}

/// Totals computed from the views, and workflow.stats when it exists and may be read.
pub async fn stats(c: &Client) -> Result<Value, DbError> {
    let sql = "SELECT json_build_object(
        'runs_by_status', (SELECT coalesce(json_object_agg(status, n ORDER BY status), '{}')
                             FROM (SELECT status, count(*) AS n FROM workflow.runs GROUP BY status) s),
        'finished_last_hour', (SELECT count(*) FROM workflow.runs WHERE finished_at > now() - interval '1 hour'),
        'failed_last_hour', (SELECT count(*) FROM workflow.runs
                              WHERE finished_at > now() - interval '1 hour' AND status = 'ERROR'),
        'backlog', (SELECT json_build_object('enqueued', coalesce(sum(enqueued), 0), 'delayed', coalesce(sum(delayed), 0),
                                             'pending', coalesce(sum(pending), 0))
                      FROM workflow.queue_stats),
        'executors', (SELECT json_build_object('alive', count(*) FILTER (WHERE alive), 'total', count(*))
                        FROM workflow.executors),
        'schedules', (SELECT json_build_object('active', count(*) FILTER (WHERE NOT paused), 'paused', count(*) FILTER (WHERE paused))
                        FROM workflow.schedules),
        'pending_messages', (SELECT coalesce(sum(messages), 0) FROM workflow.pending_messages))";
    let mut v: Value = c.query_one(sql, &[]).await?.get::<_, Option<Value>>(0).unwrap_or(Value::Null);
    if has_relation(c, "workflow.stats").await? {
        let extra: Option<Value> = c.query_one("SELECT coalesce(json_agg(s), '[]') FROM workflow.stats s", &[]).await?.get(0);
        v["workflow_stats"] = extra.unwrap_or(Value::Null);
    }
    Ok(v)
}

/// What the dashboard's live updates watch, polled once a second: it changes when a run is
/// created, claimed, steps or ends, when an executor comes or goes, when a schedule changes.
pub async fn signature(c: &Client) -> Result<String, DbError> {
    let sql = "SELECT json_build_object(
        'last_created', (SELECT max(created_at) FROM workflow.runs),
        'last_finished', (SELECT max(finished_at) FROM workflow.runs),
        'pending', (SELECT count(*) FROM workflow.runs WHERE status = 'PENDING'),
        'last_step', (SELECT max(s.recorded_at) FROM workflow.runs r JOIN workflow.steps s USING (workflow_id)
                       WHERE r.status = 'PENDING'),
        'backlog', (SELECT sum(enqueued + delayed) FROM workflow.queue_stats),
        'executors', (SELECT json_agg(executor_id ORDER BY executor_id) FROM workflow.executors WHERE alive),
        'schedules', (SELECT max(updated_at)::text || max(last_fired_at)::text FROM workflow.schedules))::text";
    Ok(c.query_one(sql, &[]).await?.get(0))
}

/// The actions, as the extension's functions; their refusals come back as DbError.
pub enum Action {
    Cancel,
    Resume,
    Delete,
    Fork { from_step: i32 },
}

/// Runs an action on a run; Ok(message) when done, Err(message) when refused or unknown.
pub async fn act(c: &Client, id: &str, action: &Action) -> Result<String, DbError> {
    let Some(status) = exists(c, id).await? else {
        return Err(DbError(format!("unknown workflow: {id}")));
    };
    match action {
        Action::Cancel => {
            let done: bool = c.query_one("SELECT workflow.cancel($1::text)", &[&id]).await?.get(0);
            if done {
                Ok(format!("cancelled {id}"))
            } else {
                Err(DbError(format!("not cancelled: {id} has already ended ({status})")))
            }
        }
        Action::Resume => {
            let s: String = c.query_one("SELECT workflow.resume($1::text)", &[&id]).await?.get(0);
            Ok(format!("resumed {id}: {s}"))
        }
        Action::Delete => {
            let done: bool = c.query_one("SELECT workflow.delete($1::text)", &[&id]).await?.get(0);
            if done {
                Ok(format!("deleted {id}"))
            } else {
                Err(DbError(format!("unknown workflow: {id}")))
            }
        }
        Action::Fork { from_step } => {
            let new_id: String =
                c.query_one("SELECT workflow.fork($1::text, $2::int4)", &[&id, from_step]).await?.get(0);
            Ok(new_id)
        }
    }
}
