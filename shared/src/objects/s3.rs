//! [`ObjectStore`] on Amazon S3 (or any S3 API, such as the local emulator).

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use tracing::instrument;

use super::{ObjectError, ObjectStore};

#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    /// Where direct uploads are POSTed: the bucket's virtual-hosted URL in AWS, the
    /// path-style one on an emulator.
    post_url: String,
    /// The identity that signs direct-upload forms (the function's role in AWS).
    credentials: Option<aws_sdk_s3::config::SharedCredentialsProvider>,
    region: String,
}

fn backend(e: impl std::fmt::Display) -> ObjectError {
    ObjectError::Backend(e.to_string())
}

fn sdk_error(e: &(dyn std::error::Error + 'static)) -> ObjectError {
    ObjectError::Backend(crate::telemetry::error_chain(e))
}

/// An object's body in one buffer, copied once from the segments it arrived in
/// (`into_bytes().to_vec()` copied a multi-segment body twice).
async fn body_vec(body: aws_sdk_s3::primitives::ByteStream) -> Result<Vec<u8>, ObjectError> {
    let segments: Vec<_> = body
        .collect()
        .await
        .map_err(backend)?
        .into_segments()
        .collect();
    let mut out = Vec::with_capacity(segments.iter().map(|s| s.len()).sum());
    for s in &segments {
        out.extend_from_slice(s);
    }
    Ok(out)
}

impl S3Store {
    /// A GetObject whose body is not read yet; `None` for a missing key.
    async fn fetch(
        &self,
        key: &str,
    ) -> Result<Option<aws_sdk_s3::operation::get_object::GetObjectOutput>, ObjectError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(out)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(sdk_error(&e)),
        }
    }

    /// `path_style` is needed by emulators on an IP address (no bucket subdomains).
    pub fn new(sdk: &aws_config::SdkConfig, bucket: &str, path_style: bool) -> Self {
        let config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(path_style)
            .build();
        let region = sdk.region().map(|r| r.as_ref()).unwrap_or("us-east-1");
        let post_url = match (path_style, sdk.endpoint_url()) {
            (true, Some(endpoint)) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
            _ => format!("https://{bucket}.s3.{region}.amazonaws.com/"),
        };
        S3Store {
            client: Client::from_conf(config),
            bucket: bucket.to_owned(),
            post_url,
            credentials: sdk.credentials_provider(),
            region: region.to_owned(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    #[instrument(skip_all, fields(bucket = %self.bucket, %key, bytes = body.len()), err)]
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), ObjectError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        Ok(())
    }

    #[instrument(skip_all, fields(bucket = %self.bucket, %key), err)]
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ObjectError> {
        let Some(out) = self.fetch(key).await? else {
            return Ok(None);
        };
        Ok(Some(body_vec(out.body).await?))
    }

    #[instrument(skip_all, fields(bucket = %self.bucket, n = keys.len()), err)]
    async fn delete_many(&self, keys: &[String]) -> Result<usize, ObjectError> {
        // DeleteObjects takes at most 1000 keys a call.
        for chunk in keys.chunks(1000) {
            let objects = chunk
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build().map_err(backend))
                .collect::<Result<Vec<_>, _>>()?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(backend)?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| sdk_error(&e))?;
            if let Some(err) = out.errors().first() {
                return Err(ObjectError::Backend(format!(
                    "delete {}: {}",
                    err.key().unwrap_or("?"),
                    err.message().unwrap_or("failed")
                )));
            }
        }
        Ok(keys.len())
    }

    #[instrument(skip_all, fields(bucket = %self.bucket, %key, ?ttl), err)]
    async fn presign_get(&self, key: &str, ttl: Duration) -> Result<String, ObjectError> {
        let config = PresigningConfig::expires_in(ttl).map_err(backend)?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(backend)?;
        Ok(req.uri().to_string())
    }

    #[instrument(skip_all, fields(bucket = %self.bucket, %key, limit = limit), err)]
    async fn get_bounded(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>, ObjectError> {
        let Some(out) = self.fetch(key).await? else {
            return Ok(None);
        };
        // Judged on the declared length, before a byte of the body is read.
        let size = out.content_length().unwrap_or(i64::MAX).max(0) as u64;
        if size > limit {
            return Err(ObjectError::TooLarge { size, limit });
        }
        let body = body_vec(out.body).await?;
        if body.len() as u64 > limit {
            return Err(ObjectError::TooLarge {
                size: body.len() as u64,
                limit,
            });
        }
        Ok(Some(body))
    }

    #[instrument(skip_all, fields(bucket = %self.bucket, %key, max_bytes = max_bytes, ?ttl), err)]
    async fn presign_post(
        &self,
        key: &str,
        max_bytes: u64,
        ttl: Duration,
    ) -> Result<super::post::PostForm, ObjectError> {
        use aws_sdk_s3::config::ProvideCredentials;
        let provider = self
            .credentials
            .as_ref()
            .ok_or_else(|| ObjectError::Backend("no credentials to sign with".into()))?;
        // Cached by the provider: a fetch only when the role's session renews.
        let creds = provider.provide_credentials().await.map_err(backend)?;
        let signer = super::post::Signer {
            access_key_id: creds.access_key_id(),
            secret_access_key: creds.secret_access_key(),
            session_token: creds.session_token(),
            region: &self.region,
        };
        Ok(super::post::sign(
            &signer,
            &self.post_url,
            &self.bucket,
            key,
            max_bytes,
            ttl,
            std::time::SystemTime::now(),
        ))
    }

    #[instrument(skip_all, fields(bucket = %self.bucket, %prefix, max = max), err)]
    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: i32,
    ) -> Result<Vec<String>, ObjectError> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_start_after(after.map(str::to_owned))
            .max_keys(max.clamp(1, 1000))
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        Ok(out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect())
    }

    /// Lists the [`super::HEALTH_PREFIX`] (nothing is ever written there): S3
    /// answered, the bucket exists, and we may call it. Not HeadBucket: that needs
    /// `s3:ListBucket` on the whole bucket, which would let status list every
    /// tenant's keys; this listing is allowed on that prefix alone.
    #[instrument(skip_all, fields(bucket = %self.bucket), err)]
    async fn ping(&self) -> Result<(), ObjectError> {
        self.client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(super::HEALTH_PREFIX)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        Ok(())
    }
}
