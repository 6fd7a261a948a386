//! What every request to the admin server must pass before a route sees it: a `Host` the server
//! answers to, and no body larger than the API ever needs.
//!
//! The `Host` check stops DNS rebinding: a page on a domain the attacker points at 127.0.0.1
//! would otherwise reach the loopback admin server from the operator's browser, with the page's
//! own name as `Host` and `Origin` (so an Origin-against-Host comparison alone passes). A
//! browser always sends the name it resolved; an IP literal or a loopback name cannot be
//! rebound, and other names must be configured (`--admin-allowed-host`).

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;

use super::AdminState;

/// Largest request body accepted, in bytes: no call of the API takes one today.
pub const MAX_BODY: u64 = 64 * 1024;

/// Refuse a request whose `Host` the server does not answer to, or whose body is too large,
/// before any route runs.
pub(super) async fn guard(
    State(state): State<Arc<AdminState>>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(host) = req.headers().get(header::HOST) {
        let allowed = host
            .to_str()
            .ok()
            .and_then(host_name)
            .is_some_and(|name| host_allowed(&name, &state.allowed_hosts));
        if !allowed {
            let shown = String::from_utf8_lossy(host.as_bytes()).into_owned();
            let body = json!({ "error": format!(
                "Host `{shown}` is not a name this admin server answers to (loopback names and IP addresses are; add others with --admin-allowed-host)"
            )});
            return (StatusCode::MISDIRECTED_REQUEST, Json(body)).into_response();
        }
    }
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if length.is_some_and(|n| n > MAX_BODY) {
        let body = json!({ "error": format!("request body over {MAX_BODY} bytes refused") });
        return (StatusCode::PAYLOAD_TOO_LARGE, Json(body)).into_response();
    }
    if req.headers().contains_key(header::TRANSFER_ENCODING) {
        let body = json!({ "error": "a request body needs a Content-Length" });
        return (StatusCode::LENGTH_REQUIRED, Json(body)).into_response();
    }
    next.run(req).await
}

/// The name in a `Host` value (`name`, `name:port`, `[v6]:port`), lowercased; `None` when it is
/// not a host value at all.
fn host_name(host: &str) -> Option<String> {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        inside
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return None,
            None => host,
        }
    };
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    valid.then(|| name.to_ascii_lowercase())
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.chars().all(|c| c.is_ascii_digit())
}

/// IP literals and loopback names cannot be rebound; any other name must be configured.
fn host_allowed(name: &str, configured: &[String]) -> bool {
    name.parse::<IpAddr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
        || configured.iter().any(|c| c.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_read_and_judged() {
        assert_eq!(host_name("127.0.0.1:9477").as_deref(), Some("127.0.0.1"));
        assert_eq!(host_name("[::1]:9477").as_deref(), Some("::1"));
        assert_eq!(host_name("LocalHost").as_deref(), Some("localhost"));
        assert_eq!(
            host_name("rebind.example:9477").as_deref(),
            Some("rebind.example")
        );
        assert_eq!(host_name("evil.example:x"), None);
        assert_eq!(host_name("a b"), None);
        let none: Vec<String> = Vec::new();
        assert!(host_allowed("127.0.0.1", &none));
        assert!(host_allowed("::1", &none));
        assert!(host_allowed("localhost", &none));
        assert!(
            host_allowed("10.0.0.7", &none),
            "a pod IP: probes and scrapes"
        );
        assert!(!host_allowed("rebind.example", &none));
        assert!(host_allowed(
            "sluice.ops.svc",
            &["sluice.ops.svc".to_owned()]
        ));
    }
}
