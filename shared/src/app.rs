//! The shared state of a function instance, built once per cold start and
//! borrowed by every invocation: configuration, the Postgres pool, the cache tiers,
//! the object store and the queue. Nothing here connects eagerly: a cold start
//! costs no round trip, and a backend that is down fails only the calls that need it.

use std::str::FromStr;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use thiserror::Error;

use crate::cache::memory::MemoryTier;
use crate::cache::redis::RedisTier;
use crate::cache::CacheError;
use crate::config::{Config, ConfigError};
use crate::objects::s3::S3Store;
use crate::objects::ObjectStore;
use crate::queue::sqs::SqsQueue;
use crate::queue::TaskQueue;
use crate::tasks::TaskStore;

#[derive(Debug, Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("DATABASE_URL: {0}")]
    Database(String),
    #[error("REDIS_URL: {0}")]
    Redis(#[from] CacheError),
}

pub struct App {
    pub config: Config,
    pub tasks: TaskStore,
    pub l0: MemoryTier,
    pub redis: RedisTier,
    pub objects: Arc<dyn ObjectStore>,
    pub queue: Arc<dyn TaskQueue>,
}

impl App {
    /// Builds the state from the environment, as every function's `main` does.
    pub async fn from_env() -> Result<Self, StartupError> {
        Self::from_config(Config::from_env()?).await
    }

    pub async fn from_config(config: Config) -> Result<Self, StartupError> {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        // Emulators listen on an IP address, where bucket subdomains cannot work.
        let path_style = std::env::var_os("AWS_ENDPOINT_URL").is_some();
        let objects = Arc::new(S3Store::new(&sdk, &config.s3_bucket, path_style));
        let queue = Arc::new(SqsQueue::new(&sdk, &config.queue_url));
        Self::with_backends(config, objects, queue)
    }

    /// Builds the state around given object-store and queue backends.
    pub fn with_backends(
        config: Config,
        objects: Arc<dyn ObjectStore>,
        queue: Arc<dyn TaskQueue>,
    ) -> Result<Self, StartupError> {
        let pool = pg_pool(&config.database_url, config.db_pool_size)?;
        Ok(App {
            tasks: TaskStore::new(pool),
            l0: MemoryTier::new(config.l0_max_bytes, config.l0_ttl),
            redis: RedisTier::new(
                &config.redis_url,
                &config.redis_prefix,
                config.redis_timeout,
            )?,
            objects,
            queue,
            config,
        })
    }
}

pub fn pg_pool(url: &str, size: usize) -> Result<Pool, StartupError> {
    let pg =
        tokio_postgres::Config::from_str(url).map_err(|e| StartupError::Database(e.to_string()))?;
    let manager = Manager::from_config(
        pg,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .build()
        .map_err(|e| StartupError::Database(e.to_string()))
}
