//! `saring backtest`: replays an event log through the service's own history, model and ladder code — the same
//! [`App`] the gRPC handlers call, over an in-memory history and a private in-memory case database — and reports
//! how the ladder would have treated the callers in it.
//!
//! Reviewers and dispatch are simulated as the harshest plausible team: every proposed case is approved and
//! delivered `delivery_delay` after it was proposed. That bounds from above how far callers climb and how many
//! genuine-emergency callers end up on a rung. Fairness is not taken on trust from the ladder: every proposal is
//! checked against an independent count of the caller's confirmed dispositions taken straight from the log.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use saring_models::events::{ContactEvent, Event, OutcomeEvent};
use saring_models::ladder::{LadderPolicy, Rung};
use saring_models::phone::normalise_indonesian_number;
use saring_models::region::utc_offset_seconds;
use saring_models::{Disposition, Model};
use serde::Serialize;

use crate::app::App;
use crate::auth::{Authenticator, Principal, Role};
use crate::cases::{CaseState, CaseStore, CaseSummary, Decision, Delivery, DeliveryChannel, Escalator, LadderChange};
use crate::privacy::KeyHasher;
use crate::screening::{Contact, Location, OutcomeReport, Screener};
use crate::store::MemoryStore;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: f64 = 86_400_000.0;

/// How the backtest simulates the people behind the ladder.
#[derive(Debug, Clone, Copy)]
pub struct BacktestOptions {
    /// Time from a proposal to its delivery (approval, then dispatch), in hours.
    pub delivery_delay_h: u32,
}

impl Default for BacktestOptions {
    fn default() -> Self {
        BacktestOptions { delivery_delay_h: 24 }
    }
}

/// What was in the log.
#[derive(Debug, Default, Clone, Serialize)]
pub struct LogSummary {
    /// Contacts.
    pub contacts: usize,
    /// Outcomes.
    pub outcomes: usize,
    /// Contacts the service would refuse (number not Indonesian, unknown province).
    pub invalid_contacts: usize,
    /// Outcomes of contacts not in the log (or refused).
    pub orphan_outcomes: usize,
    /// Distinct numbers with at least one outcome.
    pub callers: usize,
    /// First and last event, RFC 3339.
    pub from: String,
    /// Last event.
    pub to: String,
}

/// Percentiles of a duration in days.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Days {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Maximum.
    pub max: f64,
}

impl Days {
    fn of(mut values: Vec<f64>) -> Option<Days> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        Some(Days { p50: at(0.5), p90: at(0.9), max: at(1.0) })
    }
}

/// One rung's figures.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RungReport {
    /// The rung's policy key.
    pub rung: String,
    /// Cases proposed.
    pub proposed: usize,
    /// Distinct callers proposed.
    pub callers_proposed: usize,
    /// Distinct callers to whom it was delivered within the log.
    pub callers_reached: usize,
    /// Callers holding it at the end of the log (after forgiveness).
    pub holding_at_end: usize,
    /// Days from the caller's first counted incident to the proposal.
    pub days_to_proposal: Option<Days>,
    /// Days from the caller's first counted incident to the delivery.
    pub days_to_delivery: Option<Days>,
    /// Callers proposed it who had a confirmed genuine emergency before the proposal.
    pub callers_with_genuine_emergency: usize,
    /// Callers proposed it whose contacts before the proposal were mostly silent or non-emergency (at least
    /// half of at least six).
    pub callers_mostly_silent_or_non_emergency: usize,
}

/// Welfare against punishment, read from the log.
#[derive(Debug, Default, Clone, Serialize)]
pub struct WelfareReport {
    /// Callers whose contacts in the whole log were mostly silent or non-emergency (at least half of at least six):
    /// the people a welfare referral is for.
    pub mostly_silent_or_non_emergency_callers: usize,
    /// Of those, callers proposed a welfare referral.
    pub of_them_proposed_welfare: usize,
    /// Of those, callers proposed a punitive rung.
    pub of_them_proposed_punitive: usize,
    /// Callers proposed a welfare referral.
    pub welfare_callers: usize,
    /// Welfare cases proposed.
    pub welfare_cases: usize,
    /// The most welfare cases proposed for one caller.
    pub max_welfare_cases_per_caller: usize,
    /// Callers proposed both a welfare referral and a punitive rung.
    pub callers_proposed_both: usize,
}

