//! The dashboard: contacts per hour by band, per region with the share answered, cases by state, and the drift
//! index — charts drawn here as SVG, so the page needs nothing from the network.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};

use saring_models::Band;

use super::i18n::{self, local_time_at};
use super::{escape, lang, layout, Shared};
use crate::auth::Role;
use crate::modelops::drift::ALL_REGIONS;
use crate::modelops::quality::{QualityReport, QualityState, NATIONAL};
use crate::store::HistoryStore;
use crate::traffic::HourCounts;

const HOUR_MS: i64 = 3_600_000;
/// Band colours: LOW, ELEVATED, HIGH, no band.
const BAND_COLOURS: [&str; 4] = ["#3a7d44", "#e0a100", "#c0392b", "#888888"];
const BAND_NAMES: [&str; 4] = ["low", "elevated", "high", "none"];

/// Stacked bars of contacts per hour by band over the last 24 hours, all regions; hours in WIB.
fn hourly_chart(hours: &BTreeMap<i64, HourCounts>, now_ms: i64) -> String {
    let last = now_ms - now_ms.rem_euclid(HOUR_MS);
    let slots: Vec<(i64, HourCounts)> = (0..24)
        .rev()
        .map(|ago| last - ago * HOUR_MS)
        .map(|hour| (hour, hours.get(&hour).copied().unwrap_or_default()))
        .collect();
    let peak = slots.iter().map(|(_, counts)| counts.contacts()).max().unwrap_or(0).max(1) as f64;
    let (width, height, left, bottom) = (720.0, 220.0, 40.0, 30.0);
    let bar = (width - left) / 24.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" class=\"chart\" id=\"hourly-chart\" role=\"img\">\
         <line x1=\"{left}\" y1=\"{base}\" x2=\"{width}\" y2=\"{base}\" stroke=\"#444\"/>\
         <text x=\"2\" y=\"12\" font-size=\"10\">{peak}</text><text x=\"2\" y=\"{base}\" font-size=\"10\">0</text>",
        base = height - bottom,
        peak = peak as u64,
    );
    for (index, (hour, counts)) in slots.iter().enumerate() {
        let x = left + index as f64 * bar;
        let mut y = height - bottom;
        for band in 0..4 {
            let value = counts.bands[band];
            if value == 0 {
                continue;
            }
            let h = value as f64 / peak * (height - bottom - 16.0);
            y -= h;
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{colour}\"><title>{name}: {value}</title></rect>",
                w = bar - 2.0,
                colour = BAND_COLOURS[band],
                name = BAND_NAMES[band],
            );
        }
        if index % 3 == 0 {
            let label = local_time_at(*hour, 25_200);
            let _ =
                write!(svg, "<text x=\"{x:.1}\" y=\"{}\" font-size=\"10\">{}</text>", height - 12.0, &label[11..16]);
        }
    }
    let mut legend_x = left;
    for band in 0..4 {
        let _ = write!(
            svg,
            "<rect x=\"{legend_x}\" y=\"2\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"11\" font-size=\"10\">{}</text>",
            BAND_COLOURS[band],
            legend_x + 14.0,
            BAND_NAMES[band]
        );
        legend_x += 80.0;
    }
    let _ = write!(svg, "<text x=\"{}\" y=\"11\" font-size=\"10\">WIB</text></svg>", width - 30.0);
    svg
}

