//! OpenTelemetry trace export over OTLP/gRPC, off unless `[telemetry] otlp_endpoint` is set.
//!
//! The `rpc` span of every call ([`crate::server::trace`]) already carries the call's trace id and span id (its
//! caller's, from `traceparent`, or a new trace); this layer turns it and the spans opened inside it (history
//! reads and writes, case-database work) into OTLP spans with those same ids, so the reply's `traceparent`, the log
//! lines and the collector all name one trace. Spans of a trace whose `traceparent` was not sampled (flags 00), or
//! that `telemetry.sample_ratio` leaves out, are not exported.
//!
//! Export never slows a call: a closed span goes into a bounded queue (full: the span is dropped and counted), and
//! one task sends batches (up to [`BATCH`] spans, at least every [`FLUSH_EVERY`]) to the collector. A batch the
//! collector refuses or does not answer within [`EXPORT_TIMEOUT`] is dropped and counted, not retried: traces are
//! a diagnostic aid, never a record (the audit chain and the case database are). At shutdown the queue is flushed.
//!
//! Spans carry what the logs carry (method, contact id, hashed keys' absence: never a number or a device id).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use self::proto::collector::trace::v1::trace_service_client::TraceServiceClient;
use self::proto::collector::trace::v1::ExportTraceServiceRequest;
use self::proto::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use self::proto::resource::v1::Resource;
use self::proto::trace::v1::{span::SpanKind, status, ResourceSpans, ScopeSpans, Span, Status};

/// The vendored OTLP contract (`service/otlp/`, from the opentelemetry-proto project): messages, the client, and a
/// server for tests.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    /// `opentelemetry.proto.common`
    pub mod common {
        /// `opentelemetry.proto.common.v1`
        pub mod v1 {
            tonic::include_proto!("opentelemetry.proto.common.v1");
        }
    }
    /// `opentelemetry.proto.resource`
    pub mod resource {
        /// `opentelemetry.proto.resource.v1`
        pub mod v1 {
            tonic::include_proto!("opentelemetry.proto.resource.v1");
        }
    }
    /// `opentelemetry.proto.trace`
    pub mod trace {
        /// `opentelemetry.proto.trace.v1`
        pub mod v1 {
            tonic::include_proto!("opentelemetry.proto.trace.v1");
        }
    }
    /// `opentelemetry.proto.collector`
    pub mod collector {
        /// `opentelemetry.proto.collector.trace`
        pub mod trace {
            /// `opentelemetry.proto.collector.trace.v1`
            pub mod v1 {
                tonic::include_proto!("opentelemetry.proto.collector.trace.v1");
            }
        }
    }
}

/// Closed spans waiting for export; beyond this, spans are dropped (counted).
pub const QUEUE: usize = 8192;
/// The most spans in one export request.
pub const BATCH: usize = 512;
/// How long a span may wait for a batch to fill.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How long the collector has to answer one export.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Spans the collector accepted since start-up.
static EXPORTED: AtomicU64 = AtomicU64::new(0);
/// Spans dropped because the queue was full.
static DROPPED_QUEUE_FULL: AtomicU64 = AtomicU64::new(0);
/// Spans dropped because their export failed.
static DROPPED_EXPORT_FAILED: AtomicU64 = AtomicU64::new(0);

/// Counts since start-up, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Spans the collector accepted.
    pub exported: u64,
    /// Spans dropped because the queue was full.
    pub dropped_queue_full: u64,
    /// Spans dropped because their export failed.
    pub dropped_export_failed: u64,
}

/// The export counts so far.
pub fn counts() -> Counts {
    Counts {
        exported: EXPORTED.load(Ordering::Relaxed),
        dropped_queue_full: DROPPED_QUEUE_FULL.load(Ordering::Relaxed),
        dropped_export_failed: DROPPED_EXPORT_FAILED.load(Ordering::Relaxed),
    }
}

