//! Traffic simulator: a seeded, deterministic synthetic event log of contacts to 110 and their outcomes.
//!
//! A population of callers, each with a home region and an archetype, produces contacts over `days` days. Shares
//! marked `× m` are scaled by the region's misuse multiplier; genuine citizens take whatever share is left.
//!
//! | archetype | share of callers | contacts | local hours | true nature | talk s |
//! |---|---|---|---|---|---|
//! | genuine citizen | the rest (~86%) | ~1 per 60 days | daytime | 45% genuine emergency, 50% non-emergency, 5% accidental | 30–300 |
//! | pocket dialer | 6% | ~1 per week; 20% unanswered | any | 65% accidental, 35% silent | 0–15 |
//! | child prankster | 2.5% × m | bursts of 3–10 in an hour on 2–6 days | 14–21 school days, 9–21 weekends | 80% prank, 20% silent | 2–25 |
//! | persistent prankster | 0.6% × m | ~4 a day for 2–6 weeks | night-heavy | 70% prank, 20% abusive, 10% silent | 3–40 |
//! | abusive caller | 0.5% × m | ~3 a week | night-heavy | 80% abusive, 20% prank | 20–120 |
//! | SIM cycler | 0.25% × m | ~2.5 a day for 10–40 days; one device, new number every 2–5 days | night-heavy | 85% prank, 15% silent | 3–40 |
//! | SIM-less caller | 0.6% × m | ~1.2 a day for 5–25 days; a quarter are genuine (~1 per 30 days) | any | 80% prank, 20% silent | 3–30 |
//! | distressed repeat caller | 0.06% (at least one) | ~8 a day | any | 55% non-emergency, 45% silent: welfare, not misuse | 20–600 |
//!
//! Operators answer 94% of contacts (pocket dials 80%, the handset-bug surge 75%); an unanswered contact is labelled
//! unknown (80%) or silent. 12% of answered pranks are labelled unknown, and 3% of labels are simply wrong. Numbers
//! are Indonesian mobiles written as `08…`, `628…`, `+628…` or with spaces/dashes; 3% of ordinary callers (8% of
//! misusers) withhold their number on voice calls; ~70% of voice contacts carry an IMEI. On one random day, in one
//! region, 8% of its ordinary callers make silent or accidental calls within the same hour (a handset bug).
//!
//! Those figures are [`WorldParams::default`]. Other worlds scale misuse (overall and per archetype), how often
//! misusers and genuine callers call, misusers' talk time, silent share and hours, label noise, unknown labels and answer rates
//! (`crate::worlds` draws them for domain randomisation).

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson};
use saring_models::region::{is_valid_region_code, utc_offset_seconds};
use saring_models::{Channel, Disposition};
use time::{Duration, OffsetDateTime};

use crate::events::{ContactEvent, Event, OutcomeEvent};

const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;

/// A police region taking part in the simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionProfile {
    /// Region code `province.unit`; the province sets the time zone.
    pub code: String,
    /// Scales the share of misuse archetypes among the region's callers (1 = the base mix).
    pub misuse_multiplier: f64,
    /// Relative share of the caller population living in the region.
    pub population_weight: f64,
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulationConfig {
    /// Seed of the random generator: the same config always yields the same events.
    pub seed: u64,
    /// Length of the simulated period in days.
    pub days: u32,
    /// Size of the caller population.
    pub callers: u32,
    /// Start of the period (truncated to whole seconds, UTC).
    pub start: OffsetDateTime,
    /// Regions; when empty, [`SimulationConfig::default_regions`] is used.
    pub regions: Vec<RegionProfile>,
    /// The world's behaviour and labelling; [`WorldParams::default`] is the table above.
    pub world: WorldParams,
    /// Share of callers who are distressed repeat callers (at least one); 0.0006 by default, as in the table above.
    /// A fairness test raises it to see enough of them in a small population.
    pub distressed_share: f64,
}

/// How one simulated world behaves and is labelled. The defaults reproduce the table in the module documentation;
/// `crate::worlds` draws other values to simulate many different worlds (domain randomisation).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct WorldParams {
    /// Multiplies every region's misuse multiplier.
    pub misuse_scale: f64,
    /// Relative weight of each misuse archetype in the mix: child prankster, persistent prankster, abusive caller,
    /// SIM cycler, SIM-less caller.
    pub archetype_weights: [f64; 5],
    /// Scales how often misuse archetypes call (their Poisson means; a child prankster's chance of a burst day).
    pub misuse_activity: f64,
    /// Scales how often genuine citizens and pocket dialers call.
    pub genuine_activity: f64,
    /// Scales the talk time of misuse contacts (long pranks look like genuine calls).
    pub misuse_talk_scale: f64,
    /// Scales the weight of silent contacts among misuse archetypes' contacts (labelled SILENT: not misuse).
    pub misuse_silent_weight: f64,
    /// Weight of the night-heavy hour profile of persistent pranksters, abusive callers and SIM cyclers; the rest
    /// follows daytime hours (0 = misuse calls at the hours genuine citizens call).
    pub misuse_night_weight: f64,
    /// Share of answered contacts whose label is simply wrong.
    pub label_noise: f64,
    /// Share of answered pranks labelled UNKNOWN.
    pub prank_unknown_share: f64,
    /// Share of ordinary contacts answered (pocket dials and the handset-bug surge are answered proportionally less).
    pub answer_rate: f64,
    /// Share of unanswered contacts labelled UNKNOWN (the rest SILENT).
    pub unanswered_unknown_share: f64,
    /// Share of misuse callers withholding their number on voice calls.
    pub misuse_withhold_share: f64,
}

