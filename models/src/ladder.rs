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

/// A validated ladder policy.
#[derive(Debug, Clone, PartialEq)]
pub struct LadderPolicy {
    /// The policy's version, recorded in every case it proposes.
    pub version: String,
    /// Rules by rung.
    pub rules: BTreeMap<Rung, RungRule>,
    /// The surge guard.
    pub surge: SurgeGuard,
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
struct RawPolicy {
    version: String,
    rungs: BTreeMap<String, RawRule>,
    surge: SurgeGuard,
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
        Ok(LadderPolicy { version: raw.version, rules, surge: raw.surge })
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

    /// What the policy proposes for a caller now, from its confirmed incidents and the highest rung delivered.
    /// Punitive rungs come first; the welfare branch is considered when no punitive rung is due. `None` when
    /// nothing is due. A caller already at LEGAL_REFERRAL gets no further punitive proposal.
    pub fn evaluate(&self, incidents: &[Incident], delivered: Option<Delivered>, now_ms: i64) -> Option<Proposal> {
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
