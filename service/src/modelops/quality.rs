//! Live quality: how well the champion, the challenger and the naive rule ranked the contacts this replica
//! scored, judged by the dispositions operators recorded for them afterwards.
//!
//! Every labelled outcome of a contact this replica scored becomes one sample: the contact's time and region, the
//! label (prank or abusive = misuse), and the likelihood and band each model gave it then, beside the naive rule's
//! score at the same moment (the caller's recent misuse share, `saring_models::naive`). Figures are computed over
//! rolling windows ending now (the last day and the last week, by the contact's arrival), nationally and per
//! region, with the same functions the offline evaluator uses (`saring_models::metrics`), so on the same contacts
//! the two agree exactly. A model is judged on every sample it scored, whichever slot it was in, so a promoted
//! challenger keeps its record.
//!
//! Samples live in memory (bounded; the oldest go first), so the figures restart with the process; a replica
//! judges the contacts it scored itself.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use saring_models::metrics::{expected_calibration_error, pr_auc, roc_auc};
use saring_models::Band;

const DAY_MS: i64 = 86_400_000;

/// The windows figures are computed over: a name and a length, newest contacts last.
pub const WINDOWS: [(&str, i64); 2] = [("day", DAY_MS), ("week", 7 * DAY_MS)];

/// The scope of figures over every region.
pub const NATIONAL: &str = "*";

/// Labelled samples kept by default (about 60 MB at most).
pub const DEFAULT_MAX_SAMPLES: usize = 1_000_000;

/// Labelled contacts a window needs by default before its figures are computed.
pub const DEFAULT_MIN_LABELLED: u64 = 200;

/// Fewer labelled contacts of either class than this and a ranking figure means nothing.
const MIN_PER_CLASS: u64 = 10;

/// What one model said about one contact.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelScore {
    /// The model's version.
    pub version: Arc<str>,
    /// Its calibrated likelihood.
    pub likelihood: f64,
    /// Its band.
    pub band: Band,
}

/// What every model said about one contact when it was scored.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreMemo {
    /// The champion's answer (the one the caller got).
    pub champion: ModelScore,
    /// The challenger's shadow answer, when one was loaded.
    pub challenger: Option<ModelScore>,
    /// The naive rule at that moment: the caller's recent misuse share.
    pub naive: f64,
}

/// One labelled contact.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at_ms: i64,
    region: u32,
    misuse: bool,
    champion: (u32, f64, Band),
    challenger: Option<(u32, f64, Band)>,
    naive: f64,
}

impl Sample {
    fn likelihood_of(&self, version: u32) -> Option<(f64, Band)> {
        let (champion, likelihood, band) = self.champion;
        if champion == version {
            return Some((likelihood, band));
        }
        self.challenger
            .filter(|(challenger, _, _)| *challenger == version)
            .map(|(_, likelihood, band)| (likelihood, band))
    }
}

/// Whether a window holds enough labelled contacts for its figures to mean something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QualityState {
    /// Figures are computed.
    Measured,
    /// Fewer labelled contacts than `min_labelled`, or fewer than 10 of either class: no figures.
    TooFewLabelled,
}

impl QualityState {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            QualityState::Measured => "measured",
            QualityState::TooFewLabelled => "too_few_labelled",
        }
    }
}

/// Precision and recall of the contacts a model put in a band or above.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandFigures {
    /// ELEVATED (elevated or high) or HIGH.
    pub band: Band,
    /// Contacts at this band or above.
    pub flagged: u64,
    /// Share of misuse among them (1 when none).
    pub precision: f64,
    /// Share of all misuse among them.
    pub recall: f64,
}

/// One subject's figures (a model, or the naive rule) in one window and scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// The model's version, or `naive` for the naive rule.
    pub subject: String,
    /// Whether there was enough to measure.
    pub state: QualityState,
    /// Labelled contacts.
    pub labelled: u64,
    /// Of which misuse.
    pub positives: u64,
    /// ROC-AUC (ties count half); 0 when not measured.
    pub roc_auc: f64,
    /// PR-AUC (average precision); 0 when not measured.
    pub pr_auc: f64,
    /// Expected calibration error of the likelihood; 0 when not measured.
    pub calibration_error: f64,
    /// ELEVATED and HIGH (empty for the naive rule, which has no bands, and when not measured).
    pub bands: Vec<BandFigures>,
}

/// Champion and challenger on exactly the contacts both scored.
#[derive(Debug, Clone, PartialEq)]
pub struct Paired {
    /// The champion on those contacts.
    pub champion: Figures,
    /// The challenger on those contacts.
    pub challenger: Figures,
    /// The naive rule on those contacts.
    pub naive: Figures,
}

impl Paired {
    /// Whether the challenger ranks those contacts better than both the champion and the naive rule.
    pub fn challenger_wins(&self) -> bool {
        self.challenger.state == QualityState::Measured
            && self.challenger.roc_auc > self.champion.roc_auc
            && self.challenger.roc_auc > self.naive.roc_auc
    }
}

