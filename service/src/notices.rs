//! Erasure notices: how an erasure (or a reassignment) served by one replica reaches what every other replica alone
//! holds — its outcome journal, its near-cache, its recent contacts, an in-memory history store, its capture files.
//!
//! The transaction that erases the number from the case database also writes a notice: one row per erased history
//! key, naming it only by a keyed digest ([`crate::privacy::KeyHasher::notice_digest`], HMAC(secret,
//! "erasure-notice:" || key)), so the case database never holds an erased history's key or number. Every replica
//! follows the notices ([`run`]): at start-up it applies every notice still kept (a replica that was down during
//! an erasure catches up before its journal is replayed into a shared store again), then every
//! `privacy.notice_interval_seconds` the new ones. Applying is idempotent (erasing what is gone succeeds), so a
//! notice applied twice — by the replica that served it, or after a restart — does no harm.
//!
//! A notice is kept as long as any replica may still hold what it names: the longer of `history.retention_days`
//! (the journal drops older entries) and `capture.retention_days`; then it is pruned (counted in
//! `saring_retention_pruned_total{kind="erasure_notices"}`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::cases::privacy::ErasureNotice;
use crate::privacy::NamedKeys;
use crate::store::{Erased, HistoryStore};

/// A notice committed this long after the time it carries is still found: the reads overlap by as much.
const COMMIT_LAG_MS: i64 = 10 * 60 * 1000;

/// What one replica has applied: the notices it read, so an overlapping read does not apply them again.
#[derive(Debug, Default)]
pub struct Follower {
    /// Notice ids applied, with when they were issued; forgotten once no read can return them again.
    applied: HashMap<String, i64>,
    /// The latest time among the notices applied; `None` before the first read (which reads every notice kept).
    latest_ms: Option<i64>,
}

/// What one round of following did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Followed {
    /// Notices applied in this round.
    pub notices: usize,
    /// What they removed here.
    pub erased: Erased,
}

impl Follower {
    /// A follower that has applied nothing: its first round applies every notice kept.
    pub fn new() -> Self {
        Follower::default()
    }

    /// Reads the notices issued since the last round and applies the new ones to `app`'s screener; on an error
    /// nothing is marked applied (the next round tries again).
    pub async fn follow<S: HistoryStore>(&mut self, app: &App<S>) -> crate::error::Result<Followed> {
        let after = self.latest_ms.map_or(i64::MIN, |latest| latest.saturating_sub(COMMIT_LAG_MS));
        let notices = app.escalator.store().erasure_notices(after).await?;
        let fresh: Vec<&ErasureNotice> =
            notices.iter().filter(|notice| !self.applied.contains_key(&notice.notice_id)).collect();
        if fresh.is_empty() {
            return Ok(Followed::default());
        }
        let digests = fresh.iter().filter_map(|notice| {
            let mut digest = [0u8; 32];
            let decoded = hex::decode_to_slice(&notice.digest, &mut digest);
            if decoded.is_err() {
                // Written by saring as hex: anything else was written by someone else and names no history.
                tracing::warn!(notice_id = %notice.notice_id, "an erasure notice's digest is not hex; ignored");
            }
            decoded.ok().map(|()| digest)
        });
        let named = NamedKeys::new(app.screener.hasher().clone(), digests);
        let erased = app
            .screener
            .forget_named(named)
            .await
            .map_err(|error| crate::error::Error::StoreUnavailable(format!("applying erasure notices: {error}")))?;
        // One entry per notice (a notice has a row per history key).
        let notices: BTreeMap<&str, i64> =
            fresh.iter().map(|notice| (notice.notice_id.as_str(), notice.issued_ms)).collect();
        for (id, issued_ms) in &notices {
            self.applied.insert((*id).to_owned(), *issued_ms);
            self.latest_ms = Some(self.latest_ms.map_or(*issued_ms, |latest| latest.max(*issued_ms)));
        }
        if let Some(latest) = self.latest_ms {
            self.applied.retain(|_, issued_ms| *issued_ms > latest.saturating_sub(2 * COMMIT_LAG_MS));
        }
        tracing::info!(
            notices = notices.len(),
            histories = erased.histories,
            journal = erased.journal_entries,
            capture = erased.capture_records,
            "erasure notices applied"
        );
        app.screener.metrics().observe_notices(notices.len() as u64, 0);
        Ok(Followed { notices: notices.len(), erased })
    }
}

/// How long notices are kept: as long as a replica configured with `settings` may hold what one names.
pub fn kept_for(settings: &crate::config::Settings) -> Duration {
    let days = settings.history.retention_days.max(settings.capture.retention_days);
    Duration::from_secs(days * 86_400)
}

/// Follows the notices every `interval` (the first round at once), and prunes those older than `keep` once an
/// hour, until the task is dropped; a failed round is logged and tried again.
pub async fn run<S: HistoryStore>(app: Arc<App<S>>, interval: Duration, keep: Duration) {
    let mut follower = Follower::new();
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        if app.escalator.store().is_open() {
            if let Err(error) = follower.follow(&app).await {
                tracing::warn!(%error, "following erasure notices failed; trying again");
            }
            if last_prune.is_none_or(|at| at.elapsed() >= Duration::from_secs(3600)) {
                let before = crate::grpc::now_ms() - i64::try_from(keep.as_millis()).unwrap_or(i64::MAX / 2);
                match app.escalator.store().prune_erasure_notices(before).await {
                    Ok(pruned) => {
                        app.screener.metrics().observe_notices(0, pruned);
                        last_prune = Some(tokio::time::Instant::now());
                    }
                    Err(error) => tracing::warn!(%error, "pruning erasure notices failed; trying again"),
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}
