//! Who is calling: bearer tokens (people) and verified TLS client certificates (machines) mapped to roles.
//! Tokens are configured by their SHA-256 (never in clear), certificates by a name they carry; every RPC names
//! the roles that may call it.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tonic::{Code, Request, Status};

use crate::failed_auth::{Door, FailedAuth};

/// A role a token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The call-routing engine: scores contacts and reports outcomes.
    Routing,
    /// An operator: scores, outcomes and caller profiles.
    Operator,
    /// The legal team: cases, their evidence (including the raw number) and decisions.
    Legal,
    /// Dispatch: watches cases and reports warnings and messages delivered, referrals filed.
    Dispatch,
    /// Administration of the service itself; no access to callers or evidence.
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [Role::Routing, Role::Operator, Role::Legal, Role::Dispatch, Role::Admin];

    /// The role's name in config and audit entries.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Routing => "routing",
            Role::Operator => "operator",
            Role::Legal => "legal",
            Role::Dispatch => "dispatch",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// An authenticated caller of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name (a person or a system), recorded in audit entries.
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// One configured token: `[[auth.tokens]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Who holds the token (recorded as the actor in audit entries).
    pub name: String,
    /// The role it grants.
    pub role: Role,
    /// Lowercase hex SHA-256 of the token (`printf %s TOKEN | sha256sum`).
    pub sha256: String,
}

/// One configured client certificate identity: `[[auth.clients]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    /// A name the client's certificate carries (its subject CN, a DNS SAN or a URI SAN); also the actor in audit
    /// entries.
    pub name: String,
    /// The role it grants.
    pub role: Role,
}

/// The TLS side of a connection, attached to every request on it (tonic's connect info).
#[derive(Debug, Clone, Default)]
pub struct TlsPeer {
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
    /// The names of the client's verified certificate (subject CN, DNS and URI SANs); `None` without one.
    pub certificate_names: Option<Arc<[String]>>,
}

/// The SHA-256 of a token, as configured.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Maps bearer tokens to principals, and keeps the record of failed authentications (shared by its clones, so the
/// gRPC handlers, the limits layer and the console see the same peers).
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    by_digest: HashMap<[u8; 32], Arc<Principal>>,
    by_certificate_name: HashMap<String, Arc<Principal>>,
    failed: Arc<FailedAuth>,
}

/// A token or client entry that cannot be used, naming it.
#[derive(Debug, thiserror::Error)]
#[error("auth.{list}[{index}] ({name}): {message}")]
pub struct TokenError {
    /// `tokens` or `clients`.
    pub list: &'static str,
    /// The entry's position.
    pub index: usize,
    /// The entry's name.
    pub name: String,
    /// What is wrong.
    pub message: String,
}

impl Authenticator {
    /// From configured entries; refuses malformed digests, empty names and a digest configured twice.
    pub fn from_entries(entries: &[TokenEntry]) -> Result<Self, TokenError> {
        let mut by_digest = HashMap::new();
        for (index, entry) in entries.iter().enumerate() {
            let fail = |message: &str| TokenError {
                list: "tokens",
                index,
                name: entry.name.clone(),
                message: message.to_owned(),
            };
            if entry.name.trim().is_empty() {
                return Err(fail("name must not be empty"));
            }
            let mut digest = [0u8; 32];
            hex::decode_to_slice(&entry.sha256, &mut digest)
                .map_err(|_| fail("sha256 must be 64 hex digits: the SHA-256 of the token"))?;
            let principal = Arc::new(Principal { name: entry.name.clone(), role: entry.role });
            if by_digest.insert(digest, principal).is_some() {
                return Err(fail("the same token is configured twice"));
            }
        }
        Ok(Authenticator { by_digest, by_certificate_name: HashMap::new(), failed: Arc::default() })
    }

    /// Failed authentications are throttled as `failed` says (by default they are logged and counted only).
    pub fn with_failed_auth(mut self, failed: FailedAuth) -> Self {
        self.failed = Arc::new(failed);
        self
    }

    /// The record of failed authentications, for the console's sign-in and the metrics.
    pub fn failed_auth(&self) -> &FailedAuth {
        &self.failed
    }

    /// Every configured principal (tokens and client certificates; a name may appear more than once).
    pub fn principals(&self) -> impl Iterator<Item = &Principal> {
        self.by_digest.values().chain(self.by_certificate_name.values()).map(|principal| &**principal)
    }

