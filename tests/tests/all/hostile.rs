//! Hostile handlers (`sluice_tests::hostile`: WebAssembly text against `wit/v0.1`, no SDK) against
//! the sandbox: for each attack, the host's peak memory stays within a stated bound, only the
//! culprit fails (with the right class), and every good neighbour comes out once, byte-exact.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use sluice::engine::{ErrorClass, Outcome, Transform};
use sluice::message::{Message, Metadata};
use sluice::plugin::{BatchAbi, Grant, Limits, WasmHandler};
use sluice_tests::hostile::{Culprit, Shape, write_component};
use sluice_tests::*;

struct Hostile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn hostile(culprit: Culprit, shape: Shape) -> Hostile {
    let dir = tempfile::tempdir().unwrap();
    let path = write_component(dir.path(), "hostile", &culprit, &shape);
    Hostile { _dir: dir, path }
}

fn load(h: &Hostile, limits: &Limits) -> anyhow::Result<Arc<WasmHandler>> {
    load_granted(h, limits, &[])
}

fn load_granted(
    h: &Hostile,
    limits: &Limits,
    grants: &[Grant],
) -> anyhow::Result<Arc<WasmHandler>> {
    let plugin = plugin_host().load(&h.path, limits)?;
    Ok(Arc::new(plugin.into_handler_with(
        "test",
        "hostile",
        Vec::new(),
        BatchAbi::Auto,
        grants,
    )?))
}

fn message(i: usize, payload: &str) -> Message {
    Message {
        id: format!("q:{i}"),
        key: None,
        payload: Bytes::from(payload.to_owned()),
        headers: Vec::new(),
        meta: Metadata::received_now("memory".into(), "q".into()),
    }
}

/// `n` messages, those at `culprits` starting with `!`.
fn batch(n: usize, culprits: &[usize]) -> Vec<Message> {
    (0..n)
        .map(|i| {
            if culprits.contains(&i) {
                message(i, &format!("!culprit {i}"))
            } else {
                message(i, &format!("good {i} {}", "é".repeat(i)))
            }
        })
        .collect()
}

/// Only the culprits failed, each with `class`; every other message came out once, byte-exact.
fn only_culprits_failed(
    batch: &[Message],
    outcomes: &[Outcome],
    culprits: &[usize],
    class: ErrorClass,
) {
    assert_eq!(outcomes.len(), batch.len());
    for (i, (m, o)) in batch.iter().zip(outcomes).enumerate() {
        if culprits.contains(&i) {
            assert!(
                matches!(o, Outcome::Failed(f) if f.class == class),
                "culprit {i}: {o:?}"
            );
        } else {
            match o {
                Outcome::Outputs(outs) => {
                    assert_eq!(outs.len(), 1, "message {i}");
                    assert_eq!(outs[0].payload, m.payload, "message {i}");
                }
                Outcome::Failed(f) => panic!("good message {i} failed: {f:?}"),
            }
        }
    }
}

fn limits() -> Limits {
    Limits {
        instances: Some(2),
        ..Limits::default()
    }
}

#[tokio::test]
async fn a_hostile_component_of_our_own_echoes_a_batch_byte_exact() {
    let h = hostile(Culprit::Trap, Shape::default());
    let handler = load(&h, &limits()).unwrap();
    let msgs = batch(50, &[]);
    let outcomes = handler.process(&msgs).await;
    only_culprits_failed(&msgs, &outcomes, &[], ErrorClass::Trap);
    let one = handler.process(&msgs[3..4]).await;
    only_culprits_failed(&msgs[3..4], &one, &[], ErrorClass::Trap);
}

/// The most a test's host may grow above where it started while a hostile call runs, in MiB.
/// Each attack is sized to take gigabytes if a guard did not hold.
const RSS_BOUND_MIB: u64 = 384;

