//! Shared fixtures: a real server on 127.0.0.1:0, a real tonic client, and event-log conversions.

pub mod process;

use std::sync::Arc;

use prost_types::Timestamp;
use saring::config::Settings;
use saring::proto;
use saring::proto::screening_client::ScreeningClient;
use saring::server::{build_screener, load_model, memory_store, RunningServer};
use saring_training::events::{ContactEvent, OutcomeEvent};
use tonic::transport::Channel;

/// A running server and a client connected to it over TCP.
pub struct Harness {
    pub server: RunningServer,
    pub client: ScreeningClient<Channel>,
    pub channel: Channel,
}

/// Starts the real service (shipped model, in-memory history) on an ephemeral port and connects a client.
pub async fn start() -> Harness {
    let settings = Settings::default();
    let model = load_model(&settings).expect("the shipped model loads");
    let screener = Arc::new(build_screener(&settings, model, memory_store(&settings)));
    let server = RunningServer::start("127.0.0.1:0".parse().unwrap(), screener).await.expect("binds");
    let channel =
        Channel::from_shared(format!("http://{}", server.local_addr)).unwrap().connect().await.expect("connects");
    Harness { server, client: ScreeningClient::new(channel.clone()), channel }
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
