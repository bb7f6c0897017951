//! The dashboard's pages, rendered on the server. Every value that comes from the database
//! goes through `esc` (text and attributes) or `url_enc` (links); nothing is put in a script.
//! The part of a page that live updates replace is `<main id="main">`; the filter form and the
//! action buttons sit outside it, so an update never clobbers what is being typed.

use crate::db::{self, DbError, STATUSES};
use crate::fmt::{cell, dur, dur_ms, esc, ts, url_enc};
use crate::serve::Response;
use serde_json::Value;
use tokio_postgres::Client;

const MAX_PRE: usize = 8 * 1024;
const MAX_TIMELINE_STEPS: usize = 300;

fn arr(v: &Value) -> &[Value] {
    v.as_array().map(|a| a.as_slice()).unwrap_or(&[])
}

fn layout(title: &str, active: &str, allow: bool, before_main: &str, main: &str) -> String {
    let nav: String = [("runs", "/runs", "Runs"), ("queues", "/queues", "Queues"), ("schedules", "/schedules", "Schedules"), ("executors", "/executors", "Executors")]
        .iter()
        .map(|(k, href, label)| format!("<a href=\"{href}\"{}>{label}</a>", if *k == active { " class=\"active\"" } else { "" }))
        .collect();
    let mode = if allow { "<span class=\"mode rw\">actions allowed</span>" } else { "<span class=\"mode ro\">read-only</span>" };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · pgwf</title><link rel=\"stylesheet\" href=\"/static/app.css\"></head>\
         <body><header><a class=\"brand\" href=\"/runs\">pg_workflow</a><nav>{nav}</nav>\
         <span id=\"live\" class=\"live\">connecting</span>{mode}</header>\
         <div class=\"page\">{before_main}<main id=\"main\">{main}</main></div>\
         <script src=\"/static/app.js\"></script></body></html>\n",
        esc(title)
    )
}

pub fn error_page(status: u16, message: &str, allow: bool) -> Response {
    let main = format!("<h1>Error</h1><p class=\"error\">{}</p>", esc(message));
    Response::html(status, layout("error", "", allow, "", &main))
}

fn badge(status: &str) -> String {
    let known = STATUSES.contains(&status);
    format!("<span class=\"badge s-{}\">{}</span>", if known { status } else { "other" }, esc(status))
}

fn run_link(id: &str) -> String {
    format!("<a class=\"id\" href=\"/run?id={}\">{}</a>", url_enc(id), esc(id))
}

fn pre(v: &Value) -> String {
    if v.is_null() {
        return "<span class=\"muted\">null</span>".into();
    }
    let s = serde_json::to_string_pretty(v).unwrap_or_default();
    if s.len() > MAX_PRE {
        let mut cut = MAX_PRE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("<pre>{}</pre><p class=\"muted\">clipped at {} KB of {} KB; pgwf show --json has all of it</p>", esc(&s[..cut]), MAX_PRE / 1024, s.len() / 1024)
    } else {
        format!("<pre>{}</pre>", esc(&s))
    }
}

pub struct RunForm {
    pub status: String,
    pub name: String,
    pub queue: String,
    pub since: String,
    pub paged: bool,
    pub limit: i64,
}

