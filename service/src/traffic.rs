//! Contacts per hour by region and band, and the share answered: what the console's dashboard draws. Counted on
//! the scoring and outcome paths under one short lock; the last 48 hours are kept.

use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;
use saring_models::Band;

const HOUR_MS: i64 = 3_600_000;
const KEPT_HOURS: i64 = 48;

/// One region's counts in one hour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HourCounts {
    /// Contacts scored LOW, ELEVATED, HIGH, and without a band (model failure).
    pub bands: [u64; 4],
    /// Outcomes recorded for contacts that arrived in the hour.
    pub outcomes: u64,
    /// Of those, answered by an operator.
    pub answered: u64,
}

impl HourCounts {
    /// Contacts scored.
    pub fn contacts(&self) -> u64 {
        self.bands.iter().sum()
    }
}

/// Counts by hour start (ms), then region. A contact of a region already counted in its hour allocates nothing.
#[derive(Debug, Default)]
pub struct TrafficStats {
    hours: Mutex<BTreeMap<i64, HashMap<String, HourCounts>>>,
}

fn hour_of(at_ms: i64) -> i64 {
    at_ms - at_ms.rem_euclid(HOUR_MS)
}

impl TrafficStats {
    fn with<F: FnOnce(&mut HourCounts)>(&self, at_ms: i64, region: &str, update: F) {
        let hour = hour_of(at_ms);
        let mut hours = self.hours.lock();
        // Only contacts from the kept period are counted (a late outcome for an old contact is not).
        let newest = hours.keys().next_back().map_or(hour, |newest| (*newest).max(hour));
        if hour <= newest - KEPT_HOURS * HOUR_MS {
            return;
        }
        if let Some(counts) = hours.get_mut(&hour).and_then(|regions| regions.get_mut(region)) {
            update(counts);
            return;
        }
        update(hours.entry(hour).or_default().entry(region.to_owned()).or_default());
        let oldest_kept = newest - (KEPT_HOURS - 1) * HOUR_MS;
        while hours.first_key_value().is_some_and(|(first, _)| *first < oldest_kept) {
            hours.pop_first();
        }
    }

    /// Counts a scored contact that arrived at `at_ms`.
    pub fn scored(&self, at_ms: i64, region: &str, band: Option<Band>) {
        let index = match band {
            Some(Band::Low) => 0,
            Some(Band::Elevated) => 1,
            Some(Band::High) => 2,
            None => 3,
        };
        self.with(at_ms, region, |counts| counts.bands[index] += 1);
    }

    /// Counts an outcome of a contact that arrived at `at_ms`.
    pub fn outcome(&self, at_ms: i64, region: &str, answered: bool) {
        self.with(at_ms, region, |counts| {
            counts.outcomes += 1;
            counts.answered += u64::from(answered);
        });
    }

    /// Every (hour start ms, region, counts), oldest first.
    pub fn snapshot(&self) -> Vec<(i64, String, HourCounts)> {
        let hours = self.hours.lock();
        let mut snapshot: Vec<(i64, String, HourCounts)> = hours
            .iter()
            .flat_map(|(hour, regions)| regions.iter().map(|(region, counts)| (*hour, region.clone(), *counts)))
            .collect();
        snapshot.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_hour_and_region_and_forgets_after_two_days() {
        let stats = TrafficStats::default();
        let t0 = 1_000 * HOUR_MS;
        stats.scored(t0 + 5, "ntt.kupang", Some(Band::High));
        stats.scored(t0 + 6, "ntt.kupang", Some(Band::Low));
        stats.scored(t0 + HOUR_MS, "ntt.kupang", None);
        stats.outcome(t0 + 5, "ntt.kupang", true);
        stats.outcome(t0 + 6, "ntt.kupang", false);
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.len(), 2);
        assert_eq!(snapshot[0].2, HourCounts { bands: [1, 0, 1, 0], outcomes: 2, answered: 1 });
        assert_eq!(snapshot[1].2.bands, [0, 0, 0, 1]);
        stats.scored(t0 + 60 * HOUR_MS, "dki.jakarta", Some(Band::Low));
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.len(), 1, "hours older than 48 h are dropped");
        stats.outcome(t0 + 5, "ntt.kupang", true);
        assert_eq!(stats.snapshot().len(), 1, "a late outcome of a forgotten hour is not counted");
    }
}
