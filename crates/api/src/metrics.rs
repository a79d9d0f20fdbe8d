//! HTTP metrics (requests by route and status, latency histogram, refusals by reason) and the
//! `/metrics` exposition, which adds the log and projection gauges and everything the vault's
//! components report through its telemetry. Labels are route templates and fixed words: never
//! ids, never secrets.
//!
//! Kept by the same metrics library as the vault's telemetry. A request records through
//! handles its thread found before (one per route, method and status): after a series' first
//! request, recording takes no allocation and no shared lock.

use std::collections::BTreeMap;
use std::time::Duration;

use keyledger_vault::metrics::{Counter, Histogram, Key, Label};
use keyledger_vault::{PerThread, Telemetry, Vault};

const REQUESTS: &str = "keyledger_http_requests_total";
const LATENCY: &str = "keyledger_http_request_duration_seconds";
const REFUSALS: &str = "keyledger_http_refusals_total";

/// Latency samples a thread part records between foldings into the histogram buckets: bounds
/// the memory they take when nobody scrapes `/metrics`.
const SAMPLES_BETWEEN_UPKEEPS: u32 = 4096;

#[derive(Debug, Default)]
pub struct HttpMetrics {
    telemetry: Telemetry,
    handles: PerThread<Handles>,
}

/// One thread part's handles, found by reference: only a series' first request allocates.
#[derive(Debug, Default)]
struct Handles {
    routes: BTreeMap<String, RouteHandles>,
    refusals: BTreeMap<&'static str, Counter>,
    samples_since_upkeep: u32,
}

#[derive(Debug)]
struct RouteHandles {
    /// (method, status) -> counter: a handful per route, so a short list beats a map.
    requests: Vec<(String, u16, Counter)>,
    latency: Histogram,
}

impl HttpMetrics {
    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let upkeep = {
            let mut handles = self.handles.mine();
            let handles = &mut *handles;
            // (`get_mut` then `entry` in one match does not pass the borrow checker.)
            if !handles.routes.contains_key(route) {
                let latency = self.telemetry.histogram(
                    Key::from_parts(LATENCY, vec![Label::new("route", route.to_owned())]),
                    "Time to answer HTTP requests, by route template.",
                );
                let requests = Vec::new();
                handles
                    .routes
                    .insert(route.to_owned(), RouteHandles { requests, latency });
            }
            let route_handles = handles.routes.get_mut(route).expect("inserted above");
            route_handles.latency.record(elapsed.as_secs_f64());
            self.request_counter(&mut route_handles.requests, method, route, status)
                .increment(1);
            handles.samples_since_upkeep += 1;
            let due = handles.samples_since_upkeep >= SAMPLES_BETWEEN_UPKEEPS;
            if due {
                handles.samples_since_upkeep = 0;
            }
            due
        };
        if upkeep {
            self.telemetry.run_upkeep();
        }
    }

    /// Counts a refused request: `reason` is a fixed word such as `expired` or `permission_denied`.
    pub fn refusal(&self, reason: &'static str) {
        self.handles
            .mine()
            .refusals
            .entry(reason)
            .or_insert_with(|| {
                self.telemetry.counter(
                    Key::from_parts(REFUSALS, vec![Label::new("reason", reason)]),
                    "Requests refused, by reason (authentication, permission, throttling).",
                )
            })
            .increment(1);
    }

    pub fn refusals(&self, reason: &str) -> u64 {
        self.telemetry
            .value(REFUSALS, &format!("reason=\"{reason}\""))
            .map_or(0, |count| count as u64)
    }

    /// The whole Prometheus text exposition.
    pub fn render(&self, vault: &Vault) -> String {
        let (head, _) = vault.log().head();
        let applied = vault.applied_seq();
        let gauges = [
            (
                "keyledger_log_head_seq",
                "Sequence number of the last event committed to the log.",
                head as f64,
            ),
            (
                "keyledger_projection_applied_seq",
                "Sequence number of the last event the projection applied.",
                applied as f64,
            ),
            (
                "keyledger_projection_lag_events",
                "Events committed to the log but not yet applied to the projection.",
                head.saturating_sub(applied) as f64,
            ),
            (
                "keyledger_log_queue_depth",
                "Appends waiting for the log writer.",
                vault.log().queue_depth() as f64,
            ),
            (
                "keyledger_vault_broken",
                "1 when the vault cannot serve correctly (see /readyz).",
                f64::from(u8::from(vault.broken().is_some())),
            ),
        ];
        for (name, help, value) in gauges {
            self.telemetry.set_gauge(name, "", help, value);
        }
        let mut out = self.telemetry.render();
        out.push_str(&vault.telemetry().render());
        out
    }

    fn request_counter<'a>(
        &self,
        requests: &'a mut Vec<(String, u16, Counter)>,
        method: &str,
        route: &str,
        status: u16,
    ) -> &'a Counter {
        let at = match requests
            .iter()
            .position(|(m, s, _)| *s == status && m == method)
        {
            Some(at) => at,
            None => {
                let counter = self.telemetry.counter(
                    Key::from_parts(
                        REQUESTS,
                        vec![
                            Label::new("method", method.to_owned()),
                            Label::new("route", route.to_owned()),
                            Label::new("status", status.to_string()),
                        ],
                    ),
                    "HTTP requests by method, route template and status.",
                );
                requests.push((method.to_owned(), status, counter));
                requests.len() - 1
            }
        };
        &requests[at].2
    }
}
