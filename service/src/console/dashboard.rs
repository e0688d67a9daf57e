//! The dashboard: contacts per hour by band, per region with the share answered, cases by state, and the drift
//! index — charts drawn here as SVG, so the page needs nothing from the network.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup};
use saring_models::Band;

use super::i18n::{self, local_time_at, Lang};
use super::{lang, layout, Shared};
use crate::auth::Role;
use crate::modelops::drift::{DriftReport, RegionDrift, ALL_REGIONS, MIN_CONTACTS};
use crate::modelops::quality::{QualityReport, QualityState, NATIONAL};
use crate::store::HistoryStore;
use crate::traffic::HourCounts;

const HOUR_MS: i64 = 3_600_000;
/// Band colours: LOW, ELEVATED, HIGH, no band.
const BAND_COLOURS: [&str; 4] = ["#3a7d44", "#e0a100", "#c0392b", "#888888"];
const BAND_NAMES: [&str; 4] = ["low", "elevated", "high", "none"];
const SVG_NS: &str = "http://www.w3.org/2000/svg";

/// A chart coordinate, to one decimal.
fn coordinate(value: f64) -> String {
    format!("{value:.1}")
}

/// One band's part of an hour's stacked bar.
struct Segment {
    band: usize,
    count: u64,
    /// The top edge.
    y: f64,
    height: f64,
}

/// The parts of an hour's bar, stacked up from `base`, LOW first; bands without contacts are left out. `scale` is
/// the height of the `peak` hour.
fn stack(counts: &HourCounts, base: f64, peak: f64, scale: f64) -> Vec<Segment> {
    let mut y = base;
    (0..4)
        .filter(|&band| counts.bands[band] > 0)
        .map(|band| {
            let count = counts.bands[band];
            let height = count as f64 / peak * scale;
            y -= height;
            Segment { band, count, y, height }
        })
        .collect()
}

/// Stacked bars of contacts per hour by band over the last 24 hours, all regions; hours in WIB.
fn hourly_chart(hours: &BTreeMap<i64, HourCounts>, now_ms: i64) -> Markup {
    let last = now_ms - now_ms.rem_euclid(HOUR_MS);
    let slots: Vec<(i64, HourCounts)> = (0..24)
        .rev()
        .map(|ago| last - ago * HOUR_MS)
        .map(|hour| (hour, hours.get(&hour).copied().unwrap_or_default()))
        .collect();
    let peak = slots.iter().map(|(_, counts)| counts.contacts()).max().unwrap_or(0).max(1) as f64;
    let (width, height, left, bottom) = (720.0, 220.0, 40.0, 30.0);
    let bar = (width - left) / 24.0;
    let base = height - bottom;
    html! {
        svg xmlns=(SVG_NS) viewBox={ "0 0 " (width) " " (height) } class="chart" id="hourly-chart" role="img" {
            line x1=(left) y1=(base) x2=(width) y2=(base) stroke="#444" {}
            text x="2" y="12" font-size="10" { (peak as u64) }
            text x="2" y=(base) font-size="10" { "0" }
            @for (index, (hour, counts)) in slots.iter().enumerate() {
                @let x = coordinate(left + index as f64 * bar);
                @for segment in stack(counts, base, peak, base - 16.0) {
                    rect
                        x=(x)
                        y=(coordinate(segment.y))
                        width=(coordinate(bar - 2.0))
                        height=(coordinate(segment.height))
                        fill=(BAND_COLOURS[segment.band])
                    {
                        title { (BAND_NAMES[segment.band]) ": " (segment.count) }
                    }
                }
                @if index % 3 == 0 {
                    @let label = local_time_at(*hour, 25_200);
                    text x=(x) y=(height - 12.0) font-size="10" { (&label[11..16]) }
                }
            }
            @for band in 0..4 {
                @let legend_x = left + 80.0 * band as f64;
                rect x=(legend_x) y="2" width="10" height="10" fill=(BAND_COLOURS[band]) {}
                text x=(legend_x + 14.0) y="11" font-size="10" { (BAND_NAMES[band]) }
            }
            text x=(width - 30.0) y="11" font-size="10" { "WIB" }
        }
    }
}

/// One bar of a [`bars`] chart: its label, its value, its colour, and the figure written after it.
type Bar<'a> = (String, f64, &'a str, String);

