//! Postgres connections that never outlive their caller.
//!
//! A client-side deadline alone drops the future and leaves the statement running on
//! the server; a pool that took the connection back would hand the next borrower a
//! connection still busy with it. So every call that may be cut off runs inside
//! [`guarded`], and borrows its connection with [`Db::conn`]: when the call's future
//! is dropped before it finished (its deadline passed, or its caller went away), the
//! connection is taken out of the pool and closed, and a cancel request stops the
//! statement on the server. The role-level `statement_timeout`, `lock_timeout` and
//! `idle_in_transaction_session_timeout` ([`crate::migrate::RoleLimits`]) are the
//! backstop where a cancel cannot reach (RDS Proxy, a lost network).

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use deadpool_postgres::{Object, Pool, PoolError};
use tokio_postgres::CancelToken;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::policy::deadlines::CANCEL as CANCEL_DEADLINE;

tokio::task_local! {
    /// Set when the [`guarded`] call around the current task's work was cut off.
    static CUT_OFF: Arc<AtomicBool>;
}

/// A Postgres pool, with what a cancel request needs (the pool's TLS).
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    tls: Option<MakeRustlsConnect>,
}

impl Db {
    pub fn new(pool: Pool, tls: Option<MakeRustlsConnect>) -> Self {
        Db { pool, tls }
    }

    /// A pooled connection for one call. Inside [`guarded`], a connection dropped
    /// by a call that was cut off is closed and its statement cancelled.
    pub async fn conn(&self) -> Result<Conn, PoolError> {
        let obj = self.pool.get().await?;
        Ok(Conn {
            cancel: obj.cancel_token(),
            cut_off: CUT_OFF.try_with(Arc::clone).ok(),
            tls: self.tls.clone(),
            obj: Some(obj),
        })
    }
}

impl Deref for Db {
    type Target = Pool;
    fn deref(&self) -> &Pool {
        &self.pool
    }
}

/// A borrowed connection; see [`Db::conn`].
pub struct Conn {
    obj: Option<Object>,
    cancel: CancelToken,
    cut_off: Option<Arc<AtomicBool>>,
    tls: Option<MakeRustlsConnect>,
}

impl Deref for Conn {
    type Target = Object;
    fn deref(&self) -> &Object {
        // Only Drop takes the object out.
        self.obj.as_ref().expect("connection present until drop")
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Object {
        self.obj.as_mut().expect("connection present until drop")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let cut_off = self
            .cut_off
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Acquire));
        if !cut_off {
            return;
        }
        // Never back into the pool: a statement may still be running on it.
        if let Some(obj) = self.obj.take() {
            drop(Object::take(obj));
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let token = self.cancel.clone();
        let tls = self.tls.take();
        rt.spawn(async move {
            let sent = match tls {
                Some(tls) => tokio::time::timeout(CANCEL_DEADLINE, token.cancel_query(tls)).await,
                None => {
                    tokio::time::timeout(CANCEL_DEADLINE, token.cancel_query(tokio_postgres::NoTls))
                        .await
                }
            };
            match sent {
                Ok(Ok(())) => tracing::debug!("cancelled a statement cut off by its deadline"),
                Ok(Err(e)) => tracing::warn!(error = %e, "cancel request failed"),
                Err(_) => tracing::warn!("cancel request timed out"),
            }
        });
    }
}

/// Runs `call` so that the connections it borrows with [`Db::conn`] are closed and
/// their statements cancelled if it is dropped before it finished.
pub fn guarded<F: Future>(call: F) -> Guarded<F> {
    let flag = Arc::new(AtomicBool::new(false));
    Guarded {
        fut: Box::pin(CUT_OFF.scope(flag.clone(), call)),
        flag,
        done: false,
    }
}

/// The future of [`guarded`].
pub struct Guarded<F: Future> {
    fut: Pin<Box<tokio::task::futures::TaskLocalFuture<Arc<AtomicBool>, F>>>,
    flag: Arc<AtomicBool>,
    done: bool,
}

impl<F: Future> Future for Guarded<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let out = self.fut.as_mut().poll(cx);
        if out.is_ready() {
            self.done = true;
        }
        out
    }
}

impl<F: Future> Drop for Guarded<F> {
    fn drop(&mut self) {
        // Runs before the fields drop: the connections inside see the flag.
        if !self.done {
            self.flag.store(true, Ordering::Release);
        }
    }
}

/// Runs `call` within `configured` (or the invocation's remaining time, see
/// [`crate::deadline`]), guarded; `Err(allowed)` when it was cut off.
pub async fn bounded<F: Future>(configured: Duration, call: F) -> Result<F::Output, Duration> {
    crate::deadline::bounded(configured, guarded(call)).await
}
