//! Object storage for SVGs (`results/`), claim-checked inputs (`inputs/`) and
//! photos uploaded straight to the store (`uploads/`, see [`post`]).
//!
//! [`ObjectStore`] is the seam; [`s3::S3Store`] is the implementation used in AWS
//! and, through the same SDK over HTTP, against the local emulator.

pub mod post;
pub mod s3;

use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;
use uuid::Uuid;

#[derive(Debug, Error)]
pub enum ObjectError {
    #[error("object store: {0}")]
    Backend(String),
    #[error("object of {size} bytes is over the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("this object store cannot sign direct uploads")]
    Unsupported,
}

#[async_trait]
pub trait ObjectStore: Send + Sync {
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), ObjectError>;
    /// `None` when there is no such object.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ObjectError>;
    /// Deletes the objects (missing ones are not an error); returns how many were asked.
    async fn delete_many(&self, keys: &[String]) -> Result<usize, ObjectError>;
    /// A URL that reads the object without credentials until `ttl` passes.
    async fn presign_get(&self, key: &str, ttl: Duration) -> Result<String, ObjectError>;
    async fn ping(&self) -> Result<(), ObjectError>;

    /// Up to `max` keys under `prefix` that sort after `after`, in key order (a
    /// tenant's deletion walks its prefixes with it, see `sweep::purge`).
    async fn list(
        &self,
        _prefix: &str,
        _after: Option<&str>,
        _max: i32,
    ) -> Result<Vec<String>, ObjectError> {
        Err(ObjectError::Unsupported)
    }

    /// Like [`ObjectStore::get`], refusing (before reading the body) an object over
    /// `limit` bytes. Stores that cannot tell a size first read and then check.
    async fn get_bounded(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>, ObjectError> {
        match self.get(key).await? {
            Some(b) if b.len() as u64 > limit => Err(ObjectError::TooLarge {
                size: b.len() as u64,
                limit,
            }),
            other => Ok(other),
        }
    }

    /// A form with which a client uploads one object to `key` itself, without
    /// credentials, of 1 to `max_bytes` bytes, until `ttl` passes (an S3 POST policy).
    async fn presign_post(
        &self,
        _key: &str,
        _max_bytes: u64,
        _ttl: Duration,
    ) -> Result<post::PostForm, ObjectError> {
        Err(ObjectError::Unsupported)
    }
}

/// The prefix the health probe lists ([`ObjectStore::ping`]). Nothing is stored
/// under it, and the status function's `s3:ListBucket` is conditioned on it (a
/// template test keeps the two equal).
pub const HEALTH_PREFIX: &str = "health/";

/// Where a tenant's direct upload `id` is stored (a lifecycle rule removes what no
/// submit used within a day).
pub fn upload_key(tenant: &str, id: Uuid) -> String {
    format!("uploads/{}/{}", tenant_segment(tenant), id)
}

/// Where a task's SVG is stored. Keyed by task id, not input hash: a task swept and
/// submitted again gets a new id, so deleting the old SVG can never remove the new.
pub fn svg_key(tenant: &str, task_id: Uuid) -> String {
    format!("results/{}/{}.svg", tenant_segment(tenant), task_id)
}

/// Where a task's inputs wait when they are too large for a queue message.
pub fn input_key(tenant: &str, task_id: Uuid) -> String {
    format!("inputs/{}/{}.json", tenant_segment(tenant), task_id)
}

/// Every prefix that holds objects of `tenant` alone (`results/`, `inputs/`,
/// `uploads/`), named by the family it belongs to.
pub fn tenant_prefixes(tenant: &str) -> [(&'static str, String); 3] {
    let seg = tenant_segment(tenant);
    [
        ("results", format!("results/{seg}/")),
        ("inputs", format!("inputs/{seg}/")),
        ("uploads", format!("uploads/{seg}/")),
    ]
}

/// The task an SVG key names (`results/{tenant}/{task_id}.svg`), if it is one.
pub fn svg_task(key: &str) -> Option<Uuid> {
    let file = key.strip_prefix("results/")?.rsplit_once('/')?.1;
    Uuid::parse_str(file.strip_suffix(".svg")?).ok()
}

/// Tenants come from verified claims, but keys must be safe whatever they contain,
/// and two tenants must never share a prefix (a tenant may only name its own
/// uploads). A tenant of at most 64 characters from `[A-Za-z0-9.-]` is its own
/// segment; any other becomes its first safe characters, `_` and 16 hex digits of
/// its SHA-256. Plain segments never contain `_`, so the two forms cannot meet.
fn tenant_segment(tenant: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    let plain = !tenant.is_empty()
        && tenant.len() <= 64
        && tenant.chars().all(safe)
        && tenant != "."
        && tenant != "..";
    if plain {
        return tenant.to_owned();
    }
    let readable: String = tenant.chars().filter(|&c| safe(c)).take(32).collect();
    let digest = hex::encode(crate::key::sha256(tenant.as_bytes()));
    format!("{readable}_{}", &digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_segments_are_safe_and_distinct() {
        assert_eq!(tenant_segment("acme"), "acme");
        assert_eq!(tenant_segment("tenant-1.eu"), "tenant-1.eu");
        let odd = [
            "acme corp",
            "acme_corp",
            "acme/corp",
            "acme%20corp",
            "",
            "..",
            "é",
            &"a".repeat(65),
        ];
        let mut seen = std::collections::HashSet::new();
        for t in odd {
            let s = tenant_segment(t);
            assert!(s.contains('_') && s.len() <= 49, "{t:?} -> {s:?}");
            assert!(s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)));
            assert!(seen.insert(s), "{t:?} shares a segment");
        }
        assert!(!seen.contains("acme"));
    }

    #[test]
    fn a_tenants_prefixes_hold_its_keys_and_no_other_tenants() {
        let id = Uuid::new_v4();
        let prefixes = tenant_prefixes("acme");
        for key in [
            svg_key("acme", id),
            input_key("acme", id),
            upload_key("acme", id),
        ] {
            assert!(
                prefixes.iter().any(|(_, p)| key.starts_with(p.as_str())),
                "{key}"
            );
        }
        for key in [
            svg_key("acme-2", id),
            svg_key("acm", id),
            upload_key("acme.x", id),
        ] {
            assert!(
                !prefixes.iter().any(|(_, p)| key.starts_with(p.as_str())),
                "{key}"
            );
        }
        assert_eq!(svg_task(&svg_key("acme", id)), Some(id));
        assert_eq!(svg_task(&input_key("acme", id)), None);
    }
}