impl Default for WorldParams {
    fn default() -> Self {
        Self {
            misuse_scale: 1.0,
            archetype_weights: [1.0; 5],
            misuse_activity: 1.0,
            genuine_activity: 1.0,
            misuse_talk_scale: 1.0,
            misuse_silent_weight: 1.0,
            misuse_night_weight: 1.0,
            label_noise: 0.03,
            prank_unknown_share: 0.12,
            answer_rate: 0.94,
            unanswered_unknown_share: 0.8,
            misuse_withhold_share: 0.08,
        }
    }
}

impl SimulationConfig {
    /// Eight regions across the three time zones, from mostly genuine (multiplier 0.3) to prank-dominated (4).
    pub fn default_regions() -> Vec<RegionProfile> {
        [
            ("dki.jakarta", 1.0, 3.0),
            ("jabar.bandung", 1.5, 2.5),
            ("jatim.surabaya", 3.0, 2.0),
            ("sumut.medan", 2.0, 1.2),
            ("sulsel.makassar", 4.0, 0.8),
            ("bali.denpasar", 0.3, 0.6),
            ("ntt.kupang", 0.5, 0.5),
            ("papua.jayapura", 0.8, 0.3),
        ]
        .into_iter()
        .map(|(code, misuse_multiplier, population_weight)| RegionProfile {
            code: code.to_string(),
            misuse_multiplier,
            population_weight,
        })
        .collect()
    }
}

impl Default for SimulationConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            days: 30,
            callers: 5000,
            start: time::macros::datetime!(2026-03-01 00:00:00 UTC),
            regions: Self::default_regions(),
            world: WorldParams::default(),
            distressed_share: 0.0006,
        }
    }
}

/// Parses `code=misuse_multiplier[:population_weight],…`, e.g. `ntt.kupang=0.5:2,jatim.surabaya=3` (weight 1).
pub fn parse_region_profiles(spec: &str) -> anyhow::Result<Vec<RegionProfile>> {
    let mut profiles: Vec<RegionProfile> = Vec::new();
    for entry in spec.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
        let (code, numbers) = entry.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("region entry `{entry}`: expected code=misuse_multiplier[:population_weight]")
        })?;
        let code = code.trim();
        if !is_valid_region_code(code) {
            anyhow::bail!("region entry `{entry}`: `{code}` is not a region code (lowercase letters, digits, . _ -)");
        }
        if utc_offset_seconds(code).is_none() {
            anyhow::bail!(
                "region entry `{entry}`: `{code}` does not start with a known province code (e.g. ntt.kupang)"
            );
        }
        if profiles.iter().any(|profile| profile.code == code) {
            anyhow::bail!("region `{code}` is given twice");
        }
        let (multiplier_text, weight_text) = match numbers.split_once(':') {
            Some((multiplier, weight)) => (multiplier, Some(weight)),
            None => (numbers, None),
        };
        let misuse_multiplier = parse_non_negative(entry, "misuse multiplier", multiplier_text)?;
        let population_weight =
            weight_text.map(|text| parse_non_negative(entry, "population weight", text)).transpose()?.unwrap_or(1.0);
        if population_weight == 0.0 {
            anyhow::bail!("region entry `{entry}`: population weight must be greater than 0");
        }
        profiles.push(RegionProfile { code: code.to_string(), misuse_multiplier, population_weight });
    }
    if profiles.is_empty() {
        anyhow::bail!("no regions given (expected e.g. `ntt.kupang=0.5:2,jatim.surabaya=3`)");
    }
    Ok(profiles)
}

fn parse_non_negative(entry: &str, what: &str, text: &str) -> anyhow::Result<f64> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("region entry `{entry}`: {what} `{}` is not a number", text.trim()))?;
    if !value.is_finite() || value < 0.0 {
        anyhow::bail!("region entry `{entry}`: {what} must be a finite number ≥ 0, got `{}`", text.trim());
    }
    Ok(value)
}

/// Generates the event log: contacts and outcomes sorted by time, contact ids `s{seed}-c{n}` in time order.
pub fn simulate(config: &SimulationConfig) -> Vec<Event> {
    simulate_with_archetypes(config).0
}

