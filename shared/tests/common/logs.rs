//! Every log line of a test binary, captured as the functions write them (JSON lines),
//! but with our own code logging at every level and each span's opening as a line of
//! its own, so that the fields `#[instrument]` records are scanned too. The
//! subscriber is process-wide: one capturing test per binary.

use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Installs the capturing subscriber for the whole process.
    pub fn install() -> Captured {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info,facesvg=trace"))
            .with_writer(move || writer.clone())
            .with_current_span(true)
            .with_span_list(true)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::NEW)
            .init();
        captured
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Panics naming the first `(what, needle)` found in a line of `logs` (needles are
/// matched without regard to ASCII case).
pub fn assert_absent(logs: &str, forbidden: &[(&str, String)]) {
    let lower = logs.to_ascii_lowercase();
    for (what, needle) in forbidden {
        assert!(!needle.is_empty(), "{what}: empty needle");
        let needle = needle.to_ascii_lowercase();
        if let Some(at) = lower.find(&needle) {
            let start = lower[..at].rfind('\n').map_or(0, |i| i + 1);
            let end = lower[at..].find('\n').map_or(logs.len(), |i| at + i);
            panic!("{what} in a log line: {}", &logs[start..end]);
        }
    }
}
