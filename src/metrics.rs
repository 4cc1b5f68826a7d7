//! Prometheus metrics (`GET /metrics`), kept with `prometheus-client`.
//!
//! Counters are moved as things happen: the dialer's hooks (`call_started`, `call_answered`,
//! `call_ended`) and the HTTP middleware (`http_request`). Gauges of state that lives elsewhere
//! (live calls and each task's pace in the dialer, the retry queue and the webhook outbox in the
//! database) are read by the scrape and handed to [`Metrics::render`] as a [`Snapshot`].
//!
//! Series of a task stay until the process restarts, also after the task is deleted; a task's
//! `outcall_task_caps` series shows only while the task is calling.

use std::sync::{atomic::AtomicU64, Arc, Mutex, PoisonError};

use prometheus_client::{
    encoding::{text, EncodeLabelSet},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

use crate::domain::HangupCause;

/// The content type of the OpenMetrics text format (what Prometheus asks for first).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of Prometheus's classic text format (for clients that do not ask for
/// OpenMetrics).
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The route label of a request no route matched: never the raw path, so the label's values
/// stay a fixed set.
pub const UNMATCHED_ROUTE: &str = "unmatched";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    task: i64,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    task: i64,
    cause: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: &'static str,
    status: u16,
}

type Seconds = fn() -> Histogram;

/// Request durations from 1 ms to about 16 s, doubling.
fn request_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The exposition formats `/metrics` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    PrometheusText,
}

impl Format {
    /// OpenMetrics when the client's `Accept` names it (Prometheus does), else the classic text.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::PrometheusText,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Format::PrometheusText => PROMETHEUS_TEXT_CONTENT_TYPE,
        }
    }
}

/// What a scrape reads from the dialer and the database.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Calls alive now, all tasks.
    pub live_calls: i64,
    /// Each calling task's calls started in the last 10 s ÷ 10.
    pub task_caps: Vec<(i64, f64)>,
    /// Numbers waiting for a retry or the per-day cap.
    pub retry_queue: i64,
    /// Webhook deliveries not made yet.
    pub webhook_outbox: i64,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    calls_started: Family<TaskLabels, Counter>,
    calls_answered: Family<TaskLabels, Counter>,
    calls_ended: Family<CauseLabels, Counter>,
    http_requests: Family<RouteLabels, Histogram, Seconds>,
    live_calls: Gauge,
    task_caps: Family<TaskLabels, Gauge<f64, AtomicU64>>,
    retry_queue: Gauge,
    webhook_outbox: Gauge,
    /// One scrape at a time sets the gauges and encodes them, so none sees another's values.
    scrape: Mutex<()>,
}

