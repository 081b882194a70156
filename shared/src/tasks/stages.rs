//! Per-stage timings of a task: measured once, by the worker, into one [`Stages`]
//! value, and read from it everywhere else.
//!
//! The same figures become the task's `stage_*_ms` rows in `processing_metrics` (what
//! the statistics aggregate), its `stages` column (what the status route serves, and
//! the cache tiers carry with the outcome), and the `RenderTime` EMF metric per
//! `Stage` dimension. Nothing else times a stage, so the three can never disagree.
//!
//! `commit` is the transaction that records the result: it can only be known after
//! it, so it is added to the row and the metrics by one more statement
//! ([`super::TaskStore::record_commit`]); until then it is absent.

use serde::{Deserialize, Serialize};

use super::metrics::Metric;

/// A stage of processing a task, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Decoding the label map PNG (and checking it against the image).
    Decode,
    /// Following the label map's region borders (pixel edges).
    Trace,
    /// Simplifying the traced chains exactly (runs loop by loop inside tracing; timed
    /// apart from it).
    Simplify,
    /// Writing the SVG and the result.
    Svg,
    /// Storing the SVG in S3.
    S3Put,
    /// Committing the result and its metrics to Postgres.
    Commit,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Decode,
        Stage::Trace,
        Stage::Simplify,
        Stage::Svg,
        Stage::S3Put,
        Stage::Commit,
    ];

    /// The stage's name in the API and the EMF `Stage` dimension.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Trace => "trace",
            Stage::Simplify => "simplify",
            Stage::Svg => "svg",
            Stage::S3Put => "s3_put",
            Stage::Commit => "commit",
        }
    }

    /// The stage's `metric_name` in `processing_metrics`.
    pub fn metric(self) -> &'static str {
        match self {
            Stage::Decode => "stage_decode_ms",
            Stage::Trace => "stage_trace_ms",
            Stage::Simplify => "stage_simplify_ms",
            Stage::Svg => "stage_svg_ms",
            Stage::S3Put => "stage_s3_put_ms",
            Stage::Commit => "stage_commit_ms",
        }
    }

    pub fn from_metric(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.metric() == name)
    }
}

/// Milliseconds per stage of one task; a stage not (yet) measured is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Stages {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simplify: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub svg: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_put: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<f64>,
}

impl Stages {
    fn slot(&mut self, stage: Stage) -> &mut Option<f64> {
        match stage {
            Stage::Decode => &mut self.decode,
            Stage::Trace => &mut self.trace,
            Stage::Simplify => &mut self.simplify,
            Stage::Svg => &mut self.svg,
            Stage::S3Put => &mut self.s3_put,
            Stage::Commit => &mut self.commit,
        }
    }

    pub fn get(&self, stage: Stage) -> Option<f64> {
        let mut copy = *self;
        *copy.slot(stage)
    }

    /// Records `stage` as having taken `ms`, to the microsecond: finer is noise, and
    /// a short decimal survives every copy (JSON in Redis, jsonb, float8) unchanged,
    /// so every reader sees the very same figure.
    pub fn set(&mut self, stage: Stage, ms: f64) {
        *self.slot(stage) = Some((ms * 1000.0).round() / 1000.0);
    }

    /// Records the time since `started` as `stage`'s.
    pub fn finish(&mut self, stage: Stage, started: std::time::Instant) {
        self.set(stage, started.elapsed().as_secs_f64() * 1000.0);
    }

    /// The measured stages, in order.
    pub fn measured(&self) -> impl Iterator<Item = (Stage, f64)> + '_ {
        Stage::ALL
            .into_iter()
            .filter_map(|s| self.get(s).map(|ms| (s, ms)))
    }

    /// The measured stages as `processing_metrics` rows.
    pub fn metrics(&self) -> Vec<Metric<'static>> {
        self.measured()
            .map(|(s, ms)| Metric {
                name: s.metric(),
                value: ms,
            })
            .collect()
    }

    /// The measured stages as (EMF `Stage` dimension, ms).
    pub fn named(&self) -> Vec<(&'static str, f64)> {
        self.measured().map(|(s, ms)| (s.name(), ms)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_view_of_the_stages_reads_the_same_figures() {
        let mut s = Stages::default();
        s.set(Stage::Decode, 1.5);
        s.set(Stage::Simplify, 2.0);
        s.set(Stage::Commit, 0.2500004);
        assert_eq!(
            s.named(),
            vec![("decode", 1.5), ("simplify", 2.0), ("commit", 0.25)]
        );
        let m: Vec<(&str, f64)> = s.metrics().iter().map(|m| (m.name, m.value)).collect();
        assert_eq!(
            m,
            vec![
                ("stage_decode_ms", 1.5),
                ("stage_simplify_ms", 2.0),
                ("stage_commit_ms", 0.25)
            ]
        );
        let json = serde_json::to_value(s).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"decode": 1.5, "simplify": 2.0, "commit": 0.25})
        );
        assert_eq!(serde_json::from_value::<Stages>(json).unwrap(), s);
        for stage in Stage::ALL {
            assert_eq!(Stage::from_metric(stage.metric()), Some(stage));
        }
    }
}
