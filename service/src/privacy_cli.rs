//! `saring privacy …`: the legal team's command line for a data subject's requests, a client of the running
//! service's `Privacy` RPCs (so the same rules, audit and role checks apply as for any other door). The token comes
//! from `SARING_TOKEN` or a file, never from the command line (it would show in the process list and the shell's
//! history).

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::{json, Value};
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use crate::proto;
use crate::proto::privacy_client::PrivacyClient;

/// Where and as whom to call.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://HOST:PORT` or `https://HOST:PORT`.
    pub server: String,
    /// A PEM file of the certificate authority that signed the server's certificate (https).
    pub ca_cert: Option<PathBuf>,
    /// The legal role's bearer token.
    pub token: String,
}

/// One request.
#[derive(Debug, Clone)]
pub enum Request {
    /// Everything held about a number.
    Access {
        /// The number.
        caller: String,
        /// Why (the request's reference).
        reason: String,
    },
    /// Erase a number (and a device).
    Erase {
        /// The number.
        caller: String,
        /// A device id to erase too.
        device_id: Option<String>,
        /// Why.
        reason: String,
    },
    /// Mark a number reassigned by its carrier.
    MarkReassigned {
        /// The number.
        caller: String,
        /// From when it belongs to its new subscriber, Unix ms.
        from_ms: i64,
        /// Why (the carrier's notice).
        reason: String,
    },
    /// Release a case's legal hold.
    ReleaseHold {
        /// The case.
        case_id: String,
        /// Why.
        reason: String,
    },
}

/// Why a command failed, and its exit code.
#[derive(Debug)]
pub struct Failure {
    /// The exit code: 64 usage, 69 the service unreachable, 1 refused by the service.
    pub code: u8,
    /// What to tell the user.
    pub message: String,
}

fn failure(code: u8, message: impl Into<String>) -> Failure {
    Failure { code, message: message.into() }
}

fn refused(status: tonic::Status) -> Failure {
    let code = if status.code() == tonic::Code::Unavailable { 69 } else { 1 };
    failure(code, format!("{:?}: {}", status.code(), status.message()))
}

async fn client(target: &Target) -> Result<PrivacyClient<Channel>, Failure> {
    let mut endpoint = Channel::from_shared(target.server.clone())
        .map_err(|error| failure(64, format!("--server {:?}: {error}", target.server)))?;
    if target.server.starts_with("https://") {
        let path = target.ca_cert.as_ref().ok_or_else(|| {
            failure(64, "an https server needs --ca-cert: the PEM of the authority that signed its certificate")
        })?;
        let pem = std::fs::read(path).map_err(|error| failure(66, format!("{}: {error}", path.display())))?;
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
        endpoint = endpoint.tls_config(tls).map_err(|error| failure(64, format!("TLS: {error}")))?;
    }
    let channel =
        endpoint.connect().await.map_err(|error| failure(69, format!("cannot reach {}: {error}", target.server)))?;
    Ok(PrivacyClient::new(channel))
}

