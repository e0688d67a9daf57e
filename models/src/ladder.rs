//! The escalation ladder policy and its evaluation: pure functions over a caller's confirmed incidents.
//!
//! Rungs are proposed only from dispositions operators confirmed, one rung at a time, and only after the previous
//! rung was delivered; a quiet caller's rung expires. The policy is TOML (`models/ladder/default.toml` is the
//! shipped default) and is validated with errors that name the key.

use std::collections::BTreeMap;

use serde::Deserialize;
use thiserror::Error;

use crate::domain::Disposition;

/// The shipped default policy.
pub const DEFAULT_POLICY: &str = include_str!("../ladder/default.toml");

const DAY_MS: i64 = 86_400_000;

/// A rung of the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rung {
    /// A warning ("teguran").
    Warning,
    /// A message from the virtual police ("Polisi Virtual").
    VirtualPoliceMessage,
    /// A criminal referral (false report, KUHP art. 220). Always needs a reviewer.
    LegalReferral,
    /// Referral to support services (children, distressed repeat callers), not prosecution.
    WelfareReferral,
}

impl Rung {
    /// The punitive rungs, in order.
    pub const PUNITIVE: [Rung; 3] = [Rung::Warning, Rung::VirtualPoliceMessage, Rung::LegalReferral];

    /// The policy key of the rung.
    pub fn key(self) -> &'static str {
        match self {
            Rung::Warning => "warning",
            Rung::VirtualPoliceMessage => "virtual_police_message",
            Rung::LegalReferral => "legal_referral",
            Rung::WelfareReferral => "welfare_referral",
        }
    }

    /// Every rung.
    pub const ALL: [Rung; 4] = [Rung::Warning, Rung::VirtualPoliceMessage, Rung::LegalReferral, Rung::WelfareReferral];

    /// The rung with this policy key.
    pub fn from_key(key: &str) -> Option<Rung> {
        Rung::ALL.into_iter().find(|rung| rung.key() == key)
    }

    /// Whether the rung is on the punitive ladder (not the welfare branch).
    pub fn is_punitive(self) -> bool {
        self != Rung::WelfareReferral
    }
}

/// Who approves a proposed rung.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    /// Approved by policy (allowed for WARNING only).
    Automatic,
    /// A reviewer of the legal team must approve.
    Reviewer,
}

impl Approval {
    /// The policy's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Approval::Automatic => "automatic",
            Approval::Reviewer => "reviewer",
        }
    }

    /// The approval with this name.
    pub fn from_name(name: &str) -> Option<Approval> {
        [Approval::Automatic, Approval::Reviewer].into_iter().find(|approval| approval.as_str() == name)
    }
}

/// One rung's rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RungRule {
    /// The rung.
    pub rung: Rung,
    /// Confirmed dispositions that count.
    pub counts: Vec<Disposition>,
    /// How many counted incidents propose the rung.
    pub threshold: u32,
    /// Within how many days (and, after a delivered rung, after its delivery).
    pub window_days: u32,
    /// The rung that must have been delivered first.
    pub after: Option<Rung>,
    /// Who approves.
    pub approval: Approval,
    /// Days without a counted incident after which a delivered rung is forgotten.
    pub expires_after_quiet_days: u32,
}

/// The population-wide surge guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurgeGuard {
    /// Distinct callers with silent or accidental contacts in one region within the window that make a surge.
    pub distinct_callers: u32,
    /// The window in minutes.
    pub window_minutes: u32,
}

/// What decides between a punitive rung and the welfare branch for a caller showing distress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precedence {
    /// A caller showing distress when a punitive rung is due is proposed WELFARE_REFERRAL instead.
    WelfareFirst,
    /// The punitive rung is proposed whatever else the caller's contacts show.
    PunitiveFirst,
}

/// A sign in a caller's window that sends an automatic warning to a reviewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewSign {
    /// A confirmed genuine emergency.
    GenuineEmergency,
    /// The distress signal ([`DistressRule`]).
    Distress,
}

/// Signs of distress: what routes a caller to support rather than punishment.
#[derive(Debug, Clone, PartialEq)]
pub struct DistressRule {
    /// Over the caller's contacts in this many days.
    pub window_days: u32,
    /// Dispositions that show distress rather than misuse.
    pub shows: Vec<Disposition>,
    /// The share of the caller's contacts in the window with one of them at which the caller shows distress.
    pub min_share: f64,
    /// The fewest contacts in the window for the share to be read.
    pub min_contacts: u32,
    /// Confirmed genuine emergencies in the window at which the caller shows distress whatever the share (0: never).
    pub genuine_emergencies: u32,
    /// Welfare or punishment first for a caller showing distress.
    pub precedence: Precedence,
    /// Signs that send an automatic warning to a reviewer.
    pub review_if: Vec<ReviewSign>,
    /// After a welfare referral was delivered, no new welfare case for this many days after its last grounding
    /// contact (the caller is held for welfare).
    pub welfare_hold_days: u32,
}

