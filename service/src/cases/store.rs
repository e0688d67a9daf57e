//! The case database through sqlx's `Any` driver: one set of portable SQL for SQLite and PostgreSQL.
//! Every change is one transaction that also appends its audit entry, so a case and its audit trail never
//! disagree, and a commit is durable before anything is acknowledged.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use saring_models::ladder::{Approval, Delivered, Incident, LadderPolicy, Rung};
use saring_models::{Channel, Disposition};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor, Row, Transaction};

use super::audit::{self, AuditEntry, AuditKey};
use super::chain::{AuditLink, AuditOptions, AuditSetup};
use super::digest::case_digest;
use super::writer::OutcomeWriters;
use super::{
    check_channel, check_claimant, check_delivery, check_repeat, rfc3339, CaseError, CaseEvent, CaseEvidence,
    CaseFilter, CaseState, CaseSummary, ClaimedCase, ContactRecord, CorrectionOutcome, Delivery, DeliveryChannel,
    DispositionCorrection, LadderChange, LadderOutcome, RecordedOutcome, TimelineEntry,
};
use crate::auth::Principal;

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The actor of the policy's own steps in the audit log.
pub(super) const SYSTEM_ACTOR: &str = "saring";
pub(super) const SYSTEM_ROLE: &str = "system";

pub(super) const CASE_COLUMNS: &str =
    "case_id, caller_key, rung, state, version, region, approval, rule, policy_version, \
     model_version, created_ms, updated_ms, decided_by, decided_ms, decision_reason, actioned_by, delivered_ms, \
     action_note, claimed_by, claimed_ms, delivery_channel, reverted_by, reverted_ms, revert_reason, \
     (SELECT COUNT(*) FROM case_incidents ci WHERE ci.case_id = cases.case_id) AS incidents";

/// [`CASE_COLUMNS`] for [`standing`]: the incidents are counted for an open case only.
pub(super) const STANDING_COLUMNS: &str =
    "case_id, caller_key, rung, state, version, region, approval, rule, policy_version, \
     model_version, created_ms, updated_ms, decided_by, decided_ms, decision_reason, actioned_by, delivered_ms, \
     action_note, claimed_by, claimed_ms, delivery_channel, reverted_by, reverted_ms, revert_reason, \
     CAST(CASE WHEN state IN ('proposed', 'approved') THEN (SELECT COUNT(*) FROM case_incidents ci \
     WHERE ci.case_id = cases.case_id) ELSE 0 END AS BIGINT) AS incidents";

/// The columns of an audit entry, as [`audit_entry`] reads them.
pub(super) const AUDIT_COLUMNS: &str =
    "seq, at_ms, actor, role, action, case_id, state, reason, scheme, case_digest, prev_hash, hash";

/// The durable case database.
#[derive(Debug, Clone)]
pub struct CaseStore {
    pub(super) pool: AnyPool,
    pub(super) audit: Arc<AuditSetup>,
    /// False while a replica that started with its PostgreSQL unreachable has not yet reached, migrated and checked
    /// it ([`CaseStore::connect_or_wait`]): until then every case operation is refused and scoring goes on.
    pub(super) open: Arc<AtomicBool>,
    /// Whether the database is SQLite (one writer at a time).
    pub(super) sqlite: bool,
    /// The pool the check of a repeated outcome reads from: for a SQLite file its own read-only connections, so
    /// the check never waits behind a batch's commit (WAL lets readers run beside the writer); the pool itself
    /// otherwise.
    pub(super) reader: AnyPool,
    /// The group-commit writers of outcomes ([`super::writer`]), started on first use.
    pub(super) writers: Arc<OutcomeWriters>,
}

/// The error of a case operation on a store that has not reached its database since start-up.
pub(super) fn not_reached() -> CaseError {
    CaseError::Database(sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "the case database has not been reached since start-up",
    )))
}

pub(super) fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

pub(super) fn new_case_id() -> String {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).expect("the operating system provides randomness");
    format!("case-{}", hex::encode(random))
}

/// The file of a SQLite URL (`None` for an in-memory database).
fn sqlite_path(url: &str) -> Option<&std::path::Path> {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.starts_with(':')).then(|| std::path::Path::new(path))
}

/// Makes sure the directory of a SQLite file exists, and creates a missing file readable by its owner only: it
/// holds raw numbers. (SQLite gives its -wal and -shm files the database file's permissions.)
fn prepare_sqlite(url: &str) -> std::io::Result<()> {
    let Some(path) = sqlite_path(url) else { return Ok(()) };
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

/// Whether a connection coming back to the pool is outside any transaction, so the next caller's `BEGIN` really
/// begins one. On SQLite "database or disk is full" may roll a transaction back inside SQLite; the ROLLBACK sqlx
/// sends then fails and its transaction count stays raised, so the next `begin()` issues a SAVEPOINT, a later
/// ROLLBACK TO leaves a real transaction open, and every "committed" write after it lives only in that
/// transaction — answered OK, never saved. SQLite is asked directly: a raw `BEGIN` fails inside a transaction.
/// (The queued rollback of a dropped transaction runs first: the connection's commands run in order.)
async fn outside_transaction(connection: &mut AnyConnection, sqlite: bool) -> Result<bool, sqlx::Error> {
    if sqlite {
        if connection.execute("BEGIN").await.is_err() {
            tracing::warn!("a case-database connection came back inside a transaction; closing it");
            return Ok(false);
        }
        connection.execute("ROLLBACK").await?;
    }
    if connection.is_in_transaction() {
        tracing::warn!("a case-database connection came back with a transaction sqlx still counts; closing it");
        return Ok(false);
    }
    Ok(true)
}

/// Hands a connection back after a transaction: one whose transaction failed in the database is closed rather
/// than pooled (its transaction state is not to be trusted), and the pool opens a fresh one.
pub(super) fn settle<T>(mut connection: PoolConnection<Any>, result: &Result<T, CaseError>) {
    if let Err(CaseError::Database(error)) = result {
        tracing::warn!(%error, "closing a case-database connection after a failed transaction");
        connection.close_on_drop();
    }
}

/// The pool of a database server (PostgreSQL).
pub(super) fn server_pool_options() -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(5))
        .after_release(|connection, _| Box::pin(outside_transaction(connection, false)))
}

impl CaseStore {
    /// The pool, once the database has been reached since start-up; until then every case operation fails
    /// (UNAVAILABLE to clients) while scoring goes on.
    pub(super) fn pool(&self) -> Result<&AnyPool, CaseError> {
        if self.open.load(Ordering::Acquire) {
            Ok(&self.pool)
        } else {
            Err(not_reached())
        }
    }

    /// Whether the database has been reached, migrated and its audit chain checked since start-up.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Connects to `url` (`sqlite://PATH`, `sqlite::memory:` or `postgres://…`), creating a SQLite file and its
    /// directory when missing, and applies the migrations; the audit chain under the development key, without an
    /// anchor (tests, backtests, embedding). `saring serve` uses [`CaseStore::connect_with`].
    pub async fn connect(url: &str) -> Result<Self, CaseError> {
        let store = CaseStore::connect_database(url, AuditOptions::development()).await?;
        store.start_audit().await.map_err(super::chain::AuditStartError::into_case_error)?;
        Ok(store)
    }

