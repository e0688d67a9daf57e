//! The one set of rules for a recorded outcome, whatever the door (gRPC RecordOutcome, the console's disposition
//! form, a backtest's event log): `App::record_outcome` applies them, and the doors only translate their input
//! into an [`OutcomeReport`] and the field-named violations back into their own kind of refusal.
//!
//! A ring time of 0 means "not measured or did not ring": proto3 cannot tell an unset `ring_s` from 0, and the
//! console's operator does not see the ring time, so the console sends 0 exactly as a client that leaves the field
//! out. Nothing in the ladder or the history reads it.

use crate::error::{Error, Result, Violation};
use crate::screening::OutcomeReport;

/// Longest plausible ring or talk time: one day.
pub const MAX_DURATION_S: f64 = 86_400.0;

/// Longest category or operator id, in characters.
pub const MAX_LABEL_CHARS: usize = 64;

/// A short label (category, operator id): present means not empty, at most [`MAX_LABEL_CHARS`] characters,
/// no control characters.
fn check_label(violations: &mut Vec<Violation>, field: &str, value: &str) -> bool {
    let problem = if value.is_empty() {
        Some("required".to_owned())
    } else if value.chars().count() > MAX_LABEL_CHARS {
        Some(format!("longer than {MAX_LABEL_CHARS} characters"))
    } else if value.chars().any(char::is_control) {
        Some("contains control characters".to_owned())
    } else {
        None
    };
    match problem {
        Some(problem) => {
            violations.push(Violation::new(field, problem));
            false
        }
        None => true,
    }
}

impl OutcomeReport {
    /// Everything wrong with this outcome, by field: the contact id (the one rule for ids), an embedded contact
    /// of another id, ring and talk times that are not seconds between 0 and a day, talk time on a contact no one
    /// answered, a category that is empty, long, not lowercase or has control characters, an operator id that is
    /// empty, long or has control characters. The disposition is an enum here: each door refuses what does not
    /// translate into one.
    pub fn violations(&self) -> Vec<Violation> {
        let mut violations = Vec::new();
        if let Err(problem) = crate::ids::check_contact_id(&self.contact_id) {
            violations.push(Violation::new("contact_id", problem));
        }
        if self.contact.as_ref().is_some_and(|contact| contact.contact_id != self.contact_id) {
            violations.push(Violation::new("contact.contact_id", "must equal the outcome's contact_id"));
        }
        for (field, value) in [("ring_s", self.ring_s), ("talk_s", self.talk_s)] {
            if !(value.is_finite() && (0.0..=MAX_DURATION_S).contains(&value)) {
                violations.push(Violation::new(field, "must be a number of seconds between 0 and 86400"));
            }
        }
        if !self.answered && self.talk_s > 0.0 {
            violations.push(Violation::new("talk_s", "must be 0 when the contact was not answered"));
        }
        if let Some(category) = &self.category {
            if check_label(&mut violations, "category", category) && category.chars().any(char::is_uppercase) {
                violations.push(Violation::new("category", "must be lowercase"));
            }
        }
        if let Some(operator_id) = &self.operator_id {
            check_label(&mut violations, "operator_id", operator_id);
        }
        violations
    }

    /// `INVALID_ARGUMENT` naming every field in [`OutcomeReport::violations`], if any.
    pub fn validate(&self) -> Result<()> {
        let violations = self.violations();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(violations))
        }
    }
}

#[cfg(test)]
mod tests {
    use saring_models::Disposition;

    use super::*;

    fn report() -> OutcomeReport {
        OutcomeReport {
            contact_id: "c-1".into(),
            contact: None,
            answered: true,
            ring_s: 0.0,
            talk_s: 30.0,
            disposition: Disposition::Prank,
            category: None,
            operator_id: None,
        }
    }

    fn fields(report: &OutcomeReport) -> Vec<String> {
        report.violations().into_iter().map(|violation| violation.field).collect()
    }

    #[test]
    fn a_sound_outcome_passes_and_an_unmeasured_ring_time_is_sound() {
        assert!(report().validate().is_ok());
        let unanswered = OutcomeReport { answered: false, talk_s: 0.0, ring_s: 25.0, ..report() };
        assert!(unanswered.validate().is_ok());
    }

    #[test]
    fn every_broken_field_is_named() {
        let broken = OutcomeReport {
            contact_id: "..".into(),
            answered: false,
            ring_s: f64::NAN,
            talk_s: 90_000.0,
            category: Some("Crime".into()),
            operator_id: Some(String::new()),
            ..report()
        };
        assert_eq!(fields(&broken), ["contact_id", "ring_s", "talk_s", "talk_s", "category", "operator_id"]);
        let talk_without_answer = OutcomeReport { answered: false, ..report() };
        assert_eq!(fields(&talk_without_answer), ["talk_s"]);
        let negative = OutcomeReport { ring_s: -1.0, ..report() };
        assert_eq!(fields(&negative), ["ring_s"]);
        let long = OutcomeReport { operator_id: Some("o".repeat(65)), category: Some("a\u{7}".into()), ..report() };
        assert_eq!(fields(&long), ["category", "operator_id"]);
    }
}