/// Horizontal bars, one per (label, value), with a colour per bar.
fn bars(id: &str, rows: &[(String, f64, &str, String)], max: f64) -> String {
    let (width, row_height, left) = (720.0, 22.0, 180.0);
    let height = row_height * rows.len().max(1) as f64 + 4.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" class=\"chart\" id=\"{id}\" role=\"img\">"
    );
    for (index, (label, value, colour, text)) in rows.iter().enumerate() {
        let y = index as f64 * row_height + 2.0;
        let w = if max > 0.0 { (value / max).min(1.0) * (width - left - 80.0) } else { 0.0 };
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{ty:.1}\" font-size=\"11\">{label}</text>\
             <rect x=\"{left}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{colour}\"/>\
             <text x=\"{tx:.1}\" y=\"{ty:.1}\" font-size=\"11\">{text}</text>",
            ty = y + 14.0,
            h = row_height - 6.0,
            tx = left + w + 6.0,
            label = escape(label),
            text = escape(text),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Live ROC-AUC of the champion, the challenger and the naive rule per national window, and the warning when the
/// champion ranks worse than the naive rule.
fn quality_section(lang: super::i18n::Lang, report: &QualityReport) -> String {
    let mut section = format!("<h2>{}</h2>", lang.t("live_quality"));
    let national: Vec<_> = report.windows.iter().filter(|window| window.scope == NATIONAL).collect();
    if national.iter().any(|window| window.champion_below_naive()) {
        let _ = write!(section, "<p class=\"error\" id=\"quality-warning\">{}</p>", lang.t("below_naive"));
    }
    let mut rows: Vec<(String, f64, &str, String)> = Vec::new();
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
    section.push_str(&bars("quality-chart", &rows, 1.0));
    section
}

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
    let mut body = format!(
        "<h1>{}</h1><h2>{}</h2><p class=\"period\" id=\"traffic-period\">{} {period}</p>{}",
        lang.t("dashboard"),
        lang.t("contacts_per_hour"),
        lang.t("period"),
        hourly_chart(&hourly, now_ms)
    );

    let _ = write!(
        body,
        "<h2>{}</h2><p class=\"period\">{} {period}. {}</p><table class=\"regions\" id=\"regions\"><thead><tr><th>{}</th>\
         <th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        lang.t("by_region"),
        lang.t("period"),
        lang.t("answered_denominator"),
        lang.t("region"),
        lang.t("contacts"),
        i18n::band(lang, Some(Band::Low)),
        i18n::band(lang, Some(Band::Elevated)),
        i18n::band(lang, Some(Band::High)),
        lang.t("share_answered"),
    );
    for (region, counts) in &regions {
        let answered = if counts.outcomes == 0 {
            "—".to_owned()
        } else {
            format!(
                "{:.0}% ({} / {})",
                counts.answered as f64 / counts.outcomes as f64 * 100.0,
                counts.answered,
                counts.outcomes
            )
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{answered}</td></tr>",
            escape(region),
            counts.contacts(),
            counts.bands[0],
            counts.bands[1],
            counts.bands[2],
        );
    }
    body.push_str("</tbody></table>");

    let _ = write!(body, "<h2>{}</h2><p class=\"period\">{}</p>", lang.t("cases_by_state"), lang.t("all_time"));
    match console.app.escalator.store().count_by_state().await {
        Ok(states) => {
            let max = states.iter().map(|(_, count)| *count).max().unwrap_or(0) as f64;
            let rows: Vec<(String, f64, &str, String)> = states
                .iter()
                .map(|(state, count)| {
                    (i18n::state(lang, *state).to_owned(), *count as f64, "#2c5d8f", count.to_string())
                })
                .collect();
            body.push_str(&bars("cases-chart", &rows, max));
        }
        Err(error) => {
            tracing::warn!(%error, "console: cases by state");
            let _ = write!(body, "<p class=\"error\">{}</p>", lang.t("unavailable"));
        }
    }

    let drift = console.app.screener.models().drift().report(None);
    let _ = write!(
        body,
        "<h2>{}</h2><p class=\"period\">{} · {} {} {}</p>",
        lang.t("drift"),
        escape(&drift.model_version),
        lang.t("drift_window"),
        drift.window_minutes,
        lang.t("minutes")
    );
    if drift.has_reference {
        // A window with too few contacts is said in words, never drawn: its index is noise, and a full bar of
        // noise reads as an alarm.
        let (measured, thin): (Vec<_>, Vec<_>) =
            drift.regions.iter().partition(|region| region.current.level != "too_few_contacts");
        let label = |region: &crate::modelops::drift::RegionDrift| {
            if region.region == ALL_REGIONS {
                lang.t("all_regions").to_owned()
            } else {
                region.region.clone()
            }
        };
        let rows: Vec<(String, f64, &str, String)> = measured
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
        if !rows.is_empty() {
            body.push_str(&bars("drift-chart", &rows, 0.5));
        }
        if !thin.is_empty() {
            let names: Vec<String> =
                thin.iter().map(|region| format!("{} (n={})", label(region), region.current.contacts)).collect();
            let _ = write!(
                body,
                "<p class=\"thin\" id=\"drift-not-enough\">{} {}: {}</p>",
                lang.t("not_enough_data"),
                crate::modelops::drift::MIN_CONTACTS,
                escape(&names.join(", "))
            );
        }
    } else {
        let _ = write!(body, "<p>{}</p>", lang.t("no_reference"));
    }
    let models = std::sync::Arc::clone(console.app.screener.models());
    match tokio::task::spawn_blocking(move || models.refresh_quality(now_ms)).await {
        Ok(report) => body.push_str(&quality_section(lang, &report)),
        Err(error) => tracing::error!(%error, "console: live quality"),
    }
    Html(layout(lang, lang.t("dashboard"), Some(&session), &body)).into_response()
}
