//! The group commit of outcomes, on a SQLite file and on PostgreSQL: many concurrent RecordOutcome calls over a
//! real socket are all kept and propose exactly the cases a sequential run proposes, with an audit chain that
//! verifies; inside one batch, a refused outcome fails only its own caller; a batch whose commit fails fails every
//! one of its callers and keeps none of their outcomes.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use saring::auth::Role;
use saring::cases::audit::Verification;
use saring::cases::{CaseError, CaseStore, ContactRecord, Escalator, LadderChange};
use saring::proto;
use saring_models::ladder::LadderPolicy;
use saring_models::{Channel, Disposition};
use sqlx::Row;
use time::OffsetDateTime;

use crate::common::{sample_contact, sqlite_url, start_on, timestamp};
use crate::ladder::{execute, PgSchema};

/// Runs a test body on two fresh SQLite files and on two fresh PostgreSQL schemas.
macro_rules! on_both_databases {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let first = crate::common::sqlite_url(concat!(stringify!($name), "-a"));
                let second = crate::common::sqlite_url(concat!(stringify!($name), "-b"));
                super::$name(&first, &second).await;
            }

            #[tokio::test]
            async fn postgres() {
                // Short names: PostgreSQL cuts identifiers at 63 bytes.
                let first = super::PgSchema::create("group_a").await;
                let second = super::PgSchema::create("group_b").await;
                super::$name(&first.url(), &second.url()).await;
                first.drop().await;
                second.drop().await;
            }
        }
    };
}

/// Polls every future in one task, in order, until all are done: on the test's single-threaded runtime every
/// outcome is queued before the writer first runs, so they all land in one batch.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|context| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(context) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|output| output.expect("every future finished")).collect()
}

/// The outcomes queued at once were written in one batch per writer: on SQLite one, on PostgreSQL at most one per
/// writer (a caller's writer is chosen by a hash of its key).
fn one_batch_per_writer(store: &CaseStore, before: u64) {
    let batches = store.outcome_batches() - before;
    assert!((1..=store.outcome_writers() as u64).contains(&batches), "{batches} batches");
}

async fn rows(url: &str, query: &str) -> Vec<Vec<String>> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.expect("the database answers");
    let rows = sqlx::query(query).fetch_all(&pool).await.expect(query);
    pool.close().await;
    rows.iter()
        .map(|row| {
            (0..row.len())
                .map(|index| {
                    row.try_get::<String, _>(index)
                        .or_else(|_| row.try_get::<i64, _>(index).map(|value| value.to_string()))
                        .expect("a text or integer column")
                })
                .collect()
        })
        .collect()
}

async fn verify(url: &str) {
    let store = CaseStore::connect(url).await.unwrap();
    let verification = store.verify_audit().await.unwrap();
    assert!(matches!(verification, Verification::Intact { entries } if entries > 0), "{verification:?}");
    store.close().await;
}

/// The cases a database holds, by caller, with the contacts grounding each (case ids differ between runs).
async fn cases(url: &str) -> Vec<Vec<String>> {
    rows(
        url,
        "SELECT c.caller_key, c.rung, c.state, c.rule, c.version, ci.contact_id FROM cases c \
         LEFT JOIN case_incidents ci ON ci.case_id = c.case_id ORDER BY c.caller_key, c.created_ms, ci.contact_id",
    )
    .await
}

/// Caller `caller`'s outcomes: a prank most days, now and then a genuine emergency, oldest first.
fn outcomes_of(caller: usize) -> Vec<proto::Outcome> {
    let number = format!("0813-7700-{caller:04}");
    (0..1 + caller % 6)
        .map(|n| {
            let contact_id = format!("group-{caller}-{n}");
            let at = OffsetDateTime::now_utc() - time::Duration::hours(200 - 30 * n as i64);
            let contact = proto::ContactRequest {
                received_at: Some(timestamp(at)),
                ..sample_contact(&contact_id, Some(&number))
            };
            let disposition =
                if (caller + n) % 4 == 3 { proto::Disposition::GenuineEmergency } else { proto::Disposition::Prank };
            proto::Outcome {
                disposition: disposition as i32,
                ..crate::common::prank_outcome(&contact_id, Some(contact))
            }
        })
        .collect()
}