    /// Adds the client certificate identities; refuses empty names and a name configured twice.
    pub fn with_clients(mut self, clients: &[ClientEntry]) -> Result<Self, TokenError> {
        for (index, entry) in clients.iter().enumerate() {
            let fail = |message: &str| TokenError {
                list: "clients",
                index,
                name: entry.name.clone(),
                message: message.to_owned(),
            };
            if entry.name.trim().is_empty() || entry.name.trim() != entry.name {
                return Err(fail("name must not be empty nor start or end with spaces"));
            }
            let principal = Arc::new(Principal { name: entry.name.clone(), role: entry.role });
            if self.by_certificate_name.insert(entry.name.clone(), principal).is_some() {
                return Err(fail("the same name is configured twice"));
            }
        }
        Ok(self)
    }

    /// Development mode: one freshly generated token per role. Returns the authenticator and the tokens in clear
    /// (to be shown once to whoever started the service).
    pub fn generate_development() -> (Self, Vec<(Role, String)>) {
        let tokens: Vec<(Role, String)> = Role::ALL
            .into_iter()
            .map(|role| {
                let mut secret = [0u8; 24];
                getrandom::fill(&mut secret).expect("the operating system provides randomness");
                (role, format!("saring-dev-{}-{}", role.as_str(), hex::encode(secret)))
            })
            .collect();
        let authenticator = Self::development_with(&tokens).expect("generated tokens are valid");
        (authenticator, tokens)
    }

    /// Development mode with these tokens (one per role, named `dev-ROLE`), e.g. read back from
    /// `auth.development_tokens_file`.
    pub fn development_with(tokens: &[(Role, String)]) -> Result<Self, TokenError> {
        let entries: Vec<TokenEntry> = tokens
            .iter()
            .map(|(role, token)| TokenEntry {
                name: format!("dev-{}", role.as_str()),
                role: *role,
                sha256: token_digest(token),
            })
            .collect();
        Self::from_entries(&entries)
    }

    /// Who holds `token`, if anyone (the console's sign-in).
    pub fn principal(&self, token: &str) -> Option<&Principal> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.by_digest.get(&digest).map(|principal| &**principal)
    }

    /// Who is calling: the holder of the `authorization: Bearer TOKEN` header when there is one (a wrong token is
    /// never overridden by a certificate), else the configured client whose name the connection's verified
    /// certificate carries. Neither is `UNAUTHENTICATED`.
    /// The token is hashed here once per call: the limits layer identifies the caller and leaves the answer in the
    /// request's extensions ([`Identified`]), where [`Authenticator::authorize`] finds it.
    pub fn identify(&self, authorization: Option<&[u8]>, peer: Option<&TlsPeer>) -> Result<Arc<Principal>, Status> {
        if let Some(header) = authorization {
            let token = std::str::from_utf8(header)
                .ok()
                .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
                .map(str::trim)
                .filter(|token| !token.is_empty())
                .ok_or_else(|| Status::unauthenticated("authorization must be \"Bearer TOKEN\""))?;
            let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            return self.by_digest.get(&digest).cloned().ok_or_else(|| Status::unauthenticated("unknown token"));
        }
        let Some(names) = peer.and_then(|peer| peer.certificate_names.as_deref()) else {
            return Err(Status::unauthenticated("missing authorization: Bearer TOKEN (or a client certificate)"));
        };
        names.iter().find_map(|name| self.by_certificate_name.get(name)).cloned().ok_or_else(|| {
            Status::unauthenticated(format!(
                "the client certificate ({}) matches no [[auth.clients]] name, and no token was sent",
                names.join(", ")
            ))
        })
    }

    /// The peer address of a gRPC request, by its connection (saring's TLS or plain TCP) and, from a trusted proxy,
    /// its `x-forwarded-for`.
    pub fn peer(&self, extensions: &http::Extensions, forwarded: Option<&str>) -> Option<IpAddr> {
        let remote = extensions.get::<TlsPeer>().and_then(|tls| tls.remote_addr).or_else(|| {
            extensions.get::<tonic::transport::server::TcpConnectInfo>().and_then(|info| info.remote_addr())
        });
        self.failed.peer(remote, forwarded)
    }

    /// The caller of `request` (see [`Authenticator::identify`]), if its role is one of `allowed`.
    /// No credentials or unknown ones are `UNAUTHENTICATED` (logged and counted against the peer's address); a
    /// known caller of another role is `PERMISSION_DENIED`. While the peer's address is throttled for its failures,
    /// a call is `RESOURCE_EXHAUSTED` with a retry hint whatever its token — good, wrong or none, so the answer says
    /// nothing about it and nothing more is recorded — except the callers [`throttle_exempt`] names.
    pub fn authorize<T>(&self, request: &Request<T>, allowed: &[Role]) -> Result<Principal, Status> {
        self.admit(request, allowed).map(|principal| (*principal).clone())
    }

    /// [`Authenticator::authorize`] for a handler that needs only the caller's role checked (ScoreContact): the
    /// same checks, and nothing copied.
    pub fn check<T>(&self, request: &Request<T>, allowed: &[Role]) -> Result<(), Status> {
        self.admit(request, allowed).map(drop)
    }

    fn admit<T>(&self, request: &Request<T>, allowed: &[Role]) -> Result<Arc<Principal>, Status> {
        let authorization = request.metadata().get("authorization").map(|value| value.as_bytes());
        let tls = request.extensions().get::<TlsPeer>();
        let certificate = tls.is_some_and(|tls| tls.certificate_names.is_some());
        // The limits layer identified the caller from the same header and connection; only a call it could not
        // identify (or a server without the layer) is identified here, so a token is hashed once per call.
        let identified = match request.extensions().get::<Identified>() {
            Some(Identified(principal)) => Ok(Arc::clone(principal)),
            None => self.identify(authorization, tls),
        };
        let peer = || {
            let forwarded = request.metadata().get("x-forwarded-for").and_then(|value| value.to_str().ok());
            self.peer(request.extensions(), forwarded)
        };
        if !throttle_exempt(authorization, tls, identified.as_ref()) {
            if let Err(left) = self.failed.check(peer(), Door::Grpc) {
                return Err(crate::error::pushback(
                    Code::ResourceExhausted,
                    "too many failed authentications from this address; retry later".to_owned(),
                    left,
                ));
            }
        }
        let principal = identified.inspect_err(|status| {
            let (credential, presented) = match authorization {
                Some(header) => ("bearer", Some(bearer_token(header).unwrap_or(header))),
                None if certificate => ("certificate", None),
                None => ("none", None),
            };
            self.failed.record(peer(), Door::Grpc, credential, presented, status.message());
        })?;
        if !allowed.contains(&principal.role) {
            let allowed: Vec<&str> = allowed.iter().map(|role| role.as_str()).collect();
            return Err(Status::permission_denied(format!(
                "role {} may not call this; it needs one of: {}",
                principal.role,
                allowed.join(", ")
            )));
        }
        Ok(principal)
    }
}

