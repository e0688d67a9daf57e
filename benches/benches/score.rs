//! The scoring core of ScoreContact without I/O: feature extraction, inference with the shipped model, and the
//! reasons an operator reads. Goal: under 20 µs per contact.
//!
//! Inputs are deterministic: a seeded simulated log (seed 7, 14 days, 5,000 callers) is replayed point in time,
//! as `saring_training::replay` does, and a seeded sample of contacts is taken: half from cold callers (withheld
//! or never seen) and half from hot callers (at least [`HOT_MIN_CONTACTS`] earlier contacts). Each benchmark
//! handles one contact per iteration, going round-robin over the sample, so criterion's time is per contact.
//!
//! Run with `cargo bench -p saring-bench --bench score`.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use saring_models::features::{extract, extract_into, ContactContext, FeatureVector, FEATURE_COUNT};
use saring_models::history::contact_fingerprint;
use saring_models::phone::normalise_indonesian_number;
use saring_models::reasons::{operator_reasons, sentence, strongest, REASONS};
use saring_models::{Band, CallerHistory, Model, ModelArtifact, Score};
use saring_training::events::Event;
use saring_training::replay::contact_context;
use saring_training::simulate::{simulate, SimulationConfig};

/// The shipped model, as the service loads it by default.
const SHIPPED_MODEL: &str = include_str!("../../models/artifacts/default.json");
/// Seed of the simulated log.
const SIMULATION_SEED: u64 = 7;
/// Seed of the sample drawn from it.
const SAMPLE_SEED: u64 = 0x5a71_6e67;
/// Contacts per kind of caller in the sample.
const CONTACTS_PER_KIND: usize = 500;
/// A caller is hot with at least this many earlier contacts recorded.
const HOT_MIN_CONTACTS: u32 = 10;
/// As the service does (`REASONS_PER_SCORE`).
const REASONS_PER_SCORE: usize = 5;

/// One contact as the service would see it: its context and the histories loaded for it.
#[derive(Clone)]
struct Case {
    context: ContactContext,
    caller: Option<CallerHistory>,
    device: Option<CallerHistory>,
}

/// What a ScoreContact reply carries of a reason: code, sentence (worded in the gRPC layer), contribution.
type Reason = (&'static str, String, f64);

/// A deterministic generator (SplitMix64), enough to draw a sample.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_below(&mut self, bound: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^= mixed >> 31;
        (mixed % bound as u64) as usize
    }

    /// `count` distinct items, in random order.
    fn sample<T: Clone>(&mut self, items: &[T], count: usize) -> Vec<T> {
        assert!(items.len() >= count, "only {} items to sample {count} from", items.len());
        let mut order: Vec<usize> = (0..items.len()).collect();
        for position in 0..count {
            let pick = position + self.next_below(items.len() - position);
            order.swap(position, pick);
        }
        order[..count].iter().map(|index| items[*index].clone()).collect()
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for position in (1..items.len()).rev() {
            items.swap(position, self.next_below(position + 1));
        }
    }
}

/// Every contact of the simulated log with the caller and device histories as they were at its arrival.
fn replayed_cases() -> Vec<Case> {
    let config = SimulationConfig { seed: SIMULATION_SEED, days: 14, callers: 5000, ..Default::default() };
    let mut callers: HashMap<String, CallerHistory> = HashMap::new();
    let mut devices: HashMap<String, CallerHistory> = HashMap::new();
    let mut pending: HashMap<String, (ContactContext, Option<String>, Option<String>)> = HashMap::new();
    let mut cases = Vec::new();
    for event in simulate(&config) {
        match event {
            Event::Contact(contact) => {
                let number = match contact.caller.as_deref().map(normalise_indonesian_number) {
                    Some(Ok(number)) => Some(number),
                    Some(Err(_)) => continue,
                    None => None,
                };
                // An unknown province has no context: the service refuses such a contact.
                let Some(context) = contact_context(&contact, number.is_none()) else { continue };
                cases.push(Case {
                    context,
                    caller: number.as_ref().and_then(|number| callers.get(number)).cloned(),
                    device: contact.device_id.as_ref().and_then(|device| devices.get(device)).cloned(),
                });
                pending.insert(contact.contact_id, (context, number, contact.device_id));
            }
            Event::Outcome(outcome) => {
                let Some((context, number, device)) = pending.remove(&outcome.contact_id) else { continue };
                let history_event = context.history_event(
                    contact_fingerprint(&outcome.contact_id),
                    outcome.answered,
                    outcome.talk_s,
                    outcome.disposition,
                );
                for (key, histories) in [(number, &mut callers), (device, &mut devices)] {
                    let Some(key) = key else { continue };
                    histories
                        .entry(key)
                        .and_modify(|history| {
                            history.apply(&history_event);
                        })
                        .or_insert_with(|| CallerHistory::from_event(&history_event));
                }
            }
        }
    }
    cases
}

