//! What one handler runs with: its limits, how batches cross into it, the WASI it is granted.
//! The runtime fills these from a pipeline file's handler section; this crate never sees one.

/// Resource limits for one handler; always on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget for one handler call, in milliseconds.
    pub timeout_ms: u64,
    /// Linear memory cap per instance, in MiB.
    pub memory_mb: u64,
    /// Most outputs one message may produce.
    pub max_outputs: u32,
    /// Most output payload bytes one message may produce.
    pub max_output_bytes: u64,
    /// WebAssembly stack size, in KiB.
    pub stack_kb: u64,
    /// Instances kept warm and called in parallel; `None` means the number of CPUs.
    pub instances: Option<usize>,
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
        }
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
