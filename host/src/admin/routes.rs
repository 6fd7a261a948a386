//! The admin API's routes.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::AdminState;
use super::status::{HostStatus, PipelineList, PipelineStatus};
use crate::engine::PipelineState;
use crate::runtime::{ReloadRequest, ReloadScope};
use crate::telemetry::{PipelineEntry, exposition};

/// The dashboard: one self-contained page, embedded so nothing is fetched at run time.
const DASHBOARD: &str = include_str!("dashboard.html");

type Shared = State<Arc<AdminState>>;

pub(super) fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/pipelines", get(list))
        .route("/pipelines/{name}", get(one))
        .route("/pipelines/{name}/pause", post(pause))
        .route("/pipelines/{name}/resume", post(resume))
        .route("/pipelines/{name}/reload", post(reload_one))
        .route("/reload", post(reload_all).get(last_reload))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::guard::guard,
        ))
        .with_state(state)
}

async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD)
}

/// The process is up and serving.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when every pipeline runs with a source that answers.
async fn readyz(State(state): Shared) -> Response {
    let (blocking, reloading): (Vec<_>, Vec<_>) = state
        .inventory
        .starting()
        .into_iter()
        .partition(|(_, _, blocks)| *blocks);
    let named = |list: Vec<(String, String, bool)>| -> Vec<String> {
        list.into_iter()
            .map(|(name, what, _)| format!("{name} (starting: {what})"))
            .collect()
    };
    // New pipelines a reload is building, shown beside the answer either way.
    let starting = named(reloading);
    let mut not_ready = named(blocking);
    not_ready.extend(
        state
            .inventory
            .all()
            .iter()
            .filter(|p| p.stats.state() != PipelineState::Stopped && !p.stats.is_ready())
            .map(|p| format!("{} ({})", p.name, p.stats.state().as_str())),
    );
    let ready = state.inventory.ready();
    let mut body = if ready {
        json!({ "ready": true })
    } else {
        json!({ "ready": false, "not_ready": not_ready })
    };
    if !starting.is_empty() {
        body["starting"] = json!(starting);
    }
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(state): Shared) -> Response {
    let text = exposition::render(&state.inventory);
    ([(header::CONTENT_TYPE, exposition::CONTENT_TYPE)], text).into_response()
}

async fn list(State(state): Shared, headers: HeaderMap) -> Json<PipelineList> {
    let pipelines = state
        .inventory
        .all()
        .iter()
        .map(|p| status_for(&state, &headers, p))
        .collect();
    let host = HostStatus::of(state.started, state.inventory.reloads());
    Json(PipelineList {
        pipelines,
        host: Some(host),
    })
}

async fn one(State(state): Shared, headers: HeaderMap, Path(name): Path<String>) -> Response {
    match state.inventory.get(&name) {
        Some(p) => Json(status_for(&state, &headers, &p)).into_response(),
        None => not_found(&name),
    }
}

/// A pipeline's status for this request. What its dead letters held (header values, payload
/// preview) goes only to a caller who may change things: one with the admin token, or any
/// caller on loopback when there is no token. A read-only server (beyond loopback, no token)
/// or a caller without the token gets the rest.
fn status_for(state: &AdminState, headers: &HeaderMap, p: &PipelineEntry) -> PipelineStatus {
    let mut status = PipelineStatus::of(p, state.rates.rates(&p.name, &p.stats));
    if state.read_only || !authorized(state.token.as_deref(), headers) {
        status.withhold_contents();
    }
    status
}

async fn pause(state: Shared, headers: HeaderMap, name: Path<String>) -> Response {
    set_paused(state, headers, name, true).await
}

async fn resume(state: Shared, headers: HeaderMap, name: Path<String>) -> Response {
    set_paused(state, headers, name, false).await
}

