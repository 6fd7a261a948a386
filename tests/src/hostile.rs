//! Hostile handlers, written as WebAssembly text against `wit/v0.1` with no SDK: what a guest
//! can do when nothing in between is on the host's side.
//!
//! Every component here echoes each message (its payload, as one output) unless the payload
//! starts with `!`: that message is the culprit, and the [`Culprit`] action runs for it instead.
//! So a batch of good messages and culprits shows whether the host fails only the culprit.
//!
//! The core code uses a bump allocator that resets after every call (in `post-return`), the way
//! a real guest frees what a call allocated.

use std::fmt::Write as _;

/// What a culprit message makes the guest do.
#[derive(Debug, Clone)]
pub enum Culprit {
    /// Spin until the host's timeout interrupts it.
    Loop,
    /// Trap at once (`unreachable`).
    Trap,
    /// Return `fatal` with a reason of this many bytes.
    FatalReason(u32),
    /// Echo, with this many headers on the output (all pointing at one short name and value).
    Headers(u32),
    /// Echo, after adding 1 to this many distinct counters (8-letter names).
    Counters(u32),
    /// Echo, after this many log lines of `text` each.
    Log { lines: u32, text: String },
    /// Return `outputs` outputs that all point at one list of `headers` headers: little guest
    /// memory, a great deal for the host to copy if it copied each.
    AliasedHeaders { outputs: u32, headers: u32 },
    /// Block on a WASI monotonic-clock pollable that never fires (a duration of `u64::MAX`
    /// nanoseconds): the component imports `wasi:clocks` and `wasi:io`, so its pipeline must
    /// grant `clocks`.
    Sleep,
}

/// How the component is put together, beyond the culprit.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    /// Core modules, each defining one more memory of this many 64 KiB pages.
    pub extra_memories: Vec<u32>,
    /// Core modules, each defining one more table of this many elements.
    pub extra_tables: Vec<u32>,
    /// `handle-batch` returns this many results fewer than it was given messages.
    pub batch_results_short_by: u32,
    /// Export `handle-packed` that answers with bytes that are not a packed result.
    pub malformed_packed: bool,
    /// A `version` custom section of this many bytes.
    pub version_bytes: usize,
    /// Every good message first spins through a loop of this many turns (a slow but good
    /// message).
    pub good_spins: u32,
}

