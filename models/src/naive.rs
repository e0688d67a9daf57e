//! The naive rule every model must beat: the share of a caller's past labelled contacts that were misuse.
//!
//! A call centre computes it without saring. Two forms exist: the all-time share from exact counts (what an
//! offline replay of a whole log can compute; `saring-train` keeps those counts itself) and the recent share
//! from the caller history's 30-day decayed counters, which is what a live service holds for every caller and
//! so what it compares its models with on live traffic. Both give 0 to a caller with no labelled history.

use crate::domain::Disposition;
use crate::history::{CallerHistory, Counter, MONTH};

/// Below this decayed weight of labelled contacts a history counts as having none.
const NO_LABELLED_HISTORY: f64 = 1e-9;

/// The recent naive rule at `now_ms`: prank or abusive contacts over labelled contacts (every disposition but
/// UNKNOWN), both decayed with the 30-day half-life. 0 without history.
pub fn recent_misuse_share(history: Option<&CallerHistory>, now_ms: i64) -> f64 {
    let Some(history) = history else { return 0.0 };
    let count = |disposition: Disposition| history.value_at(Counter::Disposition(disposition), MONTH, now_ms);
    let labelled: f64 = Disposition::ALL
        .iter()
        .filter(|disposition| disposition.is_labelled())
        .map(|disposition| count(*disposition))
        .sum();
    if labelled < NO_LABELLED_HISTORY {
        return 0.0;
    }
    let misuse = count(Disposition::Prank) + count(Disposition::Abusive);
    (misuse / labelled).clamp(0.0, 1.0)
}

/// The all-time naive rule from exact counts: `misuse / labelled`, 0 when nothing was labelled.
pub fn all_time_misuse_share(labelled: u32, misuse: u32) -> f64 {
    if labelled == 0 {
        0.0
    } else {
        f64::from(misuse) / f64::from(labelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::HistoryEvent;

    fn event(id: u64, at_ms: i64, disposition: Disposition) -> HistoryEvent {
        HistoryEvent { contact_fingerprint: id, at_ms, answered: true, talk_s: 30.0, night: false, disposition }
    }

    #[test]
    fn no_history_scores_zero() {
        assert_eq!(recent_misuse_share(None, 0), 0.0);
        assert_eq!(all_time_misuse_share(0, 0), 0.0);
    }

    #[test]
    fn unknown_dispositions_are_left_out() {
        let mut history = CallerHistory::from_event(&event(1, 1_000, Disposition::Prank));
        history.apply(&event(2, 1_000, Disposition::Unknown));
        history.apply(&event(3, 1_000, Disposition::GenuineEmergency));
        let share = recent_misuse_share(Some(&history), 1_000);
        assert!((share - 0.5).abs() < 1e-12, "{share}");
        assert_eq!(all_time_misuse_share(2, 1), 0.5);
    }

    #[test]
    fn older_contacts_weigh_less() {
        let day_ms = 86_400_000;
        let mut history = CallerHistory::from_event(&event(1, 0, Disposition::Prank));
        history.apply(&event(2, 60 * day_ms, Disposition::NonEmergency));
        // The prank is two half-lives old: weight 1/4 against 1.
        let share = recent_misuse_share(Some(&history), 60 * day_ms);
        assert!((share - 0.2).abs() < 1e-12, "{share}");
    }
}