/// [`simulate`], with who each number really belongs to: the archetype's name (`genuine_citizen`,
/// `pocket_dialer`, `child_prankster`, `persistent_prankster`, `abusive_caller`, `sim_cycler`, `sim_less_caller`,
/// `distressed_repeat_caller`) by number as the log writes it — the ground truth a fairness check compares the
/// ladder's proposals with. A number that also took part in the handset-bug surge keeps its own archetype.
pub fn simulate_with_archetypes(config: &SimulationConfig) -> (Vec<Event>, HashMap<String, &'static str>) {
    let mut plans = plan_contacts(config);
    plans.sort_by_key(|plan| plan.offset_seconds);
    let mut archetypes = HashMap::new();
    for plan in &plans {
        if let Some(number) = &plan.contact.caller {
            archetypes.insert(number.clone(), plan.archetype.name());
        }
    }
    let mut events = Vec::with_capacity(plans.len() * 2);
    for (index, plan) in plans.into_iter().enumerate() {
        let contact_id = format!("s{}-c{}", config.seed, index + 1);
        events.push(Event::Contact(ContactEvent { contact_id: contact_id.clone(), ..plan.contact }));
        events.push(Event::Outcome(OutcomeEvent { contact_id, ..plan.outcome }));
    }
    events.sort_by_key(Event::at);
    (events, archetypes)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Archetype {
    GenuineCitizen,
    PocketDialer,
    ChildPrankster,
    PersistentPrankster,
    AbusiveCaller,
    SimCycler,
    SimLessCaller,
    DistressedRepeatCaller,
}

impl Archetype {
    const ALL: [Archetype; 8] = [
        Archetype::GenuineCitizen,
        Archetype::PocketDialer,
        Archetype::ChildPrankster,
        Archetype::PersistentPrankster,
        Archetype::AbusiveCaller,
        Archetype::SimCycler,
        Archetype::SimLessCaller,
        Archetype::DistressedRepeatCaller,
    ];

    /// Share of callers at misuse multiplier 1 (genuine citizens get the rest; distressed callers are placed apart).
    fn base_share(self) -> f64 {
        match self {
            Archetype::PocketDialer => 0.06,
            Archetype::ChildPrankster => 0.025,
            Archetype::PersistentPrankster => 0.006,
            Archetype::AbusiveCaller => 0.005,
            Archetype::SimCycler => 0.0025,
            Archetype::SimLessCaller => 0.006,
            Archetype::GenuineCitizen | Archetype::DistressedRepeatCaller => 0.0,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Archetype::GenuineCitizen => "genuine_citizen",
            Archetype::PocketDialer => "pocket_dialer",
            Archetype::ChildPrankster => "child_prankster",
            Archetype::PersistentPrankster => "persistent_prankster",
            Archetype::AbusiveCaller => "abusive_caller",
            Archetype::SimCycler => "sim_cycler",
            Archetype::SimLessCaller => "sim_less_caller",
            Archetype::DistressedRepeatCaller => "distressed_repeat_caller",
        }
    }

    fn is_misuse(self) -> bool {
        self.misuse_index().is_some()
    }

    /// Position in [`WorldParams::archetype_weights`] of a misuse archetype.
    fn misuse_index(self) -> Option<usize> {
        match self {
            Archetype::ChildPrankster => Some(0),
            Archetype::PersistentPrankster => Some(1),
            Archetype::AbusiveCaller => Some(2),
            Archetype::SimCycler => Some(3),
            Archetype::SimLessCaller => Some(4),
            _ => None,
        }
    }
}

/// What a contact really was: disposition, weight, talk seconds from..to.
type Nature = (Disposition, f64, f64, f64);

fn natures(archetype: Archetype, genuine: bool) -> &'static [Nature] {
    use Disposition::*;
    match archetype {
        Archetype::GenuineCitizen => {
            &[(GenuineEmergency, 0.45, 30.0, 300.0), (NonEmergency, 0.5, 30.0, 300.0), (Accidental, 0.05, 0.0, 15.0)]
        }
        Archetype::SimLessCaller if genuine => {
            &[(GenuineEmergency, 0.7, 30.0, 300.0), (NonEmergency, 0.3, 30.0, 300.0)]
        }
        Archetype::PocketDialer => &[(Accidental, 0.65, 0.0, 15.0), (Silent, 0.35, 0.0, 15.0)],
        Archetype::ChildPrankster => &[(Prank, 0.8, 2.0, 25.0), (Silent, 0.2, 0.0, 10.0)],
        Archetype::PersistentPrankster => {
            &[(Prank, 0.7, 3.0, 40.0), (Abusive, 0.2, 5.0, 60.0), (Silent, 0.1, 0.0, 10.0)]
        }
        Archetype::AbusiveCaller => &[(Abusive, 0.8, 20.0, 120.0), (Prank, 0.2, 10.0, 60.0)],
        Archetype::SimCycler => &[(Prank, 0.85, 3.0, 40.0), (Silent, 0.15, 0.0, 10.0)],
        Archetype::SimLessCaller => &[(Prank, 0.8, 3.0, 30.0), (Silent, 0.2, 0.0, 10.0)],
        Archetype::DistressedRepeatCaller => &[(NonEmergency, 0.55, 60.0, 600.0), (Silent, 0.45, 20.0, 240.0)],
    }
}

const SURGE_NATURES: &[Nature] = &[(Disposition::Silent, 0.6, 0.0, 5.0), (Disposition::Accidental, 0.4, 0.0, 5.0)];
const CATEGORIES: &[(&str, f64)] =
    &[("crime", 0.3), ("accident", 0.25), ("disturbance", 0.15), ("medical", 0.15), ("fire", 0.08), ("disaster", 0.07)];
const MOBILE_PREFIXES: &[&str] =
    &["811", "812", "813", "821", "822", "823", "852", "853", "857", "858", "877", "878", "881", "895", "896", "898"];

