//! Logs and traces of every role.
//!
//! Logs: `tracing` events as readable text or one JSON object per line; connection-level lines
//! carry the connection's span fields (conn, peer, app, stream). Traces: when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans also go to that OTLP collector over gRPC, with
//! the standard `OTEL_SERVICE_NAME`/`OTEL_RESOURCE_ATTRIBUTES` and the pod's name and namespace
//! (`POD_NAME`, `POD_NAMESPACE`) as resource attributes. [`inject`] and [`extract`] carry the
//! W3C trace context through gRPC metadata, so one trace follows a play across pods.

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue, global};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Keeps the trace exporter alive; dropping it flushes spans still buffered.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber. Must run inside the Tokio runtime (the OTLP exporter's gRPC
/// channel needs it). `RUST_LOG` wins over `filter`.
pub fn init(role: &'static str, format: LogFormat, filter: Option<&str>) -> Telemetry {
    let env_filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter.unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
    };
    let (otel, provider, problem) = match exporter(role) {
        Ok(Some(provider)) => {
            let tracer = provider.tracer("liverelay");
            (
                Some(tracing_opentelemetry::layer().with_tracer(tracer)),
                Some(provider),
                None,
            )
        }
        Ok(None) => (None, None, None),
        Err(e) => (None, None, Some(e)),
    };
    tracing_subscriber::registry()
        .with(env_filter)
        .with(fmt)
        .with(otel)
        .init();
    if let Some(e) = problem {
        tracing::warn!(error = %e, "trace export disabled");
    }
    Telemetry { provider }
}

fn exporter(role: &'static str) -> Result<Option<SdkTracerProvider>, String> {
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| e.to_string())?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(format!("liverelay-{role}"));
    }
    let mut attributes = vec![KeyValue::new("liverelay.role", role)];
    for (var, key) in [
        ("POD_NAME", "k8s.pod.name"),
        ("POD_NAMESPACE", "k8s.namespace.name"),
    ] {
        if let Ok(value) = std::env::var(var) {
            attributes.push(KeyValue::new(key, value));
        }
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.with_attributes(attributes).build())
        .build();
    global::set_text_map_propagator(TraceContextPropagator::new());
    Ok(Some(provider))
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct MetadataExtractor<'a>(&'a MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// Writes `span`'s trace context (`traceparent`) into outgoing gRPC metadata.
pub fn inject(span: &Span, metadata: &mut MetadataMap) {
    let cx = span.context();
    global::get_text_map_propagator(|p| p.inject_context(&cx, &mut MetadataInjector(metadata)));
}

/// Reads a caller's trace context from incoming gRPC metadata.
pub fn extract(metadata: &MetadataMap) -> Context {
    global::get_text_map_propagator(|p| p.extract(&MetadataExtractor(metadata)))
}

/// Makes the current span `span`'s parent in traces, whatever its parent in the logs.
pub fn adopt_current(span: &Span) {
    let _ = span.set_parent(Span::current().context());
}

/// Makes `span` a child of the remote caller's span.
pub fn set_remote_parent(span: &Span, metadata: &MetadataMap) {
    let _ = span.set_parent(extract(metadata));
}
