//! Drift: the distribution of the champion's likelihoods and of key features per region, in fixed wall-clock
//! windows, compared with the reference distributions in the model card by the population stability index,
//! so a handset-bug surge or a new prank wave shows up as a shift.
//!
//! The reference is `card.reference.bins.<name> = { edges, shares }` where `<name>` is `likelihood` or a feature
//! name, `shares` the share of the model's test-range contacts per bin, and `edges` the bins' boundaries: either
//! the `shares.len() - 1` inner cut points or `shares.len() + 1` boundaries whose first and last are ignored (the
//! outer bins are open). A value `v` falls in the first bin whose upper cut point is `>= v`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use saring_models::features::FEATURES;
use saring_models::{FeatureVector, Model};

/// The region key under which every contact is also counted.
pub const ALL_REGIONS: &str = "*";

/// Empty bins count as this share, so the index stays finite.
const EMPTY_SHARE: f64 = 1e-4;

/// At most this many variables are followed.
const MAX_VARIABLES: usize = 16;

/// Fewer contacts than this in a window: the index is too noisy to read.
pub const MIN_CONTACTS: u64 = 100;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    Likelihood,
    Feature(usize),
}

#[derive(Debug, Clone, PartialEq)]
struct Variable {
    name: String,
    source: Source,
    cuts: Vec<f64>,
    shares: Vec<f64>,
}

impl Variable {
    fn bin(&self, value: f64) -> usize {
        self.cuts.iter().position(|cut| value <= *cut).unwrap_or(self.cuts.len())
    }
}

/// Reads the reference distributions of a model's card; variables it cannot read are skipped with a warning.
fn reference(model: &Model) -> Vec<Variable> {
    let Some(bins) = model.artifact().card.pointer("/reference/bins").and_then(serde_json::Value::as_object) else {
        return Vec::new();
    };
    let mut variables = Vec::new();
    for (name, spec) in bins {
        let source = if name == "likelihood" {
            Some(Source::Likelihood)
        } else {
            FEATURES.iter().position(|feature| feature.name == name).map(Source::Feature)
        };
        let numbers = |key: &str| -> Option<Vec<f64>> {
            spec.get(key)?.as_array()?.iter().map(serde_json::Value::as_f64).collect::<Option<Vec<f64>>>()
        };
        let (Some(source), Some(edges), Some(shares)) = (source, numbers("edges"), numbers("shares")) else {
            tracing::warn!(variable = %name, model_version = model.version(), "unreadable drift reference; skipped");
            continue;
        };
        let cuts = if edges.len() + 1 == shares.len() {
            edges
        } else if edges.len() == shares.len() + 1 && shares.len() >= 2 {
            edges[1..edges.len() - 1].to_vec()
        } else {
            tracing::warn!(variable = %name, "drift reference edges do not match its shares; skipped");
            continue;
        };
        if shares.is_empty() || shares.iter().any(|share| !share.is_finite() || *share < 0.0) {
            continue;
        }
        variables.push(Variable { name: name.clone(), source, cuts, shares });
    }
    if variables.len() > MAX_VARIABLES {
        tracing::warn!(
            model_version = model.version(),
            "more than {MAX_VARIABLES} drift references; the rest are ignored"
        );
        variables.truncate(MAX_VARIABLES);
    }
    variables
}

#[derive(Debug, Clone, PartialEq, Default)]
struct Counts {
    contacts: u64,
    bins: Vec<Vec<u64>>,
}

impl Counts {
    fn new(variables: &[Variable]) -> Self {
        Counts { contacts: 0, bins: variables.iter().map(|variable| vec![0; variable.shares.len()]).collect() }
    }
}

#[derive(Debug)]
struct Windows {
    start_ms: i64,
    current: Counts,
    previous: Option<(i64, Counts)>,
}

#[derive(Debug)]
struct State {
    model_version: Arc<str>,
    variables: Arc<Vec<Variable>>,
    regions: HashMap<String, Windows>,
}