const DAYTIME: [f64; 24] = [
    0.2, 0.15, 0.1, 0.1, 0.15, 0.3, 0.7, 1.0, 1.3, 1.5, 1.5, 1.5, 1.4, 1.4, 1.5, 1.5, 1.4, 1.3, 1.2, 1.1, 1.0, 0.8,
    0.5, 0.3,
];
const ANY_HOUR: [f64; 24] = [1.0; 24];
const NIGHT_HEAVY: [f64; 24] = [
    2.0, 2.0, 1.8, 1.5, 1.0, 0.4, 0.3, 0.3, 0.4, 0.5, 0.6, 0.6, 0.6, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0,
    2.0,
];
const AFTER_SCHOOL: [f64; 24] = [
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0,
    0.0,
];
const WEEKEND_DAYTIME: [f64; 24] = [
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0,
    0.0,
];

struct SimulatedCaller {
    archetype: Archetype,
    region_index: usize,
    /// National numbers without the leading 0 (`812…`), each with the offset from which it is used.
    numbers: Vec<(i64, String)>,
    withholds_number: bool,
    device_id: String,
    /// A SIM-less caller using a phone without SIM in real need.
    genuine: bool,
}

struct PlannedContact {
    offset_seconds: i64,
    archetype: Archetype,
    contact: ContactEvent,
    outcome: OutcomeEvent,
}

struct Generator<'a> {
    rng: ChaCha8Rng,
    regions: &'a [RegionProfile],
    region_utc_offsets: Vec<i64>,
    start: OffsetDateTime,
    days: i64,
    total_seconds: i64,
    plans: Vec<PlannedContact>,
    world: WorldParams,
    /// The hours of night-heavy archetypes: `misuse_night_weight` × NIGHT_HEAVY + the rest × DAYTIME.
    night_hours: [f64; 24],
}

/// Plans every contact in generation order (callers one after another), before ids and sorting.
fn plan_contacts(config: &SimulationConfig) -> Vec<PlannedContact> {
    let default_regions = SimulationConfig::default_regions();
    let regions = if config.regions.is_empty() { &default_regions } else { &config.regions };
    if config.days == 0 || config.callers == 0 {
        return Vec::new();
    }
    let start = OffsetDateTime::from_unix_timestamp(config.start.unix_timestamp()).unwrap_or(config.start);
    let mut generator = Generator {
        rng: ChaCha8Rng::seed_from_u64(config.seed),
        regions,
        region_utc_offsets: regions.iter().map(|region| utc_offset_seconds(&region.code).unwrap_or(7 * HOUR)).collect(),
        start,
        days: i64::from(config.days),
        total_seconds: i64::from(config.days) * DAY,
        plans: Vec::new(),
        world: config.world,
        night_hours: night_hours(config.world.misuse_night_weight),
    };
    let archetype_mixes: Vec<Vec<(Archetype, f64)>> =
        regions.iter().map(|region| archetype_mix(region, &config.world)).collect();
    let surge_region = pick_index(&mut generator.rng, regions.iter().map(|region| region.population_weight));
    let surge_day = generator.rng.random_range(0..generator.days);
    let surge_start = generator.local_midnight(surge_region, surge_day) + generator.rng.random_range(8..22) * HOUR;
    let distressed_share =
        if config.distressed_share.is_finite() { config.distressed_share.clamp(0.0, 1.0) } else { 0.0 };
    let distressed_callers = (f64::from(config.callers) * distressed_share).ceil() as u32;
    for caller_index in 0..config.callers {
        let region_index = pick_index(&mut generator.rng, regions.iter().map(|region| region.population_weight));
        let archetype = if caller_index < distressed_callers {
            Archetype::DistressedRepeatCaller
        } else {
            pick(&mut generator.rng, &archetype_mixes[region_index])
        };
        let caller = generator.new_caller(archetype, region_index);
        for offset in generator.contact_times(&caller) {
            generator.plan_contact(&caller, offset, false);
        }
        let ordinary = matches!(archetype, Archetype::GenuineCitizen | Archetype::PocketDialer);
        if region_index == surge_region && ordinary && generator.rng.random_bool(0.08) {
            for _ in 0..generator.rng.random_range(1..=2) {
                let offset = (surge_start + generator.rng.random_range(0..HOUR)).rem_euclid(generator.total_seconds);
                generator.plan_contact(&caller, offset, true);
            }
        }
    }
    generator.plans
}

fn night_hours(weight: f64) -> [f64; 24] {
    if weight == 1.0 {
        return NIGHT_HEAVY;
    }
    let weight = if weight.is_finite() { weight.clamp(0.0, 1.0) } else { 1.0 };
    std::array::from_fn(|hour| weight * NIGHT_HEAVY[hour] + (1.0 - weight) * DAYTIME[hour])
}

fn archetype_mix(region: &RegionProfile, world: &WorldParams) -> Vec<(Archetype, f64)> {
    let finite_or = |value: f64, default: f64| if value.is_finite() { value.max(0.0) } else { default };
    let multiplier = finite_or(region.misuse_multiplier, 1.0) * finite_or(world.misuse_scale, 1.0);
    let mut mix: Vec<(Archetype, f64)> = Archetype::ALL
        .iter()
        .map(|&archetype| {
            let share = match archetype.misuse_index() {
                Some(index) => archetype.base_share() * multiplier * finite_or(world.archetype_weights[index], 1.0),
                None => archetype.base_share(),
            };
            (archetype, share)
        })
        .collect();
    let taken: f64 = mix.iter().map(|entry| entry.1).sum();
    mix[0].1 = (1.0 - taken).max(0.05); // Archetype::ALL[0] is the genuine citizen.
    mix
}

