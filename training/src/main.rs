//! `saring-train`: simulate traffic, fit a model, evaluate it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use saring_models::{Model, ModelArtifact};
use saring_training::evaluate::evaluate;
use saring_training::events::{read_event_file, write_events};
use saring_training::fit::{fit, FitOptions, FitOutput};
use saring_training::replay::replay;
use saring_training::simulate::{parse_region_profiles, simulate, SimulationConfig};
use sha2::{Digest, Sha256};

#[derive(Parser)]
#[command(name = "saring-train", version, about = "Simulate 110 traffic, train and evaluate saring's model")]
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
    },
    /// Train candidates on an event log and write the best as a model artifact.
    Fit {
        /// Event log.
        #[arg(long)]
        events: PathBuf,
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
        /// Learner kinds to try, comma-separated (logistic, forest, boosted); all by default.
        #[arg(long, value_delimiter = ',')]
        learners: Vec<String>,
        /// Also write every candidate's fit time and validation/test ROC-AUC and PR-AUC as JSON (for benchmarks).
        #[arg(long)]
        summary_out: Option<PathBuf>,
    },
    /// Replay an event log, score each contact at arrival, and print metrics.
    Evaluate {
        /// Model artifact.
        #[arg(long)]
        model: PathBuf,
        /// Event log.
        #[arg(long)]
        events: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Write {"contact_id","prank_likelihood","band"} per contact as JSON Lines.
        #[arg(long)]
        predictions_out: Option<PathBuf>,
        /// Fail on the first bad line instead of skipping it.
        #[arg(long)]
        strict: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Simulate { out, seed, days, callers, start, regions } => {
            let mut config = SimulationConfig { seed, days, callers, ..SimulationConfig::default() };
            if let Some(start) = start {
                config.start = time::OffsetDateTime::parse(&start, &time::format_description::well_known::Rfc3339)
                    .with_context(|| format!("--start {start:?} is not an RFC 3339 time"))?;
            }
            if let Some(regions) = regions {
                config.regions = parse_region_profiles(&regions)?;
            }
            let events = simulate(&config);
            let file = File::create(&out).with_context(|| format!("cannot create {}", out.display()))?;
            write_events(BufWriter::new(file), &events)?;
            eprintln!("wrote {} events to {}", events.len(), out.display());
        }
        Command::Fit { events, out, high_precision, elevated_precision, seed, strict, learners, summary_out } => {
            let bytes = std::fs::read(&events).with_context(|| format!("cannot read {}", events.display()))?;
            let data_fingerprint = Sha256::digest(&bytes).iter().map(|byte| format!("{byte:02x}")).collect();
            let log = read_event_file(&events, strict)?;
            let replayed = replay(&log);
            let options = FitOptions {
                high_precision,
                elevated_precision,
                seed,
                data_fingerprint,
                data_source: events.display().to_string(),
                learners,
            };
            let FitOutput { artifact, summary } = fit(&replayed, &options)?;
            if let Some(path) = summary_out {
                std::fs::write(&path, serde_json::to_string_pretty(&summary)?)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            std::fs::write(&out, artifact.to_json()).with_context(|| format!("cannot write {}", out.display()))?;
            let test = &artifact.card["metrics"]["test"];
            eprintln!(
                "wrote {} ({}) — test ROC-AUC {:.4}, PR-AUC {:.4}",
                out.display(),
                artifact.model_version,
                test["roc_auc"].as_f64().unwrap_or(f64::NAN),
                test["pr_auc"].as_f64().unwrap_or(f64::NAN)
            );
        }
        Command::Evaluate { model, events, json, predictions_out, strict } => {
            let text = std::fs::read_to_string(&model).with_context(|| format!("cannot read {}", model.display()))?;
            let model = Model::new(ModelArtifact::from_json(&text).with_context(|| format!("{}", model.display()))?);
            let replayed = replay(&read_event_file(&events, strict)?);
            let (evaluation, predictions) = evaluate(&model, &replayed.rows);
            if let Some(path) = predictions_out {
                let mut writer =
                    BufWriter::new(File::create(&path).with_context(|| format!("cannot create {}", path.display()))?);
                for prediction in &predictions {
                    serde_json::to_writer(&mut writer, prediction)?;
                    writer.write_all(b"\n")?;
                }
                writer.flush()?;
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
    }
    Ok(())
}
