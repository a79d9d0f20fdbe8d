//! HTTP metrics (requests by route and status, latency histogram, refusals by reason) and the
//! `/metrics` exposition, which adds the log and projection gauges and everything the vault's
//! components report through its telemetry. Labels are route templates and fixed words: never
//! ids, never secrets.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use keyledger_vault::{PerThread, Vault};

const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Per thread: every request records here; `/metrics` adds the parts up.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    parts: PerThread<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    routes: BTreeMap<String, RouteStats>,
    refusals: BTreeMap<&'static str, u64>,
}

/// One route template's requests by method and status, and its latency histogram.
#[derive(Debug, Default)]
struct RouteStats {
    /// (method, status) -> count: a handful per route, so a short list beats a map.
    requests: Vec<(String, u16, u64)>,
    latency: Histogram,
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl HttpMetrics {
    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let mut registry = self.parts.mine();
        let stats = registry.route(route);
        stats.count(method, status, 1);
        let histogram = &mut stats.latency;
        let seconds = elapsed.as_secs_f64();
        for (slot, bound) in histogram.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *slot += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// Counts a refused request: `reason` is a fixed word such as `expired` or `permission_denied`.
    pub fn refusal(&self, reason: &'static str) {
        *self.parts.mine().refusals.entry(reason).or_insert(0) += 1;
    }

    pub fn refusals(&self, reason: &str) -> u64 {
        self.merged().refusals.get(reason).copied().unwrap_or(0)
    }

    /// The whole Prometheus text exposition.
    pub fn render(&self, vault: &Vault) -> String {
        let mut out = String::new();
        {
            let registry = self.merged();
            header(
                &mut out,
                "keyledger_http_requests_total",
                "counter",
                "HTTP requests by method, route template and status.",
            );
            for (route, stats) in &registry.routes {
                let mut requests: Vec<_> = stats.requests.iter().collect();
                requests.sort();
                for (method, status, count) in requests {
                    let _ = writeln!(
                        out,
                        "keyledger_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
                    );
                }
            }
            let name = "keyledger_http_request_duration_seconds";
            header(
                &mut out,
                name,
                "histogram",
                "Time to answer HTTP requests, by route template.",
            );
            for (route, histogram) in registry.routes.iter().map(|(r, s)| (r, &s.latency)) {
                for (bound, count) in BUCKETS.iter().zip(histogram.buckets) {
                    let _ = writeln!(
                        out,
                        "{name}_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}"
                    );
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                    histogram.count
                );
                let _ = writeln!(out, "{name}_sum{{route=\"{route}\"}} {}", histogram.sum);
                let _ = writeln!(out, "{name}_count{{route=\"{route}\"}} {}", histogram.count);
            }
            header(
                &mut out,
                "keyledger_http_refusals_total",
                "counter",
                "Requests refused, by reason (authentication, permission, throttling).",
            );
            for (reason, count) in &registry.refusals {
                let _ = writeln!(
                    out,
                    "keyledger_http_refusals_total{{reason=\"{reason}\"}} {count}"
                );
            }
        }
        let (head, _) = vault.log().head();
        let applied = vault.applied_seq();
        gauge(
            &mut out,
            "keyledger_log_head_seq",
            "Sequence number of the last event committed to the log.",
            head as f64,
        );
        gauge(
            &mut out,
            "keyledger_projection_applied_seq",
            "Sequence number of the last event the projection applied.",
            applied as f64,
        );
        gauge(
            &mut out,
            "keyledger_projection_lag_events",
            "Events committed to the log but not yet applied to the projection.",
            head.saturating_sub(applied) as f64,
        );
        gauge(
            &mut out,
            "keyledger_log_queue_depth",
            "Appends waiting for the log writer.",
            vault.log().queue_depth() as f64,
        );
        gauge(
            &mut out,
            "keyledger_vault_broken",
            "1 when the vault cannot serve correctly (see /readyz).",
            f64::from(u8::from(vault.broken().is_some())),
        );
        out.push_str(&vault.telemetry().render());
        out
    }

    /// Every part added up.
    fn merged(&self) -> Registry {
        let mut merged = Registry::default();
        for part in self.parts.each() {
            for (reason, count) in &part.refusals {
                *merged.refusals.entry(reason).or_insert(0) += count;
            }
            for (route, stats) in &part.routes {
                let into = merged.route(route);
                for (method, status, count) in &stats.requests {
                    into.count(method, *status, *count);
                }
                for (total, count) in into.latency.buckets.iter_mut().zip(stats.latency.buckets) {
                    *total += count;
                }
                into.latency.count += stats.latency.count;
                into.latency.sum += stats.latency.sum;
            }
        }
        merged
    }
}

impl Registry {
    /// Looked up by reference: only a route's first request allocates its label.
    fn route(&mut self, route: &str) -> &mut RouteStats {
        // (`get_mut` then `entry` in one match does not pass the borrow checker when returned.)
        if !self.routes.contains_key(route) {
            self.routes.insert(route.to_owned(), RouteStats::default());
        }
        self.routes.get_mut(route).expect("inserted above")
    }
}

impl RouteStats {
    fn count(&mut self, method: &str, status: u16, requests: u64) {
        match self
            .requests
            .iter_mut()
            .find(|(m, s, _)| *s == status && m == method)
        {
            Some((_, _, count)) => *count += requests,
            None => self.requests.push((method.to_owned(), status, requests)),
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}
