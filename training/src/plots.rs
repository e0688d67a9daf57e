//! PNG plots for the evaluation report, drawn with plotters' bitmap backend. Text is rendered with DejaVu Sans,
//! embedded from `training/assets/` (its licence is beside it) through plotters' `ab_glyph` feature, so nothing
//! depends on the machine's fonts.

use std::path::Path;
use std::sync::Once;

use anyhow::anyhow;
use plotters::prelude::*;
use plotters::style::FontStyle;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

fn register_font() {
    REGISTER.call_once(|| {
        // The embedded file is a valid TrueType font; a failure here would be a build defect.
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("the embedded DejaVu Sans font is not a valid font"));
    });
}

/// One named line on a plot.
pub struct Line {
    /// Legend label.
    pub label: String,
    /// Points in data coordinates.
    pub points: Vec<(f64, f64)>,
    /// Whether to mark the points (for binned curves).
    pub markers: bool,
}

/// A line chart on the unit square or on given ranges.
pub struct Chart<'a> {
    /// Title above the chart.
    pub title: &'a str,
    /// X axis label.
    pub x_label: &'a str,
    /// Y axis label.
    pub y_label: &'a str,
    /// X range.
    pub x_range: (f64, f64),
    /// Y range.
    pub y_range: (f64, f64),
    /// Whether to draw the diagonal y = x (ROC chance line, perfect calibration).
    pub diagonal: bool,
    /// Where the legend goes (out of the curves' way).
    pub legend: SeriesLabelPosition,
}

const COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Draws `lines` on `chart` into a 900 × 650 PNG at `path`.
pub fn line_chart(path: &Path, chart: &Chart<'_>, lines: &[Line]) -> anyhow::Result<()> {
    register_font();
    let root = BitMapBackend::new(path, (900, 650)).into_drawing_area();
    root.fill(&WHITE).map_err(|error| anyhow!("{error}"))?;
    let mut context = ChartBuilder::on(&root)
        .caption(chart.title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(chart.x_range.0..chart.x_range.1, chart.y_range.0..chart.y_range.1)
        .map_err(|error| anyhow!("{error}"))?;
    context
        .configure_mesh()
        .x_desc(chart.x_label)
        .y_desc(chart.y_label)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(|error| anyhow!("{error}"))?;
    if chart.diagonal {
        let (low, high) = (chart.x_range.0.max(chart.y_range.0), chart.x_range.1.min(chart.y_range.1));
        context
            .draw_series(LineSeries::new([(low, low), (high, high)], BLACK.mix(0.3).stroke_width(1)))
            .map_err(|error| anyhow!("{error}"))?;
    }
    for (index, line) in lines.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        context
            .draw_series(LineSeries::new(line.points.iter().copied(), colour.stroke_width(2)))
            .map_err(|error| anyhow!("{error}"))?
            .label(line.label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
        if line.markers {
            context
                .draw_series(line.points.iter().map(|point| Circle::new(*point, 3, colour.filled())))
                .map_err(|error| anyhow!("{error}"))?;
        }
    }
    context
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 15))
        .position(chart.legend.clone())
        .draw()
        .map_err(|error| anyhow!("{error}"))?;
    root.present().map_err(|error| anyhow!("cannot write {}: {error}", path.display()))?;
    Ok(())
}

/// ROC curve points (false positive rate, true positive rate), one per group of tied scores, at most ~600.
pub fn roc_points(scores: &[f64], labels: &[bool]) -> Vec<(f64, f64)> {
    curve(scores, labels, |true_positives, flagged, positives, negatives| {
        ((flagged - true_positives) / negatives.max(1.0), true_positives / positives.max(1.0))
    })
}

/// Precision–recall points (recall, precision), one per group of tied scores, at most ~600.
pub fn pr_points(scores: &[f64], labels: &[bool]) -> Vec<(f64, f64)> {
    curve(scores, labels, |true_positives, flagged, positives, _| {
        (true_positives / positives.max(1.0), true_positives / flagged.max(1.0))
    })
}

fn curve(scores: &[f64], labels: &[bool], point: impl Fn(f64, f64, f64, f64) -> (f64, f64)) -> Vec<(f64, f64)> {
    let positives = labels.iter().filter(|label| **label).count() as f64;
    let negatives = labels.len() as f64 - positives;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
    let step = (order.len() / 600).max(1);
    let (mut true_positives, mut points) = (0.0, Vec::new());
    for (position, index) in order.iter().enumerate() {
        true_positives += f64::from(u8::from(labels[*index]));
        let group_ends = order.get(position + 1).is_none_or(|next| scores[*next] != scores[*index]);
        if group_ends && (position % step == 0 || position + 1 == order.len()) {
            points.push(point(true_positives, (position + 1) as f64, positives, negatives));
        }
    }
    points
}

/// Reliability points (mean predicted, observed share) over `bins` equal-width bins, skipping empty ones.
pub fn reliability_points(probabilities: &[f64], labels: &[bool], bins: usize) -> Vec<(f64, f64)> {
    let mut sums = vec![(0.0, 0.0, 0usize); bins];
    for (probability, label) in probabilities.iter().zip(labels) {
        let bin = ((probability * bins as f64) as usize).min(bins - 1);
        sums[bin].0 += probability;
        sums[bin].1 += f64::from(u8::from(*label));
        sums[bin].2 += 1;
    }
    sums.iter()
        .filter(|(_, _, count)| *count > 0)
        .map(|(predicted, observed, count)| (predicted / *count as f64, observed / *count as f64))
        .collect()
}

/// Share of `values` (0..1) in each of `bins` equal-width bins, as points at the bin centres.
pub fn histogram_points(values: &[f64], bins: usize) -> Vec<(f64, f64)> {
    let mut counts = vec![0usize; bins];
    for value in values {
        counts[((value * bins as f64) as usize).min(bins - 1)] += 1;
    }
    counts
        .iter()
        .enumerate()
        .map(|(bin, count)| ((bin as f64 + 0.5) / bins as f64, *count as f64 / values.len().max(1) as f64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_perfect_ranking_has_a_roc_curve_through_the_top_left_corner() {
        let points = roc_points(&[0.9, 0.8, 0.2, 0.1], &[true, true, false, false]);
        assert!(points.contains(&(0.0, 1.0)));
        assert_eq!(*points.last().unwrap(), (1.0, 1.0));
        let pr = pr_points(&[0.9, 0.8, 0.2, 0.1], &[true, true, false, false]);
        assert_eq!(pr[1], (1.0, 1.0));
    }

    #[test]
    fn plots_are_written_as_png_files() {
        let directory = std::env::temp_dir().join(format!("saring-plots-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("roc.png");
        let chart = Chart {
            title: "ROC",
            x_label: "false positive rate",
            y_label: "true positive rate",
            x_range: (0.0, 1.0),
            y_range: (0.0, 1.0),
            diagonal: true,
            legend: SeriesLabelPosition::LowerRight,
        };
        let line = Line { label: "model".into(), points: vec![(0.0, 0.0), (0.2, 0.8), (1.0, 1.0)], markers: true };
        line_chart(&path, &chart, &[line]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        std::fs::remove_dir_all(directory).ok();
    }
}
