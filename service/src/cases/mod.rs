//! The escalation ladder in service: every outcome from a known number is kept as evidence and evaluated against
//! the ladder policy; proposals become cases the legal team decides and dispatch carries out; every transition and
//! every read of evidence is an entry in an audit log chained with a keyed MAC, anchored outside the database, whose
//! entries record each case's rows. Durable in SQLite (embedded default) or PostgreSQL, through the same SQL.

pub mod anchor;
pub mod audit;
mod batch;
mod chain;
mod digest;
mod evidence;
pub mod privacy;
mod store;
mod verify;
mod writer;

use std::sync::Arc;

use saring_models::ladder::{Approval, LadderPolicy, Rung};
use saring_models::{Channel, Disposition};
use tokio::sync::watch;

pub use chain::{AuditOptions, AuditStartError};
pub use store::CaseStore;
pub use verify::{describe, AnchorCheck, AuditReport};

use crate::auth::Principal;

/// A case's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaseState {
    /// Proposed by the policy, awaiting a reviewer (or automatic approval).
    Proposed,
    /// Approved; awaiting dispatch (the warning or message delivered, the referral filed).
    Approved,
    /// Rejected by a reviewer. Its incidents never ground another case.
    Rejected,
    /// Carried out: the caller now holds the rung.
    Actioned,
    /// Withdrawn on appeal. Its incidents never ground another case.
    Reverted,
}

impl CaseState {
    /// Every state.
    pub const ALL: [CaseState; 5] =
        [CaseState::Proposed, CaseState::Approved, CaseState::Rejected, CaseState::Actioned, CaseState::Reverted];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseState::Proposed => "proposed",
            CaseState::Approved => "approved",
            CaseState::Rejected => "rejected",
            CaseState::Actioned => "actioned",
            CaseState::Reverted => "reverted",
        }
    }

    /// The state with this stored name.
    pub fn from_name(name: &str) -> Option<CaseState> {
        CaseState::ALL.into_iter().find(|state| state.as_str() == name)
    }

    /// Open cases (one per caller at most) still collect evidence.
    pub fn is_open(self) -> bool {
        matches!(self, CaseState::Proposed | CaseState::Approved)
    }
}

/// How dispatch carried out an approved rung.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryChannel {
    /// A text message.
    Sms,
    /// A WhatsApp message (how the virtual police's messages usually go out).
    WhatsApp,
    /// A telephone call.
    Call,
    /// In person, e.g. by the local station's officer.
    InPerson,
    /// A referral filed with the unit that takes it (prosecution or support services).
    Filed,
}

impl DeliveryChannel {
    /// Every channel.
    pub const ALL: [DeliveryChannel; 5] = [
        DeliveryChannel::Sms,
        DeliveryChannel::WhatsApp,
        DeliveryChannel::Call,
        DeliveryChannel::InPerson,
        DeliveryChannel::Filed,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryChannel::Sms => "sms",
            DeliveryChannel::WhatsApp => "whatsapp",
            DeliveryChannel::Call => "call",
            DeliveryChannel::InPerson => "in_person",
            DeliveryChannel::Filed => "filed",
        }
    }

    /// The channel with this stored name.
    pub fn from_name(name: &str) -> Option<DeliveryChannel> {
        DeliveryChannel::ALL.into_iter().find(|channel| channel.as_str() == name)
    }

    /// The channels a rung may be carried out through: a warning or message reaches the person (SMS, WhatsApp, a
    /// call, in person); a referral is filed, or a welfare referral may also be a call or a visit.
    pub fn allowed_for(rung: Rung) -> &'static [DeliveryChannel] {
        match rung {
            Rung::Warning | Rung::VirtualPoliceMessage => {
                &[DeliveryChannel::Sms, DeliveryChannel::WhatsApp, DeliveryChannel::Call, DeliveryChannel::InPerson]
            }
            Rung::LegalReferral => &[DeliveryChannel::Filed],
            Rung::WelfareReferral => &[DeliveryChannel::Filed, DeliveryChannel::Call, DeliveryChannel::InPerson],
        }
    }
}

/// The rule for every door: `channel` must be one [`DeliveryChannel::allowed_for`] the case's rung.
pub fn check_channel(rung: Rung, channel: DeliveryChannel) -> Result<(), CaseError> {
    let allowed = DeliveryChannel::allowed_for(rung);
    if allowed.contains(&channel) {
        return Ok(());
    }
    Err(CaseError::Invalid {
        field: "channel",
        description: format!(
            "a {} is not carried out by {}; one of: {}",
            rung.key(),
            channel.as_str(),
            allowed.iter().map(|channel| channel.as_str()).collect::<Vec<_>>().join(", ")
        ),
    })
}