const CALLERS: usize = 48;

async fn concurrent_outcomes_are_all_kept_as_a_sequential_run_keeps_them(concurrent: &str, sequential: &str) {
    // The sequential run: one outcome at a time.
    let harness = start_on(sequential).await;
    let mut routing = harness.screening(Role::Routing);
    for caller in 0..CALLERS {
        for outcome in outcomes_of(caller) {
            routing.record_outcome(outcome).await.unwrap();
        }
    }
    harness.server.stop().await.unwrap();

    // The concurrent run: every caller at once (each caller's own outcomes in order, as calls from one number
    // arrive one after another).
    let harness = start_on(concurrent).await;
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..CALLERS {
        let mut routing = harness.screening(Role::Routing);
        callers.spawn(async move {
            let mut acknowledged = Vec::new();
            for outcome in outcomes_of(caller) {
                let contact_id = outcome.contact_id.clone();
                let ack = routing.record_outcome(outcome).await.expect("every outcome is acknowledged");
                assert!(!ack.into_inner().duplicate);
                acknowledged.push(contact_id);
            }
            acknowledged
        });
    }
    let mut acknowledged = BTreeSet::new();
    while let Some(joined) = callers.join_next().await {
        acknowledged.extend(joined.unwrap());
    }
    harness.server.stop().await.unwrap();

    let expected: usize = (0..CALLERS).map(|caller| outcomes_of(caller).len()).sum();
    assert_eq!(acknowledged.len(), expected);
    let kept: BTreeSet<String> =
        rows(concurrent, "SELECT contact_id FROM contacts").await.into_iter().map(|mut row| row.remove(0)).collect();
    assert_eq!(kept, acknowledged, "every acknowledged outcome is in the contacts table, and nothing else");
    let proposed = cases(concurrent).await;
    assert!(proposed.iter().any(|row| row[1] == "warning"), "the run proposes warnings: {proposed:?}");
    assert_eq!(proposed, cases(sequential).await, "the concurrent run proposes what the sequential run proposes");
    verify(concurrent).await;
    verify(sequential).await;
}
on_both_databases!(concurrent_outcomes_are_all_kept_as_a_sequential_run_keeps_them);