/// The caller the limits layer identified, left in the request's extensions for the handler (set only by the
/// server itself: a client cannot send extensions).
#[derive(Debug, Clone)]
pub struct Identified(pub Arc<Principal>);

/// Whom the throttle of an address with too many failed authentications never holds up: a caller authenticated by
/// its client certificate alone (a certificate cannot be guessed), and the routing engine (a score never waits on a
/// limit, and its credential is a machine's, never typed by a person). Everyone else at that address is refused,
/// whatever they sent, until the window ends.
pub fn throttle_exempt(
    authorization: Option<&[u8]>,
    tls: Option<&TlsPeer>,
    identified: Result<&Arc<Principal>, &Status>,
) -> bool {
    let certificate_alone = authorization.is_none() && tls.is_some_and(|tls| tls.certificate_names.is_some());
    certificate_alone || identified.is_ok_and(|principal| principal.role == Role::Routing)
}

/// The token of an `authorization: Bearer TOKEN` header value.
fn bearer_token(header: &[u8]) -> Option<&[u8]> {
    let token = header.strip_prefix(b"Bearer ").or_else(|| header.strip_prefix(b"bearer "))?;
    Some(token.trim_ascii()).filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(token: &str) -> Request<()> {
        let mut request = Request::new(());
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    }

    fn with_certificate(names: &[&str]) -> Request<()> {
        let mut request = Request::new(());
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        request.extensions_mut().insert(TlsPeer { remote_addr: None, certificate_names: Some(names.into()) });
        request
    }

    #[test]
    fn tokens_map_to_roles() {
        let entries = [TokenEntry { name: "ana".into(), role: Role::Legal, sha256: token_digest("s3cret-token") }];
        let auth = Authenticator::from_entries(&entries).unwrap();
        let principal = auth.authorize(&metadata("s3cret-token"), &[Role::Legal]).unwrap();
        assert_eq!(principal, Principal { name: "ana".into(), role: Role::Legal });
        let denied = auth.authorize(&metadata("s3cret-token"), &[Role::Routing]).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        let wrong = auth.authorize(&metadata("other"), &[Role::Legal]).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        let missing = auth.authorize(&Request::new(()), &[Role::Legal]).unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn client_certificates_map_to_roles_and_a_token_takes_precedence() {
        let tokens = [TokenEntry { name: "ana".into(), role: Role::Legal, sha256: token_digest("s3cret-token") }];
        let clients = [ClientEntry { name: "routing-engine-1".into(), role: Role::Routing }];
        let auth = Authenticator::from_entries(&tokens).unwrap().with_clients(&clients).unwrap();
        let routing = auth.authorize(&with_certificate(&["other.example", "routing-engine-1"]), &[Role::Routing]);
        assert_eq!(routing.unwrap(), Principal { name: "routing-engine-1".into(), role: Role::Routing });
        let denied = auth.authorize(&with_certificate(&["routing-engine-1"]), &[Role::Legal]).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        let unknown = auth.authorize(&with_certificate(&["stranger"]), &[Role::Routing]).unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::Unauthenticated);
        let mut both = with_certificate(&["routing-engine-1"]);
        both.metadata_mut().insert("authorization", "Bearer s3cret-token".parse().unwrap());
        assert_eq!(auth.authorize(&both, &[Role::Legal]).unwrap().name, "ana");
        both.metadata_mut().insert("authorization", "Bearer wrong".parse().unwrap());
        assert_eq!(auth.authorize(&both, &[Role::Routing]).unwrap_err().code(), tonic::Code::Unauthenticated);
        let twice = [clients[0].clone(), ClientEntry { name: "routing-engine-1".into(), role: Role::Admin }];
        let error = Authenticator::default().with_clients(&twice).unwrap_err();
        assert!(error.to_string().starts_with("auth.clients[1]"), "{error}");
    }

    #[test]
    fn malformed_entries_are_refused() {
        let bad = [TokenEntry { name: "x".into(), role: Role::Admin, sha256: "abc".into() }];
        assert!(Authenticator::from_entries(&bad).unwrap_err().to_string().contains("auth.tokens[0]"));
        let twice = [
            TokenEntry { name: "a".into(), role: Role::Admin, sha256: token_digest("t") },
            TokenEntry { name: "b".into(), role: Role::Legal, sha256: token_digest("t") },
        ];
        assert!(Authenticator::from_entries(&twice).is_err());
    }

    #[test]
    fn an_address_with_too_many_failures_is_refused_before_its_token_but_certificates_go_on() {
        use crate::failed_auth::{Door, FailedAuthSettings};
        let tokens = [
            TokenEntry { name: "ana".into(), role: Role::Operator, sha256: token_digest("good") },
            TokenEntry { name: "router".into(), role: Role::Routing, sha256: token_digest("routing-token") },
        ];
        let clients = [ClientEntry { name: "engine".into(), role: Role::Routing }];
        let settings = FailedAuthSettings { max_failures: 2, ..FailedAuthSettings::default() };
        let auth = Authenticator::from_entries(&tokens)
            .unwrap()
            .with_clients(&clients)
            .unwrap()
            .with_failed_auth(FailedAuth::new(&settings));
        let from = |mut request: Request<()>, address: &str, certificate: bool| {
            let names: Option<Arc<[String]>> = certificate.then(|| vec!["engine".to_owned()].into());
            let peer = TlsPeer { remote_addr: Some(address.parse().unwrap()), certificate_names: names };
            request.extensions_mut().insert(peer);
            request
        };
        for _ in 0..2 {
            let wrong = auth.authorize(&from(metadata("bad"), "192.0.2.1:1000", false), &[Role::Operator]);
            assert_eq!(wrong.unwrap_err().code(), Code::Unauthenticated);
        }
        let throttled = auth.authorize(&from(metadata("good"), "192.0.2.1:1001", false), &[Role::Operator]);
        let throttled = throttled.unwrap_err();
        assert_eq!(throttled.code(), Code::ResourceExhausted);
        assert!(throttled.metadata().get("grpc-retry-pushback-ms").is_some());
        let anonymous = auth.authorize(&from(Request::new(()), "192.0.2.1:1002", false), &[Role::Operator]);
        assert_eq!(anonymous.unwrap_err().code(), Code::ResourceExhausted);
        // A certificate alone is not a guess, and the routing engine's scores never wait on a limit; another
        // address is another peer.
        let machine = auth.authorize(&from(Request::new(()), "192.0.2.1:1003", true), &[Role::Routing]);
        assert_eq!(machine.unwrap().name, "engine");
        let routing = auth.authorize(&from(metadata("routing-token"), "192.0.2.1:1004", false), &[Role::Routing]);
        assert_eq!(routing.unwrap().name, "router");
        assert_eq!(
            auth.authorize(&from(metadata("good"), "192.0.2.2:1000", false), &[Role::Operator]).unwrap().name,
            "ana"
        );
        // Clones share the record (the handlers', the limits layer's and the console's authenticator).
        assert_eq!(auth.clone().failed_auth().failures(Door::Grpc), 2);
        assert_eq!(auth.failed_auth().throttled(Door::Grpc), 2, "the good and the missing token");
        // A wrong role is not a failed authentication.
        let denied = auth.authorize(&from(metadata("good"), "192.0.2.3:1000", false), &[Role::Legal]);
        assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);
        assert_eq!(auth.failed_auth().failures(Door::Grpc), 2);
    }

    #[test]
    fn development_tokens_cover_every_role() {
        let (auth, tokens) = Authenticator::generate_development();
        for (role, token) in tokens {
            assert_eq!(auth.authorize(&metadata(&token), &[role]).unwrap().role, role);
        }
    }
}
