//! WASI for handlers, granted per pipeline. A language runtime (Python, JavaScript) imports WASI
//! interfaces; a handler gets one only when its pipeline grants it (`handlers[].grants`), and a
//! component that imports anything not granted is refused at load, each import named with the
//! grant it would need.
//!
//! What a grant gives is narrow: `clocks` and `random` as in any WASI host; `stdout` and
//! `stderr` write lines into the host's log (with the pipeline and plugin); `cli` an empty
//! environment, no arguments, an empty stdin. Filesystem, sockets and HTTP are never linked to a
//! handler's capabilities: no directory is preopened and no network is allowed, and a component
//! importing those interfaces is refused.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

use crate::guard;
use crate::settings::Grant;
use crate::state::Shared;

/// The grant an import needs: `Ok(None)` for the host's own interfaces and WASI's plumbing
/// (`wasi:io`, which gives nothing by itself), `Err` for what is never granted.
pub fn grant_for(import: &str) -> Result<Option<Grant>, &'static str> {
    let unversioned = import.split('@').next().unwrap_or(import);
    let Some(rest) = unversioned.strip_prefix("wasi:") else {
        return Ok(None);
    };
    let (package, interface) = rest.split_once('/').unwrap_or((rest, ""));
    match (package, interface) {
        ("io", _) => Ok(None),
        ("clocks", _) => Ok(Some(Grant::Clocks)),
        ("random", _) => Ok(Some(Grant::Random)),
        // Resource types only: what they give comes with the interface that hands them out.
        ("cli", "terminal-input" | "terminal-output") => Ok(None),
        ("cli", "stdout" | "terminal-stdout") => Ok(Some(Grant::Stdout)),
        ("cli", "stderr" | "terminal-stderr") => Ok(Some(Grant::Stderr)),
        ("cli", _) => Ok(Some(Grant::Cli)),
        ("filesystem", _) => Err("handlers get no filesystem"),
        ("sockets", _) => Err("handlers get no network"),
        ("http", _) => Err("handlers get no HTTP"),
        _ => Err("not a WASI interface the host offers"),
    }
}

/// Whether `import` is a WASI interface (as opposed to the host's own).
pub fn is_wasi(import: &str) -> bool {
    import.starts_with("wasi:")
}

/// The WASI context of one instance, as `grants` allow.
pub fn context(
    pipeline: &Arc<str>,
    plugin: &Arc<str>,
    grants: &[Grant],
    shared: &Arc<Shared>,
) -> WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    builder
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    if grants.contains(&Grant::Stdout) {
        builder.stdout(LogStream::new(pipeline, plugin, "stdout", shared));
    }
    if grants.contains(&Grant::Stderr) {
        builder.stderr(LogStream::new(pipeline, plugin, "stderr", shared));
    }
    builder.build()
}

/// Longest line kept before it is logged anyway, in bytes.
const MAX_LINE: usize = 16 * 1024;

/// A guest's stdout or stderr, one log line per line written.
#[derive(Clone)]
struct LogStream {
    pipeline: Arc<str>,
    plugin: Arc<str>,
    stream: &'static str,
    pending: Arc<Mutex<Vec<u8>>>,
    /// The handler's log rate and line cap, shared with `sluice:plugin/log`.
    shared: Arc<Shared>,
}

impl LogStream {
    fn new(
        pipeline: &Arc<str>,
        plugin: &Arc<str>,
        stream: &'static str,
        shared: &Arc<Shared>,
    ) -> Self {
        LogStream {
            pipeline: pipeline.clone(),
            plugin: plugin.clone(),
            stream,
            pending: Arc::default(),
            shared: shared.clone(),
        }
    }

    fn take(&self, bytes: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.extend_from_slice(bytes);
        // One pass over the buffer, whatever the number of lines in it.
        let mut start = 0;
        while let Some(len) = pending[start..].iter().position(|&b| b == b'\n') {
            self.emit(&pending[start..start + len]);
            start += len + 1;
        }
        pending.drain(..start);
        if pending.len() > MAX_LINE {
            let line = std::mem::take(&mut *pending);
            self.emit(&line);
        }
    }

    fn emit(&self, line: &[u8]) {
        if !self.shared.log_rate.admit() {
            self.shared
                .stats
                .log_lines_dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        let text = String::from_utf8_lossy(line);
        let text = guard::log_text(text.trim_end_matches('\r'), self.shared.max_log_bytes);
        let text = text.as_str();
        let level = if self.stream == "stderr" {
            "warn"
        } else {
            "info"
        };
        let trace_id = sluice_trace::handler_event(None, level, text);
        let (pipeline, plugin, stream) = (&*self.pipeline, &*self.plugin, self.stream);
        let trace_id = trace_id.as_deref().unwrap_or("");
        if stream == "stderr" {
            tracing::warn!(target: "sluice::handler", pipeline, plugin, stream, trace_id, "{text}");
        } else {
            tracing::info!(target: "sluice::handler", pipeline, plugin, stream, trace_id, "{text}");
        }
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.take(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.take(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wasi_import_maps_to_a_grant_or_is_refused() {
        assert_eq!(grant_for("wasi:io/streams@0.2.3"), Ok(None));
        assert_eq!(grant_for("sluice:plugin/log@0.1.0"), Ok(None));
        assert_eq!(
            grant_for("wasi:clocks/wall-clock@0.2.0"),
            Ok(Some(Grant::Clocks))
        );
        assert_eq!(
            grant_for("wasi:random/insecure-seed@0.2.0"),
            Ok(Some(Grant::Random))
        );
        assert_eq!(
            grant_for("wasi:cli/terminal-stdout@0.2.0"),
            Ok(Some(Grant::Stdout))
        );
        assert_eq!(grant_for("wasi:cli/stderr@0.2.0"), Ok(Some(Grant::Stderr)));
        assert_eq!(
            grant_for("wasi:cli/environment@0.2.0"),
            Ok(Some(Grant::Cli))
        );
        assert_eq!(grant_for("wasi:cli/terminal-output@0.2.0"), Ok(None));
        assert!(grant_for("wasi:filesystem/preopens@0.2.0").is_err());
        assert!(grant_for("wasi:sockets/tcp@0.2.0").is_err());
        assert!(grant_for("wasi:http/outgoing-handler@0.2.0").is_err());
    }
}
