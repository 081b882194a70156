//! The hybrid Redis + Postgres cache's typed API ("V2"), as an application uses
//! the general cache for it: face embeddings and perceptual hashes cached by image
//! content and tenant, and crawl de-duplication.
//!
//! Nothing here decides a lifetime or a tier: each kind is a namespace of the
//! general cache whose per-tier lifetimes are the presets below ([`PRESETS`],
//! part of every [`Ttls`](super::Ttls); `CACHE_KV_TTLS` may replace any of them),
//! and the tiers ([`Tiered`](super::Tiered)) walk, backfill and degrade as for any
//! namespace: with Redis down Postgres answers, with Postgres down Redis does.
//!
//! ```ignore
//! let v2 = V2::new(&app.kv);
//! if let Some(e) = v2.get_embedding(&image, tenant).await? { return Ok(e) }
//! v2.set_embedding(&image, &embedding, tenant).await?;
//! let (skip, raw_key) = v2.should_skip(url, &image, tenant).await?;
//! if !skip {
//!     objects.put(&raw_key, &image).await?;
//!     v2.store_crawled(url, &image, &raw_key, Some(&thumb_key), tenant).await?;
//! }
//! ```
//!
//! Keys are the SHA-256 of the image bytes (hex), under the caller's tenant: the
//! same image sent by two tenants is two entries, and one tenant's invalidation
//! (`Scope::tenant`) or deletion never reaches another's.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::backend::Tier;
use super::client::Cache;
use super::key::{Key, KeyBuilder};
use super::{KvError, FOREVER};

/// Namespace of face embeddings (`Vec<f32>` per image).
pub const EMBEDDINGS: &str = "embeddings";
/// Namespace of perceptual hashes (`u64` per image).
pub const PHASHES: &str = "phash";
/// Namespace of crawl records ([`Crawled`] per image).
pub const CRAWLED: &str = "crawled";

const HOUR: Duration = Duration::from_secs(3600);

/// The V2 cache's documented lifetimes: each kind briefly in Redis, and kept in
/// Postgres without expiry (bounded instead by `CACHE_KV_MAX_ENTRIES` and
/// `CACHE_KV_MAX_SIZE_MB`, least recently used first). The memory tier keeps
/// them for the namespace's TTL (the default), bounded by its own `max_ttl`.
pub const PRESETS: &[(&str, Tier, Duration)] = &[
    (EMBEDDINGS, Tier::Redis, HOUR),
    (EMBEDDINGS, Tier::Postgres, FOREVER),
    (PHASHES, Tier::Redis, Duration::from_secs(2 * 3600)),
    (PHASHES, Tier::Postgres, FOREVER),
    (CRAWLED, Tier::Redis, Duration::from_secs(24 * 3600)),
    (CRAWLED, Tier::Postgres, FOREVER),
];

/// What `store_crawled` records for an image's content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crawled {
    /// The URL the content was first stored from.
    pub url: String,
    /// Where the raw image was stored (an object key).
    pub raw_key: String,
    pub thumbnail_key: Option<String>,
}

/// The typed API over a [`Cache`] that has the deployment's tiers.
#[derive(Clone, Copy)]
pub struct V2<'a> {
    cache: &'a Cache,
}

/// Hex SHA-256 of `bytes`: the id of everything cached about an image.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn key(namespace: &str, tenant: &str, image: &[u8]) -> Result<Key, KvError> {
    KeyBuilder::new(namespace)?.key(tenant, &[&content_hash(image)])
}

impl<'a> V2<'a> {
    pub fn new(cache: &'a Cache) -> Self {
        V2 { cache }
    }

    /// The embedding cached for this image's content, if any.
    pub async fn get_embedding(
        &self,
        image: &[u8],
        tenant: &str,
    ) -> Result<Option<Vec<f32>>, KvError> {
        self.cache.get(&key(EMBEDDINGS, tenant, image)?).await
    }

    /// Caches `embedding` for this image's content: Redis for an hour, Postgres
    /// without expiry (by default).
    pub async fn set_embedding(
        &self,
        image: &[u8],
        embedding: &[f32],
        tenant: &str,
    ) -> Result<(), KvError> {
        self.cache
            .set(&key(EMBEDDINGS, tenant, image)?, &embedding, None)
            .await
    }

