//! The shared state of a function instance, built once per cold start and
//! borrowed by every invocation: configuration, the Postgres pool, the cache tiers,
//! the object store and the queue. Nothing here connects eagerly: a cold start
//! costs no round trip, and a backend that is down fails only the calls that need it.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use crate::db::Db;
use thiserror::Error;

use crate::cache::link::RedisLink;
use crate::cache::memory::MemoryTier;
use crate::cache::outcomes::OutcomeCache;
use crate::cache::redis::RedisTier;
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
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("DATABASE_URL: {0}")]
    Database(String),
    #[error("REDIS_URL: {0}")]
    Redis(#[from] ::redis::RedisError),
}

pub struct App {
    pub config: Config,
    pub tasks: TaskStore,
    /// The task-outcome tiers above Postgres (L0 and Redis) and their policy.
    pub outcomes: OutcomeCache,
    pub objects: Arc<dyn ObjectStore>,
    pub queue: Arc<dyn TaskQueue>,
    /// The general-purpose cache (memory → Redis → Postgres `cache_store`): the
    /// statistics and listings are cached through it.
    pub kv: crate::cache::kv::Cache,
    /// Its Postgres tier, for the sweep of expired rows.
    pub kv_store: Arc<crate::cache::kv::PostgresBackend>,
    /// How long clients should wait between polls of an open task.
    pub poll: crate::services::poll::PollAdvice,
    /// Presigned SVG URLs, reused while more than half their lifetime is left.
    pub links: crate::services::links::Links,
    /// The last health probe, for the public verdict.
    pub health: crate::services::health::Health,
    /// Tenants' token buckets (renders, upload forms, invalidations).
    pub quota: crate::quota::Quota,
    /// The batch memory budget of renders in this instance, in KiB (see `worker`).
    pub render_memory: tokio::sync::Semaphore,
    /// Secrets read on demand (the migrations' owner secret, see [`crate::deploy`]).
    pub secrets: crate::secrets::Secrets,
}

impl App {
    /// Builds the state from the environment, as every function's `main` does.
    pub async fn from_env() -> Result<Self, StartupError> {
        Self::from_config(Config::from_env()?).await
    }

