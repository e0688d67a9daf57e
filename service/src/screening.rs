//! The screening core, free of any transport: score a contact, record an outcome, read a caller's profile.
//! The gRPC handlers (and later the console) validate their input into these types and call these functions.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

use saring_models::features::{extract, ContactContext};
use saring_models::history::{contact_fingerprint, Counter, DAY, MONTH};
use saring_models::naive::recent_misuse_share;
use saring_models::reason_text::{fact, is_material, is_routine, sentence_in, Fact, Language};
use saring_models::reasons::{operator_reasons, strongest, REASONS};
use saring_models::{Band, CallerHistory, Channel, Disposition, FeatureVector, Model, Score};

use crate::capture::Capture;
use crate::error::{Error, Result, Violation};
use crate::metrics::Metrics;
use crate::modelops::quality::{ModelScore, ScoreMemo};
use crate::modelops::ModelRegistry;
use crate::privacy::{HistoryKey, KeyHasher};
use crate::recent::{RecentContacts, Scored};
use crate::store::{Histories, HistoryStore, Recorded, StoreError};
use crate::traffic::TrafficStats;
use tokio::sync::broadcast;

/// The wall clock, Unix ms (live-quality windows end now).
fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// How many reasons a score carries.
pub const REASONS_PER_SCORE: usize = 5;

/// A location reported with a contact.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Location {
    /// Latitude, -90..90.
    pub lat: f64,
    /// Longitude, -180..180.
    pub lon: f64,
    /// Accuracy radius in metres.
    pub accuracy_m: f64,
}

/// A validated contact.
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    /// The routing engine's contact id.
    pub contact_id: String,
    /// The number in E.164, absent when withheld.
    pub caller: Option<String>,
    /// The channel.
    pub channel: Channel,
    /// Arrival time, Unix milliseconds.
    pub received_at_ms: i64,
    /// Region code.
    pub region: String,
    /// The region's offset from UTC in seconds (from its province).
    pub utc_offset_s: i64,
    /// Whether the handset has a SIM card.
    pub sim_present: bool,
    /// Device id.
    pub device_id: Option<String>,
    /// Location.
    pub location: Option<Location>,
}

impl Contact {
    /// The feature context of this contact.
    pub fn context(&self) -> ContactContext {
        ContactContext {
            received_at_ms: self.received_at_ms,
            channel: self.channel,
            utc_offset_s: self.utc_offset_s,
            withheld: self.caller.is_none(),
            sim_present: self.sim_present,
            has_device: self.device_id.is_some(),
            location_accuracy_m: self.location.map(|location| location.accuracy_m),
        }
    }
}

/// A validated outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeReport {
    /// The contact id.
    pub contact_id: String,
    /// The contact, when the request carried it.
    pub contact: Option<Contact>,
    /// Whether an operator answered.
    pub answered: bool,
    /// Seconds ringing.
    pub ring_s: f64,
    /// Seconds of talk.
    pub talk_s: f64,
    /// The operator's disposition.
    pub disposition: Disposition,
    /// Incident category.
    pub category: Option<String>,
    /// Operator id.
    pub operator_id: Option<String>,
}

/// One reason in an assessment: its code and what it states as data. Its words are made where they are read
/// (`ReasonOut::sentence`, in the reader's language), so scoring allocates no sentence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReasonOut {
    /// Index into `saring_models::reasons::REASONS`.
    pub reason: usize,
    /// Reason code.
    pub code: &'static str,
    /// What the reason states (form and number).
    pub fact: Fact,
    /// Contribution to the raw score.
    pub contribution: f64,
    /// Whether it moved the score materially (`saring_models::reason_text::is_material`).
    pub material: bool,
    /// Whether it is routine for an operator (`saring_models::reason_text::is_routine`).
    pub routine: bool,
}

impl ReasonOut {
    /// The reason's sentence in `language`.
    pub fn sentence(&self, language: Language) -> String {
        sentence_in(language, self.reason, self.fact)
    }

    /// Whether an operator's screen shows it: material and not routine.
    pub fn worth_showing(&self) -> bool {
        self.material && !self.routine
    }
}