fn record(contact_id: &str, caller: &str, disposition: Disposition) -> ContactRecord {
    ContactRecord {
        contact_id: contact_id.to_owned(),
        caller_ref: format!("{caller:0>64}"),
        caller_number: format!("0813-{caller}"),
        at_ms: (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64 - 3_600_000,
        channel: Channel::Voice,
        region: "ntt.kupang".to_owned(),
        disposition,
        operator_id: None,
        likelihood: Some(0.5),
        model_version: "test".to_owned(),
        answered: true,
        talk_s: 4.0,
    }
}

async fn a_refused_outcome_fails_only_its_own_caller(url: &str, _: &str) {
    let escalator = Escalator::new(CaseStore::connect(url).await.unwrap(), LadderPolicy::default_policy());
    escalator.on_outcome(&record("first", "a1", Disposition::Prank)).await.unwrap();
    let before = escalator.store().outcome_batches();

    let mut batch: Vec<ContactRecord> =
        (0..20).map(|n| record(&format!("batch-{n}"), &format!("b{}", n % 7), Disposition::Prank)).collect();
    // A repeat saying something else (refused), a true repeat (a duplicate), a contact id of another caller's.
    batch.insert(5, record("first", "a1", Disposition::GenuineEmergency));
    batch.insert(9, record("first", "a1", Disposition::Prank));
    batch.insert(14, record("first", "a2", Disposition::Prank));
    let results = join_all(batch.iter().map(|record| escalator.on_outcome(record)).collect()).await;
    one_batch_per_writer(escalator.store(), before);

    for (n, (record, result)) in batch.iter().zip(&results).enumerate() {
        match n {
            5 => assert!(matches!(result, Err(CaseError::Exists(_))), "{result:?}"),
            9 => assert!(result.as_ref().is_ok_and(|outcome| outcome.duplicate), "{result:?}"),
            14 => assert!(matches!(result, Err(CaseError::Invalid { field: "contact_id", .. })), "{result:?}"),
            _ => {
                let outcome = result.as_ref().unwrap_or_else(|error| panic!("{}: {error}", record.contact_id));
                assert!(!outcome.duplicate);
            }
        }
    }
    // Callers b0…b5 had three pranks each in the batch, b6 two: each one's second proposed a warning, a third
    // added evidence to it.
    // The refused outcomes sent their batches one by one (on PostgreSQL callers a1 and a2 may be two writers').
    let retried = escalator.store().outcome_batches_retried();
    assert!((1..=2).contains(&retried), "{retried} batches ran one by one");
    let changes: Vec<LadderChange> = results.iter().flatten().map(|outcome| outcome.change).collect();
    assert_eq!(changes.iter().filter(|change| **change == LadderChange::Proposed).count(), 7);
    assert_eq!(changes.iter().filter(|change| **change == LadderChange::EvidenceAdded).count(), 6);

    let kept = rows(url, "SELECT contact_id, disposition FROM contacts WHERE contact_id = 'first'").await;
    assert_eq!(kept, vec![vec!["first".to_owned(), "prank".to_owned()]]);
    let batch_rows = rows(url, "SELECT COUNT(*) FROM contacts WHERE contact_id LIKE 'batch-%'").await;
    assert_eq!(batch_rows[0][0], "20");
    escalator.store().close().await;
    verify(url).await;
}
on_both_databases!(a_refused_outcome_fails_only_its_own_caller);

/// Evidence for several open cases in one batch is added together; when one of those cases' rows were changed
/// outside saring, only that case's caller is refused (nothing is added on top of the changed rows) and the others'
/// evidence is added with entries that extend the chain.
async fn evidence_for_a_case_changed_outside_saring_fails_only_its_caller(url: &str, _: &str) {
    let escalator = Escalator::new(CaseStore::connect(url).await.unwrap(), LadderPolicy::default_policy());
    for caller in ["t1", "t2", "t3"] {
        for n in 0..2 {
            let outcome = escalator.on_outcome(&record(&format!("{caller}-{n}"), caller, Disposition::Prank)).await;
            assert_eq!(outcome.unwrap().change, [LadderChange::None, LadderChange::Proposed][n]);
        }
    }
    let changed = format!("UPDATE cases SET caller_number = '0813-999' WHERE caller_key = '{:0>64}'", "t2");
    assert_eq!(execute(url, &changed).await, 1);
    let before = escalator.store().outcome_batches();
    let retried = escalator.store().outcome_batches_retried();

    let batch: Vec<ContactRecord> = ["t1", "t2", "t3", "t4"]
        .iter()
        .map(|caller| record(&format!("{caller}-2"), caller, Disposition::Prank))
        .collect();
    let results = join_all(batch.iter().map(|record| escalator.on_outcome(record)).collect()).await;
    one_batch_per_writer(escalator.store(), before);
    assert!(escalator.store().outcome_batches_retried() > retried, "the batch ran again outcome by outcome");
    assert!(matches!(&results[1], Err(CaseError::Corrupt { what: "case state", .. })), "{:?}", results[1]);
    for index in [0, 2] {
        let outcome = results[index].as_ref().unwrap();
        assert_eq!(outcome.change, LadderChange::EvidenceAdded);
        assert_eq!(outcome.case.as_ref().unwrap().incidents, 3);
        assert_eq!(outcome.case.as_ref().unwrap().version, 3, "proposed, approved, evidence added");
    }
    assert_eq!(results[3].as_ref().unwrap().change, LadderChange::None);
    let incidents = "SELECT c.caller_key, COUNT(*) FROM cases c JOIN case_incidents ci ON ci.case_id = c.case_id \
                     GROUP BY c.caller_key ORDER BY c.caller_key";
    let counts: Vec<String> = rows(url, incidents).await.into_iter().map(|row| row[1].clone()).collect();
    assert_eq!(counts, ["3", "2", "3"], "t2's case is left as it was");
    escalator.store().close().await;

    // The chain itself holds (the batch's entries extend it); verification names the changed case, and only it.
    let changed_case = format!("SELECT case_id FROM cases WHERE caller_key = '{:0>64}'", "t2");
    let changed_case = rows(url, &changed_case).await.remove(0).remove(0);
    let store = CaseStore::connect(url).await.unwrap();
    match store.verify_audit().await.unwrap() {
        Verification::Broken { problem, .. } => {
            assert!(problem.contains(&format!("case {changed_case}: its rows differ")), "{problem}");
        }
        other => panic!("the changed case is reported: {other:?}"),
    }
    store.close().await;
}
on_both_databases!(evidence_for_a_case_changed_outside_saring_fails_only_its_caller);

/// A batch in which callers come back several times (each caller's pranks, emergencies and repeats in successive
/// rounds of [`saring::cases`]' batched statements) is written in one attempt, and it keeps and proposes exactly what
/// the same outcomes one at a time keep and propose.
async fn a_batch_with_callers_coming_back_equals_one_outcome_at_a_time(batched: &str, one_by_one: &str) {
    let outcomes: Vec<ContactRecord> = (0..60)
        .map(|n| {
            let disposition = match n % 11 {
                3 => Disposition::GenuineEmergency,
                7 => Disposition::Silent,
                _ => Disposition::Prank,
            };
            let mut record = record(&format!("round-{n}"), &format!("r{}", n % 9), disposition);
            record.at_ms += n as i64 * 60_000;
            record
        })
        .collect();
    // A caller with an open case before the batch (its pranks add evidence), and a true repeat inside the batch.
    let mut outcomes = outcomes;
    outcomes.insert(30, outcomes[2].clone());
    let earlier = [record("early-1", "r0", Disposition::Prank), record("early-2", "r0", Disposition::Prank)];

    let sequential = Escalator::new(CaseStore::connect(one_by_one).await.unwrap(), LadderPolicy::default_policy());
    let mut expected = Vec::new();
    for record in earlier.iter().chain(&outcomes) {
        let outcome = sequential.on_outcome(record).await.unwrap();
        expected.push((outcome.duplicate, outcome.change));
    }
    sequential.store().close().await;

    let batched_escalator = Escalator::new(CaseStore::connect(batched).await.unwrap(), LadderPolicy::default_policy());
    for record in &earlier {
        batched_escalator.on_outcome(record).await.unwrap();
    }
    let before = batched_escalator.store().outcome_batches();
    let results = join_all(outcomes.iter().map(|record| batched_escalator.on_outcome(record)).collect()).await;
    one_batch_per_writer(batched_escalator.store(), before);
    assert_eq!(batched_escalator.store().outcome_batches_retried(), 0, "no outcome failed the batched attempt");
    let got: Vec<(bool, LadderChange)> =
        results.into_iter().map(|result| result.map(|outcome| (outcome.duplicate, outcome.change)).unwrap()).collect();
    assert_eq!(got, expected[earlier.len()..], "each outcome's answer is the one-by-one answer");
    assert!(got.iter().any(|(_, change)| *change == LadderChange::EvidenceAdded));
    assert!(got.iter().any(|(duplicate, _)| *duplicate));
    batched_escalator.store().close().await;

    assert_eq!(cases(batched).await, cases(one_by_one).await, "the same cases, on the same contacts");
    let contacts = "SELECT contact_id, caller_key, disposition FROM contacts ORDER BY contact_id";
    assert_eq!(rows(batched, contacts).await, rows(one_by_one, contacts).await);
    verify(batched).await;
}
on_both_databases!(a_batch_with_callers_coming_back_equals_one_outcome_at_a_time);

/// Makes any COMMIT that includes a contact whose id starts with `poison` fail: a trigger files the contact's id
/// under a deferred foreign key that has no parent, which both databases check only at COMMIT.
async fn poison_commits(url: &str) {
    execute(url, "CREATE TABLE poison_parent (id TEXT PRIMARY KEY)").await;
    execute(url, "CREATE TABLE poison (id TEXT REFERENCES poison_parent (id) DEFERRABLE INITIALLY DEFERRED)").await;
    if url.starts_with("sqlite:") {
        execute(
            url,
            "CREATE TRIGGER poison_contacts AFTER INSERT ON contacts WHEN NEW.contact_id LIKE 'poison%' \
             BEGIN INSERT INTO poison (id) VALUES (NEW.contact_id); END",
        )
        .await;
    } else {
        execute(
            url,
            "CREATE FUNCTION poison_contact() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.contact_id LIKE 'poison%' THEN INSERT INTO poison (id) VALUES (NEW.contact_id); END IF; \
             RETURN NEW; END $$",
        )
        .await;
        execute(
            url,
            "CREATE TRIGGER poison_contacts AFTER INSERT ON contacts FOR EACH ROW EXECUTE FUNCTION poison_contact()",
        )
        .await;
    }
}

async fn a_failed_commit_fails_every_caller_of_its_batch(url: &str, _: &str) {
    let escalator = Escalator::new(CaseStore::connect(url).await.unwrap(), LadderPolicy::default_policy());
    escalator.on_outcome(&record("before", "c0", Disposition::Prank)).await.unwrap();
    poison_commits(url).await;
    let head = rows(url, "SELECT seq, hash FROM audit_head").await;
    let mut changes = escalator.subscribe();
    changes.borrow_and_update();
    let before = escalator.store().outcome_batches();

    // Pranks of c0 (the first proposes a warning, the others add evidence: audit entries in the batch) and the
    // poisoned one; one caller, so one writer and one batch on PostgreSQL too.
    let mut batch: Vec<ContactRecord> =
        (0..12).map(|n| record(&format!("doomed-{n}"), "c0", Disposition::Prank)).collect();
    batch.insert(7, record("poison-1", "c0", Disposition::Prank));
    let results = join_all(batch.iter().map(|record| escalator.on_outcome(record)).collect()).await;
    assert_eq!(escalator.store().outcome_batches(), before + 1, "the outcomes were written in one batch");
    for (record, result) in batch.iter().zip(&results) {
        assert!(matches!(result, Err(CaseError::Database(_))), "{}: {result:?}", record.contact_id);
    }
    let kept = rows(url, "SELECT contact_id FROM contacts ORDER BY contact_id").await;
    assert_eq!(kept, vec![vec!["before".to_owned()]], "nothing of the failed batch is kept");
    assert_eq!(rows(url, "SELECT COUNT(*) FROM cases").await[0][0], "0");
    assert_eq!(rows(url, "SELECT seq, hash FROM audit_head").await, head, "no audit entry is kept");
    assert!(!changes.has_changed().unwrap(), "no watcher is woken by a batch that did not commit");

    // The same outcomes without the poisoned one are then kept: the connection in doubt was replaced.
    batch.remove(7);
    let results = join_all(batch.iter().map(|record| escalator.on_outcome(record)).collect()).await;
    for (record, result) in batch.iter().zip(&results) {
        let outcome = result.as_ref().unwrap_or_else(|error| panic!("{}: {error}", record.contact_id));
        assert!(!outcome.duplicate);
    }
    assert!(changes.has_changed().unwrap(), "the proposals wake watchers");
    assert_eq!(rows(url, "SELECT COUNT(*) FROM contacts").await[0][0], "13");
    assert_eq!(rows(url, "SELECT COUNT(*) FROM cases").await[0][0], "1");
    assert_eq!(rows(url, "SELECT COUNT(*) FROM case_incidents").await[0][0], "13");
    escalator.store().close().await;
    verify(url).await;
}
on_both_databases!(a_failed_commit_fails_every_caller_of_its_batch);

/// Shutdown writes what is queued: outcomes queued and then left by their callers are still kept.
#[tokio::test]
async fn closing_the_store_writes_every_queued_outcome() {
    let url = sqlite_url("group-commit-drain");
    let escalator = Arc::new(Escalator::new(CaseStore::connect(&url).await.unwrap(), LadderPolicy::default_policy()));
    let records: Vec<ContactRecord> =
        (0..30).map(|n| record(&format!("drain-{n}"), &format!("d{}", n % 5), Disposition::Prank)).collect();
    // Queue every outcome, then stop waiting for the answers.
    {
        let mut futures: Vec<_> = records.iter().map(|record| Box::pin(escalator.on_outcome(record))).collect();
        std::future::poll_fn(|context| {
            for future in &mut futures {
                assert!(future.as_mut().poll(context).is_pending());
            }
            Poll::Ready(())
        })
        .await;
    }
    escalator.store().close().await;
    assert_eq!(rows(&url, "SELECT COUNT(*) FROM contacts").await[0][0], "30");
    verify(&url).await;
}