/// One variable's index in one window.
#[derive(Debug, Clone, PartialEq)]
pub struct VariableDrift {
    /// `likelihood` or a feature name.
    pub name: String,
    /// The population stability index.
    pub psi: f64,
    /// This window's shares per bin.
    pub shares: Vec<f64>,
    /// The reference shares.
    pub reference_shares: Vec<f64>,
}

/// One window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowDrift {
    /// Start, Unix ms.
    pub start_ms: i64,
    /// Contacts counted.
    pub contacts: u64,
    /// Per variable.
    pub variables: Vec<VariableDrift>,
    /// The largest index.
    pub max_psi: f64,
    /// `too_few_contacts`, `stable`, `moderate` or `significant`.
    pub level: &'static str,
}

/// One region.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionDrift {
    /// Region code, or [`ALL_REGIONS`].
    pub region: String,
    /// The window being filled.
    pub current: WindowDrift,
    /// The last complete window.
    pub previous: Option<WindowDrift>,
}

/// The drift report.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftReport {
    /// The champion compared.
    pub model_version: String,
    /// Whether its card has reference distributions.
    pub has_reference: bool,
    /// Window length in minutes.
    pub window_minutes: u32,
    /// Regions, `*` first, then by code.
    pub regions: Vec<RegionDrift>,
}

/// The population stability index of `counts` (total `contacts`) against `reference` shares.
pub fn psi(counts: &[u64], contacts: u64, reference: &[f64]) -> f64 {
    if contacts == 0 {
        return 0.0;
    }
    counts
        .iter()
        .zip(reference)
        .map(|(count, expected)| {
            let actual = (*count as f64 / contacts as f64).max(EMPTY_SHARE);
            let expected = expected.max(EMPTY_SHARE);
            (actual - expected) * (actual / expected).ln()
        })
        .sum()
}

/// The conventional reading of an index.
pub fn level(max_psi: f64, contacts: u64) -> &'static str {
    if contacts < MIN_CONTACTS {
        "too_few_contacts"
    } else if max_psi < 0.1 {
        "stable"
    } else if max_psi < 0.25 {
        "moderate"
    } else {
        "significant"
    }
}

/// Counts the champion's scores and features per region and window.
#[derive(Debug)]
pub struct DriftMonitor {
    window_ms: i64,
    state: Mutex<State>,
}

impl DriftMonitor {
    /// A monitor for `model` with windows of `window`.
    pub fn new(model: &Model, window: Duration) -> Self {
        DriftMonitor {
            window_ms: (window.as_millis() as i64).max(60_000),
            state: Mutex::new(State {
                model_version: Arc::from(model.version()),
                variables: Arc::new(reference(model)),
                regions: HashMap::new(),
            }),
        }
    }

    /// Starts again for a new champion.
    pub fn reset(&self, model: &Model) {
        let mut state = self.state.lock();
        state.model_version = Arc::from(model.version());
        state.variables = Arc::new(reference(model));
        state.regions.clear();
    }

    /// Window length in minutes.
    pub fn window_minutes(&self) -> u32 {
        (self.window_ms / 60_000) as u32
    }

    /// Counts one contact scored by `model_version` (ignored if that is no longer the champion).
    pub fn observe(&self, model_version: &str, region: &str, likelihood: f64, features: &FeatureVector) {
        self.observe_at(model_version, region, likelihood, features, crate::grpc::now_ms());
    }

