//! Domain randomisation: many simulated worlds whose behaviour and labelling vary widely, for training a cold-start
//! model that does not learn one simulator's quirks, and held-out worlds whose every parameter lies outside the
//! training ranges, for measuring whether it generalises.
//!
//! | parameter | training worlds | held-out worlds (below / above) |
//! |---|---|---|
//! | misuse scale (× each region's multiplier) | 0.3–4 | 0.04–0.12 / 8–25 |
//! | weight of each misuse archetype | 0.4–2.5 | 0.1–0.25 / 3.5–6 |
//! | misusers' contact rate | × 0.7–1.4 | × 0.35–0.55 / × 1.7–2.5 |
//! | genuine callers' contact rate | × 0.7–1.4 | × 0.35–0.55 / × 1.7–2.5 |
//! | misusers' talk time | × 0.7–1.5 | × 0.3–0.55 / × 1.8–3 |
//! | weight of silent calls among misusers' calls | × 0.5–1.5 | × 0.05–0.3 / × 2–3 |
//! | night-heavy share of misusers' hours | 0.35–1 | 0–0.2 / – |
//! | label noise | 0–5% | – / 6–10% |
//! | answered pranks labelled UNKNOWN | 6–20% | 0–3% / 25–35% |
//! | answer rate | 88–96% | 75–84% / 97.5–99.5% |
//! | unanswered contacts labelled UNKNOWN | 60–90% | 30–50% / 95–100% |
//! | misusers withholding their number | 4–12% | 0–2% / 16–25% |
//!
//! The default world ([`WorldParams::default`]) lies inside the training ranges. Scales marked × and the weights are
//! drawn log-uniformly, the rest uniformly; a held-out world picks, for each parameter, the band below or above
//! at random (or the only one there is).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::events::Event;
use crate::simulate::{simulate, SimulationConfig, WorldParams};

/// Which ranges a world is drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorldRanges {
    /// The training ranges.
    Training,
    /// Outside the training ranges on every parameter.
    HeldOut,
}

impl std::str::FromStr for WorldRanges {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        match text {
            "training" => Ok(WorldRanges::Training),
            "held-out" => Ok(WorldRanges::HeldOut),
            other => anyhow::bail!("world ranges `{other}`: expected `training` or `held-out`"),
        }
    }
}

/// One parameter's ranges: the training interval and the held-out intervals below and above it.
struct ParameterRanges {
    training: (f64, f64),
    below: Option<(f64, f64)>,
    above: Option<(f64, f64)>,
    log: bool,
}

const fn ranges(
    training: (f64, f64),
    below: Option<(f64, f64)>,
    above: Option<(f64, f64)>,
    log: bool,
) -> ParameterRanges {
    ParameterRanges { training, below, above, log }
}

const MISUSE_SCALE: ParameterRanges = ranges((0.3, 4.0), Some((0.04, 0.12)), Some((8.0, 25.0)), true);
const ARCHETYPE_WEIGHT: ParameterRanges = ranges((0.4, 2.5), Some((0.1, 0.25)), Some((3.5, 6.0)), true);
const MISUSE_ACTIVITY: ParameterRanges = ranges((0.7, 1.4), Some((0.35, 0.55)), Some((1.7, 2.5)), true);
const GENUINE_ACTIVITY: ParameterRanges = ranges((0.7, 1.4), Some((0.35, 0.55)), Some((1.7, 2.5)), true);
const MISUSE_TALK_SCALE: ParameterRanges = ranges((0.7, 1.5), Some((0.3, 0.55)), Some((1.8, 3.0)), true);
const MISUSE_SILENT_WEIGHT: ParameterRanges = ranges((0.5, 1.5), Some((0.05, 0.3)), Some((2.0, 3.0)), true);
const MISUSE_NIGHT_WEIGHT: ParameterRanges = ranges((0.35, 1.0), Some((0.0, 0.2)), None, false);
const LABEL_NOISE: ParameterRanges = ranges((0.0, 0.05), None, Some((0.06, 0.10)), false);
const PRANK_UNKNOWN_SHARE: ParameterRanges = ranges((0.06, 0.2), Some((0.0, 0.03)), Some((0.25, 0.35)), false);
const ANSWER_RATE: ParameterRanges = ranges((0.88, 0.96), Some((0.75, 0.84)), Some((0.975, 0.995)), false);
const UNANSWERED_UNKNOWN_SHARE: ParameterRanges = ranges((0.6, 0.9), Some((0.3, 0.5)), Some((0.95, 1.0)), false);
const MISUSE_WITHHOLD_SHARE: ParameterRanges = ranges((0.04, 0.12), Some((0.0, 0.02)), Some((0.16, 0.25)), false);

