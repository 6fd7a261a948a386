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
use super::status::{PipelineList, PipelineStatus};
use crate::telemetry::exposition;

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
    let not_ready: Vec<String> = state
        .inventory
        .all()
        .iter()
        .filter(|p| !p.stats.is_ready())
        .map(|p| format!("{} ({})", p.name, p.stats.state().as_str()))
        .collect();
    if state.inventory.ready() {
        (StatusCode::OK, Json(json!({ "ready": true }))).into_response()
    } else {
        let body = json!({ "ready": false, "not_ready": not_ready });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

async fn metrics(State(state): Shared) -> Response {
    let text = exposition::render(&state.inventory.all());
    ([(header::CONTENT_TYPE, exposition::CONTENT_TYPE)], text).into_response()
}

async fn list(State(state): Shared) -> Json<PipelineList> {
    let pipelines = state
        .inventory
        .all()
        .iter()
        .map(|p| PipelineStatus::of(p, state.rates.rates(&p.name, &p.stats)))
        .collect();
    Json(PipelineList { pipelines })
}

async fn one(State(state): Shared, Path(name): Path<String>) -> Response {
    match state.inventory.get(&name) {
        Some(p) => Json(PipelineStatus::of(&p, state.rates.rates(&name, &p.stats))).into_response(),
        None => not_found(&name),
    }
}

async fn pause(state: Shared, headers: HeaderMap, name: Path<String>) -> Response {
    set_paused(state, headers, name, true)
}

async fn resume(state: Shared, headers: HeaderMap, name: Path<String>) -> Response {
    set_paused(state, headers, name, false)
}

fn set_paused(
    State(state): Shared,
    headers: HeaderMap,
    Path(name): Path<String>,
    paused: bool,
) -> Response {
    if !authorized(state.token.as_deref(), &headers) {
        let body = json!({ "error": "this call needs `Authorization: Bearer <admin token>`" });
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(body),
        )
            .into_response();
    }
    let Some(p) = state.inventory.get(&name) else {
        return not_found(&name);
    };
    p.stats.set_paused(paused);
    tracing::info!(pipeline = %name, paused, "pause switch set through the admin API");
    Json(PipelineStatus::of(&p, state.rates.rates(&name, &p.stats))).into_response()
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
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    Sha256::digest(given.as_bytes()) == Sha256::digest(token.as_bytes())
}
