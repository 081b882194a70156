//! Links to SVGs: presigned S3 URLs, reused while more than half of their lifetime
//! is left.
//!
//! A SigV4 presign is pure computation but not free (HMAC chains, canonical
//! strings), and every cache hit needs one. Reusing a URL until half its lifetime
//! has passed means a client always gets at least half the configured lifetime, and
//! a busy instance signs each SVG about twice per lifetime instead of once per hit.
//! The table is bounded: when full it is emptied, which costs only re-signing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::objects::{ObjectError, ObjectStore};

/// Most URLs kept per instance (a few hundred bytes each).
const MAX_LINKS: usize = 4096;

#[derive(Default)]
pub struct Links {
    signed: Mutex<HashMap<String, (Instant, String)>>,
}

impl Links {
    /// A URL for `key` valid for at least `ttl / 2` from now.
    pub async fn svg_url(
        &self,
        objects: &dyn ObjectStore,
        key: &str,
        ttl: Duration,
    ) -> Result<String, ObjectError> {
        Ok(self.svg_link(objects, key, ttl).await?.0)
    }

    /// [`Links::svg_url`], with how long the URL stays valid from now (what an
    /// answer carrying it may be cached for).
    pub async fn svg_link(
        &self,
        objects: &dyn ObjectStore,
        key: &str,
        ttl: Duration,
    ) -> Result<(String, Duration), ObjectError> {
        if let Some((signed_at, url)) = self.lock().get(key) {
            let age = signed_at.elapsed();
            if age < ttl / 2 {
                return Ok((url.clone(), ttl.saturating_sub(age)));
            }
        }
        let url = objects.presign_get(key, ttl).await?;
        let mut signed = self.lock();
        if signed.len() >= MAX_LINKS {
            signed.clear();
        }
        signed.insert(key.to_owned(), (Instant::now(), url.clone()));
        Ok((url, ttl))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, String)>> {
        self.signed.lock().unwrap_or_else(|p| p.into_inner())
    }
}
