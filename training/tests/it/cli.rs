//! `saring-train simulate | fit | evaluate` run as a user runs them.

use std::path::{Path, PathBuf};
use std::process::Command;

fn saring_train(arguments: &[&str]) -> std::process::Output {
    let output = Command::new(env!("CARGO_BIN_EXE_saring-train")).args(arguments).output().expect("runs");
    assert!(output.status.success(), "saring-train {arguments:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    output
}

fn scratch(name: &str) -> PathBuf {
    let directory = std::env::temp_dir().join(format!("saring-train-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    directory
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn simulate_fit_evaluate_end_to_end() {
    let directory = scratch("e2e");
    let train = directory.join("train.jsonl");
    let holdout = directory.join("holdout.jsonl");
    let model = directory.join("model.json");
    let predictions = directory.join("predictions.jsonl");
    saring_train(&["simulate", "--out", text(&train), "--seed", "5", "--days", "20", "--callers", "2500"]);
    saring_train(&["simulate", "--out", text(&holdout), "--seed", "6", "--days", "10", "--callers", "2500"]);
    // Determinism: the same seed writes the same log.
    let again = directory.join("again.jsonl");
    saring_train(&["simulate", "--out", text(&again), "--seed", "5", "--days", "20", "--callers", "2500"]);
    assert_eq!(std::fs::read(&train).unwrap(), std::fs::read(&again).unwrap());

    saring_train(&["fit", "--events", text(&train), "--out", text(&model)]);
    let artifact: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&model).unwrap()).unwrap();
    assert_eq!(artifact["format_version"], 1);
    assert_eq!(artifact["schema"]["fingerprint"], saring_models::features::schema_fingerprint());
    assert!(artifact["card"]["label_source"].as_str().unwrap().contains("operator dispositions"));
    assert!(artifact["card"]["metrics"]["test"]["roc_auc"].as_f64().unwrap() > 0.8);
    assert!(artifact["card"]["candidates"].as_array().unwrap().len() >= 2);
    let bands = &artifact["bands"];
    assert!(bands["elevated"].as_f64().unwrap() <= bands["high"].as_f64().unwrap());
    // The naive-rule gate passed and is recorded; HIGH holds at least the recall floor of validation misuse.
    let card = &artifact["card"];
    assert_eq!(card["naive_rule"]["beats_naive"], true, "{}", card["naive_rule"]);
    assert!(card["naive_rule"]["margin"].as_f64().unwrap() > 0.0);
    let high = &card["bands"]["high_choice"];
    assert!(high["recall"].as_f64().unwrap() >= 0.2, "{high}");
    assert!(high["threshold"].as_f64().unwrap() < 1.0, "{high}");
    for band in ["low", "elevated", "high"] {
        let entry = &card["metrics"]["bands"]["test"]["per_band"][band];
        assert!(entry["recall"].as_f64().is_some() && entry["contacts"].as_u64().is_some(), "{band}: {entry}");
    }

    let output = saring_train(&[
        "evaluate",
        "--model",
        text(&model),
        "--events",
        text(&holdout),
        "--json",
        "--predictions-out",
        text(&predictions),
    ]);
    let metrics: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    for key in ["roc_auc", "pr_auc", "brier", "contacts", "labelled", "positives"] {
        assert!(metrics.get(key).is_some(), "{key} missing from {metrics}");
    }
    assert!(metrics["roc_auc"].as_f64().unwrap() > metrics["naive_roc_auc"].as_f64().unwrap());
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&predictions)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(rows.len() as u64, metrics["contacts"].as_u64().unwrap());
    for row in &rows {
        let likelihood = row["prank_likelihood"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&likelihood));
        assert!(["low", "elevated", "high"].contains(&row["band"].as_str().unwrap()));
        assert!(row["contact_id"].as_str().is_some());
    }
    std::fs::remove_dir_all(directory).ok();
}

#[test]
fn a_bad_line_is_reported_with_its_number_or_fails_in_strict_mode() {
    let directory = scratch("bad-line");
    let log = directory.join("log.jsonl");
    saring_train(&["simulate", "--out", text(&log), "--seed", "8", "--days", "2", "--callers", "300"]);
    let mut content = std::fs::read_to_string(&log).unwrap();
    content.insert_str(0, "{\"kind\":\"contact\",\"broken\":true}\n");
    std::fs::write(&log, content).unwrap();
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/artifacts/default.json");
    let output = saring_train(&["evaluate", "--model", shipped, "--events", text(&log)]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("line 1: skipped"));
    let strict = Command::new(env!("CARGO_BIN_EXE_saring-train"))
        .args(["evaluate", "--model", shipped, "--events", text(&log), "--strict"])
        .output()
        .unwrap();
    assert_eq!(strict.status.code(), Some(65), "bad input data");
    assert!(String::from_utf8_lossy(&strict.stderr).contains("line 1:"));
    std::fs::remove_dir_all(directory).ok();
}

