//! `sluice status`: the admin API read from the command line.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;

use super::status::{PipelineList, PipelineStatus};

/// Fetch the status of every pipeline (or of `pipeline`) and render it as a table, or as the
/// API's JSON when `json` is set.
pub async fn status(addr: &str, pipeline: Option<&str>, json: bool) -> anyhow::Result<String> {
    let base = if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.trim_end_matches('/').to_owned()
    } else {
        format!("http://{addr}")
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = match pipeline {
        Some(name) => format!("{base}/pipelines/{}", encode_path_segment(name)),
        None => format!("{base}/pipelines"),
    };
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach the admin server at {base} (is `sluice run` running with its admin server there?)"))?;
    let code = response.status();
    let body = response.text().await?;
    if !code.is_success() {
        anyhow::bail!("{url}: {code}: {}", body.trim());
    }
    if json {
        return Ok(body + "\n");
    }
    let pipelines = match pipeline {
        Some(_) => {
            vec![serde_json::from_str::<PipelineStatus>(&body).context("unexpected answer")?]
        }
        None => {
            serde_json::from_str::<PipelineList>(&body)
                .context("unexpected answer")?
                .pipelines
        }
    };
    let mut out = render(&pipelines, pipeline.is_some());
    if pipeline.is_none() {
        // Pipelines still being built (a handler compiling) are not listed yet: /readyz names
        // them, and what they wait for.
        out.push_str(&starting(&client, &base).await);
    }
    Ok(out)
}

/// One line per pipeline `/readyz` says is starting; nothing if it cannot be read.
async fn starting(client: &reqwest::Client, base: &str) -> String {
    let Ok(response) = client.get(format!("{base}/readyz")).send().await else {
        return String::new();
    };
    let Ok(body) = response.json::<serde_json::Value>().await else {
        return String::new();
    };
    let mut out = String::new();
    for key in ["not_ready", "starting"] {
        for entry in body[key].as_array().into_iter().flatten() {
            if let Some(line) = entry.as_str().filter(|l| l.contains("(starting: ")) {
                let _ = writeln!(out, "starting: {line}");
            }
        }
    }
    out
}

fn render(pipelines: &[PipelineStatus], with_errors: bool) -> String {
    let mut rows = vec![
        [
            "PIPELINE",
            "STATE",
            "IN/S",
            "OUT/S",
            "ERR/S",
            "DLQ/S",
            "IN-FLIGHT",
            "LAG",
            "RECEIVED",
            "DEAD",
            "HANDLERS",
        ]
        .map(str::to_owned),
    ];
    for p in pipelines {
        let handlers: Vec<String> = p
            .handlers
            .iter()
            .map(|h| {
                let short = &h.sha256[..h.sha256.len().min(12)];
                match &h.version {
                    Some(v) => format!("{}@{v} ({short})", h.name),
                    None => format!("{} ({short})", h.name),
                }
            })
            .collect();
        rows.push([
            p.name.clone(),
            if p.ready || p.state != "running" {
                p.state.clone()
            } else {
                format!("{} (source failing)", p.state)
            },
            format!("{:.1}", p.rates.received),
            format!("{:.1}", p.rates.outputs),
            format!("{:.1}", p.rates.errors),
            format!("{:.1}", p.rates.dead_lettered),
            p.in_flight.to_string(),
            p.lag.map_or_else(|| "-".to_owned(), |l| l.to_string()),
            p.totals.received.to_string(),
            p.totals.dead_lettered.to_string(),
            if handlers.is_empty() {
                "-".to_owned()
            } else {
                handlers.join(", ")
            },
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    for p in pipelines.iter().filter(|_| with_errors) {
        for e in &p.last_errors {
            let _ = writeln!(out, "{}  {}  {}", p.name, e.at, e.message);
        }
    }
    if !with_errors {
        for p in pipelines {
            if let Some(e) = p.last_errors.last() {
                let _ = writeln!(out, "last error in {}: {} {}", p.name, e.at, e.message);
            }
            if let Some(e) = p.last_dead_letters.last() {
                let _ = writeln!(
                    out,
                    "last dead letter in {}: {} {}",
                    p.name, e.at, e.message
                );
            }
        }
    }
    out
}

/// Pipeline names are plain, but keep the URL well-formed whatever they hold.
fn encode_path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
