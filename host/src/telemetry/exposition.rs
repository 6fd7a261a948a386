//! The Prometheus text exposition format (version 0.0.4) of every pipeline's counters, written
//! at scrape time from the engine's atomics.
//!
//! Why not a metrics crate: `prometheus-client` writes OpenMetrics, which Debian's `promtool
//! check metrics` (Prometheus 2.42) rejects, and the engine's counters are plain atomics that
//! tests read directly; a second set of counters would only drift. This writer is checked by
//! `promtool` in `tests/tests/admin.rs`.

use std::fmt::Write as _;

use super::Inventory;
use crate::engine::{
    DEAD_LETTER_SINK, ErrorClass, HistogramSnapshot, PipelineState, PipelineStats,
};

/// Reads one counter of a pipeline.
type ReadCounter = fn(&PipelineStats) -> u64;

/// The exposition's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Render every pipeline's metrics.
pub fn render(inventory: &Inventory) -> String {
    let pipelines = &inventory.all()[..];
    let mut out = Exposition::default();
    let get = PipelineStats::get;

    out.family(
        "sluice_messages_in_total",
        "counter",
        "Deliveries pulled from the source.",
    );
    for p in pipelines {
        out.sample(
            "",
            &[("pipeline", &p.name), ("source", &p.source)],
            get(&p.stats.received),
        );
    }
    out.family(
        "sluice_messages_out_total",
        "counter",
        "Outputs confirmed by a sink.",
    );
    for p in pipelines {
        for (sink, _) in &p.sinks {
            let n = get(&p.stats.sink(sink).outputs);
            out.sample("", &[("pipeline", &p.name), ("sink", sink)], n);
        }
    }
    let per_pipeline: [(&str, &str, ReadCounter); 5] = [
        (
            "sluice_messages_acked_total",
            "Deliveries delivered (every output confirmed by its sink) and acknowledged to the source; filtered, discarded and dead-lettered ones are acknowledged too, and counted apart.",
            |s| PipelineStats::get(&s.acked),
        ),
        (
            "sluice_messages_filtered_total",
            "Deliveries the handlers produced no output for.",
            |s| PipelineStats::get(&s.filtered),
        ),
        (
            "sluice_messages_discarded_total",
            "Invalid deliveries discarded by policy.",
            |s| PipelineStats::get(&s.discarded),
        ),
        (
            "sluice_retries_total",
            "Handler retries after transient errors.",
            |s| PipelineStats::get(&s.retries),
        ),
        (
            "sluice_nacks_total",
            "Deliveries handed back to the source for redelivery.",
            |s| PipelineStats::get(&s.nacked),
        ),
    ];
    for (name, help, read) in per_pipeline {
        out.family(name, "counter", help);
        for p in pipelines {
            out.sample("", &[("pipeline", &p.name)], read(&p.stats));
        }
    }
    out.family(
        "sluice_dead_lettered_total",
        "counter",
        "Deliveries confirmed in the dead-letter sink, by reason (error class).",
    );
    for p in pipelines {
        for class in ErrorClass::ALL {
            let n = get(&p.stats.dead_lettered_by_class[class.index()]);
            out.sample("", &[("pipeline", &p.name), ("reason", class.as_str())], n);
        }
    }
    out.family(
        "sluice_handler_errors_total",
        "counter",
        "Messages a handler failed, by error class.",
    );
    for p in pipelines {
        for (handler, h) in p.stats.handlers() {
            for class in ErrorClass::ALL {
                let n = get(&h.errors[class.index()]);
                let labels = [
                    ("pipeline", p.name.as_str()),
                    ("handler", &handler),
                    ("class", class.as_str()),
                ];
                out.sample("", &labels, n);
            }
        }
    }
    out.family(
        "sluice_handler_traps_total",
        "counter",
        "Handler calls that trapped.",
    );
    for p in pipelines {
        for (handler, h) in p.stats.handlers() {
            let n = get(&h.errors[ErrorClass::Trap.index()]);
            out.sample("", &[("pipeline", &p.name), ("handler", &handler)], n);
        }
    }
    out.family(
        "sluice_sink_errors_total",
        "counter",
        "Sink writes that failed (each is retried).",
    );
    for p in pipelines {
        for (sink, _) in &p.sinks {
            let n = get(&p.stats.sink(sink).errors);
            out.sample("", &[("pipeline", &p.name), ("sink", sink)], n);
        }
        // The dead-letter sink's failures (they turn into nacks and redeliveries).
        let n = get(&p.stats.sink(DEAD_LETTER_SINK).errors);
        out.sample("", &[("pipeline", &p.name), ("sink", DEAD_LETTER_SINK)], n);
    }
    out.family(
        "sluice_sink_rejected_total",
        "counter",
        "Outputs a sink refused for good (their deliveries were dead-lettered as sink-rejected).",
    );
    for p in pipelines {
        for (sink, _) in &p.sinks {
            let n = get(&p.stats.sink(sink).rejected);
            out.sample("", &[("pipeline", &p.name), ("sink", sink)], n);
        }
        let n = get(&p.stats.sink(DEAD_LETTER_SINK).rejected);
        out.sample("", &[("pipeline", &p.name), ("sink", DEAD_LETTER_SINK)], n);
    }
    out.family(
        "sluice_source_errors_total",
        "counter",
        "Pulls from the source that failed.",
    );
    for p in pipelines {
        let n = get(&p.stats.source_errors);
        out.sample("", &[("pipeline", &p.name), ("source", &p.source)], n);
    }
    out.family(
        "sluice_rate_limit_wait_seconds_total",
        "counter",
        "Time spent waiting for the pipeline's rate limit.",
    );
    for p in pipelines {
        let secs = get(&p.stats.rate_limit_wait_ns) as f64 / 1e9;
        out.sample("", &[("pipeline", &p.name)], secs);
    }
    out.family(
        "sluice_handler_counter_total",
        "counter",
        "Counters handlers keep through sluice:plugin/counters.",
    );
    for p in pipelines {
        for plugin in &p.plugins {
            let mut counters: Vec<_> = plugin.counters().into_iter().collect();
            counters.sort();
            for (counter, n) in counters {
                let labels = [
                    ("pipeline", p.name.as_str()),
                    ("handler", plugin.name()),
                    ("counter", &counter),
                ];
                out.sample("", &labels, n);
            }
        }
    }
    let guarded: [(&str, &str, GuardRead); 3] = [
        (
            "sluice_handler_log_lines_dropped_total",
            "Handler log lines dropped for going over limits.log_lines_per_second.",
            |g| g.log_lines_dropped,
        ),
        (
            "sluice_handler_counters_refused_total",
            "Counter updates refused: a name over 128 bytes, or past limits.max_counters names.",
            |g| g.counters_refused,
        ),
        (
            "sluice_handler_batches_isolated_total",
            "Batch calls that failed as a whole (trap, timeout, wrong result count, malformed or over-limit packed result) and were re-run one message at a time.",
            |g| g.batches_isolated,
        ),
    ];
    for (name, help, read) in guarded {
        out.family(name, "counter", help);
        for p in pipelines {
            for plugin in &p.plugins {
                let labels = [("pipeline", p.name.as_str()), ("handler", plugin.name())];
                out.sample("", &labels, read(&plugin.guard_counts()));
            }
        }
    }
    out.family(
        "sluice_plugin_swaps_total",
        "counter",
        "New plugin versions swapped in while the pipeline ran.",
    );
    for p in pipelines {
        for plugin in &p.plugins {
            let labels = [("pipeline", p.name.as_str()), ("handler", plugin.name())];
            out.sample("", &labels, plugin.swaps());
        }
    }
    out.family(
        "sluice_reloads_total",
        "counter",
        "Reloads of pipeline files and plugins, by result (refused: the running version stayed).",
    );
    let reloads = inventory.reloads();
    out.sample(
        "",
        &[("result", "applied")],
        PipelineStats::get(&reloads.applied),
    );
    out.sample(
        "",
        &[("result", "refused")],
        PipelineStats::get(&reloads.refused),
    );

    out.family(
        "sluice_in_flight",
        "gauge",
        "Deliveries pulled and not yet settled.",
    );
    for p in pipelines {
        out.sample("", &[("pipeline", &p.name)], get(&p.stats.in_flight));
    }
    out.family(
        "sluice_consumer_lag",
        "gauge",
        "Messages waiting in the broker for this pipeline, where the broker reports it.",
    );
    for p in pipelines {
        if let Some(lag) = p.stats.lag() {
            out.sample("", &[("pipeline", &p.name), ("source", &p.source)], lag);
        }
    }
    out.family(
        "sluice_consumer_lag_read_timestamp_seconds",
        "gauge",
        "When sluice_consumer_lag was last read from the broker (Unix time): it is read every lag_interval_ms of the source.",
    );
    for p in pipelines {
        if let Some((_, read_ms)) = p.stats.lag_read() {
            out.sample(
                "",
                &[("pipeline", &p.name), ("source", &p.source)],
                read_ms as f64 / 1000.0,
            );
        }
    }
    out.family(
        "sluice_pipeline_up",
        "gauge",
        "1 while the pipeline runs (or is paused).",
    );
    for p in pipelines {
        let up = matches!(
            p.stats.state(),
            PipelineState::Running | PipelineState::Paused
        );
        out.sample("", &[("pipeline", &p.name)], u64::from(up));
    }
    out.family(
        "sluice_pipeline_paused",
        "gauge",
        "1 while an operator has paused the pipeline.",
    );
    for p in pipelines {
        out.sample("", &[("pipeline", &p.name)], u64::from(p.stats.is_paused()));
    }
    out.family(
        "sluice_sink_breaker_open",
        "gauge",
        "1 while sink writes keep failing and the pipeline pulls only probes.",
    );
    for p in pipelines {
        out.sample(
            "",
            &[("pipeline", &p.name)],
            u64::from(p.stats.breaker_open()),
        );
    }
    out.family(
        "sluice_sink_breaker_probes_total",
        "counter",
        "Batches pulled as probes while the sink breaker was open.",
    );
    for p in pipelines {
        out.sample("", &[("pipeline", &p.name)], get(&p.stats.breaker_probes));
    }
    out.family(
        "sluice_plugin_info",
        "gauge",
        "The handlers loaded, with their content hash.",
    );
    for p in pipelines {
        for plugin in &p.plugins {
            let version = plugin.version().unwrap_or_default();
            let sha256 = plugin.sha256();
            let labels = [
                ("pipeline", p.name.as_str()),
                ("handler", plugin.name()),
                ("sha256", &sha256),
                ("version", &version),
            ];
            out.sample("", &labels, 1u64);
        }
    }

    out.family(
        "sluice_handler_duration_seconds",
        "histogram",
        "One handler call (a batch of messages).",
    );
    for p in pipelines {
        for (handler, h) in p.stats.handlers() {
            out.histogram(
                &[("pipeline", &p.name), ("handler", &handler)],
                &h.duration.snapshot(),
            );
        }
    }
    out.family(
        "sluice_end_to_end_seconds",
        "histogram",
        "From a delivery's pull to its settlement.",
    );
    for p in pipelines {
        out.histogram(&[("pipeline", &p.name)], &p.stats.end_to_end.snapshot());
    }
    out.text
}