/// What a caller's window shows, as [`DistressRule`] reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Signals {
    /// Contacts in the window.
    pub contacts: usize,
    /// Of those, contacts with a disposition that shows distress.
    pub distress_contacts: usize,
    /// Of those, confirmed genuine emergencies.
    pub genuine_emergencies: usize,
    /// Whether the caller shows distress.
    pub distressed: bool,
    /// Whether a delivered welfare referral holds the caller.
    pub held_for_welfare: bool,
}

/// A validated ladder policy.
#[derive(Debug, Clone, PartialEq)]
pub struct LadderPolicy {
    /// The policy's version, recorded in every case it proposes.
    pub version: String,
    /// Rules by rung.
    pub rules: BTreeMap<Rung, RungRule>,
    /// The surge guard.
    pub surge: SurgeGuard,
    /// Signs of distress and their precedence.
    pub distress: DistressRule,
}

/// A policy problem, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("ladder policy: {key}: {message}")]
pub struct PolicyError {
    /// The offending key, e.g. `rungs.warning.counts`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

fn policy_error(key: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError { key: key.into(), message: message.into() }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    counts: Vec<Disposition>,
    threshold: u32,
    window_days: u32,
    after: String,
    approval: Approval,
    expires_after_quiet_days: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDistress {
    window_days: u32,
    shows: Vec<Disposition>,
    min_share: f64,
    min_contacts: u32,
    genuine_emergencies: u32,
    precedence: Precedence,
    review_if: Vec<ReviewSign>,
    welfare_hold_days: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: String,
    rungs: BTreeMap<String, RawRule>,
    surge: SurgeGuard,
    distress: RawDistress,
}

impl LadderPolicy {
    /// Parses and validates a policy from TOML text.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|error| {
            let place = error.span().map_or_else(
                || "(document)".to_owned(),
                |span| format!("line {}", text[..span.start.min(text.len())].matches('\n').count() + 1),
            );
            policy_error(place, error.message().to_owned())
        })?;
        if raw.version.trim().is_empty() {
            return Err(policy_error("version", "must not be empty"));
        }
        let mut rules = BTreeMap::new();
        for (key, rule) in raw.rungs {
            let rung = Rung::from_key(&key).ok_or_else(|| {
                policy_error(
                    format!("rungs.{key}"),
                    "unknown rung (warning, virtual_police_message, legal_referral, welfare_referral)",
                )
            })?;
            rules.insert(rung, validate_rule(rung, rule)?);
        }
        for rung in [Rung::Warning, Rung::VirtualPoliceMessage, Rung::LegalReferral, Rung::WelfareReferral] {
            if !rules.contains_key(&rung) {
                return Err(policy_error(format!("rungs.{}", rung.key()), "missing"));
            }
        }
        if raw.surge.distinct_callers < 2 || raw.surge.window_minutes == 0 {
            return Err(policy_error("surge", "distinct_callers must be at least 2 and window_minutes positive"));
        }
        let distress = validate_distress(raw.distress)?;
        Ok(LadderPolicy { version: raw.version, rules, surge: raw.surge, distress })
    }

    /// The shipped default.
    pub fn default_policy() -> Self {
        Self::from_toml(DEFAULT_POLICY).expect("the shipped ladder policy is valid")
    }

    /// How far back a caller's contacts matter to any rule (the longest window or quiet period), in ms.
    pub fn lookback_ms(&self) -> i64 {
        let days =
            self.rules.values().map(|rule| rule.window_days.max(rule.expires_after_quiet_days)).max().unwrap_or(0);
        i64::from(days) * DAY_MS
    }

    /// The window of a rung's rule in ms.
    pub fn window_ms(&self, rung: Rung) -> i64 {
        i64::from(self.rule(rung).window_days) * DAY_MS
    }

    /// The surge window in ms.
    pub fn surge_window_ms(&self) -> i64 {
        i64::from(self.surge.window_minutes) * 60_000
    }

    /// The rule of a rung.
    pub fn rule(&self, rung: Rung) -> &RungRule {
        &self.rules[&rung]
    }
}

