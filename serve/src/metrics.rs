//! Prometheus metrics, served as text at `/monitoring/prometheus/metrics` (TensorFlow
//! Serving's path): requests by model, API and outcome, request latency by model, and per
//! loaded version its state and queued calls.

use crate::repository::{Repository, VersionState};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram's buckets.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Counters, shared by every request.
#[derive(Default)]
pub struct Metrics {
    /// (model, api, outcome) -> requests.
    requests: Mutex<BTreeMap<(String, &'static str, &'static str), u64>>,
    /// model -> latency of successful requests.
    latency: Mutex<BTreeMap<String, Histogram>>,
}

impl Metrics {
    /// Counts one request of `model` through `api` (`tfs_rest_predict`, `kserve_grpc_infer`,
    /// ...) ending with `outcome` (`ok` or an error kind), taking `elapsed`.
    pub fn record(&self, model: &str, api: &'static str, outcome: &'static str, elapsed: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((model.to_string(), api, outcome))
            .or_default() += 1;
        if outcome == "ok" {
            let s = elapsed.as_secs_f64();
            let mut latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
            let h = latency.entry(model.to_string()).or_default();
            for (c, b) in h.counts.iter_mut().zip(BUCKETS) {
                if s <= b {
                    *c += 1;
                }
            }
            h.count += 1;
            h.sum += s;
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, repo: &Repository) -> String {
        let mut out = String::new();
        out.push_str("# HELP lathe_requests_total Requests by model, API and outcome.\n");
        out.push_str("# TYPE lathe_requests_total counter\n");
        for ((model, api, outcome), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "lathe_requests_total{{model=\"{}\",api=\"{api}\",outcome=\"{outcome}\"}} {n}",
                escape(model)
            );
        }
        out.push_str("# HELP lathe_request_latency_seconds Latency of successful requests, queueing included.\n");
        out.push_str("# TYPE lathe_request_latency_seconds histogram\n");
        for (model, h) in self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let m = escape(model);
            for (c, b) in h.counts.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "lathe_request_latency_seconds_bucket{{model=\"{m}\",le=\"{b}\"}} {c}"
                );
            }
            let _ = writeln!(
                out,
                "lathe_request_latency_seconds_bucket{{model=\"{m}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "lathe_request_latency_seconds_sum{{model=\"{m}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "lathe_request_latency_seconds_count{{model=\"{m}\"}} {}",
                h.count
            );
        }
        out.push_str(
            "# HELP lathe_model_version_available Whether a model version is loaded and serving.\n",
        );
        out.push_str("# TYPE lathe_model_version_available gauge\n");
        let mut queued = String::new();
        let mut batches = String::new();
        for name in repo.names() {
            for (v, state) in repo.states(&name).unwrap_or_default() {
                let m = escape(&name);
                let up = u8::from(matches!(state, VersionState::Available(_)));
                let _ = writeln!(
                    out,
                    "lathe_model_version_available{{model=\"{m}\",version=\"{v}\"}} {up}"
                );
                if let VersionState::Available(s) = state {
                    let _ = writeln!(
                        queued,
                        "lathe_queued_calls{{model=\"{m}\",version=\"{v}\"}} {}",
                        s.queued()
                    );
                    if let Some(b) = s.batch_stats() {
                        let labels = format!("model=\"{m}\",version=\"{v}\"");
                        for (metric, n) in [
                            ("lathe_batches_total", &b.batches),
                            ("lathe_batch_rows_total", &b.rows),
                            ("lathe_batch_padding_rows_total", &b.padding),
                        ] {
                            let _ = writeln!(batches, "{metric}{{{labels}}} {}", n.load(Relaxed));
                        }
                    }
                }
            }
        }
        out.push_str(
            "# HELP lathe_queued_calls Calls waiting for a model version's concurrency limit.\n",
        );
        out.push_str("# TYPE lathe_queued_calls gauge\n");
        out.push_str(&queued);
        out.push_str(concat!(
            "# HELP lathe_batches_total Batches dynamic batching has run.\n",
            "# TYPE lathe_batches_total counter\n",
            "# HELP lathe_batch_rows_total Rows of calls run in batches (over batches: the mean batch size).\n",
            "# TYPE lathe_batch_rows_total counter\n",
            "# HELP lathe_batch_padding_rows_total Zero rows added to batches to reach an allowed batch size.\n",
            "# TYPE lathe_batch_padding_rows_total counter\n",
        ));
        out.push_str(&batches);
        out
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