pub fn runs_page(rows: &Value, f: &RunForm, problems: &[String], allow: bool) -> String {
    let mut options = String::from("<option value=\"\">any status</option>");
    for s in STATUSES {
        let sel = if f.status.eq_ignore_ascii_case(s) { " selected" } else { "" };
        options.push_str(&format!("<option value=\"{s}\"{sel}>{s}</option>"));
    }
    let mut since = String::from("<option value=\"\">any time</option>");
    let mut known = false;
    for (v, label) in [("15m", "last 15 min"), ("1h", "last hour"), ("6h", "last 6 h"), ("24h", "last 24 h"), ("7d", "last 7 days")] {
        let sel = if f.since == v { known = true; " selected" } else { "" };
        since.push_str(&format!("<option value=\"{v}\"{sel}>{label}</option>"));
    }
    if !known && !f.since.is_empty() {
        since.push_str(&format!("<option value=\"{0}\" selected>{0}</option>", esc(&f.since)));
    }
    let form = format!(
        "<form class=\"filters\" method=\"get\" action=\"/runs\">\
         <select name=\"status\">{options}</select>\
         <input name=\"name\" placeholder=\"workflow name\" value=\"{}\">\
         <input name=\"queue\" placeholder=\"queue\" value=\"{}\">\
         <select name=\"since\">{since}</select>\
         <button type=\"submit\">Filter</button> <a href=\"/runs\">clear</a></form>",
        esc(&f.name),
        esc(&f.queue)
    );
    let mut main = String::from("<h1>Runs</h1>");
    for p in problems {
        main.push_str(&format!("<p class=\"error\">{}</p>", esc(p)));
    }
    let list = arr(rows);
    if list.is_empty() {
        main.push_str("<p class=\"muted empty\">No runs match.</p>");
    } else {
        main.push_str(
            "<table class=\"runs\"><thead><tr><th>workflow_id</th><th>name</th><th>status</th><th>queue</th>\
             <th>created (UTC)</th><th>duration</th><th>step</th><th>executor</th></tr></thead><tbody>",
        );
        for r in list {
            main.push_str(&format!(
                "<tr data-id=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                esc(&cell(&r["workflow_id"])),
                run_link(&cell(&r["workflow_id"])),
                esc(&cell(&r["name"])),
                badge(&cell(&r["status"])),
                esc(&cell(&r["queue"])),
                esc(&ts(&r["created_at"])),
                esc(&dur_ms(&r["duration_ms"])),
                esc(&cell(&r["last_step"])),
                esc(&cell(&r["executor_id"])),
            ));
        }
        main.push_str("</tbody></table>");
    }
    // Paging: keyset on (created_at, workflow_id), so a deep page costs what the first does.
    let mut base = String::new();
    for (k, v) in [("status", &f.status), ("name", &f.name), ("queue", &f.queue), ("since", &f.since)] {
        if !v.is_empty() {
            base.push_str(&format!("{k}={}&", url_enc(v)));
        }
    }
    if f.limit != 50 {
        base.push_str(&format!("limit={}&", f.limit));
    }
    main.push_str("<p class=\"pager\">");
    if f.paged {
        main.push_str(&format!("<a href=\"/runs?{}\">« newest</a> ", esc(base.trim_end_matches('&'))));
    }
    if list.len() as i64 == f.limit {
        if let Some(last) = list.last() {
            let cursor = format!("{}|{}", cell(&last["created_at"]), cell(&last["workflow_id"]));
            main.push_str(&format!("<a class=\"older\" href=\"/runs?{}before={}\">older »</a>", esc(&base), url_enc(&cursor)));
        }
    }
    main.push_str("</p>");
    layout("runs", "runs", allow, &form, &main)
}