fn rss_within_bound(start: u64, what: &str) {
    let peak = peak_rss_mib();
    println!(
        "{what}: peak RSS {peak} MiB, {} MiB above the start",
        peak.saturating_sub(start)
    );
    assert!(
        peak.saturating_sub(start) <= RSS_BOUND_MIB,
        "{what}: the host grew by {} MiB (bound {RSS_BOUND_MIB} MiB)",
        peak - start
    );
}

#[tokio::test]
async fn many_memories_share_one_budget_and_too_many_are_refused_at_load() {
    let start = reset_peak();
    // 20 memories of 62.5 MiB each: 1.25 GB if each had the 64 MiB cap on its own.
    let twenty = hostile(
        Culprit::Trap,
        Shape {
            extra_memories: vec![1000; 20],
            ..Shape::default()
        },
    );
    let err = format!("{:#}", load(&twenty, &limits()).err().expect("refused"));
    assert!(
        err.contains("defines 21 linear memories; a handler may define at most 8"),
        "{err}"
    );
    // Few enough memories, but together over the budget: refused when the first instance is made.
    let five = hostile(
        Culprit::Trap,
        Shape {
            extra_memories: vec![300; 5],
            ..Shape::default()
        },
    );
    let err = format!("{:#}", load(&five, &limits()).err().expect("refused"));
    assert!(err.contains("memory limit"), "{err}");
    // One memory larger than the budget at start is refused before anything runs.
    let big = hostile(
        Culprit::Trap,
        Shape {
            extra_memories: vec![2000],
            ..Shape::default()
        },
    );
    let err = format!("{:#}", load(&big, &limits()).err().expect("refused"));
    assert!(
        err.contains("declares a linear memory of 125 MiB at start, over its `memory_mb` of 64"),
        "{err}"
    );
    // Within the budget, it runs.
    let fits = hostile(
        Culprit::Trap,
        Shape {
            extra_memories: vec![100; 3],
            ..Shape::default()
        },
    );
    let handler = load(&fits, &limits()).unwrap();
    let msgs = batch(10, &[4]);
    only_culprits_failed(&msgs, &handler.process(&msgs).await, &[4], ErrorClass::Trap);
    rss_within_bound(start, "many memories");
}

#[tokio::test]
async fn tables_count_against_the_memory_budget_and_too_many_are_refused() {
    let start = reset_peak();
    let hundred = hostile(
        Culprit::Trap,
        Shape {
            extra_tables: vec![1_000_000; 100],
            ..Shape::default()
        },
    );
    let err = format!("{:#}", load(&hundred, &limits()).err().expect("refused"));
    assert!(
        err.contains("defines 100 tables; a handler may define at most 64"),
        "{err}"
    );
    // Ten tables of a million elements: 80 MB of tables, over 64 MiB.
    let ten = hostile(
        Culprit::Trap,
        Shape {
            extra_tables: vec![1_000_000; 10],
            ..Shape::default()
        },
    );
    let err = format!("{:#}", load(&ten, &limits()).err().expect("refused"));
    assert!(err.contains("memory limit"), "{err}");
    rss_within_bound(start, "many tables");
}

#[tokio::test]
async fn a_flood_of_headers_fails_only_its_message() {
    let h = hostile(Culprit::Headers(1_000_001), Shape::default());
    // Building and copying a million headers takes a while in a debug build on a busy machine;
    // this test is about size, not time.
    let generous = Limits {
        timeout_ms: 30_000,
        ..limits()
    };
    let handler = load(&h, &generous).unwrap();
    let start = reset_peak();
    let msgs = batch(10, &[3]);
    let outcomes = handler.process(&msgs).await;
    only_culprits_failed(&msgs, &outcomes, &[3], ErrorClass::OutputLimit);
    let Outcome::Failed(f) = &outcomes[3] else {
        unreachable!()
    };
    assert!(
        f.reason.contains("1000001 headers, the limit is 64"),
        "{}",
        f.reason
    );
    rss_within_bound(start, "1,000,001 headers");
    // 65 headers are over the default cap too; 64 pass.
    let over = load(&hostile(Culprit::Headers(65), Shape::default()), &limits()).unwrap();
    let at = load(&hostile(Culprit::Headers(64), Shape::default()), &limits()).unwrap();
    let one = batch(4, &[0]);
    assert!(
        matches!(&over.process(&one[..1]).await[0], Outcome::Failed(f) if f.class == ErrorClass::OutputLimit)
    );
    assert!(
        matches!(&at.process(&one[..1]).await[0], Outcome::Outputs(o) if o[0].headers.len() == 64)
    );
}

