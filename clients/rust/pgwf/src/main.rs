//! pgwf: the command line and the web dashboard of pg_workflow.
//!
//! Exit codes: 0 done, 1 refused (the server's message, an unknown id, no connection),
//! 2 bad usage.

mod db;
mod fmt;
mod serve;
mod web;

use db::{Action, DbError, RunFilter};
use fmt::{cell, clip, dur_ms, table, ts};
use serde_json::Value;
use std::process::ExitCode;

const USAGE: &str = "pgwf: operate pg_workflow from the shell, or serve a dashboard

usage: pgwf [--dsn DSN] COMMAND [ARGS] [--json]

commands:
  runs [--status S] [--name N] [--queue Q] [--since 1h] [--limit N]
                         the newest runs first (default limit 50)
  show ID                a run: its steps (output or error, duration), events,
                         pending messages, parent and children
  cancel ID | resume ID | delete ID
  fork ID --from-step N  a new run with the checkpoints of the steps before N
  queues                 limits, backlog, PENDING runs per executor, last hour
  schedules              next and last fires
  executors              alive, runs held
  stats                  runs by status, backlog, the last hour
  serve [--listen 127.0.0.1:8080] [--allow-actions]
                         the dashboard (read-only unless --allow-actions)

connection: --dsn 'host=... user=...' or a postgresql:// URL; otherwise PGHOST, PGPORT,
PGUSER, PGDATABASE, PGPASSWORD. A workflow_reader login is enough to read;
cancel, resume, fork and delete need workflow_admin.
--json prints JSON for scripts. Exit: 0 done, 1 refused or unknown id, 2 bad usage.
";

enum Fail {
    Usage(String),
    Refused(String),
}

impl From<DbError> for Fail {
    fn from(e: DbError) -> Self {
        Fail::Refused(e.0)
    }
}

struct Args {
    words: Vec<String>,
}

impl Args {
    /// Removes `--name VALUE` (or `--name=VALUE`); a flag given without a value is bad usage.
    fn value(&mut self, name: &str) -> Result<Option<String>, Fail> {
        let eq = format!("{name}=");
        if let Some(i) = self.words.iter().position(|w| w == name || w.starts_with(&eq)) {
            let w = self.words.remove(i);
            if let Some(v) = w.strip_prefix(&eq) {
                return Ok(Some(v.to_string()));
            }
            if i < self.words.len() {
                return Ok(Some(self.words.remove(i)));
            }
            return Err(Fail::Usage(format!("{name} needs a value")));
        }
        Ok(None)
    }

    fn flag(&mut self, name: &str) -> bool {
        match self.words.iter().position(|w| w == name) {
            Some(i) => {
                self.words.remove(i);
                true
            }
            None => false,
        }
    }

    /// The remaining positional words: exactly `n`, and no unknown flag.
    fn positional(&self, n: usize, what: &str) -> Result<Vec<String>, Fail> {
        if let Some(f) = self.words.iter().find(|w| w.starts_with("--")) {
            return Err(Fail::Usage(format!("unknown flag {f}")));
        }
        if self.words.len() != n {
            return Err(Fail::Usage(format!("expected {what}")));
        }
        Ok(self.words.clone())
    }
}

