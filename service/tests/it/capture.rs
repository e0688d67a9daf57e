//! Capture of training records (`saring serve --capture DIR`): what the files hold after real gRPC traffic, that no
//! number or device id is in them, and that a model fitted from the capture of a replayed log is the model fitted
//! from the log itself.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, BooleanArray, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use saring::auth::Role;
use saring::privacy::KeyHasher;
use saring::proto;
use saring::server::{build_screener, load_models, memory_store, with_capture, RunningServer};
use saring_models::features::{schema_fingerprint, FEATURES};
use saring_training::capture::read_capture;
use saring_training::events::Event;
use saring_training::fit::{fit, FitOptions};
use saring_training::replay::replay;
use saring_training::simulate::{simulate, SimulationConfig};

use crate::common::process::SaringProcess;
use crate::common::{
    app_with, connect, contact_request, outcome_request, sample_contact, screening, sqlite_url, timestamp, Bearer,
};

const SECRET: &str = "capture-test-secret-0123456789";

/// The files in `dir` named `*.{extension}`, sorted.
fn files_with_extension(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|found| found == extension))
        .collect();
    files.sort();
    files
}

/// The complete capture files in `dir`.
fn capture_files(dir: &Path) -> Vec<PathBuf> {
    files_with_extension(dir, "parquet")
}

fn read_batches(path: &Path) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn metrics_text(console: &str) -> String {
    let address = console.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// A captured row, by column name, as text (null: None).
type Row = HashMap<String, Option<String>>;

fn rows(files: &[PathBuf]) -> Vec<Row> {
    let mut rows = Vec::new();
    for file in files {
        for batch in read_batches(file) {
            for row in 0..batch.num_rows() {
                let mut values = Row::new();
                for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                    let value = (!column.is_null(row)).then(|| {
                        let any = column.as_any();
                        if let Some(text) = any.downcast_ref::<StringArray>() {
                            text.value(row).to_owned()
                        } else if let Some(number) = any.downcast_ref::<Float64Array>() {
                            format!("{:?}", number.value(row))
                        } else if let Some(flag) = any.downcast_ref::<BooleanArray>() {
                            flag.value(row).to_string()
                        } else if let Some(time) = any.downcast_ref::<TimestampMillisecondArray>() {
                            time.value(row).to_string()
                        } else {
                            format!("{:?}", column.slice(row, 1))
                        }
                    });
                    values.insert(field.name().clone(), value);
                }
                rows.push(values);
            }
        }
    }
    rows
}

