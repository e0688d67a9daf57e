use saring_models::metrics::roc_auc;

use super::*;

const NOW: i64 = 1_800_000_000_000;

fn memo(champion: (&str, f64), challenger: Option<(&str, f64)>, naive: f64) -> ScoreMemo {
    let band = |likelihood: f64| {
        if likelihood >= 0.9 {
            Band::High
        } else if likelihood >= 0.5 {
            Band::Elevated
        } else {
            Band::Low
        }
    };
    ScoreMemo {
        champion: ModelScore { version: Arc::from(champion.0), likelihood: champion.1, band: band(champion.1) },
        challenger: challenger.map(|(version, likelihood)| ModelScore {
            version: Arc::from(version),
            likelihood,
            band: band(likelihood),
        }),
        naive,
    }
}

/// A deterministic spread of scores: misuse gets higher champion scores with some overlap.
fn fill(quality: &LiveQuality, count: usize, region: &str, at_ms: i64, challenger: bool) -> (Vec<f64>, Vec<bool>) {
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    for index in 0..count {
        let misuse = index % 3 == 0;
        let noise = ((index * 37) % 100) as f64 / 100.0;
        let likelihood = if misuse { 0.3 + 0.7 * noise } else { 0.6 * noise };
        let naive = if misuse { noise } else { 0.8 * noise };
        let challenger_score = challenger.then_some(("b", if misuse { 0.5 + 0.5 * noise } else { 0.5 * noise }));
        quality.record(at_ms, region, misuse, &memo(("a", likelihood), challenger_score, naive), NOW);
        scores.push(likelihood);
        labels.push(misuse);
    }
    (scores, labels)
}

#[test]
fn figures_are_the_offline_metrics_of_the_same_contacts() {
    let quality = LiveQuality::new(10_000, 100);
    let (scores, labels) = fill(&quality, 300, "ntt.kupang", NOW - 1_000, false);
    let report = quality.report("a", None, NOW);
    let national = report.find("day", NATIONAL).expect("national day");
    assert_eq!(national.champion.state, QualityState::Measured);
    assert_eq!(national.champion.labelled, 300);
    assert_eq!(national.champion.positives, 100);
    assert_eq!(national.champion.roc_auc, roc_auc(&scores, &labels));
    let region = report.find("week", "ntt.kupang").expect("region week");
    assert_eq!(region.champion.roc_auc, national.champion.roc_auc);
    let high = national.champion.bands.iter().find(|band| band.band == Band::High).expect("high");
    let flagged = scores.iter().filter(|score| **score >= 0.9).count() as u64;
    assert_eq!(high.flagged, flagged);
    assert!(national.challenger.is_none() && national.paired.is_none());
}

#[test]
fn too_few_labelled_contacts_give_no_figures() {
    let quality = LiveQuality::new(10_000, 200);
    fill(&quality, 150, "dki.jakarta", NOW - 1_000, false);
    let report = quality.report("a", None, NOW);
    let national = report.find("day", NATIONAL).expect("national");
    assert_eq!(national.champion.state, QualityState::TooFewLabelled);
    assert_eq!(national.champion.labelled, 150);
    assert_eq!(national.champion.roc_auc, 0.0);
    assert!(!national.champion_below_naive());
}

#[test]
fn windows_keep_only_their_contacts() {
    let quality = LiveQuality::new(10_000, 100);
    fill(&quality, 300, "dki.jakarta", NOW - 3 * DAY_MS, false);
    fill(&quality, 120, "dki.jakarta", NOW - 1_000, false);
    let report = quality.report("a", None, NOW);
    assert_eq!(report.find("day", NATIONAL).expect("day").champion.labelled, 120);
    assert_eq!(report.find("week", NATIONAL).expect("week").champion.labelled, 420);
    // Older than a week is forgotten as soon as a newer sample arrives.
    fill(&quality, 1, "dki.jakarta", NOW - 8 * DAY_MS, false);
    fill(&quality, 1, "dki.jakarta", NOW, false);
    assert_eq!(quality.samples(), 422);
}

#[test]
fn the_bound_drops_the_oldest_samples() {
    let quality = LiveQuality::new(50, 10);
    fill(&quality, 80, "dki.jakarta", NOW - 1_000, false);
    assert_eq!(quality.samples(), 50);
}

#[test]
fn a_champion_that_ranks_worse_than_the_naive_rule_is_flagged() {
    let quality = LiveQuality::new(10_000, 100);
    for index in 0..300 {
        let misuse = index % 2 == 0;
        // The champion ranks at random; the naive rule knows every misuser.
        let likelihood = ((index * 7919) % 1000) as f64 / 1000.0;
        let naive = if misuse { 0.9 } else { 0.1 };
        quality.record(NOW - 10, "bali.denpasar", misuse, &memo(("a", likelihood), None, naive), NOW);
    }
    let report = quality.report("a", None, NOW);
    let national = report.find("day", NATIONAL).expect("national");
    assert_eq!(national.naive.roc_auc, 1.0);
    assert!(national.champion_below_naive());
}

#[test]
fn a_model_keeps_its_record_across_slots_and_pairs_compare_the_same_contacts() {
    let quality = LiveQuality::new(10_000, 100);
    fill(&quality, 300, "dki.jakarta", NOW - 1_000, true);
    // 60 more scored by the champion alone (before the challenger was loaded).
    fill(&quality, 60, "dki.jakarta", NOW - 900, false);
    let report = quality.report("a", Some("b"), NOW);
    let national = report.find("day", NATIONAL).expect("national");
    assert_eq!(national.champion.labelled, 360);
    let challenger = national.challenger.as_ref().expect("challenger");
    assert_eq!(challenger.labelled, 300);
    let paired = national.paired.as_ref().expect("paired");
    assert_eq!(paired.champion.labelled, 300);
    assert_eq!(paired.challenger.labelled, 300);
    assert!(paired.challenger.roc_auc > paired.champion.roc_auc, "{paired:?}");
    assert!(paired.challenger_wins());
    // After a promotion "b" is the champion and is judged on the samples it scored in shadow.
    let promoted = quality.report("b", Some("a"), NOW);
    assert_eq!(promoted.find("day", NATIONAL).expect("national").champion.labelled, 300);
}

#[test]
fn a_sample_is_as_small_as_the_documentation_says() {
    // config/reference.toml and ARCHITECTURE.md state the memory bound from this size.
    assert_eq!(std::mem::size_of::<super::Sample>(), 56);
}
