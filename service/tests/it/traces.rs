//! Traces reach an OpenTelemetry collector: the real binary exports over OTLP/gRPC to a collector served here (the
//! OTLP TraceService on a real socket). A call's span carries its caller's trace and parent, the same span id the
//! reply's `traceparent` names, and the contact id; the history read inside it is its child; an unsampled trace
//! is not exported; the last calls' spans are flushed at shutdown; a collector that is not there costs the calls
//! nothing and is counted.

use std::io::{Read, Write};
use std::sync::Arc;

use parking_lot::Mutex;
use saring::auth::Role;
use saring::otlp::proto::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use saring::otlp::proto::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use saring::otlp::proto::common::v1::{any_value, KeyValue};
use saring::otlp::proto::trace::v1::span::SpanKind;
use saring::otlp::proto::trace::v1::status::StatusCode;
use saring::otlp::proto::trace::v1::Span;

use crate::common::process::{ClosedPort, SaringProcess};
use crate::common::{connect, prank_outcome, sample_contact, screening, Bearer};

const NUMBER: &str = "0812-3456-7001";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// An OTLP collector that keeps what it receives: each span with its resource's `service.name`.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for resource_spans in request.into_inner().resource_spans {
            let attributes = resource_spans.resource.map(|resource| resource.attributes).unwrap_or_default();
            let service = text(&attributes, "service.name").unwrap_or_default();
            for scope in resource_spans.scope_spans {
                self.spans.lock().extend(scope.spans.into_iter().map(|span| (service.clone(), span)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|attribute| attribute.key == key).and_then(|attribute| {
        match attribute.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(text) => Some(text.clone()),
            _ => None,
        }
    })
}

