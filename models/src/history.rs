//! The caller history aggregate: exponentially decayed counters, O(1) space per caller (or device).
//!
//! Counters are stored as of `as_of_ms`; decay is applied lazily when the history is read or updated, so no
//! background job is needed. An event at time `t` adds `2^(-(as_of - t) / half_life)` when it is older than the
//! stored state and moves the state forward when it is newer, so the result does not depend on the order in
//! which events arrive (up to floating-point rounding).

use serde::{Deserialize, Serialize};

use crate::domain::Disposition;

/// The half-lives of the decayed counters, in seconds: one hour, one day, thirty days.
pub const HALF_LIVES_S: [f64; 3] = [3_600.0, 86_400.0, 30.0 * 86_400.0];
/// How many half-lives each counter is kept at.
pub const HALF_LIFE_COUNT: usize = HALF_LIVES_S.len();
/// Index into [`HALF_LIVES_S`] of the one-hour half-life.
pub const HOUR: usize = 0;
/// Index into [`HALF_LIVES_S`] of the one-day half-life.
pub const DAY: usize = 1;
/// Index into [`HALF_LIVES_S`] of the thirty-day half-life.
pub const MONTH: usize = 2;

/// What the history counts. The first four are per contact; then one counter per [`Disposition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Every contact.
    Contacts,
    /// Contacts an operator answered.
    Answered,
    /// Contacts with less than [`SHORT_TALK_S`] seconds of talk (including unanswered ones).
    Short,
    /// Contacts at local night-time (22:00–05:59).
    Night,
    /// Contacts with this disposition.
    Disposition(Disposition),
}

/// Talk shorter than this many seconds makes a contact "short".
pub const SHORT_TALK_S: f64 = 10.0;
/// The number of counters per half-life.
pub const COUNTER_COUNT: usize = 4 + Disposition::ALL.len();
/// How many recent contact ids a history remembers to ignore repeats on its own.
pub const RECENT_CONTACT_IDS: usize = 8;

impl Counter {
    /// The counter's position: 0 for [`Counter::Contacts`], then the stored rows in order ([`Counter::row`]).
    pub fn index(self) -> usize {
        match self {
            Counter::Contacts => 0,
            Counter::Answered => 1,
            Counter::Short => 2,
            Counter::Night => 3,
            Counter::Disposition(disposition) => 4 + disposition.index(),
        }
    }
}

/// One finished contact as the history sees it: when it arrived and how it ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistoryEvent {
    /// A fingerprint of the contact id ([`contact_fingerprint`]), so a repeat counts once.
    pub contact_fingerprint: u64,
    /// When the contact arrived, in Unix milliseconds.
    pub at_ms: i64,
    /// Whether an operator answered.
    pub answered: bool,
    /// Seconds of talk.
    pub talk_s: f64,
    /// Whether it arrived at local night-time.
    pub night: bool,
    /// The operator's disposition.
    pub disposition: Disposition,
}

impl HistoryEvent {
    /// Which counters the event increments.
    pub fn counters(&self) -> impl Iterator<Item = Counter> {
        [
            Some(Counter::Contacts),
            self.answered.then_some(Counter::Answered),
            (self.talk_s < SHORT_TALK_S).then_some(Counter::Short),
            self.night.then_some(Counter::Night),
            Some(Counter::Disposition(self.disposition)),
        ]
        .into_iter()
        .flatten()
    }
}

