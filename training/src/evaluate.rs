//! Scoring a replayed log with a model and summarising how well it ranks misuse.

use saring_models::{Band, Disposition, Model};
use serde::Serialize;

use crate::metrics::{brier, pr_auc, roc_auc, Confusion};
use crate::replay::ReplayRow;

/// One contact's score, as `--predictions-out` writes it.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    /// Contact id.
    pub contact_id: String,
    /// Calibrated likelihood.
    pub prank_likelihood: f64,
    /// Band name (low, elevated, high).
    pub band: &'static str,
}

/// How many contacts of one kind landed in each band.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct BandCounts {
    /// In LOW.
    pub low: usize,
    /// In ELEVATED.
    pub elevated: usize,
    /// In HIGH.
    pub high: usize,
}

impl BandCounts {
    fn add(&mut self, band: Band) {
        match band {
            Band::Low => self.low += 1,
            Band::Elevated => self.elevated += 1,
            Band::High => self.high += 1,
        }
    }
}

/// Metrics over the labelled contacts of a log.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// The model evaluated.
    pub model_version: String,
    /// Contacts scored.
    pub contacts: usize,
    /// Contacts with a label (a disposition other than UNKNOWN).
    pub labelled: usize,
    /// Labelled contacts that were misuse.
    pub positives: usize,
    /// Share of misuse among labelled contacts.
    pub base_rate: f64,
    /// ROC-AUC of the likelihood.
    pub roc_auc: f64,
    /// PR-AUC (average precision).
    pub pr_auc: f64,
    /// Brier score of the likelihood.
    pub brier: f64,
    /// ROC-AUC of the naive rule: share of the caller's past labelled contacts that were misuse (all-time counts).
    pub naive_roc_auc: f64,
    /// ROC-AUC of the same share from the history's 30-day decayed counters: the naive rule a live service
    /// computes, and compares its models with.
    pub naive_recent_roc_auc: f64,
    /// Confusion at the ELEVATED threshold.
    pub at_elevated: Confusion,
    /// Confusion at the HIGH threshold.
    pub at_high: Confusion,
    /// Where genuine emergencies landed: the number that matters most (HIGH must stay near 0).
    pub genuine_emergencies_by_band: BandCounts,
    /// Where misuse landed.
    pub misuse_by_band: BandCounts,
}

/// Scores every row; returns the evaluation and the per-contact predictions.
pub fn evaluate(model: &Model, rows: &[ReplayRow]) -> (Evaluation, Vec<Prediction>) {
    let mut predictions = Vec::with_capacity(rows.len());
    let (mut likelihoods, mut naive, mut naive_recent, mut labels) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut genuine_emergencies_by_band = BandCounts::default();
    let mut misuse_by_band = BandCounts::default();
    for row in rows {
        let score = model.score(&row.features);
        predictions.push(Prediction {
            contact_id: row.contact_id.clone(),
            prank_likelihood: score.likelihood,
            band: score.band.as_str(),
        });
        if row.disposition == Some(Disposition::GenuineEmergency) {
            genuine_emergencies_by_band.add(score.band);
        }
        if let Some(label) = row.label() {
            if label {
                misuse_by_band.add(score.band);
            }
            likelihoods.push(score.likelihood);
            naive.push(row.naive_score);
            naive_recent.push(row.naive_recent);
            labels.push(label);
        }
    }
    let positives = labels.iter().filter(|label| **label).count();
    let bands = model.artifact().bands;
    let evaluation = Evaluation {
        model_version: model.version().to_owned(),
        contacts: rows.len(),
        labelled: labels.len(),
        positives,
        base_rate: positives as f64 / labels.len().max(1) as f64,
        roc_auc: roc_auc(&likelihoods, &labels),
        pr_auc: pr_auc(&likelihoods, &labels),
        brier: brier(&likelihoods, &labels),
        naive_roc_auc: roc_auc(&naive, &labels),
        naive_recent_roc_auc: roc_auc(&naive_recent, &labels),
        at_elevated: Confusion::at(&likelihoods, &labels, bands.elevated),
        at_high: Confusion::at(&likelihoods, &labels, bands.high),
        genuine_emergencies_by_band,
        misuse_by_band,
    };
    (evaluation, predictions)
}

impl Evaluation {
    /// A human-readable summary.
    pub fn to_text(&self) -> String {
        let confusion_line = |name: &str, confusion: &Confusion| {
            format!(
                "{name:<9} >= {:.3}: precision {:.3}, recall {:.3} (tp {}, fp {}, tn {}, fn {})\n",
                confusion.threshold,
                confusion.precision(),
                confusion.recall(),
                confusion.true_positives,
                confusion.false_positives,
                confusion.true_negatives,
                confusion.false_negatives
            )
        };
        let mut text = format!(
            "model {}\ncontacts {}, labelled {}, misuse {} (base rate {:.3})\n\
             ROC-AUC {:.4}   PR-AUC {:.4}   Brier {:.4}\n\
             naive rule (caller's past misuse share) ROC-AUC {:.4} all-time, {:.4} 30-day decayed\n",
            self.model_version,
            self.contacts,
            self.labelled,
            self.positives,
            self.base_rate,
            self.roc_auc,
            self.pr_auc,
            self.brier,
            self.naive_roc_auc,
            self.naive_recent_roc_auc
        );
        text += &confusion_line("ELEVATED", &self.at_elevated);
        text += &confusion_line("HIGH", &self.at_high);
        let counts =
            |counts: &BandCounts| format!("LOW {} / ELEVATED {} / HIGH {}", counts.low, counts.elevated, counts.high);
        text += &format!("genuine emergencies by band: {}\n", counts(&self.genuine_emergencies_by_band));
        text += &format!("misuse by band:              {}\n", counts(&self.misuse_by_band));
        text
    }
}