fn validate_rule(rung: Rung, raw: RawRule) -> Result<RungRule, PolicyError> {
    let key = |field: &str| format!("rungs.{}.{field}", rung.key());
    if raw.counts.is_empty() {
        return Err(policy_error(key("counts"), "must name at least one disposition"));
    }
    if rung != Rung::WelfareReferral && raw.counts.iter().any(|disposition| !disposition.is_misuse()) {
        return Err(policy_error(
            key("counts"),
            "only prank and abusive may count towards a warning, message or referral (never silent or accidental)",
        ));
    }
    if raw.threshold == 0 || raw.window_days == 0 || raw.expires_after_quiet_days == 0 {
        return Err(policy_error(
            key("threshold"),
            "threshold, window_days and expires_after_quiet_days must be positive",
        ));
    }
    let after = match raw.after.as_str() {
        "none" => None,
        other => {
            Some(Rung::from_key(other).ok_or_else(|| policy_error(key("after"), format!("unknown rung {other:?}")))?)
        }
    };
    let expected_after = match rung {
        Rung::Warning | Rung::WelfareReferral => None,
        Rung::VirtualPoliceMessage => Some(Rung::Warning),
        Rung::LegalReferral => Some(Rung::VirtualPoliceMessage),
    };
    if after != expected_after {
        let expected = expected_after.map_or("none", Rung::key);
        return Err(policy_error(
            key("after"),
            format!("must be {expected:?}: the ladder is climbed one rung at a time"),
        ));
    }
    if raw.approval == Approval::Automatic && rung != Rung::Warning {
        return Err(policy_error(key("approval"), "must be \"reviewer\": only a warning may be automatic"));
    }
    Ok(RungRule {
        rung,
        counts: raw.counts,
        threshold: raw.threshold,
        window_days: raw.window_days,
        after,
        approval: raw.approval,
        expires_after_quiet_days: raw.expires_after_quiet_days,
    })
}

/// "1 genuine emergency", "2 genuine emergencies".
fn emergencies(count: usize) -> String {
    format!("{count} genuine emergenc{}", if count == 1 { "y" } else { "ies" })
}

fn validate_distress(raw: RawDistress) -> Result<DistressRule, PolicyError> {
    let key = |field: &str| format!("distress.{field}");
    if raw.window_days == 0 {
        return Err(policy_error(key("window_days"), "must be positive"));
    }
    if raw.shows.is_empty() {
        return Err(policy_error(key("shows"), "must name at least one disposition"));
    }
    if let Some(misuse) = raw.shows.iter().find(|disposition| disposition.is_misuse()) {
        return Err(policy_error(key("shows"), format!("{} is misuse, not a sign of distress", misuse.as_str())));
    }
    if !(raw.min_share > 0.0 && raw.min_share <= 1.0) {
        return Err(policy_error(key("min_share"), "must be a share in (0, 1]"));
    }
    if raw.min_contacts == 0 {
        return Err(policy_error(key("min_contacts"), "must be positive"));
    }
    let mut review_if = raw.review_if;
    review_if.sort_unstable();
    review_if.dedup();
    Ok(DistressRule {
        window_days: raw.window_days,
        shows: raw.shows,
        min_share: raw.min_share,
        min_contacts: raw.min_contacts,
        genuine_emergencies: raw.genuine_emergencies,
        precedence: raw.precedence,
        review_if,
        welfare_hold_days: raw.welfare_hold_days,
    })
}

/// One confirmed contact in a caller's timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Incident {
    /// The caller's own identifier for the incident (e.g. its row in a timeline), carried into proposals.
    pub id: usize,
    /// When the contact arrived, Unix ms.
    pub at_ms: i64,
    /// The operator's disposition.
    pub disposition: Disposition,
    /// Already used as grounds by a closed case (rejected, reverted, or a delivered welfare referral): it still
    /// shows the caller was active, but never counts towards a proposal again.
    pub spent: bool,
    /// Grounds a welfare referral that was delivered: the caller is held for welfare for
    /// `distress.welfare_hold_days` after the latest such contact.
    pub welfare: bool,
}

/// The highest punitive rung delivered to a caller, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// The rung.
    pub rung: Rung,
    /// When dispatch reported it delivered (or the referral filed), Unix ms.
    pub at_ms: i64,
}