/// A stable 64-bit fingerprint (FNV-1a) of a contact id.
pub fn contact_fingerprint(contact_id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in contact_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The decay factor for `elapsed_ms` at one half-life: `2^(-elapsed / half_life)`, 1 for no or negative time.
///
/// Computed as `pow(2, x)`, exactly what Redis's Lua evaluates for `2 ^ x`, so the server-side scripts and this
/// aggregate round the same way (the property tests in `tests/it/redis_store.rs` compare them bit for bit).
pub fn decay_factor(elapsed_ms: i64, half_life_s: f64) -> f64 {
    if elapsed_ms <= 0 {
        return 1.0;
    }
    2f64.powf(-(elapsed_ms as f64 / 1000.0) / half_life_s)
}

/// Counters a history stores per half-life: every [`Counter`] but [`Counter::Contacts`], which is the sum of the
/// disposition counters (every contact has exactly one disposition) and is derived when read.
pub const STORED_COUNTER_COUNT: usize = COUNTER_COUNT - 1;

impl Counter {
    /// The counter's row in [`CallerHistory::counters`]; `None` for [`Counter::Contacts`], which is derived.
    pub fn row(self) -> Option<usize> {
        self.index().checked_sub(1)
    }
}

/// One caller's (or one device's) history.
///
/// Counters are kept as `f32` — a decayed count needs no more — and every update computes in `f64` and rounds
/// once to `f32` when it stores, the same arithmetic the Redis scripts do, so the packed record
/// ([`PackedHistory`]) holds a history exactly. The counters are decayed to `last_seen_ms`: the state only moves
/// forward when a later contact arrives, so no separate "as of" time is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallerHistory {
    /// Decayed counters as of `last_seen_ms`: `counters[Counter::row][half_life]`.
    pub counters: [[f32; HALF_LIFE_COUNT]; STORED_COUNTER_COUNT],
    /// The earliest contact recorded, in Unix milliseconds.
    pub first_seen_ms: i64,
    /// The latest contact recorded, in Unix milliseconds: the time the counters are decayed to.
    pub last_seen_ms: i64,
    /// All contacts ever recorded (not decayed; saturates at `u32::MAX`).
    pub total_contacts: u32,
    /// Fingerprints of the most recent contact ids, newest last, to ignore a repeated contact. Kept only in
    /// process (offline replay); the stores keep per-contact markers instead and do not pack these.
    pub recent_contacts: [u64; RECENT_CONTACT_IDS],
}

impl CallerHistory {
    /// A history holding exactly one event.
    pub fn from_event(event: &HistoryEvent) -> Self {
        let mut history = CallerHistory::empty(event.at_ms);
        history.apply(event);
        history
    }

    /// A history that has counted nothing, decayed to `at_ms`.
    fn empty(at_ms: i64) -> Self {
        CallerHistory {
            counters: [[0.0; HALF_LIFE_COUNT]; STORED_COUNTER_COUNT],
            first_seen_ms: at_ms,
            last_seen_ms: at_ms,
            total_contacts: 0,
            recent_contacts: [0; RECENT_CONTACT_IDS],
        }
    }

    /// The time the counters are decayed to (the latest contact).
    pub fn as_of_ms(&self) -> i64 {
        self.last_seen_ms
    }

    /// Whether the contact was among the recent ones already applied.
    pub fn has_seen(&self, contact_fingerprint: u64) -> bool {
        self.total_contacts > 0 && self.recent_contacts.contains(&contact_fingerprint)
    }

    /// Adds one contact. Returns false, changing nothing, when the same contact id was applied recently.
    ///
    /// A later contact first decays the stored counters to its time; then each of the contact's counters takes its
    /// weight (1, or its own decay for an earlier contact). Each step computes in `f64` and rounds to `f32` as it
    /// stores, exactly as the Redis script does, so contacts at the same time commute bit for bit.
    pub fn apply(&mut self, event: &HistoryEvent) -> bool {
        if self.has_seen(event.contact_fingerprint) {
            return false;
        }
        if event.at_ms > self.last_seen_ms {
            self.decay_to(event.at_ms);
        }
        let elapsed_ms = self.last_seen_ms - event.at_ms;
        for (half_life_index, half_life_s) in HALF_LIVES_S.iter().enumerate() {
            let weight = decay_factor(elapsed_ms, *half_life_s);
            for row in event.counters().filter_map(Counter::row) {
                let value = &mut self.counters[row][half_life_index];
                *value = (f64::from(*value) + weight) as f32;
            }
        }
        if self.total_contacts == 0 {
            self.first_seen_ms = event.at_ms;
            self.last_seen_ms = event.at_ms;
        } else {
            self.first_seen_ms = self.first_seen_ms.min(event.at_ms);
            self.last_seen_ms = self.last_seen_ms.max(event.at_ms);
        }
        self.total_contacts = self.total_contacts.saturating_add(1);
        self.recent_contacts.rotate_left(1);
        self.recent_contacts[RECENT_CONTACT_IDS - 1] = event.contact_fingerprint;
        true
    }

