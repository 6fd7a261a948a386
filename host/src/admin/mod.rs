//! The admin server (axum): health and readiness, Prometheus metrics, the pipelines' status with
//! pause and resume, and the live dashboard. Loopback by default; state-changing calls need the
//! bearer token when one is configured.

pub mod client;
mod guard;
mod routes;
pub mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::runtime::ReloadRequest;

use crate::telemetry::{Inventory, RateSampler};

/// Where the admin server listens when not told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9477";

/// How the admin server runs.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Address to listen on. Default: [`DEFAULT_LISTEN`] (loopback only).
    pub listen: SocketAddr,
    /// When set, `POST` calls need `Authorization: Bearer <token>`. Default: none.
    pub token: Option<String>,
    /// Host names requests may name besides loopback names and IP addresses (a Kubernetes
    /// Service's name, say). Default: none.
    pub allowed_hosts: Vec<String>,
}

/// Shared by every request.
pub(crate) struct AdminState {
    pub inventory: Inventory,
    pub rates: RateSampler,
    pub token: Option<String>,
    /// State-changing calls are refused: the server listens beyond loopback without a token.
    pub read_only: bool,
    /// Where reload requests go (the supervisor).
    pub reload: Option<mpsc::Sender<ReloadRequest>>,
    /// Names a request's `Host` may be besides loopback names and IP addresses.
    pub allowed_hosts: Vec<String>,
    /// When the admin server started, with the host: its uptime.
    pub started: std::time::SystemTime,
}

/// Bind and serve until `shutdown`; returns the bound address (useful with port 0).
pub async fn serve(
    config: AdminConfig,
    inventory: Inventory,
    reload: Option<mpsc::Sender<ReloadRequest>>,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        // Most often another `sluice run` on the same machine: say how to run a second one.
        Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => anyhow::bail!(
            "admin server: cannot listen on {}: the address is in use (another `sluice run`?); choose another with --admin-addr (e.g. --admin-addr 127.0.0.1:0 for any free port) or turn it off with --admin-addr off",
            config.listen
        ),
        Err(err) => {
            return Err(err)
                .with_context(|| format!("admin server: cannot listen on {}", config.listen));
        }
    };
    let addr = listener.local_addr()?;
    let token = config.token.filter(|t| !t.is_empty());
    let read_only = token.is_none() && !addr.ip().is_loopback();
    if read_only {
        tracing::warn!(%addr, "the admin server listens beyond loopback without a token: pause, resume and reload are refused (set --admin-token)");
    }
    let state = Arc::new(AdminState {
        inventory,
        rates: RateSampler::default(),
        token,
        read_only,
        reload,
        allowed_hosts: config.allowed_hosts,
        started: std::time::SystemTime::now(),
    });
    tokio::spawn(sample_rates(state.clone(), shutdown.clone()));
    let app = routes::router(state);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(err) = served {
            tracing::warn!(error = %err, "admin server stopped");
        }
    });
    tracing::info!(%addr, "admin server listening");
    Ok(addr)
}

async fn sample_rates(state: Arc<AdminState>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => state.rates.sample(&state.inventory),
        }
    }
}
