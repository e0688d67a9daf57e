//! Per-role concurrency and per-holder rate limits, as a tower layer in front of every gRPC service.
//!
//! The layer identifies the caller the way the handlers do ([`Authenticator::identify`]) and admits the call
//! against its role's limits: the role's concurrency is a ceiling all its holders share; its rate applies to each
//! holder (the token's or certificate's name) separately, so one operator over the rate does not hold up the
//! others. A call over them is answered `RESOURCE_EXHAUSTED` with a `google.rpc.RetryInfo`
//! detail and `grpc-retry-pushback-ms` (gRFC A6 server pushback) metadata, without reaching the handler — except ScoreContact from the routing
//! role: a score never blocks a call, so it is never shed; it is marked [`Overloaded`] and the handler answers on
//! the contact's own features (no history read, `degraded_reasons = ["overload"]`). RecordOutcome from routing is
//! shed like anything else: it is idempotent by contact id and the routing engine retries it, so nothing is
//! lost. Calls that identify no one pass through: the handler refuses them.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::Code;
use tower::{Layer, Service};

use crate::auth::{throttle_exempt, Authenticator, Identified, Principal, Role, TlsPeer};
use crate::config::ConfigError;

/// The path of the one call that degrades instead of being shed.
const SCORE_CONTACT: &str = "/saring.v1.Screening/ScoreContact";

/// The retry hint when a role is at its concurrency limit (calls end within milliseconds).
const CONCURRENCY_RETRY: Duration = Duration::from_millis(50);

/// One role's limits: `[limits.<role>]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleLimits {
    /// Calls of this role in progress at once, across all its callers; an open stream counts until it ends.
    pub concurrency: u32,
    /// Sustained calls per second of each holder of the role (a token bucket per holder); 0: no rate limit.
    #[serde(default)]
    pub rate_per_s: f64,
    /// Calls a holder may make at once above the sustained rate (the size of each holder's bucket).
    #[serde(default)]
    pub burst: u32,
}

impl RoleLimits {
    const fn new(concurrency: u32, rate_per_s: f64, burst: u32) -> Self {
        RoleLimits { concurrency, rate_per_s, burst }
    }
}

/// `[limits]`: one table per role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSettings {
    /// The routing engine (its ScoreContact degrades instead of being shed).
    pub routing: RoleLimits,
    /// Operators.
    pub operator: RoleLimits,
    /// The legal team.
    pub legal: RoleLimits,
    /// Dispatch.
    pub dispatch: RoleLimits,
    /// Administration.
    pub admin: RoleLimits,
}

impl Default for LimitsSettings {
    fn default() -> Self {
        LimitsSettings {
            routing: RoleLimits::new(1024, 0.0, 0),
            operator: RoleLimits::new(64, 200.0, 400),
            legal: RoleLimits::new(16, 50.0, 100),
            dispatch: RoleLimits::new(16, 50.0, 100),
            admin: RoleLimits::new(4, 10.0, 20),
        }
    }
}

impl LimitsSettings {
    /// The limits of `role`.
    pub fn of(&self, role: Role) -> RoleLimits {
        match role {
            Role::Routing => self.routing,
            Role::Operator => self.operator,
            Role::Legal => self.legal,
            Role::Dispatch => self.dispatch,
            Role::Admin => self.admin,
        }
    }

    /// Checks every role's limits, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for role in Role::ALL {
            let limits = self.of(role);
            if limits.concurrency == 0 || limits.concurrency > 1_000_000 {
                return Err(ConfigError(format!("limits.{role}.concurrency: must be between 1 and 1000000")));
            }
            if !limits.rate_per_s.is_finite() || limits.rate_per_s < 0.0 {
                return Err(ConfigError(format!("limits.{role}.rate_per_s: must be 0 (no limit) or positive")));
            }
            if limits.rate_per_s > 0.0 && limits.burst == 0 {
                return Err(ConfigError(format!("limits.{role}.burst: must be at least 1 with a rate_per_s")));
            }
        }
        Ok(())
    }
}

/// Marks a routing ScoreContact admitted over its role's limits: the handler answers without reading history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded;

/// A token bucket: `rate` tokens a second, at most `burst` saved.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    fn full(burst: f64) -> parking_lot::Mutex<Bucket> {
        parking_lot::Mutex::new(Bucket { tokens: burst, refilled: Instant::now() })
    }
}

/// One role's limits: a concurrency ceiling shared by all its holders, and a rate bucket per holder.
struct RoleLimiter {
    role: Role,
    in_flight: Arc<Semaphore>,
    rate_per_s: f64,
    burst: f64,
    /// One bucket per holder (principal name) of the role. Holders are the configured tokens and certificate
    /// names, so the map is built once and its size is bounded by the configuration.
    holders: HashMap<String, parking_lot::Mutex<Bucket>>,
    /// For a holder the map does not know (none, as callers are identified by the same configuration).
    unknown: parking_lot::Mutex<Bucket>,
}

