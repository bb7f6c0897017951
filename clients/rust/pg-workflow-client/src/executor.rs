//! This process's executor lease: a task renews it on its own connection three times per
//! lease, so that a pool busy with long waits can never starve the heartbeat.

use std::sync::Weak;
use std::time::Duration;

use crate::app::{App, Inner};
use crate::db::Conn;
use crate::error::{Error, Result};
use crate::sql;

pub(crate) struct Heartbeat {
    task: tokio::task::JoinHandle<()>,
}

fn interval(lease: f64) -> Duration {
    // workflow.executor_timeout may change at any time (a reload); every beat reports the lease.
    Duration::from_secs_f64((lease / 3.0).clamp(0.05, 10.0))
}

async fn beat(app: &App, conn: &mut Option<Conn>) -> Result<f64> {
    if conn.as_ref().map_or(true, |c| c.is_closed()) {
        *conn = Some(app.connect_one().await?);
    }
    let c = conn.as_mut().unwrap();
    match c.one(sql::HEARTBEAT, &[&app.inner.executor_id]).await {
        Ok(row) => Ok(row.get(0)),
        // Unknown executor (its row was deleted, or the database restored): register again.
        Err(Error::Sql { sqlstate, .. }) if sqlstate == "WF004" => {
            Ok(c.one(sql::REGISTER, &[&app.inner.executor_id, &app.inner.app_version]).await?.get(0))
        }
        Err(e) => Err(e),
    }
}

impl Heartbeat {
    pub(crate) fn start(inner: Weak<Inner>, mut lease: f64) -> Heartbeat {
        let task = tokio::spawn(async move {
            let mut conn: Option<Conn> = None;
            loop {
                tokio::time::sleep(interval(lease)).await;
                let mut delay = Duration::from_millis(100);
                loop {
                    let Some(inner) = inner.upgrade() else { return };
                    let app = App { inner };
                    match beat(&app, &mut conn).await {
                        Ok(l) => {
                            lease = l;
                            break;
                        }
                        Err(e) => {
                            log::warn!("heartbeat of {} failed ({e}); retrying in {delay:?}", app.inner.executor_id);
                            conn = None;
                        }
                    }
                    drop(app);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(interval(lease).max(Duration::from_millis(200)));
                }
            }
        });
        Heartbeat { task }
    }

    pub(crate) fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}
