//! `null`: accepts and discards everything (benchmarks, and pipelines run only for their side
//! effects). Confirms at once.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::{BuildContext, Sink, SinkFactory};
use crate::message::Output;

/// `type: null`. No settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NullSinkConfig {}

impl SinkFactory for NullSinkConfig {
    fn build(&self, _ctx: &BuildContext) -> anyhow::Result<Arc<dyn Sink>> {
        Ok(Arc::new(NullSink))
    }
}

/// Discards outputs.
#[derive(Debug, Default)]
pub struct NullSink;

#[async_trait]
impl Sink for NullSink {
    async fn send(&self, _batch: &[Output]) -> anyhow::Result<()> {
        Ok(())
    }
}