/// The figures of one window in one scope.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowQuality {
    /// `day` or `week`.
    pub window: &'static str,
    /// A region, or `*` for all.
    pub scope: String,
    /// The champion on every contact it scored.
    pub champion: Figures,
    /// The naive rule on the same contacts as the champion.
    pub naive: Figures,
    /// The challenger on every contact it scored, when one is loaded.
    pub challenger: Option<Figures>,
    /// Both models on the contacts both scored, when a challenger is loaded.
    pub paired: Option<Paired>,
}

impl WindowQuality {
    /// Whether the champion ranked worse than the naive rule (only when measured).
    pub fn champion_below_naive(&self) -> bool {
        self.champion.state == QualityState::Measured && self.champion.roc_auc < self.naive.roc_auc
    }
}

/// Live quality at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityReport {
    /// When computed, Unix ms.
    pub computed_at_ms: i64,
    /// The least labelled contacts for figures.
    pub min_labelled: u64,
    /// Every window, national first, then regions in order.
    pub windows: Vec<WindowQuality>,
}

impl QualityReport {
    /// The figures of `window` in `scope`.
    pub fn find(&self, window: &str, scope: &str) -> Option<&WindowQuality> {
        self.windows.iter().find(|quality| quality.window == window && quality.scope == scope)
    }
}

/// Interned strings: samples hold small indices instead of strings.
#[derive(Debug, Default)]
struct Names {
    index: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

impl Names {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(index) = self.index.get(name) {
            return *index;
        }
        let index = self.names.len() as u32;
        let name: Arc<str> = Arc::from(name);
        self.names.push(Arc::clone(&name));
        self.index.insert(name, index);
        index
    }

    fn lookup(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }
}

#[derive(Debug, Default)]
struct Inner {
    samples: VecDeque<Sample>,
    versions: Names,
    regions: Names,
}

/// Labelled samples of this replica's scores, and the figures computed from them.
#[derive(Debug)]
pub struct LiveQuality {
    inner: Mutex<Inner>,
    max_samples: usize,
    min_labelled: u64,
}

impl LiveQuality {
    /// Keeps at most `max_samples` samples; figures need `min_labelled` labelled contacts.
    pub fn new(max_samples: usize, min_labelled: u64) -> Self {
        LiveQuality { inner: Mutex::new(Inner::default()), max_samples, min_labelled }
    }

    /// The least labelled contacts for figures.
    pub fn min_labelled(&self) -> u64 {
        self.min_labelled
    }

    /// Records one labelled contact: `misuse` is its label, `memo` what the models said when it was scored.
    /// Samples older than the longest window (as of `now_ms`) and beyond the bound are dropped, oldest first.
    pub fn record(&self, at_ms: i64, region: &str, misuse: bool, memo: &ScoreMemo, now_ms: i64) {
        let mut inner = self.inner.lock();
        let region = inner.regions.intern(region);
        let champion = (inner.versions.intern(&memo.champion.version), memo.champion.likelihood, memo.champion.band);
        let challenger = memo
            .challenger
            .as_ref()
            .map(|challenger| (inner.versions.intern(&challenger.version), challenger.likelihood, challenger.band));
        inner.samples.push_back(Sample { at_ms, region, misuse, champion, challenger, naive: memo.naive });
        let oldest_kept = now_ms - WINDOWS[WINDOWS.len() - 1].1;
        while inner.samples.len() > self.max_samples
            || inner.samples.front().is_some_and(|sample| sample.at_ms < oldest_kept)
        {
            inner.samples.pop_front();
        }
    }

    /// Labelled samples held.
    pub fn samples(&self) -> usize {
        self.inner.lock().samples.len()
    }

    /// The figures for `champion` (and `challenger`, when loaded) as of `now_ms`: every window, nationally and
    /// per region. The samples are copied under the lock and measured outside it.
    pub fn report(&self, champion: &str, challenger: Option<&str>, now_ms: i64) -> QualityReport {
        let (samples, regions, champion_id, challenger_id) = {
            let inner = self.inner.lock();
            let samples: Vec<Sample> = inner.samples.iter().copied().collect();
            (
                samples,
                inner.regions.names.clone(),
                inner.versions.lookup(champion),
                challenger.map(|version| inner.versions.lookup(version)),
            )
        };
        let subjects = Subjects { champion, champion_id, challenger: challenger.zip(challenger_id) };
        let mut windows = Vec::new();
        for (window, length_ms) in WINDOWS {
            let in_window: Vec<&Sample> =
                samples.iter().filter(|sample| sample.at_ms > now_ms - length_ms && sample.at_ms <= now_ms).collect();
            windows.push(self.window_quality(window, NATIONAL.to_owned(), &in_window, &subjects));
            let mut region_ids: Vec<u32> = in_window.iter().map(|sample| sample.region).collect();
            region_ids.sort_unstable_by(|a, b| regions[*a as usize].cmp(&regions[*b as usize]));
            region_ids.dedup();
            for region in region_ids {
                let in_region: Vec<&Sample> =
                    in_window.iter().copied().filter(|sample| sample.region == region).collect();
                windows.push(self.window_quality(window, regions[region as usize].to_string(), &in_region, &subjects));
            }
        }
        QualityReport { computed_at_ms: now_ms, min_labelled: self.min_labelled, windows }
    }