#[derive(Default)]
struct Exposition {
    text: String,
    family: &'static str,
}

impl Exposition {
    fn family(&mut self, name: &'static str, kind: &str, help: &str) {
        self.family = name;
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, suffix: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(self.family);
        self.text.push_str(suffix);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                self.text.push_str(key);
                self.text.push_str("=\"");
                escape_label_value(&mut self.text, value);
                self.text.push('"');
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    fn histogram(&mut self, labels: &[(&str, &str)], h: &HistogramSnapshot) {
        for (upper, n) in &h.buckets {
            let le = upper.to_string();
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample("_bucket", &with_le, n);
        }
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample("_bucket", &with_le, h.count);
        self.sample("_sum", labels, h.sum_seconds);
        self.sample("_count", labels, h.count);
    }
}

/// Label values escape `\`, `"` and newlines.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Reads one of the sandbox guards' counts.
type GuardRead = fn(&crate::plugin::GuardCounts) -> u64;

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler that counted as much as the guards let it: `limits.max_counters` names (the
    /// default, 1,000), each as long as a name may be (128 bytes), with hostile characters.
    struct Flooded;

    impl crate::telemetry::PluginView for Flooded {
        fn name(&self) -> &str {
            "flood"
        }
        fn sha256(&self) -> String {
            "0".repeat(64)
        }
        fn version(&self) -> Option<String> {
            Some("v".repeat(64))
        }
        fn counters(&self) -> std::collections::HashMap<String, u64> {
            (0..1000)
                .map(|i| (format!("{i:04}\"\n{}", "x".repeat(122)), u64::MAX))
                .collect()
        }
        fn swaps(&self) -> u64 {
            0
        }
        fn guard_counts(&self) -> crate::plugin::GuardCounts {
            crate::plugin::GuardCounts::default()
        }
    }

    /// `/metrics` stays under a stated size whatever a handler counts: about 200 bytes for each
    /// of at most 1,000 counters, so under 256 KiB per handler beside the host's own series.
    #[test]
    fn metrics_stay_bounded_whatever_a_handler_counts() {
        let inventory = Inventory::default();
        inventory.insert(crate::telemetry::PipelineEntry {
            name: "p".into(),
            source: "generate".into(),
            sinks: vec![("out".into(), "drop".into())],
            plugins: vec![std::sync::Arc::new(Flooded)],
            stats: std::sync::Arc::default(),
        });
        let text = render(&inventory);
        let series = text
            .lines()
            .filter(|l| l.starts_with("sluice_handler_counter_total"))
            .count();
        assert_eq!(series, 1000);
        assert!(
            text.len() < 256 * 1024 + 64 * 1024,
            "{} bytes of /metrics for one flooded handler",
            text.len()
        );
        assert!(
            text.lines().all(|l| !l.starts_with("x")),
            "a counter name broke a line"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        escape_label_value(&mut s, "a\"b\\c\nd");
        assert_eq!(s, r#"a\"b\\c\nd"#);
    }
}
