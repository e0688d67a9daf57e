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
    /// The counter's row in [`CallerHistory::counters`].
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
pub fn decay_factor(elapsed_ms: i64, half_life_s: f64) -> f64 {
    if elapsed_ms <= 0 {
        return 1.0;
    }
    (-(elapsed_ms as f64 / 1000.0) / half_life_s).exp2()
}

/// One caller's (or one device's) history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallerHistory {
    /// Decayed counters as of `as_of_ms`: `counters[counter][half_life]`.
    pub counters: [[f64; HALF_LIFE_COUNT]; COUNTER_COUNT],
    /// The time the counters are decayed to, in Unix milliseconds.
    pub as_of_ms: i64,
    /// The earliest contact recorded, in Unix milliseconds.
    pub first_seen_ms: i64,
    /// The latest contact recorded, in Unix milliseconds.
    pub last_seen_ms: i64,
    /// All contacts ever recorded (not decayed).
    pub total_contacts: u64,
    /// Fingerprints of the most recent contact ids, newest last, to ignore a repeated contact.
    pub recent_contacts: [u64; RECENT_CONTACT_IDS],
}

impl CallerHistory {
    /// A history holding exactly one event.
    pub fn from_event(event: &HistoryEvent) -> Self {
        let mut history = CallerHistory {
            counters: [[0.0; HALF_LIFE_COUNT]; COUNTER_COUNT],
            as_of_ms: event.at_ms,
            first_seen_ms: event.at_ms,
            last_seen_ms: event.at_ms,
            total_contacts: 0,
            recent_contacts: [0; RECENT_CONTACT_IDS],
        };
        history.apply(event);
        history
    }

    /// Whether the contact was among the recent ones already applied.
    pub fn has_seen(&self, contact_fingerprint: u64) -> bool {
        self.total_contacts > 0 && self.recent_contacts.contains(&contact_fingerprint)
    }

    /// Adds one contact. Returns false, changing nothing, when the same contact id was applied recently.
    pub fn apply(&mut self, event: &HistoryEvent) -> bool {
        if self.has_seen(event.contact_fingerprint) {
            return false;
        }
        if event.at_ms > self.as_of_ms {
            self.decay_to(event.at_ms);
        }
        let elapsed_ms = self.as_of_ms - event.at_ms;
        for (half_life_index, half_life_s) in HALF_LIVES_S.iter().enumerate() {
            let weight = decay_factor(elapsed_ms, *half_life_s);
            for counter in event.counters() {
                self.counters[counter.index()][half_life_index] += weight;
            }
        }
        if self.total_contacts == 0 {
            self.first_seen_ms = event.at_ms;
            self.last_seen_ms = event.at_ms;
        } else {
            self.first_seen_ms = self.first_seen_ms.min(event.at_ms);
            self.last_seen_ms = self.last_seen_ms.max(event.at_ms);
        }
        self.total_contacts += 1;
        self.recent_contacts.rotate_left(1);
        self.recent_contacts[RECENT_CONTACT_IDS - 1] = event.contact_fingerprint;
        true
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
        let elapsed_ms = self.as_of_ms - at_ms;
        let (from, to) = (Counter::Disposition(from).index(), Counter::Disposition(to).index());
        for (half_life_index, half_life_s) in HALF_LIVES_S.iter().enumerate() {
            let weight = decay_factor(elapsed_ms, *half_life_s);
            let removed = self.counters[from][half_life_index] - weight;
            self.counters[from][half_life_index] = if removed < 0.0 { 0.0 } else { removed };
            self.counters[to][half_life_index] += weight;
        }
    }

    /// Adds `other`'s contacts to this history: both decayed to the later as-of and summed — decay is linear, so
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
        let at_ms = self.as_of_ms.max(other.as_of_ms);
        self.decay_to(at_ms);
        let mut other = other.clone();
        other.decay_to(at_ms);
        for (row, other_row) in self.counters.iter_mut().zip(other.counters) {
            for (value, other_value) in row.iter_mut().zip(other_row) {
                *value += other_value;
            }
        }
        self.first_seen_ms = self.first_seen_ms.min(other.first_seen_ms);
        self.last_seen_ms = self.last_seen_ms.max(other.last_seen_ms);
        self.total_contacts += other.total_contacts;
    }

    /// Moves the stored counters forward to `at_ms` (no-op for an earlier time).
    pub fn decay_to(&mut self, at_ms: i64) {
        if at_ms <= self.as_of_ms {
            return;
        }
        let elapsed_ms = at_ms - self.as_of_ms;
        for (half_life_index, half_life_s) in HALF_LIVES_S.iter().enumerate() {
            let factor = decay_factor(elapsed_ms, *half_life_s);
            for row in self.counters.iter_mut() {
                row[half_life_index] *= factor;
            }
        }
        self.as_of_ms = at_ms;
    }

    /// A counter's value as seen at `now_ms`. A history newer than `now_ms` is read as it is.
    pub fn value_at(&self, counter: Counter, half_life_index: usize, now_ms: i64) -> f64 {
        let stored = self.counters[counter.index()][half_life_index];
        stored * decay_factor(now_ms - self.as_of_ms, HALF_LIVES_S[half_life_index])
    }

    /// Whole seconds from the latest contact to `now_ms` (0 when the latest contact is later).
    pub fn seconds_since_last(&self, now_ms: i64) -> f64 {
        ((now_ms - self.last_seen_ms).max(0) / 1000) as f64
    }
}

#[cfg(test)]
mod tests;
