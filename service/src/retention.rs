//! Retention: every replica prunes the case database every `cases.retention_interval_minutes` (old outcome rows
//! that ground no case; closed cases past `cases.closed_cases_retention_days` stripped of their number), counted in
//! `saring_retention_pruned_total`. Several replicas pruning at once is harmless: each deletes what is still there.
//! What is kept for how long, and why, is in docs/privacy.md.

use std::sync::Arc;
use std::time::Duration;

use crate::cases::privacy::Pruned;
use crate::cases::{CaseError, CaseStore};
use crate::config::CasesSettings;
use crate::metrics::Metrics;
use crate::store::HistoryStore;

const DAY_MS: i64 = 86_400_000;

/// The cut-offs `settings` give at `now_ms` (contacts, closed cases); `None` where a kind is kept forever.
pub fn cutoffs(settings: &CasesSettings, now_ms: i64) -> (Option<i64>, Option<i64>) {
    let before = |days: u32| (days > 0).then(|| now_ms - i64::from(days) * DAY_MS);
    (before(settings.contacts_retention_days), before(settings.closed_cases_retention_days))
}

/// One retention run at `now_ms`, counted in `metrics`.
pub async fn prune_once(
    store: &CaseStore,
    metrics: &Metrics,
    settings: &CasesSettings,
    now_ms: i64,
) -> Result<Pruned, CaseError> {
    let (contacts, cases) = cutoffs(settings, now_ms);
    let pruned = store.prune(contacts, cases).await?;
    metrics.observe_retention(pruned.contacts, pruned.cases, now_ms.div_euclid(1000));
    if pruned != Pruned::default() {
        tracing::info!(contacts = pruned.contacts, cases = pruned.cases, "retention pruned the case database");
    }
    Ok(pruned)
}

/// Prunes a minute after start-up and then every interval, until the task is dropped; a failed run is logged and
/// tried again at the next interval.
pub async fn run(store: CaseStore, metrics: Arc<Metrics>, settings: CasesSettings) {
    let interval = Duration::from_secs(u64::from(settings.retention_interval_minutes) * 60);
    tokio::time::sleep(Duration::from_secs(60).min(interval)).await;
    loop {
        if store.is_open() {
            if let Err(error) = prune_once(&store, &metrics, &settings, crate::grpc::now_ms()).await {
                tracing::warn!(%error, "retention run failed; trying again at the next interval");
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// Removes the histories whose last contact is older than `retention` (per caller: memory keeps no TTL, and Redis
/// hash fields have none before 7.4), counted in `saring_retention_pruned_total{kind="histories"}`.
pub async fn sweep_histories_once<S: HistoryStore>(
    store: &S,
    metrics: &Metrics,
    retention: Duration,
    now_ms: i64,
) -> Result<u64, crate::store::StoreError> {
    let cutoff_ms = now_ms - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX / 2);
    let removed = store.sweep_expired(cutoff_ms).await?;
    metrics.observe_history_sweep(removed);
    if removed > 0 {
        tracing::info!(histories = removed, "retention swept histories past history.retention_days");
    }
    Ok(removed)
}

/// Sweeps histories a minute after start-up and then every `interval`, until the task is dropped, when the store
/// grants this replica the interval's sweep ([`HistoryStore::claim_sweep`]: on Redis one replica sweeps per interval,
/// and a restart within it does not sweep again); a failed sweep is logged and tried again at the next interval.
pub async fn sweep_histories<S: HistoryStore>(app: Arc<crate::app::App<S>>, retention: Duration, interval: Duration) {
    tokio::time::sleep(Duration::from_secs(60).min(interval)).await;
    loop {
        let screener = &app.screener;
        match screener.store().claim_sweep(interval).await {
            Ok(true) => {
                if let Err(error) =
                    sweep_histories_once(screener.store(), screener.metrics(), retention, crate::grpc::now_ms()).await
                {
                    tracing::warn!(%error, "history sweep failed; trying again at the next interval");
                }
            }
            Ok(false) => {
                tracing::debug!("history sweep skipped: another replica or an earlier start swept within the interval")
            }
            Err(error) => tracing::warn!(%error, "history sweep not claimed; trying again at the next interval"),
        }
        tokio::time::sleep(interval).await;
    }
}
