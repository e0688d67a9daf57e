//! saring's own gradient-boosted trees: a compact histogram booster (log loss, second-order Newton leaves, leaf-wise
//! growth with a leaf budget, histogram subtraction, early stopping on the validation range), exported straight
//! into saring's [`BoostedParams`].
//!
//! Why not a crate: the model must be served by saring's own evaluator anyway, and exact path contributions need a
//! value on every node (the hessian-weighted mean of its leaves), which this booster records as it grows; with
//! 32 dense features and no missing values the whole learner is a few hundred lines, trains in seconds on 2 cores and
//! brings no dependency (forust-ml pulls rayon and its own model format we would have to translate).

use saring_models::artifact::{BoostedParams, FlatTree, ModelParams};
use saring_models::features::{FeatureVector, FEATURE_COUNT};

use crate::learners::TrainingSet;

/// Bins per feature (cut points + 1); bin indices fit in a byte.
const BIN_STRIDE: usize = 256;

/// Hyper-parameters of the booster.
#[derive(Debug, Clone, Copy)]
pub struct BoostingSettings {
    /// Upper bound on boosting rounds (trees); early stopping usually ends sooner.
    pub max_rounds: usize,
    /// Shrinkage applied to every leaf value.
    pub learning_rate: f64,
    /// Leaves per tree (grown best-first).
    pub max_leaves: usize,
    /// Maximum depth of a leaf.
    pub max_depth: usize,
    /// Minimum training rows in a leaf.
    pub min_samples_leaf: usize,
    /// Minimum hessian sum in a leaf.
    pub min_child_hessian: f64,
    /// L2 penalty on leaf values.
    pub l2: f64,
    /// Cut points per feature at most (≤ 255).
    pub max_bins: usize,
    /// Stop when validation log loss has not improved for this many rounds, and keep the best round.
    pub early_stopping_rounds: usize,
}

/// Features quantised to per-feature bins, column by column.
struct Binned {
    cuts: Vec<Vec<f64>>,
    columns: Vec<Vec<u8>>,
}

fn cut_points(values: &mut [f64], max_bins: usize) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    let mut distinct: Vec<f64> = values.to_vec();
    distinct.dedup();
    if distinct.len() <= max_bins {
        // Few distinct values: cut half-way between neighbours, so every value has its own bin.
        return distinct.windows(2).map(|pair| pair[0] + (pair[1] - pair[0]) / 2.0).collect();
    }
    let mut cuts: Vec<f64> = (1..max_bins).map(|index| values[index * (values.len() - 1) / max_bins]).collect();
    cuts.dedup();
    // The largest value needs no cut above it.
    if cuts.last() == distinct.last() {
        cuts.pop();
    }
    cuts
}

