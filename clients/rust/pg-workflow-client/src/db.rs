//! Connections: one tokio-postgres client with its prepared statements, and a small bounded
//! pool of them (a run holds one for its whole body, as in the Python SDK).

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

use crate::error::{Error, Result};

/// The connect timeout when the DSN sets none.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A connection and the statements it has prepared (each SDK statement once per connection).
pub(crate) struct Conn {
    pub(crate) client: Client,
    stmts: HashMap<&'static str, Statement>,
    /// Set at BEGIN, cleared when COMMIT or ROLLBACK ends the transaction. A connection still
    /// inside one (its transaction's future was dropped, or panicked) never goes back to the
    /// pool: the next user's COMMIT would commit its writes.
    pub(crate) in_tx: bool,
}

impl Conn {
    /// Connects, giving up after the config's connect_timeout (App::connect sets 10 s unless the
    /// DSN sets it) for the whole handshake: tokio-postgres applies it to the socket only, and
    /// a server that accepts but never answers (a dropped network) would hang a heartbeat.
    pub(crate) async fn connect(cfg: &Config) -> Result<Conn> {
        let limit = cfg.get_connect_timeout().copied().unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let (client, connection) = tokio::time::timeout(limit, cfg.connect(NoTls))
            .await
            .map_err(|_| Error::Connection(format!("connect: no answer from the server within {limit:?}")))?
            .map_err(|e| Error::from_pg(e, "connect"))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                log::debug!("pg_workflow connection ended: {e}");
            }
        });
        Ok(Conn { client, stmts: HashMap::new(), in_tx: false })
    }

    async fn stmt(&mut self, sql: &'static str) -> std::result::Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await?;
        self.stmts.insert(sql, s.clone());
        Ok(s)
    }

    /// One SDK statement returning one row; the raw error, for callers that look at its code.
    pub(crate) async fn one_raw(&mut self, sql: &'static str, params: Params<'_>) -> std::result::Result<Row, tokio_postgres::Error> {
        let s = self.stmt(sql).await?;
        self.client.query_one(&s, params).await
    }

    pub(crate) async fn one(&mut self, sql: &'static str, params: Params<'_>) -> Result<Row> {
        self.one_raw(sql, params).await.map_err(|e| Error::from_pg(e, ""))
    }

    pub(crate) async fn all(&mut self, sql: &'static str, params: Params<'_>) -> Result<Vec<Row>> {
        let s = self.stmt(sql).await.map_err(|e| Error::from_pg(e, ""))?;
        self.client.query(&s, params).await.map_err(|e| Error::from_pg(e, ""))
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

/// A bounded pool: at most `size` connections, idle ones kept for reuse.
pub(crate) struct Pool {
    cfg: Config,
    idle: Mutex<Vec<Conn>>,
    slots: Arc<Semaphore>,
    pub(crate) size: usize,
}

impl Pool {
    pub(crate) fn new(cfg: Config, size: usize) -> Arc<Pool> {
        Arc::new(Pool { cfg, idle: Mutex::new(Vec::new()), slots: Arc::new(Semaphore::new(size)), size })
    }

    pub(crate) fn config(&self) -> &Config {
        &self.cfg
    }

    /// A connection, waiting up to 60 s for a free slot.
    pub(crate) async fn get(self: &Arc<Self>) -> Result<Pooled> {
        let permit = tokio::time::timeout(Duration::from_secs(60), self.slots.clone().acquire_owned())
            .await
            .map_err(|_| Error::Timeout(format!("no pooled connection free after 60 s (pool_size {})", self.size)))?
            .expect("the pool's semaphore is never closed");
        self.take(Some(permit)).await
    }

    /// A connection outside the pool's budget (an idle one if any, else a new one): for a
    /// child run executing here, whose parent holds a pooled connection while it waits for it,
    /// so that parents can never starve their children of connections.
    pub(crate) async fn get_outside_budget(self: &Arc<Self>) -> Result<Pooled> {
        self.take(None).await
    }

    async fn take(self: &Arc<Self>, permit: Option<OwnedSemaphorePermit>) -> Result<Pooled> {
        let reused = {
            let mut idle = self.idle.lock().unwrap();
            let mut found = None;
            while let Some(c) = idle.pop() {
                if !c.is_closed() {
                    found = Some(c);
                    break;
                }
            }
            found
        };
        let conn = match reused {
            Some(c) => c,
            None => Conn::connect(&self.cfg).await?,
        };
        Ok(Pooled { conn: Some(conn), pool: self.clone(), _permit: permit })
    }

    /// `get`, retrying a server that cannot be reached (or a pool with no free connection)
    /// until `deadline`.
    pub(crate) async fn get_retrying(self: &Arc<Self>, deadline: Instant) -> Result<Pooled> {
        let mut delay = Duration::from_millis(50);
        loop {
            match self.get().await {
                Err(Error::Connection(m) | Error::Timeout(m)) if Instant::now() < deadline => {
                    log::warn!("database unavailable ({m}); retrying in {delay:?}");
                }
                other => return other,
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// Drops the idle connections (after a lost server, they are all broken).
    pub(crate) fn clear(&self) {
        self.idle.lock().unwrap().clear();
    }
}

/// A pooled connection; back in the pool when dropped (unless it broke or is left inside a
/// transaction: then it is closed, and the server rolls the transaction back).
pub(crate) struct Pooled {
    conn: Option<Conn>,
    pool: Arc<Pool>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Deref for Pooled {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn.as_ref().unwrap()
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().unwrap()
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            let mut idle = self.pool.idle.lock().unwrap();
            if !c.is_closed() && !c.in_tx && idle.len() < self.pool.size {
                idle.push(c);
            }
        }
    }
}