/// The WebAssembly text of a hostile component.
pub fn component_wat(culprit: &Culprit, shape: &Shape) -> String {
    let mut extra = String::new();
    for (i, pages) in shape.extra_memories.iter().enumerate() {
        let _ = write!(
            extra,
            "(core module $Mem{i} (memory (export \"m\") {pages}))\n(core instance $mem{i} (instantiate $Mem{i}))\n"
        );
    }
    for (i, elements) in shape.extra_tables.iter().enumerate() {
        let _ = write!(
            extra,
            "(core module $Tab{i} (table (export \"t\") {elements} funcref))\n(core instance $tab{i} (instantiate $Tab{i}))\n"
        );
    }
    let count = if shape.batch_results_short_by > 0 {
        format!(
            "(i32.sub (local.get $n) (i32.const {}))",
            shape.batch_results_short_by
        )
    } else {
        "(local.get $n)".to_owned()
    };
    let packed_core = if shape.malformed_packed {
        r#"(func (export "handle-packed") (param i32 i32) (result i32)
            (local $ret i32)
            (local.set $ret (call $alloc (i32.const 8)))
            (i32.store (local.get $ret) (i32.const 32))
            (i32.store offset=4 (local.get $ret) (i32.const 7))
            (local.get $ret))"#
    } else {
        ""
    };
    let packed_export = if shape.malformed_packed {
        r#"(func $handle-packed (param "batch" (list u8)) (result (list u8))
            (canon lift (core func $main "handle-packed") (memory (core memory $mem "memory"))
              (realloc (core func $mem "realloc")) (post-return (core func $main "post"))))
          (instance $packed (export "handle-packed" (func $handle-packed)))
          (export "sluice:plugin/packed-handler@0.1.0" (instance $packed))"#
    } else {
        ""
    };
    let version = if shape.version_bytes > 0 {
        format!(
            "(@custom \"version\" \"{}\")",
            "1".repeat(shape.version_bytes)
        )
    } else {
        String::new()
    };
    let log_text = log_text_of(culprit_text(culprit));
    let sleeps = matches!(culprit, Culprit::Sleep);
    // WASI's pollable resource comes from `wasi:io/poll`; the clock hands one out.
    let wasi_imports = if sleeps {
        r#"(import "wasi:io/poll@0.2.0" (instance $poll
    (export "pollable" (type $pollable (sub resource)))
    (export "[method]pollable.block" (func (param "self" (borrow $pollable))))
  ))
  (alias export $poll "pollable" (type $pollable))
  (import "wasi:clocks/monotonic-clock@0.2.0" (instance $clock
    (alias outer $C $pollable (type $outer-pollable))
    (export "pollable" (type $p (eq $outer-pollable)))
    (export "subscribe-duration" (func (param "when" u64) (result (own $p))))
  ))"#
    } else {
        ""
    };
    let (wasi_lowered, wasi_core_imports, wasi_host_exports) = if sleeps {
        (
            r#"(core func $subscribe-lowered (canon lower (func $clock "subscribe-duration")))
  (core func $block-lowered (canon lower (func $poll "[method]pollable.block")))"#,
            r#"(import "host" "subscribe" (func $subscribe (param i64) (result i32)))
    (import "host" "block" (func $block (param i32)))"#,
            r#"(export "subscribe" (func $subscribe-lowered))
      (export "block" (func $block-lowered))"#,
        )
    } else {
        ("", "", "")
    };
    let good_spins = shape.good_spins;
    let culprit = culprit_wat(culprit);
    format!(
        r#"(component $C
  {wasi_imports}
  (import "sluice:plugin/log@0.1.0" (instance $log
    (type $level (enum "trace" "debug" "info" "warn" "error"))
    (export "level" (type $level-e (eq $level)))
    (export "log" (func (param "level" $level-e) (param "message" string)))
  ))
  (import "sluice:plugin/counters@0.1.0" (instance $counters
    (export "add" (func (param "name" string) (param "delta" u64)))
  ))

  ;; Memory and allocator first: lowering the host's imports needs them.
  (core module $Mem
    (memory (export "memory") 1)
    (global $bump (mut i32) (i32.const 4096))
    (data (i32.const 16) "hv")
    (data (i32.const 64) "{log_text}")
    (func (export "realloc") (param i32 i32) (param $align i32) (param $size i32) (result i32)
      (local $p i32) (local $end i32) (local $have i32)
      (local.set $p (i32.and
        (i32.add (global.get $bump) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
      (local.set $end (i32.add (local.get $p) (local.get $size)))
      (local.set $have (i32.shl (memory.size) (i32.const 16)))
      (if (i32.gt_u (local.get $end) (local.get $have))
        (then (if (i32.eq
              (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end) (local.get $have)) (i32.const 16)) (i32.const 1)))
              (i32.const -1))
          (then unreachable))))
      (global.set $bump (local.get $end))
      (local.get $p))
    (func (export "reset") (global.set $bump (i32.const 4096)))
  )
  (core instance $mem (instantiate $Mem))
  (core func $log-lowered (canon lower (func $log "log") (memory (core memory $mem "memory"))))
  (core func $add-lowered (canon lower (func $counters "add") (memory (core memory $mem "memory"))))
  {wasi_lowered}
  {extra}
  (core module $Main
    (import "mem" "memory" (memory 1))
    (import "mem" "realloc" (func $realloc (param i32 i32 i32 i32) (result i32)))
    (import "mem" "reset" (func $reset))
    (import "host" "log" (func $log (param i32 i32 i32)))
    (import "host" "add" (func $add (param i32 i32 i64)))
    {wasi_core_imports}
    (func $alloc (param $size i32) (result i32)
      (call $realloc (i32.const 0) (i32.const 0) (i32.const 8) (local.get $size)))

    ;; Echo the message at $msg as one output, with $nh headers; the result goes to $res.
    (func $echo (param $msg i32) (param $res i32) (param $nh i32)
      (local $out i32) (local $h i32) (local $i i32)
      (local.set $out (call $alloc (i32.const 40)))
      (i32.store (local.get $out) (i32.load offset=20 (local.get $msg)))
      (i32.store offset=4 (local.get $out) (i32.load offset=24 (local.get $msg)))
      (i32.store8 offset=8 (local.get $out) (i32.const 0))
      (local.set $h (call $alloc (i32.mul (local.get $nh) (i32.const 16))))
      (block $done (loop $fill
        (br_if $done (i32.ge_u (local.get $i) (local.get $nh)))
        (i32.store (i32.add (local.get $h) (i32.shl (local.get $i) (i32.const 4))) (i32.const 16))
        (i32.store offset=4 (i32.add (local.get $h) (i32.shl (local.get $i) (i32.const 4))) (i32.const 1))
        (i32.store offset=8 (i32.add (local.get $h) (i32.shl (local.get $i) (i32.const 4))) (i32.const 17))
        (i32.store offset=12 (i32.add (local.get $h) (i32.shl (local.get $i) (i32.const 4))) (i32.const 1))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $fill)))
      (i32.store offset=20 (local.get $out) (local.get $h))
      (i32.store offset=24 (local.get $out) (local.get $nh))
      (i32.store8 offset=28 (local.get $out) (i32.const 0))
      (i32.store8 (local.get $res) (i32.const 0))
      (i32.store offset=4 (local.get $res) (local.get $out))
      (i32.store offset=8 (local.get $res) (i32.const 1)))

    (func $one (param $msg i32) (param $res i32)
      (local $p i32) (local $i i32) (local $k i32)
      (if (i32.and
            (i32.gt_u (i32.load offset=24 (local.get $msg)) (i32.const 0))
            (i32.eq (i32.load8_u (i32.load offset=20 (local.get $msg))) (i32.const 33)))
        (then {culprit} (return)))
      (local.set $k (i32.const {good_spins}))
      (block $spun (loop $spin
        (br_if $spun (i32.eqz (local.get $k)))
        (local.set $k (i32.sub (local.get $k) (i32.const 1)))
        (br $spin)))
      (call $echo (local.get $msg) (local.get $res) (i32.const 0)))

    (func (export "handle") (param $msg i32) (result i32)
      (local $res i32)
      (local.set $res (call $alloc (i32.const 16)))
      (call $one (local.get $msg) (local.get $res))
      (local.get $res))

    (func (export "handle-batch") (param $ptr i32) (param $n i32) (result i32)
      (local $out i32) (local $i i32) (local $ret i32)
      (local.set $out (call $alloc (i32.mul (local.get $n) (i32.const 16))))
      (block $done (loop $each
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (call $one
          (i32.add (local.get $ptr) (i32.mul (local.get $i) (i32.const 112)))
          (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 4))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $each)))
      (local.set $ret (call $alloc (i32.const 8)))
      (i32.store (local.get $ret) (local.get $out))
      (i32.store offset=4 (local.get $ret) {count})
      (local.get $ret))

    {packed_core}

    (func (export "post") (param i32) (call $reset))
  )
  (core instance $main (instantiate $Main
    (with "mem" (instance $mem))
    (with "host" (instance
      (export "log" (func $log-lowered))
      (export "add" (func $add-lowered))
      {wasi_host_exports}))))

  (type $metadata (record
    (field "source" string) (field "topic" string) (field "partition" (option s32))
    (field "offset" (option s64)) (field "timestamp-ms" (option s64))
    (field "received-ms" s64) (field "attempt" u32)))
  (type $message (record
    (field "id" string) (field "key" (option (list u8))) (field "payload" (list u8))
    (field "headers" (list (tuple string string))) (field "metadata" $metadata)))
  (type $output (record
    (field "payload" (list u8)) (field "key" (option (list u8)))
    (field "headers" (list (tuple string string))) (field "route" (option string))))
  (type $handler-error (variant (case "transient" string) (case "fatal" string) (case "invalid" string)))
  (type $result (result (list $output) (error $handler-error)))

  (func $handle (param "msg" $message) (result $result)
    (canon lift (core func $main "handle") (memory (core memory $mem "memory"))
      (realloc (core func $mem "realloc")) (post-return (core func $main "post"))))
  (func $handle-batch (param "msgs" (list $message)) (result (list $result))
    (canon lift (core func $main "handle-batch") (memory (core memory $mem "memory"))
      (realloc (core func $mem "realloc")) (post-return (core func $main "post"))))
  (instance $handler
    (export "metadata" (type $metadata))
    (export "message" (type $message))
    (export "output" (type $output))
    (export "handler-error" (type $handler-error))
    (export "handle" (func $handle))
    (export "handle-batch" (func $handle-batch)))
  (export "sluice:plugin/message-handler@0.1.0" (instance $handler))
  {packed_export}
  {version}
)"#,
    )
}