impl Generator<'_> {
    /// Seconds from the start to local midnight of the region's `day`-th local day (may be negative).
    fn local_midnight(&self, region_index: usize, day: i64) -> i64 {
        day * DAY - (self.start.unix_timestamp() + self.region_utc_offsets[region_index]).rem_euclid(DAY)
    }

    fn is_weekend(&self, region_index: usize, day: i64) -> bool {
        let local_midnight = self.start.unix_timestamp() + self.region_utc_offsets[region_index];
        let days_since_epoch = (local_midnight + self.local_midnight(region_index, day)).div_euclid(DAY);
        (days_since_epoch + 3).rem_euclid(7) >= 5 // 1970-01-01 was a Thursday; Monday is 0.
    }

    fn time_on_day(&mut self, region_index: usize, day: i64, hours: &[f64; 24]) -> i64 {
        let hour = pick_index(&mut self.rng, hours.iter().copied()) as i64;
        let offset = self.local_midnight(region_index, day) + hour * HOUR + self.rng.random_range(0..HOUR);
        offset.rem_euclid(self.total_seconds)
    }

    fn random_times(&mut self, region_index: usize, count: u32, hours: &[f64; 24]) -> Vec<i64> {
        (0..count)
            .map(|_| {
                let day = self.rng.random_range(0..self.days);
                self.time_on_day(region_index, day, hours)
            })
            .collect()
    }

    fn poisson(&mut self, mean: f64) -> u32 {
        Poisson::new(mean).map(|distribution| distribution.sample(&mut self.rng) as u32).unwrap_or(0)
    }

    /// Days an episodic caller is active: starts within the first `start_fraction` of the period.
    fn active_days(&mut self, start_fraction: f64, min_days: i64, max_days: i64) -> std::ops::Range<i64> {
        let first = self.rng.random_range(0..((self.days as f64 * start_fraction) as i64).max(1));
        first..(first + self.rng.random_range(min_days..=max_days)).min(self.days)
    }

    fn new_caller(&mut self, archetype: Archetype, region_index: usize) -> SimulatedCaller {
        let mut numbers = vec![(0, new_national_number(&mut self.rng))];
        if archetype == Archetype::SimCycler {
            let mut from = 0;
            while from < self.total_seconds {
                from += self.rng.random_range(2 * DAY..6 * DAY);
                numbers.push((from, new_national_number(&mut self.rng)));
            }
        }
        let withhold_share =
            if archetype.is_misuse() { self.world.misuse_withhold_share.clamp(0.0, 1.0) } else { 0.03 };
        SimulatedCaller {
            archetype,
            region_index,
            numbers,
            withholds_number: self.rng.random_bool(withhold_share),
            device_id: new_device_id(&mut self.rng),
            genuine: archetype == Archetype::SimLessCaller && self.rng.random_bool(0.25),
        }
    }

    fn contact_times(&mut self, caller: &SimulatedCaller) -> Vec<i64> {
        let (region, days) = (caller.region_index, self.days as f64);
        let (misuse, genuine) = (self.world.misuse_activity.max(0.0), self.world.genuine_activity.max(0.0));
        let night = self.night_hours;
        let daily = |generator: &mut Self, active: std::ops::Range<i64>, mean: f64, hours: &[f64; 24]| {
            let mut times = Vec::new();
            for day in active {
                for _ in 0..generator.poisson(mean) {
                    times.push(generator.time_on_day(region, day, hours));
                }
            }
            times
        };
        match caller.archetype {
            Archetype::GenuineCitizen => {
                let count = self.poisson(days / 60.0 * genuine);
                self.random_times(region, count, &DAYTIME)
            }
            Archetype::SimLessCaller if caller.genuine => {
                let count = self.poisson(days / 30.0);
                self.random_times(region, count, &DAYTIME)
            }
            Archetype::PocketDialer => {
                let count = self.poisson(days * 0.15 * genuine);
                self.random_times(region, count, &ANY_HOUR)
            }
            Archetype::AbusiveCaller => {
                let count = self.poisson(days * 0.45 * misuse);
                self.random_times(region, count, &night)
            }
            Archetype::ChildPrankster => {
                let mut times = Vec::new();
                for day in self.active_days(1.0, 2, 6) {
                    let weekend = self.is_weekend(region, day);
                    if self.rng.random_bool((if weekend { 0.8 } else { 0.5 } * misuse).min(1.0)) {
                        let mut offset =
                            self.time_on_day(region, day, if weekend { &WEEKEND_DAYTIME } else { &AFTER_SCHOOL });
                        for _ in 0..self.rng.random_range(3..=10) {
                            times.extend((offset < self.total_seconds).then_some(offset));
                            offset += self.rng.random_range(60..=360);
                        }
                    }
                }
                times
            }
            Archetype::PersistentPrankster => {
                let active = self.active_days(0.5, 14, 42);
                daily(self, active, 4.0 * misuse, &night)
            }
            Archetype::SimCycler => {
                let active = self.active_days(0.34, 10, 40);
                daily(self, active, 2.5 * misuse, &night)
            }
            Archetype::SimLessCaller => {
                let active = self.active_days(1.0, 5, 25);
                daily(self, active, 1.2 * misuse, &ANY_HOUR)
            }
            Archetype::DistressedRepeatCaller => daily(self, 0..self.days, 8.0, &ANY_HOUR),
        }
    }

    fn plan_contact(&mut self, caller: &SimulatedCaller, offset_seconds: i64, surge: bool) {
        use Channel::*;
        let world = self.world;
        let rng = &mut self.rng;
        let natures = if surge { SURGE_NATURES } else { natures(caller.archetype, caller.genuine) };
        let silent_weight = if caller.archetype.is_misuse() && !caller.genuine && !surge {
            if world.misuse_silent_weight.is_finite() {
                world.misuse_silent_weight.max(0.0)
            } else {
                1.0
            }
        } else {
            1.0
        };
        let weight =
            |nature: &Nature| if nature.0 == Disposition::Silent { nature.1 * silent_weight } else { nature.1 };
        let (nature, _, mut talk_from, mut talk_to) = natures[pick_index(rng, natures.iter().map(weight))];
        if !surge && caller.archetype.is_misuse() && !caller.genuine && world.misuse_talk_scale != 1.0 {
            let scale = if world.misuse_talk_scale.is_finite() { world.misuse_talk_scale.max(0.0) } else { 1.0 };
            (talk_from, talk_to) = (talk_from * scale, talk_to * scale);
        }
        let sim_less = caller.archetype == Archetype::SimLessCaller;
        let channels: &[(Channel, f64)] = match caller.archetype {
            _ if surge || sim_less => &[(Voice, 1.0)],
            Archetype::PocketDialer => &[(Voice, 0.95), (App, 0.05)],
            Archetype::GenuineCitizen => &[(Voice, 0.78), (Whatsapp, 0.1), (Sms, 0.04), (App, 0.08)],
            Archetype::DistressedRepeatCaller => &[(Voice, 0.7), (Whatsapp, 0.2), (Sms, 0.1)],
            _ => &[(Voice, 0.85), (Whatsapp, 0.1), (Sms, 0.05)],
        };
        let channel = pick(rng, channels);
        let number = caller.numbers.iter().rev().find(|(from, _)| *from <= offset_seconds).map(|(_, number)| number);
        let withheld = sim_less || (caller.withholds_number && channel == Voice);
        let always_identified = sim_less || caller.archetype == Archetype::SimCycler;
        let carries_device = channel == App || (channel == Voice && (always_identified || rng.random_bool(0.7)));
        let location: Option<(f64, f64, f64)> = match channel {
            App => Some((0.15, 5.0, 60.0)),
            Voice if rng.random_bool(0.15) => Some((0.3, 100.0, 3000.0)),
            Whatsapp if rng.random_bool(0.2) => Some((0.15, 10.0, 100.0)),
            _ => None,
        };
        let (centre_lat, centre_lon) = region_centre(&self.regions[caller.region_index].code);
        let location = location.map(|(jitter, accuracy_from, accuracy_to)| {
            let lat = (centre_lat + rng.random_range(-jitter..jitter)).clamp(-11.0, 6.0);
            let lon = (centre_lon + rng.random_range(-jitter..jitter)).clamp(95.0, 141.0);
            (round_to(lat, 1e5), round_to(lon, 1e5), rng.random_range(accuracy_from..accuracy_to).round())
        });
        // Relative to the default 94%: pocket dials and the surge keep their lower answer rates.
        let relative = world.answer_rate.clamp(0.0, 1.0) / 0.94;
        let answer_probability = match caller.archetype {
            _ if surge => 0.75 * relative,
            Archetype::PocketDialer => 0.8 * relative,
            _ => 0.94 * relative,
        };
        let answered = rng.random_bool(answer_probability.clamp(0.0, 1.0));
        let (ring_s, talk_s, disposition, operator_id) = if answered {
            let label = operator_label(rng, nature, &world);
            let operator_id = format!("op-{}", rng.random_range(1..=60));
            (
                round_to(rng.random_range(1.0..12.0), 10.0),
                round_to(rng.random_range(talk_from..=talk_to), 10.0),
                label,
                Some(operator_id),
            )
        } else {
            let unknown = world.unanswered_unknown_share.clamp(0.0, 1.0);
            let label = if rng.random_bool(unknown) { Disposition::Unknown } else { Disposition::Silent };
            (round_to(rng.random_range(15.0..60.0), 10.0), 0.0, label, None)
        };
        let category = (disposition == Disposition::GenuineEmergency).then(|| pick(rng, CATEGORIES).to_string());
        let outcome_offset = offset_seconds + (ring_s + talk_s).ceil() as i64 + rng.random_range(2..=20);
        let contact = ContactEvent {
            contact_id: String::new(),
            at: self.start + Duration::seconds(offset_seconds),
            caller: number.filter(|_| !withheld).map(|number| render_number(rng, number)),
            channel,
            region: self.regions[caller.region_index].code.clone(),
            sim_present: !sim_less,
            device_id: carries_device.then(|| caller.device_id.clone()),
            lat: location.map(|location| location.0),
            lon: location.map(|location| location.1),
            accuracy_m: location.map(|location| location.2),
        };
        let outcome = OutcomeEvent {
            contact_id: String::new(),
            at: self.start + Duration::seconds(outcome_offset),
            answered,
            ring_s,
            talk_s,
            disposition,
            category,
            operator_id,
        };
        self.plans.push(PlannedContact { offset_seconds, archetype: caller.archetype, contact, outcome });
    }
}

