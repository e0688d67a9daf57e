//! The model card's reference distribution for drift: decile bins of the calibrated likelihood and of a few key
//! features over the test range's contacts, against which the service computes a population stability index.
//!
//! Shape (documented in `models/artifacts/README.md`):
//! `{"range": "test", "from", "until", "contacts", "bin_rule", "bins": {name: {"edges": [..], "shares": [..]}},
//!   "band_shares": {"low", "elevated", "high"}}`. With inner edges `e[0] < … < e[k-1]`, a value `v` falls in bin 0
//! when `v <= e[0]`, in bin `i` when `e[i-1] < v <= e[i]`, in bin `k` when `v > e[k-1]`; `shares` has `k + 1`
//! entries summing to 1.

use saring_models::features::feature_index;
use saring_models::{Band, Model};
use serde_json::json;

use crate::replay::ReplayRow;

/// Features whose distribution the card records: withheld numbers and SIM-less handsets (a handset-bug surge),
/// night-time share, and the caller and device activity and misuse history (a prank wave).
pub const REFERENCE_FEATURES: [&str; 6] =
    ["withheld", "sim_less", "night", "caller_contacts_1d", "caller_misuse_share_30d", "device_contacts_1h"];

/// Inner decile edges of `values`: distinct, and none at or above the maximum (so the top bin is never empty).
pub fn decile_edges(values: &[f64]) -> Vec<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let Some(maximum) = sorted.last().copied() else {
        return Vec::new();
    };
    let mut edges: Vec<f64> = (1..10).map(|decile| sorted[decile * (sorted.len() - 1) / 10]).collect();
    edges.dedup();
    edges.retain(|edge| *edge < maximum);
    edges
}

/// The bin of `value` under the card's rule.
pub fn bin_of(edges: &[f64], value: f64) -> usize {
    edges.partition_point(|edge| *edge < value)
}

/// Share of `values` in each bin.
pub fn shares(edges: &[f64], values: &[f64]) -> Vec<f64> {
    let mut counts = vec![0usize; edges.len() + 1];
    for value in values {
        counts[bin_of(edges, *value)] += 1;
    }
    counts.iter().map(|count| *count as f64 / values.len().max(1) as f64).collect()
}

fn binned(values: &[f64]) -> serde_json::Value {
    let edges = decile_edges(values);
    json!({ "shares": shares(&edges, values), "edges": edges })
}

/// The reference distribution over `rows` (every contact of the test range, labelled or not: the service sees all).
pub fn reference_distribution(model: &Model, rows: &[ReplayRow], from: String, until: String) -> serde_json::Value {
    let scores: Vec<_> = rows.iter().map(|row| model.score(&row.features)).collect();
    let likelihoods: Vec<f64> = scores.iter().map(|score| score.likelihood).collect();
    let mut bins = serde_json::Map::new();
    bins.insert("likelihood".into(), binned(&likelihoods));
    for name in REFERENCE_FEATURES {
        let index = feature_index(name).expect("a reference feature is in the schema");
        let values: Vec<f64> = rows.iter().map(|row| row.features[index]).collect();
        bins.insert(name.into(), binned(&values));
    }
    let band_share =
        |band: Band| scores.iter().filter(|score| score.band == band).count() as f64 / scores.len().max(1) as f64;
    json!({
        "range": "test",
        "from": from,
        "until": until,
        "contacts": rows.len(),
        "bin_rule": "inner edges e[0] < ... < e[k-1]: bin 0 when v <= e[0], bin i when e[i-1] < v <= e[i], bin k when v > e[k-1]; shares has k + 1 entries summing to 1",
        "bins": bins,
        "band_shares": { "low": band_share(Band::Low), "elevated": band_share(Band::Elevated), "high": band_share(Band::High) },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deciles_of_a_uniform_sample_split_it_in_tenths() {
        let values: Vec<f64> = (0..1000).map(f64::from).collect();
        let edges = decile_edges(&values);
        assert_eq!(edges.len(), 9);
        let shares = shares(&edges, &values);
        assert_eq!(shares.len(), 10);
        assert!(shares.iter().all(|share| (share - 0.1).abs() < 0.002), "{shares:?}");
    }

    #[test]
    fn a_binary_feature_gets_one_edge_and_two_non_empty_bins() {
        let values: Vec<f64> = (0..100).map(|index| if index % 4 == 0 { 1.0 } else { 0.0 }).collect();
        let edges = decile_edges(&values);
        assert_eq!(edges, vec![0.0]);
        assert_eq!(shares(&edges, &values), vec![0.75, 0.25]);
        assert_eq!(bin_of(&edges, 0.0), 0);
        assert_eq!(bin_of(&edges, 0.5), 1);
    }
}