/// A claim on an approved case: the case as it is now and the caller's number, revealed to the claimant only.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedCase {
    /// The case, claimed (its version moved on).
    pub summary: CaseSummary,
    /// The caller's number (E.164), to deliver the warning or message to.
    pub caller_number: String,
}

/// How long a claim keeps other dispatchers out by default: long enough to send a message or make a call, short
/// enough that a case claimed by someone whose shift ended is not stuck.
pub const DEFAULT_CLAIM_MINUTES: u64 = 60;

/// A case without its evidence: what lists, streams and acknowledgements show. Holds no raw number.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseSummary {
    /// The case id.
    pub case_id: String,
    /// The keyed hash of the caller's number (a pseudonym, stable per number).
    pub caller_ref: String,
    /// The rung proposed.
    pub rung: Rung,
    /// The state.
    pub state: CaseState,
    /// Bumped on every change; decisions must name the version they saw.
    pub version: i64,
    /// The region of the contact that triggered the proposal.
    pub region: String,
    /// Who approves.
    pub approval: Approval,
    /// The rule that fired.
    pub rule: String,
    /// The ladder policy's version.
    pub policy_version: String,
    /// The model serving when the case was proposed.
    pub model_version: String,
    /// Counted incidents.
    pub incidents: i64,
    /// Created, Unix ms.
    pub created_ms: i64,
    /// Last changed, Unix ms.
    pub updated_ms: i64,
    /// The reviewer (or `policy` for an automatic warning).
    pub decided_by: Option<String>,
    /// When decided.
    pub decided_ms: Option<i64>,
    /// The reviewer's reason.
    pub decision_reason: Option<String>,
    /// Who reported the action.
    pub actioned_by: Option<String>,
    /// When the warning or message was delivered, or the referral filed.
    pub delivered_ms: Option<i64>,
    /// Dispatch's note.
    pub action_note: Option<String>,
    /// The dispatcher who holds (or last held) the claim to deliver it.
    pub claimed_by: Option<String>,
    /// When claimed, Unix ms.
    pub claimed_ms: Option<i64>,
    /// How it was carried out.
    pub delivery_channel: Option<DeliveryChannel>,
    /// Who reverted it.
    pub reverted_by: Option<String>,
    /// When.
    pub reverted_ms: Option<i64>,
    /// Why (the appeal).
    pub revert_reason: Option<String>,
}

/// One contact in a case's evidence timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEntry {
    /// The contact id.
    pub contact_id: String,
    /// When it arrived, Unix ms.
    pub at_ms: i64,
    /// The channel.
    pub channel: Channel,
    /// The region.
    pub region: String,
    /// The operator's disposition.
    pub disposition: Disposition,
    /// The operator.
    pub operator_id: Option<String>,
    /// The likelihood saring gave when it scored the contact (absent when the replica that recorded the outcome
    /// had not scored it).
    pub likelihood: Option<f64>,
    /// The model that gave it.
    pub model_version: Option<String>,
    /// Whether an operator answered.
    pub answered: bool,
    /// Seconds of talk.
    pub talk_s: f64,
    /// Whether it counts towards this case.
    pub counted: bool,
    /// Corrections of its disposition, oldest first (`disposition` is the one in force).
    pub corrections: Vec<DispositionCorrection>,
}

/// One correction of a recorded contact's disposition: was `from`, now `to`.
#[derive(Debug, Clone, PartialEq)]
pub struct DispositionCorrection {
    /// The disposition before.
    pub from: Disposition,
    /// The disposition after.
    pub to: Disposition,
    /// Who corrected it (the token holder, or the operator the routing engine named).
    pub by: String,
    /// When, Unix ms.
    pub at_ms: i64,
    /// Why.
    pub reason: String,
}

/// What a correction of a disposition did to the caller's ladder.
#[derive(Debug, Clone, PartialEq)]
pub struct CorrectionOutcome {
    /// The disposition recorded before the correction.
    pub previous: Disposition,
    /// The contact held the new disposition already (a repeated correction): nothing changed.
    pub unchanged: bool,
    /// The open case the contact no longer counts towards: it was removed from the case's evidence.
    pub evidence_removed: Option<String>,
    /// A proposed case withdrawn (rejected by saring) because the correction removed its grounds.
    pub withdrawn: Option<CaseSummary>,
    /// Cases the contact grounds that were left in their state (approved, actioned or closed); their timeline
    /// shows the correction, for the legal team to judge (and revert if need be).
    pub flagged: Vec<String>,
    /// What the new disposition did, evaluated like a new outcome.
    pub change: LadderChange,
    /// The caller's open case after the correction.
    pub case: Option<CaseSummary>,
}