/// The operator's label for an answered contact: some pranks go unknown, and some labels are wrong (by default
/// 12% and 3%).
fn operator_label(rng: &mut ChaCha8Rng, nature: Disposition, world: &WorldParams) -> Disposition {
    if nature == Disposition::Prank && rng.random_bool(world.prank_unknown_share.clamp(0.0, 1.0)) {
        return Disposition::Unknown;
    }
    if !rng.random_bool(world.label_noise.clamp(0.0, 1.0)) {
        return nature;
    }
    // Any labelled disposition (ALL[..7], UNKNOWN is last) other than the true one.
    let index = rng.random_range(0..6);
    Disposition::ALL[if index >= nature.index() { index + 1 } else { index }]
}

fn pick_index(rng: &mut ChaCha8Rng, weights: impl Iterator<Item = f64> + Clone) -> usize {
    let clean = |weight: f64| if weight.is_finite() && weight > 0.0 { weight } else { 0.0 };
    let total: f64 = weights.clone().map(clean).sum();
    if total <= 0.0 {
        return rng.random_range(0..weights.count().max(1));
    }
    let mut roll = rng.random::<f64>() * total;
    let mut last_positive = 0;
    for (index, weight) in weights.map(clean).enumerate() {
        if weight > 0.0 {
            if roll < weight {
                return index;
            }
            roll -= weight;
            last_positive = index;
        }
    }
    last_positive
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, options: &[(T, f64)]) -> T {
    options[pick_index(rng, options.iter().map(|option| option.1))].0
}