/// The seeded samples: cold callers, hot callers, and both shuffled together.
struct Samples {
    cold: Vec<Case>,
    hot: Vec<Case>,
    mixed: Vec<Case>,
}

fn samples() -> Samples {
    let cases = replayed_cases();
    let total_contacts = |case: &Case| case.caller.as_ref().map_or(0, |history| history.total_contacts);
    let cold_pool: Vec<Case> = cases.iter().filter(|case| total_contacts(case) == 0).cloned().collect();
    let hot_pool: Vec<Case> = cases.iter().filter(|case| total_contacts(case) >= HOT_MIN_CONTACTS).cloned().collect();
    eprintln!(
        "replayed {} contacts: {} cold, {} hot (>= {HOT_MIN_CONTACTS} earlier contacts), {} in between",
        cases.len(),
        cold_pool.len(),
        hot_pool.len(),
        cases.len() - cold_pool.len() - hot_pool.len()
    );
    let mut generator = SplitMix64(SAMPLE_SEED);
    let cold = generator.sample(&cold_pool, CONTACTS_PER_KIND);
    let hot = generator.sample(&hot_pool, CONTACTS_PER_KIND);
    let mut mixed: Vec<Case> = cold.iter().chain(hot.iter()).cloned().collect();
    generator.shuffle(&mut mixed);
    Samples { cold, hot, mixed }
}

/// Scores one contact as the service does once the histories are loaded (`score_with_reasons` in
/// service/src/screening.rs, there wrapped in a `catch_unwind` that costs nothing unless the model panics).
fn score_contact(model: &Model, case: &Case) -> (f64, Band, Vec<Reason>) {
    let features = extract(&case.context, case.caller.as_ref(), case.device.as_ref());
    let score = model.score(&features);
    (score.likelihood, score.band, explain(&score, &features))
}

/// The reasons of a score: contributions summed per operator reason, the strongest five, and their sentences.
fn explain(score: &Score, features: &FeatureVector) -> Vec<Reason> {
    let sums = operator_reasons(&score.contributions, features);
    strongest::<REASONS_PER_SCORE>(&sums)
        .into_iter()
        .flatten()
        .map(|index| (REASONS[index].code, sentence(index, features), sums[index]))
        .collect()
}

/// The next index of a round-robin over `length` items.
fn advance(cursor: &mut usize, length: usize) -> usize {
    let current = *cursor;
    *cursor = (current + 1) % length;
    current
}

fn scoring_core(criterion: &mut Criterion) {
    let artifact = ModelArtifact::from_json(SHIPPED_MODEL).expect("the shipped model loads");
    let model = Model::new(artifact);
    let samples = samples();
    let mut group = criterion.benchmark_group("score_core");
    group.sample_size(100).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(1));
    for (name, cases) in [("mixed", &samples.mixed), ("cold", &samples.cold), ("hot", &samples.hot)] {
        let features: Vec<FeatureVector> =
            cases.iter().map(|case| extract(&case.context, case.caller.as_ref(), case.device.as_ref())).collect();
        let scores: Vec<Score> = features.iter().map(|vector| model.score(vector)).collect();

        group.bench_with_input(BenchmarkId::new("extract", name), cases, |bencher, cases| {
            let mut vector = [0.0; FEATURE_COUNT];
            let mut cursor = 0;
            bencher.iter(|| {
                let case = &cases[advance(&mut cursor, cases.len())];
                extract_into(black_box(&case.context), case.caller.as_ref(), case.device.as_ref(), &mut vector);
                black_box(&vector);
            });
        });
        group.bench_with_input(BenchmarkId::new("model_score", name), &features, |bencher, features| {
            let mut cursor = 0;
            bencher.iter(|| model.score(black_box(&features[advance(&mut cursor, features.len())])));
        });
        group.bench_with_input(BenchmarkId::new("reasons_only", name), &(&features, &scores), |bencher, inputs| {
            let (features, scores) = *inputs;
            let mut cursor = 0;
            bencher.iter(|| {
                let index = advance(&mut cursor, features.len());
                explain(black_box(&scores[index]), &features[index])
            });
        });
        group.bench_with_input(BenchmarkId::new("extract_score_reasons", name), cases, |bencher, cases| {
            let mut cursor = 0;
            bencher.iter(|| score_contact(&model, black_box(&cases[advance(&mut cursor, cases.len())])));
        });
    }
    group.finish();
}

// No HTML plots: saring-training enables plotters' `ab_glyph` text rendering (fonts registered by the program, not
// found on the system), and with that feature unified criterion's own plots find no font and panic. The figures
// come from criterion's terminal output anyway.
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = scoring_core
}
criterion_main!(benches);