fn main() -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    match rt.block_on(run(std::env::args().skip(1).collect())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Refused(m)) => {
            eprintln!("pgwf: {m}");
            ExitCode::from(1)
        }
        Err(Fail::Usage(m)) => {
            eprintln!("pgwf: {m}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

async fn run(words: Vec<String>) -> Result<(), Fail> {
    let mut a = Args { words };
    if a.flag("--help") || a.flag("-h") || a.words.first().map(|w| w == "help").unwrap_or(false) {
        print!("{USAGE}");
        return Ok(());
    }
    let dsn = a.value("--dsn")?;
    let json = a.flag("--json");
    if a.words.is_empty() {
        return Err(Fail::Usage("no command".into()));
    }
    let cmd = a.words.remove(0);
    let cfg = db::config(dsn.as_deref())?;
    match cmd.as_str() {
        "runs" => {
            let mut f = RunFilter { limit: 50, ..Default::default() };
            if let Some(s) = a.value("--status")? {
                f.status = Some(db::parse_status(&s).ok_or_else(|| {
                    Fail::Usage(format!("unknown status {s:?}; one of {}", db::STATUSES.join(", ")))
                })?);
            }
            f.name = a.value("--name")?;
            f.queue = a.value("--queue")?;
            if let Some(s) = a.value("--since")? {
                f.since = Some(db::parse_since(&s).ok_or_else(|| {
                    Fail::Usage(format!("invalid --since {s:?}: a number and s, m, h, d or w (e.g. 1h)"))
                })?);
            }
            if let Some(l) = a.value("--limit")? {
                f.limit = l
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| Fail::Usage(format!("invalid --limit {l:?}: a positive number")))?;
            }
            a.positional(0, "no arguments besides the flags")?;
            let c = db::connect(&cfg).await?;
            let v = db::runs(&c, &f).await?;
            if json {
                return print_json(&v);
            }
            let rows: Vec<Vec<String>> = arr(&v)
                .iter()
                .map(|r| {
                    vec![
                        cell(&r["workflow_id"]),
                        cell(&r["name"]),
                        cell(&r["status"]),
                        cell(&r["queue"]),
                        ts(&r["created_at"]),
                        dur_ms(&r["duration_ms"]),
                        cell(&r["last_step"]),
                        cell(&r["executor_id"]),
                    ]
                })
                .collect();
            print!("{}", table(&["WORKFLOW_ID", "NAME", "STATUS", "QUEUE", "CREATED (UTC)", "DURATION", "STEP", "EXECUTOR"], &rows));
            if rows.len() as i64 == f.limit {
                eprintln!("({} shown; --limit for more)", rows.len());
            }
            Ok(())
        }
        "show" => {
            let id = a.positional(1, "one workflow id")?.remove(0);
            let c = db::connect(&cfg).await?;
            let v = db::show(&c, &id).await?;
            if v.is_null() {
                return Err(Fail::Refused(format!("unknown workflow: {id}")));
            }
            if json {
                return print_json(&v);
            }
            print_show(&v);
            Ok(())
        }
        "cancel" | "resume" | "delete" => {
            let id = a.positional(1, "one workflow id")?.remove(0);
            let action = match cmd.as_str() {
                "cancel" => Action::Cancel,
                "resume" => Action::Resume,
                _ => Action::Delete,
            };
            act(&cfg, &id, action, json).await
        }
        "fork" => {
            let step = a.value("--from-step")?.ok_or_else(|| Fail::Usage("fork needs --from-step N".into()))?;
            let from_step: i32 = step
                .parse()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| Fail::Usage(format!("invalid --from-step {step:?}: a step number, 1 or more")))?;
            let id = a.positional(1, "one workflow id")?.remove(0);
            act(&cfg, &id, Action::Fork { from_step }, json).await
        }
        "queues" => {
            a.positional(0, "no arguments")?;
            let c = db::connect(&cfg).await?;
            let v = db::queues(&c).await?;
            if json {
                return print_json(&v);
            }
            let rows: Vec<Vec<String>> = arr(&v)
                .iter()
                .map(|q| {
                    let hour: i64 = arr(&q["finished_per_minute"]).iter().filter_map(|n| n.as_i64()).sum();
                    let per_exec = q["pending_per_executor"]
                        .as_object()
                        .map(|o| o.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "))
                        .unwrap_or_default();
                    let rate = match (q["rate_limit"].as_i64(), q["rate_period"].as_str()) {
                        (Some(n), Some(p)) => format!("{n}/{p}"),
                        _ => String::new(),
                    };
                    vec![
                        cell(&q["name"]),
                        cell(&q["enqueued"]),
                        cell(&q["delayed"]),
                        cell(&q["pending"]),
                        dur_ms(&q["oldest_enqueued_ms"]),
                        cell(&q["concurrency"]),
                        cell(&q["worker_concurrency"]),
                        rate,
                        cell(&q["partition_concurrency"]),
                        hour.to_string(),
                        per_exec,
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["QUEUE", "ENQUEUED", "DELAYED", "PENDING", "OLDEST", "CONCURRENCY", "PER_WORKER", "RATE", "PER_PARTITION", "DONE_1H", "PENDING_PER_EXECUTOR"],
                    &rows
                )
            );
            Ok(())
        }
        "schedules" => {
            a.positional(0, "no arguments")?;
            let c = db::connect(&cfg).await?;
            let v = db::schedules(&c).await?;
            if json {
                return print_json(&v);
            }
            let rows: Vec<Vec<String>> = arr(&v)
                .iter()
                .map(|s| {
                    vec![
                        cell(&s["name"]),
                        cell(&s["cron"]),
                        cell(&s["timezone"]),
                        cell(&s["workflow_name"]),
                        cell(&s["queue"]),
                        if s["paused"].as_bool() == Some(true) { "paused".into() } else { String::new() },
                        ts(&s["next_fire_at"]),
                        ts(&s["last_fired_at"]),
                        cell(&s["last_workflow_id"]),
                        clip(&cell(&s["last_error"]), 40),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["NAME", "CRON", "TZ", "WORKFLOW", "QUEUE", "PAUSED", "NEXT (UTC)", "LAST (UTC)", "LAST_RUN", "LAST_ERROR"], &rows)
            );
            Ok(())
        }
        "executors" => {
            a.positional(0, "no arguments")?;
            let c = db::connect(&cfg).await?;
            let v = db::executors(&c).await?;
            if json {
                return print_json(&v);
            }
            let rows: Vec<Vec<String>> = arr(&v)
                .iter()
                .map(|e| {
                    vec![
                        cell(&e["executor_id"]),
                        cell(&e["app_version"]),
                        if e["alive"].as_bool() == Some(true) { "yes".into() } else { "no".into() },
                        cell(&e["pending_runs"]),
                        ts(&e["last_heartbeat"]),
                        ts(&e["lease_expires_at"]),
                        ts(&e["registered_at"]),
                    ]
                })
                .collect();
            print!("{}", table(&["EXECUTOR", "VERSION", "ALIVE", "RUNS", "HEARTBEAT (UTC)", "LEASE UNTIL", "REGISTERED"], &rows));
            Ok(())
        }
        "stats" => {
            a.positional(0, "no arguments")?;
            let c = db::connect(&cfg).await?;
            let v = db::stats(&c).await?;
            if json {
                return print_json(&v);
            }
            print_stats(&v);
            Ok(())
        }
        "serve" => {
            let listen = a.value("--listen")?.unwrap_or_else(|| "127.0.0.1:8080".into());
            let allow = a.flag("--allow-actions");
            a.positional(0, "no arguments besides --listen and --allow-actions")?;
            let addr: std::net::SocketAddr =
                listen.parse().map_err(|_| Fail::Usage(format!("invalid --listen {listen:?}: IP:PORT")))?;
            serve::serve(cfg, addr, allow).await.map_err(Fail::Refused)
        }
        other => Err(Fail::Usage(format!("unknown command {other:?}"))),
    }
}

async fn act(cfg: &tokio_postgres::Config, id: &str, action: Action, json: bool) -> Result<(), Fail> {
    let c = db::connect(cfg).await?;
    let fork = matches!(action, Action::Fork { .. });
    let msg = db::act(&c, id, &action).await?;
    if json {
        let v = if fork { serde_json::json!({ "ok": true, "workflow_id": msg }) } else { serde_json::json!({ "ok": true, "message": msg }) };
        return print_json(&v);
    }
    println!("{msg}");
    Ok(())
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map(|a| a.as_slice()).unwrap_or(&[])
}

fn print_json(v: &Value) -> Result<(), Fail> {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    Ok(())
}

fn print_show(v: &Value) {
    let r = &v["run"];
    let field = |k: &str, val: String| {
        if !val.is_empty() {
            println!("{k:<12} {val}");
        }
    };
    field("workflow_id", cell(&r["workflow_id"]));
    field("name", cell(&r["name"]));
    field("status", cell(&r["status"]));
    field("queue", cell(&r["queue"]));
    field("executor", cell(&r["executor_id"]));
    field("created", ts(&r["created_at"]));
    field("started", ts(&r["started_at"]));
    field("finished", ts(&r["finished_at"]));
    field("duration", dur_ms(&r["duration_ms"]));
    field("attempt", cell(&r["attempt"]));
    field("recoveries", cell(&r["recovery_attempts"]));
    field("parent", cell(&r["parent_id"]));
    field("forked_from", cell(&r["forked_from"]));
    field("app_version", cell(&r["app_version"]));
    field("input", clip(&cell(&r["input"]), 200));
    field("output", clip(&cell(&r["output"]), 200));
    field("error", clip(&cell(&r["error"]), 200));
    println!("\nsteps:");
    let rows: Vec<Vec<String>> = arr(&v["steps"])
        .iter()
        .map(|s| {
            let ok = s["succeeded"].as_bool() == Some(true);
            vec![
                cell(&s["step"]),
                cell(&s["step_name"]),
                if ok { "ok".into() } else { "error".into() },
                dur_ms(&s["duration_ms"]),
                clip(&cell(if ok { &s["output"] } else { &s["error"] }), 80),
            ]
        })
        .collect();
    print!("{}", table(&["STEP", "NAME", "RESULT", "DURATION", "OUTPUT / ERROR"], &rows));
    if v["events"].is_null() {
        println!("\nevents: (not shown: the workflow.events view is missing; update the extension)");
    } else if !arr(&v["events"]).is_empty() {
        println!("\nevents:");
        let rows: Vec<Vec<String>> = arr(&v["events"])
            .iter()
            .map(|e| vec![cell(&e["key"]), clip(&cell(&e["value"]), 80), ts(&e["updated_at"])])
            .collect();
        print!("{}", table(&["KEY", "VALUE", "UPDATED (UTC)"], &rows));
    }
    if !arr(&v["messages"]).is_empty() {
        println!("\npending messages:");
        let rows: Vec<Vec<String>> = arr(&v["messages"])
            .iter()
            .map(|m| vec![cell(&m["topic"]), cell(&m["messages"]), ts(&m["oldest"])])
            .collect();
        print!("{}", table(&["TOPIC", "MESSAGES", "OLDEST (UTC)"], &rows));
    }
    if !arr(&v["children"]).is_empty() {
        println!("\nchildren:");
        let rows: Vec<Vec<String>> = arr(&v["children"])
            .iter()
            .map(|k| vec![cell(&k["workflow_id"]), cell(&k["name"]), cell(&k["status"]), dur_ms(&k["duration_ms"])])
            .collect();
        print!("{}", table(&["WORKFLOW_ID", "NAME", "STATUS", "DURATION"], &rows));
    }
}

fn print_stats(v: &Value) {
    println!("runs by status:");
    let rows: Vec<Vec<String>> = v["runs_by_status"]
        .as_object()
        .map(|o| o.iter().map(|(k, n)| vec![k.clone(), cell(n)]).collect())
        .unwrap_or_default();
    print!("{}", table(&["STATUS", "RUNS"], &rows));
    println!();
    let b = &v["backlog"];
    println!("backlog            {} enqueued, {} delayed, {} pending", cell(&b["enqueued"]), cell(&b["delayed"]), cell(&b["pending"]));
    println!("last hour          {} finished, {} failed", cell(&v["finished_last_hour"]), cell(&v["failed_last_hour"]));
    println!("executors          {} alive of {}", cell(&v["executors"]["alive"]), cell(&v["executors"]["total"]));
    println!("schedules          {} active, {} paused", cell(&v["schedules"]["active"]), cell(&v["schedules"]["paused"]));
    println!("pending messages   {}", cell(&v["pending_messages"]));
    if let Some(rows) = v["workflow_stats"].as_array() {
        println!("\nworkflow.stats:");
        let headers: Vec<String> =
            rows.first().and_then(|r| r.as_object()).map(|o| o.keys().cloned().collect()).unwrap_or_default();
        let cells: Vec<Vec<String>> =
            rows.iter().map(|r| headers.iter().map(|h| clip(&cell(&r[h]), 60)).collect()).collect();
        let h: Vec<&str> = headers.iter().map(|s| s.as_str()).collect();
        print!("{}", table(&h, &cells));
    }
}
