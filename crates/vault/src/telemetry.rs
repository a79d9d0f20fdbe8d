//! Numbers and health that components report and `/metrics` and `/readyz` show. Kept in the
//! vault so that the relay, ingestion and the API report through one place without depending on
//! each other. Labels and values never carry secrets.
//!
//! Metrics are kept by the `metrics` crate's Prometheus recorder (one per `Telemetry`, never a
//! process-wide one: every vault in a test process counts for itself). Guarantee: a hot path
//! holds a handle ([`Telemetry::counter`], [`Telemetry::histogram`]) registered once, and
//! recording through it is an atomic add — no lock, no allocation. The setters that take a
//! name and a label string (`add_counter`, `set_gauge`, …) look the metric up on each call and
//! are for paths that run at most a few times per job or batch.

use std::collections::BTreeMap;
use std::fmt;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use parking_lot::Mutex;

/// Upper bounds (seconds) of every histogram's buckets: request latencies from 1 ms to 10 s.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// What the recorder is told about every registration (it does not filter on it).
static METADATA: Metadata<'static> = Metadata::new("keyledger", Level::INFO, None);

pub struct Telemetry {
    recorder: PrometheusRecorder,
    exposition: PrometheusHandle,
    components: Mutex<BTreeMap<String, ComponentHealth>>,
    collectors: Mutex<Vec<Collector>>,
}

/// Reports current values (read from their source) whenever metrics or readiness are read, for
/// sources that cannot push: the log's storage health.
type Collector = Box<dyn Fn(&Telemetry) + Send + Sync>;

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("components", &*self.components.lock())
            .field("collectors", &self.collectors.lock().len())
            .finish_non_exhaustive()
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS)
            .expect("LATENCY_BUCKETS is not empty")
            .build_recorder();
        Telemetry {
            exposition: recorder.handle(),
            recorder,
            components: Mutex::default(),
            collectors: Mutex::default(),
        }
    }
}

/// Whether a component can do its job right now, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentHealth {
    pub ready: bool,
    pub detail: String,
}

impl Telemetry {
    /// A counter handle to keep: adding through it takes no lock and allocates nothing.
    pub fn counter(&self, key: Key, help: &'static str) -> Counter {
        self.describe(key.name_shared(), help, Recorder::describe_counter);
        self.recorder.register_counter(&key, &METADATA)
    }

    /// A histogram handle to keep (buckets: [`LATENCY_BUCKETS`]). Samples wait in the handle
    /// until [`Telemetry::render`] or [`Telemetry::run_upkeep`] folds them into the buckets.
    pub fn histogram(&self, key: Key, help: &'static str) -> Histogram {
        self.describe(key.name_shared(), help, Recorder::describe_histogram);
        self.recorder.register_histogram(&key, &METADATA)
    }

    /// Folds the samples histograms hold into their buckets, so memory stays bounded between
    /// scrapes.
    pub fn run_upkeep(&self) {
        self.exposition.run_upkeep();
    }

    /// Sets a gauge. `labels` is Prometheus label syntax without braces: `reason="expired"`.
    pub fn set_gauge(&self, name: &str, labels: &str, help: &str, value: f64) {
        self.gauge_named(name, labels, help).set(value);
    }

    /// Sets a counter to a total kept elsewhere.
    pub fn set_counter(&self, name: &str, labels: &str, help: &str, value: f64) {
        self.counter_named(name, labels, help)
            .absolute(whole_count(value));
    }

    /// Adds to a counter (`by` is a whole number; 0 makes the counter appear).
    pub fn add_counter(&self, name: &str, labels: &str, help: &str, by: f64) {
        self.counter_named(name, labels, help)
            .increment(whole_count(by));
    }

    /// Runs `collector` before every [`Telemetry::render`] and [`Telemetry::components`]. It
    /// reports through the setters; it must not call `render` or `components`.
    pub fn add_collector(&self, collector: impl Fn(&Telemetry) + Send + Sync + 'static) {
        self.collectors.lock().push(Box::new(collector));
    }

