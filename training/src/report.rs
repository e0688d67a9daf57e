//! `saring-train evaluate --report DIR`: a Markdown report with PNG plots (ROC, precision–recall, reliability,
//! score histograms by disposition) and slices by region, channel and kind of caller, with the number that matters
//! most — genuine emergencies per band, and from which kind of caller.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use plotters::chart::SeriesLabelPosition;
use saring_models::features::feature_index;
use saring_models::{Band, Disposition, Model};

use crate::calibration::{expected_calibration_error, uncalibrated_probability, ECE_BINS};
use crate::evaluate::Evaluation;
use crate::metrics::{pr_auc, roc_auc, Confusion};
use crate::plots::{histogram_points, line_chart, pr_points, reliability_points, roc_points, Chart, Line};
use crate::replay::ReplayRow;

/// ROC or precision–recall points from scores and labels.
type CurveFn = fn(&[f64], &[bool]) -> Vec<(f64, f64)>;

/// One scored contact with what the slices need.
struct Scored<'a> {
    row: &'a ReplayRow,
    likelihood: f64,
    uncalibrated: f64,
    band: Band,
    caller_kind: &'static str,
}

fn caller_kind(row: &ReplayRow) -> &'static str {
    let withheld = feature_index("withheld").expect("withheld is a feature");
    if row.features[withheld] == 1.0 {
        "withheld"
    } else if row.first_time_caller {
        "first-time (number shown)"
    } else {
        "known number"
    }
}

fn band_index(band: Band) -> usize {
    match band {
        Band::Low => 0,
        Band::Elevated => 1,
        Band::High => 2,
    }
}