/// A case with its evidence: for the legal team only.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseEvidence {
    /// The case.
    pub summary: CaseSummary,
    /// The caller's raw number (E.164).
    pub caller_number: String,
    /// The caller's contacts from the start of the rule's window, oldest first.
    pub timeline: Vec<TimelineEntry>,
}

/// An outcome from a known number, as the ladder keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactRecord {
    /// The contact id.
    pub contact_id: String,
    /// The keyed hash of the number.
    pub caller_ref: String,
    /// The raw number, copied onto a case only if one is proposed.
    pub caller_number: String,
    /// Arrival, Unix ms.
    pub at_ms: i64,
    /// The channel.
    pub channel: Channel,
    /// The region.
    pub region: String,
    /// The disposition.
    pub disposition: Disposition,
    /// The operator.
    pub operator_id: Option<String>,
    /// The likelihood saring gave, if this replica scored it.
    pub likelihood: Option<f64>,
    /// The model serving now.
    pub model_version: String,
    /// Whether answered.
    pub answered: bool,
    /// Seconds of talk.
    pub talk_s: f64,
}

/// What an outcome did to the caller's ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LadderChange {
    /// Nothing.
    None,
    /// A case was proposed (or, for an automatic warning, proposed and approved).
    Proposed,
    /// The outcome counts towards the caller's open case and was added to its evidence.
    EvidenceAdded,
    /// A rung was due but the contact fell in a population-wide surge, which never proposes cases.
    SurgeSuppressed,
}

/// The ladder's answer to an outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct LadderOutcome {
    /// The outcome was already recorded; nothing changed.
    pub duplicate: bool,
    /// What changed.
    pub change: LadderChange,
    /// The caller's open case after the outcome, if any.
    pub case: Option<CaseSummary>,
}

/// A reviewer's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// PROPOSED → APPROVED.
    Approve,
    /// PROPOSED → REJECTED.
    Reject,
}

/// Filters for listing cases.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaseFilter {
    /// Any of these states (all when empty).
    pub states: Vec<CaseState>,
    /// Any of these rungs (all when empty).
    pub rungs: Vec<Rung>,
    /// The region, or a province prefix ending in '.' … matched as `region = r OR region LIKE 'r.%'`.
    pub region: Option<String>,
    /// Created at or after, Unix ms.
    pub created_from_ms: Option<i64>,
    /// Created before, Unix ms.
    pub created_to_ms: Option<i64>,
    /// Page size, 1..=500.
    pub page_size: u32,
    /// Continue after this (created_ms, case_id): the previous page's last case.
    pub after: Option<(i64, String)>,
    /// Oldest first (an inbox: what has waited longest on top) instead of newest first.
    pub oldest_first: bool,
}

/// A change to a case, from the audit log: what `Watch` streams.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseEvent {
    /// The audit entry's sequence number: a cursor to resume from.
    pub seq: i64,
    /// When.
    pub at_ms: i64,
    /// What happened.
    pub action: String,
    /// Who did it.
    pub actor: String,
    /// The case as it is now.
    pub case: CaseSummary,
}

/// What can go wrong with cases.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// No such case.
    #[error("no case {0}")]
    NotFound(String),
    /// The case changed or is in another state: the decision was not applied.
    #[error("{message}")]
    Conflict {
        /// What the caller must know, including the other decision.
        message: String,
        /// The case as it is.
        current: Box<CaseSummary>,
        /// True when the caller's version is not the case's (someone else changed it first: read and retry);
        /// false when the version is current but the case's state does not allow the change.
        stale: bool,
    },
    /// The database failed; nothing was applied.
    #[error("case database: {0}")]
    Database(#[from] sqlx::Error),
    /// The request contradicts what the case database holds (a contact id recorded for another caller, a
    /// delivery before its approval); nothing was applied.
    #[error("{field}: {description}")]
    Invalid {
        /// The request field at fault.
        field: &'static str,
        /// What is wrong with it.
        description: String,
    },
    /// The contact's outcome was recorded before with other content; the first one stands, nothing was applied.
    #[error("{0}")]
    Exists(String),
    /// No outcome is recorded for this contact id (a correction needs one).
    #[error("no outcome is recorded for contact {0}")]
    UnknownContact(String),
    /// A legal hold stands on the number (an open case, or a legal referral approved or filed) and no reviewer
    /// has released it: nothing was erased.
    #[error("case {case_id} holds this number ({}): a reviewer must release its hold (Privacy.ReleaseHold) before \
             the number can be erased", .cause.as_str())]
    Held {
        /// The case.
        case_id: String,
        /// Why it holds.
        cause: privacy::HoldCause,
    },
    /// The database holds something saring did not write.
    #[error("case database holds an unknown {what}: {value:?}")]
    Corrupt {
        /// The column.
        what: &'static str,
        /// The value.
        value: String,
    },
}