    /// Moves the stored counters forward to `at_ms` (no-op for an earlier time), rounding each to `f32`, and makes
    /// it the latest contact's time.
    fn decay_to(&mut self, at_ms: i64) {
        if at_ms <= self.last_seen_ms {
            return;
        }
        let elapsed_ms = at_ms - self.last_seen_ms;
        for (half_life_index, half_life_s) in HALF_LIVES_S.iter().enumerate() {
            let factor = decay_factor(elapsed_ms, *half_life_s);
            for row in self.counters.iter_mut() {
                row[half_life_index] = (f64::from(row[half_life_index]) * factor) as f32;
            }
        }
        self.last_seen_ms = at_ms;
    }

    /// Corrects the disposition of one contact already applied, which arrived at `at_ms`: its decayed weight as
    /// of the stored state is taken from `from`'s counters and added to `to`'s, so the history equals one that
    /// recorded `to` in the first place, whatever came before or after (decay is linear: an event's share of a
    /// counter is its own decayed weight). Nothing else changes — the contact is still counted once. A counter
    /// that would fall below zero can only be rounding dust (the contact's weight is part of it) and is clamped
    /// to 0. The store must know the contact was applied with `from` (its per-contact marker): correcting a
    /// contact this history never counted would subtract what is not there.
    pub fn correct(&mut self, at_ms: i64, from: Disposition, to: Disposition) {
        if from == to {
            return;
        }
        let elapsed_ms = self.last_seen_ms - at_ms;
        let (from, to) = (Counter::Disposition(from).index() - 1, Counter::Disposition(to).index() - 1);
        for (half_life_index, half_life_s) in HALF_LIVES_S.iter().enumerate() {
            let weight = decay_factor(elapsed_ms, *half_life_s);
            let removed = f64::from(self.counters[from][half_life_index]) - weight;
            self.counters[from][half_life_index] = if removed < 0.0 { 0.0 } else { removed as f32 };
            self.counters[to][half_life_index] = (f64::from(self.counters[to][half_life_index]) + weight) as f32;
        }
    }

    /// Adds `other`'s contacts to this history: both decayed to the later contact and summed — decay is linear, so
    /// the sum equals one history that recorded both sets of contacts — first and last seen joined, totals added.
    /// A caller's history kept under two keys while the hashing secret rotates is read this way. The recent
    /// contact fingerprints stay this history's (the one written to).
    pub fn merge(&mut self, other: &CallerHistory) {
        if other.total_contacts == 0 {
            return;
        }
        if self.total_contacts == 0 {
            let recent = self.recent_contacts;
            *self = other.clone();
            self.recent_contacts = recent;
            return;
        }
        let at_ms = self.last_seen_ms.max(other.last_seen_ms);
        for (half_life_index, half_life_s) in HALF_LIVES_S.iter().enumerate() {
            let mine = decay_factor(at_ms - self.last_seen_ms, *half_life_s);
            let theirs = decay_factor(at_ms - other.last_seen_ms, *half_life_s);
            for (row, other_row) in self.counters.iter_mut().zip(&other.counters) {
                let sum = f64::from(row[half_life_index]) * mine + f64::from(other_row[half_life_index]) * theirs;
                row[half_life_index] = sum as f32;
            }
        }
        self.first_seen_ms = self.first_seen_ms.min(other.first_seen_ms);
        self.last_seen_ms = at_ms;
        self.total_contacts = self.total_contacts.saturating_add(other.total_contacts);
    }

    /// A counter's stored value (as of `last_seen_ms`); [`Counter::Contacts`] is the sum of the dispositions'.
    pub fn stored(&self, counter: Counter, half_life_index: usize) -> f64 {
        match counter.row() {
            Some(row) => f64::from(self.counters[row][half_life_index]),
            None => Disposition::ALL
                .iter()
                .map(|disposition| f64::from(self.counters[disposition.index() + 3][half_life_index]))
                .sum(),
        }
    }

