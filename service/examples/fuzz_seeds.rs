//! Writes the seed corpora of the fuzz targets, `DIR/TARGET/seed-*`: requests of every kind (valid and not),
//! caller numbers in every form, and event-log excerpts (from a simulated log when one is given).
//!
//! ```sh
//! cargo run -p saring-training --bin saring-train -- simulate --days 1 --callers 300 --out /tmp/sim.jsonl
//! cargo run -p saring --example fuzz_seeds -- fuzz/corpus /tmp/sim.jsonl
//! ```
//! The fuzzer grows the corpus from these; `cargo fuzz cmin` keeps it small (scripts/fuzz.sh).

use std::path::{Path, PathBuf};

use prost_types::Timestamp;
use saring::fuzzing::{encode_input, RequestKind, NOW_MS};
use saring::grpc::validate::page_token;
use saring::proto;

fn at(ms: i64) -> Option<Timestamp> {
    Some(saring::grpc::timestamp(ms))
}

fn contact(contact_id: &str, caller: Option<&str>, channel: proto::Channel, region: &str) -> proto::ContactRequest {
    proto::ContactRequest {
        contact_id: contact_id.into(),
        caller: caller.map(str::to_owned),
        channel: channel as i32,
        received_at: at(NOW_MS - 60_000),
        region: region.into(),
        sim_present: true,
        device_id: None,
        location: None,
        language: proto::Language::Unspecified as i32,
    }
}

fn contacts() -> Vec<proto::ContactRequest> {
    use proto::Channel::{App, Sms, Voice, Whatsapp};
    vec![
        contact("c-1", Some("0812-3456-7890"), Voice, "ntt.kupang"),
        contact("c-2", None, Voice, "dki.jakarta"),
        proto::ContactRequest {
            device_id: Some("356938035643809".into()),
            location: Some(proto::Location { lat: -10.17, lon: 123.6, accuracy_m: 50.0 }),
            ..contact("c-3", Some("+62 812 3456 7001"), Whatsapp, "ntt")
        },
        proto::ContactRequest { sim_present: false, ..contact("c-4", None, App, "papua.jayapura") },
        contact("c-5", Some("021 5550123"), Sms, "jatim.surabaya"),
        contact("bad-1", Some("+1 415 555 0123"), Voice, "zzz.nowhere"),
        proto::ContactRequest { channel: 9, received_at: at(NOW_MS + 86_400_000), ..contact("", None, Voice, "x") },
        proto::ContactRequest {
            location: Some(proto::Location { lat: 123.0, lon: f64::NAN, accuracy_m: -1.0 }),
            received_at: Some(Timestamp { seconds: 1, nanos: -5 }),
            ..contact("bad-3", Some("08-not-a-number"), Voice, "BAD REGION")
        },
    ]
}

fn outcomes() -> Vec<proto::Outcome> {
    let outcome = |contact_id: &str, answered: bool, talk_s: f64, disposition: proto::Disposition| proto::Outcome {
        contact_id: contact_id.into(),
        contact: None,
        answered,
        ring_s: 3.5,
        talk_s,
        disposition: disposition as i32,
        category: None,
        operator_id: None,
    };
    vec![
        proto::Outcome {
            contact: Some(contact("o-1", Some("081234567890"), proto::Channel::Voice, "ntt.kupang")),
            operator_id: Some("op-17".into()),
            ..outcome("o-1", true, 4.0, proto::Disposition::Prank)
        },
        proto::Outcome {
            category: Some("accident".into()),
            ..outcome("o-2", true, 62.0, proto::Disposition::GenuineEmergency)
        },
        outcome("o-3", false, 0.0, proto::Disposition::Silent),
        proto::Outcome {
            contact: Some(contact("other", None, proto::Channel::Sms, "dki")),
            category: Some("Accident".into()),
            ..outcome("o-4", false, 30.0, proto::Disposition::Unspecified)
        },
    ]
}