    fn window_quality(
        &self,
        window: &'static str,
        scope: String,
        samples: &[&Sample],
        subjects: &Subjects<'_>,
    ) -> WindowQuality {
        let scored_by = |version: Option<u32>| -> Vec<(f64, Band, f64, bool)> {
            let Some(version) = version else { return Vec::new() };
            samples
                .iter()
                .filter_map(|sample| {
                    sample
                        .likelihood_of(version)
                        .map(|(likelihood, band)| (likelihood, band, sample.naive, sample.misuse))
                })
                .collect()
        };
        let champion_rows = scored_by(subjects.champion_id);
        let champion = self.figures(subjects.champion, &champion_rows, true);
        let naive = self.naive_figures(&champion_rows);
        let (challenger, paired) = match subjects.challenger {
            None => (None, None),
            Some((version, id)) => {
                let challenger = self.figures(version, &scored_by(id), true);
                let both: Vec<&&Sample> = match (subjects.champion_id, id) {
                    (Some(champion_id), Some(challenger_id)) => samples
                        .iter()
                        .filter(|sample| {
                            sample.likelihood_of(champion_id).is_some() && sample.likelihood_of(challenger_id).is_some()
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                let rows_of = |model: Option<u32>| -> Vec<(f64, Band, f64, bool)> {
                    both.iter()
                        .filter_map(|sample| {
                            let (likelihood, band) = sample.likelihood_of(model?)?;
                            Some((likelihood, band, sample.naive, sample.misuse))
                        })
                        .collect()
                };
                let champion_rows = rows_of(subjects.champion_id);
                let paired = Paired {
                    champion: self.figures(subjects.champion, &champion_rows, true),
                    challenger: self.figures(version, &rows_of(id), true),
                    naive: self.naive_figures(&champion_rows),
                };
                (Some(challenger), Some(paired))
            }
        };
        WindowQuality { window, scope, champion, naive, challenger, paired }
    }

    fn naive_figures(&self, rows: &[(f64, Band, f64, bool)]) -> Figures {
        let naive_rows: Vec<(f64, Band, f64, bool)> =
            rows.iter().map(|(_, band, naive, misuse)| (*naive, *band, *naive, *misuse)).collect();
        self.figures("naive", &naive_rows, false)
    }

    /// Figures of `(likelihood, band, naive, misuse)` rows.
    fn figures(&self, subject: &str, rows: &[(f64, Band, f64, bool)], banded: bool) -> Figures {
        let labelled = rows.len() as u64;
        let positives = rows.iter().filter(|row| row.3).count() as u64;
        let mut figures = Figures {
            subject: subject.to_owned(),
            state: QualityState::TooFewLabelled,
            labelled,
            positives,
            roc_auc: 0.0,
            pr_auc: 0.0,
            calibration_error: 0.0,
            bands: Vec::new(),
        };
        if labelled < self.min_labelled || positives < MIN_PER_CLASS || labelled - positives < MIN_PER_CLASS {
            return figures;
        }
        let scores: Vec<f64> = rows.iter().map(|row| row.0).collect();
        let labels: Vec<bool> = rows.iter().map(|row| row.3).collect();
        figures.state = QualityState::Measured;
        figures.roc_auc = roc_auc(&scores, &labels);
        figures.pr_auc = pr_auc(&scores, &labels);
        figures.calibration_error = expected_calibration_error(&scores, &labels);
        if banded {
            figures.bands = [Band::Elevated, Band::High]
                .into_iter()
                .map(|band| {
                    let at_or_above = |row: &&(f64, Band, f64, bool)| row.1 >= band;
                    let flagged = rows.iter().filter(at_or_above).count() as u64;
                    let caught = rows.iter().filter(at_or_above).filter(|row| row.3).count() as u64;
                    BandFigures {
                        band,
                        flagged,
                        precision: if flagged == 0 { 1.0 } else { caught as f64 / flagged as f64 },
                        recall: caught as f64 / positives as f64,
                    }
                })
                .collect();
        }
        figures
    }
}

/// The models being judged, by version and by their interned ids (absent when they scored no sample yet).
struct Subjects<'a> {
    champion: &'a str,
    champion_id: Option<u32>,
    challenger: Option<(&'a str, Option<u32>)>,
}

#[cfg(test)]
mod tests;
