//! Numbers and health that components report and `/metrics` and `/readyz` show. Kept in the
//! vault so that the relay, ingestion and the API report through one place without depending on
//! each other. Labels and values never carry secrets.

use std::collections::BTreeMap;
use std::fmt::{self, Write};
use std::sync::{Mutex, PoisonError};

#[derive(Debug, Default)]
pub struct Telemetry {
    inner: Mutex<Registry>,
    collectors: Collectors,
}

/// Report current values (read from their source) whenever metrics or readiness are read, for
/// sources that cannot push: the log's storage health.
#[derive(Default)]
struct Collectors(Mutex<Vec<Collector>>);

type Collector = Box<dyn Fn(&Telemetry) + Send + Sync>;

impl fmt::Debug for Collectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.lock().unwrap_or_else(PoisonError::into_inner).len();
        write!(f, "{count} collectors")
    }
}

#[derive(Debug, Default)]
struct Registry {
    help: BTreeMap<String, (&'static str, String)>,
    values: BTreeMap<(String, String), f64>,
    components: BTreeMap<String, ComponentHealth>,
}

/// Whether a component can do its job right now, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentHealth {
    pub ready: bool,
    pub detail: String,
}

impl Telemetry {
    fn with<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        f(&mut self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Sets a gauge. `labels` is Prometheus label syntax without braces: `reason="expired"`.
    pub fn set_gauge(&self, name: &str, labels: &str, help: &str, value: f64) {
        self.with(|r| {
            r.help
                .entry(name.to_owned())
                .or_insert(("gauge", help.to_owned()));
            r.values.insert((name.to_owned(), labels.to_owned()), value);
        });
    }

    /// Sets a counter to a total kept elsewhere.
    pub fn set_counter(&self, name: &str, labels: &str, help: &str, value: f64) {
        self.with(|r| {
            r.help
                .entry(name.to_owned())
                .or_insert(("counter", help.to_owned()));
            r.values.insert((name.to_owned(), labels.to_owned()), value);
        });
    }

    /// Runs `collector` before every [`Telemetry::render`] and [`Telemetry::components`]. It
    /// reports through the setters; it must not call `render` or `components`.
    pub fn add_collector(&self, collector: impl Fn(&Telemetry) + Send + Sync + 'static) {
        self.collectors
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(collector));
    }

    fn collect(&self) {
        let collectors = self
            .collectors
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for collector in collectors.iter() {
            collector(self);
        }
    }

    /// Adds to a counter.
    pub fn add_counter(&self, name: &str, labels: &str, help: &str, by: f64) {
        self.with(|r| {
            r.help
                .entry(name.to_owned())
                .or_insert(("counter", help.to_owned()));
            *r.values
                .entry((name.to_owned(), labels.to_owned()))
                .or_insert(0.0) += by;
        });
    }

    pub fn value(&self, name: &str, labels: &str) -> Option<f64> {
        self.with(|r| r.values.get(&(name.to_owned(), labels.to_owned())).copied())
    }

    pub fn set_component(&self, name: &str, ready: bool, detail: impl Into<String>) {
        self.with(|r| {
            r.components.insert(
                name.to_owned(),
                ComponentHealth {
                    ready,
                    detail: detail.into(),
                },
            );
        });
    }

    pub fn components(&self) -> BTreeMap<String, ComponentHealth> {
        self.collect();
        self.with(|r| r.components.clone())
    }

    /// The Prometheus text exposition of everything reported.
    pub fn render(&self) -> String {
        self.collect();
        self.with(|r| {
            let mut out = String::new();
            let mut last = "";
            for ((name, labels), value) in &r.values {
                if name != last {
                    if let Some((kind, help)) = r.help.get(name) {
                        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                    }
                    last = name;
                }
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {value}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {value}");
                }
            }
            out
        })
    }
}