#[tokio::test]
async fn the_real_binary_captures_scores_and_outcomes_and_never_a_number_or_device_id() {
    let dir = tempfile::tempdir().unwrap();
    let capture_dir = dir.path().join("capture");
    let saring = SaringProcess::spawn(
        &["--capture", capture_dir.to_str().unwrap()],
        &[("SARING__PRIVACY__HASH_SECRET", SECRET), ("SARING__CAPTURE__REPLICA", "replica-a")],
    );
    let channel = connect(saring.url()).await;
    let mut client = screening(&channel, Bearer::of(Role::Routing));
    // Numbers in local form (normalised to E.164 by the service) and device ids that must never reach a file.
    let callers = ["081234567322", "081298765401", "0812 5550 1919"];
    let e164 = ["+6281234567322", "+6281298765401", "+6281255501919"];
    let devices = ["imei-356938035643809", "android-7f3c2a9e51d04b6c"];
    let mut replies = HashMap::new();
    for (index, caller) in callers.iter().enumerate() {
        for round in 0..3 {
            let contact_id = format!("cap-{index}-{round}");
            let mut request = sample_contact(&contact_id, Some(caller));
            request.device_id = (index < devices.len()).then(|| devices[index].to_owned());
            request.received_at =
                Some(timestamp(time::OffsetDateTime::now_utc() - time::Duration::minutes(30 - round * 5)));
            let reply = client.score_contact(request).await.unwrap().into_inner();
            replies.insert(contact_id.clone(), reply);
            let disposition = if index == 0 { proto::Disposition::Prank } else { proto::Disposition::GenuineEmergency };
            let outcome = proto::Outcome {
                contact_id: contact_id.clone(),
                contact: None,
                answered: true,
                ring_s: 3.0,
                talk_s: 40.0 + round as f64,
                disposition: disposition as i32,
                category: Some("crime".into()),
                operator_id: Some("op-7".into()),
            };
            client.record_outcome(outcome.clone()).await.unwrap();
            // A repeat changes nothing and is not captured twice.
            let repeat = client.record_outcome(outcome).await.unwrap().into_inner();
            assert!(repeat.duplicate);
        }
    }
    let withheld = client.score_contact(sample_contact("cap-withheld", None)).await.unwrap().into_inner();
    replies.insert("cap-withheld".into(), withheld);
    let scrape = metrics_text(&saring.console_url());
    assert!(scrape.contains("saring_capture_dropped_total 0"), "{scrape}");
    // Nothing is complete before the file is closed: SIGTERM drains, closes and fsyncs it.
    assert!(capture_files(&capture_dir).is_empty());
    let (clean, log) = saring.terminate();
    assert!(clean, "{log:?}");
    assert!(log.iter().any(|line| line.contains("capture closed") && line.contains("\"written\":19")), "{log:#?}");

    let files = capture_files(&capture_dir);
    assert_eq!(files.len(), 1, "one file per replica per day: {files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert!(name.starts_with("capture-") && name.contains("-replica-a-"), "{name}");
    let rows = rows(&files);
    let contacts: Vec<&Row> = rows.iter().filter(|row| row["kind"].as_deref() == Some("contact")).collect();
    let outcomes: Vec<&Row> = rows.iter().filter(|row| row["kind"].as_deref() == Some("outcome")).collect();
    assert_eq!(contacts.len(), 10);
    assert_eq!(outcomes.len(), 9);
    let hasher = KeyHasher::new(SECRET.as_bytes());
    for row in &contacts {
        let id = row["contact_id"].clone().unwrap();
        let reply = &replies[&id];
        assert_eq!(row["likelihood"], Some(format!("{:?}", reply.prank_likelihood)), "{id}");
        let band = proto::Band::try_from(reply.band).unwrap().as_str_name().trim_start_matches("BAND_").to_lowercase();
        assert_eq!(row["band"].as_deref(), Some(band.as_str()));
        assert_eq!(row["model_version"].as_deref(), Some(reply.model_version.as_str()));
        assert_eq!(row["feature_schema"].as_deref(), Some(schema_fingerprint().as_str()));
        assert_eq!(row["degraded_reasons"].as_deref(), Some(""));
        assert_eq!(row["region"].as_deref(), Some("ntt.kupang"));
        assert_eq!(row["channel"].as_deref(), Some("voice"));
        for feature in FEATURES {
            assert!(row[&format!("f_{}", feature.name)].is_some(), "{id}: {}", feature.name);
        }
        if id == "cap-withheld" {
            assert_eq!(row["caller_ref"], None);
            assert_eq!(row["f_withheld"].as_deref(), Some("1.0"));
            continue;
        }
        let index: usize = id[4..5].parse().unwrap();
        assert_eq!(row["caller_ref"], Some(hasher.number(e164[index]).to_hex()), "{id}");
        assert_eq!(row["device_ref"], devices.get(index).map(|device| hasher.device(device).to_hex()), "{id}");
        // The naive rule at scoring time: the caller's earlier outcomes (all prank for caller 0, none for others).
        let round: usize = id[6..].parse().unwrap();
        let expected_naive = if index == 0 && round > 0 { "1.0" } else { "0.0" };
        assert_eq!(row["naive_recent"].as_deref(), Some(expected_naive), "{id}");
        assert_eq!(row["f_caller_known"].as_deref(), Some(if round > 0 { "1.0" } else { "0.0" }), "{id}");
    }
    for row in &outcomes {
        let id = row["contact_id"].clone().unwrap();
        let index: usize = id[4..5].parse().unwrap();
        assert_eq!(row["disposition"].as_deref(), Some(if index == 0 { "prank" } else { "genuine_emergency" }));
        assert_eq!(row["answered"].as_deref(), Some("true"));
        assert_eq!(row["category"].as_deref(), Some("crime"));
        assert_eq!(row["caller_ref"], Some(hasher.number(e164[index]).to_hex()));
        assert_eq!(row["likelihood"], None);
    }

    // No number or device id, in any form, anywhere: not in the file's bytes, not in any decoded value.
    let mut forbidden: Vec<String> = Vec::new();
    for (local, full) in callers.iter().zip(e164) {
        forbidden.push(local.to_string());
        forbidden.push(local.replace(' ', ""));
        forbidden.push(full.to_owned());
        forbidden.push(full.trim_start_matches('+').to_owned());
        forbidden.push(full.trim_start_matches("+62").to_owned());
    }
    forbidden.extend(devices.iter().map(|device| device.to_string()));
    forbidden.push("op-7".into());
    for file in capture_files(&capture_dir) {
        let bytes = std::fs::read(&file).unwrap();
        for needle in &forbidden {
            assert!(!bytes.windows(needle.len()).any(|window| window == needle.as_bytes()), "{needle} in {file:?}");
        }
    }
    for row in &rows {
        for (column, value) in row {
            for needle in &forbidden {
                assert!(!value.as_deref().unwrap_or("").contains(needle.as_str()), "{needle} in column {column}");
            }
        }
    }
}

#[tokio::test]
async fn a_model_fitted_from_the_capture_of_a_replayed_log_is_the_model_fitted_from_the_log() {
    let config = SimulationConfig { seed: 41, days: 6, callers: 1200, ..SimulationConfig::default() };
    let events = simulate(&config);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = saring::config::Settings::default();
    settings.capture.dir = Some(dir.path().to_owned());
    let models = Arc::new(load_models(&settings).unwrap());
    let (screener, writer) =
        with_capture(&settings, build_screener(&settings, models, memory_store(&settings))).unwrap();
    let app = app_with(screener, &sqlite_url("capture-fit")).await;
    let server = RunningServer::start("127.0.0.1:0".parse().unwrap(), app).await.unwrap();
    let channel = connect(format!("http://{}", server.local_addr)).await;
    let mut client = screening(&channel, Bearer::of(Role::Routing));
    for event in &events {
        match event {
            Event::Contact(contact) => {
                client.score_contact(contact_request(contact)).await.unwrap();
            }
            Event::Outcome(outcome) => {
                client.record_outcome(outcome_request(outcome, None)).await.unwrap();
            }
        }
    }
    server.stop().await.unwrap();
    let report = writer.expect("capture is configured").close();
    assert_eq!(report.failed, 0);

    let captured = read_capture(&[dir.path().to_owned()]).unwrap();
    let replayed = replay(&events);
    assert_eq!(captured.replay.orphan_outcomes, 0);
    assert_eq!((captured.superseded_outcomes, captured.repeated_scores, captured.without_features), (0, 0, 0));
    // The same rows: ids, times, labels, the naive rule in both forms, and feature matrices equal to the bit.
    assert_eq!(captured.replay.rows.len(), replayed.rows.len());
    assert!(replayed.rows.len() > 1000, "{}", replayed.rows.len());
    for (from_capture, from_log) in captured.replay.rows.iter().zip(&replayed.rows) {
        assert_eq!(from_capture.contact_id, from_log.contact_id);
        assert_eq!(from_capture.at_ms, from_log.at_ms);
        assert_eq!(from_capture.region, from_log.region);
        assert_eq!(from_capture.channel, from_log.channel);
        assert_eq!(from_capture.disposition, from_log.disposition, "{}", from_log.contact_id);
        assert_eq!(from_capture.first_time_caller, from_log.first_time_caller, "{}", from_log.contact_id);
        assert_eq!(from_capture.naive_recent.to_bits(), from_log.naive_recent.to_bits(), "{}", from_log.contact_id);
        assert_eq!(from_capture.naive_score.to_bits(), from_log.naive_score.to_bits(), "{}", from_log.contact_id);
        let bits = |features: &[f64]| features.iter().map(|value| value.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&from_capture.features), bits(&from_log.features), "{}", from_log.contact_id);
    }

    let options = FitOptions {
        high_precision: 0.95,
        elevated_precision: 0.6,
        seed: 7,
        data_fingerprint: String::new(),
        data_source: String::new(),
        learners: vec!["logistic".into(), "boosted".into()],
        // This test is about equal inputs giving equal models, not about quality on a six-day log.
        allow_worse_than_naive: true,
        ..FitOptions::default()
    };
    let from_capture = fit(&captured.replay, &options).unwrap().artifact;
    let from_log = fit(&replayed, &options).unwrap().artifact;
    let auc = |artifact: &saring_models::ModelArtifact| artifact.card["metrics"]["test"]["roc_auc"].as_f64().unwrap();
    // Stated tolerance: test ROC-AUC within 0.005. Identical inputs give identical models, so it is in fact equal.
    assert!((auc(&from_capture) - auc(&from_log)).abs() < 0.005, "{} vs {}", auc(&from_capture), auc(&from_log));
    assert_eq!(serde_json::to_value(&from_capture.params).unwrap(), serde_json::to_value(&from_log.params).unwrap());
    assert_eq!(serde_json::to_value(from_capture.bands).unwrap(), serde_json::to_value(from_log.bands).unwrap());
}