    pub(super) async fn connect_database(url: &str, audit: AuditOptions) -> Result<Self, CaseError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        if sqlite && !url.contains(":memory:") && (!url.contains("mode=") || url.contains("mode=rwc")) {
            prepare_sqlite(url).map_err(|error| CaseError::Database(sqlx::Error::Io(error)))?;
        }
        let url = if sqlite && !url.contains("mode=") && !url.contains(":memory:") {
            format!("{url}{}mode=rwc", if url.contains('?') { "&" } else { "?" })
        } else {
            url.to_owned()
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = if sqlite {
            // One connection: SQLite has one writer at a time anyway, and an in-memory database lives as long as
            // its connection. WAL with synchronous=FULL makes every commit durable before it is acknowledged.
            AnyPoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(|connection, _| {
                    Box::pin(async move {
                        connection.execute("PRAGMA journal_mode = WAL").await?;
                        connection.execute("PRAGMA synchronous = FULL").await?;
                        connection.execute("PRAGMA busy_timeout = 5000").await?;
                        Ok(())
                    })
                })
                .after_release(|connection, _| Box::pin(outside_transaction(connection, true)))
                .connect_with(options)
                .await?
        } else {
            server_pool_options().connect_with(options).await?
        };
        MIGRATOR.run(&pool).await.map_err(|error| CaseError::Database(error.into()))?;
        let reader = match sqlite_path(&url) {
            Some(_) if sqlite => {
                let read_only = url.replace("mode=rwc", "mode=ro");
                AnyPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(10))
                    .after_connect(|connection, _| {
                        Box::pin(async move {
                            connection.execute("PRAGMA busy_timeout = 5000").await?;
                            Ok(())
                        })
                    })
                    .connect_lazy_with(AnyConnectOptions::from_str(&read_only)?)
            }
            _ => pool.clone(),
        };
        Ok(CaseStore {
            pool,
            audit: Arc::new(AuditSetup::new(audit)),
            open: Arc::new(AtomicBool::new(true)),
            sqlite,
            reader,
            writers: Arc::default(),
        })
    }

    /// Opens an existing case database to read it (`saring audit verify`, under `audit`): a SQLite file
    /// read-only, and never created or migrated — a missing database is an error, not an empty one that verifies.
    pub async fn open_existing(url: &str, audit: AuditOptions) -> Result<Self, CaseError> {
        sqlx::any::install_default_drivers();
        let url = if url.starts_with("sqlite:") {
            let path = sqlite_path(url).ok_or_else(|| {
                CaseError::Database(sqlx::Error::Configuration("an in-memory database has nothing to read".into()))
            })?;
            if !path.is_file() {
                return Err(CaseError::Database(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no case database at {}", path.display()),
                ))));
            }
            let without_mode: Vec<&str> = url
                .split_once('?')
                .map(|(_, query)| query.split('&').filter(|pair| !pair.starts_with("mode=")).collect())
                .unwrap_or_default();
            let base = url.split('?').next().unwrap_or(url);
            let mut query = without_mode.join("&");
            if !query.is_empty() {
                query.push('&');
            }
            format!("{base}?{query}mode=ro")
        } else {
            url.to_owned()
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(CaseStore {
            reader: pool.clone(),
            pool,
            audit: Arc::new(AuditSetup::new(audit)),
            open: Arc::new(AtomicBool::new(true)),
            sqlite: url.starts_with("sqlite:"),
            writers: Arc::default(),
        })
    }

    /// Writes every outcome queued so far ([`CaseStore::drain_outcomes`]), then closes the pools.
    pub async fn close(&self) {
        self.drain_outcomes().await;
        self.reader.close().await;
        self.pool.close().await;
    }

    /// Keeps an outcome and evaluates the ladder in its caller's writer's next batch ([`super::writer`]); answers
    /// once that batch has committed, with the sequence number of the outcome's last audit entry.
    pub(super) async fn on_outcome(
        &self,
        policy: &Arc<LadderPolicy>,
        record: &ContactRecord,
        clock_ms: i64,
    ) -> Result<(LadderOutcome, Option<i64>), CaseError> {
        self.queue_outcome(policy, record, clock_ms).await
    }

    pub(super) async fn correct(
        &self,
        policy: &LadderPolicy,
        record: &ContactRecord,
        reason: &str,
        actor: &Principal,
        clock_ms: i64,
    ) -> Result<(CorrectionOutcome, Option<i64>), CaseError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut connection = self.pool()?.acquire().await?;
            let result =
                Self::correct_in(&mut connection, &self.audit.key, policy, record, reason, actor, clock_ms).await;
            settle(connection, &result);
            match result {
                // A proposal raced another replica's: run again and find the winner's case.
                Err(CaseError::Database(sqlx::Error::Database(error)))
                    if attempt < 3 && error.kind() == sqlx::error::ErrorKind::UniqueViolation =>
                {
                    continue
                }
                result => {
                    let (outcome, link) = result?;
                    let seq = match link {
                        Some(link) => Some(self.anchored(link).await),
                        None => None,
                    };
                    return Ok((outcome, seq));
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn correct_in(
        connection: &mut AnyConnection,
        key: &AuditKey,
        policy: &LadderPolicy,
        record: &ContactRecord,
        reason: &str,
        actor: &Principal,
        clock_ms: i64,
    ) -> Result<(CorrectionOutcome, Option<AuditLink>), CaseError> {
        let mut tx = connection.begin().await?;
        let stored = recorded_outcome(&mut tx, &record.contact_id)
            .await?
            .ok_or_else(|| CaseError::UnknownContact(record.contact_id.clone()))?;
        if stored.caller_ref != record.caller_ref {
            return Err(CaseError::Invalid {
                field: "contact_id",
                description: format!("{} was recorded for another caller", record.contact_id),
            });
        }
        let (previous, to) = (stored.disposition, record.disposition);
        let mut outcome = CorrectionOutcome {
            previous,
            unchanged: previous == to,
            evidence_removed: None,
            withdrawn: None,
            flagged: Vec::new(),
            change: LadderChange::None,
            case: None,
        };
        if outcome.unchanged {
            outcome.case = open_case(&mut tx, &record.caller_ref).await?;
            tx.commit().await?;
            return Ok((outcome, None));
        }

        // Every case the contact grounds records the change (its digest covers the contact's row), so each must
        // still match its last audited state before anything is written on top of it.
        let grounded = sqlx::query(&format!(
            "SELECT {CASE_COLUMNS} FROM cases WHERE case_id IN \
             (SELECT case_id FROM case_incidents WHERE contact_id = $1) ORDER BY created_ms, case_id"
        ))
        .bind(&record.contact_id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(summary)
        .collect::<Result<Vec<_>, _>>()?;
        for case in &grounded {
            check_audited(&mut tx, &case.case_id).await?;
        }
        let now = now_ms();
        sqlx::query("UPDATE contacts SET disposition = $2 WHERE contact_id = $1")
            .bind(&record.contact_id)
            .bind(to.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO contact_corrections (correction_id, contact_id, corrected_ms, from_disposition, \
             to_disposition, corrected_by, role, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(new_case_id().replacen("case-", "correction-", 1))
        .bind(&record.contact_id)
        .bind(clock_ms)
        .bind(previous.as_str())
        .bind(to.as_str())
        .bind(&actor.name)
        .bind(actor.role.as_str())
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        let audit_reason = format!(
            "contact {}: disposition corrected from {} to {} by {}; reason: {reason}",
            record.contact_id,
            previous.as_str(),
            to.as_str(),
            actor.name
        );
        let mut link = None;
        if grounded.is_empty() {
            link = Some(
                append_audit(&mut tx, key, &actor.name, actor.role.as_str(), "corrected", None, None, &audit_reason)
                    .await?,
            );
        }
        for case in &grounded {
            let counts = policy.rule(case.rung).counts.contains(&to);
            if case.state != CaseState::Proposed || counts {
                link = Some(
                    bump_by(&mut tx, key, case, (actor.name.as_str(), actor.role.as_str()), "corrected", &audit_reason)
                        .await?,
                );
                if case.state != CaseState::Proposed {
                    outcome.flagged.push(case.case_id.clone());
                }
                continue;
            }
            // A proposed case the contact no longer counts towards loses it; when its rule no longer holds, it is
            // withdrawn, and its other incidents are released (not spent) to count again.
            sqlx::query("DELETE FROM case_incidents WHERE case_id = $1 AND contact_id = $2")
                .bind(&case.case_id)
                .bind(&record.contact_id)
                .execute(&mut *tx)
                .await?;
            outcome.evidence_removed = Some(case.case_id.clone());
            link = Some(
                bump_by(&mut tx, key, case, (actor.name.as_str(), actor.role.as_str()), "corrected", &audit_reason)
                    .await?,
            );
            let remaining: i64 = sqlx::query("SELECT COUNT(*) FROM case_incidents WHERE case_id = $1")
                .bind(&case.case_id)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            let threshold = policy.rule(case.rung).threshold;
            if remaining >= i64::from(threshold) {
                continue;
            }
            let withdrawal = format!(
                "withdrawn: the correction of contact {} from {} to {} removed its grounds ({remaining} of {threshold} \
                 counted incidents remain; they count again towards a later proposal)",
                record.contact_id,
                previous.as_str(),
                to.as_str()
            );
            sqlx::query("DELETE FROM case_incidents WHERE case_id = $1").bind(&case.case_id).execute(&mut *tx).await?;
            sqlx::query(
                "UPDATE cases SET state = 'rejected', version = version + 1, updated_ms = $2, decided_by = $3, \
                 decided_ms = $2, decision_reason = $4 WHERE case_id = $1",
            )
            .bind(&case.case_id)
            .bind(now)
            .bind(SYSTEM_ACTOR)
            .bind(&withdrawal)
            .execute(&mut *tx)
            .await?;
            link = Some(
                append_audit(
                    &mut tx,
                    key,
                    SYSTEM_ACTOR,
                    SYSTEM_ROLE,
                    "rejected",
                    Some(&case.case_id),
                    Some(CaseState::Rejected),
                    &withdrawal,
                )
                .await?,
            );
            outcome.withdrawn = Some(load_case(&mut tx, &case.case_id).await?);
            tracing::info!(case_id = %case.case_id, contact_id = %record.contact_id, "a correction withdrew a proposed case");
        }

        // The new disposition, evaluated like a new outcome: evidence for the open case, or a proposal.
        let (open, delivered) = standing(&mut tx, &record.caller_ref).await?;
        match open {
            Some(case) => {
                // A contact that grounds a case already (this one, or a closed one: spent) is not added again.
                let grounds: i64 = sqlx::query("SELECT COUNT(*) FROM case_incidents WHERE contact_id = $1")
                    .bind(&record.contact_id)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get(0)?;
                if grounds == 0 && policy.rule(case.rung).counts.contains(&to) {
                    check_audited(&mut tx, &case.case_id).await?;
                    sqlx::query("INSERT INTO case_incidents (case_id, contact_id) VALUES ($1, $2)")
                        .bind(&case.case_id)
                        .bind(&record.contact_id)
                        .execute(&mut *tx)
                        .await?;
                    let reason = format!(
                        "{} contact {} added as evidence (corrected from {})",
                        to.as_str(),
                        record.contact_id,
                        previous.as_str()
                    );
                    link = Some(bump(&mut tx, key, &case, "evidence_added", &reason).await?);
                    outcome.change = LadderChange::EvidenceAdded;
                    outcome.case = Some(load_case(&mut tx, &case.case_id).await?);
                } else {
                    outcome.case = Some(load_case(&mut tx, &case.case_id).await?);
                }
            }
            None => {
                let (change, case, proposed) =
                    propose(&mut tx, key, policy, record, delivered, clock_ms, clock_ms, None).await?;
                outcome.change = change;
                outcome.case = case;
                link = proposed.or(link);
            }
        }
        tx.commit().await?;
        tracing::info!(contact_id = %record.contact_id, from = previous.as_str(), to = to.as_str(), actor = %actor.name, change = ?outcome.change, "disposition corrected");
        Ok((outcome, link))
    }

    pub(super) async fn list(
        &self,
        filter: &CaseFilter,
    ) -> Result<(Vec<CaseSummary>, Option<(i64, String)>), CaseError> {
        let mut sql = format!("SELECT {CASE_COLUMNS} FROM cases WHERE 1 = 1");
        let mut binds: Vec<Bind> = Vec::new();
        let placeholder = |binds: &mut Vec<Bind>, value: Bind| {
            binds.push(value);
            format!("${}", binds.len())
        };
        if !filter.states.is_empty() {
            let list: Vec<String> = filter
                .states
                .iter()
                .map(|state| placeholder(&mut binds, Bind::Text(state.as_str().to_owned())))
                .collect();
            sql.push_str(&format!(" AND state IN ({})", list.join(", ")));
        }
        if !filter.rungs.is_empty() {
            let list: Vec<String> =
                filter.rungs.iter().map(|rung| placeholder(&mut binds, Bind::Text(rung.key().to_owned()))).collect();
            sql.push_str(&format!(" AND rung IN ({})", list.join(", ")));
        }
        if let Some(region) = &filter.region {
            let exact = placeholder(&mut binds, Bind::Text(region.clone()));
            let below = placeholder(&mut binds, Bind::Text(format!("{region}.%")));
            sql.push_str(&format!(" AND (region = {exact} OR region LIKE {below})"));
        }
        if let Some(from) = filter.created_from_ms {
            sql.push_str(&format!(" AND created_ms >= {}", placeholder(&mut binds, Bind::Int(from))));
        }
        if let Some(to) = filter.created_to_ms {
            sql.push_str(&format!(" AND created_ms < {}", placeholder(&mut binds, Bind::Int(to))));
        }
        let (beyond, order) = if filter.oldest_first { (">", "ASC") } else { ("<", "DESC") };
        if let Some((created, case_id)) = &filter.after {
            let created_a = placeholder(&mut binds, Bind::Int(*created));
            let created_b = placeholder(&mut binds, Bind::Int(*created));
            let id = placeholder(&mut binds, Bind::Text(case_id.clone()));
            sql.push_str(&format!(
                " AND (created_ms {beyond} {created_a} OR (created_ms = {created_b} AND case_id {beyond} {id}))"
            ));
        }
        let page_size = filter.page_size.clamp(1, 500);
        sql.push_str(&format!(" ORDER BY created_ms {order}, case_id {order} LIMIT {}", page_size + 1));
        let mut query = sqlx::query(&sql);
        for bind in binds {
            query = match bind {
                Bind::Text(text) => query.bind(text),
                Bind::Int(int) => query.bind(int),
            };
        }
        let rows = query.fetch_all(self.pool()?).await?;
        let mut cases = rows.iter().map(summary).collect::<Result<Vec<_>, _>>()?;
        let next = if cases.len() > page_size as usize {
            cases.truncate(page_size as usize);
            cases.last().map(|case| (case.created_ms, case.case_id.clone()))
        } else {
            None
        };
        Ok((cases, next))
    }

    pub(super) async fn summary(&self, case_id: &str) -> Result<CaseSummary, CaseError> {
        let row = sqlx::query(&format!("SELECT {CASE_COLUMNS} FROM cases WHERE case_id = $1"))
            .bind(case_id)
            .fetch_optional(self.pool()?)
            .await?
            .ok_or_else(|| CaseError::NotFound(case_id.to_owned()))?;
        summary(&row)
    }

    pub(super) async fn cases_of_caller(&self, caller_ref: &str) -> Result<Vec<CaseSummary>, CaseError> {
        let rows = sqlx::query(&format!(
            "SELECT {CASE_COLUMNS} FROM cases WHERE caller_key = $1 ORDER BY created_ms, case_id"
        ))
        .bind(caller_ref)
        .fetch_all(self.pool()?)
        .await?;
        rows.iter().map(summary).collect()
    }

    pub(super) async fn read_evidence(
        &self,
        case_id: &str,
        reader: &Principal,
        audit: Option<&str>,
    ) -> Result<(CaseEvidence, Option<i64>), CaseError> {
        let mut connection = self.pool()?.acquire().await?;
        let result = Self::read_evidence_in(&mut connection, &self.audit.key, case_id, reader, audit).await;
        settle(connection, &result);
        let (evidence, link) = result?;
        let seq = match link {
            Some(link) => Some(self.anchored(link).await),
            None => None,
        };
        Ok((evidence, seq))
    }

    async fn read_evidence_in(
        connection: &mut AnyConnection,
        key: &AuditKey,
        case_id: &str,
        reader: &Principal,
        audit: Option<&str>,
    ) -> Result<(CaseEvidence, Option<AuditLink>), CaseError> {
        let mut tx = connection.begin().await?;
        let summary = load_case(&mut tx, case_id).await?;
        let row = sqlx::query("SELECT caller_number, timeline_from_ms FROM cases WHERE case_id = $1")
            .bind(case_id)
            .fetch_one(&mut *tx)
            .await?;
        let caller_number: String = row.try_get("caller_number")?;
        let timeline_from: i64 = row.try_get("timeline_from_ms")?;
        let counted: HashSet<String> = sqlx::query("SELECT contact_id FROM case_incidents WHERE case_id = $1")
            .bind(case_id)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?;
        let timeline = timeline(&mut tx, &summary.caller_ref, timeline_from, &counted).await?;
        let link = match audit {
            Some(reason) => Some(
                append_audit(
                    &mut tx,
                    key,
                    &reader.name,
                    reader.role.as_str(),
                    "evidence_read",
                    Some(case_id),
                    Some(summary.state),
                    reason,
                )
                .await?,
            ),
            None => None,
        };
        tx.commit().await?;
        Ok((CaseEvidence { summary, caller_number, timeline }, link))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn transition(
        &self,
        case_id: &str,
        version: i64,
        from: &[CaseState],
        to: CaseState,
        action: &str,
        reason: &str,
        delivery: Option<Delivery>,
        actor: &Principal,
        clock_ms: i64,
    ) -> Result<(CaseSummary, i64), CaseError> {
        let mut connection = self.pool()?.acquire().await?;
        let result = Self::transition_in(
            &mut connection,
            &self.audit.key,
            case_id,
            version,
            from,
            to,
            (action, reason),
            delivery,
            actor,
            clock_ms,
        )
        .await;
        settle(connection, &result);
        let (summary, link) = result?;
        Ok((summary, self.anchored(link).await))
    }

    #[allow(clippy::too_many_arguments)]
    async fn transition_in(
        connection: &mut AnyConnection,
        key: &AuditKey,
        case_id: &str,
        version: i64,
        from: &[CaseState],
        to: CaseState,
        (action, reason): (&str, &str),
        delivery: Option<Delivery>,
        actor: &Principal,
        clock_ms: i64,
    ) -> Result<(CaseSummary, AuditLink), CaseError> {
        let mut tx = connection.begin().await?;
        let current = load_case(&mut tx, case_id).await?;
        if current.version != version || !from.contains(&current.state) {
            return Err(conflict(current, version, to));
        }
        check_audited(&mut tx, case_id).await?;
        let now = clock_ms;
        let delivered_ms = delivery.map(|delivery| delivery.at_ms);
        if to == CaseState::Actioned {
            let delivery = delivery
                .ok_or(CaseError::Invalid { field: "channel", description: "a delivery names its channel".into() })?;
            check_claimant(&current, &actor.name)?;
            check_channel(current.rung, delivery.channel)?;
            check_delivery(&current, delivery.at_ms, now)?;
            sqlx::query("UPDATE cases SET delivery_channel = $2 WHERE case_id = $1")
                .bind(case_id)
                .bind(delivery.channel.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let (set, by) = match to {
            CaseState::Approved | CaseState::Rejected => {
                ("decided_by = $4, decided_ms = $5, decision_reason = $6", actor.name.as_str())
            }
            CaseState::Actioned => ("actioned_by = $4, delivered_ms = $5, action_note = $6", actor.name.as_str()),
            CaseState::Reverted => ("reverted_by = $4, reverted_ms = $5, revert_reason = $6", actor.name.as_str()),
            CaseState::Proposed => unreachable!("no transition leads back to proposed"),
        };
        let updated = sqlx::query(&format!(
            "UPDATE cases SET state = $1, version = version + 1, updated_ms = $5, {set} \
             WHERE case_id = $2 AND version = $3"
        ))
        .bind(to.as_str())
        .bind(case_id)
        .bind(version)
        .bind(by)
        .bind(if to == CaseState::Actioned { delivered_ms.unwrap_or(now) } else { now })
        .bind(reason)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated != 1 {
            // Another replica's transaction committed between our read and our write.
            let current = load_case(&mut tx, case_id).await?;
            return Err(conflict(current, version, to));
        }
        if to == CaseState::Actioned {
            // updated_ms records when saring learnt of it; the rung dates from the delivery.
            sqlx::query("UPDATE cases SET updated_ms = $2 WHERE case_id = $1")
                .bind(case_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        let link =
            append_audit(&mut tx, key, &actor.name, actor.role.as_str(), action, Some(case_id), Some(to), reason)
                .await?;
        let summary = load_case(&mut tx, case_id).await?;
        tx.commit().await?;
        Ok((summary, link))
    }

    pub(super) async fn claim(
        &self,
        case_id: &str,
        version: i64,
        dispatcher: &Principal,
        clock_ms: i64,
        claim_ms: i64,
    ) -> Result<(ClaimedCase, i64), CaseError> {
        let mut connection = self.pool()?.acquire().await?;
        let result =
            Self::claim_in(&mut connection, &self.audit.key, case_id, version, dispatcher, clock_ms, claim_ms).await;
        settle(connection, &result);
        let (claimed, link) = result?;
        Ok((claimed, self.anchored(link).await))
    }

    async fn claim_in(
        connection: &mut AnyConnection,
        key: &AuditKey,
        case_id: &str,
        version: i64,
        dispatcher: &Principal,
        now: i64,
        claim_ms: i64,
    ) -> Result<(ClaimedCase, AuditLink), CaseError> {
        let mut tx = connection.begin().await?;
        let current = load_case(&mut tx, case_id).await?;
        if current.version != version || current.state != CaseState::Approved {
            return Err(not_claimable(current, version));
        }
        if let (Some(holder), Some(since)) = (&current.claimed_by, current.claimed_ms) {
            let lapses = since.saturating_add(claim_ms);
            if holder != &dispatcher.name && now < lapses {
                let message = format!(
                    "case {case_id} is claimed by {holder} since {}; the claim lapses at {} unless it is released \
                     or delivered first",
                    rfc3339(since),
                    rfc3339(lapses)
                );
                return Err(CaseError::Conflict { message, current: Box::new(current), stale: false });
            }
        }
        check_audited(&mut tx, case_id).await?;
        let updated = sqlx::query(
            "UPDATE cases SET claimed_by = $3, claimed_ms = $4, version = version + 1, updated_ms = $4 \
             WHERE case_id = $1 AND version = $2",
        )
        .bind(case_id)
        .bind(version)
        .bind(&dispatcher.name)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated != 1 {
            let current = load_case(&mut tx, case_id).await?;
            return Err(not_claimable(current, version));
        }
        let caller_number: String = sqlx::query("SELECT caller_number FROM cases WHERE case_id = $1")
            .bind(case_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let reason = match &current.claimed_by {
            Some(before) if before != &dispatcher.name => {
                format!("claimed for delivery after {before}'s claim lapsed; the number was given to the claimant")
            }
            _ => "claimed for delivery; the number was given to the claimant".to_owned(),
        };
        let link = append_audit(
            &mut tx,
            key,
            &dispatcher.name,
            dispatcher.role.as_str(),
            "claimed",
            Some(case_id),
            Some(CaseState::Approved),
            &reason,
        )
        .await?;
        let summary = load_case(&mut tx, case_id).await?;
        tx.commit().await?;
        Ok((ClaimedCase { summary, caller_number }, link))
    }

    pub(super) async fn release_claim(
        &self,
        case_id: &str,
        version: i64,
        reason: &str,
        dispatcher: &Principal,
        clock_ms: i64,
    ) -> Result<(CaseSummary, i64), CaseError> {
        let mut connection = self.pool()?.acquire().await?;
        let result =
            Self::release_claim_in(&mut connection, &self.audit.key, case_id, version, reason, dispatcher, clock_ms)
                .await;
        settle(connection, &result);
        let (summary, link) = result?;
        Ok((summary, self.anchored(link).await))
    }

    async fn release_claim_in(
        connection: &mut AnyConnection,
        key: &AuditKey,
        case_id: &str,
        version: i64,
        reason: &str,
        dispatcher: &Principal,
        now: i64,
    ) -> Result<(CaseSummary, AuditLink), CaseError> {
        let mut tx = connection.begin().await?;
        let current = load_case(&mut tx, case_id).await?;
        if current.version != version || current.state != CaseState::Approved {
            return Err(not_claimable(current, version));
        }
        check_claimant(&current, &dispatcher.name)?;
        check_audited(&mut tx, case_id).await?;
        let updated = sqlx::query(
            "UPDATE cases SET claimed_by = NULL, claimed_ms = NULL, version = version + 1, updated_ms = $3 \
             WHERE case_id = $1 AND version = $2",
        )
        .bind(case_id)
        .bind(version)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated != 1 {
            let current = load_case(&mut tx, case_id).await?;
            return Err(not_claimable(current, version));
        }
        let link = append_audit(
            &mut tx,
            key,
            &dispatcher.name,
            dispatcher.role.as_str(),
            "claim_released",
            Some(case_id),
            Some(CaseState::Approved),
            reason,
        )
        .await?;
        let summary = load_case(&mut tx, case_id).await?;
        tx.commit().await?;
        Ok((summary, link))
    }

    pub(super) async fn events_after(&self, after_seq: i64, limit: u32) -> Result<Vec<CaseEvent>, CaseError> {
        let rows = sqlx::query(
            "SELECT seq, at_ms, action, actor, case_id FROM audit WHERE seq > $1 AND case_id IS NOT NULL \
             AND action NOT IN ('evidence_read', 'audit_baseline') ORDER BY seq LIMIT $2",
        )
        .bind(after_seq)
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(self.pool()?)
        .await?;
        let mut events = Vec::with_capacity(rows.len());
        let mut connection = self.pool()?.acquire().await?;
        for row in &rows {
            let case_id: String = row.try_get("case_id")?;
            let case_row = sqlx::query(&format!("SELECT {CASE_COLUMNS} FROM cases WHERE case_id = $1"))
                .bind(&case_id)
                .fetch_optional(&mut *connection)
                .await?
                .ok_or_else(|| CaseError::NotFound(case_id.clone()))?;
            events.push(CaseEvent {
                seq: row.try_get("seq")?,
                at_ms: row.try_get("at_ms")?,
                action: row.try_get("action")?,
                actor: row.try_get("actor")?,
                case: summary(&case_row)?,
            });
        }
        Ok(events)
    }

    pub(super) async fn caller_ladder(
        &self,
        policy: &LadderPolicy,
        caller_ref: &str,
        now_ms: i64,
    ) -> Result<(Option<Delivered>, Option<CaseSummary>), CaseError> {
        let mut connection = self.pool()?.acquire().await?;
        let result = Self::caller_ladder_in(&mut connection, policy, caller_ref, now_ms).await;
        settle(connection, &result);
        result
    }

    async fn caller_ladder_in(
        connection: &mut AnyConnection,
        policy: &LadderPolicy,
        caller_ref: &str,
        now_ms: i64,
    ) -> Result<(Option<Delivered>, Option<CaseSummary>), CaseError> {
        let mut tx = connection.begin().await?;
        let (open, delivered) = standing(&mut tx, caller_ref).await?;
        let (_, incidents) = incidents(&mut tx, caller_ref, now_ms - policy.lookback_ms()).await?;
        tx.commit().await?;
        Ok((policy.effective_rung(delivered, &incidents, now_ms), open))
    }

    /// The outcome recorded for `contact_id`, if any: one read outside any transaction, from the reader pool.
    pub(super) async fn recorded_outcome(&self, contact_id: &str) -> Result<Option<RecordedOutcome>, CaseError> {
        self.pool()?;
        let mut connection = self.reader.acquire().await?;
        recorded_outcome(&mut connection, contact_id).await
    }

    /// How many cases are in each state.
    pub async fn count_by_state(&self) -> Result<Vec<(CaseState, i64)>, CaseError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM cases GROUP BY state ORDER BY state")
            .fetch_all(self.pool()?)
            .await?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get("state")?;
                let count: i64 = row.try_get("n")?;
                let state = CaseState::from_name(&state).ok_or(CaseError::Corrupt { what: "state", value: state })?;
                Ok((state, count))
            })
            .collect()
    }

    /// The audit entries of one case, in order.
    pub async fn audit_of(&self, case_id: &str) -> Result<Vec<AuditEntry>, CaseError> {
        let rows = sqlx::query(&format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE case_id = $1 ORDER BY seq"))
            .bind(case_id)
            .fetch_all(self.pool()?)
            .await?;
        rows.iter().map(audit_entry).collect()
    }
}

/// Keeps an outcome and evaluates the ladder inside `tx` (a batch's savepoint), without committing: the
/// contact's row (a repeat of a recorded contact id changes nothing, or is refused by [`check_repeat`]), then
/// evidence for the caller's open case, or a proposal when a rung is due.
pub(super) async fn outcome_steps(
    tx: &mut Transaction<'_, Any>,
    key: &AuditKey,
    policy: &LadderPolicy,
    record: &ContactRecord,
    clock_ms: i64,
) -> Result<(LadderOutcome, Option<AuditLink>), CaseError> {
    let inserted = sqlx::query(
        "INSERT INTO contacts (contact_id, caller_key, at_ms, channel, region, disposition, operator_id, \
         likelihood, model_version, answered, talk_s, recorded_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (contact_id) DO NOTHING",
    );
    let inserted = bind_contact(inserted, record, now_ms()).execute(&mut **tx).await?.rows_affected() == 1;
    if !inserted {
        return repeated_outcome(tx, record).await;
    }
    let (open, delivered) = standing(tx, &record.caller_ref).await?;
    ladder_steps(tx, key, policy, record, clock_ms, (open, delivered), None).await
}

/// Binds a contact's twelve columns, in the order of the contacts table's INSERT.
pub(super) fn bind_contact<'q>(
    query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    record: &'q ContactRecord,
    recorded_ms: i64,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    query
        .bind(&record.contact_id)
        .bind(&record.caller_ref)
        .bind(record.at_ms)
        .bind(record.channel.as_str())
        .bind(&record.region)
        .bind(record.disposition.as_str())
        .bind(record.operator_id.as_deref())
        .bind(NullableDouble(record.likelihood))
        .bind(record.likelihood.map(|_| record.model_version.as_str()))
        .bind(i64::from(record.answered))
        .bind(record.talk_s)
        .bind(recorded_ms)
}

/// An outcome whose contact was recorded already: refused when it says something else ([`check_repeat`]),
/// otherwise answered as a duplicate with the caller's open case.
pub(super) async fn repeated_outcome(
    tx: &mut Transaction<'_, Any>,
    record: &ContactRecord,
) -> Result<(LadderOutcome, Option<AuditLink>), CaseError> {
    if let Some(stored) = recorded_outcome(tx, &record.contact_id).await? {
        check_repeat(&stored, record)?;
    }
    let (open, _) = standing(tx, &record.caller_ref).await?;
    Ok((LadderOutcome { duplicate: true, change: LadderChange::None, case: open }, None))
}

/// The ladder's steps for a newly kept contact, given its caller's standing as read in this transaction after the
/// contact was inserted: evidence for the open case when its rung counts the disposition, otherwise the policy's
/// evaluation (from `incidents` when they were read already, as [`incidents`] reads them).
pub(super) async fn ladder_steps(
    tx: &mut Transaction<'_, Any>,
    key: &AuditKey,
    policy: &LadderPolicy,
    record: &ContactRecord,
    clock_ms: i64,
    (open, delivered): (Option<CaseSummary>, Option<Delivered>),
    incidents: Option<(Vec<String>, Vec<Incident>)>,
) -> Result<(LadderOutcome, Option<AuditLink>), CaseError> {
    if let Some(case) = open {
        if !policy.rule(case.rung).counts.contains(&record.disposition) {
            return Ok((LadderOutcome { duplicate: false, change: LadderChange::None, case: Some(case) }, None));
        }
        check_audited(tx, &case.case_id).await?;
        sqlx::query("INSERT INTO case_incidents (case_id, contact_id) VALUES ($1, $2)")
            .bind(&case.case_id)
            .bind(&record.contact_id)
            .execute(&mut **tx)
            .await?;
        let link = bump(tx, key, &case, "evidence_added", &evidence_reason(record)).await?;
        let case = load_case(tx, &case.case_id).await?;
        return Ok((
            LadderOutcome { duplicate: false, change: LadderChange::EvidenceAdded, case: Some(case) },
            Some(link),
        ));
    }
    let (change, case, link) = propose(tx, key, policy, record, delivered, record.at_ms, clock_ms, incidents).await?;
    Ok((LadderOutcome { duplicate: false, change, case }, link))
}

/// Binds an audit entry's twelve columns, in the order of [`AUDIT_COLUMNS`].
pub(super) fn bind_audit<'q>(
    query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    entry: &'q AuditEntry,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    query
        .bind(entry.seq)
        .bind(entry.at_ms)
        .bind(&entry.actor)
        .bind(&entry.role)
        .bind(&entry.action)
        .bind(&entry.case_id)
        .bind(&entry.state)
        .bind(&entry.reason)
        .bind(entry.scheme)
        .bind(&entry.case_digest)
        .bind(&entry.prev_hash)
        .bind(&entry.hash)
}

/// The reason of the audit entry that adds `record`'s contact to its caller's open case.
pub(super) fn evidence_reason(record: &ContactRecord) -> String {
    format!("{} contact {} added as evidence", record.disposition.as_str(), record.contact_id)
}

/// An optional double for a DOUBLE PRECISION column. sqlx 0.8.6's Any driver sends a NULL `f64` as a NULL
/// `float4`, which PostgreSQL refuses for a statement prepared with a `float8` parameter ("incorrect binary data
/// format"); its NULL `f32` is sent as a NULL `float8`, so NULL goes through as that.
struct NullableDouble(Option<f64>);

impl<'q> sqlx::Encode<'q, Any> for NullableDouble {
    fn encode_by_ref(
        &self,
        buffer: &mut <Any as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        match self.0 {
            Some(value) => <f64 as sqlx::Encode<'q, Any>>::encode_by_ref(&value, buffer),
            None => <Option<f32> as sqlx::Encode<'q, Any>>::encode_by_ref(&None, buffer),
        }
    }
}

impl sqlx::Type<Any> for NullableDouble {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <f64 as sqlx::Type<Any>>::type_info()
    }
}

enum Bind {
    Text(String),
    Int(i64),
}

pub(super) fn audit_entry(row: &AnyRow) -> Result<AuditEntry, CaseError> {
    Ok(AuditEntry {
        seq: row.try_get("seq")?,
        at_ms: row.try_get("at_ms")?,
        actor: row.try_get("actor")?,
        role: row.try_get("role")?,
        action: row.try_get("action")?,
        case_id: row.try_get("case_id")?,
        state: row.try_get("state")?,
        reason: row.try_get("reason")?,
        scheme: row.try_get("scheme")?,
        case_digest: row.try_get("case_digest")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

fn conflict(current: CaseSummary, version: i64, to: CaseState) -> CaseError {
    let by = |who: &Option<String>, why: &Option<String>| {
        format!("{} ({})", who.as_deref().unwrap_or("?"), why.as_deref().unwrap_or("no reason given"))
    };
    let other = match current.state {
        CaseState::Proposed => "it is awaiting a decision".to_owned(),
        CaseState::Approved => format!("it was approved by {}", by(&current.decided_by, &current.decision_reason)),
        CaseState::Rejected => format!("it was rejected by {}", by(&current.decided_by, &current.decision_reason)),
        CaseState::Actioned => format!("it was actioned by {}", by(&current.actioned_by, &current.action_note)),
        CaseState::Reverted => format!("it was reverted by {}", by(&current.reverted_by, &current.revert_reason)),
    };
    let stale = current.version != version;
    let message = if !stale {
        format!("case {} cannot become {}: {other}", current.case_id, to.as_str())
    } else {
        format!(
            "case {} changed (version {} is now {}): {other}; read it again before deciding",
            current.case_id, version, current.version
        )
    };
    CaseError::Conflict { message, current: Box::new(current), stale }
}

/// Why a case cannot be claimed (or its claim released): someone changed it since `version`, or it is not
/// awaiting delivery.
fn not_claimable(current: CaseSummary, version: i64) -> CaseError {
    if current.version != version {
        return conflict(current, version, CaseState::Actioned);
    }
    let message = format!(
        "case {} is {}, not approved and awaiting delivery: only approved cases are claimed",
        current.case_id,
        current.state.as_str()
    );
    CaseError::Conflict { message, current: Box::new(current), stale: false }
}

pub(super) fn summary(row: &AnyRow) -> Result<CaseSummary, CaseError> {
    let rung: String = row.try_get("rung")?;
    let state: String = row.try_get("state")?;
    let approval: String = row.try_get("approval")?;
    let channel: Option<String> = row.try_get("delivery_channel")?;
    let delivery_channel = match channel {
        Some(channel) => Some(
            DeliveryChannel::from_name(&channel)
                .ok_or(CaseError::Corrupt { what: "delivery_channel", value: channel })?,
        ),
        None => None,
    };
    Ok(CaseSummary {
        case_id: row.try_get("case_id")?,
        caller_ref: row.try_get("caller_key")?,
        rung: Rung::from_key(&rung).ok_or(CaseError::Corrupt { what: "rung", value: rung })?,
        state: CaseState::from_name(&state).ok_or(CaseError::Corrupt { what: "state", value: state })?,
        version: row.try_get("version")?,
        region: row.try_get("region")?,
        approval: Approval::from_name(&approval).ok_or(CaseError::Corrupt { what: "approval", value: approval })?,
        rule: row.try_get("rule")?,
        policy_version: row.try_get("policy_version")?,
        model_version: row.try_get("model_version")?,
        incidents: row.try_get("incidents")?,
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
        decided_by: row.try_get("decided_by")?,
        decided_ms: row.try_get("decided_ms")?,
        decision_reason: row.try_get("decision_reason")?,
        actioned_by: row.try_get("actioned_by")?,
        delivered_ms: row.try_get("delivered_ms")?,
        action_note: row.try_get("action_note")?,
        claimed_by: row.try_get("claimed_by")?,
        claimed_ms: row.try_get("claimed_ms")?,
        delivery_channel,
        reverted_by: row.try_get("reverted_by")?,
        reverted_ms: row.try_get("reverted_ms")?,
        revert_reason: row.try_get("revert_reason")?,
    })
}

pub(super) async fn load_case(tx: &mut Transaction<'_, Any>, case_id: &str) -> Result<CaseSummary, CaseError> {
    let row = sqlx::query(&format!("SELECT {CASE_COLUMNS} FROM cases WHERE case_id = $1"))
        .bind(case_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| CaseError::NotFound(case_id.to_owned()))?;
    summary(&row)
}

async fn recorded_outcome(
    connection: &mut AnyConnection,
    contact_id: &str,
) -> Result<Option<RecordedOutcome>, CaseError> {
    let row =
        sqlx::query("SELECT caller_key, disposition, answered, talk_s, at_ms FROM contacts WHERE contact_id = $1")
            .bind(contact_id)
            .fetch_optional(&mut *connection)
            .await?;
    let Some(row) = row else { return Ok(None) };
    let disposition: String = row.try_get("disposition")?;
    Ok(Some(RecordedOutcome {
        caller_ref: row.try_get("caller_key")?,
        disposition: Disposition::from_name(&disposition)
            .ok_or(CaseError::Corrupt { what: "disposition", value: disposition })?,
        answered: row.try_get::<i64, _>("answered")? != 0,
        talk_s: row.try_get("talk_s")?,
        at_ms: row.try_get("at_ms")?,
    }))
}

async fn open_case(tx: &mut Transaction<'_, Any>, caller_ref: &str) -> Result<Option<CaseSummary>, CaseError> {
    let row = sqlx::query(&format!(
        "SELECT {CASE_COLUMNS} FROM cases WHERE caller_key = $1 AND state IN ('proposed', 'approved')"
    ))
    .bind(caller_ref)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(summary).transpose()
}

/// Evaluates the ladder policy for `record`'s caller at `now` (no open case; `delivered` as [`standing`] read it
/// in this transaction; `incidents` as [`incidents`] reads them, read here when `None`): proposes a case when a
/// rung is due and no surge suppresses it, approving an automatic warning at once. Does not commit.
#[allow(clippy::too_many_arguments)]
async fn propose(
    tx: &mut Transaction<'_, Any>,
    key: &AuditKey,
    policy: &LadderPolicy,
    record: &ContactRecord,
    delivered: Option<Delivered>,
    now: i64,
    clock_ms: i64,
    incidents: Option<(Vec<String>, Vec<Incident>)>,
) -> Result<(LadderChange, Option<CaseSummary>, Option<AuditLink>), CaseError> {
    let (ids, incidents) = match incidents {
        Some(read) => read,
        None => self::incidents(tx, &record.caller_ref, now - policy.lookback_ms()).await?,
    };
    let Some(proposal) = policy.evaluate(&incidents, delivered, now) else {
        return Ok((LadderChange::None, None, None));
    };
    let surge_callers: i64 = sqlx::query(
        "SELECT COUNT(DISTINCT caller_key) FROM contacts WHERE region = $1 AND at_ms > $2 AND at_ms <= $3 \
         AND disposition IN ('silent', 'accidental')",
    )
    .bind(&record.region)
    .bind(now - policy.surge_window_ms())
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .try_get(0)?;
    if policy.is_surge(u32::try_from(surge_callers).unwrap_or(u32::MAX)) {
        tracing::info!(region = %record.region, surge_callers, rung = proposal.rung.key(), "a rung was due during a surge; no case proposed");
        return Ok((LadderChange::SurgeSuppressed, None, None));
    }

    let case_id = new_case_id();
    let created = clock_ms;
    let first_incident = proposal.incidents.iter().map(|incident| incident.at_ms).min().unwrap_or(now);
    let timeline_from = first_incident.min(now - policy.window_ms(proposal.rung));
    sqlx::query(
        "INSERT INTO cases (case_id, caller_key, caller_number, rung, state, version, region, approval, rule, \
         policy_version, model_version, timeline_from_ms, created_ms, updated_ms) \
         VALUES ($1, $2, $3, $4, 'proposed', 1, $5, $6, $7, $8, $9, $10, $11, $11)",
    )
    .bind(&case_id)
    .bind(&record.caller_ref)
    .bind(&record.caller_number)
    .bind(proposal.rung.key())
    .bind(&record.region)
    .bind(proposal.approval.as_str())
    .bind(&proposal.rule)
    .bind(&policy.version)
    .bind(&record.model_version)
    .bind(timeline_from)
    .bind(created)
    .execute(&mut **tx)
    .await?;
    for incident in &proposal.incidents {
        sqlx::query("INSERT INTO case_incidents (case_id, contact_id) VALUES ($1, $2)")
            .bind(&case_id)
            .bind(&ids[incident.id])
            .execute(&mut **tx)
            .await?;
    }
    let mut link = append_audit(
        tx,
        key,
        SYSTEM_ACTOR,
        SYSTEM_ROLE,
        "proposed",
        Some(&case_id),
        Some(CaseState::Proposed),
        &proposal.rule,
    )
    .await?;
    if proposal.approval == Approval::Automatic {
        sqlx::query(
            "UPDATE cases SET state = 'approved', version = 2, decided_by = 'policy', decided_ms = $2, \
             decision_reason = $3 WHERE case_id = $1",
        )
        .bind(&case_id)
        .bind(created)
        .bind(format!("approved automatically by policy {}", policy.version))
        .execute(&mut **tx)
        .await?;
        let reason = format!("approved automatically by policy {}", policy.version);
        link = append_audit(
            tx,
            key,
            SYSTEM_ACTOR,
            SYSTEM_ROLE,
            "approved",
            Some(&case_id),
            Some(CaseState::Approved),
            &reason,
        )
        .await?;
    }
    let case = load_case(tx, &case_id).await?;
    Ok((LadderChange::Proposed, Some(case), Some(link)))
}

/// The caller's contacts since `from_ms` as ladder incidents (with their contact ids by incident id); contacts
/// that grounded a closed case are spent.
async fn incidents(
    tx: &mut Transaction<'_, Any>,
    caller_ref: &str,
    from_ms: i64,
) -> Result<(Vec<String>, Vec<Incident>), CaseError> {
    let spent = spent_contacts(tx, &[caller_ref]).await?;
    let rows = sqlx::query(&format!("{INCIDENT_QUERY} WHERE c.caller_key = $1 AND c.at_ms > $2 {INCIDENT_ORDER}"))
        .bind(caller_ref)
        .bind(from_ms)
        .fetch_all(&mut **tx)
        .await?;
    let mut read = (Vec::with_capacity(rows.len()), Vec::with_capacity(rows.len()));
    for row in &rows {
        push_incident(&mut read, row, &spent)?;
    }
    Ok(read)
}

/// The ladder's incidents of callers' contacts, with `WHERE` and [`INCIDENT_ORDER`] to follow; which of them are
/// spent is read apart ([`spent_contacts`]): one range scan of the contacts, and one read of the callers' closed
/// cases, rather than two lookups for every contact.
pub(super) const INCIDENT_QUERY: &str = "SELECT c.caller_key, c.contact_id, c.at_ms, c.disposition FROM contacts c";

/// The order of a caller's incidents.
pub(super) const INCIDENT_ORDER: &str = "ORDER BY c.caller_key, c.at_ms, c.contact_id";

/// The contacts that ground a closed case of their own caller (spent): by contact id, each caller key whose
/// closed case it grounds, with whether one of those cases is a delivered welfare referral (the caller is held for
/// welfare).
pub(super) type Spent = HashMap<String, Vec<(String, bool)>>;

/// The spent contacts of `callers` ([`Spent`]), in one statement.
pub(super) async fn spent_contacts(tx: &mut Transaction<'_, Any>, callers: &[&str]) -> Result<Spent, CaseError> {
    let mut spent = Spent::new();
    if callers.is_empty() {
        return Ok(spent);
    }
    let list = (1..=callers.len()).map(|param| format!("${param}")).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT k.caller_key, ci.contact_id, CAST(CASE WHEN k.state = 'actioned' AND k.rung = 'welfare_referral' \
         THEN 1 ELSE 0 END AS BIGINT) AS welfare FROM cases k JOIN case_incidents ci ON ci.case_id = k.case_id \
         WHERE k.caller_key IN ({list}) AND k.state NOT IN ('proposed', 'approved')"
    );
    let mut query = sqlx::query(&sql).persistent(false);
    for caller in callers {
        query = query.bind(*caller);
    }
    for row in query.fetch_all(&mut **tx).await? {
        let (caller, welfare): (String, bool) = (row.try_get("caller_key")?, row.try_get::<i64, _>("welfare")? != 0);
        let callers = spent.entry(row.try_get("contact_id")?).or_default();
        match callers.iter_mut().find(|(known, _)| *known == caller) {
            Some((_, held)) => *held |= welfare,
            None => callers.push((caller, welfare)),
        }
    }
    Ok(spent)
}

/// Adds a row of [`INCIDENT_QUERY`] to a caller's incidents and their contact ids, spent as `spent` says.
pub(super) fn push_incident(
    (ids, incidents): &mut (Vec<String>, Vec<Incident>),
    row: &AnyRow,
    spent: &Spent,
) -> Result<(), CaseError> {
    let contact_id: String = row.try_get("contact_id")?;
    let disposition: String = row.try_get("disposition")?;
    let welfare = match spent.get(&contact_id) {
        Some(callers) => {
            let caller: String = row.try_get("caller_key")?;
            callers.iter().find(|(known, _)| *known == caller).map(|(_, welfare)| *welfare)
        }
        None => None,
    };
    incidents.push(Incident {
        id: ids.len(),
        at_ms: row.try_get("at_ms")?,
        disposition: Disposition::from_name(&disposition)
            .ok_or(CaseError::Corrupt { what: "disposition", value: disposition })?,
        spent: welfare.is_some(),
        welfare: welfare.unwrap_or(false),
    });
    ids.push(contact_id);
    Ok(())
}

/// The caller's open case, and the punitive rung most recently delivered to it and not reverted, in one query.
async fn standing(
    tx: &mut Transaction<'_, Any>,
    caller_ref: &str,
) -> Result<(Option<CaseSummary>, Option<Delivered>), CaseError> {
    let rows = sqlx::query(&format!(
        "SELECT {STANDING_COLUMNS} FROM cases WHERE caller_key = $1 AND {STANDING_FILTER} {STANDING_ORDER}"
    ))
    .bind(caller_ref)
    .fetch_all(&mut **tx)
    .await?;
    let mut standing = (None, None);
    for row in &rows {
        add_standing(&mut standing, row)?;
    }
    Ok(standing)
}

/// A caller's standing: its open case and the punitive rung most recently delivered to it and not reverted.
pub(super) type Standing = (Option<CaseSummary>, Option<Delivered>);

/// The cases that make a caller's standing: its open case and its delivered punitive rungs.
pub(super) const STANDING_FILTER: &str =
    "(state IN ('proposed', 'approved') OR (state = 'actioned' AND rung <> 'welfare_referral'))";

/// A delivered rung after the rungs delivered after it (the first one read is the latest).
pub(super) const STANDING_ORDER: &str = "ORDER BY delivered_ms DESC";

/// Adds a row of [`STANDING_COLUMNS`], read in [`STANDING_ORDER`], to its caller's standing.
pub(super) fn add_standing((open, delivered): &mut Standing, row: &AnyRow) -> Result<(), CaseError> {
    let state: String = row.try_get("state")?;
    if state == "actioned" {
        if delivered.is_none() {
            let rung: String = row.try_get("rung")?;
            *delivered = Some(Delivered {
                rung: Rung::from_key(&rung).ok_or(CaseError::Corrupt { what: "rung", value: rung })?,
                at_ms: row.try_get("delivered_ms")?,
            });
        }
    } else {
        *open = Some(summary(row)?);
    }
    Ok(())
}

/// Refuses to change a case whose rows differ from its last audited state: the change's entry would record the
/// rows someone changed outside saring as audited. The case's row is locked first, so its rows and its last entry
/// are read as one state (every change of a case's rows holds that lock until it commits with its entry). Answered
/// as data saring did not write (INTERNAL, logged): an administrator must look (`saring audit verify`).
pub(super) async fn check_audited(tx: &mut Transaction<'_, Any>, case_id: &str) -> Result<(), CaseError> {
    sqlx::query("UPDATE cases SET version = version WHERE case_id = $1").bind(case_id).execute(&mut **tx).await?;
    let last = sqlx::query(
        "SELECT seq, case_digest FROM audit WHERE case_id = $1 AND case_digest IS NOT NULL ORDER BY seq DESC LIMIT 1",
    )
    .bind(case_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(last) = last else { return Ok(()) };
    let audited: String = last.try_get("case_digest")?;
    if case_digest(tx, case_id).await?.as_deref() == Some(audited.as_str()) {
        return Ok(());
    }
    Err(unaudited(case_id, last.try_get("seq")?))
}

/// The refusal of a change to a case whose rows differ from its last audited entry `seq` ([`check_audited`]).
pub(super) fn unaudited(case_id: &str, seq: i64) -> CaseError {
    CaseError::Corrupt {
        what: "case state",
        value: format!(
            "{case_id}: its rows differ from its last audited state (entry {seq}); they were changed outside \
             saring, and no change is made on top of them (run saring audit verify)"
        ),
    }
}

/// A caller's contacts from `from_ms` on, oldest first, each with its corrections; `counted` names the ones that
/// count towards the case being read.
pub(super) async fn timeline(
    tx: &mut Transaction<'_, Any>,
    caller_ref: &str,
    from_ms: i64,
    counted: &HashSet<String>,
) -> Result<Vec<TimelineEntry>, CaseError> {
    let rows = sqlx::query(
        "SELECT contact_id, at_ms, channel, region, disposition, operator_id, likelihood, model_version, \
             answered, talk_s FROM contacts WHERE caller_key = $1 AND at_ms >= $2 ORDER BY at_ms, contact_id",
    )
    .bind(caller_ref)
    .bind(from_ms)
    .fetch_all(&mut **tx)
    .await?;
    let mut corrections: std::collections::HashMap<String, Vec<DispositionCorrection>> =
        std::collections::HashMap::new();
    for row in sqlx::query(
        "SELECT cc.contact_id, cc.corrected_ms, cc.from_disposition, cc.to_disposition, cc.corrected_by, \
             cc.reason FROM contact_corrections cc JOIN contacts co ON co.contact_id = cc.contact_id \
             WHERE co.caller_key = $1 AND co.at_ms >= $2 ORDER BY cc.corrected_ms, cc.correction_id",
    )
    .bind(caller_ref)
    .bind(from_ms)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    {
        let disposition = |column: &str| -> Result<Disposition, CaseError> {
            let name: String = row.try_get(column)?;
            Disposition::from_name(&name).ok_or(CaseError::Corrupt { what: "disposition", value: name })
        };
        corrections.entry(row.try_get("contact_id")?).or_default().push(DispositionCorrection {
            from: disposition("from_disposition")?,
            to: disposition("to_disposition")?,
            by: row.try_get("corrected_by")?,
            at_ms: row.try_get("corrected_ms")?,
            reason: row.try_get("reason")?,
        });
    }
    let mut timeline = Vec::with_capacity(rows.len());
    for row in &rows {
        let contact_id: String = row.try_get("contact_id")?;
        let channel: String = row.try_get("channel")?;
        let disposition: String = row.try_get("disposition")?;
        timeline.push(TimelineEntry {
            counted: counted.contains(&contact_id),
            at_ms: row.try_get("at_ms")?,
            channel: Channel::from_name(&channel).ok_or(CaseError::Corrupt { what: "channel", value: channel })?,
            region: row.try_get("region")?,
            disposition: Disposition::from_name(&disposition)
                .ok_or(CaseError::Corrupt { what: "disposition", value: disposition })?,
            operator_id: row.try_get("operator_id")?,
            likelihood: row.try_get("likelihood")?,
            model_version: row.try_get("model_version")?,
            answered: row.try_get::<i64, _>("answered")? != 0,
            talk_s: row.try_get("talk_s")?,
            corrections: corrections.remove(&contact_id).unwrap_or_default(),
            contact_id,
        });
    }
    Ok(timeline)
}

/// Records a change to an open case (its version moves on) with its audit entry.
async fn bump(
    tx: &mut Transaction<'_, Any>,
    key: &AuditKey,
    case: &CaseSummary,
    action: &str,
    reason: &str,
) -> Result<AuditLink, CaseError> {
    bump_by(tx, key, case, (SYSTEM_ACTOR, SYSTEM_ROLE), action, reason).await
}

/// Records a change to a case's rows by `(actor, role)` (its version moves on, its state stays) with its audit
/// entry.
async fn bump_by(
    tx: &mut Transaction<'_, Any>,
    key: &AuditKey,
    case: &CaseSummary,
    (actor, role): (&str, &str),
    action: &str,
    reason: &str,
) -> Result<AuditLink, CaseError> {
    sqlx::query("UPDATE cases SET version = version + 1, updated_ms = $2 WHERE case_id = $1")
        .bind(&case.case_id)
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
    append_audit(tx, key, actor, role, action, Some(&case.case_id), Some(case.state), reason).await
}

/// Appends one keyed entry to the chain. Taking the head row first serialises appenders (a row lock in
/// PostgreSQL; SQLite has one writer), so the chain never forks, and the case's digest is read after that, so it
/// sees every change committed before this entry. An evidence read changes nothing and carries no digest.
#[allow(clippy::too_many_arguments)]
pub(super) async fn append_audit(
    tx: &mut Transaction<'_, Any>,
    key: &AuditKey,
    actor: &str,
    role: &str,
    action: &str,
    case_id: Option<&str>,
    state: Option<CaseState>,
    reason: &str,
) -> Result<AuditLink, CaseError> {
    let head = sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
        .fetch_one(&mut **tx)
        .await?;
    let case_digest = match case_id {
        Some(case_id) if action != "evidence_read" => case_digest(tx, case_id).await?,
        _ => None,
    };
    let mut entry = AuditEntry {
        seq: head.try_get("seq")?,
        at_ms: now_ms(),
        actor: actor.to_owned(),
        role: role.to_owned(),
        action: action.to_owned(),
        case_id: case_id.map(str::to_owned),
        state: state.map(|state| state.as_str().to_owned()),
        reason: reason.to_owned(),
        scheme: audit::SCHEME_HMAC,
        case_digest,
        prev_hash: head.try_get("hash")?,
        hash: String::new(),
    };
    entry.hash = entry.expected_link(key).expect("the keyed scheme is known");
    let insert =
        format!("INSERT INTO audit ({AUDIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)");
    bind_audit(sqlx::query(&insert), &entry).execute(&mut **tx).await?;
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1").bind(&entry.hash).execute(&mut **tx).await?;
    Ok(AuditLink { seq: entry.seq, link: entry.hash })
}

impl CaseStore {
    /// Appends a model-registry event (a promotion or a rollback) to the audit chain, committed before it returns;
    /// the entry's sequence number.
    pub async fn append_model_event(&self, actor: &Principal, action: &str, reason: &str) -> Result<i64, CaseError> {
        let mut tx = self.pool()?.begin().await?;
        let link = append_audit(&mut tx, &self.audit.key, &actor.name, actor.role.as_str(), action, None, None, reason)
            .await?;
        tx.commit().await?;
        Ok(self.anchored(link).await)
    }

    /// The model-registry events (promotions, rollbacks) in the audit chain, oldest first.
    pub async fn model_events(&self) -> Result<Vec<AuditEntry>, CaseError> {
        let rows = sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit WHERE case_id IS NULL \
             AND action IN ('model_promoted', 'model_rolled_back') ORDER BY seq"
        ))
        .fetch_all(self.pool()?)
        .await?;
        rows.iter().map(audit_entry).collect()
    }
}