/// `[telemetry]`
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// An OTLP/gRPC collector, `http://HOST:PORT` (e.g. an OpenTelemetry Collector on this host or in this pod,
    /// which forwards over TLS wherever traces are kept); unset: no export.
    pub otlp_endpoint: Option<String>,
    /// The share of new traces exported, 0.0 ..= 1.0 (a call's `traceparent` decides for its own trace).
    pub sample_ratio: f64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings { otlp_endpoint: None, sample_ratio: 1.0 }
    }
}

impl TelemetrySettings {
    /// What is wrong with these settings, naming the key.
    pub fn problem(&self) -> Option<String> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Some(format!("telemetry.sample_ratio: {} must be between 0.0 and 1.0", self.sample_ratio));
        }
        let endpoint = self.otlp_endpoint.as_deref()?;
        let valid = endpoint.parse::<http::Uri>().ok().is_some_and(|uri| {
            uri.scheme_str() == Some("http")
                && uri.authority().is_some_and(|authority| authority.port_u16().is_some())
                && uri.path() == "/"
        });
        (!valid).then(|| {
            format!(
                "telemetry.otlp_endpoint: {endpoint:?} must be http://HOST:PORT (an OTLP/gRPC collector, e.g. \
                 http://127.0.0.1:4317; run a collector beside saring to forward over TLS)"
            )
        })
    }
}

/// The layer that turns spans into OTLP spans, and the queue it fills.
pub fn layer() -> (OtlpLayer, mpsc::Receiver<Span>) {
    let (sender, receiver) = mpsc::channel(QUEUE);
    (OtlpLayer { sender }, receiver)
}

/// A [`Layer`] recording saring's spans for export (see the module's documentation).
#[derive(Debug, Clone)]
pub struct OtlpLayer {
    sender: mpsc::Sender<Span>,
}

/// What the layer keeps of an open span.
struct Open {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_span_id: Option<[u8; 8]>,
    sampled: bool,
    name: String,
    kind: SpanKind,
    start_unix_nano: u64,
    attributes: Vec<KeyValue>,
    /// The gRPC status a refused call was answered with.
    grpc_status: Option<i64>,
}

/// A span's fields, read by the layer: the trace context of an `rpc` span, the rest as attributes.
#[derive(Default)]
struct Fields {
    trace_id: Option<[u8; 16]>,
    span_id: Option<[u8; 8]>,
    parent_id: Option<[u8; 8]>,
    sampled: Option<bool>,
    method: Option<String>,
    grpc_status: Option<i64>,
    attributes: Vec<KeyValue>,
}

impl Fields {
    fn text(&mut self, field: &Field, text: String) {
        match field.name() {
            "trace_id" => self.trace_id = hex_bytes(&text),
            "span_id" => self.span_id = hex_bytes(&text),
            "parent_id" => self.parent_id = hex_bytes(&text),
            // The call's path, `/saring.v1.Screening/ScoreContact`: the semantic conventions' service and method.
            "method" => {
                let (service, method) = text.trim_start_matches('/').split_once('/').unwrap_or(("", &text));
                let string = |value: &str| any_value::Value::StringValue(value.to_owned());
                self.attributes.push(attribute("rpc.system", string("grpc")));
                self.attributes.push(attribute("rpc.service", string(service)));
                self.attributes.push(attribute("rpc.method", string(method)));
                self.method = Some(text);
            }
            name => self.attributes.push(attribute(name, any_value::Value::StringValue(text))),
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.text(field, format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value.to_owned());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        match field.name() {
            "sampled" => self.sampled = Some(value),
            name => self.attributes.push(attribute(name, any_value::Value::BoolValue(value))),
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        match field.name() {
            // The semantic conventions' name; a non-zero code makes the span an error.
            "grpc_status" => {
                self.grpc_status = Some(value);
                self.attributes.push(attribute("rpc.grpc.status_code", any_value::Value::IntValue(value)));
            }
            name => self.attributes.push(attribute(name, any_value::Value::IntValue(value))),
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        let value = i64::try_from(value).unwrap_or(i64::MAX);
        self.attributes.push(attribute(field.name(), any_value::Value::IntValue(value)));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.attributes.push(attribute(field.name(), any_value::Value::DoubleValue(value)));
    }
}

fn attribute(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(value) }), ..KeyValue::default() }
}