    fn observe_at(&self, model_version: &str, region: &str, likelihood: f64, features: &FeatureVector, now_ms: i64) {
        let mut bins = [0usize; MAX_VARIABLES];
        let mut state = self.state.lock();
        if &*state.model_version != model_version {
            return;
        }
        let variables = Arc::clone(&state.variables);
        for (slot, variable) in bins.iter_mut().zip(variables.iter()) {
            let value = match variable.source {
                Source::Likelihood => likelihood,
                Source::Feature(index) => features[index],
            };
            *slot = variable.bin(value);
        }
        let start_ms = now_ms - now_ms.rem_euclid(self.window_ms);
        for key in [ALL_REGIONS, region] {
            let windows = match state.regions.get_mut(key) {
                Some(windows) => windows,
                None => state.regions.entry(key.to_owned()).or_insert_with(|| Windows {
                    start_ms,
                    current: Counts::new(&variables),
                    previous: None,
                }),
            };
            if windows.start_ms != start_ms {
                let finished = std::mem::replace(&mut windows.current, Counts::new(&variables));
                windows.previous =
                    (windows.start_ms + self.window_ms == start_ms).then_some((windows.start_ms, finished));
                windows.start_ms = start_ms;
            }
            windows.current.contacts += 1;
            for (index, bin) in bins.iter().take(variables.len()).enumerate() {
                windows.current.bins[index][*bin] += 1;
            }
        }
    }

    /// The report for one region, or all regions (with `*` for all of them together).
    pub fn report(&self, region: Option<&str>) -> DriftReport {
        self.report_at(region, crate::grpc::now_ms())
    }