    /// The perceptual hash cached for this image's content, if any.
    pub async fn get_phash(&self, image: &[u8], tenant: &str) -> Result<Option<u64>, KvError> {
        self.cache.get(&key(PHASHES, tenant, image)?).await
    }

    pub async fn set_phash(&self, image: &[u8], phash: u64, tenant: &str) -> Result<(), KvError> {
        self.cache
            .set(&key(PHASHES, tenant, image)?, &phash, None)
            .await
    }

    /// Whether the crawler may skip this image, and the object key of its raw
    /// bytes. Skip when this tenant already stored the same content (from any
    /// URL): the key is then where it lies. Otherwise the key to store it under,
    /// derived from the content, so that two crawlers of one image write one object.
    pub async fn should_skip(
        &self,
        url: &str,
        image: &[u8],
        tenant: &str,
    ) -> Result<(bool, String), KvError> {
        let k = key(CRAWLED, tenant, image)?;
        match self.cache.get::<Crawled>(&k).await? {
            Some(c) => {
                tracing::debug!(url, first = %c.url, "crawl: content already stored");
                Ok((true, c.raw_key))
            }
            None => Ok((false, raw_key(tenant, image))),
        }
    }

    /// Records that this image's content was stored at `raw_key` (and its
    /// thumbnail at `thumbnail_key`): the next `should_skip` of it says skip.
    pub async fn store_crawled(
        &self,
        url: &str,
        image: &[u8],
        raw_key: &str,
        thumbnail_key: Option<&str>,
        tenant: &str,
    ) -> Result<(), KvError> {
        let record = Crawled {
            url: url.to_owned(),
            raw_key: raw_key.to_owned(),
            thumbnail_key: thumbnail_key.map(str::to_owned),
        };
        self.cache
            .set(&key(CRAWLED, tenant, image)?, &record, None)
            .await
    }

    /// The crawl record of this image's content, if any.
    pub async fn crawled(&self, image: &[u8], tenant: &str) -> Result<Option<Crawled>, KvError> {
        self.cache.get(&key(CRAWLED, tenant, image)?).await
    }
}

/// The object key of an image's raw bytes: per tenant, by content.
pub fn raw_key(tenant: &str, image: &[u8]) -> String {
    format!("raw/{}/{}", super::key::escape(tenant), content_hash(image))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::kv::Ttls;

    #[test]
    fn presets_are_part_of_every_configuration_and_can_be_replaced() {
        let t = Ttls::parse("default=1h").unwrap();
        assert_eq!(t.tier_cap(EMBEDDINGS, Tier::Redis), Some(HOUR));
        assert_eq!(t.tier_cap(EMBEDDINGS, Tier::Postgres), Some(FOREVER));
        assert_eq!(t.tier_cap(PHASHES, Tier::Redis), Some(2 * HOUR));
        assert_eq!(t.tier_cap(CRAWLED, Tier::Redis), Some(24 * HOUR));
        // The memory tier keeps them for the namespace's TTL (here the default).
        assert_eq!(t.tier_cap(EMBEDDINGS, Tier::Memory), Some(HOUR));
        assert_eq!(t.for_namespace(EMBEDDINGS), FOREVER);
        assert!(t.knows(EMBEDDINGS) && t.knows(PHASHES) && t.knows(CRAWLED));
        let t = Ttls::parse("embeddings@postgres=30d,phash=10m").unwrap();
        assert_eq!(
            t.tier_cap(EMBEDDINGS, Tier::Postgres),
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(t.tier_cap(EMBEDDINGS, Tier::Redis), Some(HOUR));
        assert_eq!(
            t.tier_cap(PHASHES, Tier::Memory),
            Some(Duration::from_secs(600))
        );
    }

    #[test]
    fn keys_are_the_content_hash_under_the_tenant() {
        let a = key(EMBEDDINGS, "t1", b"image").unwrap();
        let b = key(EMBEDDINGS, "t2", b"image").unwrap();
        assert_eq!(a.id(), b.id());
        assert_ne!(a.full(), b.full());
        assert!(a.id().contains(&content_hash(b"image")));
        assert_ne!(raw_key("t1", b"image"), raw_key("t2", b"image"));
    }
}