/// An outcome as the case database holds it, to compare a repeat with.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedOutcome {
    /// The keyed hash of the caller it was recorded for.
    pub caller_ref: String,
    /// The disposition.
    pub disposition: Disposition,
    /// Whether answered.
    pub answered: bool,
    /// Seconds of talk.
    pub talk_s: f64,
    /// When the contact arrived, Unix ms.
    pub at_ms: i64,
}

/// The longest reason or note a case change may carry, in characters.
pub const MAX_REASON_CHARS: usize = 2000;

/// Whether `text` holds an Indonesian phone number in any written form ("0812-3456-7001", "+62 812 3456 7001",
/// "(021) 555 1234"): a run of digits and separators with at least 8 digits that the number normaliser accepts.
pub fn contains_phone_number(text: &str) -> bool {
    let part_of_number = |c: char| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')' | '+');
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit() || c == '+' || c == '(') {
        let run = &rest[start..];
        let end = run.find(|c: char| !part_of_number(c)).unwrap_or(run.len());
        // Every stretch of whole digit groups in the run that starts where a number may (a digit, `+`, `(`) and is
        // at most as long as a written number: "14.05 0812-3456-7001" and "0812 3456 7001 22" hold one too.
        let run = &run[..end];
        // A digit group glued to a letter is part of an identifier ("case-a0213456789bcdef"), not a number.
        let glued_before = rest[..start].chars().next_back().is_some_and(char::is_alphanumeric);
        let glued_after = rest[start + end..].chars().next().is_some_and(char::is_alphanumeric);
        let bytes = run.as_bytes();
        let starts = (0..bytes.len()).filter(|&at| {
            matches!(bytes[at], b'0'..=b'9' | b'+' | b'(')
                && (at == 0 || !bytes[at - 1].is_ascii_digit())
                && !(at == 0 && glued_before)
        });
        for from in starts {
            let ends = (from + 1..=bytes.len())
                .filter(|&to| bytes[to - 1].is_ascii_digit() && (to == bytes.len() || !bytes[to].is_ascii_digit()))
                .filter(|&to| !(to == bytes.len() && glued_after))
                .take_while(|&to| to - from <= 24);
            for to in ends {
                let candidate = &run[from..to];
                if candidate.chars().filter(char::is_ascii_digit).count() >= 8
                    && saring_models::phone::normalise_indonesian_number(candidate).is_ok()
                {
                    return true;
                }
            }
        }
        rest = &rest[start + end.max(1)..];
    }
    false
}

/// A reason or note as every door (gRPC, console) takes it: trimmed, line breaks as `\n`; required when
/// `required`; at most [`MAX_REASON_CHARS`] characters; no control characters but line breaks; no phone number
/// ([`contains_phone_number`]: the audit log keeps reasons for good). The error names what is wrong, for the
/// caller to attach to its field.
pub fn check_reason(value: &str, required: bool) -> Result<String, String> {
    let reason = value.trim().replace("\r\n", "\n");
    if reason.is_empty() {
        return if required { Err("required: say why".into()) } else { Ok(reason) };
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(format!("longer than {MAX_REASON_CHARS} characters"));
    }
    if reason.chars().any(|c| c.is_control() && c != '\n') {
        return Err("contains control characters".into());
    }
    if contains_phone_number(&reason) {
        return Err("contains a phone number: reasons are kept in the audit log for good (an erasure cannot reach \
                    them), so name the case, the contact or the request instead"
            .into());
    }
    Ok(reason)
}

/// Whether an outcome for a contact id the database already holds is a true repeat (`Ok`: acknowledged as a
/// duplicate, nothing changes), names another caller (INVALID_ARGUMENT on `contact_id`: contact ids are unique per
/// contact), or says something else about the same contact (ALREADY_EXISTS: the first outcome stands and a
/// correction is not silently dropped as a duplicate).
pub fn check_repeat(stored: &RecordedOutcome, record: &ContactRecord) -> Result<(), CaseError> {
    if stored.caller_ref != record.caller_ref {
        return Err(CaseError::Invalid {
            field: "contact_id",
            description: format!(
                "{} was already recorded for another caller; every contact needs an id of its own",
                record.contact_id
            ),
        });
    }
    if stored.disposition != record.disposition || stored.answered != record.answered || stored.talk_s != record.talk_s
    {
        return Err(CaseError::Exists(format!(
            "contact {} was already recorded as {} ({}, {} s of talk); this outcome says {} ({}, {} s) and was not \
             applied",
            record.contact_id,
            stored.disposition.as_str(),
            if stored.answered { "answered" } else { "unanswered" },
            stored.talk_s,
            record.disposition.as_str(),
            if record.answered { "answered" } else { "unanswered" },
            record.talk_s,
        )));
    }
    Ok(())
}