impl ParameterRanges {
    fn draw(&self, rng: &mut ChaCha8Rng, which: WorldRanges) -> f64 {
        let (low, high) = match (which, self.below, self.above) {
            (WorldRanges::Training, _, _) => self.training,
            (WorldRanges::HeldOut, Some(below), Some(above)) => {
                if rng.random_bool(0.5) {
                    below
                } else {
                    above
                }
            }
            (WorldRanges::HeldOut, Some(only), None) | (WorldRanges::HeldOut, None, Some(only)) => only,
            (WorldRanges::HeldOut, None, None) => self.training,
        };
        let unit: f64 = rng.random();
        if self.log && low > 0.0 {
            (low.ln() + unit * (high.ln() - low.ln())).exp()
        } else {
            low + unit * (high - low)
        }
    }

    fn contains_training(&self, value: f64) -> bool {
        (self.training.0..=self.training.1).contains(&value)
    }
}

/// One simulated world: its seed and parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct World {
    /// The simulator's seed for this world (also the prefix of its contact ids, `s{seed}-c…`).
    pub seed: u64,
    /// How it behaves.
    pub params: WorldParams,
}

/// The seed of the `index`-th world drawn from `seed`: distinct per (seed, index) and far from small seeds.
fn world_seed(seed: u64, index: usize) -> u64 {
    // SplitMix64 of the pair.
    let mut z = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(index as u64 + 1);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) % 1_000_000_000_000
}

/// Draws `count` worlds from `ranges`, deterministically from `seed`.
pub fn draw_worlds(seed: u64, count: usize, which: WorldRanges) -> Vec<World> {
    let salt = match which {
        WorldRanges::Training => 0x7472_6169_6e00,
        WorldRanges::HeldOut => 0x6865_6c64_6f75,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ salt);
    (0..count)
        .map(|index| {
            let mut draw = |ranges: &ParameterRanges| ranges.draw(&mut rng, which);
            let params = WorldParams {
                misuse_scale: draw(&MISUSE_SCALE),
                archetype_weights: [
                    draw(&ARCHETYPE_WEIGHT),
                    draw(&ARCHETYPE_WEIGHT),
                    draw(&ARCHETYPE_WEIGHT),
                    draw(&ARCHETYPE_WEIGHT),
                    draw(&ARCHETYPE_WEIGHT),
                ],
                misuse_activity: draw(&MISUSE_ACTIVITY),
                genuine_activity: draw(&GENUINE_ACTIVITY),
                misuse_talk_scale: draw(&MISUSE_TALK_SCALE),
                misuse_silent_weight: draw(&MISUSE_SILENT_WEIGHT),
                misuse_night_weight: draw(&MISUSE_NIGHT_WEIGHT),
                label_noise: draw(&LABEL_NOISE),
                prank_unknown_share: draw(&PRANK_UNKNOWN_SHARE),
                answer_rate: draw(&ANSWER_RATE),
                unanswered_unknown_share: draw(&UNANSWERED_UNKNOWN_SHARE),
                misuse_withhold_share: draw(&MISUSE_WITHHOLD_SHARE),
            };
            World { seed: world_seed(seed, index), params }
        })
        .collect()
}

/// Whether every parameter of `params` lies inside the training ranges.
pub fn inside_training_ranges(params: &WorldParams) -> bool {
    MISUSE_SCALE.contains_training(params.misuse_scale)
        && params.archetype_weights.iter().all(|weight| ARCHETYPE_WEIGHT.contains_training(*weight))
        && MISUSE_ACTIVITY.contains_training(params.misuse_activity)
        && GENUINE_ACTIVITY.contains_training(params.genuine_activity)
        && MISUSE_TALK_SCALE.contains_training(params.misuse_talk_scale)
        && MISUSE_SILENT_WEIGHT.contains_training(params.misuse_silent_weight)
        && MISUSE_NIGHT_WEIGHT.contains_training(params.misuse_night_weight)
        && LABEL_NOISE.contains_training(params.label_noise)
        && PRANK_UNKNOWN_SHARE.contains_training(params.prank_unknown_share)
        && ANSWER_RATE.contains_training(params.answer_rate)
        && UNANSWERED_UNKNOWN_SHARE.contains_training(params.unanswered_unknown_share)
        && MISUSE_WITHHOLD_SHARE.contains_training(params.misuse_withhold_share)
}

