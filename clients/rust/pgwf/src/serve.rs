//! `pgwf serve`: a small HTTP/1.1 server on tokio (one request per connection, no framework),
//! the dashboard's pages (web.rs), its embedded CSS and JS, server-sent events fed by a 1 s
//! poll, and the actions (POST, refused with 403 unless --allow-actions).
//!
//! Security: loopback by default; on loopback the Host header must name the loopback address
//! (DNS rebinding); every page is sent with a Content-Security-Policy that allows only our own
//! script and style (no inline script), and all data is HTML-escaped (web.rs); an action must
//! carry the `X-Pgwf-Action` header, which a cross-site form cannot send and a cross-site
//! fetch cannot send without a CORS preflight we never answer (CSRF).

use crate::db::{self, Action, DbError, RunFilter};
use crate::fmt::query_pairs;
use crate::web;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Mutex};
use tokio_postgres::{Client, Config};

const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub struct State {
    cfg: Config,
    client: Mutex<Option<Arc<Client>>>,
    pub allow_actions: bool,
    addr: SocketAddr,
    sig: watch::Sender<String>,
}

impl State {
    /// The shared connection (tokio-postgres pipelines concurrent queries on it); reconnects
    /// after it was lost.
    pub async fn client(&self) -> Result<Arc<Client>, DbError> {
        let mut g = self.client.lock().await;
        if let Some(c) = g.as_ref() {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let c = Arc::new(db::connect(&self.cfg).await?);
        *g = Some(c.clone());
        Ok(c)
    }
}

pub async fn serve(cfg: Config, addr: SocketAddr, allow_actions: bool) -> Result<(), String> {
    // Connect once first, so that a wrong setting fails at start, not on the first page.
    let first = db::connect(&cfg).await.map_err(|e| e.0)?;
    let listener = TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (sig, _) = watch::channel(String::new());
    let state = Arc::new(State { cfg, client: Mutex::new(Some(Arc::new(first))), allow_actions, addr, sig });
    eprintln!(
        "pgwf: serving http://{addr}/ ({}{})",
        if allow_actions { "actions allowed" } else { "read-only" },
        if addr.ip().is_loopback() { "" } else { "; not on loopback: anyone who reaches this address sees the runs" }
    );
    tokio::spawn(poll(state.clone()));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _ = handle(stream, state).await;
        });
    }
}

/// Once a second, while someone listens for live updates: the signature of the database's
/// state (db::signature); a change is sent to every listener.
async fn poll(state: Arc<State>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if state.sig.receiver_count() == 0 {
            continue;
        }
        let now = match state.client().await {
            Ok(c) => db::signature(&c).await.unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.0)),
            Err(e) => format!("{{\"error\": {:?}}}", e.0),
        };
        state.sig.send_if_modified(|cur| {
            if *cur != now {
                *cur = now;
                true
            } else {
                false
            }
        });
    }
}

struct Request {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn param(&self, name: &str) -> Option<String> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_string()).filter(|v| !v.is_empty())
    }
}

pub struct Response {
    pub status: u16,
    pub ctype: &'static str,
    pub body: Vec<u8>,
    pub location: Option<String>,
}

