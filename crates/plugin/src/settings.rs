//! What one handler runs with: its limits, how batches cross into it, the WASI it is granted.
//! The runtime fills these from a pipeline file's handler section; this crate never sees one.

/// Resource limits for one handler; always on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Budget for one handler call, in milliseconds of its own time (`clock.rs`).
    pub timeout_ms: u64,
    /// Memory cap per instance, in MiB: all its linear memories and tables together.
    pub memory_mb: u64,
    /// Most outputs one message may produce.
    pub max_outputs: u32,
    /// Most output payload bytes one message may produce.
    pub max_output_bytes: u64,
    /// WebAssembly stack size, in KiB.
    pub stack_kb: u64,
    /// Instances kept warm and called in parallel; `None` means the number of CPUs.
    pub instances: Option<usize>,
    /// Most headers on one output.
    pub max_headers: u32,
    /// Most bytes of header names and values on one output.
    pub max_header_bytes: u64,
    /// Most bytes in one output's key.
    pub max_key_bytes: u64,
    /// Longest error reason kept, in bytes; a longer one is cut, with a marker.
    pub max_reason_bytes: u32,
    /// Longest log line kept, in bytes; a longer one is cut, with a marker.
    pub max_log_bytes: u32,
    /// Log lines a handler may write per second (all its instances together); the rest are
    /// dropped and counted.
    pub log_lines_per_second: u32,
    /// Most counter names a handler may keep.
    pub max_counters: u32,
}

impl Default for Limits {
    /// The defaults a pipeline file gets when it says nothing (`docs/pipeline-reference.md`;
    /// a runtime test checks that the config's defaults turn into these).
    fn default() -> Self {
        Limits {
            timeout_ms: 1000,
            memory_mb: 64,
            max_outputs: 1024,
            max_output_bytes: 4 * 1024 * 1024,
            stack_kb: 512,
            instances: None,
            max_headers: 64,
            max_header_bytes: 64 * 1024,
            max_key_bytes: 64 * 1024,
            max_reason_bytes: 4096,
            max_log_bytes: 4096,
            log_lines_per_second: 100,
            max_counters: 1000,
        }
    }
}

impl Limits {
    /// Why `count` outputs for one message break the limits, if they do.
    pub fn outputs_over(&self, count: usize) -> Option<String> {
        (count > self.max_outputs as usize).then(|| {
            format!(
                "{count} outputs for one message, the limit is {}",
                self.max_outputs
            )
        })
    }

    /// Why output `i`'s `count` headers of `bytes` bytes (names and values as a sink writes
    /// them: a binary value's bytes, not its lossy text) break the limits, if they do.
    pub fn headers_over(&self, i: usize, count: usize, bytes: u64) -> Option<String> {
        if count > self.max_headers as usize {
            return Some(format!(
                "output {i} has {count} headers, the limit is {}",
                self.max_headers
            ));
        }
        (bytes > self.max_header_bytes).then(|| {
            format!(
                "output {i} has {bytes} bytes of headers, the limit is {}",
                self.max_header_bytes
            )
        })
    }

    /// Bytes one message's result may carry across the boundary when every output is within
    /// these limits: payloads and keys, headers, routes, the records themselves (wasmtime's
    /// "hostcall fuel" counts these). A call of `n` messages is given `n` times this, so a batch
    /// of messages within their limits is never refused for its size.
    pub fn result_budget(&self) -> usize {
        let outputs = u64::from(self.max_outputs);
        let per_output = 64 // the output record and its options
            + u64::from(self.max_headers) * 16
            + self.max_header_bytes
            + self.max_key_bytes
            + crate::guard::MAX_ROUTE_BYTES as u64;
        let total = self
            .max_output_bytes
            .saturating_add(outputs.saturating_mul(per_output))
            .saturating_add(u64::from(self.max_reason_bytes))
            .saturating_add(64 * 1024);
        usize::try_from(total).unwrap_or(usize::MAX)
    }
}

/// A WASI capability a pipeline grants one handler. Filesystem and network are not grantable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Grant {
    /// `wasi:clocks`: wall clock and monotonic clock.
    Clocks,
    /// `wasi:random`: secure and insecure random bytes.
    Random,
    /// `wasi:cli/stdout`: each line the handler prints becomes a host log line (`info`).
    Stdout,
    /// `wasi:cli/stderr`: each line becomes a host log line (`warn`).
    Stderr,
    /// The rest of `wasi:cli`: an empty environment, no arguments, an empty stdin, `exit`.
    Cli,
}

impl Grant {
    /// The name a pipeline file uses for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Grant::Clocks => "clocks",
            Grant::Random => "random",
            Grant::Stdout => "stdout",
            Grant::Stderr => "stderr",
            Grant::Cli => "cli",
        }
    }
}

/// How the host hands a batch to a handler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BatchAbi {
    /// The packed fast path when the component exports it, else `handle-batch`.
    #[default]
    Auto,
    /// Always `handle-batch` through the canonical ABI (to rule out an SDK's packed codec).
    Canonical,
}