/// Horizontal bars, one per (label, value), with a colour per bar.
fn bars(id: &str, rows: &[Bar], max: f64) -> Markup {
    let (width, row_height, left) = (720.0, 22.0, 180.0);
    let height = row_height * rows.len().max(1) as f64 + 4.0;
    html! {
        svg xmlns=(SVG_NS) viewBox={ "0 0 " (width) " " (height) } class="chart" id=(id) role="img" {
            @for (index, (label, value, colour, figure)) in rows.iter().enumerate() {
                @let y = index as f64 * row_height + 2.0;
                @let w = if max > 0.0 { (value / max).min(1.0) * (width - left - 80.0) } else { 0.0 };
                text x="0" y=(coordinate(y + 14.0)) font-size="11" { (label) }
                rect
                    x=(left)
                    y=(coordinate(y))
                    width=(coordinate(w))
                    height=(coordinate(row_height - 6.0))
                    fill=(colour) {}
                text x=(coordinate(left + w + 6.0)) y=(coordinate(y + 14.0)) font-size="11" { (figure) }
            }
        }
    }
}

/// Live ROC-AUC of the champion, the challenger and the naive rule per national window, and the warning when the
/// champion ranks worse than the naive rule.
fn quality_section(lang: Lang, report: &QualityReport) -> Markup {
    let national: Vec<_> = report.windows.iter().filter(|window| window.scope == NATIONAL).collect();
    let below_naive = national.iter().any(|window| window.champion_below_naive());
    let mut rows: Vec<Bar> = Vec::new();
    for window in national {
        let subjects = [
            (lang.t("champion"), Some(&window.champion), "#2c5d8f"),
            (lang.t("challenger"), window.challenger.as_ref(), "#8e44ad"),
            (lang.t("naive"), Some(&window.naive), "#888888"),
        ];
        for (subject, figures, colour) in subjects {
            let Some(figures) = figures else { continue };
            let period = match window.window {
                "day" => lang.t("window_day"),
                "week" => lang.t("window_week"),
                other => other,
            };
            let label = format!("{period} · {subject}");
            let text = match figures.state {
                QualityState::Measured => format!(
                    "{:.3} (n={}, {} · {})",
                    figures.roc_auc, figures.labelled, figures.positives, figures.subject
                ),
                QualityState::TooFewLabelled => {
                    format!("{} (n={})", lang.t("too_few_labelled"), figures.labelled)
                }
            };
            let value = if figures.state == QualityState::Measured { figures.roc_auc } else { 0.0 };
            rows.push((label, value, colour, text));
        }
    }
    html! {
        h2 { (lang.t("live_quality")) }
        @if below_naive { p.error #quality-warning { (lang.t("below_naive")) } }
        (bars("quality-chart", &rows, 1.0))
    }
}

/// The drift index per region in the champion's current window; a window with too few contacts is said in
/// words, never drawn: its index is noise, and a full bar of noise reads as an alarm.
fn drift_section(lang: Lang, drift: &DriftReport) -> Markup {
    let (measured, thin): (Vec<&RegionDrift>, Vec<&RegionDrift>) =
        drift.regions.iter().partition(|region| region.current.level != "too_few_contacts");
    let label = |region: &RegionDrift| {
        if region.region == ALL_REGIONS {
            lang.t("all_regions").to_owned()
        } else {
            region.region.clone()
        }
    };
    let rows: Vec<Bar> = measured
        .iter()
        .map(|region| {
            let window = &region.current;
            let colour = match window.level {
                "significant" => "#c0392b",
                "moderate" => "#e0a100",
                _ => "#3a7d44",
            };
            (
                label(region),
                window.max_psi,
                colour,
                format!("{:.3} ({}, n={})", window.max_psi, i18n::drift_level(lang, window.level), window.contacts),
            )
        })
        .collect();
    let names: Vec<String> =
        thin.iter().map(|region| format!("{} (n={})", label(region), region.current.contacts)).collect();
    html! {
        h2 { (lang.t("drift")) }
        p.period {
            (drift.model_version) " · " (lang.t("drift_window")) " " (drift.window_minutes) " " (lang.t("minutes"))
        }
        @if drift.has_reference {
            @if !rows.is_empty() { (bars("drift-chart", &rows, 0.5)) }
            @if !names.is_empty() {
                p.thin #drift-not-enough {
                    (lang.t("not_enough_data")) " " (MIN_CONTACTS) ": " (names.join(", "))
                }
            }
        } @else {
            p { (lang.t("no_reference")) }
        }
    }
}

