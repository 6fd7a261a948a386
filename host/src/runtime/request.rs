//! What asks for a reload (the file watcher, SIGHUP, the admin API) and what a reload reports.

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// What a reload looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadScope {
    /// Every pipeline file and plugin.
    All,
    /// One running pipeline: its file and its plugins.
    Pipeline(String),
}

/// A request to reload, with where to send the report.
#[derive(Debug)]
pub struct ReloadRequest {
    pub scope: ReloadScope,
    /// What asked for it (`watch`, `SIGHUP`, `admin`), for the log and the report.
    pub cause: &'static str,
    pub reply: Option<oneshot::Sender<ReloadReport>>,
}

impl ReloadRequest {
    /// A request that gets its report back.
    pub fn with_reply(
        scope: ReloadScope,
        cause: &'static str,
    ) -> (Self, oneshot::Receiver<ReloadReport>) {
        let (tx, rx) = oneshot::channel();
        let request = ReloadRequest {
            scope,
            cause,
            reply: Some(tx),
        };
        (request, rx)
    }
}

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// Nothing was refused.
    pub ok: bool,
    pub cause: String,
    /// Pipelines started from new files.
    pub started: Vec<String>,
    /// Pipelines whose file changed: drained and started again with the new version.
    pub restarted: Vec<String>,
    /// Pipelines whose file was removed: drained and stopped.
    pub stopped: Vec<String>,
    /// Plugins swapped in: `pipeline/handler: old-hash -> new-hash`.
    pub swapped: Vec<String>,
    /// Changes refused, each with its errors; the running versions stayed.
    pub refused: Vec<String>,
}

impl ReloadReport {
    pub(super) fn changed_anything(&self) -> bool {
        !(self.started.is_empty()
            && self.restarted.is_empty()
            && self.stopped.is_empty()
            && self.swapped.is_empty()
            && self.refused.is_empty())
    }
}