/// The chilling effect: whether warned callers stop making genuine calls.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ChillingReport {
    /// Callers first delivered a warning with at least 7 days of log on either side: each is observed over the
    /// same span before and after it (the shorter of 30 days and the log on either side).
    pub warned_callers_observed: usize,
    /// Their confirmed genuine emergencies in the span before the warning.
    pub genuine_before: usize,
    /// Their confirmed genuine emergencies in the same span after it.
    pub genuine_after: usize,
}

/// What the ladder did to one caller (for checks against ground truth; never serialised: it holds the number).
#[derive(Debug, Default, Clone)]
pub struct CallerOutcome {
    /// The caller's number, normalised.
    pub number: String,
    /// The rungs proposed, one per case, in order.
    pub proposed: Vec<Rung>,
}

/// The fairness checks, made against the log rather than the ladder's own bookkeeping.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Fairness {
    /// Proposals whose caller had fewer confirmed, counting dispositions in the rule's window than its threshold.
    pub proposals_without_grounds: usize,
    /// Callers proposed a punitive rung with no confirmed prank or abusive contact in the rule's window.
    pub punitive_callers_without_confirmed_misuse: usize,
    /// Outcomes where a rung was due but a population-wide surge suppressed it.
    pub surge_suppressed: usize,
    /// Callers with at least one genuine emergency in the log.
    pub genuine_emergency_callers: usize,
    /// Of those, callers ever delivered a punitive rung.
    pub genuine_emergency_callers_ever_on_punitive_rung: usize,
    /// Of those, callers holding a punitive rung at the end of the log.
    pub genuine_emergency_callers_on_punitive_rung_at_end: usize,
    /// The fewest confirmed prank/abusive contacts among genuine-emergency callers ever on a punitive rung.
    pub min_misuse_among_them: Option<usize>,
}

/// The backtest's report.
#[derive(Debug, Default, Clone, Serialize)]
pub struct BacktestReport {
    /// The ladder policy's version.
    pub policy_version: String,
    /// The model that gave the likelihoods kept as evidence.
    pub model_version: String,
    /// The simulated delivery delay, hours.
    pub delivery_delay_h: u32,
    /// The log.
    pub log: LogSummary,
    /// Per rung, punitive rungs in ladder order then the welfare branch.
    pub rungs: Vec<RungReport>,
    /// The fairness checks.
    pub fairness: Fairness,
    /// Welfare against punishment.
    pub welfare: WelfareReport,
    /// The chilling effect of warnings.
    pub chilling: ChillingReport,
    /// Per caller with an outcome: what the ladder proposed (not serialised).
    #[serde(skip)]
    pub callers: Vec<CallerOutcome>,
}

#[derive(Default)]
struct CallerTruth {
    /// (arrival ms, disposition) of every outcome, in log order.
    dispositions: Vec<(i64, Disposition)>,
    caller_ref: String,
}

impl CallerTruth {
    fn counted(&self, counts: &[Disposition], from_ms: i64, to_ms: i64) -> usize {
        self.dispositions
            .iter()
            .filter(|(at_ms, disposition)| *at_ms > from_ms && *at_ms <= to_ms && counts.contains(disposition))
            .count()
    }

    fn first_counted(&self, counts: &[Disposition]) -> Option<i64> {
        self.dispositions.iter().find(|(_, disposition)| counts.contains(disposition)).map(|(at_ms, _)| *at_ms)
    }

    /// Whether the caller's contacts up to `to_ms` were mostly silent or non-emergency (half of at least six).
    fn mostly_silent_or_non_emergency(&self, to_ms: i64) -> bool {
        let total = self.counted(&Disposition::ALL, i64::MIN, to_ms);
        let quiet = self.counted(&[Disposition::Silent, Disposition::NonEmergency], i64::MIN, to_ms);
        total >= 6 && 2 * quiet >= total
    }