/// A history summary (decayed counts).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    /// Contacts, one-day half-life.
    pub contacts_day: f64,
    /// Misuse, one-day half-life.
    pub misuse_day: f64,
    /// Contacts, 30-day half-life.
    pub contacts_month: f64,
    /// Misuse, 30-day half-life.
    pub misuse_month: f64,
    /// All contacts ever.
    pub total_contacts: u64,
    /// First contact, Unix ms (None if never seen).
    pub first_seen_ms: Option<i64>,
    /// Latest contact, Unix ms.
    pub last_seen_ms: Option<i64>,
}

impl Summary {
    /// The summary of a history as seen at `now_ms` (all zero without history).
    pub fn of(history: Option<&CallerHistory>, now_ms: i64) -> Self {
        let Some(history) = history else { return Summary::default() };
        let misuse = |half_life| {
            history.value_at(Counter::Disposition(Disposition::Prank), half_life, now_ms)
                + history.value_at(Counter::Disposition(Disposition::Abusive), half_life, now_ms)
        };
        Summary {
            contacts_day: history.value_at(Counter::Contacts, DAY, now_ms),
            misuse_day: misuse(DAY),
            contacts_month: history.value_at(Counter::Contacts, MONTH, now_ms),
            misuse_month: misuse(MONTH),
            total_contacts: u64::from(history.total_contacts),
            first_seen_ms: Some(history.first_seen_ms),
            last_seen_ms: Some(history.last_seen_ms),
        }
    }
}

/// The answer to "score this contact".
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// Calibrated misuse likelihood.
    pub likelihood: f64,
    /// Band; `None` only when the model failed (then `degraded_reasons` says `model_failure`).
    pub band: Option<Band>,
    /// Strongest reasons first.
    pub reasons: Vec<ReasonOut>,
    /// Model version.
    pub model_version: Arc<str>,
    /// Why the answer is degraded (empty when it is not).
    pub degraded_reasons: Vec<&'static str>,
    /// The number's history, unless withheld.
    pub caller_history: Option<Summary>,
    /// The device's history, when a device id was given.
    pub device_history: Option<Summary>,
}

/// Score and operator reasons for one contact's features: the pure part of ScoreContact.
fn score_with_reasons(model: &Model, features: &FeatureVector) -> (Score, Vec<ReasonOut>) {
    let score = model.score(features);
    let sums = operator_reasons(&score.contributions, features);
    let total_abs: f64 = sums.iter().map(|sum| sum.abs()).sum();
    let reasons = strongest::<REASONS_PER_SCORE>(&sums)
        .into_iter()
        .flatten()
        .map(|index| {
            let fact = fact(index, features);
            ReasonOut {
                reason: index,
                code: REASONS[index].code,
                fact,
                contribution: sums[index],
                material: is_material(sums[index], total_abs),
                routine: is_routine(index, fact),
            }
        })
        .collect();
    (score, reasons)
}

/// One caller's profile.
#[derive(Debug, Clone, PartialEq)]
pub struct CallerProfile {
    /// E.164 number.
    pub caller: String,
    /// Whether any history exists.
    pub known: bool,
    /// Summary.
    pub summary: Summary,
    /// Decayed counts per disposition (30-day half-life).
    pub dispositions_month: Vec<(Disposition, f64)>,
}

/// A contact as it was scored: what live feeds (gRPC `WatchScores`, the console) show. Never the number.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredContact {
    /// The contact id.
    pub contact_id: String,
    /// Arrival, Unix ms.
    pub received_at_ms: i64,
    /// Region.
    pub region: String,
    /// The region's offset from UTC, seconds.
    pub utc_offset_s: i64,
    /// Channel.
    pub channel: Channel,
    /// Whether the number was withheld.
    pub withheld: bool,
    /// The answer given.
    pub assessment: Assessment,
}

/// What a live-feed consumer did with one scored contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Taken.
    Taken,
    /// The consumer is full: the contact is skipped (and counted for the next one).
    Full,
    /// The consumer is gone: stop.
    Gone,
}