fn round_to(value: f64, scale: f64) -> f64 {
    (value * scale).round() / scale
}

/// A mobile number in national form without the leading 0: `8xx` and 9–12 digits (10–13 written as `08…`).
fn new_national_number(rng: &mut ChaCha8Rng) -> String {
    let mut number = MOBILE_PREFIXES[rng.random_range(0..MOBILE_PREFIXES.len())].to_string();
    let length = pick(rng, &[(9, 1.0), (10, 3.0), (11, 5.0), (12, 2.0)]);
    while number.len() < length {
        number.push(char::from(b'0' + rng.random_range(0..10u8)));
    }
    number
}

/// Writes a national number the way people and switches do: `08…`, `628…`, `+628…`, `0812-3456-7890`, `+62 812 …`.
fn render_number(rng: &mut ChaCha8Rng, national: &str) -> String {
    let roll: f64 = rng.random();
    if roll < 0.45 {
        return format!("0{national}");
    } else if roll < 0.7 {
        return format!("62{national}");
    } else if roll < 0.9 {
        return format!("+62{national}");
    }
    let separator = if rng.random_bool(0.5) { '-' } else { ' ' };
    let (head, tail) = national.split_at(3);
    let mut grouped = String::with_capacity(16);
    for (index, digit) in tail.chars().enumerate() {
        if index % 4 == 0 && tail.len() - index >= 3 {
            grouped.push(separator);
        }
        grouped.push(digit);
    }
    if rng.random_bool(0.5) {
        format!("0{head}{grouped}")
    } else {
        format!("+62 {head}{grouped}")
    }
}

/// A 15-digit IMEI: a handset-like type allocation code, a serial and the Luhn check digit.
fn new_device_id(rng: &mut ChaCha8Rng) -> String {
    let mut digits: Vec<u32> = if rng.random_bool(0.5) { vec![3, 5] } else { vec![8, 6] };
    while digits.len() < 14 {
        digits.push(rng.random_range(0..10));
    }
    let luhn_sum: u32 = digits
        .iter()
        .enumerate()
        .map(|(index, &digit)| if index % 2 == 1 { (digit * 2) / 10 + (digit * 2) % 10 } else { digit })
        .sum();
    digits.push((10 - luhn_sum % 10) % 10);
    digits.iter().filter_map(|&digit| char::from_digit(digit, 10)).collect()
}