/// Set the pause switch, then answer with the state once the pipeline has acted on it: it
/// pauses before its next pull, so the answer waits (up to [`PAUSE_ANSWER_WAIT`]) for a pull
/// under way to finish. Past that, or for a pipeline that is not running, it answers with the
/// state as it is.
async fn set_paused(
    State(state): Shared,
    headers: HeaderMap,
    Path(name): Path<String>,
    paused: bool,
) -> Response {
    if let Some(refusal) = refuse_change(&state, &headers) {
        return refusal;
    }
    let Some(p) = state.inventory.get(&name) else {
        return not_found(&name);
    };
    p.stats.set_paused(paused);
    tracing::info!(pipeline = %name, paused, "pause switch set through the admin API");
    // The state the switch moves the pipeline out of.
    let from = if paused {
        PipelineState::Running
    } else {
        PipelineState::Paused
    };
    let waited = std::time::Instant::now();
    while p.stats.state() == from && waited.elapsed() < PAUSE_ANSWER_WAIT {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Json(PipelineStatus::of(&p, state.rates.rates(&name, &p.stats))).into_response()
}

/// How long `POST …/pause` and `…/resume` wait for the pipeline to act before they answer.
const PAUSE_ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

async fn reload_all(State(state): Shared, headers: HeaderMap) -> Response {
    reload(&state, &headers, ReloadScope::All).await
}

async fn reload_one(
    State(state): Shared,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if state.inventory.get(&name).is_none() {
        return not_found(&name);
    }
    reload(&state, &headers, ReloadScope::Pipeline(name)).await
}

/// Run a reload and answer with its report: 200 when everything applied, 422 when a change was
/// refused (the running versions stayed).
async fn reload(state: &AdminState, headers: &HeaderMap, scope: ReloadScope) -> Response {
    if let Some(refusal) = refuse_change(state, headers) {
        return refusal;
    }
    let Some(requests) = &state.reload else {
        let body = json!({ "error": "this host does not reload" });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    };
    let (request, report) = ReloadRequest::with_reply(scope, "admin");
    if requests.send(request).await.is_err() {
        let body = json!({ "error": "the host is shutting down" });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    match report.await {
        Ok(report) if report.ok => Json(report).into_response(),
        Ok(report) => (StatusCode::UNPROCESSABLE_ENTITY, Json(report)).into_response(),
        Err(_) => {
            let body = json!({ "error": "the host is shutting down" });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// `GET /reload`: the last reload that changed (or refused) something.
async fn last_reload(State(state): Shared) -> Response {
    let last = state
        .inventory
        .reloads()
        .last
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    match last {
        Some(report) => Json(report).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no reload yet" })),
        )
            .into_response(),
    }
}

/// Why a state-changing call is refused, if it is: a missing or wrong token, a server open
/// beyond loopback without a token, or a browser request from another origin (a page the
/// operator visits must not be able to pause pipelines on their loopback).
fn refuse_change(state: &AdminState, headers: &HeaderMap) -> Option<Response> {
    if state.read_only {
        let body = json!({ "error": "the admin server listens beyond loopback without a token; start it with --admin-token to allow changes" });
        return Some((StatusCode::FORBIDDEN, Json(body)).into_response());
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        // An Origin that is not text cannot be compared: refused, not taken as absent.
        let Ok(origin) = origin.to_str() else {
            let body = json!({ "error": "an Origin header that is not ASCII text is refused" });
            return Some((StatusCode::FORBIDDEN, Json(body)).into_response());
        };
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if origin_host != host {
            let body = json!({ "error": format!("cross-origin request from {origin} refused") });
            return Some((StatusCode::FORBIDDEN, Json(body)).into_response());
        }
    }
    if !authorized(state.token.as_deref(), headers) {
        let body = json!({ "error": "this call needs `Authorization: Bearer <admin token>`" });
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(body),
            )
                .into_response(),
        );
    }
    None
}

fn not_found(name: &str) -> Response {
    let body = json!({ "error": format!("no pipeline named `{name}`") });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

/// Without a configured token every call is allowed (the server listens on loopback by
/// default). Digests are compared, so the comparison's time says nothing about the token.
fn authorized(token: Option<&str>, headers: &HeaderMap) -> bool {
    let Some(token) = token else {
        return true;
    };
    // The scheme is case-insensitive (RFC 7235).
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim());
    Sha256::digest(given.as_bytes()) == Sha256::digest(token.as_bytes())
}