/// Outputs that share one header list: 1,000 outputs × 60,000 headers would be 2.9 GB for the
/// host to copy from 1 MB of guest memory. What one call may copy back is capped at three times
/// `memory_mb`, so the copy stops there and only the culprit fails.
#[tokio::test]
async fn outputs_sharing_their_bytes_cannot_multiply_the_copy() {
    let h = hostile(
        Culprit::AliasedHeaders {
            outputs: 1000,
            headers: 60_000,
        },
        Shape::default(),
    );
    let limits = Limits {
        max_headers: 65536,
        max_header_bytes: 1 << 20,
        ..limits()
    };
    let handler = load(&h, &limits).unwrap();
    let start = reset_peak();
    let msgs = batch(6, &[2]);
    let outcomes = handler.process(&msgs).await;
    only_culprits_failed(&msgs, &outcomes, &[2], ErrorClass::OutputLimit);
    rss_within_bound(start, "1,000 outputs sharing 60,000 headers");
}

#[tokio::test]
async fn a_huge_reason_is_cut_and_a_huge_version_is_cut() {
    let h = hostile(
        Culprit::FatalReason(8 << 20),
        Shape {
            version_bytes: 1 << 20,
            ..Shape::default()
        },
    );
    let handler = load(&h, &limits()).unwrap();
    let version = handler.version().expect("declares a version");
    assert!(
        version.len() <= 64 && version.ends_with("…[cut]"),
        "{version}"
    );
    let start = reset_peak();
    let msgs = batch(8, &[5]);
    let outcomes = handler.process(&msgs).await;
    only_culprits_failed(&msgs, &outcomes, &[5], ErrorClass::Fatal);
    let Outcome::Failed(f) = &outcomes[5] else {
        unreachable!()
    };
    assert!(
        f.reason.len() <= 4096 && f.reason.ends_with("…[cut]"),
        "{} bytes",
        f.reason.len()
    );
    rss_within_bound(start, "an 8 MiB reason");
}

#[tokio::test]
async fn a_counter_flood_keeps_at_most_max_counters_names() {
    let h = hostile(Culprit::Counters(20_000), Shape::default());
    let handler = load(&h, &limits()).unwrap();
    let start = reset_peak();
    let msgs = batch(6, &[1, 4]);
    only_culprits_failed(&msgs, &handler.process(&msgs).await, &[], ErrorClass::Trap);
    rss_within_bound(start, "40,000 counter names");
    let counters = handler.counters();
    assert_eq!(counters.len(), 1000, "the default limits.max_counters");
    // Two culprits each tried 20,000 names: the first 1,000 names were kept (each counted
    // twice), every other attempt refused.
    assert!(
        counters.values().all(|&v| v == 2),
        "{:?}",
        counters.values().max()
    );
    assert_eq!(handler.guard_counts().counters_refused, 2 * 19_000);
}

/// Log lines written while `f` runs, as this process's tracing output would print them.
async fn captured_log<F: std::future::Future>(f: F) -> (F::Output, String) {
    #[derive(Clone, Default)]
    struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let out = f.await;
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    (out, text)
}

