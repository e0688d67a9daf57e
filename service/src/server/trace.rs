//! A span per RPC, joined to the caller's trace: a W3C `traceparent` header (`00-<trace id>-<parent id>-<flags>`)
//! is accepted and its trace id carried by the call's `rpc` span — and so by every log line written inside it,
//! with the contact id the handler records (`contact_id`) — and the reply's `traceparent` names the same trace and
//! this call as the parent of whatever the caller does next. Without one (or with a malformed one, which is
//! ignored, as the W3C recommendation says) the call starts a new trace. A call refused with a gRPC status records
//! it (`grpc_status`) on its span.

use std::task::{Context, Poll};

use tower::{Layer, Service};
use tracing::Instrument;

/// The trace context of one call: the trace it belongs to and the span id this call is known by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// 16 bytes, never all zero.
    pub trace_id: [u8; 16],
    /// This call's span id: 8 bytes, never all zero.
    pub span_id: [u8; 8],
    /// The caller's span id, when the call came with a `traceparent`.
    pub parent_span_id: Option<[u8; 8]>,
    /// The caller's flags (01: sampled).
    pub flags: u8,
}

impl TraceContext {
    /// The context of a call that came with `traceparent` (parsed as the W3C Trace Context says; `None` when
    /// absent or malformed): the same trace, a new span id.
    pub fn continued(traceparent: Option<&str>) -> TraceContext {
        let span_id = random_nonzero();
        match traceparent.and_then(parse_traceparent) {
            Some((trace_id, parent, flags)) => TraceContext { trace_id, span_id, parent_span_id: Some(parent), flags },
            None => {
                let trace_id = random_nonzero();
                TraceContext { trace_id, span_id, parent_span_id: None, flags: u8::from(sampled(&trace_id)) }
            }
        }
    }

    /// Whether the trace is sampled (flag 01): exported when an exporter is configured.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// `traceparent` naming this call as the parent.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", hex::encode(self.trace_id), hex::encode(self.span_id), self.flags)
    }
}

/// The trace id, parent span id and flags of a `traceparent` value (version 00, or a later version read as 00
/// does).
pub fn parse_traceparent(value: &str) -> Option<([u8; 16], [u8; 8], u8)> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let lower_hex = |text: &str, length: usize| {
        text.len() == length && text.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    };
    if !lower_hex(version, 2) || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    if !lower_hex(trace, 32) || !lower_hex(parent, 16) || !lower_hex(flags, 2) {
        return None;
    }
    let (mut trace_id, mut parent_id) = ([0u8; 16], [0u8; 8]);
    hex::decode_to_slice(trace, &mut trace_id).ok()?;
    hex::decode_to_slice(parent, &mut parent_id).ok()?;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((trace_id, parent_id, flags))
}

/// New traces with a trace id below this are sampled (`u64::MAX`: all; `telemetry.sample_ratio`).
static SAMPLE_BELOW: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(u64::MAX);

/// Samples `ratio` (0.0 ..= 1.0) of the traces this process starts; a call's `traceparent` decides for its own.
pub fn set_sample_ratio(ratio: f64) {
    SAMPLE_BELOW.store(threshold(ratio), std::sync::atomic::Ordering::Relaxed);
}

/// The trace-id threshold sampling `ratio` of traces: 1.0 (or more) all, 0.0 (or less, or NaN) none.
fn threshold(ratio: f64) -> u64 {
    if ratio >= 1.0 {
        u64::MAX
    } else {
        // A float-to-integer cast saturates (and maps NaN to 0).
        (ratio * u64::MAX as f64) as u64
    }
}

/// Whether a new trace is sampled: decided by its id, as the W3C's "random trace id" flag lets every process do.
fn sampled(trace_id: &[u8; 16]) -> bool {
    sampled_below(trace_id, SAMPLE_BELOW.load(std::sync::atomic::Ordering::Relaxed))
}

fn sampled_below(trace_id: &[u8; 16], below: u64) -> bool {
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    below == u64::MAX || u64::from_be_bytes(low) < below
}

/// A fresh span id, for a span inside a call.
pub fn new_span_id() -> [u8; 8] {
    random_nonzero()
}

/// A fresh id: unique within this process and unpredictable across processes (a random per-process key mixed
/// with a counter), never all zero. No system call per RPC.
fn random_nonzero<const N: usize>() -> [u8; N] {
    static KEY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let key = *KEY.get_or_init(|| {
        let mut key = [0u8; 8];
        // Without randomness the ids are still unique in this process; only their unpredictability is lost.
        let _ = getrandom::fill(&mut key);
        u64::from_le_bytes(key)
    });
    let mut bytes = [0u8; N];
    for chunk in bytes.chunks_mut(8) {
        let next = splitmix64(key ^ COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        chunk.copy_from_slice(&next.to_le_bytes()[..chunk.len()]);
    }
    if bytes == [0u8; N] {
        bytes[N - 1] = 1;
    }
    bytes
}

/// SplitMix64's finaliser: distinct inputs give distinct, well-mixed outputs.
fn splitmix64(mut value: u64) -> u64 {
    value = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// Bytes as lowercase hex, written straight into the log's buffer (no string of its own per call).
struct Hex<'a>(&'a [u8]);

impl std::fmt::Display for Hex<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|byte| write!(formatter, "{byte:02x}"))
    }
}

