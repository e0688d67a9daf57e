use proptest::prelude::*;

use super::*;

const START_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// How far two ways of computing the same history may differ, relative: counters are stored as `f32` (a relative
/// rounding of 2^-24 per stored step), and these tests apply at most 40 contacts.
const F32_TOLERANCE: f64 = 1e-5;

fn disposition_strategy() -> impl Strategy<Value = Disposition> {
    proptest::sample::select(Disposition::ALL.to_vec())
}

fn event_strategy() -> impl Strategy<Value = HistoryEvent> {
    (any::<u64>(), 0i64..(60 * 86_400_000), any::<bool>(), 0.0f64..600.0, any::<bool>(), disposition_strategy())
        .prop_map(|(contact_fingerprint, offset_ms, answered, talk_s, night, disposition)| HistoryEvent {
            contact_fingerprint,
            at_ms: START_MS + offset_ms,
            answered,
            talk_s,
            night,
            disposition,
        })
}

fn replay(events: &[HistoryEvent]) -> Option<CallerHistory> {
    let (first, rest) = events.split_first()?;
    let mut history = CallerHistory::from_event(first);
    for event in rest {
        history.apply(event);
    }
    Some(history)
}

fn assert_close(left: &CallerHistory, right: &CallerHistory, now_ms: i64) {
    for half_life_index in 0..HALF_LIFE_COUNT {
        for counter_index in 0..COUNTER_COUNT {
            let counter = counter_at(counter_index);
            let a = left.value_at(counter, half_life_index, now_ms);
            let b = right.value_at(counter, half_life_index, now_ms);
            assert!((a - b).abs() <= F32_TOLERANCE * (1.0 + a.abs()), "{counter:?}/{half_life_index}: {a} vs {b}");
        }
    }
    assert_eq!(left.total_contacts, right.total_contacts);
    assert_eq!(left.first_seen_ms, right.first_seen_ms);
    assert_eq!(left.last_seen_ms, right.last_seen_ms);
}

fn counter_at(index: usize) -> Counter {
    match index {
        0 => Counter::Contacts,
        1 => Counter::Answered,
        2 => Counter::Short,
        3 => Counter::Night,
        other => Counter::Disposition(Disposition::ALL[other - 4]),
    }
}

proptest! {
    #[test]
    fn decay_of_a_sum_equals_the_sum_of_decays(events in proptest::collection::vec(event_strategy(), 1..40), later_ms in 0i64..(90 * 86_400_000)) {
        let history = replay(&events).unwrap();
        let now_ms = history.as_of_ms() + later_ms;
        for (half_life_index, half_life_s) in HALF_LIVES_S.iter().enumerate() {
            let expected: f64 = events
                .iter()
                .map(|event| decay_factor(now_ms - event.at_ms, *half_life_s))
                .sum();
            let actual = history.value_at(Counter::Contacts, half_life_index, now_ms);
            prop_assert!((expected - actual).abs() <= F32_TOLERANCE * (1.0 + expected), "{expected} vs {actual}");
        }
    }

    #[test]
    fn a_history_split_between_two_keys_merges_into_the_whole(events in proptest::collection::vec(event_strategy(), 2..40), split in 1usize..39) {
        let split = split.min(events.len() - 1);
        let whole = replay(&events).unwrap();
        let mut merged = replay(&events[..split]).unwrap();
        merged.merge(&replay(&events[split..]).unwrap());
        prop_assert_eq!(merged.total_contacts, whole.total_contacts);
        prop_assert_eq!(merged.first_seen_ms, whole.first_seen_ms);
        prop_assert_eq!(merged.last_seen_ms, whole.last_seen_ms);
        let now_ms = whole.as_of_ms().max(merged.as_of_ms());
        for counter in 0..COUNTER_COUNT {
            for half_life_index in 0..HALF_LIFE_COUNT {
                let counter = counter_at(counter);
                let (expected, actual) = (whole.value_at(counter, half_life_index, now_ms), merged.value_at(counter, half_life_index, now_ms));
                prop_assert!((expected - actual).abs() <= F32_TOLERANCE * (1.0 + expected), "{counter:?}/{half_life_index}: {expected} vs {actual}");
            }
        }
    }

    #[test]
    fn arrival_order_does_not_matter(mut events in proptest::collection::vec(event_strategy(), 1..40), seed in any::<u64>()) {
        let in_order = replay(&events).unwrap();
        // A deterministic shuffle driven by the seed.
        let mut state = seed | 1;
        for index in (1..events.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            events.swap(index, (state % (index as u64 + 1)) as usize);
        }
        let shuffled = replay(&events).unwrap();
        assert_close(&in_order, &shuffled, in_order.as_of_ms().max(shuffled.as_of_ms()));
    }

    #[test]
    fn equal_time_events_commute_exactly(a in event_strategy(), b in event_strategy(), base in event_strategy()) {
        let b = HistoryEvent { at_ms: a.at_ms, ..b };
        let mut first = CallerHistory::from_event(&base);
        let mut second = first.clone();
        first.apply(&a);
        first.apply(&b);
        second.apply(&b);
        second.apply(&a);
        // Same time, same decay weights: the sums are equal bit for bit.
        prop_assert_eq!(first.counters, second.counters);
    }

    #[test]
    fn the_same_contact_counts_once(events in proptest::collection::vec(event_strategy(), 1..20), repeat_index in any::<proptest::sample::Index>()) {
        let once = replay(&events).unwrap();
        let mut twice = once.clone();
        let repeated = events[repeat_index.index(events.len())];
        // A repeat of one of the last RECENT_CONTACT_IDS contacts is ignored by the aggregate itself; older
        // repeats are caught by the store's per-contact marker.
        if events.len() - repeat_index.index(events.len()) <= RECENT_CONTACT_IDS {
            prop_assert!(!twice.apply(&repeated));
            prop_assert_eq!(once, twice);
        }
    }
}

