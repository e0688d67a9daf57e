//! The contact mix the harness replays: contacts and their outcomes from a simulated event log, shifted so the
//! log ends just before now (the service refuses contacts from the future), as saring.v1 messages.

use std::collections::HashMap;
use std::path::Path;

use saring::proto;
use saring_models::events::{read_events, ContactEvent, Event, OutcomeEvent};
use saring_models::{Channel, Disposition};
use saring_training::simulate::{simulate, SimulationConfig};
use time::OffsetDateTime;

/// The log the harness simulates when none is given (the same population as the criterion bench).
pub const DEFAULT_SIMULATION: (u64, u32, u32) = (7, 14, 5000);

/// One contact of the mix and the outcome the routing engine reports for it (with the contact embedded, so any
/// replica can record it).
#[derive(Debug, Clone)]
pub struct MixEntry {
    /// The ScoreContact request.
    pub contact: proto::ContactRequest,
    /// The RecordOutcome request.
    pub outcome: proto::Outcome,
}

/// Contacts in log order; replayed round-robin.
#[derive(Debug, Clone)]
pub struct Mix {
    /// The entries.
    pub entries: Vec<MixEntry>,
    /// Distinct numbers among them.
    pub distinct_callers: usize,
    /// Contacts whose number has at least 10 contacts in the log.
    pub hot_contacts: usize,
}

impl Mix {
    /// The mix of a simulated log (seed, days, callers), generated in process.
    pub fn simulated(seed: u64, days: u32, callers: u32) -> Mix {
        let config = SimulationConfig { seed, days, callers, ..Default::default() };
        Mix::from_events(&simulate(&config), OffsetDateTime::now_utc())
    }

    /// The mix of an event log file (JSON Lines, `saring-train simulate --out`).
    pub fn from_file(path: &Path) -> anyhow::Result<Mix> {
        let file = std::fs::File::open(path).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
        let (events, _bad) = read_events(std::io::BufReader::new(file), false)?;
        Ok(Mix::from_events(&events, OffsetDateTime::now_utc()))
    }

    /// Pairs contacts with their outcomes (contacts without one are left out) and shifts every time so the last
    /// event is ten minutes before `now`.
    pub fn from_events(events: &[Event], now: OffsetDateTime) -> Mix {
        let last = events.iter().map(Event::at).max().unwrap_or(now);
        let shift = now - time::Duration::minutes(10) - last;
        let outcomes: HashMap<&str, &OutcomeEvent> = events
            .iter()
            .filter_map(|event| match event {
                Event::Outcome(outcome) => Some((outcome.contact_id.as_str(), outcome)),
                Event::Contact(_) => None,
            })
            .collect();
        let mut per_caller: HashMap<&str, usize> = HashMap::new();
        let mut entries = Vec::new();
        for event in events {
            let Event::Contact(contact) = event else { continue };
            let Some(outcome) = outcomes.get(contact.contact_id.as_str()) else { continue };
            if let Some(caller) = &contact.caller {
                *per_caller.entry(caller.as_str()).or_default() += 1;
            }
            let contact_request = contact_request(contact, shift);
            entries.push(MixEntry { outcome: outcome_request(outcome, &contact_request), contact: contact_request });
        }
        let hot_contacts = entries
            .iter()
            .filter(|entry| entry.contact.caller.as_deref().is_some_and(|caller| per_caller[caller] >= 10))
            .count();
        Mix { entries, distinct_callers: per_caller.len(), hot_contacts }
    }

    /// The entry replayed as the `index`-th request.
    pub fn entry(&self, index: u64) -> &MixEntry {
        &self.entries[(index % self.entries.len() as u64) as usize]
    }
}

fn timestamp(at: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: at.unix_timestamp(), nanos: at.nanosecond() as i32 }
}

fn contact_request(contact: &ContactEvent, shift: time::Duration) -> proto::ContactRequest {
    let channel = match contact.channel {
        Channel::Voice => proto::Channel::Voice,
        Channel::Whatsapp => proto::Channel::Whatsapp,
        Channel::Sms => proto::Channel::Sms,
        Channel::App => proto::Channel::App,
    };
    let location = match (contact.lat, contact.lon) {
        (Some(lat), Some(lon)) => {
            Some(proto::Location { lat, lon, accuracy_m: contact.accuracy_m.unwrap_or(0.0).max(0.0) })
        }
        _ => None,
    };
    proto::ContactRequest {
        contact_id: contact.contact_id.clone(),
        caller: contact.caller.clone(),
        channel: channel as i32,
        received_at: Some(timestamp(contact.at + shift)),
        region: contact.region.clone(),
        sim_present: contact.sim_present,
        device_id: contact.device_id.clone(),
        location,
        language: proto::Language::Unspecified as i32,
    }
}

fn outcome_request(outcome: &OutcomeEvent, contact: &proto::ContactRequest) -> proto::Outcome {
    let disposition = match outcome.disposition {
        Disposition::GenuineEmergency => proto::Disposition::GenuineEmergency,
        Disposition::NonEmergency => proto::Disposition::NonEmergency,
        Disposition::Prank => proto::Disposition::Prank,
        Disposition::Silent => proto::Disposition::Silent,
        Disposition::Abusive => proto::Disposition::Abusive,
        Disposition::Accidental => proto::Disposition::Accidental,
        Disposition::Test => proto::Disposition::Test,
        Disposition::Unknown => proto::Disposition::Unknown,
    };
    proto::Outcome {
        contact_id: outcome.contact_id.clone(),
        contact: Some(contact.clone()),
        answered: outcome.answered,
        ring_s: outcome.ring_s,
        talk_s: outcome.talk_s,
        disposition: disposition as i32,
        category: outcome.category.clone(),
        operator_id: outcome.operator_id.clone(),
    }
}
