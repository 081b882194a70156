//! Direct uploads: photos too large for a request body (Lambda's 6 MB payload, which
//! API Gateway fills with the base64 of the body) go straight to the bucket through
//! a presigned S3 POST, and a submit then names the upload instead of carrying the
//! image.
//!
//! 1. `POST …/uploads` returns a form (URL and fields) for one object under the
//!    caller's tenant prefix, of 1 to `MAX_UPLOAD_BYTES` bytes, valid for
//!    [`UPLOAD_TTL`]. S3 enforces the key, the size range and the expiry.
//! 2. The client POSTs the photo to S3 with that form.
//! 3. A submit with `image_upload=<upload_id>` (and no `image`) reads the object,
//!    refusing one over the limit before reading its body, and goes on exactly as
//!    if the image had been in the body: the same key, the same task.
//!
//! A tenant can only name its own uploads: the id is looked up under the caller's
//! prefix. An upload is deleted once a submit has used it; an unused one goes with
//! the bucket's one-day lifecycle rule on `uploads/`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::submit::SubmitError;
use crate::input::InputError;
use crate::limits::Limits;
use crate::objects::{post::PostForm, upload_key, ObjectError, ObjectStore};
use crate::quota::{Kind, Quotas};

/// How long an upload form can be used: long enough for a slow link to send 16 MiB.
pub use crate::policy::lifetime::UPLOAD_TTL;

/// The form field of a submit that names an upload.
pub const FIELD: &str = "image_upload";

#[derive(Debug, Serialize)]
pub struct NewUpload {
    pub upload_id: Uuid,
    pub url: String,
    /// Every field to send, in any order, before the file.
    pub fields: std::collections::BTreeMap<String, String>,
    /// The name of the file's own field, sent last.
    pub file_field: &'static str,
    pub max_bytes: u64,
    pub expires_at: DateTime<Utc>,
}

/// A form for one direct upload of `tenant`.
pub async fn create(
    objects: &dyn ObjectStore,
    quota: &dyn Quotas,
    limits: &Limits,
    tenant: &str,
) -> Result<NewUpload, SubmitError> {
    // Each form lets the tenant put up to `MAX_UPLOAD_BYTES` in the bucket.
    quota.take(tenant, Kind::Uploads).await?;
    let id = Uuid::new_v4();
    let max = limits.max_upload_bytes as u64;
    let PostForm {
        url,
        fields,
        expires_at,
        max_bytes,
    } = objects
        .presign_post(&upload_key(tenant, id), max, UPLOAD_TTL)
        .await?;
    Ok(NewUpload {
        upload_id: id,
        url,
        fields,
        file_field: "file",
        max_bytes,
        expires_at,
    })
}

/// The id a submit gave in [`FIELD`].
pub fn parse_id(raw: &[u8]) -> Result<Uuid, InputError> {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| Uuid::parse_str(s.trim()).ok())
        .ok_or_else(|| InputError::invalid(FIELD, "expected the upload_id of a direct upload"))
}

/// The bytes of `tenant`'s upload `id`, within `MAX_UPLOAD_BYTES`.
pub async fn fetch(
    objects: &dyn ObjectStore,
    limits: &Limits,
    tenant: &str,
    id: Uuid,
) -> Result<Vec<u8>, SubmitError> {
    let limit = limits.max_upload_bytes as u64;
    match objects.get_bounded(&upload_key(tenant, id), limit).await {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(InputError::invalid(
            FIELD,
            "no upload with this id: it was never completed, belongs to another tenant, or is older than a day",
        )
        .into()),
        Err(ObjectError::TooLarge { size, limit }) => Err(InputError::too_large(
            FIELD,
            format!("{size} bytes is over the limit of {limit} bytes"),
        )
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes an upload a submit has used (its bytes now travel with the task), beside
/// the answer rather than before it: the caller never waits for the DELETE. A
/// failure, or an instance that dies first, only leaves it to the lifecycle rule;
/// an instance frozen first sends it when it thaws.
pub fn forget(objects: &std::sync::Arc<dyn ObjectStore>, tenant: &str, id: Uuid) {
    let (objects, key) = (std::sync::Arc::clone(objects), upload_key(tenant, id));
    tokio::spawn(async move {
        if let Err(e) = objects.delete_many(&[key]).await {
            tracing::warn!(error = %e, "used upload left for the lifecycle rule");
        }
    });
}