/// Approximate centre of a region; unknown codes get a stable point inside Indonesia's bounding box.
fn region_centre(code: &str) -> (f64, f64) {
    match code {
        "dki.jakarta" => (-6.2, 106.85),
        "jabar.bandung" => (-6.91, 107.61),
        "jatim.surabaya" => (-7.25, 112.75),
        "sumut.medan" => (3.59, 98.67),
        "sulsel.makassar" => (-5.14, 119.42),
        "bali.denpasar" => (-8.65, 115.22),
        "ntt.kupang" => (-10.17, 123.6),
        "papua.jayapura" => (-2.53, 140.72),
        _ => {
            let hash = code
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3));
            (-10.0 + (hash % 1000) as f64 * 0.015, 96.0 + ((hash / 1000) % 1000) as f64 * 0.044)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    fn small_config(seed: u64) -> SimulationConfig {
        SimulationConfig { seed, days: 10, callers: 800, ..SimulationConfig::default() }
    }

    fn contacts_and_outcomes(events: &[Event]) -> (Vec<&ContactEvent>, Vec<&OutcomeEvent>) {
        let contacts = events.iter().filter_map(|event| if let Event::Contact(c) = event { Some(c) } else { None });
        let outcomes = events.iter().filter_map(|event| if let Event::Outcome(o) = event { Some(o) } else { None });
        (contacts.collect(), outcomes.collect())
    }

    #[test]
    fn same_seed_gives_the_same_events_and_another_seed_does_not() {
        let first = simulate(&small_config(7));
        assert!(!first.is_empty());
        assert_eq!(first, simulate(&small_config(7)));
        assert_ne!(first, simulate(&small_config(8)));
    }

    #[test]
    fn events_are_in_time_order_in_whole_seconds_within_the_period() {
        let config = small_config(3);
        let events = simulate(&config);
        let end = config.start + Duration::days(i64::from(config.days));
        assert!(events.windows(2).all(|pair| pair[0].at() <= pair[1].at()));
        assert!(events.iter().all(|event| event.at().nanosecond() == 0 && event.at().offset().is_utc()));
        let (contacts, outcomes) = contacts_and_outcomes(&events);
        assert!(contacts.iter().all(|contact| contact.at >= config.start && contact.at < end));
        assert!(outcomes.iter().all(|outcome| outcome.at < end + Duration::hours(1)));
    }

    #[test]
    fn each_contact_has_a_unique_id_and_at_most_one_later_outcome() {
        let config = small_config(5);
        let events = simulate(&config);
        let (contacts, outcomes) = contacts_and_outcomes(&events);
        let arrival: HashMap<&str, OffsetDateTime> =
            contacts.iter().map(|contact| (contact.contact_id.as_str(), contact.at)).collect();
        assert_eq!(arrival.len(), contacts.len(), "contact ids are unique");
        assert!(contacts.iter().all(|contact| contact.contact_id.starts_with("s5-c")));
        let mut seen = HashSet::new();
        for outcome in outcomes {
            let contact_at = arrival[outcome.contact_id.as_str()];
            let busy = Duration::seconds_f64(outcome.ring_s + outcome.talk_s);
            assert!(outcome.at > contact_at + busy, "{outcome:?}");
            assert!(seen.insert(outcome.contact_id.as_str()), "two outcomes for {}", outcome.contact_id);
        }
    }

    #[test]
    fn numbers_need_normalising_and_are_indonesian_mobiles() {
        let events = simulate(&small_config(11));
        let (contacts, _) = contacts_and_outcomes(&events);
        let numbers: Vec<&str> = contacts.iter().filter_map(|contact| contact.caller.as_deref()).collect();
        assert!(numbers.iter().any(|number| number.starts_with("08")) && numbers.iter().any(|n| n.starts_with('+')));
        for number in numbers {
            let normalised = saring_models::phone::normalise_indonesian_number(number).expect(number);
            assert!(normalised.starts_with("+628") && (12..=15).contains(&normalised.len()), "{number}");
        }
        assert!(contacts.iter().all(|contact| contact.device_id.as_ref().is_none_or(|id| id.len() == 15)));
        assert!(contacts.iter().all(|contact| contact.sim_present || contact.caller.is_none()));
    }

    #[test]
    fn region_profiles_parse_with_clear_errors() {
        let profiles = parse_region_profiles("ntt.kupang=0.5:2, jatim.surabaya=3").expect("valid spec");
        assert_eq!(
            profiles[0],
            RegionProfile { code: "ntt.kupang".into(), misuse_multiplier: 0.5, population_weight: 2.0 }
        );
        assert_eq!((profiles[1].misuse_multiplier, profiles[1].population_weight), (3.0, 1.0));
        for (spec, expected) in [
            ("", "no regions"),
            ("ntt.kupang", "expected code="),
            ("NTT=1", "not a region code"),
            ("ntt.kupang=lots", "is not a number"),
            ("ntt.kupang=-1", "≥ 0"),
            ("ntt.kupang=1:0", "greater than 0"),
            ("ntt.kupang=1:x", "population weight `x`"),
            ("bali=1,bali=2", "given twice"),
            ("zzz.foo=1", "known province"),
        ] {
            let error = parse_region_profiles(spec).expect_err(spec).to_string();
            assert!(error.contains(expected), "{spec}: {error}");
        }
    }

    #[test]
    fn misuse_share_follows_the_region_multiplier_and_every_archetype_appears() {
        let config = SimulationConfig::default();
        let archetypes: HashSet<_> = plan_contacts(&config).iter().map(|plan| plan.archetype as usize).collect();
        assert_eq!(archetypes.len(), Archetype::ALL.len());
        let events = simulate(&config);
        let (contacts, outcomes) = contacts_and_outcomes(&events);
        let region_of: HashMap<&str, &str> =
            contacts.iter().map(|contact| (contact.contact_id.as_str(), contact.region.as_str())).collect();
        let mut counts: HashMap<&str, (u32, u32)> = HashMap::new();
        for outcome in outcomes.iter().filter(|outcome| outcome.disposition.is_labelled()) {
            let entry = counts.entry(region_of[outcome.contact_id.as_str()]).or_default();
            entry.0 += u32::from(outcome.disposition.is_misuse());
            entry.1 += 1;
        }
        let share = |region: &str| f64::from(counts[region].0) / f64::from(counts[region].1);
        assert!(share("sulsel.makassar") > share("ntt.kupang") + 0.2);
        assert!(share("sulsel.makassar") > 0.6 && share("bali.denpasar") < 0.4);
    }
}
