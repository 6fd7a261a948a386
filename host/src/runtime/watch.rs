//! Watching pipeline files and plugins: a change (a file created, written, renamed or removed)
//! in their directories asks the supervisor for a reload once the directories have been quiet
//! for [`DEBOUNCE`]. Reads are not changes: the reload itself reads these files, and must not
//! trigger the next one. A reload that finds nothing changed does nothing.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use super::request::{ReloadRequest, ReloadScope};

/// How long the directories must be quiet before a reload: long enough for an editor's or a
/// deployment's burst of writes to finish, short enough to feel immediate.
const DEBOUNCE: Duration = Duration::from_millis(300);

pub(super) struct Watcher {
    watcher: RecommendedWatcher,
    watched: HashSet<PathBuf>,
    debounce: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.debounce.abort();
    }
}

impl Watcher {
    pub fn new(requests: mpsc::Sender<ReloadRequest>) -> anyhow::Result<Self> {
        let (changes_tx, mut changes) = mpsc::unbounded_channel::<()>();
        let watcher =
            notify::recommended_watcher(move |event: notify::Result<Event>| match event {
                Ok(event) if is_change(&event.kind) => {
                    let _ = changes_tx.send(());
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "file watcher error"),
            })?;
        let debounce = tokio::spawn(async move {
            while changes.recv().await.is_some() {
                // Wait for quiet: every further change restarts the wait.
                loop {
                    match tokio::time::timeout(DEBOUNCE, changes.recv()).await {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                // A reload already queued covers this change too.
                let _ = requests.try_send(ReloadRequest {
                    scope: ReloadScope::All,
                    cause: "watch",
                    reply: None,
                });
            }
        });
        Ok(Watcher {
            watcher,
            watched: HashSet::new(),
            debounce,
        })
    }

    /// Watch each of `dirs` not watched yet.
    pub fn watch_dirs(&mut self, dirs: Vec<PathBuf>) {
        for dir in dirs {
            let dir = dir.canonicalize().unwrap_or(dir);
            if self.watched.contains(&dir) {
                continue;
            }
            match self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    tracing::debug!(dir = %dir.display(), "watching for changes");
                    self.watched.insert(dir);
                }
                Err(err) => {
                    tracing::warn!(dir = %dir.display(), error = %err, "cannot watch this directory")
                }
            }
        }
    }
}

/// Content changes only: not opens, reads or metadata (access times, permissions).
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{AccessKind, CreateKind, DataChange, MetadataKind, RenameMode};

    use super::*;

    #[test]
    fn reads_and_metadata_are_not_changes() {
        assert!(!is_change(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!is_change(&EventKind::Modify(ModifyKind::Metadata(
            MetadataKind::AccessTime
        ))));
        assert!(is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(is_change(&EventKind::Modify(ModifyKind::Data(
            DataChange::Any
        ))));
        assert!(is_change(&EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
        assert!(is_change(&EventKind::Create(CreateKind::File)));
    }
}