/// Serves a collector on a port of its own (bound here and kept: no other process can take it).
async fn collector() -> (Collector, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let collector = Collector::default();
    let service = TraceServiceServer::new(collector.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    (collector, format!("http://{address}"))
}

fn traced<T>(message: T, flags: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("traceparent", format!("00-{TRACE}-{PARENT}-{flags}").parse().unwrap());
    request
}

/// The span id a reply's `traceparent` names.
fn reply_span_id<T>(reply: &tonic::Response<T>) -> String {
    let value = reply.metadata().get("traceparent").unwrap().to_str().unwrap();
    value.split('-').nth(2).unwrap().to_owned()
}

#[tokio::test]
async fn calls_are_exported_as_spans_of_their_callers_trace_and_flushed_at_shutdown() {
    let (collector, endpoint) = collector().await;
    let saring = SaringProcess::spawn(&[], &[("SARING__TELEMETRY__OTLP_ENDPOINT", endpoint.as_str())]);
    let channel = connect(saring.url()).await;
    let mut routing = screening(&channel, Bearer::of(Role::Routing));

    let scored = routing.score_contact(traced(sample_contact("otlp-1", Some(NUMBER)), "01")).await.unwrap();
    let score_span = reply_span_id(&scored);
    let recorded = routing.record_outcome(traced(prank_outcome("otlp-1", None), "01")).await.unwrap();
    let record_span = reply_span_id(&recorded);
    // A refused call: its span says so.
    let mut refused = sample_contact("otlp-refused", Some(NUMBER));
    refused.region = "Nowhere".into();
    let refused = routing.score_contact(traced(refused, "01")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    // The caller did not sample this trace: nothing of it is exported.
    routing.score_contact(traced(sample_contact("otlp-unsampled", Some(NUMBER)), "00")).await.unwrap();
    // No traceparent: a new trace, sampled (telemetry.sample_ratio defaults to 1).
    let fresh = routing.score_contact(sample_contact("otlp-fresh", Some(NUMBER))).await.unwrap();
    let fresh_trace = fresh.metadata().get("traceparent").unwrap().to_str().unwrap()[3..35].to_owned();
    drop((routing, channel));
    // SIGTERM right away: the last calls' spans are still in the queue, and the shutdown flushes them.
    let (clean, log) = tokio::task::spawn_blocking(move || saring.terminate()).await.unwrap();
    assert!(clean, "{log:?}");

    let spans = collector.spans.lock().clone();
    assert!(spans.iter().all(|(service, _)| service == "saring"), "the resource names the service");
    let find = |name: &str, span_id: &str| {
        spans
            .iter()
            .map(|(_, span)| span)
            .find(|span| span.name == name && hex::encode(&span.span_id) == span_id)
            .unwrap_or_else(|| panic!("no {name} span {span_id} among {spans:#?}"))
            .clone()
    };
    let score = find("saring.v1.Screening/ScoreContact", &score_span);
    assert_eq!(hex::encode(&score.trace_id), TRACE, "the caller's trace");
    assert_eq!(hex::encode(&score.parent_span_id), PARENT, "the caller's span is the parent");
    assert_eq!(score.kind, SpanKind::Server as i32);
    assert_eq!(text(&score.attributes, "contact_id").as_deref(), Some("otlp-1"));
    assert_eq!(text(&score.attributes, "rpc.service").as_deref(), Some("saring.v1.Screening"));
    assert_eq!(text(&score.attributes, "rpc.method").as_deref(), Some("ScoreContact"));
    assert!(score.end_time_unix_nano >= score.start_time_unix_nano && score.start_time_unix_nano > 0);
    assert_eq!(score.status, None, "an answered call is no error");
    let refused: Vec<&Span> = spans
        .iter()
        .map(|(_, span)| span)
        .filter(|span| span.name == "saring.v1.Screening/ScoreContact" && span.status.is_some())
        .collect();
    assert_eq!(refused.len(), 1, "the refused call is the one error: {spans:#?}");
    assert_eq!(refused[0].status.as_ref().unwrap().code, StatusCode::Error as i32);
    let code = refused[0].attributes.iter().find(|attribute| attribute.key == "rpc.grpc.status_code");
    assert_eq!(
        code.and_then(|attribute| attribute.value.clone()).and_then(|value| value.value),
        Some(any_value::Value::IntValue(3))
    );
    let record = find("saring.v1.Screening/RecordOutcome", &record_span);
    assert_eq!(hex::encode(&record.trace_id), TRACE);

    let children = |parent: &Span, name: &str| {
        spans
            .iter()
            .map(|(_, span)| span)
            .filter(|span| span.name == name && span.parent_span_id == parent.span_id)
            .cloned()
            .collect::<Vec<_>>()
    };
    let load = children(&score, "history.load");
    assert_eq!(load.len(), 1, "the history read inside the call is its child: {spans:#?}");
    assert_eq!(load[0].trace_id, score.trace_id);
    assert_eq!(load[0].kind, SpanKind::Internal as i32);
    assert_eq!(text(&load[0].attributes, "contact_id").as_deref(), Some("otlp-1"));
    assert!(load[0].start_time_unix_nano >= score.start_time_unix_nano);
    assert_eq!(children(&record, "history.record").len(), 1, "the history write is the outcome call's child");
    let case_database = children(&record, "cases.record");
    assert_eq!(case_database.len(), 1, "so is the case database's part");
    assert_eq!(text(&case_database[0].attributes, "contact_id").as_deref(), Some("otlp-1"));

    assert!(
        spans.iter().all(|(_, span)| text(&span.attributes, "contact_id").as_deref() != Some("otlp-unsampled")),
        "an unsampled trace is not exported"
    );
    assert!(spans.iter().any(|(_, span)| hex::encode(&span.trace_id) == fresh_trace), "a new trace is exported");
    let everything = format!("{spans:?}");
    for needle in ["8123456700", "812-3456", NUMBER] {
        assert!(!everything.contains(needle), "a span carries the number ({needle})");
    }
}

#[tokio::test]
async fn a_collector_that_is_not_there_costs_the_calls_nothing_and_is_counted() {
    // A collector port held closed: every export is refused.
    let closed = ClosedPort::new();
    let endpoint = format!("http://127.0.0.1:{}", closed.port);
    let saring = SaringProcess::spawn(&[], &[("SARING__TELEMETRY__OTLP_ENDPOINT", endpoint.as_str())]);
    let channel = connect(saring.url()).await;
    let mut routing = screening(&channel, Bearer::of(Role::Routing));
    for index in 0..20 {
        let reply = routing.score_contact(sample_contact(&format!("otlp-away-{index}"), Some(NUMBER))).await.unwrap();
        assert!(reply.into_inner().degraded_reasons.is_empty(), "answers are whole without a collector");
    }
    let console = saring.console_url();
    let address = console.trim_start_matches("http://").to_owned();
    let mut dropped = 0.0;
    for _ in 0..100 {
        let address = address.clone();
        let body = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(&address).unwrap();
            write!(stream, "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            response
        })
        .await
        .unwrap();
        dropped = body
            .lines()
            .find_map(|line| line.strip_prefix("saring_trace_spans_dropped_total{reason=\"export_failed\"} "))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if dropped >= 20.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(dropped >= 20.0, "the refused spans are counted: {dropped}");
    drop((routing, channel));
    let (clean, log) = tokio::task::spawn_blocking(move || saring.terminate()).await.unwrap();
    assert!(clean);
    let warnings = log.iter().filter(|line| line.contains("trace export failed")).count();
    assert_eq!(warnings, 1, "one warning when export starts failing, not one per batch: {log:?}");
}