/// Follows a live feed: every scored contact in `wanted` (a region, or a province ending in '.'; all when `None`)
/// goes to `deliver` with the number of contacts skipped just before it, until the feed closes, `deliver` says the
/// consumer is gone, or `gone` resolves. A consumer never holds the feed back: what it cannot take is skipped.
pub async fn follow_scores(
    mut scores: broadcast::Receiver<Arc<ScoredContact>>,
    wanted: Option<&str>,
    gone: impl std::future::Future<Output = ()>,
    mut deliver: impl FnMut(&Arc<ScoredContact>, u64) -> Delivery,
) {
    let mut skipped = 0;
    tokio::pin!(gone);
    loop {
        let received = tokio::select! {
            received = scores.recv() => received,
            () = &mut gone => return,
        };
        match received {
            Ok(scored) if region_matches(wanted, &scored.region) => match deliver(&scored, skipped) {
                Delivery::Taken => skipped = 0,
                Delivery::Full => skipped += 1,
                Delivery::Gone => return,
            },
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(missed)) => skipped += missed,
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Whether `region` is `wanted`, or in province `wanted` when it ends in '.'.
pub fn region_matches(wanted: Option<&str>, region: &str) -> bool {
    match wanted {
        None => true,
        Some(prefix) if prefix.ends_with('.') => region.starts_with(prefix),
        Some(exact) => region == exact,
    }
}

/// Scored contacts kept for a watcher that falls behind before it skips.
const SCORE_FEED_CAPACITY: usize = 4096;

/// The screening core shared by every transport.
pub struct Screener<S> {
    store: S,
    models: Arc<ModelRegistry>,
    scores: broadcast::Sender<Arc<ScoredContact>>,
    traffic: TrafficStats,
    /// Bounds the region codes per-region statistics keep apart.
    regions: crate::regions::RegionLabels,
    hasher: KeyHasher,
    recent: RecentContacts,
    history_budget: Duration,
    degraded: DegradedCounts,
    metrics: Arc<Metrics>,
    capture: Capture,
}

/// Why answers were degraded, counted since start-up (exported as metrics by the metrics endpoint). Also keeps
/// the log readable during an outage: at most one warning a second, with the count since the last one.
#[derive(Debug, Default)]
pub struct DegradedCounts {
    /// Unix seconds of the last warning logged.
    last_logged_s: AtomicU64,
    /// Degraded answers since the last warning logged.
    unlogged: AtomicU64,
    /// History store failed.
    pub history_unavailable: AtomicU64,
    /// History not read within the budget.
    pub history_timeout: AtomicU64,
    /// History not read within the budget (or the store failed): answered from the history this replica last read
    /// or wrote.
    pub history_stale: AtomicU64,
    /// The model failed.
    pub model_failure: AtomicU64,
    /// The routing role was over its limits: answered without reading history.
    pub overload: AtomicU64,
}

impl DegradedCounts {
    fn count(&self, reason: &'static str) -> &'static str {
        let counter = match reason {
            "history_unavailable" => &self.history_unavailable,
            "history_timeout" => &self.history_timeout,
            "history_stale" => &self.history_stale,
            "overload" => &self.overload,
            _ => &self.model_failure,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        reason
    }

    /// Logs a degraded answer unless one was logged this second; the next log line says how many were skipped.
    fn warn(&self, reason: &'static str, detail: &dyn std::fmt::Display) {
        let now_s =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs());
        let last_s = self.last_logged_s.load(Ordering::Relaxed);
        if now_s > last_s
            && self.last_logged_s.compare_exchange(last_s, now_s, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            let also = self.unlogged.swap(0, Ordering::Relaxed);
            tracing::warn!(reason, %detail, degraded_since_last_warning = also, "answering degraded");
        } else {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<S: HistoryStore> Screener<S> {
    /// A screener over `store` with `model` (fixed: no file behind it, no challenger).
    pub fn new(store: S, model: Model, hasher: KeyHasher, recent_capacity: usize, history_budget: Duration) -> Self {
        Self::with_models(store, Arc::new(ModelRegistry::fixed(model)), hasher, recent_capacity, history_budget)
    }

    /// A screener over `store` scoring with the registry's champion (hot-reloadable, with a shadow challenger).
    pub fn with_models(
        store: S,
        models: Arc<ModelRegistry>,
        hasher: KeyHasher,
        recent_capacity: usize,
        history_budget: Duration,
    ) -> Self {
        Screener {
            store,
            models,
            scores: broadcast::channel(SCORE_FEED_CAPACITY).0,
            traffic: TrafficStats::default(),
            regions: crate::regions::RegionLabels::default(),
            hasher,
            recent: RecentContacts::new(recent_capacity),
            degraded: DegradedCounts::default(),
            metrics: Arc::new(Metrics::new()),
            history_budget,
            capture: Capture::disabled(),
        }
    }

    /// This screener capturing every scored contact and recorded outcome into `capture` ([`crate::capture`]).
    pub fn with_capture(mut self, capture: Capture) -> Self {
        self.capture = capture;
        self
    }

    /// The service's metrics (recorded here and by the gRPC layer; rendered by the admin port).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Degraded answers by reason since start-up.
    pub fn degraded_counts(&self) -> &DegradedCounts {
        &self.degraded
    }

    /// The version of the champion serving now.
    pub fn model_version(&self) -> Arc<str> {
        Arc::clone(&self.models.champion().version)
    }

    /// The serving models.
    pub fn models(&self) -> &Arc<ModelRegistry> {
        &self.models
    }

    /// Every contact scored from now on, as it is scored. A receiver that falls more than a few thousand
    /// contacts behind is told how many it skipped.
    pub fn watch_scores(&self) -> broadcast::Receiver<Arc<ScoredContact>> {
        self.scores.subscribe()
    }

    /// Contacts per hour, region and band, and the share answered.
    pub fn traffic(&self) -> &TrafficStats {
        &self.traffic
    }

    /// The contact with this id, if this replica scored it recently.
    pub fn recent_contact(&self, contact_id: &str) -> Option<Contact> {
        self.recent.get(contact_id).map(|scored| scored.contact)
    }

    /// The keyed hash of a normalised number.
    pub fn number_key(&self, e164: &str) -> HistoryKey {
        self.hasher.number(e164)
    }

    /// Erases the histories of a number and a device (either may be absent) from the store, its journal, this
    /// replica's caches and its capture files, and forgets the contacts from either that this replica scored recently.
    pub async fn erase(
        &self,
        e164: Option<&str>,
        device_id: Option<&str>,
    ) -> Result<crate::store::Erased, crate::store::StoreError> {
        let caller = e164.map(|number| self.hasher.number(number));
        let device = device_id.map(|device| self.hasher.device(device));
        self.recent.forget_caller(e164, device_id);
        let mut erased = self.store.erase(caller.as_ref(), device.as_ref()).await?;
        // While the hashing secret rotates, the number's and device's histories under the earlier secrets too.
        let (earlier_callers, earlier_devices) = self.previous_keys(e164, device_id);
        for generation in 0..earlier_callers.len().max(earlier_devices.len()) {
            let earlier = self.store.erase(earlier_callers.get(generation), earlier_devices.get(generation)).await?;
            erased.histories += earlier.histories;
            erased.journal_entries += earlier.journal_entries;
        }
        let keys: Vec<HistoryKey> =
            [caller, device].into_iter().flatten().chain(earlier_callers).chain(earlier_devices).collect();
        erased.capture_records = self
            .capture
            .erase(&keys)
            .await
            .map_err(|error| crate::store::StoreError(format!("capture files: {error}")))?;
        // A score in flight during the erasure may have remembered a contact again.
        self.recent.forget_caller(e164, device_id);
        Ok(erased)
    }

    /// Applies erasure notices (`crate::notices`): erases the histories whose keys `named` names from what this
    /// replica alone holds — its journal and caches, an in-memory store, its capture files — and forgets the
    /// contacts from them that it scored recently.
    pub async fn forget_named(
        &self,
        named: crate::privacy::NamedKeys,
    ) -> Result<crate::store::Erased, crate::store::StoreError> {
        if named.is_empty() {
            return Ok(crate::store::Erased::default());
        }
        let recent = |named: &crate::privacy::NamedKeys| {
            self.recent.forget_named(|number, device_id| {
                number.is_some_and(|number| named.names(&self.hasher.number(number)))
                    || device_id.is_some_and(|device_id| named.names(&self.hasher.device(device_id)))
            })
        };
        recent(&named);
        let mut erased = self.store.forget_named(&named).await?;
        erased.capture_records = self
            .capture
            .forget_named(named.clone())
            .await
            .map_err(|error| crate::store::StoreError(format!("capture files: {error}")))?;
        // A score in flight meanwhile may have remembered a contact again.
        recent(&named);
        Ok(erased)
    }

    /// The hasher of numbers and device ids (with the earlier secrets while a rotation is under way).
    pub fn hasher(&self) -> &crate::privacy::KeyHasher {
        &self.hasher
    }

    /// The keys of a normalised number and a device id under the earlier hashing secrets, newest first, while a
    /// rotation is under way (both empty otherwise).
    pub fn previous_keys(&self, e164: Option<&str>, device_id: Option<&str>) -> (Vec<HistoryKey>, Vec<HistoryKey>) {
        (
            e164.map(|number| self.hasher.previous_numbers(number)).unwrap_or_default(),
            device_id.map(|device| self.hasher.previous_devices(device)).unwrap_or_default(),
        )
    }

    /// The history store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The keyed hashes of a contact's number and device (the keys of its histories).
    pub fn history_keys(&self, contact: &Contact) -> (Option<HistoryKey>, Option<HistoryKey>) {
        self.keys(contact)
    }

    fn keys(&self, contact: &Contact) -> (Option<HistoryKey>, Option<HistoryKey>) {
        (
            contact.caller.as_deref().map(|number| self.hasher.number(number)),
            contact.device_id.as_deref().map(|device| self.hasher.device(device)),
        )
    }

    /// The histories of a contact's number and device: under their current keys and, while the hashing secret
    /// rotates, also under every earlier secret's keys — read concurrently with the current ones (one round trip
    /// for one earlier secret) and added up ([`saring_models::CallerHistory::merge`]: exact, decay is linear).
    async fn load_histories(
        &self,
        (number, device_id): (Option<&str>, Option<&str>),
        caller_key: Option<&HistoryKey>,
        device_key: Option<&HistoryKey>,
    ) -> Result<Histories, StoreError> {
        if !self.hasher.rotating() {
            return self.store.load(caller_key, device_key).await;
        }
        let callers = number.map(|number| self.hasher.previous_numbers(number)).unwrap_or_default();
        let devices = device_id.map(|device| self.hasher.previous_devices(device)).unwrap_or_default();
        let earlier = async {
            let mut earlier = Vec::new();
            for generation in 0..callers.len().max(devices.len()) {
                earlier.push(self.store.load(callers.get(generation), devices.get(generation)).await?);
            }
            Ok::<_, StoreError>(earlier)
        };
        let (current, earlier) = tokio::join!(self.store.load(caller_key, device_key), earlier);
        let mut histories = current?;
        for old in earlier? {
            histories.caller = merged(histories.caller, old.caller);
            histories.device = merged(histories.device, old.device);
        }
        Ok(histories)
    }

    /// Whether an outcome's contact was counted under an earlier secret's key of its number or device (while the
    /// secret rotates): then it is a duplicate, whichever replica counted it. A failed check counts as not counted.
    async fn counted_before_rotation(&self, contact: &Contact, fingerprint: u64) -> bool {
        if !self.hasher.rotating() {
            return false;
        }
        let callers = contact.caller.as_deref().map(|number| self.hasher.previous_numbers(number)).unwrap_or_default();
        let devices =
            contact.device_id.as_deref().map(|device| self.hasher.previous_devices(device)).unwrap_or_default();
        for generation in 0..callers.len().max(devices.len()) {
            // Bounded like a read: a store that does not answer must not hold the outcome up (it is journaled).
            let budget = self.history_budget.max(Duration::from_millis(50));
            let check = self.store.counted(fingerprint, callers.get(generation), devices.get(generation));
            match tokio::time::timeout(budget, check).await {
                Ok(Ok(true)) => return true,
                Ok(Ok(false)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "rotation: cannot check an earlier key's marker; recording the outcome")
                }
                Err(_) => tracing::warn!("rotation: an earlier key's marker check timed out; recording the outcome"),
            }
        }
        false
    }

    /// Scores a contact. Never fails: when history cannot be read within the budget, the score rests on the
    /// contact's own features and is marked degraded.
    pub async fn score(&self, contact: Contact) -> Assessment {
        let (caller_key, device_key) = self.keys(&contact);
        let mut degraded_reasons = Vec::new();
        let started = Instant::now();
        let loaded = tokio::time::timeout(
            self.history_budget,
            self.load_histories(
                (contact.caller.as_deref(), contact.device_id.as_deref()),
                caller_key.as_ref(),
                device_key.as_ref(),
            ),
        )
        .instrument(tracing::debug_span!("history.load", contact_id = %contact.contact_id))
        .await;
        let outcome = match &loaded {
            Ok(Ok(_)) => "ok",
            Ok(Err(_)) => "error",
            Err(_) => "timeout",
        };
        self.metrics.observe_store("load", outcome, started.elapsed());
        // A read that missed its budget or failed answers from the history last seen here, if any (stale).
        let stale = if outcome == "ok" { None } else { self.store.cached(caller_key.as_ref(), device_key.as_ref()) };
        let histories = match (loaded, stale) {
            (Ok(Ok(histories)), _) => histories,
            (_, Some(histories)) => {
                self.degraded.warn("history_stale", &"history late or failed: answered from the near-cache");
                degraded_reasons.push(self.degraded.count("history_stale"));
                histories
            }
            (Ok(Err(error)), None) => {
                self.degraded.warn("history_unavailable", &error);
                degraded_reasons.push(self.degraded.count("history_unavailable"));
                Histories::default()
            }
            (Err(_), None) => {
                let budget = format!("no history within {} ms", self.history_budget.as_millis());
                self.degraded.warn("history_timeout", &budget);
                degraded_reasons.push(self.degraded.count("history_timeout"));
                Histories::default()
            }
        };
        self.assess(contact, (caller_key.as_ref(), device_key.as_ref()), &histories, degraded_reasons)
    }

    /// Scores a contact on its own features, without reading history: the routing engine is over its limits and
    /// a score must not wait (`degraded_reasons = ["overload"]`).
    pub fn score_overloaded(&self, contact: Contact) -> Assessment {
        self.degraded.warn("overload", &"the routing role is over its limits: scores skip history");
        let degraded_reasons = vec![self.degraded.count("overload")];
        // The keys are only needed for the capture's references; hashing is skipped when nothing captures.
        let (caller_key, device_key) = if self.capture.enabled() { self.keys(&contact) } else { (None, None) };
        self.assess(contact, (caller_key.as_ref(), device_key.as_ref()), &Histories::default(), degraded_reasons)
    }

    /// Scores `contact` with `histories` (empty when unread, which `degraded_reasons` then says), publishes and
    /// remembers it.
    fn assess(
        &self,
        contact: Contact,
        keys: (Option<&HistoryKey>, Option<&HistoryKey>),
        histories: &Histories,
        mut degraded_reasons: Vec<&'static str>,
    ) -> Assessment {
        let naive = recent_misuse_share(histories.caller.as_ref(), contact.received_at_ms);
        // The champion is loaded once for the call (a reload swaps it for later calls, never this one). It is
        // validated at load time and scoring is pure; should it fail all the same, the contact is still answered
        // — without a score, and saying so.
        let champion = self.models.champion_full();
        let mut scored_features = None;
        let scored = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let features = extract(&contact.context(), histories.caller.as_ref(), histories.device.as_ref());
            scored_features = Some(features);
            let (score, reasons) = score_with_reasons(&champion.model, &features);
            let challenger = self.models.observe(&champion, self.regions.label(&contact.region), &features, &score);
            (score.likelihood, score.band, reasons, challenger)
        }));
        let (likelihood, band, reasons, memo) = match scored {
            Ok((likelihood, band, reasons, challenger)) => {
                // What the champion, the challenger and the naive rule said, for live quality once labelled.
                let memo = ScoreMemo {
                    champion: ModelScore { version: Arc::clone(&champion.version), likelihood, band },
                    challenger,
                    naive,
                };
                (likelihood, Some(band), reasons, Some(memo))
            }
            Err(_) => {
                tracing::error!(contact_id = %contact.contact_id, "the model failed on a contact; answering without a score");
                degraded_reasons.push(self.degraded.count("model_failure"));
                (0.0, None, Vec::new(), None)
            }
        };
        let now_ms = contact.received_at_ms;
        let history_known = !degraded_reasons
            .iter()
            .any(|reason| (reason.starts_with("history") && *reason != "history_stale") || *reason == "overload");
        let assessment = Assessment {
            likelihood,
            band,
            reasons,
            model_version: Arc::clone(&champion.version),
            caller_history: (contact.caller.is_some() && history_known)
                .then(|| Summary::of(histories.caller.as_ref(), now_ms)),
            device_history: (contact.device_id.is_some() && history_known)
                .then(|| Summary::of(histories.device.as_ref(), now_ms)),
            degraded_reasons,
        };
        self.traffic.scored(contact.received_at_ms, self.regions.label(&contact.region), assessment.band);
        self.metrics.observe_score(assessment.band, &contact.region);
        for reason in &assessment.degraded_reasons {
            self.metrics.observe_degraded(reason);
        }
        if self.scores.receiver_count() > 0 {
            let _ = self.scores.send(Arc::new(ScoredContact {
                contact_id: contact.contact_id.clone(),
                received_at_ms: contact.received_at_ms,
                region: contact.region.clone(),
                utc_offset_s: contact.utc_offset_s,
                channel: contact.channel,
                withheld: contact.caller.is_none(),
                assessment: assessment.clone(),
            }));
        }
        self.capture.scored(keys, &contact, naive, scored_features, &assessment);
        // A contact scored without history (degraded) is not judged: its scores say nothing about the models.
        self.recent.remember(contact, memo.filter(|_| history_known));
        assessment
    }

    /// Records an outcome once per contact id. Fails (and acknowledges nothing) when the contact is unknown and
    /// not included, or when the store cannot take the write. Returns the contact and the likelihood this
    /// replica gave it with the model that gave it, if it scored it.
    pub async fn record_outcome(&self, report: &OutcomeReport) -> Result<(Recorded, Contact, Option<(f64, Arc<str>)>)> {
        let recent = self.recent.get(&report.contact_id);
        let likelihood = recent.as_ref().and_then(Scored::likelihood);
        let memo = recent.as_ref().and_then(|scored| scored.memo.clone());
        let contact = match (&report.contact, recent) {
            (Some(contact), _) => contact.clone(),
            (None, Some(scored)) => scored.contact,
            (None, None) => {
                return Err(Error::InvalidArgument(vec![Violation::new(
                    "contact",
                    "required: this contact_id was not scored by this replica recently, so the outcome must carry \
                     the contact",
                )]))
            }
        };
        let (caller_key, device_key) = self.keys(&contact);
        let event = contact.context().history_event(
            contact_fingerprint(&report.contact_id),
            report.answered,
            report.talk_s,
            report.disposition,
        );
        let started = Instant::now();
        let recorded = if self.counted_before_rotation(&contact, event.contact_fingerprint).await {
            Ok(Recorded::Duplicate)
        } else {
            self.store
                .record(&report.contact_id, caller_key.as_ref(), device_key.as_ref(), &event)
                .instrument(tracing::debug_span!("history.record", contact_id = %report.contact_id))
                .await
        };
        self.metrics.observe_store("record", if recorded.is_ok() { "ok" } else { "error" }, started.elapsed());
        let recorded = recorded.map_err(|error| Error::StoreUnavailable(error.to_string()))?;
        if recorded == Recorded::Applied {
            self.traffic.outcome(contact.received_at_ms, self.regions.label(&contact.region), report.answered);
            if let Some(memo) = memo.filter(|_| report.disposition.is_labelled()) {
                self.models.quality().record(
                    contact.received_at_ms,
                    self.regions.label(&contact.region),
                    report.disposition.is_misuse(),
                    &memo,
                    wall_clock_ms(),
                );
            }
            self.capture.outcome((caller_key, device_key), &contact, report);
        }
        tracing::debug!(contact_id = %report.contact_id, disposition = report.disposition.as_str(), ?recorded, "outcome");
        Ok((recorded, contact, likelihood))
    }

    /// The profile of a normalised number as seen at `now_ms`.
    pub async fn caller_profile(&self, e164: &str, now_ms: i64) -> Result<CallerProfile> {
        let key = self.hasher.number(e164);
        let histories = self
            .load_histories((Some(e164), None), Some(&key), None)
            .await
            .map_err(|error| Error::StoreUnavailable(error.to_string()))?;
        let history = histories.caller.as_ref();
        let dispositions_month = Disposition::ALL
            .iter()
            .map(|disposition| {
                (*disposition, history.map_or(0.0, |h| h.value_at(Counter::Disposition(*disposition), MONTH, now_ms)))
            })
            .collect();
        Ok(CallerProfile {
            caller: e164.to_owned(),
            known: history.is_some(),
            summary: Summary::of(history, now_ms),
            dispositions_month,
        })
    }
}

/// Two partial histories of one caller added up.
fn merged(current: Option<CallerHistory>, earlier: Option<CallerHistory>) -> Option<CallerHistory> {
    match (current, earlier) {
        (Some(mut current), Some(earlier)) => {
            current.merge(&earlier);
            Some(current)
        }
        (current, earlier) => current.or(earlier),
    }
}
