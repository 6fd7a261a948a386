//! `drop`: accepts and discards everything (benchmarks, and pipelines run only for their side
//! effects). Confirms at once.

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::{BuildContext, SendResult, Sink, SinkFactory};
use sluice_core::message::Output;

/// `type: drop`. No settings. (Not `null`: YAML reads `type: null` as no type at all.)
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct DropSinkConfig {}

impl SinkFactory for DropSinkConfig {
    fn build(&self, _ctx: &BuildContext) -> anyhow::Result<Arc<dyn Sink>> {
        Ok(Arc::new(DropSink))
    }
}

/// Discards outputs.
#[derive(Debug, Default)]
pub struct DropSink;

#[async_trait]
impl Sink for DropSink {
    async fn send(&self, _batch: &[Output]) -> SendResult {
        Ok(())
    }
}
