//! Everything a guest can make the host hold, capped: the memory and tables of an instance, the
//! counters a handler keeps, the log lines it writes, the length of a reason or a version. What a
//! cap turns away is counted ([`GuardStats`]) so that an operator sees it in `/metrics`.
//!
//! Architecture invariant: nothing a guest sends the host grows without a bound stated here or
//! in [`crate::Limits`]; the hostile-guest tests (`tests/tests/all/hostile.rs`) hold each one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use wasmtime::ResourceLimiter;

/// Most linear memories a component may define, over all its core modules. A component made by
/// any of our eight toolchains defines one or two; a language runtime split into shared libraries
/// still shares one memory.
pub const MAX_MEMORIES: u32 = 8;
/// Most tables a component may define (each core module has its own function table, and the
/// shims `wit-component` makes add a few).
pub const MAX_TABLES: u32 = 64;
/// Most core instances a component may create.
pub const MAX_CORE_INSTANCES: usize = 128;
/// Bytes one table element counts against the instance's memory budget (wasmtime keeps a
/// pointer per element).
pub const TABLE_ELEMENT_BYTES: usize = 8;
/// Longest counter name kept, in bytes; a longer name is refused (and counted).
pub const MAX_COUNTER_NAME: usize = 128;
/// Longest version a component may declare, in bytes; a longer one is cut (with a marker).
pub const MAX_VERSION_BYTES: usize = 64;
/// Longest route an output may name, in bytes.
pub const MAX_ROUTE_BYTES: usize = 256;

/// The marker that ends a string cut to its cap.
pub const CUT_MARKER: &str = "…[cut]";

/// `s` cut to at most `max` bytes on a character boundary, with [`CUT_MARKER`] when cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.saturating_sub(CUT_MARKER.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{CUT_MARKER}", &s[..end])
}

/// One memory budget for a whole instance: every linear memory and every table of every core
/// instance in the store counts against `memory_mb`, and so does their number.
pub struct InstanceBudget {
    pub max_bytes: usize,
    /// Bytes held now by all memories and tables of the store.
    pub used: usize,
    /// What the last growth allowed added, taken back if wasmtime then fails it (a memory's own
    /// declared maximum, say).
    last_added: usize,
    /// What the guest asked for when the budget refused it, to classify the trap.
    pub hit: Option<usize>,
}

impl InstanceBudget {
    pub fn new(max_bytes: usize) -> Self {
        InstanceBudget {
            max_bytes,
            used: 0,
            last_added: 0,
            hit: None,
        }
    }

    fn grow(&mut self, current: usize, desired: usize, what: &str) -> wasmtime::Result<bool> {
        let added = desired.saturating_sub(current);
        let total = self.used.saturating_add(added);
        if total > self.max_bytes {
            self.hit = Some(total);
            // An error (not `Ok(false)`) traps right here, with a reason, instead of letting the
            // guest's allocator turn the failure into a less telling abort.
            return Err(wasmtime::Error::msg(format!(
                "memory limit exceeded: growing a {what} would bring the instance to {total} bytes, the limit is {} bytes",
                self.max_bytes
            )));
        }
        self.used = total;
        self.last_added = added;
        Ok(true)
    }

    fn undo_last(&mut self) {
        self.used = self
            .used
            .saturating_sub(std::mem::take(&mut self.last_added));
    }
}

impl ResourceLimiter for InstanceBudget {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(current, desired, "linear memory")
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
            "table",
        )
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.undo_last();
        Ok(())
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.undo_last();
        Ok(())
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES as usize
    }

    fn tables(&self) -> usize {
        MAX_TABLES as usize
    }
}

/// What the guards turned away, per handler (all its instances).
#[derive(Debug, Default)]
pub struct GuardStats {
    /// Log lines over the handler's rate, not written.
    pub log_lines_dropped: AtomicU64,
    /// `counters.add` calls refused: a new name past `max_counters`, or a name too long.
    pub counters_refused: AtomicU64,
    /// Batch calls that failed as a whole, their messages then run one at a time.
    pub batches_isolated: AtomicU64,
}

/// A snapshot of [`GuardStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuardCounts {
    pub log_lines_dropped: u64,
    pub counters_refused: u64,
    pub batches_isolated: u64,
}