/// A rung the policy proposes for a caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// The rung.
    pub rung: Rung,
    /// Who must approve it.
    pub approval: Approval,
    /// The counted incidents (the evidence), oldest first.
    pub incidents: Vec<Incident>,
    /// The rule that fired, e.g. `rungs.warning: 2 of [prank, abusive] within 30 days` (with the policy version).
    pub rule: String,
}

impl LadderPolicy {
    /// The rung a caller effectively holds now: the delivered one, unless the caller was quiet (no counted
    /// incident) for the rung's `expires_after_quiet_days` at some point since its delivery — then it expired
    /// and a later incident starts the ladder again from the bottom.
    pub fn effective_rung(
        &self,
        delivered: Option<Delivered>,
        incidents: &[Incident],
        now_ms: i64,
    ) -> Option<Delivered> {
        let delivered = delivered?;
        let rule = self.rule(delivered.rung);
        let quiet_limit_ms = i64::from(rule.expires_after_quiet_days) * DAY_MS;
        let mut counted_since: Vec<i64> = incidents
            .iter()
            .filter(|incident| rule.counts.contains(&incident.disposition) && incident.at_ms > delivered.at_ms)
            .map(|incident| incident.at_ms)
            .collect();
        counted_since.sort_unstable();
        let mut last_ms = delivered.at_ms;
        for at_ms in counted_since.into_iter().chain(std::iter::once(now_ms)) {
            if at_ms - last_ms >= quiet_limit_ms {
                return None;
            }
            last_ms = at_ms;
        }
        Some(delivered)
    }

    /// What the caller's window shows (`distress`).
    pub fn signals(&self, incidents: &[Incident], now_ms: i64) -> Signals {
        let rule = &self.distress;
        let window_start = now_ms - i64::from(rule.window_days) * DAY_MS;
        let in_window: Vec<&Incident> =
            incidents.iter().filter(|incident| incident.at_ms > window_start && incident.at_ms <= now_ms).collect();
        let distress_contacts = in_window.iter().filter(|incident| rule.shows.contains(&incident.disposition)).count();
        let genuine_emergencies =
            in_window.iter().filter(|incident| incident.disposition == Disposition::GenuineEmergency).count();
        let share_shows = in_window.len() >= rule.min_contacts as usize
            && distress_contacts as f64 >= rule.min_share * in_window.len() as f64;
        let emergencies_show = rule.genuine_emergencies > 0 && genuine_emergencies >= rule.genuine_emergencies as usize;
        let hold_start = now_ms - i64::from(rule.welfare_hold_days) * DAY_MS;
        Signals {
            contacts: in_window.len(),
            distress_contacts,
            genuine_emergencies,
            distressed: share_shows || emergencies_show,
            held_for_welfare: incidents
                .iter()
                .any(|incident| incident.welfare && incident.at_ms > hold_start && incident.at_ms <= now_ms),
        }
    }

    /// What the policy proposes for a caller now, from its confirmed incidents and the highest rung delivered.
    /// A punitive rung that is due goes first — but, under `welfare_first`, a caller showing distress is proposed
    /// WELFARE_REFERRAL instead (or nothing while a delivered welfare referral holds it), and an automatic warning
    /// goes to a reviewer when the window holds a sign `review_if` names; the case's rule says why. The welfare
    /// branch is considered when no punitive rung is due, unless a delivered welfare referral holds the caller.
    /// `None` when nothing is due. A caller already at LEGAL_REFERRAL gets no further punitive proposal.
    pub fn evaluate(&self, incidents: &[Incident], delivered: Option<Delivered>, now_ms: i64) -> Option<Proposal> {
        let proposal = self.punitive_or_welfare(incidents, delivered, now_ms)?;
        let signals = self.signals(incidents, now_ms);
        if !proposal.rung.is_punitive() {
            return (!signals.held_for_welfare).then_some(proposal);
        }
        let rule = &self.distress;
        if signals.distressed && rule.precedence == Precedence::WelfareFirst {
            if signals.held_for_welfare {
                return None;
            }
            return Some(self.welfare_instead(&proposal, incidents, &signals, now_ms));
        }
        let mut proposal = proposal;
        if proposal.approval == Approval::Automatic {
            let mut why = Vec::new();
            if rule.review_if.contains(&ReviewSign::GenuineEmergency) && signals.genuine_emergencies > 0 {
                why.push(format!("{} within {} days", emergencies(signals.genuine_emergencies), rule.window_days));
            }
            if rule.review_if.contains(&ReviewSign::Distress) && signals.distressed {
                why.push(self.distress_text(&signals));
            }
            if !why.is_empty() {
                proposal.approval = Approval::Reviewer;
                proposal.rule = format!("{}; to a reviewer: {}", proposal.rule, why.join(", "));
            }
        }
        Some(proposal)
    }