fn requests() -> Vec<Vec<u8>> {
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    inputs.extend(contacts().iter().map(|message| encode_input(RequestKind::Contact, message)));
    inputs.extend(outcomes().iter().map(|message| encode_input(RequestKind::Outcome, message)));
    for caller in ["081234567890", "+1 415 555 0123"] {
        inputs.push(encode_input(RequestKind::CallerQuery, &proto::CallerQuery { caller: caller.into() }));
    }
    let list = proto::ListCasesRequest {
        states: vec![proto::CaseState::Proposed as i32, proto::CaseState::Approved as i32],
        rungs: vec![proto::Rung::Warning as i32],
        region: "ntt".into(),
        created_from: at(NOW_MS - 86_400_000),
        created_to: at(NOW_MS),
        page_size: 100,
        page_token: page_token(NOW_MS - 3_600_000, "case-1"),
        oldest_first: false,
    };
    inputs.push(encode_input(RequestKind::ListCases, &list));
    let bad_list = proto::ListCasesRequest { page_size: 1000, states: vec![42], page_token: "zz".into(), ..list };
    inputs.push(encode_input(RequestKind::ListCases, &bad_list));
    for case_id in ["case-1", ""] {
        inputs.push(encode_input(RequestKind::GetCase, &proto::GetCaseRequest { case_id: case_id.into() }));
    }
    let decide = proto::DecideRequest {
        case_id: "case-1".into(),
        version: 3,
        decision: proto::Decision::Approve as i32,
        reason: "repeated prank calls, confirmed by two operators".into(),
    };
    inputs.push(encode_input(RequestKind::Decide, &decide));
    inputs.push(encode_input(RequestKind::Decide, &proto::DecideRequest { version: 0, reason: " ".into(), ..decide }));
    let action = proto::RecordActionRequest {
        case_id: "case-1".into(),
        version: 2,
        delivered_at: at(NOW_MS - 600_000),
        note: "warning delivered by SMS".into(),
        channel: proto::DeliveryChannel::Sms as i32,
    };
    inputs.push(encode_input(RequestKind::RecordAction, &action));
    inputs.push(encode_input(RequestKind::RecordAction, &proto::RecordActionRequest { delivered_at: at(0), ..action }));
    let revert = proto::RevertRequest { case_id: "case-1".into(), version: 4, reason: "wrong number".into() };
    inputs.push(encode_input(RequestKind::Revert, &revert));
    inputs.push(encode_input(RequestKind::Revert, &proto::RevertRequest { reason: String::new(), ..revert }));
    inputs
}

const PHONES: [&str; 14] = [
    "081234567890",
    "6281234567890",
    "+6281234567890",
    "+62 812-3456-7890",
    "(0812) 3456.7890",
    "006281234567890",
    "021 5550123",
    "0812345678",
    "",
    " - ",
    "+14155550123",
    "0812abc",
    "08123456789012345",
    "00812345678",
];

const HAND_WRITTEN_LOG: &str = r#"{"kind":"contact","contact_id":"c-1","at":"2026-03-01T08:15:02Z","caller":"+6281234567890","channel":"voice","region":"ntt.kupang","sim_present":true,"device_id":"356938035643809","lat":-10.17,"lon":123.6,"accuracy_m":50}
{"kind":"outcome","contact_id":"c-1","at":"2026-03-01T08:16:10+08:00","answered":true,"ring_s":4.0,"talk_s":62.0,"disposition":"genuine_emergency","category":"accident","operator_id":"op-17","future_key":1}
{"kind":"contact","contact_id":"c-2","at":"2026-03-01T08:17:00Z","channel":"fax","region":"x","sim_present":false}

{"kind":"contact","contact_id":"c-3","at":"2026-03-01T08:18:00Z","channel":"sms","region":"x","sim_present":false}
"#;

/// Excerpts of the log: its first lines, and a few windows further in (every kind of line the simulator writes).
fn log_excerpts(log: &str) -> Vec<String> {
    let lines: Vec<&str> = log.lines().collect();
    let mut excerpts = vec![HAND_WRITTEN_LOG.to_owned(), HAND_WRITTEN_LOG.replace('\n', "\r\n")];
    for eighth in 0..8 {
        let start = lines.len() * eighth / 8;
        let window = &lines[start.min(lines.len())..(start + 4).min(lines.len())];
        if !window.is_empty() {
            excerpts.push(window.join("\n") + "\n");
        }
    }
    excerpts
}

fn write_all(directory: PathBuf, inputs: impl IntoIterator<Item = Vec<u8>>) -> std::io::Result<()> {
    std::fs::create_dir_all(&directory)?;
    for (index, input) in inputs.into_iter().enumerate() {
        std::fs::write(directory.join(format!("seed-{index:02}")), input)?;
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let Some(corpus) = arguments.first().map(Path::new) else {
        eprintln!("usage: fuzz_seeds CORPUS_DIR [EVENT_LOG.jsonl]");
        std::process::exit(64);
    };
    let log = match arguments.get(1) {
        Some(path) => std::fs::read_to_string(path)?,
        None => String::new(),
    };
    write_all(corpus.join("validate_request"), requests())?;
    write_all(corpus.join("phone"), PHONES.iter().map(|phone| phone.as_bytes().to_vec()))?;
    write_all(corpus.join("event_log"), log_excerpts(&log).into_iter().map(String::into_bytes))?;
    Ok(())
}
