//! S3 POST policies (browser-based uploads, signed with SigV4): the form a client
//! fills to upload one object straight to the bucket, so that photos larger than a
//! Lambda payload (6 MB, base64-inflated by API Gateway) never pass through a
//! function. The policy pins the bucket, the exact key and a `content-length-range`,
//! and expires: S3 itself refuses anything else.
//!
//! Signing follows "Authenticating Requests in Browser-Based Uploads Using POST
//! (AWS Signature Version 4)": the string to sign is the base64 of the policy JSON,
//! signed with the usual derived key (date, region, `s3`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

/// What a client needs to upload: POST `url` as `multipart/form-data` with every
/// field of `fields`, then the file as the last field, named `file`.
#[derive(Clone, Debug, Serialize)]
pub struct PostForm {
    pub url: String,
    pub fields: BTreeMap<String, String>,
    pub expires_at: DateTime<Utc>,
    pub max_bytes: u64,
}

/// The signing identity: temporary credentials in Lambda (with a session token).
pub struct Signer<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
    pub region: &'a str,
}

/// Builds the signed form for `key` in `bucket`, posted to `url`, valid from `now`
/// for `ttl`, for 1 to `max_bytes` bytes.
pub fn sign(
    signer: &Signer<'_>,
    url: &str,
    bucket: &str,
    key: &str,
    max_bytes: u64,
    ttl: Duration,
    now: SystemTime,
) -> PostForm {
    let now_utc: DateTime<Utc> = now.into();
    let expires_at = now_utc + chrono::Duration::from_std(ttl).unwrap_or_default();
    let date = now_utc.format("%Y%m%d").to_string();
    let amz_date = now_utc.format("%Y%m%dT%H%M%SZ").to_string();
    let credential = format!(
        "{}/{date}/{}/s3/aws4_request",
        signer.access_key_id, signer.region
    );
    let mut fields = BTreeMap::from([
        ("key".to_owned(), key.to_owned()),
        ("x-amz-algorithm".to_owned(), "AWS4-HMAC-SHA256".to_owned()),
        ("x-amz-credential".to_owned(), credential),
        ("x-amz-date".to_owned(), amz_date),
    ]);
    if let Some(token) = signer.session_token {
        fields.insert("x-amz-security-token".to_owned(), token.to_owned());
    }
    let mut conditions = vec![
        json!({"bucket": bucket}),
        json!(["content-length-range", 1, max_bytes]),
    ];
    conditions.extend(fields.iter().map(|(k, v)| json!({ k: v })));
    let policy = json!({
        "expiration": expires_at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "conditions": conditions,
    });
    let policy_b64 = base64::engine::general_purpose::STANDARD.encode(policy.to_string());
    let signing_key = aws_sigv4::sign::v4::generate_signing_key(
        signer.secret_access_key,
        now,
        signer.region,
        "s3",
    );
    let signature = aws_sigv4::sign::v4::calculate_signature(signing_key, policy_b64.as_bytes());
    fields.insert("policy".to_owned(), policy_b64);
    fields.insert("x-amz-signature".to_owned(), signature);
    PostForm {
        url: url.to_owned(),
        fields,
        expires_at,
        max_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature is HMAC-SHA256 over the policy's base64 with the SigV4 key
    /// derived from the secret, the day, the region and `s3`: recomputed here with
    /// `sha2` alone (RFC 2104 by hand), independent of the SDK's code.
    #[test]
    fn the_form_pins_key_size_and_expiry_and_carries_a_valid_signature() {
        use sha2::{Digest, Sha256};
        fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
            let mut k = [0u8; 64];
            if key.len() > 64 {
                k[..32].copy_from_slice(&Sha256::digest(key));
            } else {
                k[..key.len()].copy_from_slice(key);
            }
            let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
            let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
            let inner = Sha256::digest([ipad.as_slice(), msg].concat());
            Sha256::digest([opad.as_slice(), inner.as_slice()].concat()).to_vec()
        }
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let signer = Signer {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session_token: Some("token"),
            region: "eu-west-1",
        };
        let form = sign(
            &signer,
            "https://b.s3.eu-west-1.amazonaws.com/",
            "b",
            "uploads/acme/1",
            1000,
            Duration::from_secs(900),
            now,
        );
        let f = &form.fields;
        assert_eq!(f["key"], "uploads/acme/1");
        assert_eq!(
            f["x-amz-credential"],
            "AKIDEXAMPLE/20251124/eu-west-1/s3/aws4_request"
        );
        assert_eq!(f["x-amz-date"], "20251124T160000Z");
        assert_eq!(f["x-amz-security-token"], "token");
        let policy: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(&f["policy"])
                .unwrap(),
        )
        .unwrap();
        assert_eq!(policy["expiration"], "2025-11-24T16:15:00.000Z");
        let conditions = policy["conditions"].as_array().unwrap();
        assert!(conditions.contains(&json!({"bucket": "b"})));
        assert!(conditions.contains(&json!(["content-length-range", 1, 1000])));
        assert!(conditions.contains(&json!({"key": "uploads/acme/1"})));
        assert!(conditions.contains(&json!({"x-amz-security-token": "token"})));

        let k = hmac(
            format!("AWS4{}", signer.secret_access_key).as_bytes(),
            b"20251124",
        );
        let k = hmac(&k, b"eu-west-1");
        let k = hmac(&k, b"s3");
        let k = hmac(&k, b"aws4_request");
        assert_eq!(
            f["x-amz-signature"],
            hex::encode(hmac(&k, f["policy"].as_bytes()))
        );
    }
}