    /// The value of one series as the exposition shows it; `labels` as recorded. Reads the
    /// whole exposition: for tests and diagnostics, not for hot paths.
    pub fn value(&self, name: &str, labels: &str) -> Option<f64> {
        let series = if labels.is_empty() {
            name.to_owned()
        } else {
            format!("{name}{{{labels}}}")
        };
        self.render().lines().find_map(|line| {
            let value = line.strip_prefix(series.as_str())?.strip_prefix(' ')?;
            value.parse().ok()
        })
    }

    pub fn set_component(&self, name: &str, ready: bool, detail: impl Into<String>) {
        self.components.lock().insert(
            name.to_owned(),
            ComponentHealth {
                ready,
                detail: detail.into(),
            },
        );
    }

    pub fn components(&self) -> BTreeMap<String, ComponentHealth> {
        self.collect();
        self.components.lock().clone()
    }

    /// The Prometheus text exposition of everything reported.
    pub fn render(&self) -> String {
        self.collect();
        self.exposition.render()
    }

    fn collect(&self) {
        for collector in self.collectors.lock().iter() {
            collector(self);
        }
    }

    fn counter_named(&self, name: &str, labels: &str, help: &str) -> Counter {
        let key = Key::from_parts(name.to_owned(), parse_labels(labels));
        if !help.is_empty() {
            self.describe(key.name_shared(), help, Recorder::describe_counter);
        }
        self.recorder.register_counter(&key, &METADATA)
    }

    fn gauge_named(&self, name: &str, labels: &str, help: &str) -> Gauge {
        let key = Key::from_parts(name.to_owned(), parse_labels(labels));
        if !help.is_empty() {
            self.describe(key.name_shared(), help, Recorder::describe_gauge);
        }
        self.recorder.register_gauge(&key, &METADATA)
    }

    fn describe(
        &self,
        name: KeyName,
        help: &str,
        describe: fn(&PrometheusRecorder, KeyName, Option<metrics::Unit>, metrics::SharedString),
    ) {
        // The recorder keeps the first description of a name and ignores later ones.
        describe(&self.recorder, name, None, help.to_owned().into());
    }
}

/// Counters count whole things; a fraction or a negative number is a caller's bug, not data.
fn whole_count(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        value as u64
    } else {
        0
    }
}

/// `method="GET",route="/v1/keys"` as labels. Values are ours (fixed words, route templates),
/// so the parser only needs to honour `\"` and `\\` escapes.
fn parse_labels(text: &str) -> Vec<Label> {
    let mut labels = Vec::new();
    let mut rest = text.trim();
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((at, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = at + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.push(Label::new(name.trim().to_owned(), value));
        rest = after[end..].trim_start_matches(',').trim();
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_through_the_exposition() {
        let telemetry = Telemetry::default();
        let labels = r#"method="GET",route="/v1/a,b",status="200""#;
        telemetry.add_counter("requests_total", labels, "Requests.", 2.0);
        telemetry.add_counter("requests_total", labels, "Requests.", 1.0);
        telemetry.set_gauge("depth", "", "Depth.", 1.5);
        assert_eq!(telemetry.value("requests_total", labels), Some(3.0));
        assert_eq!(telemetry.value("depth", ""), Some(1.5));
        assert_eq!(telemetry.value("depth", r#"x="y""#), None);
        let text = telemetry.render();
        assert!(text.contains("# HELP requests_total Requests."), "{text}");
        assert!(text.contains("# TYPE depth gauge"), "{text}");
    }

    #[test]
    fn kept_handles_count_without_looking_up() {
        let telemetry = Telemetry::default();
        let counter = telemetry.counter(Key::from_static_name("commits_total"), "Commits.");
        counter.increment(4);
        let latency = telemetry.histogram(
            Key::from_parts("latency_seconds", vec![Label::new("route", "/x")]),
            "Latency.",
        );
        latency.record(0.003);
        telemetry.run_upkeep();
        assert_eq!(telemetry.value("commits_total", ""), Some(4.0));
        assert_eq!(
            telemetry.value("latency_seconds_bucket", r#"route="/x",le="0.005""#),
            Some(1.0)
        );
        assert_eq!(
            telemetry.value("latency_seconds_count", r#"route="/x""#),
            Some(1.0)
        );
    }
}
