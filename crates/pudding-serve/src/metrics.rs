//! The server's counters, gauges and histograms, exposed at `GET /metrics` in the
//! Prometheus text format (version 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Upper bounds (seconds) of the latency histograms.
const LATENCY_BOUNDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Upper bounds of the batch-size histogram (rows per decode step).
const BATCH_BOUNDS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// A cumulative histogram with fixed bucket bounds.
#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    /// Observations at or below each bound (not cumulative here; summed when rendered).
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| value <= b) {
            self.counts[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

#[derive(Debug)]
struct Inner {
    requests_by_status: BTreeMap<u16, u64>,
    prompt_tokens: u64,
    generation_tokens: u64,
    queue_depth: u64,
    running: u64,
    cancelled: u64,
    requests_by_set: BTreeMap<String, u64>,
    batch_size: Histogram,
    router_seconds: Histogram,
    time_to_first_token: Histogram,
    inter_token_latency: Histogram,
}

/// Every metric of one server, shared by the HTTP handlers and the engine thread.
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                requests_by_status: BTreeMap::new(),
                prompt_tokens: 0,
                generation_tokens: 0,
                queue_depth: 0,
                running: 0,
                cancelled: 0,
                requests_by_set: BTreeMap::new(),
                batch_size: Histogram::new(&BATCH_BOUNDS),
                router_seconds: Histogram::new(&LATENCY_BOUNDS),
                time_to_first_token: Histogram::new(&LATENCY_BOUNDS),
                inter_token_latency: Histogram::new(&LATENCY_BOUNDS),
            }),
        }
    }
}

impl Metrics {
    fn with(&self, f: impl FnOnce(&mut Inner)) {
        // A panic elsewhere while holding the lock leaves counts that are still counts.
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut inner);
    }

    /// One HTTP response with `status`.
    pub fn response(&self, status: u16) {
        self.with(|m| *m.requests_by_status.entry(status).or_default() += 1);
    }

    /// A request entered the queue.
    pub fn queued(&self) {
        self.with(|m| m.queue_depth += 1);
    }

    /// A request left the queue (admitted or dropped).
    pub fn dequeued(&self) {
        self.with(|m| m.queue_depth = m.queue_depth.saturating_sub(1));
    }

    /// Sequences running in the batch now.
    pub fn set_running(&self, running: usize) {
        self.with(|m| m.running = running as u64);
    }

    /// A sequence started under the omission set labelled `set` (e.g. `3,7,19`, or
    /// `dense`), with `prompt_tokens` of prompt; `router_seconds` when a router chose it.
    pub fn started(&self, set: &str, prompt_tokens: usize, router_seconds: Option<f64>) {
        self.with(|m| {
            *m.requests_by_set.entry(set.to_string()).or_default() += 1;
            m.prompt_tokens += prompt_tokens as u64;
            if let Some(s) = router_seconds {
                m.router_seconds.observe(s);
            }
        });
    }

    /// A generated token; `first` is the time to first token of its request, `gap` the
    /// time since the request's previous token.
    pub fn token(&self, first: Option<f64>, gap: Option<f64>) {
        self.with(|m| {
            m.generation_tokens += 1;
            if let Some(s) = first {
                m.time_to_first_token.observe(s);
            }
            if let Some(s) = gap {
                m.inter_token_latency.observe(s);
            }
        });
    }

    /// A decode step ran `rows` sequences.
    pub fn decode_step(&self, rows: usize) {
        self.with(|m| m.batch_size.observe(rows as f64));
    }

    /// A sequence was cancelled because its client went away.
    pub fn cancelled(&self) {
        self.with(|m| m.cancelled += 1);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.with(|m| {
            let counter = |out: &mut String, name: &str, help: &str, value: u64| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
            };
            let gauge = |out: &mut String, name: &str, help: &str, value: u64| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
            };
            let _ = writeln!(
                out,
                "# HELP pudding_requests_total HTTP responses by status code.\n# TYPE pudding_requests_total counter"
            );
            for (status, n) in &m.requests_by_status {
                let _ = writeln!(out, "pudding_requests_total{{status=\"{status}\"}} {n}");
            }
            counter(&mut out, "pudding_prompt_tokens_total", "Prompt tokens prefilled.", m.prompt_tokens);
            counter(&mut out, "pudding_generation_tokens_total", "Tokens generated.", m.generation_tokens);
            counter(&mut out, "pudding_cancelled_total", "Sequences cancelled because the client went away.", m.cancelled);
            gauge(&mut out, "pudding_queue_depth", "Requests waiting for a place in the batch.", m.queue_depth);
            gauge(&mut out, "pudding_running_sequences", "Sequences in the running batch.", m.running);
            let _ = writeln!(
                out,
                "# HELP pudding_requests_by_set_total Sequences started, by the blocks they skip.\n# TYPE pudding_requests_by_set_total counter"
            );
            for (set, n) in &m.requests_by_set {
                let _ = writeln!(out, "pudding_requests_by_set_total{{skip=\"{set}\"}} {n}");
            }
            m.batch_size.render(&mut out, "pudding_batch_size", "Sequences per decode step.");
            m.router_seconds.render(&mut out, "pudding_router_seconds", "Seconds the router took per request.");
            m.time_to_first_token.render(&mut out, "pudding_time_to_first_token_seconds", "Seconds from a request's arrival to its first token.");
            m.inter_token_latency.render(&mut out, "pudding_inter_token_latency_seconds", "Seconds between consecutive tokens of a request.");
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.response(200);
        m.response(200);
        m.response(429);
        m.started("3,7,19", 12, Some(0.004));
        m.token(Some(0.2), None);
        m.token(None, Some(0.02));
        m.decode_step(3);
        let text = m.render();
        for line in [
            "pudding_requests_total{status=\"200\"} 2",
            "pudding_requests_total{status=\"429\"} 1",
            "pudding_prompt_tokens_total 12",
            "pudding_generation_tokens_total 2",
            "pudding_requests_by_set_total{skip=\"3,7,19\"} 1",
            "pudding_batch_size_bucket{le=\"2\"} 0",
            "pudding_batch_size_bucket{le=\"4\"} 1",
            "pudding_batch_size_bucket{le=\"+Inf\"} 1",
            "pudding_time_to_first_token_seconds_count 1",
            "pudding_inter_token_latency_seconds_bucket{le=\"0.025\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