pub async fn run_page(c: &Client, id: &str, allow: bool) -> Result<Response, DbError> {
    let v = db::show(c, id).await?;
    if v.is_null() {
        return Ok(error_page(404, &format!("unknown workflow: {id}"), allow));
    }
    let r = &v["run"];
    let status = cell(&r["status"]);
    let actions = if allow {
        format!(
            "<div class=\"actions\" data-id=\"{}\"><button data-action=\"cancel\">Cancel</button>\
             <button data-action=\"resume\">Resume</button>\
             <label>fork from step <input id=\"fork-step\" type=\"number\" min=\"1\" value=\"{}\"></label>\
             <button data-action=\"fork\">Fork</button><span id=\"action-result\" role=\"status\"></span></div>",
            esc(id),
            r["last_step"].as_i64().unwrap_or(0).max(1)
        )
    } else {
        "<p class=\"note\">Read-only: <code>pgwf serve --allow-actions</code> shows cancel, resume and fork here.</p>".into()
    };
    let mut m = format!("<h1>Run <span class=\"id\">{}</span> {}</h1><dl class=\"summary\">", esc(id), badge(&status));
    let mut dd = |k: &str, val: String| {
        if !val.is_empty() {
            m.push_str(&format!("<dt>{k}</dt><dd>{val}</dd>"));
        }
    };
    dd("name", esc(&cell(&r["name"])));
    dd("queue", esc(&cell(&r["queue"])));
    dd("executor", esc(&cell(&r["executor_id"])));
    dd("created", esc(&ts(&r["created_at"])));
    dd("started", esc(&ts(&r["started_at"])));
    dd("finished", esc(&ts(&r["finished_at"])));
    dd("duration", esc(&dur_ms(&r["duration_ms"])));
    dd("attempt", esc(&cell(&r["attempt"])));
    dd("recoveries", esc(&cell(&r["recovery_attempts"])));
    dd("app_version", esc(&cell(&r["app_version"])));
    dd("deadline", esc(&ts(&r["deadline"])));
    if let Some(p) = r["parent_id"].as_str() {
        dd("parent", run_link(p));
    }
    if let Some(p) = r["forked_from"].as_str() {
        dd("forked from", run_link(p));
    }
    m.push_str("</dl>");

    let steps = arr(&v["steps"]);
    m.push_str(&format!("<h2>Steps <span class=\"muted\">({})</span></h2>", steps.len()));
    if steps.is_empty() {
        m.push_str("<p class=\"muted\">No step recorded yet.</p>");
    } else {
        m.push_str(&timeline(steps, v["span_ms"].as_f64().unwrap_or(0.0)));
        m.push_str("<table class=\"steps\"><thead><tr><th>step</th><th>name</th><th>result</th><th>duration</th><th>recorded (UTC)</th><th>output / error</th></tr></thead><tbody>");
        for s in steps {
            let ok = s["succeeded"].as_bool() == Some(true);
            m.push_str(&format!(
                "<tr class=\"{}\"><td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
                if ok { "ok" } else { "err" },
                esc(&cell(&s["step"])),
                esc(&cell(&s["step_name"])),
                if ok { "<span class=\"badge s-SUCCESS\">ok</span>" } else { "<span class=\"badge s-ERROR\">error</span>" },
                esc(&dur_ms(&s["duration_ms"])),
                esc(&ts(&s["recorded_at"])),
                pre(if ok { &s["output"] } else { &s["error"] }),
            ));
        }
        m.push_str("</tbody></table>");
    }
    m.push_str("<div class=\"io\">");
    for (k, label) in [("input", "Input"), ("output", "Output"), ("error", "Error")] {
        if !r[k].is_null() || k != "error" {
            m.push_str(&format!("<section><h2>{label}</h2>{}</section>", pre(&r[k])));
        }
    }
    m.push_str("</div>");

    m.push_str("<h2>Events</h2>");
    if v["events"].is_null() {
        m.push_str("<p class=\"muted\">Not shown: this database has no workflow.events view (update the extension), or this role may not read it.</p>");
    } else if arr(&v["events"]).is_empty() {
        m.push_str("<p class=\"muted\">None.</p>");
    } else {
        m.push_str("<table class=\"events\"><thead><tr><th>key</th><th>value</th><th>updated (UTC)</th></tr></thead><tbody>");
        for e in arr(&v["events"]) {
            m.push_str(&format!("<tr><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&cell(&e["key"])), pre(&e["value"]), esc(&ts(&e["updated_at"]))));
        }
        m.push_str("</tbody></table>");
    }
    m.push_str("<h2>Pending messages</h2>");
    if arr(&v["messages"]).is_empty() {
        m.push_str("<p class=\"muted\">None.</p>");
    } else {
        m.push_str("<table class=\"messages\"><thead><tr><th>topic</th><th>messages</th><th>oldest (UTC)</th></tr></thead><tbody>");
        for x in arr(&v["messages"]) {
            m.push_str(&format!(
                "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                esc(&cell(&x["topic"])),
                esc(&cell(&x["messages"])),
                esc(&ts(&x["oldest"]))
            ));
        }
        m.push_str("</tbody></table>");
    }
    m.push_str("<h2>Children</h2>");
    if arr(&v["children"]).is_empty() {
        m.push_str("<p class=\"muted\">None.</p>");
    } else {
        m.push_str("<table class=\"children\"><thead><tr><th>workflow_id</th><th>name</th><th>status</th><th>queue</th><th>duration</th></tr></thead><tbody>");
        for k in arr(&v["children"]) {
            m.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                run_link(&cell(&k["workflow_id"])),
                esc(&cell(&k["name"])),
                badge(&cell(&k["status"])),
                esc(&cell(&k["queue"])),
                esc(&dur_ms(&k["duration_ms"]))
            ));
        }
        m.push_str("</tbody></table>");
    }
    Ok(Response::html(200, layout(&format!("run {id}"), "runs", allow, &actions, &m)))
}

