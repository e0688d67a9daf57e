//! `saring-train`: simulate traffic, fit a model, evaluate it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use saring_models::{Model, ModelArtifact};
use saring_training::capture::training_rows;
use saring_training::dataset::write_dataset;
use saring_training::evaluate::evaluate;
use saring_training::events::{read_event_file, write_events};
use saring_training::exit::{self, BadData, Input, Output, Refused, Usage};
use saring_training::fit::{fit, FitOptions, FitOutput, DEFAULT_HIGH_RECALL_FLOOR, DEFAULT_MAX_SLOW_TRAIN_ROWS};
use saring_training::generalisation::{measure, GeneralisationConfig};
use saring_training::replay::replay;
use saring_training::report::write_report;
use saring_training::simulate::{parse_region_profiles, simulate, SimulationConfig};
use saring_training::worlds::{draw_worlds, simulate_worlds, WorldRanges};

#[derive(Parser)]
#[command(
    name = "saring-train",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("SARING_GIT_COMMIT"), ")"),
    about = "Simulate 110 traffic, train and evaluate saring's model"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a simulated event log (JSON Lines).
    Simulate {
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Days of traffic.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Size of the caller population.
        #[arg(long, default_value_t = 5000)]
        callers: u32,
        /// First day, RFC 3339 (default 2026-03-01T00:00:00Z).
        #[arg(long)]
        start: Option<String>,
        /// Regions as code=misuse_multiplier[:population_weight],... (default: seven regions).
        #[arg(long)]
        regions: Option<String>,
        /// Simulate N domain-randomised worlds drawn from --seed (each with --callers callers) and merge them.
        #[arg(long, value_name = "N")]
        worlds: Option<usize>,
        /// Ranges the worlds are drawn from: `training`, or `held-out` (outside every training range).
        #[arg(long, default_value = "training", requires = "worlds")]
        world_ranges: WorldRanges,
    },
    /// Train candidates on an event log, or on the service's capture, and write the best as a model artifact.
    Fit {
        /// Event log.
        #[arg(long, required_unless_present = "capture", conflicts_with = "capture")]
        events: Option<PathBuf>,
        /// Capture directories (`saring serve --capture`), comma-separated: train on the features as scored.
        #[arg(long, value_delimiter = ',', value_name = "DIR[,DIR...]")]
        capture: Vec<PathBuf>,
        /// Artifact to write.
        #[arg(long)]
        out: PathBuf,
        /// Precision targeted for the HIGH band on validation data.
        #[arg(long, default_value_t = 0.95)]
        high_precision: f64,
        /// Precision targeted for the ELEVATED band on validation data.
        #[arg(long, default_value_t = 0.6)]
        elevated_precision: f64,
        /// Seed for randomised learners.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Fail on the first bad line instead of skipping it.
        #[arg(long)]
        strict: bool,
        /// Learner kinds to try, comma-separated (logistic, forest, boosted, or all); logistic and boosted by
        /// default (smartcore's forest is slow and never won on validation).
        #[arg(long, value_delimiter = ',')]
        learners: Vec<String>,
        /// Most training rows logistic regression and the forest train on (a larger training range is sampled
        /// down, seeded); the boosted trees always train on every row.
        #[arg(long, default_value_t = DEFAULT_MAX_SLOW_TRAIN_ROWS)]
        max_slow_train_rows: usize,
        /// Also write every candidate's fit time and validation/test ROC-AUC and PR-AUC as JSON (for benchmarks).
        #[arg(long)]
        summary_out: Option<PathBuf>,
        /// Least share of validation misuse HIGH must hold; when the HIGH precision target cannot be reached at
        /// that recall, the best attainable precision is taken (and the card says so).
        #[arg(long, default_value_t = DEFAULT_HIGH_RECALL_FLOOR)]
        high_recall_floor: f64,
        /// Write the model even if it does not beat the naive rule on the test range (the card records it).
        #[arg(long)]
        allow_worse_than_naive: bool,
    },
    /// Train on domain-randomised worlds and report, per held-out world outside every training range, model
    /// ROC-AUC minus naive-rule ROC-AUC (a Markdown table on stdout).
    Generalisation {
        /// Seed the training worlds are drawn from (as in `simulate --worlds`).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Training worlds.
        #[arg(long, default_value_t = 12)]
        worlds: usize,
        /// Seed the held-out worlds are drawn from.
        #[arg(long, default_value_t = 1001)]
        held_out_seed: u64,
        /// Held-out worlds.
        #[arg(long, default_value_t = 8)]
        held_out_worlds: usize,
        /// Days of traffic per world.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Callers per training world.
        #[arg(long, default_value_t = 1500)]
        callers: u32,
        /// Callers per held-out world (default: --callers).
        #[arg(long)]
        held_out_callers: Option<u32>,
        /// Measure this model instead of training one on the training worlds.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Learner kinds to try when training (logistic, forest, boosted, or all); logistic and boosted by default.
        #[arg(long, value_delimiter = ',')]
        learners: Vec<String>,
        /// Also write the measurement as JSON.
        #[arg(long)]
        json_out: Option<PathBuf>,
        /// Exit non-zero unless every held-out world's margin is positive.
        #[arg(long)]
        require_positive: bool,
    },
    /// Replay an event log, score each contact at arrival, and print metrics.
    Evaluate {
        /// Model artifact.
        #[arg(long)]
        model: PathBuf,
        /// Event log.
        #[arg(long, required_unless_present = "capture", conflicts_with = "capture")]
        events: Option<PathBuf>,
        /// Capture directories (`saring serve --capture`), comma-separated: score the features as scored.
        #[arg(long, value_delimiter = ',', value_name = "DIR[,DIR...]")]
        capture: Vec<PathBuf>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Write {"contact_id","prank_likelihood","band"} per contact as JSON Lines.
        #[arg(long)]
        predictions_out: Option<PathBuf>,
        /// Write DIR/report.md with PNG plots and slices.
        #[arg(long, value_name = "DIR")]
        report: Option<PathBuf>,
        /// Score only contacts from the start of the model card's test range (use with the model's own training log;
        /// features still see the whole history before each contact).
        #[arg(long)]
        test_range: bool,
        /// Fail on the first bad line instead of skipping it.
        #[arg(long)]
        strict: bool,
    },
    /// Export the replayed feature matrix as CSV with the time-based split, label and slice columns.
    Dataset {
        /// Event log.
        #[arg(long)]
        events: PathBuf,
        /// CSV file to write.
        #[arg(long)]
        out: PathBuf,
        /// Fail on the first bad line instead of skipping it.
        #[arg(long)]
        strict: bool,
    },
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:?}");
            std::process::ExitCode::from(exit::code(&error))
        }
    }
}

fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Simulate { out, seed, days, callers, start, regions, worlds, world_ranges } => {
            let mut config = SimulationConfig { seed, days, callers, ..SimulationConfig::default() };
            if let Some(start) = start {
                config.start = time::OffsetDateTime::parse(&start, &time::format_description::well_known::Rfc3339)
                    .with_context(|| Usage(format!("--start {start:?} is not an RFC 3339 time")))?;
            }
            if let Some(regions) = regions {
                config.regions = parse_region_profiles(&regions)?;
            }
            let events = match worlds {
                Some(count) => {
                    let worlds = draw_worlds(seed, count, world_ranges);
                    for world in &worlds {
                        eprintln!("world {}: {}", world.seed, serde_json::to_string(&world.params)?);
                    }
                    simulate_worlds(&config, &worlds)
                }
                None => simulate(&config),
            };
            let file = File::create(&out).with_context(|| Output(format!("cannot create {}", out.display())))?;
            write_events(BufWriter::new(file), &events)
                .with_context(|| Output(format!("cannot write {}", out.display())))?;
            eprintln!("wrote {} events to {}", events.len(), out.display());
        }
        Command::Fit {
            events,
            capture,
            out,
            high_precision,
            elevated_precision,
            seed,
            strict,
            learners,
            summary_out,
            high_recall_floor,
            allow_worse_than_naive,
            max_slow_train_rows,
        } => {
            if max_slow_train_rows < 100 {
                return Err(Usage("--max-slow-train-rows must be at least 100".into()).into());
            }
            if !(0.0..=1.0).contains(&high_recall_floor) {
                return Err(
                    Usage(format!("--high-recall-floor must lie between 0 and 1, got {high_recall_floor}")).into()
                );
            }
            let (replayed, data_fingerprint, data_source) = training_rows(events.as_deref(), &capture, strict)?;
            let options = FitOptions {
                high_precision,
                elevated_precision,
                seed,
                data_fingerprint,
                data_source,
                learners,
                high_recall_floor,
                allow_worse_than_naive,
                max_slow_train_rows,
            };
            let FitOutput { artifact, summary } = fit(&replayed, &options)?;
            if let Some(path) = summary_out {
                std::fs::write(&path, serde_json::to_string_pretty(&summary)?)
                    .with_context(|| Output(format!("cannot write {}", path.display())))?;
            }
            std::fs::write(&out, artifact.to_json())
                .with_context(|| Output(format!("cannot write {}", out.display())))?;
            let test = &artifact.card["metrics"]["test"];
            eprintln!(
                "wrote {} ({}) — test ROC-AUC {:.4}, PR-AUC {:.4}",
                out.display(),
                artifact.model_version,
                test["roc_auc"].as_f64().unwrap_or(f64::NAN),
                test["pr_auc"].as_f64().unwrap_or(f64::NAN)
            );
        }
        Command::Evaluate { model, events, capture, json, predictions_out, report, test_range, strict } => {
            let text =
                std::fs::read_to_string(&model).with_context(|| Input(format!("cannot read {}", model.display())))?;
            let model =
                Model::new(ModelArtifact::from_json(&text).with_context(|| BadData(format!("{}", model.display())))?);
            let (mut replayed, _, mut source) = training_rows(events.as_deref(), &capture, strict)?;
            if test_range {
                let from = model.artifact().card["data"]["test"]["from"]
                    .as_str()
                    .context("--test-range: the model card has no data.test.from")?;
                let from_ms = (time::OffsetDateTime::parse(from, &time::format_description::well_known::Rfc3339)?
                    .unix_timestamp_nanos()
                    / 1_000_000) as i64;
                replayed.rows.retain(|row| row.at_ms >= from_ms);
                source = format!("{source}, contacts from {from} (the model's held-out test range)");
            }
            let (evaluation, predictions) = evaluate(&model, &replayed.rows);
            if let Some(directory) = report {
                write_report(&directory, &model, &replayed.rows, &evaluation, &source)?;
                eprintln!("wrote {}", directory.join("report.md").display());
            }
            if let Some(path) = predictions_out {
                let mut writer = BufWriter::new(
                    File::create(&path).with_context(|| Output(format!("cannot create {}", path.display())))?,
                );
                for prediction in &predictions {
                    serde_json::to_writer(&mut writer, prediction)
                        .with_context(|| Output(format!("cannot write {}", path.display())))?;
                    writer.write_all(b"\n").with_context(|| Output(format!("cannot write {}", path.display())))?;
                }
                writer.flush().with_context(|| Output(format!("cannot write {}", path.display())))?;
            }
            if json {
                println!("{}", serde_json::to_string(&evaluation)?);
            } else {
                print!("{}", evaluation.to_text());
                if replayed.invalid_contacts + replayed.orphan_outcomes + replayed.duplicate_outcomes > 0 {
                    println!(
                        "skipped: {} contacts with invalid numbers, {} outcomes without a contact, {} repeated outcomes",
                        replayed.invalid_contacts, replayed.orphan_outcomes, replayed.duplicate_outcomes
                    );
                }
            }
        }
        Command::Generalisation {
            seed,
            worlds,
            held_out_seed,
            held_out_worlds,
            days,
            callers,
            held_out_callers,
            model,
            learners,
            json_out,
            require_positive,
        } => {
            let artifact = match &model {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| Input(format!("cannot read {}", path.display())))?;
                    Some(ModelArtifact::from_json(&text).with_context(|| BadData(format!("{}", path.display())))?)
                }
                None => None,
            };
            let config = GeneralisationConfig {
                base: SimulationConfig { days, callers, ..SimulationConfig::default() },
                training_seed: seed,
                training_worlds: worlds,
                held_out_seed,
                held_out_worlds,
                held_out_callers,
                fit: FitOptions { learners, allow_worse_than_naive: true, ..FitOptions::default() },
            };
            let result = measure(&config, artifact)?;
            let command: Vec<String> = std::env::args().skip(1).collect();
            println!("`saring-train {}`\n\n{}", command.join(" "), result.to_markdown());
            if let Some(path) = json_out {
                std::fs::write(&path, serde_json::to_string_pretty(&result)?)
                    .with_context(|| Output(format!("cannot write {}", path.display())))?;
            }
            if require_positive && !result.every_margin_positive() {
                return Err(Refused("the model does not beat the naive rule on every held-out world".into()).into());
            }
        }
        Command::Dataset { events, out, strict } => {
            let replayed = replay(&read_event_file(&events, strict)?);
            let file = File::create(&out).with_context(|| Output(format!("cannot create {}", out.display())))?;
            let rows = write_dataset(BufWriter::new(file), &replayed.rows)
                .with_context(|| Output(format!("cannot write {}", out.display())))?;
            eprintln!("wrote {rows} rows to {}", out.display());
        }
    }
    Ok(())
}
