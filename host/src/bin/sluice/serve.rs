//! `sluice run`: start the pipelines, the admin server and tracing; reload on change or
//! SIGHUP; drain on SIGTERM/SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use sluice::config::load_paths;
use sluice::plugin::PluginHost;
use sluice::runtime::{ReloadRequest, ReloadScope, Supervisor};
use sluice::telemetry::Inventory;
use sluice::telemetry::trace::{self, TraceConfig};

use crate::args::AdminArgs;

/// Run `paths` until their sources end or a signal asks to stop.
/// What a pipeline waits for while its plugins and connectors are checked at start-up.
const CHECKING: &str = "checking its handlers and connectors; a handler's first load compiles it (the log says which, and how long it took: a Python or JavaScript one takes tens of seconds)";

pub fn serve(
    host: PluginHost,
    paths: &[PathBuf],
    admin: &AdminArgs,
    otlp_endpoint: &Option<String>,
    no_watch: bool,
) -> anyhow::Result<ExitCode> {
    let admin = admin.config()?;
    let exporter = trace::init(&TraceConfig {
        otlp_endpoint: otlp_endpoint.clone(),
    })?;
    let (loaded, errors) = load_paths(paths);
    refuse_on(&errors, "pipeline files")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let ran = rt.block_on(async {
        let shutdown = CancellationToken::new();
        let inventory = Inventory::default();
        // The admin server outlives the pipelines' drain, so that it reports it.
        let admin_stop = CancellationToken::new();
        let _stop_admin = admin_stop.clone().drop_guard();
        let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(16);
        if let Some(admin) = admin {
            sluice::admin::serve(
                admin,
                inventory.clone(),
                Some(reload_tx.clone()),
                admin_stop,
            )
            .await?;
        }
        tokio::spawn(forward_signals(shutdown.clone()));
        #[cfg(unix)]
        tokio::spawn(reload_on_sighup(reload_tx.clone()));
        // Every plugin and connector check first, as `validate` makes them, so that a start-up
        // refused for bad plugins names all of them, not the first one a build trips on.
        // Plugins compiled here are in the cache when the pipelines are built.
        for p in &loaded {
            inventory.set_starting(&p.config.name, CHECKING, true);
        }
        let checked = {
            let (host, paths) = (host.clone(), paths.to_vec());
            let checking =
                tokio::task::spawn_blocking(move || sluice::runtime::validate(&host, &paths));
            tokio::select! {
                // SIGTERM while a plugin compiles: nothing runs yet, so nothing to drain.
                () = shutdown.cancelled() => return Ok(Vec::new()),
                checked = checking => checked.context("checking the pipelines")?,
            }
        };
        let (_, errors) = checked;
        refuse_on(&errors, "pipelines")?;
        let mut supervisor = Supervisor::new(host, paths.to_vec(), inventory, shutdown.clone());
        supervisor.start(loaded).await?;
        supervisor
            .run(reload_rx, (!no_watch).then_some(reload_tx))
            .await
    });
    // Flush the last spans whatever the outcome (outside the runtime: it blocks). Blocking work
    // still running (a plugin compile a reload started when SIGTERM cut it short) is not waited
    // for: the pipelines have drained, and nothing else runs there.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    if let Some(exporter) = exporter {
        exporter.shutdown();
    }
    ran?;
    Ok(ExitCode::SUCCESS)
}

/// Print every error, then refuse to start anything if there was one.
fn refuse_on(errors: &[sluice::config::ConfigError], in_what: &str) -> anyhow::Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    for e in errors {
        eprintln!("{e}");
    }
    anyhow::bail!(
        "{} error(s) in {in_what}; nothing was started",
        errors.len()
    )
}

/// SIGTERM or SIGINT starts a graceful shutdown; a second one is left to the default handler
/// only after the drain (the deadline bounds it).
async fn forward_signals(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested; draining");
    shutdown.cancel();
}

/// SIGHUP reloads every pipeline file and plugin; the result goes to the log.
#[cfg(unix)]
async fn reload_on_sighup(requests: tokio::sync::mpsc::Sender<ReloadRequest>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGHUP");
            return;
        }
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading");
        let request = ReloadRequest {
            scope: ReloadScope::All,
            cause: "SIGHUP",
            reply: None,
        };
        if requests.send(request).await.is_err() {
            return;
        }
    }
}
