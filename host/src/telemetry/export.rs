//! The OTLP/HTTP span exporter: installed at start-up when an endpoint is configured, flushed
//! and stopped at exit. The spans themselves are made by `sluice-trace`.

use opentelemetry::global;

/// The running exporter; flush and stop it with [`Exporter::shutdown`] before the process exits.
#[derive(Debug)]
pub struct Exporter {
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

impl Exporter {
    /// Export what is buffered now.
    pub fn flush(&self) {
        if let Err(err) = self.provider.force_flush() {
            tracing::warn!(error = %err, "flushing spans failed");
        }
    }

    /// Flush and stop. Blocks: call it outside the async runtime.
    pub fn shutdown(self) {
        if let Err(err) = self.provider.shutdown() {
            tracing::warn!(error = %err, "stopping the span exporter failed");
        }
    }
}

/// Where spans go.
#[derive(Debug, Clone, Default)]
pub struct TraceConfig {
    /// OTLP/HTTP base endpoint (`/v1/traces` is appended), e.g. `http://127.0.0.1:4318`.
    /// Default: none, unless `OTEL_EXPORTER_OTLP_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (read by the exporter as usual).
    pub otlp_endpoint: Option<String>,
}

impl TraceConfig {
    /// Tracing is on when an endpoint is configured here or in the standard environment, and
    /// `OTEL_SDK_DISABLED` / `OTEL_TRACES_EXPORTER=none` do not turn it off.
    pub fn wanted(&self) -> bool {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
        {
            return false;
        }
        self.otlp_endpoint.is_some()
            || env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
            || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
    }
}

/// Install the OTLP/HTTP (protobuf) exporter and turn tracing on; `None` when not wanted. The
/// service name, resource attributes and sampler follow the `OTEL_*` variables.
pub fn init(config: &TraceConfig) -> anyhow::Result<Option<Exporter>> {
    use opentelemetry_otlp::WithExportConfig as _;
    if !config.wanted() {
        return Ok(None);
    }
    let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http();
    if let Some(base) = &config.otlp_endpoint {
        exporter = exporter.with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')));
    }
    let exporter = exporter
        .build()
        .map_err(|e| anyhow::anyhow!("OTLP span exporter: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(
            std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "sluice".to_owned()),
        )
        .build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    global::set_tracer_provider(provider.clone());
    sluice_trace::enable();
    Ok(Some(Exporter { provider }))
}