#[tokio::test(flavor = "current_thread")]
async fn a_handler_cannot_forge_a_host_log_line() {
    let forged = "ok\n2026-12-07T00:00:00.000000Z  INFO sluice: forged by a handler\r\u{1b}[2J";
    let h = hostile(
        Culprit::Log {
            lines: 1,
            text: forged.to_owned(),
        },
        Shape::default(),
    );
    let handler = load(&h, &limits()).unwrap();
    let msgs = batch(3, &[1]);
    let (outcomes, log) = captured_log(handler.process(&msgs)).await;
    only_culprits_failed(&msgs, &outcomes, &[], ErrorClass::Trap);
    assert!(log.contains("ok\\n2026-12-07"), "{log}");
    assert!(
        log.lines()
            .all(|l| !l.contains("forged by a handler") || l.contains("sluice::handler")),
        "a line was forged: {log}"
    );
    assert!(!log.contains('\u{1b}') && !log.contains('\r'), "{log:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_log_flood_is_rate_limited_and_counted() {
    let h = hostile(
        Culprit::Log {
            lines: 20_000,
            text: "x".repeat(1000),
        },
        Shape::default(),
    );
    let handler = load(&h, &limits()).unwrap();
    let start = reset_peak();
    let msgs = batch(4, &[0, 2]);
    let (outcomes, log) = captured_log(handler.process(&msgs)).await;
    rss_within_bound(start, "40,000 log lines of 1,000 bytes");
    only_culprits_failed(&msgs, &outcomes, &[], ErrorClass::Trap);
    let written = log
        .lines()
        .filter(|l| l.contains("sluice::handler"))
        .count() as u64;
    let dropped = handler.guard_counts().log_lines_dropped;
    println!(
        "log flood: {written} lines written, {dropped} dropped, {} bytes of log",
        log.len()
    );
    assert_eq!(written + dropped, 40_000);
    // The burst (100) and what the rate refills while the calls run: nowhere near 40,000.
    assert!(written < 1_000, "{written} lines written");
}

#[tokio::test]
async fn a_wrong_number_of_batch_results_fails_no_good_message() {
    let h = hostile(
        Culprit::Trap,
        Shape {
            batch_results_short_by: 1,
            ..Shape::default()
        },
    );
    let handler = load(&h, &limits()).unwrap();
    let start = reset_peak();
    // No culprit: only the short result makes the batch call fail.
    let msgs = batch(19, &[]);
    only_culprits_failed(&msgs, &handler.process(&msgs).await, &[], ErrorClass::Trap);
    rss_within_bound(start, "a short batch result");
    assert_eq!(handler.guard_counts().batches_isolated, 1);
}

#[tokio::test]
async fn a_malformed_packed_result_fails_no_good_message() {
    let h = hostile(
        Culprit::Trap,
        Shape {
            malformed_packed: true,
            ..Shape::default()
        },
    );
    let handler = load(&h, &limits()).unwrap();
    let start = reset_peak();
    let msgs = batch(20, &[]);
    only_culprits_failed(&msgs, &handler.process(&msgs).await, &[], ErrorClass::Trap);
    rss_within_bound(start, "a malformed packed result");
    assert_eq!(handler.guard_counts().batches_isolated, 1);
}

/// A batch whose outputs add up to more than wasmtime's default 128 MiB a call, each message
/// within its limits: the call is sized for its batch, so the batch call itself succeeds.
#[tokio::test]
async fn a_batch_over_the_default_copy_limit_runs_as_one_call() {
    let h = hostile(Culprit::Trap, Shape::default());
    let limits = Limits {
        memory_mb: 512,
        max_output_bytes: 2 << 20,
        // Copying 150 MB each way is slow in a debug build; this test is about size, not time.
        timeout_ms: 60_000,
        ..limits()
    };
    let handler = load(&h, &limits).unwrap();
    let payload = "p".repeat(1_500_000);
    let msgs: Vec<Message> = (0..100)
        .map(|i| message(i, &format!("{i} {payload}")))
        .collect();
    only_culprits_failed(&msgs, &handler.process(&msgs).await, &[], ErrorClass::Trap);
    assert_eq!(
        handler.guard_counts().batches_isolated,
        0,
        "the batch call did not fail"
    );
}

/// `k` looping messages in one batch: each times out once on its own, the good neighbours come
/// out, and the batch settles in `(1 + ⌈k / instances⌉) × timeout_ms` when the runtime has
/// `instances` threads (the batch call, then the culprits side by side in their own instances).
/// The time is printed, not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looping_messages_in_a_batch_fail_alone() {
    let h = hostile(Culprit::Loop, Shape::default());
    let limits = Limits {
        timeout_ms: 500,
        ..limits()
    };
    let handler = load(&h, &limits).unwrap();
    let culprits: Vec<usize> = (0..20).step_by(2).collect();
    let msgs = batch(20, &culprits);
    let start = reset_peak();
    let started = Instant::now();
    let outcomes = handler.process(&msgs).await;
    let took = started.elapsed();
    rss_within_bound(start, "10 looping messages");
    only_culprits_failed(&msgs, &outcomes, &culprits, ErrorClass::Timeout);
    println!(
        "10 looping messages among 20, timeout 500 ms, 2 instances on 2 threads: settled in {took:?} (stated bound (1 + ⌈10 / 2⌉) × 500 ms = 3.0 s; one at a time it was 5.5 s)"
    );
}