/// A Unix-ms time as RFC 3339 (UTC), for messages.
pub(crate) fn rfc3339(at_ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{at_ms} ms"))
}

/// How far ahead of the server's clock a reported time may be (clock skew between a client and saring).
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

/// A delivery cannot precede its approval: dispatch acts on an approved case. A `delivered_at` before it would
/// date the rung from before anyone approved it (forgiving it early, or counting incidents that came before the
/// real delivery towards the next rung). Nor can it be in the future (beyond [`MAX_CLOCK_SKEW_MS`] of `now_ms`).
pub fn check_delivery(case: &CaseSummary, delivered_ms: i64, now_ms: i64) -> Result<(), CaseError> {
    if delivered_ms > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
        return Err(CaseError::Invalid { field: "delivered_at", description: "in the future".into() });
    }
    match case.decided_ms {
        Some(approved_ms) if delivered_ms < approved_ms => Err(CaseError::Invalid {
            field: "delivered_at",
            description: format!(
                "before the case was approved ({}); a warning or message is delivered, or a referral filed, after \
                 its approval",
                rfc3339(approved_ms),
            ),
        }),
        _ => Ok(()),
    }
}

/// A delivery as dispatch reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// When it was delivered (or the referral filed), Unix ms.
    pub at_ms: i64,
    /// How.
    pub channel: DeliveryChannel,
}

/// Only the dispatcher holding a case's claim reports its delivery: the claim is when the number was revealed to
/// them, so a delivery by anyone else would be to a number saring never gave them (or one given to someone else).
pub fn check_claimant(case: &CaseSummary, dispatcher: &str) -> Result<(), CaseError> {
    match case.claimed_by.as_deref() {
        Some(holder) if holder == dispatcher => Ok(()),
        holder => Err(CaseError::Conflict {
            message: match holder {
                Some(holder) => format!(
                    "case {} is claimed by {holder}; only the dispatcher holding the claim reports its delivery",
                    case.case_id
                ),
                None => format!(
                    "case {} is not claimed; claim it first (the claim gives you the number to deliver to)",
                    case.case_id
                ),
            },
            current: Box::new(case.clone()),
            stale: false,
        }),
    }
}

