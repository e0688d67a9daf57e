//! A rotation of the hashing secret under load (`privacy.previous_hash_secrets`), on the in-memory store, one Redis
//! and a Redis Cluster: replicas still on the old secret and replicas on the new one record at once; outcomes first
//! taken by an old replica and retried on a new one count once; every caller's count read under the new secret is
//! exact — no count lost, none doubled — and the old replica still reads what it wrote. Then `saring cases rekey`
//! moves the cases to the new references and the audit chain still verifies.

use std::sync::Arc;
use std::time::Duration;

use saring::grpc::validate;
use saring::privacy::KeyHasher;
use saring::proto;
use saring::screening::Screener;
use saring::store::{HistoryStore, MemoryStore, Recorded};

use crate::common::process::{unique_prefix, PrivateRedis, PrivateRedisCluster};
use crate::common::{prank_outcome, sample_contact, timestamp};
use crate::redis_store::store_at;

const OLD: &[u8] = b"the-old-hashing-secret-2026";
const NEW: &[u8] = b"the-new-hashing-secret-2027";
const CALLERS: usize = 12;

fn model() -> saring_models::Model {
    saring_models::Model::new(saring_models::ModelArtifact::from_json(saring::server::SHIPPED_MODEL).unwrap())
}

fn number(caller: usize) -> String {
    format!("0813-5500-{caller:04}")
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Caller `caller`'s contact `n` as an outcome report (an hour ago plus `n` seconds).
fn outcome(caller: usize, n: usize) -> saring::screening::OutcomeReport {
    let contact_id = format!("rot-{caller}-{n}");
    let at = time::OffsetDateTime::now_utc() - time::Duration::hours(1) + time::Duration::seconds(n as i64);
    let contact = proto::ContactRequest {
        received_at: Some(timestamp(at)),
        device_id: Some(format!("35693803564{caller:04}")),
        ..sample_contact(&contact_id, Some(&number(caller)))
    };
    validate::outcome(&prank_outcome(&contact_id, Some(contact)), now_ms()).unwrap()
}

async fn total(screener: &Screener<impl HistoryStore>, caller: usize) -> u64 {
    let e164 = saring_models::phone::normalise_indonesian_number(&number(caller)).unwrap();
    screener.caller_profile(&e164, now_ms()).await.unwrap().summary.total_contacts
}

async fn a_rotation_under_load_keeps_every_count<S: HistoryStore>(old_store: S, new_store: S) {
    let old = Arc::new(Screener::new(old_store, model(), KeyHasher::new(OLD), 10_000, Duration::from_secs(2)));
    let new = Arc::new(Screener::new(
        new_store,
        model(),
        KeyHasher::new(NEW).with_previous(&[OLD]),
        10_000,
        Duration::from_secs(2),
    ));
    // Before the rotation: five contacts per caller under the old secret.
    for caller in 0..CALLERS {
        for n in 0..5 {
            assert_eq!(old.record_outcome(&outcome(caller, n)).await.unwrap().0, Recorded::Applied);
        }
    }
    // The rollout: every caller at once; an old replica takes contacts 5..10 and each is retried on a new replica
    // (a duplicate there: its marker under the old key is found); new replicas take 10..15, each sent twice.
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..CALLERS {
        let (old, new) = (Arc::clone(&old), Arc::clone(&new));
        tasks.spawn(async move {
            for n in 5..10 {
                assert_eq!(old.record_outcome(&outcome(caller, n)).await.unwrap().0, Recorded::Applied);
                assert_eq!(
                    new.record_outcome(&outcome(caller, n)).await.unwrap().0,
                    Recorded::Duplicate,
                    "{caller}/{n}"
                );
            }
            for n in 10..15 {
                assert_eq!(new.record_outcome(&outcome(caller, n)).await.unwrap().0, Recorded::Applied);
                assert_eq!(new.record_outcome(&outcome(caller, n)).await.unwrap().0, Recorded::Duplicate);
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }
    for caller in 0..CALLERS {
        assert_eq!(total(&new, caller).await, 15, "caller {caller} under the new secret: both generations, once each");
        assert_eq!(total(&old, caller).await, 10, "caller {caller} under the old secret: what the old replicas wrote");
    }
    // A score on a new replica sees the merged history.
    let scored = new.score(validate::contact(sample_contact("rot-score", Some(&number(0))), now_ms()).unwrap()).await;
    assert!(scored.degraded_reasons.is_empty(), "{:?}", scored.degraded_reasons);
}

#[tokio::test]
async fn a_rotation_under_load_keeps_every_count_in_memory() {
    let store = Arc::new(MemoryStore::new(Duration::from_secs(3600)));
    a_rotation_under_load_keeps_every_count(Arc::clone(&store), store).await;
}

#[tokio::test]
async fn a_rotation_under_load_keeps_every_count_on_redis() {
    let redis = PrivateRedis::start();
    let prefix = unique_prefix("rotation");
    a_rotation_under_load_keeps_every_count(store_at(&redis.url(), &prefix), store_at(&redis.url(), &prefix)).await;
}

#[tokio::test]
async fn a_rotation_under_load_keeps_every_count_on_a_redis_cluster() {
    let cluster = PrivateRedisCluster::start();
    let prefix = unique_prefix("rotation-cluster");
    a_rotation_under_load_keeps_every_count(store_at(&cluster.url(), &prefix), store_at(&cluster.url(), &prefix)).await;
}

#[tokio::test]
async fn cases_rekey_moves_every_case_to_the_new_secret_and_the_chain_verifies() {
    use saring::auth::Role;
    let url = crate::common::sqlite_url("rekey");
    let harness = crate::common::start_on(&url).await;
    let mut routing = harness.screening(Role::Routing);
    for n in 0..3 {
        let contact_id = format!("rekey-{n}");
        let at = time::OffsetDateTime::now_utc() - time::Duration::hours(3 - n);
        let contact =
            proto::ContactRequest { received_at: Some(timestamp(at)), ..sample_contact(&contact_id, Some(&number(1))) };
        routing.record_outcome(prank_outcome(&contact_id, Some(contact))).await.unwrap();
    }
    harness.server.stop().await.unwrap();

    let directory = std::env::temp_dir().join(unique_prefix("rekey").replace(':', "-"));
    std::fs::create_dir_all(&directory).unwrap();
    let config = directory.join("saring.toml");
    let development = String::from_utf8(saring::server::DEVELOPMENT_HASH_SECRET.to_vec()).unwrap();
    std::fs::write(
        &config,
        format!(
            "[privacy]\nhash_secret = \"{}\"\nprevious_hash_secrets = [\"{development}\"]\n\n[cases]\ndatabase_url = \"{url}\"\n",
            String::from_utf8(NEW.to_vec()).unwrap()
        ),
    )
    .unwrap();
    let rekey = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_saring"))
            .args(["cases", "rekey", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    let first = rekey();
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{out} {}", String::from_utf8_lossy(&first.stderr));
    assert!(out.contains("re-keyed 1 callers: 1 cases and 3 contacts"), "{out}");
    let again = rekey();
    assert!(String::from_utf8_lossy(&again.stdout).contains("re-keyed 0 callers"), "running it again moves nothing");

    let e164 = saring_models::phone::normalise_indonesian_number(&number(1)).unwrap();
    let new_ref = KeyHasher::new(NEW).number(&e164).to_hex();
    let escalator = saring::cases::Escalator::new(
        saring::cases::CaseStore::connect(&url).await.unwrap(),
        saring_models::ladder::LadderPolicy::default_policy(),
    );
    assert_eq!(escalator.cases_of_caller(&new_ref).await.unwrap().len(), 1, "the case is under the new reference");
    let store = escalator.store();
    let verification = store.verify_audit().await.unwrap();
    assert!(matches!(verification, saring::cases::audit::Verification::Intact { .. }), "{verification:?}");
    store.close().await;
    std::fs::remove_dir_all(directory).ok();
}

#[tokio::test]
async fn an_erasure_during_a_rotation_removes_the_histories_under_both_secrets() {
    let store = Arc::new(MemoryStore::new(Duration::from_secs(3600)));
    let old = Screener::new(Arc::clone(&store), model(), KeyHasher::new(OLD), 1000, Duration::from_secs(2));
    let new = Screener::new(store, model(), KeyHasher::new(NEW).with_previous(&[OLD]), 1000, Duration::from_secs(2));
    old.record_outcome(&outcome(7, 0)).await.unwrap();
    new.record_outcome(&outcome(7, 1)).await.unwrap();
    assert_eq!(total(&new, 7).await, 2);
    let e164 = saring_models::phone::normalise_indonesian_number(&number(7)).unwrap();
    let erased = new.erase(Some(&e164), None).await.unwrap();
    assert_eq!(erased.histories, 2, "the history under the new secret and the one under the old");
    assert_eq!(total(&new, 7).await, 0);
    assert_eq!(total(&old, 7).await, 0);
}

#[tokio::test]
async fn during_a_rotation_access_and_erasure_find_the_cases_under_the_earlier_secret() {
    use saring::auth::Role;
    use tonic::Code;
    let url = crate::common::sqlite_url("rotation-erasure");
    // Before the rotation (the development secret): three pranks, an open warning.
    let before = crate::common::start_on(&url).await;
    let mut routing = before.screening(Role::Routing);
    for n in 0..3 {
        let contact_id = format!("rot-erase-{n}");
        let at = time::OffsetDateTime::now_utc() - time::Duration::hours(3 - n);
        let contact =
            proto::ContactRequest { received_at: Some(timestamp(at)), ..sample_contact(&contact_id, Some(&number(2))) };
        routing.record_outcome(prank_outcome(&contact_id, Some(contact))).await.unwrap();
    }
    before.server.stop().await.unwrap();

    // After it, before `saring cases rekey`: the same database under the new secret.
    let mut settings = saring::config::Settings::default();
    settings.privacy.hash_secret = Some(String::from_utf8(NEW.to_vec()).unwrap());
    settings.privacy.previous_hash_secrets =
        vec![String::from_utf8(saring::server::DEVELOPMENT_HASH_SECRET.to_vec()).unwrap()];
    let models = Arc::new(saring::server::load_models(&settings).unwrap());
    let after = crate::common::start_with(&settings, models, &url).await;
    let mut legal = after.privacy(Role::Legal);
    let access = proto::AccessRequest { caller: number(2), reason: "DSR-9".into() };
    let records = legal.access(access.clone()).await.unwrap().into_inner();
    assert_eq!((records.contacts.len(), records.cases.len()), (3, 1), "found under the earlier secret's reference");
    let erase = proto::EraseRequest { caller: number(2), device_id: String::new(), reason: "DSR-9".into() };
    let held = legal.erase(erase.clone()).await.unwrap_err();
    assert_eq!(held.code(), Code::FailedPrecondition, "the old case's hold stands: {held:?}");
    let case_id = records.cases[0].case_id.clone();
    let release = proto::ReleaseHoldRequest { case_id, reason: "DSR-9 upheld".into() };
    legal.release_hold(release).await.unwrap();
    let erasure = legal.erase(erase).await.unwrap().into_inner();
    assert_eq!((erasure.contacts_removed, erasure.cases_redacted), (3, 1));
    let after_erasure = legal.access(access).await.unwrap().into_inner();
    assert!(after_erasure.contacts.is_empty() && after_erasure.cases.is_empty());
    after.server.stop().await.unwrap();
}