    fn report_at(&self, region: Option<&str>, now_ms: i64) -> DriftReport {
        let state = self.state.lock();
        let start_ms = now_ms - now_ms.rem_euclid(self.window_ms);
        let window = |window_start: i64, counts: &Counts| {
            let variables: Vec<VariableDrift> = state
                .variables
                .iter()
                .zip(&counts.bins)
                .map(|(variable, bins)| VariableDrift {
                    name: variable.name.clone(),
                    psi: psi(bins, counts.contacts, &variable.shares),
                    shares: bins
                        .iter()
                        .map(|count| if counts.contacts == 0 { 0.0 } else { *count as f64 / counts.contacts as f64 })
                        .collect(),
                    reference_shares: variable.shares.clone(),
                })
                .collect();
            let max_psi = variables.iter().map(|variable| variable.psi).fold(0.0, f64::max);
            WindowDrift {
                start_ms: window_start,
                contacts: counts.contacts,
                variables,
                max_psi,
                level: level(max_psi, counts.contacts),
            }
        };
        let empty = Counts::new(&state.variables);
        let mut regions: Vec<RegionDrift> = state
            .regions
            .iter()
            .filter(|(key, _)| region.is_none_or(|wanted| wanted == key.as_str()))
            .map(|(key, windows)| {
                // A region quiet since its last window: its current window is empty and what it counted is previous.
                let (current, previous) = if windows.start_ms == start_ms {
                    (
                        window(start_ms, &windows.current),
                        windows.previous.as_ref().map(|(at, counts)| window(*at, counts)),
                    )
                } else if windows.start_ms + self.window_ms == start_ms {
                    (window(start_ms, &empty), Some(window(windows.start_ms, &windows.current)))
                } else {
                    (window(start_ms, &empty), None)
                };
                RegionDrift { region: key.clone(), current, previous }
            })
            .collect();
        regions.sort_by(|a, b| (a.region != ALL_REGIONS, &a.region).cmp(&(b.region != ALL_REGIONS, &b.region)));
        DriftReport {
            model_version: state.model_version.to_string(),
            has_reference: !state.variables.is_empty(),
            window_minutes: self.window_minutes(),
            regions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use saring_models::FEATURE_COUNT;

    fn model_with_reference(reference: serde_json::Value) -> Model {
        let mut artifact =
            saring_models::ModelArtifact::from_json(include_str!("../../../models/artifacts/default.json")).unwrap();
        artifact.card = serde_json::json!({ "reference": { "bins": reference } });
        Model::new(artifact)
    }

    #[test]
    fn the_shipped_models_card_carries_a_reference_the_monitor_reads() {
        let shipped = Model::new(
            saring_models::ModelArtifact::from_json(include_str!("../../../models/artifacts/default.json")).unwrap(),
        );
        let bins = shipped.artifact().card.pointer("/reference/bins").and_then(serde_json::Value::as_object).unwrap();
        let variables = reference(&shipped);
        assert_eq!(variables.len(), bins.len(), "every reference variable is read");
        assert!(variables.iter().any(|variable| variable.source == Source::Likelihood));
        for variable in &variables {
            assert!((variable.shares.iter().sum::<f64>() - 1.0).abs() < 1e-6, "{}", variable.name);
        }
    }

    #[test]
    fn psi_is_zero_on_the_reference_and_grows_with_the_shift() {
        assert!(psi(&[25, 25, 50], 100, &[0.25, 0.25, 0.5]).abs() < 1e-12);
        let small = psi(&[30, 25, 45], 100, &[0.25, 0.25, 0.5]);
        let large = psi(&[80, 10, 10], 100, &[0.25, 0.25, 0.5]);
        assert!(0.0 < small && small < 0.1 && large > 0.25, "{small} {large}");
        // By hand: (0.8-0.25)ln(3.2) + (0.1-0.25)ln(0.4) + (0.1-0.5)ln(0.2)
        let expected = 0.55 * 3.2f64.ln() + (-0.15) * 0.4f64.ln() + (-0.4) * 0.2f64.ln();
        assert!((large - expected).abs() < 1e-12);
    }

    #[test]
    fn contacts_are_binned_per_region_and_windows_roll_over() {
        let model = model_with_reference(serde_json::json!({
            "likelihood": { "edges": [0.1, 0.5], "shares": [0.5, 0.3, 0.2] },
            "withheld": { "edges": [-1.0, 0.5, 2.0], "shares": [0.9, 0.1] },
            "no_such_feature": { "edges": [0.5], "shares": [0.5, 0.5] }
        }));
        let monitor = DriftMonitor::new(&model, Duration::from_secs(3600));
        let features = [0.0; FEATURE_COUNT];
        let hour = 3_600_000;
        let t0 = 1_000 * hour;
        for likelihood in [0.05, 0.1, 0.3, 0.9] {
            monitor.observe_at(model.version(), "jatim.sby", likelihood, &features, t0 + 10);
        }
        monitor.observe_at("another-model", "jatim.sby", 0.9, &features, t0 + 10);
        let report = monitor.report_at(None, t0 + 20);
        assert!(report.has_reference);
        assert_eq!(report.regions.iter().map(|region| region.region.as_str()).collect::<Vec<_>>(), ["*", "jatim.sby"]);
        let current = &report.regions[1].current;
        assert_eq!(current.contacts, 4);
        assert_eq!(current.variables.len(), 2, "the unknown feature is skipped");
        let likelihood = current.variables.iter().find(|variable| variable.name == "likelihood").unwrap();
        assert_eq!(likelihood.shares, [0.5, 0.25, 0.25]);
        assert!((likelihood.psi - psi(&[2, 1, 1], 4, &[0.5, 0.3, 0.2])).abs() < 1e-12);
        assert_eq!(current.level, "too_few_contacts");

        // Next hour: the last window becomes previous; two hours later with no contacts, nothing is previous.
        monitor.observe_at(model.version(), "jatim.sby", 0.9, &features, t0 + hour + 5);
        let next = monitor.report_at(Some("jatim.sby"), t0 + hour + 6);
        assert_eq!(next.regions.len(), 1);
        assert_eq!(next.regions[0].current.contacts, 1);
        assert_eq!(next.regions[0].previous.as_ref().unwrap().contacts, 4);
        let later = monitor.report_at(Some("jatim.sby"), t0 + 2 * hour + 6);
        assert_eq!((later.regions[0].current.contacts, later.regions[0].previous.as_ref().unwrap().contacts), (0, 1));
        let much_later = monitor.report_at(Some("jatim.sby"), t0 + 5 * hour);
        assert!(much_later.regions[0].previous.is_none());

        monitor.reset(&model_with_reference(serde_json::json!({})));
        let reset = monitor.report_at(None, t0 + 5 * hour);
        assert!(!reset.has_reference && reset.regions.is_empty());
    }
}
