//! Point-in-time replay of an event log through the history aggregate: each contact's features see only the
//! outcomes recorded before it arrived, exactly as the service sees them.

use std::collections::{HashMap, HashSet};

use saring_models::features::{extract, ContactContext, FeatureVector};
use saring_models::history::contact_fingerprint;
use saring_models::naive::{all_time_misuse_share, recent_misuse_share};
use saring_models::phone::normalise_indonesian_number;
use saring_models::region::utc_offset_seconds;
use saring_models::{CallerHistory, Channel, Disposition};

use crate::events::{ContactEvent, Event, OutcomeEvent};

/// One contact as replayed: its features at arrival and the disposition it later got.
#[derive(Debug, Clone)]
pub struct ReplayRow {
    /// Contact id.
    pub contact_id: String,
    /// Arrival time, Unix milliseconds.
    pub at_ms: i64,
    /// Region code.
    pub region: String,
    /// Channel.
    pub channel: Channel,
    /// Features at arrival.
    pub features: FeatureVector,
    /// The disposition recorded later, if any.
    pub disposition: Option<Disposition>,
    /// Whether the number had no recorded history at arrival (or was withheld).
    pub first_time_caller: bool,
    /// The naive baseline: share of this number's past labelled contacts that were misuse (0 without any),
    /// from exact all-time counts.
    pub naive_score: f64,
    /// The naive baseline as a live service computes it: the same share from the history's 30-day decayed
    /// counters at arrival ([`saring_models::naive::recent_misuse_share`]).
    pub naive_recent: f64,
}

impl ReplayRow {
    /// The training label: Some(true) for misuse, Some(false) for other labels, None when unlabelled.
    pub fn label(&self) -> Option<bool> {
        self.disposition.filter(|disposition| disposition.is_labelled()).map(Disposition::is_misuse)
    }
}

/// What a replay produced and skipped.
#[derive(Debug, Default)]
pub struct Replay {
    /// One row per contact, in arrival order.
    pub rows: Vec<ReplayRow>,
    /// Contacts the service would refuse: a caller number that is not Indonesian, or an unknown province.
    pub invalid_contacts: usize,
    /// Outcomes for contacts not in the log.
    pub orphan_outcomes: usize,
    /// Repeated outcomes (ignored, as the service ignores them).
    pub duplicate_outcomes: usize,
}

/// The context of a contact event, as the service builds it from a ContactRequest; `None` when the region's
/// province is unknown (the service refuses such a contact).
pub fn contact_context(contact: &ContactEvent, withheld: bool) -> Option<ContactContext> {
    Some(ContactContext {
        received_at_ms: (contact.at.unix_timestamp_nanos() / 1_000_000) as i64,
        channel: contact.channel,
        utc_offset_s: utc_offset_seconds(&contact.region)?,
        withheld,
        sim_present: contact.sim_present,
        has_device: contact.device_id.is_some(),
        location_accuracy_m: match (contact.lat, contact.lon) {
            (Some(_), Some(_)) => Some(contact.accuracy_m.unwrap_or(0.0)),
            _ => None,
        },
    })
}

struct Pending {
    row_index: usize,
    context: ContactContext,
    caller: Option<String>,
    device: Option<String>,
}

#[derive(Default)]
struct NaiveCounts {
    labelled: u32,
    misuse: u32,
}

/// Replays events in log order.
pub fn replay(events: &[Event]) -> Replay {
    let mut result = Replay::default();
    let mut caller_histories: HashMap<String, CallerHistory> = HashMap::new();
    let mut device_histories: HashMap<String, CallerHistory> = HashMap::new();
    let mut naive: HashMap<String, NaiveCounts> = HashMap::new();
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut recorded: HashSet<String> = HashSet::new();
    for event in events {
        match event {
            Event::Contact(contact) => {
                let caller = match contact.caller.as_deref().map(normalise_indonesian_number) {
                    Some(Ok(number)) => Some(number),
                    Some(Err(_)) => {
                        result.invalid_contacts += 1;
                        continue;
                    }
                    None => None,
                };
                let Some(context) = contact_context(contact, caller.is_none()) else {
                    result.invalid_contacts += 1;
                    continue;
                };
                let caller_history = caller.as_ref().and_then(|number| caller_histories.get(number));
                let device_history = contact.device_id.as_ref().and_then(|device| device_histories.get(device));
                let features = extract(&context, caller_history, device_history);
                let counts = caller.as_ref().and_then(|number| naive.get(number));
                result.rows.push(ReplayRow {
                    contact_id: contact.contact_id.clone(),
                    at_ms: context.received_at_ms,
                    region: contact.region.clone(),
                    channel: contact.channel,
                    features,
                    disposition: None,
                    first_time_caller: caller_history.is_none(),
                    naive_score: counts.map_or(0.0, |counts| all_time_misuse_share(counts.labelled, counts.misuse)),
                    naive_recent: recent_misuse_share(caller_history, context.received_at_ms),
                });
                let row_index = result.rows.len() - 1;
                pending.insert(
                    contact.contact_id.clone(),
                    Pending { row_index, context, caller, device: contact.device_id.clone() },
                );
            }
            Event::Outcome(outcome) => {
                if recorded.contains(&outcome.contact_id) {
                    result.duplicate_outcomes += 1;
                    continue;
                }
                let Some(contact) = pending.remove(&outcome.contact_id) else {
                    result.orphan_outcomes += 1;
                    continue;
                };
                recorded.insert(outcome.contact_id.clone());
                apply_outcome(outcome, &contact, &mut caller_histories, &mut device_histories);
                result.rows[contact.row_index].disposition = Some(outcome.disposition);
                if let (Some(number), true) = (&contact.caller, outcome.disposition.is_labelled()) {
                    let counts = naive.entry(number.clone()).or_default();
                    counts.labelled += 1;
                    counts.misuse += u32::from(outcome.disposition.is_misuse());
                }
            }
        }
    }
    result
}

fn apply_outcome(
    outcome: &OutcomeEvent,
    contact: &Pending,
    caller_histories: &mut HashMap<String, CallerHistory>,
    device_histories: &mut HashMap<String, CallerHistory>,
) {
    let history_event = contact.context.history_event(
        contact_fingerprint(&outcome.contact_id),
        outcome.answered,
        outcome.talk_s,
        outcome.disposition,
    );
    for (key, histories) in [(&contact.caller, caller_histories), (&contact.device, device_histories)] {
        let Some(key) = key else { continue };
        match histories.get_mut(key) {
            Some(history) => {
                history.apply(&history_event);
            }
            None => {
                histories.insert(key.clone(), CallerHistory::from_event(&history_event));
            }
        }
    }
}
