//! `stdin` source and `stdout` sink, line by line (see [`Codec`]).

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;

use crate::{BuildContext, Codec, Delivery, SendResult, Sink, SinkFactory, Source, SourceFactory};
use sluice_core::ack::AckToken;
use sluice_core::message::{Message, Metadata, Output};

/// `type: stdin`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct StdinSourceConfig {
    /// Default: `lines`.
    #[serde(default)]
    pub codec: Codec,
}

/// `type: stdout`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {
    /// Default: `lines`.
    #[serde(default)]
    pub codec: Codec,
}

impl SourceFactory for StdinSourceConfig {
    fn redelivers(&self) -> bool {
        false
    }

    fn build(&self, _ctx: &BuildContext) -> anyhow::Result<Box<dyn Source>> {
        Ok(Box::new(LineSource::new(
            tokio::io::stdin(),
            self.codec,
            "stdin",
            "stdin",
        )))
    }
}

impl SinkFactory for StdoutSinkConfig {
    fn build(&self, _ctx: &BuildContext) -> anyhow::Result<Arc<dyn Sink>> {
        Ok(Arc::new(StdoutSink { codec: self.codec }))
    }
}

/// Reads lines from any reader; shared by `stdin` and `file`. Nothing to acknowledge.
pub(super) struct LineSource<R> {
    lines: BufReader<R>,
    codec: Codec,
    source: Arc<str>,
    topic: Arc<str>,
    line_no: i64,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin + Send> LineSource<R> {
    pub(super) fn new(reader: R, codec: Codec, source: &str, topic: &str) -> Self {
        LineSource {
            lines: BufReader::new(reader),
            codec,
            source: source.into(),
            topic: topic.into(),
            line_no: 0,
            buf: Vec::new(),
        }
    }

    fn delivery(&mut self, line: &[u8]) -> Delivery {
        self.line_no += 1;
        let mut meta = Metadata::received_now(self.source.clone(), self.topic.clone());
        meta.offset = Some(self.line_no);
        let id = format!("{}:{}", self.topic, self.line_no);
        match self.codec.decode(line) {
            Ok(d) => Delivery::new(
                Message {
                    id,
                    key: d.key,
                    payload: d.payload,
                    headers: d.headers,
                    meta,
                },
                AckToken::none(),
            ),
            Err(e) => Delivery {
                message: Message {
                    id,
                    key: None,
                    payload: bytes::Bytes::copy_from_slice(line),
                    headers: Vec::new(),
                    meta,
                },
                token: AckToken::none(),
                decode_error: Some(e),
            },
        }
    }
}

#[async_trait]
impl<R: AsyncRead + Unpin + Send> Source for LineSource<R> {
    async fn next_batch(&mut self, max: usize) -> anyhow::Result<Option<Vec<Delivery>>> {
        let mut batch = Vec::new();
        // Wait for one line, then take more only while they are already buffered.
        // Cancel-safe: a partly read line stays in `self.buf` and the next call completes it.
        while batch.len() < max && (batch.is_empty() || !self.lines.buffer().is_empty()) {
            let eof = self.lines.read_until(b'\n', &mut self.buf).await? == 0;
            if eof && self.buf.is_empty() {
                break;
            }
            let mut line = std::mem::take(&mut self.buf);
            if line.last() == Some(&b'\n') {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
            }
            batch.push(self.delivery(&line));
            line.clear();
            self.buf = line;
            if eof {
                break;
            }
        }
        Ok(if batch.is_empty() { None } else { Some(batch) })
    }
}

/// One lock for the process's stdout: several `stdout` sinks (one per route, or per pipeline)
/// must never interleave halves of their lines.
static STDOUT: std::sync::LazyLock<Mutex<tokio::io::Stdout>> =
    std::sync::LazyLock::new(|| Mutex::new(tokio::io::stdout()));

struct StdoutSink {
    codec: Codec,
}

#[async_trait]
impl Sink for StdoutSink {
    async fn send(&self, batch: &[Output]) -> SendResult {
        let mut buf = Vec::new();
        for out in batch {
            self.codec.encode(out, &mut buf);
        }
        let mut stdout = STDOUT.lock().await;
        stdout
            .write_all(&buf)
            .await
            .map_err(|e| anyhow::anyhow!("stdout sink: write: {e}"))?;
        stdout
            .flush()
            .await
            .map_err(|e| anyhow::anyhow!("stdout sink: flush: {e}"))?;
        Ok(())
    }
}