/// The steps on a time axis from the run's start: a bar per step from the step before it
/// (or the start) to its checkpoint, green or red, its duration beside it.
fn timeline(steps: &[Value], span_ms: f64) -> String {
    let shown = &steps[..steps.len().min(MAX_TIMELINE_STEPS)];
    let end = shown
        .iter()
        .map(|s| s["offset_ms"].as_f64().unwrap_or(0.0).max(0.0) + s["duration_ms"].as_f64().unwrap_or(0.0).max(0.0))
        .fold(span_ms, f64::max)
        .max(1.0);
    let (label_w, bar_w, row_h, top) = (190.0, 560.0, 22.0, 24.0);
    let width = label_w + bar_w + 110.0;
    let height = top + row_h * shown.len() as f64 + 8.0;
    let mut s = format!(
        "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"step timeline\">"
    );
    for i in 0..=4 {
        let x = label_w + bar_w * i as f64 / 4.0;
        s.push_str(&format!(
            "<line x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{height}\" stroke=\"#ddd\"/><text x=\"{x:.1}\" y=\"14\" font-size=\"11\" fill=\"#666\" text-anchor=\"middle\">{}</text>",
            top - 6.0,
            esc(&dur(end * i as f64 / 4.0))
        ));
    }
    for (i, st) in shown.iter().enumerate() {
        let y = top + row_h * i as f64;
        let off = st["offset_ms"].as_f64().unwrap_or(0.0).max(0.0);
        let d = st["duration_ms"].as_f64().unwrap_or(0.0).max(0.0);
        let x = label_w + bar_w * off / end;
        let w = (bar_w * d / end).max(2.0);
        let ok = st["succeeded"].as_bool() == Some(true);
        let label = format!("{} {}", cell(&st["step"]), cell(&st["step_name"]));
        let label_short: String = if label.chars().count() > 28 { label.chars().take(27).chain(['…']).collect() } else { label.clone() };
        s.push_str(&format!(
            "<g class=\"step {}\"><title>{} · {}</title><text x=\"4\" y=\"{:.1}\" font-size=\"12\" fill=\"#222\">{}</text>\
             <rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" rx=\"2\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"#444\">{}</text></g>",
            if ok { "ok" } else { "err" },
            esc(&label),
            esc(&dur(d)),
            y + 15.0,
            esc(&label_short),
            y + 4.0,
            row_h - 8.0,
            if ok { "#2e9d5b" } else { "#d0453c" },
            (x + w + 6.0).min(width - 100.0),
            y + 15.0,
            esc(&dur(d)),
        ));
    }
    s.push_str("</svg>");
    if steps.len() > shown.len() {
        s.push_str(&format!("<p class=\"muted\">The timeline shows the first {} steps of {}.</p>", shown.len(), steps.len()));
    }
    s
}

/// 60 bars, one per minute of the last hour, oldest left.
fn sparkline(counts: &[Value]) -> String {
    let n: Vec<f64> = counts.iter().map(|c| c.as_f64().unwrap_or(0.0)).collect();
    let max = n.iter().cloned().fold(0.0, f64::max).max(1.0);
    let (w, h) = (180.0, 28.0);
    let bw = w / n.len().max(1) as f64;
    let mut s = format!("<svg class=\"spark\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"runs finished per minute, last hour\"><rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#f4f6f8\"/>");
    for (i, v) in n.iter().enumerate() {
        if *v > 0.0 {
            let bh = (h - 2.0) * v / max;
            s.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#3b6fd8\"><title>{} min ago: {}</title></rect>",
                i as f64 * bw,
                h - bh,
                (bw - 0.5).max(0.5),
                n.len() - 1 - i,
                v
            ));
        }
    }
    s.push_str("</svg>");
    s
}

pub async fn queues_page(c: &Client, allow: bool) -> Result<Response, DbError> {
    let v = db::queues(c).await?;
    let mut m = String::from(
        "<h1>Queues</h1><table class=\"queues\"><thead><tr><th>queue</th><th>enqueued</th><th>delayed</th><th>pending</th>\
         <th>oldest enqueued</th><th>pending per executor</th><th>concurrency</th><th>per worker</th><th>rate</th>\
         <th>per partition</th><th>finished, last hour</th></tr></thead><tbody>",
    );
    for q in arr(&v) {
        let per_exec: String = q["pending_per_executor"]
            .as_object()
            .map(|o| o.iter().map(|(k, n)| format!("<li>{}: {}</li>", esc(k), esc(&cell(n)))).collect())
            .unwrap_or_default();
        let rate = match (q["rate_limit"].as_i64(), q["rate_period"].as_str()) {
            (Some(n), Some(p)) => format!("{n} per {} ({} in window)", esc(p), esc(&cell(&q["starts_in_rate_window"]))),
            _ => "—".into(),
        };
        let limit = |k: &str| if q[k].is_null() { "—".to_string() } else { esc(&cell(&q[k])) };
        let hour: i64 = arr(&q["finished_per_minute"]).iter().filter_map(|x| x.as_i64()).sum();
        m.push_str(&format!(
            "<tr data-queue=\"{}\"><td><a href=\"/runs?queue={}\">{}</a></td><td class=\"num enqueued\">{}</td><td class=\"num delayed\">{}</td>\
             <td class=\"num pending\">{}</td><td class=\"num\">{}</td><td><ul class=\"plain\">{}</ul></td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td>{}</td><td class=\"num\">{}</td><td class=\"chart\">{}<span class=\"total\">{}</span></td></tr>",
            esc(&cell(&q["name"])),
            url_enc(&cell(&q["name"])),
            esc(&cell(&q["name"])),
            esc(&cell(&q["enqueued"])),
            esc(&cell(&q["delayed"])),
            esc(&cell(&q["pending"])),
            esc(&dur_ms(&q["oldest_enqueued_ms"])),
            per_exec,
            limit("concurrency"),
            limit("worker_concurrency"),
            rate,
            limit("partition_concurrency"),
            sparkline(arr(&q["finished_per_minute"])),
            hour
        ));
    }
    m.push_str("</tbody></table>");
    Ok(Response::html(200, layout("queues", "queues", allow, "", &m)))
}