/// The time the escalator stamps on what it does, Unix ms: the system clock, or a simulated one (backtests).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock in Unix ms.
pub fn system_clock() -> Clock {
    Arc::new(|| (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64)
}

/// The ladder and its cases: the transport-free core the gRPC handlers (and later the console) call.
pub struct Escalator {
    store: CaseStore,
    policy: Arc<LadderPolicy>,
    changes: watch::Sender<i64>,
    clock: Clock,
    claim_ms: i64,
    sandbox: bool,
    correction_window_ms: i64,
}

/// How long after a contact arrived its disposition may be corrected, unless configured
/// (`outcomes.correction_window_hours`).
pub const DEFAULT_CORRECTION_WINDOW_MS: i64 = 24 * 3_600_000;

impl Escalator {
    /// The ladder `policy` over `store`.
    pub fn new(store: CaseStore, policy: LadderPolicy) -> Self {
        Escalator::with_clock(store, policy, system_clock())
    }

    /// The ladder `policy` over `store`, stamping proposals and decisions with `clock` (a backtest's simulated
    /// time).
    pub fn with_clock(store: CaseStore, policy: LadderPolicy, clock: Clock) -> Self {
        let (changes, _) = watch::channel(0);
        Escalator {
            store,
            policy: Arc::new(policy),
            changes,
            clock,
            claim_ms: (DEFAULT_CLAIM_MINUTES * 60_000) as i64,
            sandbox: false,
            correction_window_ms: DEFAULT_CORRECTION_WINDOW_MS,
        }
    }

    /// Test and training traffic (`[cases] sandbox`): outcomes never reach the ladder, so no case is proposed.
    pub fn with_sandbox(mut self, sandbox: bool) -> Self {
        self.sandbox = sandbox;
        self
    }

    /// How long a claim keeps other dispatchers out (`[cases] claim_minutes`).
    pub fn with_claim_minutes(mut self, minutes: u64) -> Self {
        self.claim_ms = i64::try_from(minutes.saturating_mul(60_000)).unwrap_or(i64::MAX);
        self
    }

    /// Allows corrections of a disposition until `window` after the contact arrived.
    pub fn with_correction_window(mut self, window: std::time::Duration) -> Self {
        self.correction_window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// How long after a contact arrived its disposition may be corrected, in ms.
    pub fn correction_window_ms(&self) -> i64 {
        self.correction_window_ms
    }

    /// The escalator's clock, Unix ms.
    pub fn now_ms(&self) -> i64 {
        (self.clock)()
    }

    /// The policy.
    pub fn policy(&self) -> &LadderPolicy {
        &self.policy
    }

    /// The store.
    pub fn store(&self) -> &CaseStore {
        &self.store
    }

    /// Wakes watchers: something changed in this process (other replicas are seen by polling).
    fn changed(&self, seq: Option<i64>) {
        if let Some(seq) = seq {
            self.changes.send_if_modified(|latest| {
                let newer = seq > *latest;
                if newer {
                    *latest = seq;
                }
                newer
            });
        }
    }

    /// A receiver that changes whenever this process appends to the audit log.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.changes.subscribe()
    }

    /// Keeps an outcome from a known number and evaluates the ladder. Idempotent by contact id. In a sandbox,
    /// nothing is kept and nothing changes.
    pub async fn on_outcome(&self, record: &ContactRecord) -> Result<LadderOutcome, CaseError> {
        if self.sandbox {
            return Ok(LadderOutcome { duplicate: false, change: LadderChange::None, case: None });
        }
        let (outcome, seq) = self.store.on_outcome(&self.policy, record, (self.clock)()).await?;
        self.changed(seq);
        Ok(outcome)
    }

    /// Checks an outcome against the one already recorded for its contact id, if any ([`check_repeat`]), before
    /// anything else takes it; [`Escalator::on_outcome`] checks again in its transaction.
    pub async fn check_outcome(&self, record: &ContactRecord) -> Result<(), CaseError> {
        if self.sandbox {
            return Ok(());
        }
        match self.store.recorded_outcome(&record.contact_id).await? {
            Some(stored) => check_repeat(&stored, record),
            None => Ok(()),
        }
    }

    /// Cases matching `filter`, newest first, and the cursor of the next page.
    pub async fn list(&self, filter: &CaseFilter) -> Result<(Vec<CaseSummary>, Option<(i64, String)>), CaseError> {
        self.store.list(filter).await
    }

    /// A case without its evidence (no number, nothing audited).
    pub async fn summary(&self, case_id: &str) -> Result<CaseSummary, CaseError> {
        self.store.summary(case_id).await
    }

    /// A case with its evidence; the read is audited.
    pub async fn get(&self, case_id: &str, reader: &Principal) -> Result<CaseEvidence, CaseError> {
        self.read(case_id, reader, Some("case evidence read")).await
    }

    /// A case with its evidence, the read audited with `audit` as its reason (action `evidence_read`), or not at
    /// all (`None`: only for a reader whose read of this case is in the audit log already, e.g. the same
    /// reviewer's later page views within one console session).
    pub async fn read(
        &self,
        case_id: &str,
        reader: &Principal,
        audit: Option<&str>,
    ) -> Result<CaseEvidence, CaseError> {
        let (evidence, seq) = self.store.read_evidence(case_id, reader, audit).await?;
        self.changed(seq);
        Ok(evidence)
    }

    /// Every case of one caller (by the keyed hash of the number), oldest first: the history a reviewer weighs.
    pub async fn cases_of_caller(&self, caller_ref: &str) -> Result<Vec<CaseSummary>, CaseError> {
        self.store.cases_of_caller(caller_ref).await
    }

    /// Approves or rejects a proposed case, if it is still at `version`.
    pub async fn decide(
        &self,
        case_id: &str,
        version: i64,
        decision: Decision,
        reason: &str,
        reviewer: &Principal,
    ) -> Result<CaseSummary, CaseError> {
        let (to, action) = match decision {
            Decision::Approve => (CaseState::Approved, "approved"),
            Decision::Reject => (CaseState::Rejected, "rejected"),
        };
        self.transition(case_id, version, &[CaseState::Proposed], to, action, reason, None, reviewer).await
    }

    /// Dispatch claims an approved case to carry it out: the answer holds the caller's number, and the claim (with
    /// that reveal) is audited. Refused while another dispatcher's claim is younger than `[cases] claim_minutes`;
    /// the same dispatcher may claim again (each claim is audited again).
    pub async fn claim(&self, case_id: &str, version: i64, dispatcher: &Principal) -> Result<ClaimedCase, CaseError> {
        let (claimed, seq) = self.store.claim(case_id, version, dispatcher, (self.clock)(), self.claim_ms).await?;
        self.changed(Some(seq));
        Ok(claimed)
    }

    /// The claimant gives an approved case back undelivered (the number could not be reached, the shift ends), so
    /// another dispatcher may claim it at once.
    pub async fn release_claim(
        &self,
        case_id: &str,
        version: i64,
        reason: &str,
        dispatcher: &Principal,
    ) -> Result<CaseSummary, CaseError> {
        let (summary, seq) = self.store.release_claim(case_id, version, reason, dispatcher, (self.clock)()).await?;
        self.changed(Some(seq));
        Ok(summary)
    }

    /// Dispatch reports the warning or message delivered, or the referral filed, at `delivered_ms` through
    /// `channel`. Only the dispatcher holding the case's claim may.
    pub async fn record_action(
        &self,
        case_id: &str,
        version: i64,
        delivery: Delivery,
        note: &str,
        dispatcher: &Principal,
    ) -> Result<CaseSummary, CaseError> {
        self.transition(
            case_id,
            version,
            &[CaseState::Approved],
            CaseState::Actioned,
            "actioned",
            note,
            Some(delivery),
            dispatcher,
        )
        .await
    }

    /// Withdraws an approved or actioned case on appeal: the caller no longer holds its rung.
    pub async fn revert(
        &self,
        case_id: &str,
        version: i64,
        reason: &str,
        reviewer: &Principal,
    ) -> Result<CaseSummary, CaseError> {
        self.transition(
            case_id,
            version,
            &[CaseState::Approved, CaseState::Actioned],
            CaseState::Reverted,
            "reverted",
            reason,
            None,
            reviewer,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn transition(
        &self,
        case_id: &str,
        version: i64,
        from: &[CaseState],
        to: CaseState,
        action: &str,
        reason: &str,
        delivery: Option<Delivery>,
        actor: &Principal,
    ) -> Result<CaseSummary, CaseError> {
        let (summary, seq) =
            self.store.transition(case_id, version, from, to, action, reason, delivery, actor, (self.clock)()).await?;
        self.changed(Some(seq));
        Ok(summary)
    }

    /// Corrects the disposition of a recorded contact to `record.disposition` (`record` is the contact as it should
    /// have been recorded), in one transaction with its audit entries: the contact's row, the correction's own row,
    /// the cases it grounds (a proposed case it no longer counts towards loses it, and is withdrawn when its rule
    /// no longer holds; other cases are left as they are and show the correction), then the new disposition
    /// evaluated like a new outcome. A repeat changes nothing.
    pub async fn correct(
        &self,
        record: &ContactRecord,
        reason: &str,
        actor: &Principal,
    ) -> Result<CorrectionOutcome, CaseError> {
        let (outcome, seq) = self.store.correct(&self.policy, record, reason, actor, (self.clock)()).await?;
        self.changed(seq);
        Ok(outcome)
    }

    /// The outcome recorded for `contact_id`, if any.
    pub async fn recorded_outcome(&self, contact_id: &str) -> Result<Option<RecordedOutcome>, CaseError> {
        self.store.recorded_outcome(contact_id).await
    }

    /// Case changes after audit entry `after_seq`, oldest first, at most `limit`.
    pub async fn events_after(&self, after_seq: i64, limit: u32) -> Result<Vec<CaseEvent>, CaseError> {
        self.store.events_after(after_seq, limit).await
    }

    /// The rung a caller holds now (after forgiveness) and their open case.
    pub async fn caller_ladder(
        &self,
        caller_ref: &str,
        now_ms: i64,
    ) -> Result<(Option<saring_models::ladder::Delivered>, Option<CaseSummary>), CaseError> {
        self.store.caller_ladder(&self.policy, caller_ref, now_ms).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reasons_holding_a_phone_number_are_refused_in_any_written_form() {
        for holding in [
            "caller 0812-3456-7001 asked",
            "+62 812 3456 7001",
            "see 6281234567001.",
            "office (021) 555 1234 confirmed",
            "number 0812.3456.7001",
            "at 14.05 0812-3456-7001",
            "0812 3456 7001 22 calls",
        ] {
            assert!(super::contains_phone_number(holding), "{holding}");
            assert!(super::check_reason(holding, true).is_err(), "{holding}");
        }
        for clean in [
            "DSR-2026-114",
            "appeal upheld on 2026-12-03 08:15",
            "2 of 3 contacts were genuine",
            "case-0a1b2c3d4e5f6071 and contact 12345678",
            "delivered case-a0213456789bcdef",
            "case-0213456789abcdef",
            "ticket 1234567890",
        ] {
            assert!(!super::contains_phone_number(clean), "{clean}");
            assert!(super::check_reason(clean, true).is_ok(), "{clean}");
        }
    }

    use super::*;

    fn record(caller_ref: &str, disposition: Disposition, answered: bool, talk_s: f64) -> ContactRecord {
        ContactRecord {
            contact_id: "c-1".into(),
            caller_ref: caller_ref.into(),
            caller_number: "+6281234000001".into(),
            at_ms: 1_700_000_000_000,
            channel: Channel::Voice,
            region: "ntt.kupang".into(),
            disposition,
            operator_id: Some("op-1".into()),
            likelihood: None,
            model_version: "m".into(),
            answered,
            talk_s,
        }
    }

    #[test]
    fn a_repeat_is_a_duplicate_only_when_it_says_the_same() {
        let stored = RecordedOutcome {
            caller_ref: "a".into(),
            disposition: Disposition::Prank,
            answered: true,
            talk_s: 4.0,
            at_ms: 1_700_000_000_000,
        };
        assert!(check_repeat(&stored, &record("a", Disposition::Prank, true, 4.0)).is_ok());
        match check_repeat(&stored, &record("b", Disposition::Prank, true, 4.0)) {
            Err(CaseError::Invalid { field: "contact_id", .. }) => {}
            other => panic!("another caller: {other:?}"),
        }
        for changed in [
            record("a", Disposition::Silent, true, 4.0),
            record("a", Disposition::Prank, false, 4.0),
            record("a", Disposition::Prank, true, 40.0),
        ] {
            assert!(matches!(check_repeat(&stored, &changed), Err(CaseError::Exists(_))), "{changed:?}");
        }
    }

    #[test]
    fn a_delivery_is_not_before_its_approval() {
        let approved_ms = 1_700_000_000_000;
        let case = CaseSummary {
            case_id: "case-1".into(),
            caller_ref: "a".into(),
            rung: Rung::Warning,
            state: CaseState::Approved,
            version: 2,
            region: "ntt.kupang".into(),
            approval: Approval::Automatic,
            rule: "rungs.warning".into(),
            policy_version: "p".into(),
            model_version: "m".into(),
            incidents: 2,
            created_ms: approved_ms,
            updated_ms: approved_ms,
            decided_by: Some("policy".into()),
            decided_ms: Some(approved_ms),
            decision_reason: None,
            actioned_by: None,
            delivered_ms: None,
            action_note: None,
            claimed_by: Some("dispatch-1".into()),
            claimed_ms: Some(approved_ms),
            delivery_channel: None,
            reverted_by: None,
            reverted_ms: None,
            revert_reason: None,
        };
        let now = approved_ms + 86_400_000;
        assert!(check_delivery(&case, approved_ms, now).is_ok());
        assert!(check_delivery(&case, now, now).is_ok());
        match check_delivery(&case, now + MAX_CLOCK_SKEW_MS + 1, now) {
            Err(CaseError::Invalid { field: "delivered_at", description }) => assert_eq!(description, "in the future"),
            other => panic!("a delivery in the future: {other:?}"),
        }
        for early in [approved_ms - 1, 946_684_800_000] {
            match check_delivery(&case, early, now) {
                Err(CaseError::Invalid { field: "delivered_at", description }) => {
                    assert!(description.contains("2023-11-14T22:13:20Z"), "{description}")
                }
                other => panic!("{early}: {other:?}"),
            }
        }
    }

    #[test]
    fn one_reason_rule_for_every_door() {
        assert_eq!(check_reason("  five pranks\r\nafter a warning ", true).unwrap(), "five pranks\nafter a warning");
        assert_eq!(check_reason("   ", true).unwrap_err(), "required: say why");
        assert_eq!(check_reason("", false).unwrap(), "");
        assert_eq!(check_reason("a\u{7}b", true).unwrap_err(), "contains control characters");
        assert_eq!(check_reason("a\rb", true).unwrap_err(), "contains control characters");
        // Characters, not bytes: 2000 Indonesian-with-accents characters pass, 2001 do not.
        assert!(check_reason(&"é".repeat(MAX_REASON_CHARS), true).is_ok());
        assert!(check_reason(&"é".repeat(MAX_REASON_CHARS + 1), true).is_err());
    }
}
