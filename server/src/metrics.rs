//! Prometheus metrics: what this process counts as requests pass (requests by route template and
//! status, latency, requests in flight, job stage durations) and what the database says at scrape
//! time (queue depth by priority, jobs by state, active workers, GPU-seconds), rendered in the
//! Prometheus text format (version 0.0.4) for `GET /metrics`.
//!
//! `prometheus-client` (no default features: its dependencies are `itoa`, `dtoa`, `parking_lot`
//! and a derive) rather than a hand-written exposition: it gets escaping, histogram buckets and
//! the `_total` / unit suffixes right, and speaks OpenMetrics too should a scraper want it.
//!
//! Routes are labelled by their template (`/v1/jobs/{id}`, from axum's `MatchedPath`), never the
//! raw path, whose ids would make a series per job. The database figures are the same in every
//! server process: aggregate them with `max`, not `sum`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use kiln_protocol::report::{StageReport, StageStatus};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use serde::Deserialize;
use sqlx::PgPool;

/// Request latency buckets in seconds: fine below 50 ms (the goal for `GET /v1/jobs/{id}`'s p99),
/// coarse up to the 10 s that only a stuck dependency reaches.
const REQUEST_BUCKETS: [f64; 13] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Stage duration buckets in seconds: a capture check takes seconds, training at a full preset
/// hours.
const STAGE_BUCKETS: [f64; 13] =
    [1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0];

/// The route label of a request no route matched (one series for all of them).
const UNMATCHED: &str = "unmatched";

/// Every job state and priority, so each has a series even at zero.
const JOB_STATES: [&str; 6] = ["queued", "running", "succeeded", "failed", "canceled", "expired"];
const PRIORITIES: [&str; 2] = ["standard", "rush"];

/// A worker seen within this many seconds counts as active (workers heartbeat far more often).
const ACTIVE_WORKER_SECONDS: f64 = 60.0;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PriorityLabels {
    priority: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The process's own metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: HistogramFamily<RouteLabels>,
    in_flight: Gauge,
    stages: HistogramFamily<StageLabels>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let requests = Family::<RequestLabels, Counter>::default();
        let durations: HistogramFamily<RouteLabels> = Family::new_with_constructor(|| Histogram::new(REQUEST_BUCKETS));
        let in_flight = Gauge::default();
        let stages: HistogramFamily<StageLabels> = Family::new_with_constructor(|| Histogram::new(STAGE_BUCKETS));
        let mut registry = Registry::default();
        registry.register(
            "kiln_http_requests",
            "HTTP requests answered, by method, route template and status",
            requests.clone(),
        );
        registry.register_with_unit(
            "kiln_http_request_duration",
            "Time to the response's headers, by method and route template",
            Unit::Seconds,
            durations.clone(),
        );
        registry.register("kiln_http_requests_in_flight", "HTTP requests being handled now", in_flight.clone());
        registry.register_with_unit(
            "kiln_job_stage_duration",
            "Wall-clock time of each job stage that ran, from the jobs' report.json",
            Unit::Seconds,
            stages.clone(),
        );
        Metrics { registry, requests, durations, in_flight, stages }
    }

    /// Records one answered request.
    fn record(&self, method: &'static str, route: String, status: StatusCode, elapsed: Duration) {
        self.durations.get_or_create(&RouteLabels { method, route: route.clone() }).observe(elapsed.as_secs_f64());
        self.requests.get_or_create(&RequestLabels { method, route, status: status.as_u16() }).inc();
    }

    /// Records the stage durations of a finished job from its `report.json` (kiln-job's
    /// `JobReport`): each stage that ran in the attempt (`status: finished`) with its `seconds`.
    /// Stages skipped because an earlier attempt finished them were counted by that attempt.
    pub fn observe_job(&self, report: &serde_json::Value) {
        let Some(stages) = report.get("stages").and_then(serde_json::Value::as_array) else {
            tracing::warn!("job report without stages: no stage durations recorded");
            return;
        };
        for stage in stages {
            match StageReport::deserialize(stage) {
                Ok(StageReport { stage, status: StageStatus::Finished, seconds: Some(seconds), .. }) => {
                    self.stages.get_or_create(&StageLabels { stage: stage.name() }).observe(seconds);
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "job report stage not understood: not recorded"),
            }
        }
    }

    /// The exposition: this process's metrics, then the database's figures (or
    /// `kiln_database_up 0` when they could not be read).
    pub fn render(&self, database: Option<&Snapshot>) -> Result<String, fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        prometheus_client::encoding::prometheus_text::encode(&mut text, &database_registry(database))?;
        Ok(text)
    }
}

/// The database's figures at one scrape.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// (state, priority, jobs).
    jobs: Vec<(String, String, i64)>,
    workers: i64,
    gpu_seconds: f64,
}

/// Reads the figures. These are aggregates over every organisation, for the operator: `/metrics`
/// is not a tenant's route (protect it with `KILN_METRICS_TOKEN` or keep it private).
pub async fn snapshot(db: &PgPool) -> Result<Snapshot, sqlx::Error> {
    let jobs =
        sqlx::query_as("SELECT state, priority, count(*) FROM jobs GROUP BY state, priority").fetch_all(db).await?;
    let (workers, gpu_seconds): (i64, f64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM workers WHERE last_seen > now() - make_interval(secs => $1)),
                (SELECT coalesce(sum(gpu_seconds), 0) FROM jobs)",
    )
    .bind(ACTIVE_WORKER_SECONDS)
    .fetch_one(db)
    .await?;
    Ok(Snapshot { jobs, workers, gpu_seconds })
}