/// The spools in `dir` (a replica's capture not yet converted to Parquet).
fn spools(dir: &Path) -> Vec<PathBuf> {
    files_with_extension(dir, "spool")
}

#[tokio::test]
async fn a_killed_replica_loses_nothing_it_had_spooled_and_converts_it_when_it_starts_again() {
    let dir = tempfile::tempdir().unwrap();
    let capture_dir = dir.path().join("capture");
    let environment = [("SARING__PRIVACY__HASH_SECRET", SECRET), ("SARING__CAPTURE__REPLICA", "replica-k")];
    let mut saring = SaringProcess::spawn(&["--capture", capture_dir.to_str().unwrap()], &environment);
    let channel = connect(saring.url()).await;
    let mut client = screening(&channel, Bearer::of(Role::Routing));
    let caller = "081234567999";
    for index in 0..20 {
        let contact_id = format!("kill-{index}");
        client.score_contact(sample_contact(&contact_id, Some(caller))).await.unwrap();
        let outcome = proto::Outcome {
            contact_id,
            contact: None,
            answered: true,
            ring_s: 2.0,
            talk_s: 5.0,
            disposition: proto::Disposition::Prank as i32,
            category: None,
            operator_id: None,
        };
        client.record_outcome(outcome).await.unwrap();
    }
    // The writer appends what was queued to the spool every 20 ms: wait until the spool stops growing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut last = 0;
    loop {
        let length = spools(&capture_dir).first().map_or(0, |spool| std::fs::metadata(spool).unwrap().len());
        if length > 8 && length == last {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the spool never settled ({length} bytes)");
        last = length;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    // The spool holds references, never the number.
    let spool = spools(&capture_dir).remove(0);
    let bytes = std::fs::read(&spool).unwrap();
    for needle in [caller, "+6281234567999", "6281234567999", "81234567999"] {
        assert!(!bytes.windows(needle.len()).any(|window| window == needle.as_bytes()), "{needle} in the spool");
    }
    // SIGKILL: no shutdown, nothing completed.
    saring.child.kill().unwrap();
    saring.child.wait().unwrap();
    assert!(capture_files(&capture_dir).is_empty());
    assert_eq!(spools(&capture_dir), std::slice::from_ref(&spool));

    let again = SaringProcess::spawn(&["--capture", capture_dir.to_str().unwrap()], &environment);
    // The start converts the spool the killed run left, before anything else the converter does.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !metrics_text(&again.console_url()).contains("saring_capture_written_total 40") {
        assert!(std::time::Instant::now() < deadline, "{}", metrics_text(&again.console_url()));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (clean, log) = again.terminate();
    assert!(clean, "{log:?}");
    assert!(spools(&capture_dir).is_empty(), "{log:#?}");
    let files = capture_files(&capture_dir);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].file_stem(), spool.file_stem(), "the spool became its Parquet file");
    let rows = rows(&files);
    let kinds = |kind: &str| rows.iter().filter(|row| row["kind"].as_deref() == Some(kind)).count();
    assert_eq!((kinds("contact"), kinds("outcome")), (20, 20), "every record of the killed run");
    let reference = KeyHasher::new(SECRET.as_bytes()).number("+6281234567999").to_hex();
    assert!(rows.iter().all(|row| row["caller_ref"].as_deref() == Some(reference.as_str())));
}