    pub async fn from_config(config: Config) -> Result<Self, StartupError> {
        // Every S3, SQS and Secrets Manager call has a deadline: a hung endpoint costs
        // seconds and a 503, never the whole invocation.
        let t = config.aws_timeouts;
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(t.connect)
                    .operation_attempt_timeout(t.attempt)
                    .operation_timeout(t.operation)
                    .build(),
            )
            .load()
            .await;
        Self::from_sdk(config, &sdk).await
    }

    /// Builds the state with the AWS configuration `sdk`. Reads the secrets every
    /// invocation needs (the application's database credentials, the Redis token);
    /// the migrations' owner secret waits for a migration ([`crate::deploy`]).
    pub async fn from_sdk(
        mut config: Config,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Self, StartupError> {
        // One crypto provider for every rustls user in the process (SDK, Postgres, Redis).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let secrets = crate::secrets::Secrets::new(sdk);
        if let Some(arn) = &config.database_secret_arn {
            config.database_credentials = Some(secrets.credentials(arn).await?);
        }
        if let Some(arn) = &config.redis_auth_secret_arn {
            let token = crate::secrets::fetch_fields(sdk, arn, &["token"]).await?;
            config.redis_url =
                crate::secrets::redis_url_with_password(&config.redis_url, &token[0]);
        }
        // Emulators listen on an IP address, where bucket subdomains cannot work.
        let path_style = std::env::var_os("AWS_ENDPOINT_URL").is_some();
        let objects = Arc::new(S3Store::new(sdk, &config.s3_bucket, path_style));
        let queue = Arc::new(SqsQueue::new(sdk, &config.queue_url));
        let mut app = Self::with_backends(config, objects, queue)?;
        app.secrets = secrets;
        Ok(app)
    }

    /// Builds the state around given object-store and queue backends.
    pub fn with_backends(
        config: Config,
        objects: Arc<dyn ObjectStore>,
        queue: Arc<dyn TaskQueue>,
    ) -> Result<Self, StartupError> {
        let pool = pg_pool(
            &config.database_url,
            config.database_credentials.as_ref(),
            config.db_pool_size,
            config.db_connect_timeout,
        )?;
        use crate::cache::kv;
        let kv_store = Arc::new(kv::PostgresBackend::new(pool.clone(), config.db_timeout));
        use crate::policy::tiers::{KV_MEMORY_BYTES, KV_MEMORY_ENTRIES, KV_MEMORY_MAX_TTL};
        let mut kv = kv::Cache::builder().tier(Arc::new(kv::MemoryBackend::new(
            KV_MEMORY_ENTRIES,
            KV_MEMORY_BYTES,
            KV_MEMORY_MAX_TTL,
        )));
        // One link for both caches: one connection per instance, and one breaker, so
        // a Redis found down by either is skipped by both.
        let redis_link = if crate::cache::link::is_disabled(&config.redis_url) {
            None
        } else {
            Some(Arc::new(RedisLink::open(
                &config.redis_url,
                config.redis_timeout,
            )?))
        };
        if let Some(link) = &redis_link {
            let kv_redis = Arc::new(kv::RedisBackend::new(link.clone(), &config.redis_prefix));
            kv = kv.tier(kv_redis.clone()).locks(kv_redis);
        }
        let kv = kv
            .tier(kv_store.clone())
            .ttls(config.kv_ttls.clone())
            .build();
        let tasks = TaskStore::new(pool, config.db_timeout);
        let quota = crate::quota::Quota::new(
            config.tenant_limits,
            redis_link.clone(),
            &config.redis_prefix,
            tasks.clone(),
        );
        let outcomes = OutcomeCache::new(
            MemoryTier::new(config.l0_max_bytes, config.l0_ttl),
            RedisTier::new(redis_link, &config.redis_prefix),
        )
        .counting_to(tasks.clone())
        .counting_cache(kv.counter_source());
        Ok(App {
            quota,
            health: Default::default(),
            kv,
            kv_store,
            outcomes,
            tasks,
            objects,
            queue,
            poll: Default::default(),
            links: Default::default(),
            render_memory: tokio::sync::Semaphore::new(
                (config.batch_memory_bytes / 1024).max(1) as usize
            ),
            secrets: Default::default(),
            config,
        })
    }

    /// What a health probe reaches (see [`crate::services::health`]).
    pub fn backends(&self) -> crate::services::health::Backends<'_> {
        crate::services::health::Backends {
            tasks: &self.tasks,
            outcomes: &self.outcomes,
            objects: self.objects.as_ref(),
            queue: self.queue.as_ref(),
            kv_store: &self.kv_store,
        }
    }

    /// What the fleet's view of the general cache reads
    /// (see [`crate::services::cache_stats`]).
    pub fn cache_sources(&self) -> crate::services::cache_stats::Sources<'_> {
        crate::services::cache_stats::Sources {
            outcomes: &self.outcomes,
            tasks: &self.tasks,
            kv: &self.kv,
        }
    }

    /// What a submit may touch (see [`crate::services::submit`]).
    pub fn submitting(&self) -> crate::services::submit::Submitting<'_> {
        crate::services::submit::Submitting {
            tasks: &self.tasks,
            outcomes: &self.outcomes,
            objects: self.objects.as_ref(),
            queue: self.queue.as_ref(),
            quota: &self.quota,
            limits: &self.config.limits,
            open_tasks: self.config.tenant_limits.open_tasks,
            cache_ttl: self.config.cache_ttl,
        }
    }
}

/// A Postgres pool. `sslmode=require` in the URL (as RDS Proxy needs) connects over
/// TLS, verified against the system's CA roots; credentials, if given, replace the URL's.
///
/// The pool bounds every step on its own (waiting for a free connection, creating
/// one, recycling one) so that a Postgres or RDS Proxy that accepts connections and
/// never answers costs at most `connect_timeout` per step. Calls cut off by their
/// deadline never give a busy connection back (see [`crate::db`]).
pub fn pg_pool(
    url: &str,
    credentials: Option<&(String, String)>,
    size: usize,
    connect_timeout: Duration,
) -> Result<Db, StartupError> {
    let mut pg =
        tokio_postgres::Config::from_str(url).map_err(|e| StartupError::Database(e.to_string()))?;
    pg.connect_timeout(connect_timeout);
    if let Some((user, password)) = credentials {
        pg.user(user).password(password);
    }
    let recycling = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let (manager, tls) = if pg.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(rustls_client_config()?);
        (Manager::from_config(pg, tls.clone(), recycling), Some(tls))
    } else {
        (
            Manager::from_config(pg, tokio_postgres::NoTls, recycling),
            None,
        )
    };
    let pool = Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(connect_timeout))
        .create_timeout(Some(connect_timeout))
        .recycle_timeout(Some(connect_timeout))
        .build()
        .map_err(|e| StartupError::Database(e.to_string()))?;
    Ok(Db::new(pool, tls))
}

/// A rustls client configuration trusting the system's CA roots.
pub fn rustls_client_config() -> Result<rustls::ClientConfig, StartupError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        return Err(StartupError::Tls(
            "no CA certificates found on this system".into(),
        ));
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StartupError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}