    /// A counter's value as seen at `now_ms`. A history newer than `now_ms` is read as it is.
    ///
    /// Reading decays with `exp2`, about twice as fast as `pow` on the scoring path; nothing read is stored, so the
    /// Redis scripts need not match it (training and serving both read through here).
    pub fn value_at(&self, counter: Counter, half_life_index: usize, now_ms: i64) -> f64 {
        let elapsed_ms = now_ms - self.last_seen_ms;
        let factor =
            if elapsed_ms <= 0 { 1.0 } else { (-(elapsed_ms as f64 / 1000.0) / HALF_LIVES_S[half_life_index]).exp2() };
        self.stored(counter, half_life_index) * factor
    }

    /// Whole seconds from the latest contact to `now_ms` (0 when the latest contact is later).
    pub fn seconds_since_last(&self, now_ms: i64) -> f64 {
        ((now_ms - self.last_seen_ms).max(0) / 1000) as f64
    }
}

/// Bytes of a [`PackedHistory`].
pub const PACKED_BYTES: usize = STORED_COUNTER_COUNT * HALF_LIFE_COUNT * 4 + 8 + 8 + 4;

/// A history as the stores keep it, 152 bytes, little-endian: the 33 counters as `f32` (row by row, each row's
/// half-lives in order), last seen and first seen as `i64` Unix milliseconds, the total as `u32`. The Redis
/// scripts read and write the same bytes (`struct` format `'<' .. 33 × 'f' .. 'i8i8I4'`). Recent contact
/// fingerprints are not packed: the stores keep per-contact markers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PackedHistory(pub [u8; PACKED_BYTES]);

impl std::fmt::Debug for PackedHistory {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.unpack().fmt(formatter)
    }
}

/// Where the times and the total start in a [`PackedHistory`].
const PACKED_TIMES: usize = STORED_COUNTER_COUNT * HALF_LIFE_COUNT * 4;

impl PackedHistory {
    /// The packed form of `history` (exact: its counters are `f32` already).
    pub fn pack(history: &CallerHistory) -> Self {
        let mut bytes = [0u8; PACKED_BYTES];
        let values = history.counters.iter().flatten();
        for (chunk, value) in bytes[..PACKED_TIMES].chunks_exact_mut(4).zip(values) {
            chunk.copy_from_slice(&value.to_le_bytes());
        }
        bytes[PACKED_TIMES..PACKED_TIMES + 8].copy_from_slice(&history.last_seen_ms.to_le_bytes());
        bytes[PACKED_TIMES + 8..PACKED_TIMES + 16].copy_from_slice(&history.first_seen_ms.to_le_bytes());
        bytes[PACKED_TIMES + 16..].copy_from_slice(&history.total_contacts.to_le_bytes());
        PackedHistory(bytes)
    }

    /// The packed bytes read back; `None` unless exactly [`PACKED_BYTES`] long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        Some(PackedHistory(bytes.try_into().ok()?))
    }

    /// The history (no recent contact fingerprints).
    pub fn unpack(&self) -> CallerHistory {
        let bytes = &self.0;
        let mut history = CallerHistory::empty(self.last_seen_ms());
        let mut values = bytes[..PACKED_TIMES]
            .chunks_exact(4)
            .map(|chunk| f32::from_le_bytes(chunk.try_into().expect("chunks of 4")));
        for value in history.counters.iter_mut().flatten() {
            *value = values.next().expect("33 counters");
        }
        history.first_seen_ms = i64::from_le_bytes(bytes[PACKED_TIMES + 8..PACKED_TIMES + 16].try_into().expect("8"));
        history.total_contacts = u32::from_le_bytes(bytes[PACKED_TIMES + 16..].try_into().expect("4"));
        history
    }

    /// The latest contact, Unix ms (what retention keeps a history by).
    pub fn last_seen_ms(&self) -> i64 {
        i64::from_le_bytes(self.0[PACKED_TIMES..PACKED_TIMES + 8].try_into().expect("8"))
    }
}

#[cfg(test)]
mod tests;