fn authorised<T>(message: T, token: &str) -> Result<tonic::Request<T>, Failure> {
    let mut request = tonic::Request::new(message);
    let value: MetadataValue<_> =
        format!("Bearer {token}").parse().map_err(|_| failure(64, "the token holds characters a header cannot"))?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

/// Runs `request` against `target`; the text to print (a readable report, or JSON when `json`).
pub async fn run(target: &Target, request: Request, json: bool) -> Result<String, Failure> {
    let mut client = client(target).await?;
    let value = match request {
        Request::Access { caller, reason } => {
            let records = client
                .access(authorised(proto::AccessRequest { caller, reason }, &target.token)?)
                .await
                .map_err(refused)?
                .into_inner();
            if !json {
                return Ok(access_report(&records));
            }
            access_json(&records)
        }
        Request::Erase { caller, device_id, reason } => {
            let request = proto::EraseRequest { caller, device_id: device_id.unwrap_or_default(), reason };
            let erasure = client.erase(authorised(request, &target.token)?).await.map_err(refused)?.into_inner();
            json!({
                "erasure_id": erasure.erasure_id,
                "contacts_removed": erasure.contacts_removed,
                "cases_redacted": erasure.cases_redacted,
                "journal_entries_removed": erasure.journal_entries_removed,
                "capture_records_removed": erasure.capture_records_removed,
                "audit_seq": erasure.audit_seq,
            })
        }
        Request::MarkReassigned { caller, from_ms, reason } => {
            let done = mark(&mut client, &target.token, caller, from_ms, reason).await?;
            reassignment_json(&done)
        }
        Request::ReleaseHold { case_id, reason } => {
            let request = proto::ReleaseHoldRequest { case_id, reason };
            let release = client.release_hold(authorised(request, &target.token)?).await.map_err(refused)?.into_inner();
            json!({ "hold": release.hold.as_ref().map(hold_json), "audit_seq": release.audit_seq })
        }
    };
    if json {
        return Ok(serde_json::to_string_pretty(&value).expect("JSON values serialise") + "\n");
    }
    let mut text = String::new();
    if let Value::Object(fields) = &value {
        for (name, field) in fields {
            let _ = writeln!(text, "{name}: {}", plain(field));
        }
    }
    Ok(text)
}

async fn mark(
    client: &mut PrivacyClient<Channel>,
    token: &str,
    caller: String,
    from_ms: i64,
    reason: String,
) -> Result<proto::Reassignment, Failure> {
    let reassigned_at = Some(prost_types::Timestamp {
        seconds: from_ms.div_euclid(1000),
        nanos: (from_ms.rem_euclid(1000) * 1_000_000) as i32,
    });
    let request = proto::MarkReassignedRequest { caller, reassigned_at, reason };
    Ok(client.mark_reassigned(authorised(request, token)?).await.map_err(refused)?.into_inner())
}

fn reassignment_json(done: &proto::Reassignment) -> Value {
    json!({
        "reassignment_id": done.reassignment_id,
        "contacts_detached": done.contacts_detached,
        "cases_detached": done.cases_detached,
        "cases_closed": done.cases_closed,
        "histories_reset": done.histories_reset,
        "audit_seq": done.audit_seq,
    })
}

/// A reassignment date: RFC 3339, or a calendar date `YYYY-MM-DD` taken as its start in Western Indonesia Time
/// (UTC+7, where most subscribers are); Unix ms.
pub fn parse_from(text: &str) -> Result<i64, String> {
    use time::format_description::well_known::Rfc3339;
    let text = text.trim();
    if let Ok(at) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Ok((at.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(text, &format)
        .map_err(|_| format!("{text:?} is neither an RFC 3339 time nor a date YYYY-MM-DD"))?;
    let at = date.midnight().assume_offset(time::macros::offset!(+7));
    Ok((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// One line of a carrier's reassignment notices that could not be applied.
#[derive(Debug)]
pub struct ImportProblem {
    /// The line, from 1.
    pub line: usize,
    /// Why.
    pub message: String,
}

/// Marks every number of a carrier's notices (CSV: `number,reassigned_from` per line, RFC 3339 or `YYYY-MM-DD`;
/// a header line and `#` comments skipped) reassigned, each with `reason`; the report and the lines that failed.
/// A line that fails does not stop the others; the service refuses nothing twice (marking again detaches nothing
/// more).
pub async fn import_reassignments(
    target: &Target,
    csv: &str,
    reason: &str,
    json: bool,
) -> Result<(String, Vec<ImportProblem>), Failure> {
    let mut client = client(target).await?;
    let mut done = Vec::new();
    let mut problems = Vec::new();
    let mut first = true;
    for (index, line) in csv.lines().enumerate() {
        let line_number = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let header = first && fields.first().is_some_and(|field| !field.chars().any(|c| c.is_ascii_digit()));
        first = false;
        if header {
            continue;
        }
        let [number, from] = fields[..] else {
            problems.push(ImportProblem {
                line: line_number,
                message: "expected two fields: number,reassigned_from".into(),
            });
            continue;
        };
        let from_ms = match parse_from(from) {
            Ok(from_ms) => from_ms,
            Err(message) => {
                problems.push(ImportProblem { line: line_number, message });
                continue;
            }
        };
        match mark(&mut client, &target.token, number.to_owned(), from_ms, reason.to_owned()).await {
            Ok(reassignment) => done.push((line_number, reassignment)),
            // The service is gone: the remaining lines would fail the same way. Say which were marked already.
            Err(failure) if failure.code == 69 => {
                let marked: Vec<String> = done.iter().map(|(line, _)| line.to_string()).collect();
                let message = format!(
                    "{} (stopped at line {line_number}; lines marked before: {})",
                    failure.message,
                    if marked.is_empty() { "none".to_owned() } else { marked.join(", ") }
                );
                return Err(Failure { code: 69, message });
            }
            Err(failure) => problems.push(ImportProblem { line: line_number, message: failure.message }),
        }
    }
    let value = json!({
        "marked": done.iter().map(|(line, done)| json!({ "line": line, "reassignment": reassignment_json(done) })).collect::<Vec<_>>(),
        "failed": problems.iter().map(|problem| json!({ "line": problem.line, "message": problem.message })).collect::<Vec<_>>(),
    });
    let text = if json {
        serde_json::to_string_pretty(&value).expect("JSON values serialise") + "\n"
    } else {
        let mut text = format!("{} numbers marked reassigned, {} lines failed\n", done.len(), problems.len());
        for (line, done) in &done {
            let _ = writeln!(
                text,
                "  line {line}: {} — {} contacts and {} cases detached, {} closed",
                done.reassignment_id, done.contacts_detached, done.cases_detached, done.cases_closed
            );
        }
        text
    };
    Ok((text, problems))
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn rfc3339(timestamp: Option<&prost_types::Timestamp>) -> Value {
    timestamp
        .and_then(|at| time::OffsetDateTime::from_unix_timestamp(at.seconds).ok())
        .and_then(|at| at.format(&time::format_description::well_known::Rfc3339).ok())
        .map_or(Value::Null, Value::String)
}

fn hold_json(hold: &proto::LegalHold) -> Value {
    json!({
        "case_id": hold.case_id,
        "cause": hold.cause,
        "released": hold.released,
        "released_by": hold.released_by,
        "released_at": rfc3339(hold.released_at.as_ref()),
        "release_reason": hold.release_reason,
    })
}

fn access_json(records: &proto::SubjectRecords) -> Value {
    let profile = records.profile.clone().unwrap_or_default();
    let history = profile.history.unwrap_or_default();
    json!({
        "caller": records.caller,
        "history": {
            "known": profile.known,
            "total_contacts": history.total_contacts,
            "contacts_day": history.contacts_day,
            "misuse_day": history.misuse_day,
            "contacts_month": history.contacts_month,
            "misuse_month": history.misuse_month,
            "first_seen": rfc3339(history.first_seen.as_ref()),
            "last_seen": rfc3339(history.last_seen.as_ref()),
            "dispositions_month": profile.dispositions_month,
        },
        "contacts": records.contacts.iter().map(|contact| json!({
            "contact_id": contact.contact_id,
            "received_at": rfc3339(contact.received_at.as_ref()),
            "channel": contact.channel,
            "region": contact.region,
            "disposition": contact.disposition,
            "operator_id": contact.operator_id,
            "prank_likelihood": contact.prank_likelihood,
            "answered": contact.answered,
            "talk_s": contact.talk_s,
            "corrections": contact.corrections.iter().map(|correction| json!({
                "from": correction.from_disposition,
                "to": correction.to_disposition,
                "by": correction.corrected_by,
                "at": rfc3339(correction.corrected_at.as_ref()),
                "reason": correction.reason,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "cases": records.cases.iter().map(|case| json!({
            "case_id": case.case_id,
            "rung": proto::Rung::try_from(case.rung).map_or("unknown", |rung| rung.as_str_name()),
            "state": proto::CaseState::try_from(case.state).map_or("unknown", |state| state.as_str_name()),
            "rule": case.rule,
            "region": case.region,
            "created_at": rfc3339(case.created_at.as_ref()),
            "decided_by": case.decided_by,
            "decision_reason": case.decision_reason,
        })).collect::<Vec<_>>(),
        "audit": records.audit.iter().map(|entry| json!({
            "seq": entry.seq,
            "at": rfc3339(entry.at.as_ref()),
            "actor": entry.actor,
            "role": entry.role,
            "action": entry.action,
            "case_id": entry.case_id,
            "state": entry.state,
            "reason": entry.reason,
        })).collect::<Vec<_>>(),
        "holds": records.holds.iter().map(hold_json).collect::<Vec<_>>(),
    })
}

/// The readable report of an access request.
fn access_report(records: &proto::SubjectRecords) -> String {
    let value = access_json(records);
    let mut text = String::new();
    let _ = writeln!(text, "What saring holds about {}", records.caller);
    let history = &value["history"];
    let _ = writeln!(
        text,
        "\nHistory: {} contacts recorded (first {}, last {}); this month {:.1} contacts, {:.1} misuse",
        history["total_contacts"],
        plain(&history["first_seen"]),
        plain(&history["last_seen"]),
        history["contacts_month"].as_f64().unwrap_or(0.0),
        history["misuse_month"].as_f64().unwrap_or(0.0),
    );
    let _ = writeln!(text, "\nContacts ({}):", records.contacts.len());
    for contact in &records.contacts {
        let _ = writeln!(
            text,
            "  {}  {}  {} {}  {}{}",
            plain(&rfc3339(contact.received_at.as_ref())),
            contact.contact_id,
            contact.channel,
            contact.region,
            contact.disposition,
            if contact.corrections.is_empty() {
                String::new()
            } else {
                format!(" (corrected {}×)", contact.corrections.len())
            }
        );
    }
    let _ = writeln!(text, "\nCases ({}):", records.cases.len());
    for case in value["cases"].as_array().into_iter().flatten() {
        let _ = writeln!(
            text,
            "  {}  {} {}  rule {}  created {}",
            plain(&case["case_id"]),
            plain(&case["rung"]),
            plain(&case["state"]),
            plain(&case["rule"]),
            plain(&case["created_at"])
        );
    }
    let _ = writeln!(text, "\nAudit entries ({}):", records.audit.len());
    for entry in &records.audit {
        let _ = writeln!(
            text,
            "  #{} {}  {} ({})  {}  {}  {}",
            entry.seq,
            plain(&rfc3339(entry.at.as_ref())),
            entry.actor,
            entry.role,
            entry.action,
            entry.case_id,
            entry.reason
        );
    }
    let _ = writeln!(text, "\nLegal holds ({}):", records.holds.len());
    for hold in &records.holds {
        let state = if hold.released {
            format!("released by {} ({})", hold.released_by, hold.release_reason)
        } else {
            "standing: erasure is refused until a reviewer releases it".to_owned()
        };
        let _ = writeln!(text, "  {}  {}  {state}", hold.case_id, hold.cause);
    }
    text
}