/// The process's metrics; clones share them.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("outcall");
        let calls_started = Family::<TaskLabels, Counter>::default();
        let calls_answered = Family::<TaskLabels, Counter>::default();
        let calls_ended = Family::<CauseLabels, Counter>::default();
        let http_requests = Family::<RouteLabels, Histogram, Seconds>::new_with_constructor(
            request_duration_histogram as Seconds,
        );
        let live_calls = Gauge::default();
        let task_caps = Family::<TaskLabels, Gauge<f64, AtomicU64>>::default();
        let retry_queue = Gauge::default();
        let webhook_outbox = Gauge::default();
        // Counters are registered without `_total`: the encoder appends it.
        registry.register(
            "calls_started",
            "Calls placed, by task",
            calls_started.clone(),
        );
        registry.register(
            "calls_answered",
            "Calls answered, by task",
            calls_answered.clone(),
        );
        registry.register(
            "calls_ended",
            "Calls ended, by task and hangup cause",
            calls_ended.clone(),
        );
        registry.register(
            "live_calls",
            "Calls alive now, all tasks",
            live_calls.clone(),
        );
        registry.register(
            "task_caps",
            "Calls started per second over the last 10 s, by task (tasks calling now)",
            task_caps.clone(),
        );
        registry.register(
            "retry_queue",
            "Numbers waiting for a retry or for the per-day cap",
            retry_queue.clone(),
        );
        registry.register(
            "webhook_outbox",
            "Result webhooks waiting to be delivered",
            webhook_outbox.clone(),
        );
        // The unit is in the name only: a `# UNIT` line on a histogram is refused by some
        // OpenMetrics parsers.
        registry.register(
            "http_request_duration_seconds",
            "HTTP requests until the response's head, by route pattern, method and status",
            http_requests.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                calls_started,
                calls_answered,
                calls_ended,
                http_requests,
                live_calls,
                task_caps,
                retry_queue,
                webhook_outbox,
                scrape: Mutex::new(()),
            }),
        }
    }

    /// A call of `task_id` was placed.
    pub fn call_started(&self, task_id: i64) {
        self.inner
            .calls_started
            .get_or_create(&TaskLabels { task: task_id })
            .inc();
    }

    /// A call of `task_id` was answered.
    pub fn call_answered(&self, task_id: i64) {
        self.inner
            .calls_answered
            .get_or_create(&TaskLabels { task: task_id })
            .inc();
    }

    /// A call of `task_id` ended with `cause`.
    pub fn call_ended(&self, task_id: i64, cause: HangupCause) {
        self.inner
            .calls_ended
            .get_or_create(&CauseLabels {
                task: task_id,
                cause: cause.as_str(),
            })
            .inc();
    }

    /// An HTTP request was answered: `route` is the matched route's pattern (or
    /// [`UNMATCHED_ROUTE`]), never the raw path.
    pub fn http_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.inner
            .http_requests
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
                method: method_label(method),
                status,
            })
            .observe(seconds);
    }

    /// Sets the scrape-time gauges from `snapshot` and writes every metric in `format`.
    pub fn render(&self, snapshot: &Snapshot, format: Format) -> String {
        let inner = &self.inner;
        let _one_scrape = inner.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        inner.live_calls.set(snapshot.live_calls);
        inner.retry_queue.set(snapshot.retry_queue);
        inner.webhook_outbox.set(snapshot.webhook_outbox);
        // Only the tasks calling now: a task that went quiet loses its series.
        inner.task_caps.clear();
        for (task, caps) in &snapshot.task_caps {
            inner
                .task_caps
                .get_or_create(&TaskLabels { task: *task })
                .set(*caps);
        }
        let mut body = String::new();
        let written = match format {
            Format::OpenMetrics => text::encode(&mut body, &inner.registry),
            Format::PrometheusText => {
                prometheus_client::encoding::prometheus_text::encode(&mut body, &inner.registry)
            }
        };
        written.expect("writing to a String cannot fail");
        body
    }
}

/// The method label: the standard methods by name, any other as `OTHER`, so that a client
/// cannot add series by inventing methods.
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == method)
        .unwrap_or("OTHER")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_histograms_are_written_with_their_labels() {
        let metrics = Metrics::new();
        metrics.call_started(3);
        metrics.call_started(3);
        metrics.call_answered(3);
        metrics.call_ended(3, HangupCause::USER_BUSY);
        metrics.http_request("/api/out_call_tasks/{id}", "GET", 200, 0.003);
        metrics.http_request(UNMATCHED_ROUTE, "BREW", 404, 0.001);
        let snapshot = Snapshot {
            live_calls: 4,
            task_caps: vec![(3, 2.5)],
            retry_queue: 7,
            webhook_outbox: 1,
        };
        let text = metrics.render(&snapshot, Format::OpenMetrics);
        for line in [
            "outcall_calls_started_total{task=\"3\"} 2",
            "outcall_calls_answered_total{task=\"3\"} 1",
            "outcall_calls_ended_total{task=\"3\",cause=\"USER_BUSY\"} 1",
            "outcall_live_calls 4",
            "outcall_task_caps{task=\"3\"} 2.5",
            "outcall_retry_queue 7",
            "outcall_webhook_outbox 1",
            "outcall_http_request_duration_seconds_count{route=\"/api/out_call_tasks/{id}\",method=\"GET\",status=\"200\"} 1",
            "outcall_http_request_duration_seconds_count{route=\"unmatched\",method=\"OTHER\",status=\"404\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        // A task that stopped calling loses its pace series at the next scrape.
        let quiet = metrics.render(&Snapshot::default(), Format::PrometheusText);
        assert!(!quiet.contains("outcall_task_caps{"), "{quiet}");
        assert!(quiet.contains("outcall_calls_started_total{task=\"3\"} 2"));
    }

    #[test]
    fn openmetrics_only_when_asked_for() {
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("text/plain")),
            Format::PrometheusText
        );
        assert_eq!(Format::negotiate(None), Format::PrometheusText);
    }
}