/// A registry of the snapshot's values, built afresh at each scrape so nothing stale lingers.
fn database_registry(snapshot: Option<&Snapshot>) -> Registry {
    let mut registry = Registry::default();
    let up = Gauge::<i64>::default();
    up.set(i64::from(snapshot.is_some()));
    registry.register("kiln_database_up", "1 when the database figures below could be read at this scrape", up);
    let Some(snapshot) = snapshot else { return registry };
    let queued = Family::<PriorityLabels, Gauge>::default();
    let jobs = Family::<StateLabels, Gauge>::default();
    for priority in PRIORITIES {
        queued.get_or_create(&PriorityLabels { priority }).set(snapshot.count(Some("queued"), Some(priority)));
    }
    for state in JOB_STATES {
        jobs.get_or_create(&StateLabels { state }).set(snapshot.count(Some(state), None));
    }
    let workers = Gauge::<i64>::default();
    workers.set(snapshot.workers);
    let gpu_seconds = Counter::<f64, std::sync::atomic::AtomicU64>::default();
    gpu_seconds.inc_by(snapshot.gpu_seconds);
    registry.register("kiln_queue_depth", "Jobs waiting in the queue, by priority", queued);
    registry.register("kiln_jobs", "Jobs by state (the final states included)", jobs);
    registry.register("kiln_workers_active", "Workers seen in the last minute", workers);
    registry.register("kiln_gpu_seconds", "GPU-seconds metered over all jobs", gpu_seconds);
    registry
}

impl Snapshot {
    /// Jobs in `state` (any when None) with `priority` (any when None).
    fn count(&self, state: Option<&str>, priority: Option<&str>) -> i64 {
        self.jobs
            .iter()
            .filter(|(s, p, _)| state.is_none_or(|state| s == state) && priority.is_none_or(|priority| p == priority))
            .map(|(_, _, n)| n)
            .sum()
    }
}

/// The middleware counting every request by its route template; it sits outside the others so
/// their refusals (429, 413, idempotency conflicts) are counted and timed too.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| UNMATCHED.to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let _in_flight = InFlight::enter(&metrics.in_flight);
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.record(method, route, response.status(), started.elapsed());
    response
}

/// Counts a request in flight until dropped (also when the client goes away mid-request).
struct InFlight<'a>(&'a Gauge);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a Gauge) -> InFlight<'a> {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The standard methods by name, anything else as `other` (clients choose the method, and a label
/// per invented one would be theirs to multiply).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_are_counted_by_template_and_timed() {
        let metrics = Metrics::new();
        metrics.record("GET", "/v1/jobs/{id}".into(), StatusCode::OK, Duration::from_millis(3));
        metrics.record("GET", "/v1/jobs/{id}".into(), StatusCode::OK, Duration::from_millis(30));
        let text = metrics.render(None).unwrap();
        assert!(
            text.contains(r#"kiln_http_requests_total{method="GET",route="/v1/jobs/{id}",status="200"} 2"#),
            "{text}"
        );
        let bucket = |le: &str, n: u32| {
            format!(
                r#"kiln_http_request_duration_seconds_bucket{{method="GET",route="/v1/jobs/{{id}}",le="{le}"}} {n}"#
            )
        };
        assert!(text.contains(&bucket("0.005", 1)), "{text}");
        assert!(text.contains(&bucket("0.05", 2)), "{text}");
        assert!(text.contains("kiln_database_up 0"), "{text}");
    }

    #[test]
    fn stages_that_ran_are_observed_and_skipped_ones_are_not() {
        let metrics = Metrics::new();
        metrics.observe_job(&json!({"stages": [
            {"stage": "check", "status": "finished", "seconds": 2.5, "message": ""},
            {"stage": "poses", "status": "skipped", "seconds": 40.0, "message": ""},
            {"stage": "train", "status": "finished", "seconds": 700.0, "message": ""},
            {"stage": "mesh", "status": "failed", "seconds": null, "message": "no surface"},
        ]}));
        let text = metrics.render(None).unwrap();
        assert!(text.contains(r#"kiln_job_stage_duration_seconds_count{stage="check"} 1"#), "{text}");
        assert!(text.contains(r#"kiln_job_stage_duration_seconds_sum{stage="train"} 700"#), "{text}");
        assert!(!text.contains(r#"stage="poses""#), "{text}");
        assert!(!text.contains(r#"stage="mesh""#), "{text}");
    }

    #[test]
    fn the_database_figures_cover_every_state_and_priority() {
        let snapshot = Snapshot {
            jobs: vec![
                ("queued".into(), "rush".into(), 2),
                ("queued".into(), "standard".into(), 5),
                ("failed".into(), "rush".into(), 1),
            ],
            workers: 3,
            gpu_seconds: 12.5,
        };
        let text = Metrics::new().render(Some(&snapshot)).unwrap();
        for line in [
            r#"kiln_queue_depth{priority="rush"} 2"#,
            r#"kiln_queue_depth{priority="standard"} 5"#,
            r#"kiln_jobs{state="queued"} 7"#,
            r#"kiln_jobs{state="failed"} 1"#,
            r#"kiln_jobs{state="expired"} 0"#,
            "kiln_workers_active 3",
            "kiln_gpu_seconds_total 12.5",
            "kiln_database_up 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