    fn distress_text(&self, signals: &Signals) -> String {
        let shows: Vec<&str> = self.distress.shows.iter().map(|disposition| disposition.as_str()).collect();
        format!(
            "{} of {} contacts within {} days {}{}",
            signals.distress_contacts,
            signals.contacts,
            self.distress.window_days,
            shows.join(" or "),
            if signals.genuine_emergencies > 0 {
                format!(", {}", emergencies(signals.genuine_emergencies))
            } else {
                String::new()
            }
        )
    }

    /// The welfare referral proposed instead of the punitive `instead_of` for a caller showing distress: grounded on
    /// the punitive rung's incidents and the window's contacts that show distress.
    fn welfare_instead(
        &self,
        instead_of: &Proposal,
        incidents: &[Incident],
        signals: &Signals,
        now_ms: i64,
    ) -> Proposal {
        let window_start = now_ms - i64::from(self.distress.window_days) * DAY_MS;
        let mut grounds: Vec<Incident> = incidents
            .iter()
            .filter(|incident| !incident.spent && incident.at_ms > window_start && incident.at_ms <= now_ms)
            .filter(|incident| {
                self.distress.shows.contains(&incident.disposition)
                    || instead_of.incidents.iter().any(|counted| counted.id == incident.id)
            })
            .copied()
            .collect();
        grounds.sort_by_key(|incident| (incident.at_ms, incident.id));
        Proposal {
            rung: Rung::WelfareReferral,
            approval: self.rule(Rung::WelfareReferral).approval,
            incidents: grounds,
            rule: format!(
                "{} rungs.welfare_referral instead of rungs.{} (distress.precedence = welfare_first): {}",
                self.version,
                instead_of.rung.key(),
                self.distress_text(signals)
            ),
        }
    }

    fn punitive_or_welfare(
        &self,
        incidents: &[Incident],
        delivered: Option<Delivered>,
        now_ms: i64,
    ) -> Option<Proposal> {
        let current = self.effective_rung(delivered, incidents, now_ms);
        let next = match current.map(|delivered| delivered.rung) {
            None | Some(Rung::WelfareReferral) => Some(Rung::Warning),
            Some(Rung::Warning) => Some(Rung::VirtualPoliceMessage),
            Some(Rung::VirtualPoliceMessage) => Some(Rung::LegalReferral),
            Some(Rung::LegalReferral) => None,
        };
        let after_ms = match current {
            Some(delivered) if delivered.rung != Rung::WelfareReferral => Some(delivered.at_ms),
            _ => None,
        };
        if let Some(proposal) = next.and_then(|rung| self.due(rung, incidents, after_ms, now_ms)) {
            return Some(proposal);
        }
        self.due(Rung::WelfareReferral, incidents, None, now_ms)
    }

    fn due(&self, rung: Rung, incidents: &[Incident], after_ms: Option<i64>, now_ms: i64) -> Option<Proposal> {
        let rule = self.rule(rung);
        let window_start = now_ms - i64::from(rule.window_days) * DAY_MS;
        let counted: Vec<Incident> = incidents
            .iter()
            .filter(|incident| !incident.spent && rule.counts.contains(&incident.disposition))
            .filter(|incident| incident.at_ms > window_start && incident.at_ms <= now_ms)
            .filter(|incident| after_ms.is_none_or(|after| incident.at_ms > after))
            .copied()
            .collect();
        if counted.len() < rule.threshold as usize {
            return None;
        }
        let counts: Vec<&str> = rule.counts.iter().map(|disposition| disposition.as_str()).collect();
        Some(Proposal {
            rung,
            approval: rule.approval,
            rule: format!(
                "{} rungs.{}: {} of [{}] within {} days{}",
                self.version,
                rung.key(),
                rule.threshold,
                counts.join(", "),
                rule.window_days,
                rule.after.map_or(String::new(), |after| format!(" after {} was delivered", after.key()))
            ),
            incidents: counted,
        })
    }

    /// Whether silent or accidental contacts from `distinct_callers` callers in one region within the surge window
    /// are a population-wide surge, which never proposes a case.
    pub fn is_surge(&self, distinct_callers: u32) -> bool {
        distinct_callers >= self.surge.distinct_callers
    }
}

#[cfg(test)]
mod tests;