proptest! {
    #[test]
    fn a_correction_equals_recording_the_new_disposition_first(
        mut others in proptest::collection::vec(event_strategy(), 0..30),
        corrected in event_strategy(),
        to in disposition_strategy(),
        seed in any::<u64>(),
        position in any::<proptest::sample::Index>(),
        corrected_after in any::<proptest::sample::Index>(),
    ) {
        // The corrected contact lands anywhere among the others, in a seed-shuffled order; the correction comes at
        // any point after it (more contacts may arrive between the outcome and its correction).
        let mut state = seed | 1;
        for index in (1..others.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            others.swap(index, (state % (index as u64 + 1)) as usize);
        }
        let at = position.index(others.len() + 1);
        let mut recorded = others.clone();
        recorded.insert(at, corrected);
        let correct_before = at + 1 + corrected_after.index(recorded.len() - at);

        let mut history = CallerHistory::from_event(&recorded[0]);
        for (index, event) in recorded.iter().enumerate().skip(1) {
            if index == correct_before {
                history.correct(corrected.at_ms, corrected.disposition, to);
            }
            history.apply(event);
        }
        if correct_before == recorded.len() {
            history.correct(corrected.at_ms, corrected.disposition, to);
        }

        let mut right_first = recorded.clone();
        right_first[at] = HistoryEvent { disposition: to, ..corrected };
        let expected = replay(&right_first).unwrap();
        assert_close(&history, &expected, history.as_of_ms().max(expected.as_of_ms()));
        for row in history.counters {
            for value in row {
                prop_assert!(value >= 0.0);
            }
        }
    }

    #[test]
    fn a_correction_back_restores_the_history(events in proptest::collection::vec(event_strategy(), 1..30), pick in any::<proptest::sample::Index>(), to in disposition_strategy()) {
        let original = replay(&events).unwrap();
        let event = events[pick.index(events.len())];
        let mut history = original.clone();
        history.correct(event.at_ms, event.disposition, to);
        history.correct(event.at_ms, to, event.disposition);
        assert_close(&history, &original, original.as_of_ms());
    }
}

#[test]
fn a_correction_of_the_only_contact_leaves_no_negative_dust() {
    let event = HistoryEvent {
        contact_fingerprint: contact_fingerprint("c-1"),
        at_ms: START_MS,
        answered: false,
        talk_s: 0.0,
        night: false,
        disposition: Disposition::Silent,
    };
    let mut history = CallerHistory::from_event(&event);
    history.decay_to(START_MS + 3 * 86_400_000 + 17);
    history.correct(START_MS, Disposition::Silent, Disposition::Prank);
    for half_life_index in 0..HALF_LIFE_COUNT {
        // What is left of the old disposition is f32 rounding of the decayed count, never negative.
        let silent = history.stored(Counter::Disposition(Disposition::Silent), half_life_index);
        assert!((0.0..=1e-7).contains(&silent), "{silent}");
        let contacts = history.stored(Counter::Contacts, half_life_index);
        let prank = history.stored(Counter::Disposition(Disposition::Prank), half_life_index);
        assert_eq!(contacts, prank + silent);
    }
    assert_eq!(history.total_contacts, 1);
}

#[test]
fn a_counter_halves_after_one_half_life() {
    let event = HistoryEvent {
        contact_fingerprint: contact_fingerprint("c-1"),
        at_ms: START_MS,
        answered: true,
        talk_s: 5.0,
        night: false,
        disposition: Disposition::Prank,
    };
    let history = CallerHistory::from_event(&event);
    let one_day_later = START_MS + 86_400_000;
    assert!((history.value_at(Counter::Contacts, DAY, one_day_later) - 0.5).abs() < 1e-12);
    assert!((history.value_at(Counter::Disposition(Disposition::Prank), MONTH, START_MS) - 1.0).abs() < 1e-12);
    assert_eq!(history.value_at(Counter::Night, HOUR, START_MS), 0.0);
    assert_eq!(history.value_at(Counter::Short, HOUR, START_MS), 1.0);
}

proptest! {
    #[test]
    fn a_packed_history_unpacks_exactly(events in proptest::collection::vec(event_strategy(), 1..40)) {
        let history = replay(&events).unwrap();
        let unpacked = PackedHistory::pack(&history).unpack();
        prop_assert_eq!(unpacked.counters, history.counters);
        prop_assert_eq!((unpacked.first_seen_ms, unpacked.last_seen_ms), (history.first_seen_ms, history.last_seen_ms));
        prop_assert_eq!(unpacked.total_contacts, history.total_contacts);
        prop_assert_eq!(PackedHistory::pack(&unpacked), PackedHistory::pack(&history));
        prop_assert_eq!(PackedHistory::pack(&history).last_seen_ms(), history.last_seen_ms);
    }
}

#[test]
fn a_packed_history_is_152_bytes() {
    assert_eq!(PACKED_BYTES, 152);
    assert_eq!(std::mem::size_of::<PackedHistory>(), 152);
}