/// Whether every parameter of `params` lies outside the training ranges.
pub fn outside_training_ranges(params: &WorldParams) -> bool {
    !MISUSE_SCALE.contains_training(params.misuse_scale)
        && params.archetype_weights.iter().all(|weight| !ARCHETYPE_WEIGHT.contains_training(*weight))
        && !MISUSE_ACTIVITY.contains_training(params.misuse_activity)
        && !GENUINE_ACTIVITY.contains_training(params.genuine_activity)
        && !MISUSE_TALK_SCALE.contains_training(params.misuse_talk_scale)
        && !MISUSE_SILENT_WEIGHT.contains_training(params.misuse_silent_weight)
        && !MISUSE_NIGHT_WEIGHT.contains_training(params.misuse_night_weight)
        && !LABEL_NOISE.contains_training(params.label_noise)
        && !PRANK_UNKNOWN_SHARE.contains_training(params.prank_unknown_share)
        && !ANSWER_RATE.contains_training(params.answer_rate)
        && !UNANSWERED_UNKNOWN_SHARE.contains_training(params.unanswered_unknown_share)
        && !MISUSE_WITHHOLD_SHARE.contains_training(params.misuse_withhold_share)
}

/// The config of one world: `base` (days, callers, start, regions) with the world's seed and parameters.
pub fn world_config(base: &SimulationConfig, world: &World) -> SimulationConfig {
    SimulationConfig { seed: world.seed, world: world.params, ..base.clone() }
}

/// Simulates every world over the same period and merges their events in time order (a stable sort: each world's
/// own order is kept). Worlds have their own callers; contact ids stay unique through the world seeds.
pub fn simulate_worlds(base: &SimulationConfig, worlds: &[World]) -> Vec<Event> {
    let mut events: Vec<Event> = worlds.iter().flat_map(|world| simulate(&world_config(base, world))).collect();
    events.sort_by_key(Event::at);
    events
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn draws_are_deterministic_and_differ_by_seed() {
        assert_eq!(draw_worlds(3, 5, WorldRanges::Training), draw_worlds(3, 5, WorldRanges::Training));
        assert_ne!(draw_worlds(3, 5, WorldRanges::Training), draw_worlds(4, 5, WorldRanges::Training));
        let seeds: HashSet<u64> = draw_worlds(3, 50, WorldRanges::Training).iter().map(|world| world.seed).collect();
        assert_eq!(seeds.len(), 50);
    }

    #[test]
    fn training_worlds_lie_inside_and_held_out_worlds_outside_every_range() {
        assert!(inside_training_ranges(&WorldParams::default()), "the default world is a training world");
        for world in draw_worlds(11, 200, WorldRanges::Training) {
            assert!(inside_training_ranges(&world.params), "{world:?}");
        }
        let held_out = draw_worlds(11, 200, WorldRanges::HeldOut);
        for world in &held_out {
            assert!(outside_training_ranges(&world.params), "{world:?}");
        }
        // Both sides of a two-sided range are used.
        assert!(held_out.iter().any(|world| world.params.misuse_scale < 0.3));
        assert!(held_out.iter().any(|world| world.params.misuse_scale > 4.0));
    }

    #[test]
    fn worlds_differ_in_misuse_share_and_merge_in_time_order() {
        let base = SimulationConfig { days: 10, callers: 1500, ..SimulationConfig::default() };
        let share = |params: WorldParams| {
            let events = simulate(&SimulationConfig { seed: 5, world: params, ..base.clone() });
            let outcomes: Vec<_> = events
                .iter()
                .filter_map(|event| match event {
                    Event::Outcome(outcome) if outcome.disposition.is_labelled() => Some(outcome.disposition),
                    _ => None,
                })
                .collect();
            outcomes.iter().filter(|disposition| disposition.is_misuse()).count() as f64 / outcomes.len() as f64
        };
        let quiet = share(WorldParams { misuse_scale: 0.05, ..WorldParams::default() });
        let noisy = share(WorldParams { misuse_scale: 20.0, ..WorldParams::default() });
        assert!(quiet < 0.15 && noisy > 0.7, "quiet {quiet}, noisy {noisy}");

        let worlds = draw_worlds(2, 3, WorldRanges::Training);
        let events = simulate_worlds(&base, &worlds);
        assert!(events.windows(2).all(|pair| pair[0].at() <= pair[1].at()));
        let mut ids = HashSet::new();
        for event in &events {
            if let Event::Contact(contact) = event {
                assert!(ids.insert(contact.contact_id.clone()), "duplicate id {}", contact.contact_id);
            }
        }
        for world in &worlds {
            let prefix = format!("s{}-c", world.seed);
            assert!(ids.iter().any(|id| id.starts_with(&prefix)), "world {} contributes contacts", world.seed);
        }
    }

    #[test]
    fn world_ranges_parse() {
        assert_eq!("training".parse::<WorldRanges>().unwrap(), WorldRanges::Training);
        assert_eq!("held-out".parse::<WorldRanges>().unwrap(), WorldRanges::HeldOut);
        assert!("sideways".parse::<WorldRanges>().unwrap_err().to_string().contains("expected"));
    }
}
