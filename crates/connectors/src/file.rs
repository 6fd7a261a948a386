//! `file`: lines in, lines out (raw lines or JSON lines, see [`Codec`]).
//!
//! The file source reads the file once from the start and ends the stream at its end; it keeps no
//! checkpoint, so a re-run replays the file (at-least-once across runs).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::Mutex;

use crate::stdio::LineSource;
use crate::{BuildContext, Codec, SendResult, Sink, SinkFactory, Source, SourceFactory};
use sluice_core::FieldError;
use sluice_core::message::Output;

/// `type: file` as a source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// File to read; relative to the pipeline file's directory.
    pub path: PathBuf,
    /// Default: `lines`.
    #[serde(default)]
    pub codec: Codec,
}

/// `type: file` as a sink.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// File to append to (created if missing); relative to the pipeline file's directory.
    pub path: PathBuf,
    /// Default: `lines`.
    #[serde(default)]
    pub codec: Codec,
    /// `fsync` each batch before confirming it. Default: false (flushed to the OS only).
    #[serde(default)]
    pub fsync: bool,
}

impl SourceFactory for FileSourceConfig {
    fn validate(&self, errors: &mut Vec<FieldError>) {
        if self.path.as_os_str().is_empty() {
            errors.push(FieldError::new("path", "must not be empty"));
        }
    }

    fn check_local(&self, ctx: &BuildContext, errors: &mut Vec<FieldError>) {
        let path = ctx.resolve(&self.path);
        // Not opened: a named pipe is a fine source, and opening one waits for a writer.
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => errors.push(FieldError::new(
                "path",
                format!("{} is a directory", path.display()),
            )),
            Ok(_) => {}
            Err(e) => errors.push(FieldError::new(
                "path",
                format!("cannot open {}: {e}", path.display()),
            )),
        }
    }

    fn redelivers(&self) -> bool {
        false
    }

    fn build(&self, ctx: &BuildContext) -> anyhow::Result<Box<dyn Source>> {
        let path = ctx.resolve(&self.path);
        let file = std::fs::File::open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let name = path.display().to_string();
        Ok(Box::new(LineSource::new(
            tokio::fs::File::from_std(file),
            self.codec,
            "file",
            &name,
        )))
    }
}

impl SinkFactory for FileSinkConfig {
    fn validate(&self, errors: &mut Vec<FieldError>) {
        if self.path.as_os_str().is_empty() {
            errors.push(FieldError::new("path", "must not be empty"));
        }
    }

    fn check_local(&self, ctx: &BuildContext, errors: &mut Vec<FieldError>) {
        let path = ctx.resolve(&self.path);
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir
            && !dir.is_dir()
        {
            errors.push(FieldError::new(
                "path",
                format!("the directory {} does not exist", dir.display()),
            ));
        }
    }

    fn build(&self, ctx: &BuildContext) -> anyhow::Result<Arc<dyn Sink>> {
        let path = ctx.resolve(&self.path);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {} for appending", path.display()))?;
        Ok(Arc::new(FileSink {
            out: Mutex::new(BufWriter::new(tokio::fs::File::from_std(file))),
            codec: self.codec,
            fsync: self.fsync,
        }))
    }
}

struct FileSink {
    out: Mutex<BufWriter<tokio::fs::File>>,
    codec: Codec,
    fsync: bool,
}

#[async_trait]
impl Sink for FileSink {
    async fn send(&self, batch: &[Output]) -> SendResult {
        let mut buf = Vec::with_capacity(batch.iter().map(|o| o.payload.len() + 64).sum());
        for out in batch {
            self.codec.encode(out, &mut buf);
        }
        let mut file = self.out.lock().await;
        file.write_all(&buf).await.context("file sink: write")?;
        file.flush().await.context("file sink: flush")?;
        if self.fsync {
            file.get_ref()
                .sync_data()
                .await
                .context("file sink: fsync")?;
        }
        Ok(())
    }

    async fn close(&self) -> anyhow::Result<()> {
        self.out.lock().await.flush().await?;
        Ok(())
    }
}