/// The metrics of one slice as a Markdown table row.
fn slice_row(name: &str, scored: &[&Scored<'_>], model: &Model) -> String {
    let labelled: Vec<&&Scored<'_>> = scored.iter().filter(|item| item.row.label().is_some()).collect();
    let likelihoods: Vec<f64> = labelled.iter().map(|item| item.likelihood).collect();
    let labels: Vec<bool> = labelled.iter().map(|item| item.row.label().unwrap_or(false)).collect();
    let positives = labels.iter().filter(|label| **label).count();
    let bands = model.artifact().bands;
    let elevated = Confusion::at(&likelihoods, &labels, bands.elevated);
    let high = Confusion::at(&likelihoods, &labels, bands.high);
    let genuine: Vec<&&Scored<'_>> =
        scored.iter().filter(|item| item.row.disposition == Some(Disposition::GenuineEmergency)).collect();
    let genuine_high = genuine.iter().filter(|item| item.band == Band::High).count();
    let has_both = positives > 0 && positives < labels.len();
    let metric = |value: f64| if has_both { format!("{value:.3}") } else { "–".into() };
    format!(
        "| {name} | {} | {} | {:.3} | {} | {} | {:.3} | {:.3} / {:.3} | {:.3} / {:.3} | {genuine_high} of {} |\n",
        scored.len(),
        labels.len(),
        positives as f64 / labels.len().max(1) as f64,
        metric(roc_auc(&likelihoods, &labels)),
        metric(pr_auc(&likelihoods, &labels)),
        expected_calibration_error(&likelihoods, &labels),
        elevated.precision(),
        elevated.recall(),
        high.precision(),
        high.recall(),
        genuine.len(),
    )
}

const SLICE_HEADER: &str = "| slice | contacts | labelled | misuse share | ROC-AUC | PR-AUC | ECE | ELEVATED precision / recall | HIGH precision / recall | genuine emergencies in HIGH |\n|---|---|---|---|---|---|---|---|---|---|\n";

fn slice_table<K: Ord + std::fmt::Display>(
    scored: &[Scored<'_>],
    model: &Model,
    key: impl Fn(&Scored<'_>) -> K,
) -> String {
    let mut groups: BTreeMap<K, Vec<&Scored<'_>>> = BTreeMap::new();
    for item in scored {
        groups.entry(key(item)).or_default().push(item);
    }
    let mut table = SLICE_HEADER.to_owned();
    for (name, items) in &groups {
        table += &slice_row(&name.to_string(), items, model);
    }
    table
}

fn genuine_by_band<K: Ord + std::fmt::Display>(scored: &[Scored<'_>], key: impl Fn(&Scored<'_>) -> K) -> String {
    let mut groups: BTreeMap<K, [usize; 3]> = BTreeMap::new();
    for item in scored.iter().filter(|item| item.row.disposition == Some(Disposition::GenuineEmergency)) {
        groups.entry(key(item)).or_default()[band_index(item.band)] += 1;
    }
    let mut table = "| caller | LOW | ELEVATED | HIGH | share in HIGH |\n|---|---|---|---|---|\n".to_owned();
    for (name, counts) in &groups {
        let total = counts.iter().sum::<usize>().max(1);
        let _ = writeln!(
            table,
            "| {name} | {} | {} | {} | {:.2}% |",
            counts[0],
            counts[1],
            counts[2],
            100.0 * counts[2] as f64 / total as f64
        );
    }
    table
}

/// Writes `report.md` and its plots into `directory` for `rows` scored by `model`.
pub fn write_report(
    directory: &Path,
    model: &Model,
    rows: &[ReplayRow],
    evaluation: &Evaluation,
    source: &str,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(directory).with_context(|| format!("cannot create {}", directory.display()))?;
    let scored: Vec<Scored<'_>> = rows
        .iter()
        .map(|row| {
            let score = model.score(&row.features);
            Scored {
                row,
                likelihood: score.likelihood,
                uncalibrated: uncalibrated_probability(&model.artifact().params, score.raw),
                band: score.band,
                caller_kind: caller_kind(row),
            }
        })
        .collect();
    let labelled: Vec<&Scored<'_>> = scored.iter().filter(|item| item.row.label().is_some()).collect();
    let labels: Vec<bool> = labelled.iter().map(|item| item.row.label().unwrap_or(false)).collect();
    let likelihoods: Vec<f64> = labelled.iter().map(|item| item.likelihood).collect();
    let uncalibrated: Vec<f64> = labelled.iter().map(|item| item.uncalibrated).collect();
    let naive: Vec<f64> = labelled.iter().map(|item| item.row.naive_score).collect();
    let unit = (0.0, 1.0);

    let curve_lines = |points: CurveFn| {
        vec![
            Line { label: format!("model {}", model.version()), points: points(&likelihoods, &labels), markers: false },
            Line {
                label: "naive rule (caller's past misuse share)".into(),
                points: points(&naive, &labels),
                markers: false,
            },
        ]
    };
    line_chart(
        &directory.join("roc.png"),
        &Chart {
            title: "ROC",
            x_label: "false positive rate",
            y_label: "true positive rate",
            x_range: unit,
            y_range: unit,
            diagonal: true,
            legend: SeriesLabelPosition::LowerRight,
        },
        &curve_lines(roc_points),
    )?;
    line_chart(
        &directory.join("precision-recall.png"),
        &Chart {
            title: "Precision–recall",
            x_label: "recall",
            y_label: "precision",
            x_range: unit,
            y_range: unit,
            diagonal: false,
            legend: SeriesLabelPosition::LowerLeft,
        },
        &curve_lines(pr_points),
    )?;
    line_chart(
        &directory.join("calibration.png"),
        &Chart {
            title: "Reliability (15 bins)",
            x_label: "mean predicted likelihood",
            y_label: "observed misuse share",
            x_range: unit,
            y_range: unit,
            diagonal: true,
            legend: SeriesLabelPosition::LowerRight,
        },
        &[
            Line {
                label: "calibrated".into(),
                points: reliability_points(&likelihoods, &labels, ECE_BINS),
                markers: true,
            },
            Line {
                label: "before calibration".into(),
                points: reliability_points(&uncalibrated, &labels, ECE_BINS),
                markers: true,
            },
        ],
    )?;
    let mut histogram_lines = Vec::new();
    let mut highest_share: f64 = 0.0;
    for disposition in Disposition::ALL {
        let values: Vec<f64> = scored
            .iter()
            .filter(|item| item.row.disposition == Some(disposition))
            .map(|item| item.likelihood)
            .collect();
        if values.is_empty() {
            continue;
        }
        let points = histogram_points(&values, 20);
        highest_share = points.iter().fold(highest_share, |high, point| high.max(point.1));
        histogram_lines.push(Line {
            label: format!("{} ({})", disposition.as_str(), values.len()),
            points,
            markers: true,
        });
    }
    line_chart(
        &directory.join("score-histograms.png"),
        &Chart {
            title: "Likelihood by disposition (share of each disposition per 0.05 bin)",
            x_label: "calibrated likelihood",
            y_label: "share of the disposition's contacts",
            x_range: unit,
            y_range: (0.0, (highest_share * 1.05).max(0.01)),
            diagonal: false,
            legend: SeriesLabelPosition::UpperMiddle,
        },
        &histogram_lines,
    )?;

    let bands = model.artifact().bands;
    let mut text = format!("# Evaluation of `{}`\n\n", model.version());
    let _ = writeln!(text, "Contacts: {source}. Every contact is scored at arrival with the history it had then.\n");
    let _ = writeln!(
        text,
        "| metric | value |\n|---|---|\n| contacts / labelled / misuse | {} / {} / {} (base rate {:.3}) |\n\
         | ROC-AUC | {:.4} |\n| PR-AUC | {:.4} |\n| Brier | {:.4} |\n\
         | ECE (15 bins) before calibration → calibrated | {:.4} → {:.4} |\n\
         | naive rule ROC-AUC (caller's past misuse share) | {:.4} |\n\
         | ELEVATED (≥ {:.3}) precision / recall | {:.3} / {:.3} |\n| HIGH (≥ {:.3}) precision / recall | {:.3} / {:.3} |\n",
        evaluation.contacts,
        evaluation.labelled,
        evaluation.positives,
        evaluation.base_rate,
        evaluation.roc_auc,
        evaluation.pr_auc,
        evaluation.brier,
        expected_calibration_error(&uncalibrated, &labels),
        expected_calibration_error(&likelihoods, &labels),
        evaluation.naive_roc_auc,
        bands.elevated,
        evaluation.at_elevated.precision(),
        evaluation.at_elevated.recall(),
        bands.high,
        evaluation.at_high.precision(),
        evaluation.at_high.recall(),
    );
    text += "![ROC](roc.png)\n![Precision–recall](precision-recall.png)\n![Reliability](calibration.png)\n\
             ![Likelihood by disposition](score-histograms.png)\n\n";
    text += "## Genuine emergencies per band\n\nThe number that matters most: a genuine emergency in HIGH is a real \
             caller an operator may deprioritise.\n\nBy kind of caller:\n\n";
    text += &genuine_by_band(&scored, |item| item.caller_kind);
    text += "\nBy channel:\n\n";
    text += &genuine_by_band(&scored, |item| item.row.channel.as_str());
    text += "\nBy region:\n\n";
    text += &genuine_by_band(&scored, |item| item.row.region.clone());
    text += "\n## Slices\n\nPrecision and recall at the model's band thresholds; ECE of the calibrated likelihood.\n\n";
    text += "### By kind of caller\n\n";
    text += &slice_table(&scored, model, |item| item.caller_kind);
    text += "\n### First-time vs known callers\n\n";
    text += &slice_table(
        &scored,
        model,
        |item| if item.row.first_time_caller { "first-time or withheld" } else { "known" },
    );
    text += "\n### By channel\n\n";
    text += &slice_table(&scored, model, |item| item.row.channel.as_str());
    text += "\n### By region\n\n";
    text += &slice_table(&scored, model, |item| item.row.region.clone());
    std::fs::write(directory.join("report.md"), text)
        .with_context(|| format!("cannot write {}", directory.display()))?;
    Ok(())
}