/// A message that blocks on a WASI clock that never fires (its pipeline grants `clocks`): a
/// call's timeout counts its waits on the host too, so the culprit fails as a timeout, alone or
/// in a batch, and its neighbours come out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_sleeps_forever_times_out() {
    let h = hostile(Culprit::Sleep, Shape::default());
    let limits = Limits {
        timeout_ms: 300,
        ..limits()
    };
    let err = format!("{:#}", load(&h, &limits).err().expect("refused"));
    assert!(err.contains("grants: [clocks]"), "{err}");
    let handler = load_granted(&h, &limits, &[Grant::Clocks]).unwrap();
    // A hang guard, not a timing assertion: without the fix the call never returns.
    let within = std::time::Duration::from_secs(120);
    let one = [message(0, "!sleep")];
    let outcomes = tokio::time::timeout(within, handler.process(&one))
        .await
        .expect("a sleeping guest was never interrupted");
    assert!(
        matches!(&outcomes[0], Outcome::Failed(f) if f.class == ErrorClass::Timeout && f.reason.contains("300 ms")),
        "{outcomes:?}"
    );
    let msgs = batch(6, &[1, 4]);
    let outcomes = tokio::time::timeout(within, handler.process(&msgs))
        .await
        .expect("a batch with sleeping guests was never settled");
    only_culprits_failed(&msgs, &outcomes, &[1, 4], ErrorClass::Timeout);
}

/// Isolation calls side by side on one thread: each call's timeout counts only its own time, so
/// a good message that needs 30% of the timeout is not timed out by the five looping culprits
/// that share its thread (counted in wall-clock time, it would be: it would take about 180%).
/// A busy machine stretches the good call's own time too (the OS takes its thread away): the
/// margin is 3×.
#[tokio::test(flavor = "current_thread")]
async fn a_slow_good_message_is_not_timed_out_by_culprits_sharing_its_thread() {
    let timeout_ms = 1_000;
    let limits = Limits {
        timeout_ms,
        instances: Some(6),
        ..limits()
    };
    // How many turns of the spin loop take about 30% of the timeout on this machine.
    let probe_spins = 20_000_000;
    let probe = hostile(
        Culprit::Loop,
        Shape {
            good_spins: probe_spins,
            ..Shape::default()
        },
    );
    let handler = load(&probe, &limits).unwrap();
    let started = Instant::now();
    let out = handler.process(&[message(0, "good")]).await;
    assert!(matches!(&out[0], Outcome::Outputs(_)), "{out:?}");
    let per_spin = started.elapsed().as_secs_f64() / f64::from(probe_spins);
    let spins = ((0.3 * timeout_ms as f64 / 1000.0) / per_spin).min(f64::from(u32::MAX)) as u32;

    let h = hostile(
        Culprit::Loop,
        Shape {
            good_spins: spins,
            ..Shape::default()
        },
    );
    let handler = load(&h, &limits).unwrap();
    // Six isolation calls at once: the good message beside five looping ones.
    let culprits = [0, 2, 3, 4, 5];
    let msgs = batch(6, &culprits);
    let started = Instant::now();
    let outcomes = handler.process(&msgs).await;
    only_culprits_failed(&msgs, &outcomes, &culprits, ErrorClass::Timeout);
    println!(
        "5 looping messages and a good one of ~300 ms, timeout 1 s, 6 instances on one thread: settled in {:?}",
        started.elapsed()
    );
}