impl GuardStats {
    pub fn snapshot(&self) -> GuardCounts {
        GuardCounts {
            log_lines_dropped: self.log_lines_dropped.load(Ordering::Relaxed),
            counters_refused: self.counters_refused.load(Ordering::Relaxed),
            batches_isolated: self.batches_isolated.load(Ordering::Relaxed),
        }
    }
}

/// A handler's counters: at most `max` names, each at most [`MAX_COUNTER_NAME`] bytes, values
/// saturating at `u64::MAX`.
#[derive(Debug)]
pub struct Counters {
    max: usize,
    values: Mutex<HashMap<String, u64>>,
}

impl Counters {
    pub fn new(max: usize) -> Self {
        Counters {
            max,
            values: Mutex::default(),
        }
    }

    /// Add `delta` to `name`; `false` when refused.
    pub fn add(&self, name: &str, delta: u64) -> bool {
        if name.len() > MAX_COUNTER_NAME {
            return false;
        }
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = values.get_mut(name) {
            *v = v.saturating_add(delta);
            return true;
        }
        if values.len() >= self.max {
            return false;
        }
        values.insert(name.to_owned(), delta);
        true
    }

    pub fn snapshot(&self) -> HashMap<String, u64> {
        self.values
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A token bucket for a handler's log lines: `per_second` sustained, as many at once.
#[derive(Debug)]
pub struct LogRate {
    per_second: f64,
    state: Mutex<(f64, Instant)>,
}

impl LogRate {
    pub fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second);
        LogRate {
            per_second,
            state: Mutex::new((per_second, Instant::now())),
        }
    }

    /// Whether one more line may be written now.
    pub fn admit(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = &mut *state;
        let now = Instant::now();
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.per_second)
            .min(self.per_second);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A guest's log text made safe for one host log line: control characters (a newline that would
/// start a forged line, an escape sequence for a terminal) written as `\n`, `\u{1b}`, …, then cut
/// to `max` bytes.
pub fn log_text(message: &str, max: usize) -> String {
    let mut out = String::with_capacity(message.len().min(max + 8));
    for c in message.chars() {
        if out.len() > max {
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => {
                out.extend(c.escape_unicode())
            }
            c => out.push(c),
        }
    }
    if out.len() > max { cut(&out, max) } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_short_strings_and_marks_long_ones() {
        assert_eq!(cut("short", 10), "short");
        let long = "é".repeat(100);
        let c = cut(&long, 20);
        assert!(c.len() <= 20, "{c}");
        assert!(c.ends_with(CUT_MARKER));
    }

    #[test]
    fn log_text_cannot_start_a_line_or_run_past_its_cap() {
        let forged = "ok\n2026-01-01T00:00:00Z  INFO sluice: forged\r\u{1b}[2J";
        let safe = log_text(forged, 4096);
        assert!(!safe.contains('\n') && !safe.contains('\r') && !safe.contains('\u{1b}'));
        assert!(safe.contains("ok\\n2026"), "{safe}");
        let long = log_text(&"x".repeat(100_000), 4096);
        assert!(long.len() <= 4096 && long.ends_with(CUT_MARKER));
    }

    #[test]
    fn counters_saturate_and_stop_at_their_cap() {
        let c = Counters::new(2);
        assert!(c.add("a", u64::MAX));
        assert!(c.add("a", 5));
        assert_eq!(c.snapshot()["a"], u64::MAX);
        assert!(c.add("b", 1));
        assert!(!c.add("c", 1), "a third name is refused");
        assert!(c.add("b", 1), "a known name still counts");
        assert!(!c.add(&"n".repeat(MAX_COUNTER_NAME + 1), 1));
        assert_eq!(c.snapshot().len(), 2);
    }

    #[test]
    fn log_rate_admits_its_burst_then_refuses() {
        let r = LogRate::new(5);
        let admitted = (0..50).filter(|_| r.admit()).count();
        assert!((5..=6).contains(&admitted), "{admitted}");
    }

    #[test]
    fn one_budget_covers_every_memory_and_table() {
        let mut b = InstanceBudget::new(100);
        assert!(b.memory_growing(0, 60, None).unwrap());
        assert!(
            b.memory_growing(0, 60, None).is_err(),
            "a second memory counts too"
        );
        let mut b = InstanceBudget::new(100);
        assert!(b.table_growing(0, 5, None).unwrap());
        assert!(b.memory_growing(0, 50, None).unwrap());
        assert!(b.table_growing(5, 7, None).is_err());
        assert_eq!(b.hit, Some(40 + 50 + 16));
    }
}