fn culprit_text(c: &Culprit) -> &str {
    match c {
        Culprit::Log { text, .. } => text,
        _ => "",
    }
}

/// `text` as a WAT string literal body (at most 4000 bytes: it lives between offsets 64 and
/// 4096 of the allocator's memory).
fn log_text_of(text: &str) -> String {
    assert!(text.len() <= 4000, "log text too long for the static area");
    text.bytes().map(|b| format!("\\{b:02x}")).collect()
}

fn culprit_wat(c: &Culprit) -> String {
    match c {
        Culprit::Loop => "(loop $spin (br $spin))".to_owned(),
        Culprit::Sleep => "(call $block (call $subscribe (i64.const -1))) unreachable".to_owned(),
        Culprit::Trap => "unreachable".to_owned(),
        Culprit::FatalReason(n) => format!(
            "(local.set $p (call $alloc (i32.const {n})))
             (memory.fill (local.get $p) (i32.const 120) (i32.const {n}))
             (i32.store8 (local.get $res) (i32.const 1))
             (i32.store8 offset=4 (local.get $res) (i32.const 1))
             (i32.store offset=8 (local.get $res) (local.get $p))
             (i32.store offset=12 (local.get $res) (i32.const {n}))"
        ),
        Culprit::Headers(n) => {
            format!("(call $echo (local.get $msg) (local.get $res) (i32.const {n}))")
        }
        Culprit::Counters(n) => format!(
            "(local.set $p (call $alloc (i32.const 8)))
             (block $done (loop $each
               (br_if $done (i32.ge_u (local.get $i) (i32.const {n})))
               (local.set $k (i32.const 0))
               (block $named (loop $letter
                 (br_if $named (i32.ge_u (local.get $k) (i32.const 8)))
                 (i32.store8 (i32.add (local.get $p) (local.get $k))
                   (i32.add (i32.const 97)
                     (i32.and (i32.shr_u (local.get $i) (i32.shl (local.get $k) (i32.const 2))) (i32.const 15))))
                 (local.set $k (i32.add (local.get $k) (i32.const 1)))
                 (br $letter)))
               (call $add (local.get $p) (i32.const 8) (i64.const 1))
               (local.set $i (i32.add (local.get $i) (i32.const 1)))
               (br $each)))
             (call $echo (local.get $msg) (local.get $res) (i32.const 0))"
        ),
        Culprit::AliasedHeaders { outputs, headers } => format!(
            "(call $echo (local.get $msg) (local.get $res) (i32.const {headers}))
             ;; $echo left one output at the result's list: copy it {outputs} times, all
             ;; sharing its header list.
             (local.set $p (call $alloc (i32.mul (i32.const {outputs}) (i32.const 40))))
             (block $done (loop $each
               (br_if $done (i32.ge_u (local.get $i) (i32.const {outputs})))
               (memory.copy
                 (i32.add (local.get $p) (i32.mul (local.get $i) (i32.const 40)))
                 (i32.load offset=4 (local.get $res))
                 (i32.const 40))
               (local.set $i (i32.add (local.get $i) (i32.const 1)))
               (br $each)))
             (i32.store offset=4 (local.get $res) (local.get $p))
             (i32.store offset=8 (local.get $res) (i32.const {outputs}))"
        ),
        Culprit::Log { lines, text } => format!(
            "(block $done (loop $each
               (br_if $done (i32.ge_u (local.get $i) (i32.const {lines})))
               (call $log (i32.const 2) (i32.const 64) (i32.const {len}))
               (local.set $i (i32.add (local.get $i) (i32.const 1)))
               (br $each)))
             (call $echo (local.get $msg) (local.get $res) (i32.const 0))",
            len = text.len()
        ),
    }
}

/// A hostile component, compiled from its text and written to `dir` as `name.wasm`.
pub fn write_component(
    dir: &std::path::Path,
    name: &str,
    culprit: &Culprit,
    shape: &Shape,
) -> std::path::PathBuf {
    let wat = component_wat(culprit, shape);
    let bytes = wat::parse_str(&wat).unwrap_or_else(|e| panic!("{name}: {e}\n{wat}"));
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).expect("write the component");
    path
}
