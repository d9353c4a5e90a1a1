//! Prometheus metrics: one registry per server with every family ocaas exports, the HTTP
//! middleware that counts requests by route template, and gauges for open streams. Served in
//! the text format at `/metrics` (see `health::metrics`); values that live elsewhere (instances
//! by status, the database pool) are read at scrape time.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

/// Seconds: from 5 ms (an API call) to 10 min (a long chat turn).
const BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0, 600.0];

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    /// `kind`: `provision`, `reboot`, `chat_turn`; `outcome`: `ok` or `error`.
    pub operation_duration: HistogramVec,
    pub operation_errors: IntCounterVec,
    /// `kind`: `terminal`, `vnc`, `sse`.
    pub open_streams: IntGaugeVec,
    pub reconcile_passes: IntCounterVec,
    /// `fix`: `resumed`, `marked_error`, `orphan_removed`, `turn_interrupted`.
    pub reconcile_fixes: IntCounterVec,
    pub instances: IntGaugeVec,
    /// Per node (`ocaas node`): 1 when it answered the last ping.
    pub node_up: IntGaugeVec,
    /// Per node: instances placed on it, and its capacity.
    pub node_instances: IntGaugeVec,
    pub node_capacity: IntGaugeVec,
    pub db_pool_size: IntGauge,
    pub db_pool_idle: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new().expect("metric names are valid and registered once")
    }
}

impl Metrics {
    fn new() -> prometheus::Result<Self> {
        let registry = Registry::new_custom(Some("ocaas".into()), None)?;
        let histogram = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<HistogramVec> {
            let metric = HistogramVec::new(HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()), labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let counter = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
            let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let gauges = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntGaugeVec> {
            let metric = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let metric = IntGauge::new(name, help)?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        Ok(Metrics {
            http_requests: counter("http_requests_total", "HTTP requests by route template, method and status.", &["route", "method", "status"])?,
            http_duration: histogram("http_request_duration_seconds", "HTTP request latency (to the response head).", &["route", "method"])?,
            operation_duration: histogram("operation_duration_seconds", "Duration of instance operations and chat turns.", &["kind", "outcome"])?,
            operation_errors: counter("operation_errors_total", "Instance operations and chat turns that failed.", &["kind"])?,
            open_streams: gauges("open_streams", "Open websockets and SSE streams.", &["kind"])?,
            reconcile_passes: counter("reconcile_passes_total", "Reconciler passes by outcome.", &["outcome"])?,
            reconcile_fixes: counter("reconcile_fixes_total", "What the reconciler repaired.", &["fix"])?,
            instances: gauges("instances", "Instances by status (read at scrape time).", &["status"])?,
            node_up: gauges("node_up", "1 when the node answered this server's last ping.", &["node"])?,
            node_instances: gauges("node_instances", "Instances placed on the node.", &["node"])?,
            node_capacity: gauges("node_capacity", "Instances the node may hold.", &["node"])?,
            db_pool_size: gauge("db_pool_connections", "Connections in the database pool.")?,
            db_pool_idle: gauge("db_pool_idle_connections", "Idle connections in the database pool.")?,
            registry,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("encoding to a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }

    /// Records how long an operation took and whether it failed.
    pub fn operation(&self, kind: &str, started: Instant, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.operation_duration.with_label_values(&[kind, outcome]).observe(started.elapsed().as_secs_f64());
        if !ok {
            self.operation_errors.with_label_values(&[kind]).inc();
        }
    }

    /// Counts an open stream until the guard is dropped.
    pub fn stream_open(&self, kind: &str) -> StreamGuard {
        let gauge = self.open_streams.with_label_values(&[kind]);
        gauge.inc();
        StreamGuard(gauge)
    }
}

pub struct StreamGuard(IntGauge);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts every request by its route template (`/api/instances/{instanceId}`), never by the
/// raw path, so label values stay bounded whatever clients send.
pub async fn track_requests(State(metrics): State<std::sync::Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = match request.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => m.to_owned(),
        _ => "other".to_owned(),
    };
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.http_duration.with_label_values(&[&route, &method]).observe(started.elapsed().as_secs_f64());
    metrics.http_requests.with_label_values(&[&route, &method, response.status().as_str()]).inc();
    response
}