impl Response {
    pub fn html(status: u16, body: String) -> Self {
        Response { status, ctype: "text/html; charset=utf-8", body: body.into_bytes(), location: None }
    }
    fn json(status: u16, v: serde_json::Value) -> Self {
        Response { status, ctype: "application/json", body: v.to_string().into_bytes(), location: None }
    }
    fn text(status: u16, s: &str) -> Self {
        Response { status, ctype: "text/plain; charset=utf-8", body: s.as_bytes().to_vec(), location: None }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        421 => "Misdirected Request",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

async fn read_request(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<Request> {
    let mut line = String::new();
    let mut total = 0usize;
    r.read_line(&mut line).await.ok()?;
    total += line.len();
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    let mut content_length = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).await.ok()? == 0 {
            return None;
        }
        total += h.len();
        if total > 64 * 1024 || headers.len() > 100 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        if k.eq_ignore_ascii_case("content-length") {
            content_length = v.trim().parse().ok()?;
        }
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    // A body is never needed (actions take their arguments in the query string): drain a small one.
    if content_length > 64 * 1024 {
        return None;
    }
    let mut body = vec![0u8; content_length];
    r.read_exact(&mut body).await.ok()?;
    let (path, q) = target.split_once('?').unwrap_or((&target, ""));
    Some(Request { method, path: path.to_string(), query: query_pairs(q), headers })
}

async fn handle(stream: TcpStream, state: Arc<State>) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let req = match tokio::time::timeout(Duration::from_secs(10), read_request(&mut r)).await {
        Ok(Some(req)) => req,
        _ => return write(&mut w, Response::text(400, "bad request\n")).await,
    };
    if !host_ok(&req, &state) {
        return write(&mut w, Response::text(421, "unexpected Host header (pgwf serves loopback names only)\n")).await;
    }
    if req.method == "GET" && req.path == "/events" {
        return sse(w, &state).await;
    }
    let resp = route(&req, &state).await;
    write(&mut w, resp).await
}

/// On loopback, only loopback names in Host: a page on another site whose name was made to
/// resolve to 127.0.0.1 (DNS rebinding) is refused.
fn host_ok(req: &Request, state: &State) -> bool {
    if !state.addr.ip().is_loopback() {
        return true;
    }
    let Some(host) = req.header("host") else { return true };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    matches!(name, "localhost" | "127.0.0.1" | "::1") || name.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

async fn write(w: &mut tokio::net::tcp::OwnedWriteHalf, resp: Response) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
         Content-Security-Policy: {CSP}\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\
         X-Frame-Options: DENY\r\nConnection: close\r\n",
        resp.status,
        reason(resp.status),
        resp.ctype,
        resp.body.len()
    );
    if let Some(l) = &resp.location {
        head.push_str(&format!("Location: {l}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes()).await?;
    w.write_all(&resp.body).await?;
    w.shutdown().await
}

/// Server-sent events: `hello` with the current signature, then `change` on every change,
/// and a comment every 15 s to keep proxies from closing the stream.
async fn sse(mut w: tokio::net::tcp::OwnedWriteHalf, state: &State) -> std::io::Result<()> {
    let mut rx = state.sig.subscribe();
    w.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
          X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\nretry: 2000\n\n",
    )
    .await?;
    let first = rx.borrow_and_update().clone();
    w.write_all(format!("event: hello\ndata: {}\n\n", one_line(&first)).as_bytes()).await?;
    loop {
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let s = rx.borrow_and_update().clone();
                w.write_all(format!("event: change\ndata: {}\n\n", one_line(&s)).as_bytes()).await?;
            }
            _ = tokio::time::sleep(Duration::from_secs(15)) => {
                w.write_all(b": ping\n\n").await?;
            }
        }
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

async fn route(req: &Request, state: &State) -> Response {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/") => Response { status: 302, ctype: "text/plain", body: b"/runs\n".to_vec(), location: Some("/runs".into()) },
        ("GET", "/static/app.js") => Response { status: 200, ctype: "text/javascript; charset=utf-8", body: APP_JS.as_bytes().to_vec(), location: None },
        ("GET", "/static/app.css") => Response { status: 200, ctype: "text/css; charset=utf-8", body: APP_CSS.as_bytes().to_vec(), location: None },
        ("GET", "/favicon.ico") => Response::text(404, "no icon\n"),
        ("GET", "/runs") => page(state, |c| async move { runs_page(&c, req, state.allow_actions).await }).await,
        ("GET", "/run") => page(state, |c| async move {
            match req.param("id") {
                Some(id) => web::run_page(&c, &id, state.allow_actions).await,
                None => Ok(web::error_page(400, "which run? /run?id=...", state.allow_actions)),
            }
        })
        .await,
        ("GET", "/queues") => page(state, |c| async move { web::queues_page(&c, state.allow_actions).await }).await,
        ("GET", "/schedules") => page(state, |c| async move { web::schedules_page(&c, state.allow_actions).await }).await,
        ("GET", "/executors") => page(state, |c| async move { web::executors_page(&c, state.allow_actions).await }).await,
        ("POST", p) if p.starts_with("/action/") => action(req, state, &p["/action/".len()..]).await,
        (_, "/runs" | "/run" | "/queues" | "/schedules" | "/executors" | "/events") => Response::text(405, "method not allowed\n"),
        _ => web::error_page(404, "no such page", state.allow_actions),
    }
}

async fn page<F, Fut>(state: &State, f: F) -> Response
where
    F: FnOnce(Arc<Client>) -> Fut,
    Fut: std::future::Future<Output = Result<Response, DbError>>,
{
    match state.client().await {
        Ok(c) => f(c).await.unwrap_or_else(|e| web::error_page(503, &format!("database: {e}"), state.allow_actions)),
        Err(e) => web::error_page(503, &format!("database: {e}"), state.allow_actions),
    }
}

async fn runs_page(c: &Client, req: &Request, allow: bool) -> Result<Response, DbError> {
    let mut f = RunFilter { limit: 50, ..Default::default() };
    let mut problems = Vec::new();
    if let Some(s) = req.param("status") {
        match db::parse_status(&s) {
            Some(s) => f.status = Some(s),
            None => problems.push(format!("unknown status {s:?}")),
        }
    }
    f.name = req.param("name");
    f.queue = req.param("queue");
    let since = req.param("since");
    if let Some(s) = &since {
        match db::parse_since(s) {
            Some(i) => f.since = Some(i),
            None => problems.push(format!("invalid since {s:?} (e.g. 15m, 1h, 7d)")),
        }
    }
    if let Some(b) = req.param("before") {
        match b.split_once('|') {
            Some((ts, id)) => f.before = Some((ts.to_string(), id.to_string())),
            None => problems.push("invalid page cursor".into()),
        }
    }
    if let Some(l) = req.param("limit") {
        match l.parse::<i64>() {
            Ok(n) if (1..=500).contains(&n) => f.limit = n,
            _ => problems.push(format!("invalid limit {l:?} (1 to 500)")),
        }
    }
    let status = if problems.is_empty() { 200 } else { 400 };
    let rows = if problems.is_empty() { db::runs(c, &f).await? } else { serde_json::json!([]) };
    let form = web::RunForm {
        status: req.param("status").unwrap_or_default(),
        name: f.name.clone().unwrap_or_default(),
        queue: f.queue.clone().unwrap_or_default(),
        since: since.unwrap_or_default(),
        paged: f.before.is_some(),
        limit: f.limit,
    };
    Ok(Response::html(status, web::runs_page(&rows, &form, &problems, allow)))
}

async fn action(req: &Request, state: &State, name: &str) -> Response {
    if !state.allow_actions {
        return Response::json(
            403,
            serde_json::json!({"ok": false, "message": "read-only dashboard: start pgwf serve with --allow-actions to act on runs"}),
        );
    }
    if req.header("x-pgwf-action").is_none() {
        return Response::json(403, serde_json::json!({"ok": false, "message": "missing X-Pgwf-Action header"}));
    }
    let Some(id) = req.param("id") else {
        return Response::json(400, serde_json::json!({"ok": false, "message": "which run? ?id=..."}));
    };
    let act = match name {
        "cancel" => Action::Cancel,
        "resume" => Action::Resume,
        "fork" => match req.param("from_step").and_then(|s| s.parse::<i32>().ok()).filter(|n| *n >= 1) {
            Some(from_step) => Action::Fork { from_step },
            None => return Response::json(400, serde_json::json!({"ok": false, "message": "fork needs from_step, 1 or more"})),
        },
        _ => return Response::json(404, serde_json::json!({"ok": false, "message": "unknown action"})),
    };
    let c = match state.client().await {
        Ok(c) => c,
        Err(e) => return Response::json(503, serde_json::json!({"ok": false, "message": e.0})),
    };
    match db::act(&c, &id, &act).await {
        Ok(m) if matches!(act, Action::Fork { .. }) => {
            Response::json(200, serde_json::json!({"ok": true, "message": format!("forked as {m}"), "workflow_id": m}))
        }
        Ok(m) => Response::json(200, serde_json::json!({"ok": true, "message": m})),
        Err(e) => Response::json(409, serde_json::json!({"ok": false, "message": e.0})),
    }
}
