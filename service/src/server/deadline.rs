//! Request deadlines: a call runs until the client's `grpc-timeout` or the server's maximum, whichever comes
//! first, and is then answered `DEADLINE_EXCEEDED` (its handler is dropped, so its work stops).
//!
//! tonic honours `grpc-timeout` too, but answers `CANCELLED`; this layer sits inside tonic's and its timer is
//! set first, with a deadline no later than tonic's, so the caller reads the code the gRPC spec gives. It bounds
//! the work up to the reply's headers: a streaming reply (Watch, WatchScores) is not cut once it streams.

use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tonic::body::Body;
use tonic::Status;
use tower::{Layer, Service};

/// Bounds every call by `min(grpc-timeout, max)`.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    max: Duration,
}

impl DeadlineLayer {
    /// The server's longest call.
    pub fn new(max: Duration) -> Self {
        DeadlineLayer { max }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline { inner, max: self.max }
    }
}

/// [`DeadlineLayer`]'s service.
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    max: Duration,
}

/// The `grpc-timeout` header: at most 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

impl<S> Service<http::Request<Body>> for Deadline<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = super::BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let asked = request.headers().get("grpc-timeout").and_then(|value| parse_grpc_timeout(value.as_bytes()));
        let budget = asked.map_or(self.max, |asked| asked.min(self.max));
        // Fixed now, before tonic's own timer, so this one never fires later than tonic's.
        let deadline = Instant::now() + budget;
        let reply = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout_at(deadline, reply).await {
                Ok(reply) => reply,
                Err(_) => Ok(Status::deadline_exceeded(format!(
                    "the call ran past its deadline ({} ms{})",
                    budget.as_millis(),
                    if asked.is_some_and(|asked| asked <= budget) {
                        ", the client's"
                    } else {
                        ", the server's maximum"
                    }
                ))
                .into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_and_nonsense_is_ignored() {
        assert_eq!(parse_grpc_timeout(b"250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout(b"99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in [&b""[..], b"m", b"123456789m", b"12x", b"-5m", b"1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }
}
