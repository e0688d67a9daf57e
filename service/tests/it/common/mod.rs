//! Shared fixtures: a real server on 127.0.0.1:0, a real tonic client, and event-log conversions.

pub mod pki;
pub mod process;

use std::sync::Arc;

use prost_types::Timestamp;
use saring::app::App;
use saring::auth::{token_digest, Authenticator, Role, TokenEntry};
use saring::cases::{CaseStore, Escalator};
use saring::config::Settings;
use saring::modelops::ModelRegistry;
use saring::proto;
use saring::proto::escalations_client::EscalationsClient;
use saring::proto::models_client::ModelsClient;
use saring::proto::privacy_client::PrivacyClient;
use saring::proto::screening_client::ScreeningClient;
use saring::screening::Screener;
use saring::server::{build_screener, load_models, memory_store, RunningServer};
use saring::store::HistoryStore;
use saring_models::ladder::LadderPolicy;
use saring_training::events::{ContactEvent, OutcomeEvent};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;

/// The test token of a role.
pub fn token(role: Role) -> String {
    format!("test-token-of-{}", role.as_str())
}

/// A second dispatcher's token (`test-dispatch-2`), for tests of claims between two people of one role.
pub const SECOND_DISPATCH_TOKEN: &str = "test-token-of-dispatch-2";

/// Token entries for every role (`name` = `test-<role>`), and a second dispatcher's.
pub fn token_entries() -> Vec<TokenEntry> {
    Role::ALL
        .into_iter()
        .map(|role| TokenEntry { name: format!("test-{}", role.as_str()), role, sha256: token_digest(&token(role)) })
        .chain([TokenEntry {
            name: "test-dispatch-2".into(),
            role: Role::Dispatch,
            sha256: token_digest(SECOND_DISPATCH_TOKEN),
        }])
        .collect()
}

/// An authenticator knowing every role's test token.
pub fn authenticator() -> Authenticator {
    Authenticator::from_entries(&token_entries()).unwrap()
}

/// `[[auth.tokens]]` for every role's test token, for a config file.
pub fn auth_toml() -> String {
    token_entries()
        .iter()
        .map(|entry| {
            format!(
                "[[auth.tokens]]\nname = \"{}\"\nrole = \"{}\"\nsha256 = \"{}\"\n",
                entry.name, entry.role, entry.sha256
            )
        })
        .collect()
}