impl RoleLimiter {
    fn new<'a>(role: Role, limits: RoleLimits, holders: impl Iterator<Item = &'a str>) -> Self {
        let burst = f64::from(limits.burst);
        RoleLimiter {
            role,
            in_flight: Arc::new(Semaphore::new(limits.concurrency as usize)),
            rate_per_s: limits.rate_per_s,
            burst,
            holders: holders.map(|name| (name.to_owned(), Bucket::full(burst))).collect(),
            unknown: Bucket::full(burst),
        }
    }

    /// Takes one of `holder`'s tokens, or says how long until one is there.
    fn take_token(&self, holder: &str) -> Result<(), Duration> {
        if self.rate_per_s == 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut bucket = self.holders.get(holder).unwrap_or(&self.unknown).lock();
        let earned = now.saturating_duration_since(bucket.refilled).as_secs_f64() * self.rate_per_s;
        bucket.tokens = (bucket.tokens + earned).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate_per_s))
        }
    }
}

/// What the limits say about one call.
enum Admission {
    /// Go ahead, holding the role's concurrency permit until the reply.
    Admitted(OwnedSemaphorePermit),
    /// Over the limits, but never shed: answer on the cheap path.
    Degraded,
    /// Refused; retry after this long.
    Shed { limit: &'static str, retry_after: Duration },
}

/// Every role's limiter, and how callers are identified.
pub struct Limits {
    auth: Authenticator,
    roles: Option<[RoleLimiter; 5]>,
}

impl Limits {
    /// `settings` applied to the callers `auth` identifies.
    pub fn new(auth: Authenticator, settings: &LimitsSettings) -> Self {
        let roles = Role::ALL.map(|role| {
            let holders = auth.principals().filter(|principal| principal.role == role);
            RoleLimiter::new(role, settings.of(role), holders.map(|principal| principal.name.as_str()))
        });
        Limits { auth, roles: Some(roles) }
    }

    /// No limits at all (tests and embedding that drive the service harder than any role would).
    pub fn unlimited() -> Self {
        Limits { auth: Authenticator::default(), roles: None }
    }

    fn admit(&self, principal: &Principal, degradable: bool) -> Option<Admission> {
        let limiter = self.roles.as_ref()?.iter().find(|limiter| limiter.role == principal.role)?;
        if let Err(retry_after) = limiter.take_token(&principal.name) {
            return Some(if degradable { Admission::Degraded } else { Admission::Shed { limit: "rate", retry_after } });
        }
        Some(match Arc::clone(&limiter.in_flight).try_acquire_owned() {
            Ok(permit) => Admission::Admitted(permit),
            Err(_) if degradable => Admission::Degraded,
            Err(_) => Admission::Shed { limit: "concurrency", retry_after: CONCURRENCY_RETRY },
        })
    }
}

/// The `RESOURCE_EXHAUSTED` reply to a shed call.
fn shed(principal: &Principal, limit: &str, retry_after: Duration) -> http::Response<Body> {
    let retry_ms = retry_after.as_millis().max(1);
    let message = match limit {
        "rate" => {
            format!("{} is over the {} role's rate per holder; retry in {retry_ms} ms", principal.name, principal.role)
        }
        _ => format!("role {} is over its {limit} limit; retry in {retry_ms} ms", principal.role),
    };
    crate::error::pushback(Code::ResourceExhausted, message, retry_after).into_http()
}

/// The tower layer applying [`Limits`].
#[derive(Clone)]
pub struct LimitsLayer(Arc<Limits>);

impl LimitsLayer {
    /// Applies `limits`.
    pub fn new(limits: Arc<Limits>) -> Self {
        LimitsLayer(limits)
    }
}

impl<S> Layer<S> for LimitsLayer {
    type Service = LimitsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LimitsService { inner, limits: Arc::clone(&self.0) }
    }
}