pub async fn schedules_page(c: &Client, allow: bool) -> Result<Response, DbError> {
    let v = db::schedules(c).await?;
    let mut m = String::from("<h1>Schedules</h1>");
    if arr(&v).is_empty() {
        m.push_str("<p class=\"muted empty\">No schedules. <code>SELECT workflow.schedule(name, cron, workflow_name)</code> makes one.</p>");
    } else {
        m.push_str(
            "<table class=\"schedules\"><thead><tr><th>name</th><th>cron</th><th>time zone</th><th>workflow</th><th>queue</th>\
             <th>state</th><th>next fire (UTC)</th><th>last fire (UTC)</th><th>last run</th><th>overlap</th><th>skipped</th><th>last error</th></tr></thead><tbody>",
        );
        for s in arr(&v) {
            let paused = s["paused"].as_bool() == Some(true);
            let last_run = s["last_workflow_id"].as_str().map(run_link).unwrap_or_default();
            let err = match s["last_error"].as_str() {
                Some(e) => format!("<span class=\"error\">{}</span> <span class=\"muted\">{}</span>", esc(e), esc(&ts(&s["last_error_at"]))),
                None => String::new(),
            };
            m.push_str(&format!(
                "<tr data-schedule=\"{}\"><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                esc(&cell(&s["name"])),
                esc(&cell(&s["name"])),
                esc(&cell(&s["cron"])),
                esc(&cell(&s["timezone"])),
                esc(&cell(&s["workflow_name"])),
                esc(&cell(&s["queue"])),
                if paused { "<span class=\"badge s-CANCELLED\">paused</span>" } else { "<span class=\"badge s-SUCCESS\">active</span>" },
                esc(&ts(&s["next_fire_at"])),
                esc(&ts(&s["last_fired_at"])),
                last_run,
                esc(&cell(&s["overlap"])),
                esc(&cell(&s["skipped_fires"])),
                err
            ));
        }
        m.push_str("</tbody></table>");
    }
    Ok(Response::html(200, layout("schedules", "schedules", allow, "", &m)))
}

pub async fn executors_page(c: &Client, allow: bool) -> Result<Response, DbError> {
    let v = db::executors(c).await?;
    let mut m = String::from("<h1>Executors</h1>");
    if arr(&v).is_empty() {
        m.push_str("<p class=\"muted empty\">No executor has registered.</p>");
    } else {
        m.push_str(
            "<table class=\"executors\"><thead><tr><th>executor</th><th>app version</th><th>alive</th><th>runs held</th>\
             <th>last heartbeat (UTC)</th><th>lease until (UTC)</th><th>registered (UTC)</th></tr></thead><tbody>",
        );
        for e in arr(&v) {
            let alive = e["alive"].as_bool() == Some(true);
            m.push_str(&format!(
                "<tr data-executor=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td class=\"num held\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&cell(&e["executor_id"])),
                esc(&cell(&e["executor_id"])),
                esc(&cell(&e["app_version"])),
                if alive { "<span class=\"badge s-SUCCESS\">alive</span>" } else { "<span class=\"badge s-ERROR\">expired</span>" },
                esc(&cell(&e["pending_runs"])),
                esc(&ts(&e["last_heartbeat"])),
                esc(&ts(&e["lease_expires_at"])),
                esc(&ts(&e["registered_at"]))
            ));
        }
        m.push_str("</tbody></table>");
    }
    Ok(Response::html(200, layout("executors", "executors", allow, "", &m)))
}