/// The same through a running pipeline: the culprits are dead-lettered once each with their
/// class, every good message is delivered once, and every source message is acked.
#[tokio::test]
async fn through_a_pipeline_only_culprits_are_dead_lettered() {
    let h = hostile(Culprit::Trap, Shape::default());
    let handler: Arc<dyn Transform> = load(&h, &limits()).unwrap();
    let payloads: Vec<String> = (0..200)
        .map(|i| {
            if i % 17 == 0 {
                format!("!bad {i}")
            } else {
                format!("good {i}")
            }
        })
        .collect();
    let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_bytes()).collect();
    let (queue, source) = queue_with("hostile-in", &refs);
    let (out, out_q) = memory_sink("hostile-out");
    let (dl, dl_q) = memory_sink("hostile-dl");
    let (pipeline, _) = memory_pipeline(
        &queue,
        30_000,
        vec![handler],
        out,
        dl,
        fast_delivery(256, 64, 3),
    );
    run_until_acked(pipeline, &source, 200).await;
    let bad: Vec<String> = payloads
        .iter()
        .filter(|p| p.starts_with('!'))
        .cloned()
        .collect();
    let mut good: Vec<String> = payloads
        .iter()
        .filter(|p| !p.starts_with('!'))
        .cloned()
        .collect();
    good.sort();
    let dead = dl_q.drain();
    assert_eq!(sorted_payloads(&out_q.drain()), good);
    let mut dead_payloads = sorted_payloads(&dead);
    let mut bad_sorted = bad.clone();
    bad_sorted.sort();
    dead_payloads.sort();
    assert_eq!(dead_payloads, bad_sorted);
    assert!(
        dead.iter()
            .all(|m| header(m, "x-sluice-error-class") == Some("trap"))
    );
}

/// The caps on memories, tables and core instances refuse hostile shapes, not real ones: the
/// handlers of every language we build (Rust, Python, JavaScript, TypeScript, Go, C, Zig,
/// AssemblyScript) load and instantiate under them and the default memory budget (64 MiB for
/// all of an instance's memories and tables).
#[test]
fn every_language_we_build_fits_the_structural_caps() {
    let dist = repo_root().join("plugins/dist");
    let limits = Limits::default();
    let mut loaded = Vec::new();
    for entry in std::fs::read_dir(&dist)
        .expect("plugins/dist: run scripts/build-plugins.sh and scripts/build-handlers.sh")
    {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.extension().is_none_or(|e| e != "wasm")
            || name == "wrong-world"
            || name == "needs-wasi"
        {
            continue;
        }
        let plugin = plugin_host()
            .load(&path, &limits)
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let grants = [
            Grant::Clocks,
            Grant::Random,
            Grant::Stdout,
            Grant::Stderr,
            Grant::Cli,
        ];
        plugin
            .into_handler_with("test", &name, Vec::new(), BatchAbi::Auto, &grants)
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        loaded.push(name);
    }
    for lang in [
        "python-enrich",
        "js-enrich",
        "ts-enrich",
        "go-enrich",
        "c-enrich",
        "zig-enrich",
        "as-enrich",
        "json-enrich",
    ] {
        assert!(
            loaded.iter().any(|n| n == lang),
            "{lang} was not built: {loaded:?}"
        );
    }
}