    /// Whether the caller's contacts in `(from_ms, to_ms]` show distress as `policy` defines it, counted here
    /// from the log.
    fn distressed(&self, policy: &LadderPolicy, from_ms: i64, to_ms: i64) -> bool {
        let rule = &policy.distress;
        let total = self.counted(&Disposition::ALL, from_ms, to_ms);
        let shows = self.counted(&rule.shows, from_ms, to_ms);
        let emergencies = self.counted(&[Disposition::GenuineEmergency], from_ms, to_ms);
        (total >= rule.min_contacts as usize && shows as f64 >= rule.min_share * total as f64)
            || (rule.genuine_emergencies > 0 && emergencies >= rule.genuine_emergencies as usize)
    }
}

struct Proposed {
    number: String,
    rung: Rung,
    at_ms: i64,
}

/// Replays `events` (in time order) under `policy` and `model`.
pub async fn run(
    events: &[Event],
    policy: LadderPolicy,
    model: Model,
    options: BacktestOptions,
) -> anyhow::Result<BacktestReport> {
    let model_version = model.version().to_owned();
    let policy_version = policy.version.clone();
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|error| anyhow::anyhow!("no randomness for the backtest's key: {error}"))?;
    let screener = Screener::new(
        MemoryStore::new(Duration::from_secs(24 * 3600)),
        model,
        KeyHasher::new(&secret),
        1024,
        Duration::from_secs(5),
    );
    let store = CaseStore::connect("sqlite::memory:").await?;
    // Proposals and decisions are stamped with the log's time, not the wall clock: a delivery may not precede
    // its approval, and here both happen in simulated time.
    let simulated = Arc::new(AtomicI64::new(0));
    let clock = {
        let simulated = Arc::clone(&simulated);
        Arc::new(move || simulated.load(Ordering::Relaxed))
    };
    let app = App {
        screener,
        escalator: Escalator::with_clock(store, policy.clone(), clock),
        auth: Authenticator::from_entries(&[])?,
    };
    let reviewer = Principal { name: "backtest-reviewer".into(), role: Role::Legal };
    let dispatcher = Principal { name: "backtest-dispatch".into(), role: Role::Dispatch };
    let delay_ms = i64::from(options.delivery_delay_h) * HOUR_MS;

    let mut log = LogSummary::default();
    let mut contacts: HashMap<String, Contact> = HashMap::new();
    let mut truth: HashMap<String, CallerTruth> = HashMap::new();
    let mut cases: HashMap<String, CaseSummary> = HashMap::new();
    let mut due: BinaryHeap<Reverse<(i64, String)>> = BinaryHeap::new();
    let mut proposals: HashMap<String, Proposed> = HashMap::new();
    let mut delivered: Vec<(String, Rung, i64)> = Vec::new();
    let mut surge_suppressed = 0;
    let mut end_ms = 0;
    let mut start_ms = i64::MAX;

    for event in events {
        let at_ms = (event.at().unix_timestamp_nanos() / 1_000_000) as i64;
        if log.from.is_empty() {
            log.from = rfc3339(event.at());
        }
        log.to = rfc3339(event.at());
        end_ms = end_ms.max(at_ms);
        start_ms = start_ms.min(at_ms);
        deliver_until(
            &app,
            &simulated,
            &mut due,
            &mut cases,
            at_ms,
            &reviewer,
            &dispatcher,
            &mut delivered,
            &proposals,
        )
        .await?;
        simulated.store(at_ms, Ordering::Relaxed);
        match event {
            Event::Contact(event) => {
                log.contacts += 1;
                match contact_of(event) {
                    Some(contact) => {
                        app.screener.score(contact.clone()).await;
                        contacts.insert(contact.contact_id.clone(), contact);
                    }
                    None => log.invalid_contacts += 1,
                }
            }
            Event::Outcome(outcome) => {
                log.outcomes += 1;
                let Some(contact) = contacts.remove(&outcome.contact_id) else {
                    log.orphan_outcomes += 1;
                    continue;
                };
                let report = report_of(outcome, contact.clone());
                if report.validate().is_err() {
                    // The service would refuse it (talk time on an unanswered contact, times out of range, …).
                    log.orphan_outcomes += 1;
                    continue;
                }
                if let Some(number) = &contact.caller {
                    let entry = truth.entry(number.clone()).or_default();
                    entry.caller_ref = app.screener.number_key(number).to_hex();
                    entry.dispositions.push((contact.received_at_ms, outcome.disposition));
                }
                let number = contact.caller.clone();
                let result = app.record_outcome(report).await?;
                let Some(ladder) = result.ladder else { continue };
                match ladder.change {
                    LadderChange::SurgeSuppressed => surge_suppressed += 1,
                    LadderChange::Proposed => {
                        let case = ladder.case.clone().expect("a proposal opens a case");
                        proposals.insert(
                            case.case_id.clone(),
                            Proposed {
                                number: number.expect("only numbered callers reach the ladder"),
                                rung: case.rung,
                                at_ms,
                            },
                        );
                        due.push(Reverse((at_ms + delay_ms, case.case_id.clone())));
                    }
                    LadderChange::None | LadderChange::EvidenceAdded => {}
                }
                if let Some(case) = ladder.case {
                    cases.insert(case.case_id.clone(), case);
                }
            }
        }
    }
    // Deliveries due after the last event are not counted: the log ends before them.

    let mut report = BacktestReport {
        policy_version,
        model_version,
        delivery_delay_h: options.delivery_delay_h,
        log: LogSummary { callers: truth.len(), ..log },
        ..BacktestReport::default()
    };
    let mut holding: HashMap<String, Rung> = HashMap::new();
    for (number, caller) in &truth {
        if let (Some(rung), _) = app.escalator.caller_ladder(&caller.caller_ref, end_ms).await? {
            holding.insert(number.clone(), rung.rung);
        }
    }
    let ladder_order = [Rung::Warning, Rung::VirtualPoliceMessage, Rung::LegalReferral, Rung::WelfareReferral];
    for rung in ladder_order {
        let rule = policy.rule(rung);
        let first = |number: &str| truth.get(number).and_then(|caller| caller.first_counted(&rule.counts));
        let proposed: Vec<&Proposed> = proposals.values().filter(|proposal| proposal.rung == rung).collect();
        let reached: Vec<&(String, Rung, i64)> =
            delivered.iter().filter(|(_, delivered, _)| *delivered == rung).collect();
        report.rungs.push(RungReport {
            rung: rung.key().to_owned(),
            proposed: proposed.len(),
            callers_proposed: proposed.iter().map(|proposal| &proposal.number).collect::<HashSet<_>>().len(),
            callers_reached: reached.iter().map(|(number, _, _)| number).collect::<HashSet<_>>().len(),
            holding_at_end: holding.values().filter(|held| **held == rung).count(),
            days_to_proposal: Days::of(
                proposed
                    .iter()
                    .filter_map(|proposal| {
                        first(&proposal.number).map(|first| (proposal.at_ms - first) as f64 / DAY_MS)
                    })
                    .collect(),
            ),
            days_to_delivery: Days::of(
                reached
                    .iter()
                    .filter_map(|(number, _, at_ms)| first(number).map(|first| (at_ms - first) as f64 / DAY_MS))
                    .collect(),
            ),
            callers_with_genuine_emergency: proposed
                .iter()
                .filter(|proposal| {
                    truth[&proposal.number].counted(&[Disposition::GenuineEmergency], i64::MIN, proposal.at_ms) > 0
                })
                .map(|proposal| &proposal.number)
                .collect::<HashSet<_>>()
                .len(),
            callers_mostly_silent_or_non_emergency: proposed
                .iter()
                .filter(|proposal| truth[&proposal.number].mostly_silent_or_non_emergency(proposal.at_ms))
                .map(|proposal| &proposal.number)
                .collect::<HashSet<_>>()
                .len(),
        });
    }
    let mut by_caller: HashMap<&str, Vec<(i64, Rung)>> = HashMap::new();
    for proposal in proposals.values() {
        by_caller.entry(proposal.number.as_str()).or_default().push((proposal.at_ms, proposal.rung));
    }
    let proposed_to = |number: &str, punitive: bool| {
        by_caller.get(number).is_some_and(|rungs| rungs.iter().any(|(_, rung)| rung.is_punitive() == punitive))
    };
    let quiet_callers: Vec<&String> =
        truth.iter().filter(|(_, caller)| caller.mostly_silent_or_non_emergency(i64::MAX)).map(|(n, _)| n).collect();
    let welfare_counts: Vec<usize> = by_caller
        .values()
        .map(|rungs| rungs.iter().filter(|(_, rung)| !rung.is_punitive()).count())
        .filter(|count| *count > 0)
        .collect();
    report.welfare = WelfareReport {
        mostly_silent_or_non_emergency_callers: quiet_callers.len(),
        of_them_proposed_welfare: quiet_callers.iter().filter(|number| proposed_to(number, false)).count(),
        of_them_proposed_punitive: quiet_callers.iter().filter(|number| proposed_to(number, true)).count(),
        welfare_callers: welfare_counts.len(),
        welfare_cases: welfare_counts.iter().sum(),
        max_welfare_cases_per_caller: welfare_counts.iter().copied().max().unwrap_or(0),
        callers_proposed_both: by_caller
            .keys()
            .filter(|number| proposed_to(number, true) && proposed_to(number, false))
            .count(),
    };
    const MONTH_MS: i64 = 30 * 86_400_000;
    const WEEK_MS: i64 = 7 * 86_400_000;
    let mut chilling = ChillingReport::default();
    let mut first_warning: HashMap<&str, i64> = HashMap::new();
    for (number, rung, at_ms) in &delivered {
        if *rung == Rung::Warning {
            let first = first_warning.entry(number.as_str()).or_insert(*at_ms);
            *first = (*first).min(*at_ms);
        }
    }
    for (number, at_ms) in first_warning {
        let span = MONTH_MS.min(at_ms - start_ms).min(end_ms - at_ms);
        if span < WEEK_MS {
            continue;
        }
        let caller = &truth[number];
        chilling.warned_callers_observed += 1;
        chilling.genuine_before += caller.counted(&[Disposition::GenuineEmergency], at_ms - span, at_ms);
        chilling.genuine_after += caller.counted(&[Disposition::GenuineEmergency], at_ms, at_ms + span);
    }
    report.chilling = chilling;
    let mut callers: Vec<CallerOutcome> = truth
        .keys()
        .map(|number| {
            let mut rungs = by_caller.get(number.as_str()).cloned().unwrap_or_default();
            rungs.sort_unstable_by_key(|(at_ms, rung)| (*at_ms, *rung));
            CallerOutcome { number: number.clone(), proposed: rungs.into_iter().map(|(_, rung)| rung).collect() }
        })
        .collect();
    callers.sort_by(|a, b| a.number.cmp(&b.number));
    report.callers = callers;

    let fairness = &mut report.fairness;
    fairness.surge_suppressed = surge_suppressed;
    let misuse = [Disposition::Prank, Disposition::Abusive];
    let mut without_misuse: HashSet<&str> = HashSet::new();
    for proposal in proposals.values() {
        let rule = policy.rule(proposal.rung);
        let caller = &truth[&proposal.number];
        let window_from = proposal.at_ms - policy.window_ms(proposal.rung);
        // A welfare referral is also grounded by distress (proposed instead of a punitive rung).
        let distress_from = proposal.at_ms - i64::from(policy.distress.window_days) * 86_400_000;
        let grounded = caller.counted(&rule.counts, window_from, proposal.at_ms) >= rule.threshold as usize
            || (!proposal.rung.is_punitive() && caller.distressed(&policy, distress_from, proposal.at_ms));
        if !grounded {
            fairness.proposals_without_grounds += 1;
        }
        if proposal.rung.is_punitive() && caller.counted(&misuse, window_from, proposal.at_ms) == 0 {
            without_misuse.insert(&proposal.number);
        }
    }
    fairness.punitive_callers_without_confirmed_misuse = without_misuse.len();
    let ever_punitive: HashSet<&str> =
        delivered.iter().filter(|(_, rung, _)| rung.is_punitive()).map(|(number, _, _)| number.as_str()).collect();
    let genuine: Vec<(&String, &CallerTruth)> = truth
        .iter()
        .filter(|(_, caller)| {
            caller.dispositions.iter().any(|(_, disposition)| *disposition == Disposition::GenuineEmergency)
        })
        .collect();
    fairness.genuine_emergency_callers = genuine.len();
    let genuine_ever: Vec<&CallerTruth> = genuine
        .iter()
        .filter(|(number, _)| ever_punitive.contains(number.as_str()))
        .map(|(_, caller)| *caller)
        .collect();
    fairness.genuine_emergency_callers_ever_on_punitive_rung = genuine_ever.len();
    fairness.genuine_emergency_callers_on_punitive_rung_at_end = genuine
        .iter()
        .filter(|(number, _)| holding.get(number.as_str()).is_some_and(|rung| rung.is_punitive()))
        .count();
    fairness.min_misuse_among_them =
        genuine_ever.iter().map(|caller| caller.counted(&misuse, i64::MIN, i64::MAX)).min();
    app.escalator.store().close().await;
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn deliver_until(
    app: &App<MemoryStore>,
    simulated: &AtomicI64,
    due: &mut BinaryHeap<Reverse<(i64, String)>>,
    cases: &mut HashMap<String, CaseSummary>,
    now_ms: i64,
    reviewer: &Principal,
    dispatcher: &Principal,
    delivered: &mut Vec<(String, Rung, i64)>,
    proposals: &HashMap<String, Proposed>,
) -> anyhow::Result<()> {
    while due.peek().is_some_and(|Reverse((at_ms, _))| *at_ms <= now_ms) {
        let Reverse((at_ms, case_id)) = due.pop().expect("peeked");
        simulated.store(at_ms, Ordering::Relaxed);
        let mut case = cases[&case_id].clone();
        if case.state == CaseState::Proposed {
            case = app
                .escalator
                .decide(&case_id, case.version, Decision::Approve, "backtest: approve all", reviewer)
                .await?;
        }
        if case.state == CaseState::Approved {
            let claimed = app.escalator.claim(&case_id, case.version, dispatcher).await?;
            let channel = DeliveryChannel::allowed_for(case.rung)[0];
            let delivery = Delivery { at_ms, channel };
            case = app
                .escalator
                .record_action(&case_id, claimed.summary.version, delivery, "backtest: delivered", dispatcher)
                .await?;
            delivered.push((proposals[&case_id].number.clone(), case.rung, at_ms));
        }
        cases.insert(case_id, case);
    }
    Ok(())
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// The contact the service would build from this logged contact, or `None` when it would refuse it.
pub fn contact_of(event: &ContactEvent) -> Option<Contact> {
    let caller = match &event.caller {
        Some(raw) => Some(normalise_indonesian_number(raw).ok()?),
        None => None,
    };
    Some(Contact {
        contact_id: event.contact_id.clone(),
        caller,
        channel: event.channel,
        received_at_ms: (event.at.unix_timestamp_nanos() / 1_000_000) as i64,
        region: event.region.clone(),
        utc_offset_s: utc_offset_seconds(&event.region)?,
        sim_present: event.sim_present,
        device_id: event.device_id.clone(),
        location: match (event.lat, event.lon) {
            (Some(lat), Some(lon)) => Some(Location { lat, lon, accuracy_m: event.accuracy_m.unwrap_or(0.0) }),
            _ => None,
        },
    })
}

/// The outcome report the service would build from this logged outcome for `contact`.
pub fn report_of(outcome: &OutcomeEvent, contact: Contact) -> OutcomeReport {
    OutcomeReport {
        contact_id: outcome.contact_id.clone(),
        contact: Some(contact),
        answered: outcome.answered,
        ring_s: outcome.ring_s,
        talk_s: outcome.talk_s,
        disposition: outcome.disposition,
        category: outcome.category.clone(),
        operator_id: outcome.operator_id.clone(),
    }
}

impl BacktestReport {
    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let log = &self.log;
        out.push_str("# Ladder backtest\n\n");
        out.push_str(&format!(
            "Policy `{}`, model `{}`. Log from {} to {}: {} contacts, {} outcomes, {} distinct numbers with an \
             outcome; {} contacts the service would refuse, {} outcomes without a contact.\n\n",
            self.policy_version,
            self.model_version,
            log.from,
            log.to,
            log.contacts,
            log.outcomes,
            log.callers,
            log.invalid_contacts,
            log.orphan_outcomes
        ));
        out.push_str(&format!(
            "Simulated review: every proposed case approved and delivered {} h after it was proposed — the \
             harshest plausible legal team, so these counts are upper bounds. Deliveries due after the log ends are \
             not counted.\n\n",
            self.delivery_delay_h
        ));
        out.push_str("| rung | cases proposed | callers proposed | callers reached | holding at end | days to proposal p50 / p90 | days to delivery p50 / p90 | callers proposed with a genuine emergency | callers proposed, mostly silent or non-emergency |\n");
        out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        let days =
            |days: &Option<Days>| days.as_ref().map_or("–".to_owned(), |d| format!("{:.1} / {:.1}", d.p50, d.p90));
        for rung in &self.rungs {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                rung.rung,
                rung.proposed,
                rung.callers_proposed,
                rung.callers_reached,
                rung.holding_at_end,
                days(&rung.days_to_proposal),
                days(&rung.days_to_delivery),
                rung.callers_with_genuine_emergency,
                rung.callers_mostly_silent_or_non_emergency
            ));
        }
        out.push_str(
            "\nDays are counted from the caller's first contact with a disposition the rung counts. \"With a genuine \
             emergency\": a confirmed genuine emergency before the proposal; \"mostly silent or non-emergency\": at \
             least half of at least six contacts before the proposal.\n\n",
        );
        let fairness = &self.fairness;
        out.push_str("## Fairness, checked against the log\n\n");
        out.push_str(&format!(
            "- Proposals without grounds (fewer confirmed, counting dispositions in the rule's window than its \
             threshold, counted from the log, not from the ladder): **{}**\n",
            fairness.proposals_without_grounds
        ));
        out.push_str(&format!(
            "- Callers proposed a warning, message or referral with no confirmed prank or abusive contact in the \
             window: **{}**\n",
            fairness.punitive_callers_without_confirmed_misuse
        ));
        out.push_str(&format!(
            "- Outcomes where a rung was due but fell in a population-wide surge (no case proposed): {}\n",
            fairness.surge_suppressed
        ));
        out.push_str(&format!(
            "- Callers with at least one genuine emergency: {}; ever delivered a punitive rung: {}; holding one at the \
             end: {}{}\n",
            fairness.genuine_emergency_callers,
            fairness.genuine_emergency_callers_ever_on_punitive_rung,
            fairness.genuine_emergency_callers_on_punitive_rung_at_end,
            fairness.min_misuse_among_them.map_or(String::new(), |min| format!(
                " (each of them with at least {min} confirmed prank or abusive contacts: people who misused the line \
                 and also had a real emergency)"
            ))
        ));
        let welfare = &self.welfare;
        out.push_str("\n## Welfare before punishment\n\n");
        out.push_str(&format!(
            "- Callers whose contacts were mostly silent or non-emergency (at least half of at least six): {}; of them \
             proposed a welfare referral: **{}**; proposed a warning, message or referral: **{}**\n",
            welfare.mostly_silent_or_non_emergency_callers,
            welfare.of_them_proposed_welfare,
            welfare.of_them_proposed_punitive
        ));
        out.push_str(&format!(
            "- Welfare cases: {} for {} callers (at most {} for one caller); callers proposed both welfare and a \
             punitive rung: {}\n",
            welfare.welfare_cases,
            welfare.welfare_callers,
            welfare.max_welfare_cases_per_caller,
            welfare.callers_proposed_both
        ));
        let chilling = &self.chilling;
        out.push_str(&format!(
            "- Chilling effect: {} callers first warned with at least 7 days of log on either side made {} confirmed \
             genuine emergency calls in the span before their warning and {} in the same span after (up to 30 days \
             each side)\n",
            chilling.warned_callers_observed, chilling.genuine_before, chilling.genuine_after
        ));
        out
    }
}

impl BacktestReport {
    /// The figures of one rung.
    pub fn rung(&self, rung: Rung) -> &RungReport {
        self.rungs.iter().find(|report| report.rung == rung.key()).expect("every rung is reported")
    }
}
