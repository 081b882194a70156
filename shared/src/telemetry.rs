//! Tracing set up once per process: JSON lines (CloudWatch indexes them), level
//! from `RUST_LOG` (default `info`). Safe to call more than once.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

/// An error as a log line or an error message may carry it: its `Display`, then each
/// source's, joined by ": ". Never its `Debug`: the AWS SDK's errors hold the raw
/// HTTP response there (`DisplayErrorContext` appends it), and a service's error body
/// may echo what was sent (S3's `SignatureDoesNotMatch` quotes the canonical request,
/// session token header included).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A JSON decoding error without the text it decoded: serde's messages quote the
/// offending value (`invalid type: string "…"`), and what is decoded here (a queue
/// message, an event) holds a client's inputs.
pub fn json_error(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_do_not_quote_what_they_decoded() {
        let e = serde_json::from_str::<Vec<u32>>(r#"["secret landmark text"]"#).unwrap_err();
        assert!(
            e.to_string().contains("secret landmark text"),
            "serde quotes it"
        );
        let said = json_error(&e);
        assert!(!said.contains("secret"), "{said}");
        assert!(said.starts_with("Data error at line 1"), "{said}");
    }

    #[test]
    fn error_chains_follow_sources_without_debug() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("dispatch failure")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::other("connection refused"));
        assert_eq!(error_chain(&e), "dispatch failure: connection refused");
    }
}