fn hex_bytes<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut bytes = [0u8; N];
    hex::decode_to_slice(text, &mut bytes).ok()?;
    Some(bytes)
}

fn unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(0))
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let Some(span) = context.span(id) else { return };
        let mut fields = Fields::default();
        attributes.record(&mut fields);
        let name = attributes.metadata().name();
        let open = match (fields.trace_id, fields.span_id) {
            // A call's `rpc` span: the trace context the call carries.
            (Some(trace_id), Some(span_id)) => Open {
                trace_id,
                span_id,
                parent_span_id: fields.parent_id,
                sampled: fields.sampled.unwrap_or(true),
                name: fields.method.as_deref().map_or(name, |method| method.trim_start_matches('/')).to_owned(),
                kind: SpanKind::Server,
                start_unix_nano: unix_nanos(),
                attributes: fields.attributes,
                grpc_status: fields.grpc_status,
            },
            // A span inside one: the same trace, a new span id, its parent's as the parent.
            _ => {
                let Some(parent) = span.parent() else { return };
                let extensions = parent.extensions();
                let Some(outer) = extensions.get::<Open>() else { return };
                Open {
                    trace_id: outer.trace_id,
                    span_id: crate::server::trace::new_span_id(),
                    parent_span_id: Some(outer.span_id),
                    sampled: outer.sampled,
                    name: name.to_owned(),
                    kind: SpanKind::Internal,
                    start_unix_nano: unix_nanos(),
                    attributes: fields.attributes,
                    grpc_status: fields.grpc_status,
                }
            }
        };
        span.extensions_mut().insert(open);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, context: Context<'_, S>) {
        let Some(span) = context.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(open) = extensions.get_mut::<Open>() {
            let mut fields = Fields::default();
            values.record(&mut fields);
            open.attributes.extend(fields.attributes);
            if let Some(parent) = fields.parent_id {
                open.parent_span_id = Some(parent);
            }
            if let Some(sampled) = fields.sampled {
                open.sampled = sampled;
            }
            if let Some(code) = fields.grpc_status {
                open.grpc_status = Some(code);
            }
        }
    }

    fn on_close(&self, id: Id, context: Context<'_, S>) {
        let Some(span) = context.span(&id) else { return };
        let Some(open) = span.extensions_mut().remove::<Open>() else { return };
        if !open.sampled {
            return;
        }
        // Sampled; whether the parent is known (bit 8) and is another process's (bit 9): a call's caller.
        let remote = open.kind == SpanKind::Server && open.parent_span_id.is_some();
        let flags = 1 | 0x100 | if remote { 0x200 } else { 0 };
        let exported = Span {
            trace_id: open.trace_id.to_vec(),
            span_id: open.span_id.to_vec(),
            parent_span_id: open.parent_span_id.map(|parent| parent.to_vec()).unwrap_or_default(),
            name: open.name,
            kind: open.kind as i32,
            start_time_unix_nano: open.start_unix_nano,
            end_time_unix_nano: unix_nanos(),
            attributes: open.attributes,
            flags,
            status: open
                .grpc_status
                .filter(|code| *code != 0)
                .map(|code| Status { message: format!("gRPC status {code}"), code: status::StatusCode::Error as i32 }),
            ..Span::default()
        };
        if self.sender.try_send(exported).is_err() {
            DROPPED_QUEUE_FULL.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Who exports: `service.name` saring, its version, and this replica.
pub fn resource(instance: &str) -> Resource {
    let text = |key: &str, value: &str| attribute(key, any_value::Value::StringValue(value.to_owned()));
    Resource {
        attributes: vec![
            text("service.name", "saring"),
            text("service.version", env!("CARGO_PKG_VERSION")),
            text("service.instance.id", instance),
        ],
        ..Resource::default()
    }
}

/// Sends the spans `queue` receives to `endpoint` in batches until `stop` resolves, then sends what is still
/// queued (within [`EXPORT_TIMEOUT`]) and returns.
pub async fn export(
    endpoint: String,
    mut queue: mpsc::Receiver<Span>,
    resource: Resource,
    stop: impl std::future::Future<Output = ()>,
) {
    let channel = match tonic::transport::Endpoint::from_shared(endpoint.clone()) {
        Ok(endpoint) => endpoint.connect_timeout(EXPORT_TIMEOUT).timeout(EXPORT_TIMEOUT).connect_lazy(),
        Err(error) => {
            tracing::error!(%endpoint, %error, "telemetry.otlp_endpoint: not an endpoint; traces are not exported");
            return;
        }
    };
    let mut client = TraceServiceClient::new(channel);
    tracing::info!(%endpoint, "exporting traces (OTLP/gRPC)");
    let mut batch = Vec::with_capacity(BATCH);
    tokio::pin!(stop);
    let mut failing = false;
    loop {
        let received = tokio::select! {
            () = &mut stop => break,
            received = queue.recv_many(&mut batch, BATCH) => received,
        };
        if received == 0 {
            break;
        }
        // Let a batch fill for a moment rather than send a request per span.
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        while batch.len() < BATCH {
            let wanted = BATCH - batch.len();
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                received = queue.recv_many(&mut batch, wanted) => if received == 0 { break },
            }
        }
        send(&mut client, &resource, &mut batch, &mut failing).await;
    }
    while let Ok(span) = queue.try_recv() {
        batch.push(span);
        if batch.len() == BATCH {
            send(&mut client, &resource, &mut batch, &mut failing).await;
        }
    }
    send(&mut client, &resource, &mut batch, &mut failing).await;
}

/// Sends `batch` (emptying it); a failure is counted and logged when it starts, not at every batch.
async fn send(
    client: &mut TraceServiceClient<tonic::transport::Channel>,
    resource: &Resource,
    batch: &mut Vec<Span>,
    failing: &mut bool,
) {
    if batch.is_empty() {
        return;
    }
    let count = batch.len() as u64;
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "saring".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..InstrumentationScope::default()
                }),
                spans: std::mem::take(batch),
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    };
    match tokio::time::timeout(EXPORT_TIMEOUT, client.export(request)).await {
        Ok(Ok(reply)) => {
            let rejected = reply.into_inner().partial_success.map_or(0, |partial| partial.rejected_spans);
            let rejected = u64::try_from(rejected).unwrap_or(0).min(count);
            EXPORTED.fetch_add(count - rejected, Ordering::Relaxed);
            DROPPED_EXPORT_FAILED.fetch_add(rejected, Ordering::Relaxed);
            if *failing {
                tracing::info!("trace export recovered");
                *failing = false;
            }
        }
        failed => {
            DROPPED_EXPORT_FAILED.fetch_add(count, Ordering::Relaxed);
            if !*failing {
                let error = match failed {
                    Ok(Err(status)) => status.to_string(),
                    _ => format!("no answer within {EXPORT_TIMEOUT:?}"),
                };
                tracing::warn!(%error, spans = count, "trace export failed; spans are dropped until it recovers");
                *failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_and_ratio_are_validated_naming_the_key() {
        let settings = |endpoint: Option<&str>, sample_ratio: f64| TelemetrySettings {
            otlp_endpoint: endpoint.map(str::to_owned),
            sample_ratio,
        };
        assert_eq!(settings(None, 1.0).problem(), None);
        assert_eq!(settings(Some("http://127.0.0.1:4317"), 0.25).problem(), None);
        assert_eq!(settings(Some("http://collector.local:4317/"), 0.0).problem(), None);
        for bad in ["127.0.0.1:4317", "https://collector:4317", "http://collector", "http://c:4317/v1/traces", ""] {
            let problem = settings(Some(bad), 1.0).problem().unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(problem.starts_with("telemetry.otlp_endpoint"), "{problem}");
        }
        for bad in [-0.1, 1.5, f64::NAN] {
            assert!(settings(None, bad).problem().unwrap().starts_with("telemetry.sample_ratio"));
        }
    }

    #[test]
    fn ids_are_read_back_from_their_hex() {
        assert_eq!(hex_bytes::<2>("00ff"), Some([0, 255]));
        assert_eq!(hex_bytes::<2>("00f"), None);
        assert_eq!(hex_bytes::<2>("zzzz"), None);
    }
}