#[test]
fn dataset_and_report_are_written() {
    let directory = scratch("dataset-report");
    let log = directory.join("log.jsonl");
    let csv = directory.join("dataset.csv");
    let report = directory.join("report");
    saring_train(&["simulate", "--out", text(&log), "--seed", "9", "--days", "6", "--callers", "800"]);
    saring_train(&["dataset", "--events", text(&log), "--out", text(&csv)]);
    let content = std::fs::read_to_string(&csv).unwrap();
    let mut lines = content.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header.len(), 8 + saring_models::features::FEATURE_COUNT);
    assert_eq!(&header[..4], ["contact_id", "at_ms", "split", "label"]);
    let rows: Vec<Vec<&str>> = lines.map(|line| line.split(',').collect()).collect();
    assert!(rows.iter().all(|row| row.len() == header.len()));
    // Splits follow time: train, then validation, then test, and all three are present.
    let order = |split: &str| ["train", "validation", "test"].iter().position(|name| *name == split).unwrap();
    let splits: Vec<usize> = rows.iter().map(|row| order(row[2])).collect();
    assert!(splits.windows(2).all(|pair| pair[0] <= pair[1]));
    assert!((0..3).all(|split| splits.contains(&split)));
    assert!(rows.iter().all(|row| ["", "0", "1"].contains(&row[3])));

    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/artifacts/default.json");
    saring_train(&["evaluate", "--model", shipped, "--events", text(&log), "--report", text(&report)]);
    let markdown = std::fs::read_to_string(report.join("report.md")).unwrap();
    for section in ["ROC-AUC", "Genuine emergencies per band", "By kind of caller", "By channel", "By region", "ECE"] {
        assert!(markdown.contains(section), "{section} missing from the report");
    }
    for plot in ["roc.png", "precision-recall.png", "calibration.png", "score-histograms.png"] {
        assert!(markdown.contains(plot));
        let bytes = std::fs::read(report.join(plot)).unwrap();
        assert_eq!(&bytes[..4], b"\x89PNG", "{plot} is a PNG");
    }
    std::fs::remove_dir_all(directory).ok();
}

#[test]
fn fit_refuses_a_recall_floor_outside_zero_to_one() {
    let directory = scratch("recall-floor");
    let log = directory.join("log.jsonl");
    saring_train(&["simulate", "--out", text(&log), "--seed", "8", "--days", "2", "--callers", "300"]);
    let output = Command::new(env!("CARGO_BIN_EXE_saring-train"))
        .args(["fit", "--events", text(&log), "--out", text(&directory.join("m.json")), "--high-recall-floor", "1.5"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64), "an argument out of range");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--high-recall-floor must lie between 0 and 1"));
    assert!(!directory.join("m.json").exists());
    let missing = Command::new(env!("CARGO_BIN_EXE_saring-train"))
        .args(["fit", "--events", text(&directory.join("absent.jsonl")), "--out", text(&directory.join("m.json"))])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(66), "an input that cannot be read");
    let version = Command::new(env!("CARGO_BIN_EXE_saring-train")).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).contains("(commit "), "--version names the commit");
    std::fs::remove_dir_all(directory).ok();
}

#[test]
fn simulate_worlds_and_measure_generalisation() {
    let directory = scratch("worlds");
    let log = directory.join("worlds.jsonl");
    let output = saring_train(&[
        "simulate",
        "--out",
        text(&log),
        "--worlds",
        "3",
        "--seed",
        "4",
        "--days",
        "3",
        "--callers",
        "300",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().filter(|line| line.starts_with("world ")).count(), 3, "{stderr}");
    let content = std::fs::read_to_string(&log).unwrap();
    let prefixes: std::collections::HashSet<String> = content
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|event| event["contact_id"].as_str().and_then(|id| id.split("-c").next()).map(str::to_owned))
        .collect();
    assert_eq!(prefixes.len(), 3, "three worlds, three id prefixes: {prefixes:?}");

    let json = directory.join("generalisation.json");
    let output = saring_train(&[
        "generalisation",
        "--worlds",
        "2",
        "--held-out-worlds",
        "2",
        "--days",
        "12",
        "--callers",
        "800",
        "--learners",
        "logistic",
        "--json-out",
        text(&json),
    ]);
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("`saring-train generalisation --worlds 2"), "{table}");
    assert_eq!(table.lines().filter(|line| line.starts_with("| ") && !line.starts_with("| world")).count(), 2);
    let result: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = result["held_out"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let margin = row["margin"].as_f64().unwrap();
        let naive = row["naive_all_time_roc_auc"].as_f64().unwrap().max(row["naive_recent_roc_auc"].as_f64().unwrap());
        assert!((margin - (row["model_roc_auc"].as_f64().unwrap() - naive)).abs() < 1e-12);
    }
    std::fs::remove_dir_all(directory).ok();
}