/// A reply body that holds its call's concurrency permit until it is finished or dropped.
struct PermitBody {
    inner: Body,
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for PermitBody {
    type Data = <Body as http_body::Body>::Data;
    type Error = <Body as http_body::Body>::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(context)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// [`LimitsLayer`]'s service.
#[derive(Clone)]
pub struct LimitsService<S> {
    inner: S,
    limits: Arc<Limits>,
}

impl<S> Service<http::Request<Body>> for LimitsService<S>
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

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let auth = &self.limits.auth;
        let authorization = request.headers().get("authorization").map(|value| value.as_bytes());
        let tls = request.extensions().get::<TlsPeer>();
        let identified = auth.identify(authorization, tls);
        // An address throttled for its failed authentications is refused by the handler whatever its token; here
        // too nothing is said about the token (not even that its holder is over a rate).
        if !throttle_exempt(authorization, tls, identified.as_ref()) {
            let forwarded = request.headers().get("x-forwarded-for").and_then(|value| value.to_str().ok());
            if auth.failed_auth().throttled_for(auth.peer(request.extensions(), forwarded)).is_some() {
                return Box::pin(self.inner.call(request));
            }
        }
        let Ok(principal) = identified else {
            return Box::pin(self.inner.call(request));
        };
        // The handler authorizes with this instead of hashing the token again.
        request.extensions_mut().insert(Identified(Arc::clone(&principal)));
        let degradable = principal.role == Role::Routing && request.uri().path() == SCORE_CONTACT;
        match self.limits.admit(&principal, degradable) {
            None => Box::pin(self.inner.call(request)),
            Some(Admission::Admitted(permit)) => {
                let reply = self.inner.call(request);
                // The permit lives as long as the reply's body: a stream (WatchScores, Watch) counts against the
                // role's concurrency until it ends, not only until its headers are sent.
                Box::pin(async move {
                    let reply = reply.await?;
                    Ok(reply.map(|body| Body::new(PermitBody { inner: body, _permit: permit })))
                })
            }
            Some(Admission::Degraded) => {
                request.extensions_mut().insert(Overloaded);
                Box::pin(self.inner.call(request))
            }
            Some(Admission::Shed { limit, retry_after }) => {
                tracing::debug!(role = %principal.role, limit, path = request.uri().path(), "call shed");
                let reply = shed(&principal, limit, retry_after);
                Box::pin(async move { Ok(reply) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_its_burst_then_says_when_the_next_token_comes() {
        let limiter = RoleLimiter::new(Role::Operator, RoleLimits::new(8, 0.5, 2), ["ana", "budi"].into_iter());
        assert!(limiter.take_token("ana").is_ok() && limiter.take_token("ana").is_ok());
        let wait = limiter.take_token("ana").unwrap_err();
        assert!(wait > Duration::from_millis(1500) && wait <= Duration::from_secs(2), "{wait:?}");
        // Each holder has a bucket of its own: Ana's empty bucket does not hold Budi up.
        assert!(limiter.take_token("budi").is_ok() && limiter.take_token("budi").is_ok());
        assert!(limiter.take_token("budi").is_err());
    }

    #[test]
    fn only_routing_scores_degrade_and_permits_bound_concurrency() {
        let settings = LimitsSettings {
            routing: RoleLimits::new(1, 0.0, 0),
            operator: RoleLimits::new(1, 0.0, 0),
            ..LimitsSettings::default()
        };
        let limits = Limits::new(Authenticator::default(), &settings);
        let routing = Principal { name: "engine".into(), role: Role::Routing };
        let Some(Admission::Admitted(permit)) = limits.admit(&routing, true) else { panic!("first is admitted") };
        assert!(matches!(limits.admit(&routing, true), Some(Admission::Degraded)));
        assert!(matches!(limits.admit(&routing, false), Some(Admission::Shed { limit: "concurrency", .. })));
        drop(permit);
        assert!(matches!(limits.admit(&routing, false), Some(Admission::Admitted(_))));
        let operator = Principal { name: "ana".into(), role: Role::Operator };
        assert!(Limits::unlimited().admit(&operator, false).is_none());
    }

    /// The inner service of the layer in a test: keeps the principal the layer left for the handler.
    #[derive(Clone, Default)]
    struct Handler(Arc<parking_lot::Mutex<Vec<Option<Principal>>>>);

    impl Service<http::Request<Body>> for Handler {
        type Response = http::Response<Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<Body>) -> Self::Future {
            let identified =
                request.extensions().get::<Identified>().map(|Identified(principal)| (**principal).clone());
            self.0.lock().push(identified);
            std::future::ready(Ok(http::Response::new(Body::empty())))
        }
    }

    #[tokio::test]
    async fn the_layer_hands_the_caller_it_identified_to_the_handler_so_the_token_is_hashed_once() {
        use crate::auth::{token_digest, TokenEntry};
        let entries = [TokenEntry { name: "engine".into(), role: Role::Routing, sha256: token_digest("routing") }];
        let auth = Authenticator::from_entries(&entries).unwrap();
        let handler = Handler::default();
        let mut service =
            LimitsLayer::new(Arc::new(Limits::new(auth.clone(), &LimitsSettings::default()))).layer(handler.clone());
        let call = |token: &str| {
            http::Request::builder()
                .uri(SCORE_CONTACT)
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap()
        };
        service.call(call("routing")).await.unwrap();
        service.call(call("wrong")).await.unwrap();
        let seen = handler.0.lock().clone();
        let engine = Principal { name: "engine".into(), role: Role::Routing };
        assert_eq!(seen, vec![Some(engine.clone()), None], "only an identified caller is handed on");
        // The handler's check takes the layer's answer: the same principal as hashing the token again.
        let mut request = tonic::Request::new(());
        request.metadata_mut().insert("authorization", "Bearer routing".parse().unwrap());
        request.extensions_mut().insert(Identified(Arc::new(engine.clone())));
        assert_eq!(auth.authorize(&request, &[Role::Routing]).unwrap(), engine);
        assert_eq!(auth.authorize(&request, &[Role::Legal]).unwrap_err().code(), Code::PermissionDenied);
    }
}