/// Adds `authorization: Bearer TOKEN` to every request.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// The test token of `role`.
    pub fn of(role: Role) -> Self {
        Bearer::raw(&token(role))
    }

    /// Any token.
    pub fn raw(token: &str) -> Self {
        Bearer(Some(format!("Bearer {token}").parse().unwrap()))
    }

    /// No token at all.
    pub fn none() -> Self {
        Bearer(None)
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A Screening client presenting a token.
pub type Screening = ScreeningClient<InterceptedService<Channel, Bearer>>;
/// An Escalations client presenting a token.
pub type Escalations = EscalationsClient<InterceptedService<Channel, Bearer>>;
/// A Models client presenting a bearer token.
pub type Models = ModelsClient<InterceptedService<Channel, Bearer>>;

/// A Privacy client presenting a token.
pub type Privacy = PrivacyClient<InterceptedService<Channel, Bearer>>;

/// A Privacy client on `channel`.
pub fn privacy(channel: &Channel, bearer: Bearer) -> Privacy {
    PrivacyClient::with_interceptor(channel.clone(), bearer)
}

/// A Models client on `channel`.
pub fn models(channel: &Channel, bearer: Bearer) -> Models {
    ModelsClient::with_interceptor(channel.clone(), bearer)
}

/// A Screening client for `role`.
pub fn screening(channel: &Channel, bearer: Bearer) -> Screening {
    ScreeningClient::with_interceptor(channel.clone(), bearer)
}

/// An Escalations client for `role`.
pub fn escalations(channel: &Channel, bearer: Bearer) -> Escalations {
    EscalationsClient::with_interceptor(channel.clone(), bearer)
}

/// A connected channel.
pub async fn connect(url: String) -> Channel {
    Channel::from_shared(url).unwrap().connect().await.expect("connects")
}

/// A fresh SQLite case database file in its own directory.
pub fn sqlite_url(name: &str) -> String {
    let directory = std::env::temp_dir().join(process::unique_prefix(name).replace(':', "-"));
    format!("sqlite://{}/cases.db", directory.display())
}

/// The application over `screener`, with cases in `database_url` under the default ladder and the test tokens.
pub async fn app_with<S: HistoryStore>(screener: Screener<S>, database_url: &str) -> Arc<App<S>> {
    let store = CaseStore::connect(database_url).await.expect("the case database opens");
    let escalator = Escalator::new(store, LadderPolicy::default_policy());
    Arc::new(App { screener, escalator, auth: authenticator() })
}

/// A running server and an operator's client connected to it over TCP.
pub struct Harness {
    pub server: RunningServer,
    pub client: Screening,
    pub channel: Channel,
}

impl Harness {
    /// A Screening client presenting `role`'s token.
    pub fn screening(&self, role: Role) -> Screening {
        screening(&self.channel, Bearer::of(role))
    }

    /// A Models client presenting `role`'s token.
    pub fn models(&self, role: Role) -> Models {
        models(&self.channel, Bearer::of(role))
    }

    /// An Escalations client presenting `role`'s token.
    pub fn escalations(&self, role: Role) -> Escalations {
        escalations(&self.channel, Bearer::of(role))
    }

    /// A Privacy client presenting `role`'s token.
    pub fn privacy(&self, role: Role) -> Privacy {
        privacy(&self.channel, Bearer::of(role))
    }
}

/// Starts the real service (shipped model, in-memory history, a fresh SQLite case database) on an ephemeral port
/// and connects an operator's client.
pub async fn start() -> Harness {
    start_on(&sqlite_url("harness")).await
}

/// Starts the real service with its cases in `database_url`.
pub async fn start_on(database_url: &str) -> Harness {
    let settings = Settings::default();
    start_with(&settings, Arc::new(load_models(&settings).expect("the shipped model loads")), database_url).await
}

/// Starts the real service as `settings` describe, scoring with `models`, with its cases in `database_url`.
pub async fn start_with(settings: &Settings, models: Arc<ModelRegistry>, database_url: &str) -> Harness {
    let app = app_with(build_screener(settings, models, memory_store(settings)), database_url).await;
    let server = RunningServer::start("127.0.0.1:0".parse().unwrap(), app).await.expect("binds");
    let channel = connect(format!("http://{}", server.local_addr)).await;
    Harness { server, client: screening(&channel, Bearer::of(Role::Operator)), channel }
}

pub fn timestamp(at: time::OffsetDateTime) -> Timestamp {
    Timestamp { seconds: at.unix_timestamp(), nanos: at.nanosecond() as i32 }
}

pub fn contact_request(contact: &ContactEvent) -> proto::ContactRequest {
    let channel = match contact.channel {
        saring_models::Channel::Voice => proto::Channel::Voice,
        saring_models::Channel::Whatsapp => proto::Channel::Whatsapp,
        saring_models::Channel::Sms => proto::Channel::Sms,
        saring_models::Channel::App => proto::Channel::App,
    };
    proto::ContactRequest {
        contact_id: contact.contact_id.clone(),
        caller: contact.caller.clone(),
        channel: channel as i32,
        received_at: Some(timestamp(contact.at)),
        region: contact.region.clone(),
        sim_present: contact.sim_present,
        device_id: contact.device_id.clone(),
        location: match (contact.lat, contact.lon) {
            (Some(lat), Some(lon)) => Some(proto::Location { lat, lon, accuracy_m: contact.accuracy_m.unwrap_or(0.0) }),
            _ => None,
        },
        language: proto::Language::Unspecified as i32,
    }
}

pub fn disposition(disposition: saring_models::Disposition) -> proto::Disposition {
    use saring_models::Disposition as D;
    match disposition {
        D::GenuineEmergency => proto::Disposition::GenuineEmergency,
        D::NonEmergency => proto::Disposition::NonEmergency,
        D::Prank => proto::Disposition::Prank,
        D::Silent => proto::Disposition::Silent,
        D::Abusive => proto::Disposition::Abusive,
        D::Accidental => proto::Disposition::Accidental,
        D::Test => proto::Disposition::Test,
        D::Unknown => proto::Disposition::Unknown,
    }
}

/// The Outcome message for an outcome event; `contact` is embedded when given.
pub fn outcome_request(outcome: &OutcomeEvent, contact: Option<&ContactEvent>) -> proto::Outcome {
    proto::Outcome {
        contact_id: outcome.contact_id.clone(),
        contact: contact.map(contact_request),
        answered: outcome.answered,
        ring_s: outcome.ring_s,
        talk_s: outcome.talk_s,
        disposition: disposition(outcome.disposition) as i32,
        category: outcome.category.clone(),
        operator_id: outcome.operator_id.clone(),
    }
}

/// A valid contact request for tests that build one by hand.
pub fn sample_contact(contact_id: &str, caller: Option<&str>) -> proto::ContactRequest {
    proto::ContactRequest {
        contact_id: contact_id.into(),
        caller: caller.map(str::to_owned),
        channel: proto::Channel::Voice as i32,
        received_at: Some(timestamp(time::OffsetDateTime::now_utc() - time::Duration::minutes(1))),
        region: "ntt.kupang".into(),
        sim_present: true,
        device_id: None,
        location: None,
        language: proto::Language::Unspecified as i32,
    }
}

/// An answered contact an operator confirmed as a prank; `contact` embedded when given.
pub fn prank_outcome(contact_id: &str, contact: Option<proto::ContactRequest>) -> proto::Outcome {
    proto::Outcome {
        contact_id: contact_id.into(),
        contact,
        answered: true,
        ring_s: 2.0,
        talk_s: 4.0,
        disposition: proto::Disposition::Prank as i32,
        category: None,
        operator_id: Some("op-1".into()),
    }
}