impl Binned {
    fn new(features: &[FeatureVector], max_bins: usize) -> Self {
        let max_bins = max_bins.clamp(2, BIN_STRIDE - 1);
        // A strided sample of at most 200,000 rows is plenty for quantiles.
        let stride = features.len().div_ceil(200_000).max(1);
        let mut cuts = Vec::with_capacity(FEATURE_COUNT);
        let mut columns = Vec::with_capacity(FEATURE_COUNT);
        for feature in 0..FEATURE_COUNT {
            let mut sample: Vec<f64> = features.iter().step_by(stride).map(|row| row[feature]).collect();
            let feature_cuts = cut_points(&mut sample, max_bins);
            let column =
                features.iter().map(|row| feature_cuts.partition_point(|cut| *cut < row[feature]) as u8).collect();
            cuts.push(feature_cuts);
            columns.push(column);
        }
        Binned { cuts, columns }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct HistogramBin {
    gradient: f64,
    hessian: f64,
    count: u32,
}

type Histogram = Vec<HistogramBin>;

fn empty_histogram() -> Histogram {
    vec![HistogramBin::default(); FEATURE_COUNT * BIN_STRIDE]
}

/// Fills `histogram` (zeroed) for `rows`, the features split across the machine's cores when it pays.
fn build_histogram(binned: &Binned, rows: &[u32], gradients: &[[f64; 2]], histogram: &mut [HistogramBin]) {
    let fill = |first_feature: usize, part: &mut [HistogramBin]| {
        for (offset, feature_bins) in part.chunks_mut(BIN_STRIDE).enumerate() {
            let column = &binned.columns[first_feature + offset];
            for row in rows {
                let row = *row as usize;
                let bin = &mut feature_bins[usize::from(column[row])];
                bin.gradient += gradients[row][0];
                bin.hessian += gradients[row][1];
                bin.count += 1;
            }
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, |count| count.get()).min(FEATURE_COUNT);
    if threads < 2 || rows.len() < 4096 {
        fill(0, histogram);
        return;
    }
    let features_per_thread = FEATURE_COUNT.div_ceil(threads);
    std::thread::scope(|scope| {
        for (index, part) in histogram.chunks_mut(features_per_thread * BIN_STRIDE).enumerate() {
            let fill = &fill;
            scope.spawn(move || fill(index * features_per_thread, part));
        }
    });
}

#[derive(Debug, Clone, Copy)]
struct Split {
    gain: f64,
    feature: usize,
    bin: u8,
}

struct Leaf {
    node: usize,
    depth: usize,
    rows: Vec<u32>,
    histogram: Histogram,
    gradient: f64,
    hessian: f64,
    split: Option<Split>,
}

fn score_of(gradient: f64, hessian: f64, l2: f64) -> f64 {
    gradient * gradient / (hessian + l2)
}

fn best_split(leaf: &Leaf, binned: &Binned, settings: &BoostingSettings) -> Option<Split> {
    if leaf.depth >= settings.max_depth || leaf.rows.len() < 2 * settings.min_samples_leaf {
        return None;
    }
    let parent = score_of(leaf.gradient, leaf.hessian, settings.l2);
    let count = leaf.rows.len() as u32;
    let mut best: Option<Split> = None;
    for feature in 0..FEATURE_COUNT {
        let bins = &leaf.histogram[feature * BIN_STRIDE..(feature + 1) * BIN_STRIDE];
        let (mut gradient, mut hessian, mut left_count) = (0.0, 0.0, 0u32);
        for (bin, cell) in bins.iter().enumerate().take(binned.cuts[feature].len()) {
            gradient += cell.gradient;
            hessian += cell.hessian;
            left_count += cell.count;
            let right_count = count - left_count;
            if (left_count as usize) < settings.min_samples_leaf {
                continue;
            }
            if (right_count as usize) < settings.min_samples_leaf {
                break;
            }
            let right_hessian = leaf.hessian - hessian;
            if hessian < settings.min_child_hessian || right_hessian < settings.min_child_hessian {
                continue;
            }
            let gain = score_of(gradient, hessian, settings.l2)
                + score_of(leaf.gradient - gradient, right_hessian, settings.l2)
                - parent;
            if gain > 1e-9 && best.is_none_or(|split| gain > split.gain) {
                best = Some(Split { gain, feature, bin: bin as u8 });
            }
        }
    }
    best
}

/// One tree grown on the current gradients; returns the tree and, for every training row, its leaf value.
fn grow_tree(
    binned: &Binned,
    gradients: &[[f64; 2]],
    all_rows: &[u32],
    settings: &BoostingSettings,
    row_output: &mut [f64],
) -> FlatTree {
    let mut tree = FlatTree {
        feature: vec![0],
        threshold: vec![0.0],
        left: vec![FlatTree::LEAF],
        right: vec![FlatTree::LEAF],
        value: vec![0.0],
    };
    let mut cover = vec![0.0];
    let mut root_histogram = empty_histogram();
    build_histogram(binned, all_rows, gradients, &mut root_histogram);
    let (gradient, hessian) = all_rows
        .iter()
        .fold((0.0, 0.0), |(g, h), row| (g + gradients[*row as usize][0], h + gradients[*row as usize][1]));
    let mut root =
        Leaf { node: 0, depth: 0, rows: all_rows.to_vec(), histogram: root_histogram, gradient, hessian, split: None };
    root.split = best_split(&root, binned, settings);
    let mut leaves = vec![root];
    while leaves.len() < settings.max_leaves {
        let Some((position, _)) = leaves
            .iter()
            .enumerate()
            .filter_map(|(position, leaf)| leaf.split.map(|split| (position, split.gain)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
        else {
            break;
        };
        let parent = leaves.swap_remove(position);
        let split = parent.split.expect("chosen for its split");
        let column = &binned.columns[split.feature];
        let (left_rows, right_rows): (Vec<u32>, Vec<u32>) =
            parent.rows.iter().partition(|row| column[**row as usize] <= split.bin);
        let left_node = tree.value.len();
        tree.feature[parent.node] = split.feature as u16;
        tree.threshold[parent.node] = binned.cuts[split.feature][usize::from(split.bin)];
        tree.left[parent.node] = left_node as u32;
        tree.right[parent.node] = left_node as u32 + 1;
        for _ in 0..2 {
            tree.feature.push(0);
            tree.threshold.push(0.0);
            tree.left.push(FlatTree::LEAF);
            tree.right.push(FlatTree::LEAF);
            tree.value.push(0.0);
            cover.push(0.0);
        }
        // Build the smaller child's histogram; the larger one is the parent's minus it.
        let left_is_smaller = left_rows.len() <= right_rows.len();
        let mut small_histogram = empty_histogram();
        build_histogram(
            binned,
            if left_is_smaller { &left_rows } else { &right_rows },
            gradients,
            &mut small_histogram,
        );
        let mut large_histogram = parent.histogram;
        for (large, small) in large_histogram.iter_mut().zip(&small_histogram) {
            large.gradient -= small.gradient;
            large.hessian -= small.hessian;
            large.count -= small.count;
        }
        let (left_histogram, right_histogram) =
            if left_is_smaller { (small_histogram, large_histogram) } else { (large_histogram, small_histogram) };
        let sums = |histogram: &Histogram| {
            histogram[split.feature * BIN_STRIDE..(split.feature + 1) * BIN_STRIDE]
                .iter()
                .fold((0.0, 0.0), |(g, h), bin| (g + bin.gradient, h + bin.hessian))
        };
        for (offset, rows, histogram) in [(0, left_rows, left_histogram), (1, right_rows, right_histogram)] {
            let (gradient, hessian) = sums(&histogram);
            let mut child = Leaf {
                node: left_node + offset,
                depth: parent.depth + 1,
                rows,
                histogram,
                gradient,
                hessian,
                split: None,
            };
            child.split = best_split(&child, binned, settings);
            leaves.push(child);
        }
    }
    for leaf in &leaves {
        let value = -settings.learning_rate * leaf.gradient / (leaf.hessian + settings.l2);
        tree.value[leaf.node] = value;
        cover[leaf.node] = leaf.hessian;
        for row in &leaf.rows {
            row_output[*row as usize] = value;
        }
    }
    // Children come after their parent: one backward pass gives every internal node its leaves' weighted mean.
    for node in (0..tree.value.len()).rev() {
        if tree.left[node] == FlatTree::LEAF {
            continue;
        }
        let (left, right) = (tree.left[node] as usize, tree.right[node] as usize);
        cover[node] = cover[left] + cover[right];
        tree.value[node] = if cover[node] > 0.0 {
            (cover[left] * tree.value[left] + cover[right] * tree.value[right]) / cover[node]
        } else {
            (tree.value[left] + tree.value[right]) / 2.0
        };
    }
    tree
}

fn leaf_value(tree: &FlatTree, features: &FeatureVector) -> f64 {
    let mut node = 0usize;
    while tree.left[node] != FlatTree::LEAF {
        let go_left = features[usize::from(tree.feature[node])] <= tree.threshold[node];
        node = if go_left { tree.left[node] } else { tree.right[node] } as usize;
    }
    tree.value[node]
}

fn sigmoid(value: f64) -> f64 {
    1.0 / (1.0 + (-value).exp())
}

fn log_loss(raw: &[f64], labels: &[bool]) -> f64 {
    let total: f64 = raw
        .iter()
        .zip(labels)
        .map(|(raw, label)| {
            // log(1 + exp(-z)) for the true class, computed stably.
            let margin = if *label { *raw } else { -*raw };
            (-margin).max(0.0) + (-margin.abs()).exp().ln_1p()
        })
        .sum();
    total / raw.len().max(1) as f64
}

/// Trains gradient-boosted trees on `set`, stopping early on `validation` (log loss), and exports them.
pub fn train_boosted(
    set: &TrainingSet<'_>,
    validation: &TrainingSet<'_>,
    settings: BoostingSettings,
) -> anyhow::Result<ModelParams> {
    anyhow::ensure!(!set.features.is_empty(), "no training rows");
    anyhow::ensure!(settings.max_leaves >= 2 && settings.learning_rate > 0.0, "invalid boosting settings");
    let positives = set.labels.iter().filter(|label| **label).count() as f64;
    let negatives = set.labels.len() as f64 - positives;
    let base_score = ((positives + 0.5) / (negatives + 0.5)).ln();
    let binned = Binned::new(set.features, settings.max_bins);
    let rows: Vec<u32> = (0..set.features.len() as u32).collect();
    let mut raw = vec![base_score; set.features.len()];
    let mut validation_raw = vec![base_score; validation.features.len()];
    let mut gradients = vec![[0.0; 2]; set.features.len()];
    let mut row_output = vec![0.0; set.features.len()];
    let mut trees = Vec::new();
    let (mut best_loss, mut best_rounds) = (log_loss(&validation_raw, validation.labels), 0);
    for round in 0..settings.max_rounds {
        for ((gradient, raw), label) in gradients.iter_mut().zip(&raw).zip(set.labels) {
            let probability = sigmoid(*raw);
            *gradient = [probability - f64::from(u8::from(*label)), (probability * (1.0 - probability)).max(1e-16)];
        }
        let tree = grow_tree(&binned, &gradients, &rows, &settings, &mut row_output);
        for (raw, output) in raw.iter_mut().zip(&row_output) {
            *raw += output;
        }
        for (raw, features) in validation_raw.iter_mut().zip(validation.features) {
            *raw += leaf_value(&tree, features);
        }
        trees.push(tree);
        if validation.features.is_empty() {
            best_rounds = round + 1;
            continue;
        }
        let loss = log_loss(&validation_raw, validation.labels);
        if loss < best_loss - 1e-7 {
            (best_loss, best_rounds) = (loss, round + 1);
        } else if round + 1 - best_rounds >= settings.early_stopping_rounds {
            break;
        }
    }
    anyhow::ensure!(best_rounds > 0, "boosting did not improve validation log loss in any round");
    trees.truncate(best_rounds);
    Ok(ModelParams::Boosted(BoostedParams { base_score, trees }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_points_give_every_distinct_value_its_own_bin_when_few() {
        let mut values = vec![1.0, 0.0, 1.0, 0.0, 0.5];
        assert_eq!(cut_points(&mut values, 255), vec![0.25, 0.75]);
        let mut many: Vec<f64> = (0..10_000).map(f64::from).collect();
        let cuts = cut_points(&mut many, 16);
        assert!(cuts.len() <= 15 && cuts.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(*cuts.last().unwrap() < 9_999.0);
    }

    #[test]
    fn log_loss_is_stable_for_large_margins() {
        assert!((log_loss(&[0.0], &[true]) - std::f64::consts::LN_2).abs() < 1e-12);
        assert!(log_loss(&[800.0], &[true]) < 1e-12);
        assert!((log_loss(&[-800.0], &[true]) - 800.0).abs() < 1e-9);
    }
}