/// The share of a region's recorded outcomes that were answered, with its numerator and denominator.
fn share_answered(counts: &HourCounts) -> String {
    if counts.outcomes == 0 {
        "—".to_owned()
    } else {
        format!(
            "{:.0}% ({} / {})",
            counts.answered as f64 / counts.outcomes as f64 * 100.0,
            counts.answered,
            counts.outcomes
        )
    }
}

/// The dashboard page: traffic of the last 24 hours (chart and table by region), cases by state, drift and live
/// quality.
pub(super) async fn page<S: HistoryStore>(State(console): Shared<S>, headers: HeaderMap) -> Response {
    let session = match console.session(&headers, &[Role::Operator, Role::Legal, Role::Admin]) {
        Ok(session) => session,
        Err(denied) => return denied.into_response(),
    };
    let lang = lang(&headers);
    let now_ms = crate::grpc::now_ms();
    let snapshot = console.app.screener.traffic().snapshot();
    let mut hourly: BTreeMap<i64, HourCounts> = BTreeMap::new();
    let mut regions: BTreeMap<String, HourCounts> = BTreeMap::new();
    // The chart and the table cover the same period: the last 24 whole and current hours.
    let first_hour = now_ms - now_ms.rem_euclid(HOUR_MS) - 23 * HOUR_MS;
    let period = format!("{} — {}", &local_time_at(first_hour, 25_200)[..16], &local_time_at(now_ms, 25_200)[11..]);
    for (hour, region, counts) in snapshot.into_iter().filter(|(hour, _, _)| *hour >= first_hour) {
        for target in [hourly.entry(hour).or_default(), regions.entry(region).or_default()] {
            for band in 0..4 {
                target.bands[band] += counts.bands[band];
            }
            target.outcomes += counts.outcomes;
            target.answered += counts.answered;
        }
    }
    let cases = match console.app.escalator.store().count_by_state().await {
        Ok(states) => {
            let max = states.iter().map(|(_, count)| *count).max().unwrap_or(0) as f64;
            let rows: Vec<Bar> = states
                .iter()
                .map(|(state, count)| {
                    (i18n::state(lang, *state).to_owned(), *count as f64, "#2c5d8f", count.to_string())
                })
                .collect();
            Some(bars("cases-chart", &rows, max))
        }
        Err(error) => {
            tracing::warn!(%error, "console: cases by state");
            None
        }
    };
    let drift = console.app.screener.models().drift().report(None);
    let models = std::sync::Arc::clone(console.app.screener.models());
    let quality = match tokio::task::spawn_blocking(move || models.refresh_quality(now_ms)).await {
        Ok(report) => Some(quality_section(lang, &report)),
        Err(error) => {
            tracing::error!(%error, "console: live quality");
            None
        }
    };
    let body = html! {
        h1 { (lang.t("dashboard")) }
        h2 { (lang.t("contacts_per_hour")) }
        p.period #traffic-period { (lang.t("period")) " " (period) }
        (hourly_chart(&hourly, now_ms))

        h2 { (lang.t("by_region")) }
        p.period { (lang.t("period")) " " (period) ". " (lang.t("answered_denominator")) }
        table.regions #regions {
            thead {
                tr {
                    th { (lang.t("region")) }
                    th { (lang.t("contacts")) }
                    th { (i18n::band(lang, Some(Band::Low))) }
                    th { (i18n::band(lang, Some(Band::Elevated))) }
                    th { (i18n::band(lang, Some(Band::High))) }
                    th { (lang.t("share_answered")) }
                }
            }
            tbody {
                @for (region, counts) in &regions {
                    tr {
                        td { (region) }
                        td { (counts.contacts()) }
                        td { (counts.bands[0]) }
                        td { (counts.bands[1]) }
                        td { (counts.bands[2]) }
                        td { (share_answered(counts)) }
                    }
                }
            }
        }

        h2 { (lang.t("cases_by_state")) }
        p.period { (lang.t("all_time")) }
        @match cases {
            Some(chart) => (chart),
            None => p.error { (lang.t("unavailable")) },
        }

        (drift_section(lang, &drift))
        @if let Some(quality) = quality { (quality) }
    };
    Html(layout(lang, lang.t("dashboard"), Some(&session), body)).into_response()
}