/// Opens the `rpc` span of every call.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceLayer;

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Trace { inner }
    }
}

/// [`TraceLayer`]'s service.
#[derive(Debug, Clone)]
pub struct Trace<S> {
    inner: S,
}

impl<S, RequestBody, ResponseBody> Service<http::Request<RequestBody>> for Trace<S>
where
    S: Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    ResponseBody: 'static,
{
    type Response = http::Response<ResponseBody>;
    type Error = S::Error;
    type Future = super::BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: http::Request<RequestBody>) -> Self::Future {
        let context =
            TraceContext::continued(request.headers().get("traceparent").and_then(|value| value.to_str().ok()));
        let span = tracing::info_span!(
            "rpc",
            method = %request.uri().path(),
            trace_id = %Hex(&context.trace_id),
            span_id = %Hex(&context.span_id),
            parent_id = tracing::field::Empty,
            sampled = context.sampled(),
            contact_id = tracing::field::Empty,
            grpc_status = tracing::field::Empty,
        );
        if let Some(parent) = &context.parent_span_id {
            span.record("parent_id", tracing::field::display(Hex(parent)));
        }
        request.extensions_mut().insert(context);
        let reply = self.inner.call(request);
        Box::pin(
            async move {
                let mut reply = reply.await?;
                // A failed unary call is answered trailers-only: its status is in the headers. (A success puts its
                // status in the trailers, after the reply: not recorded.)
                if let Some(code) = reply.headers().get("grpc-status").and_then(|value| value.to_str().ok()) {
                    if let Ok(code) = code.parse::<i64>() {
                        tracing::Span::current().record("grpc_status", code);
                    }
                }
                if let Ok(value) = http::HeaderValue::from_str(&context.traceparent()) {
                    reply.headers_mut().insert("traceparent", value);
                }
                Ok(reply)
            }
            .instrument(span),
        )
    }
}

/// Records the contact id a call is about on its `rpc` span (and so on every log line inside it).
pub fn record_contact(contact_id: &str) {
    tracing::Span::current().record("contact_id", contact_id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_never_zero() {
        let ids: std::collections::HashSet<[u8; 16]> = (0..10_000).map(|_| random_nonzero()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(!ids.contains(&[0; 16]));
    }

    #[test]
    fn a_sample_ratio_samples_that_share_of_new_traces() {
        let ids: Vec<[u8; 16]> = (0..20_000).map(|_| random_nonzero()).collect();
        let share = |ratio: f64| {
            let below = threshold(ratio);
            ids.iter().filter(|id| sampled_below(id, below)).count() as f64 / ids.len() as f64
        };
        assert_eq!(share(1.0), 1.0);
        assert_eq!(share(0.0), 0.0);
        assert_eq!(share(f64::NAN), 0.0);
        assert!((share(0.25) - 0.25).abs() < 0.02, "{}", share(0.25));
        assert!(TraceContext::continued(None).sampled(), "all new traces by default");
    }

    #[test]
    fn hex_is_written_as_hex_encode_writes_it() {
        assert_eq!(Hex(&[0x00, 0x4b, 0xff]).to_string(), hex::encode([0x00, 0x4b, 0xff]));
    }

    #[test]
    fn traceparent_is_parsed_as_the_w3c_says_and_nonsense_starts_a_new_trace() {
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (trace_id, parent, flags) = parse_traceparent(value).unwrap();
        assert_eq!(hex::encode(trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex::encode(parent), "00f067aa0ba902b7");
        assert_eq!(flags, 1);
        let continued = TraceContext::continued(Some(value));
        assert_eq!(continued.trace_id, trace_id);
        assert_eq!(continued.parent_span_id, Some(parent));
        assert!(continued.sampled());
        assert!(!TraceContext::continued(Some(&value.replace("-01", "-00"))).sampled());
        assert!(continued.traceparent().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert_ne!(&continued.traceparent()[36..52], "00f067aa0ba902b7", "a new span id for this call");
        // A later version with more fields is read as version 00.
        assert!(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra").is_some());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad:?}");
            assert_ne!(TraceContext::continued(Some(bad)).trace_id, [0; 16]);
        }
    }
}
