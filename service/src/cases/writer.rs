//! The group commit of outcomes. Concurrent [`CaseStore::on_outcome`] calls are queued to a writer task (one per
//! store on SQLite; on PostgreSQL a few, each owning the callers whose key hashes to it, so one caller's outcomes
//! are always evaluated in the order they were queued). A writer takes everything queued (up to [`BATCH`]) and runs
//! it in one transaction — first straight through; when an outcome fails, that transaction is rolled back and the
//! batch runs again with each outcome inside its own SAVEPOINT, so an outcome refused (a repeat with another
//! disposition) or failing is rolled back to its savepoint and fails only its own caller — commits once, anchors
//! the batch's last audit entry, and only then answers every caller. When BEGIN, a savepoint's rollback or the COMMIT
//! fails, every caller of the batch gets the error and none is acknowledged; the connection is then closed rather
//! than pooled (as every failed transaction's is), so a transaction SQLite rolled back by itself cannot leave later
//! batches writing into one that is never committed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use saring_models::ladder::LadderPolicy;
use sqlx::{Any, Connection, Executor, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::batch::{batch_steps, BatchItem};
use super::chain::AuditLink;
use super::store::{outcome_steps, settle};
use super::{CaseError, CaseStore, ContactRecord, LadderChange, LadderOutcome};

/// The most outcomes committed in one transaction.
pub(super) const BATCH: usize = 256;

/// How many outcomes may wait for a writer before callers wait to queue theirs.
const QUEUE: usize = 4 * BATCH;

/// How many times an outcome runs again after its proposal lost to another replica's (a unique violation).
const RACE_RETRIES: u32 = 2;

/// What one outcome's caller is answered: the ladder's outcome and the sequence number of its last audit entry.
pub(super) type OutcomeReply = Result<(LadderOutcome, Option<i64>), CaseError>;

/// One queued outcome.
struct OutcomeJob {
    policy: Arc<LadderPolicy>,
    record: ContactRecord,
    clock_ms: i64,
    reply: oneshot::Sender<OutcomeReply>,
}

enum Job {
    Outcome(OutcomeJob),
    /// Answered once every job queued before it is answered (shutdown).
    Flush(oneshot::Sender<()>),
}

/// The writers of one store, started on first use.
#[derive(Debug, Default)]
pub(super) struct OutcomeWriters {
    queues: OnceLock<Vec<mpsc::Sender<Job>>>,
    /// Batches begun (committed or failed), by every writer of the store.
    batches: Arc<AtomicU64>,
    /// Batches whose first attempt failed and that ran again outcome by outcome.
    retried: Arc<AtomicU64>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Outcome(job) => write!(formatter, "Outcome({})", job.record.contact_id),
            Job::Flush(_) => formatter.write_str("Flush"),
        }
    }
}

/// The error every caller of a batch gets when the batch as a whole failed (sqlx errors cannot be cloned; the
/// kind of failure — the database failed, nothing was applied — is what the caller acts on).
fn batch_error(error: &CaseError) -> CaseError {
    CaseError::Database(sqlx::Error::Io(std::io::Error::other(format!(
        "the transaction of a batch of outcomes failed and none of them was recorded: {error}"
    ))))
}

fn writer_stopped() -> CaseError {
    CaseError::Database(sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::BrokenPipe,
        "the case database's outcome writer has stopped",
    )))
}

impl CaseStore {
    /// How many writers a store runs: one for SQLite (one writer at a time anyway), four for a database server
    /// (its pool has eight connections; the others stay for console reads and decisions).
    pub fn outcome_writers(&self) -> usize {
        if self.sqlite {
            1
        } else {
            4
        }
    }

    fn queues(&self) -> &[mpsc::Sender<Job>] {
        self.writers.queues.get_or_init(|| {
            (0..self.outcome_writers())
                .map(|_| {
                    let (sender, receiver) = mpsc::channel(QUEUE);
                    // The writer's own store does not hold the queue, so the writer ends (after answering
                    // everything queued) once every handle of the store is dropped.
                    let writers = OutcomeWriters {
                        queues: OnceLock::new(),
                        batches: Arc::clone(&self.writers.batches),
                        retried: Arc::clone(&self.writers.retried),
                    };
                    let store = CaseStore { writers: Arc::new(writers), ..self.clone() };
                    tokio::spawn(store.write_outcomes(receiver));
                    sender
                })
                .collect()
        })
    }

    /// Queues an outcome for its caller's writer and waits until its batch has committed (or failed).
    pub(super) async fn queue_outcome(
        &self,
        policy: &Arc<LadderPolicy>,
        record: &ContactRecord,
        clock_ms: i64,
    ) -> OutcomeReply {
        self.pool()?;
        let queues = self.queues();
        let queue = &queues[shard(&record.caller_ref, queues.len())];
        let (reply, answer) = oneshot::channel();
        let job = OutcomeJob { policy: Arc::clone(policy), record: record.clone(), clock_ms, reply };
        queue.send(Job::Outcome(job)).await.map_err(|_| writer_stopped())?;
        answer.await.map_err(|_| writer_stopped())?
    }

    /// How many batches of outcomes this store's writers have begun (each one transaction, committed or failed).
    pub fn outcome_batches(&self) -> u64 {
        self.writers.batches.load(Ordering::Relaxed)
    }

    /// How many of those batches ran a second time outcome by outcome, each in its own savepoint, because one of
    /// their outcomes failed in the first attempt (a refused repeat, a race with another replica, a database error).
    pub fn outcome_batches_retried(&self) -> u64 {
        self.writers.retried.load(Ordering::Relaxed)
    }

    /// Waits until every outcome queued so far has been committed (or failed) and its caller answered: shutdown
    /// calls it after the last gRPC call has ended, so nothing accepted is left unwritten.
    pub async fn drain_outcomes(&self) {
        let Some(queues) = self.writers.queues.get() else { return };
        for queue in queues {
            let (flushed, done) = oneshot::channel();
            if queue.send(Job::Flush(flushed)).await.is_ok() {
                let _ = done.await;
            }
        }
    }

    async fn write_outcomes(self, mut receiver: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(BATCH);
        while receiver.recv_many(&mut jobs, BATCH).await > 0 {
            let mut outcomes = Vec::with_capacity(jobs.len());
            let mut flushes = Vec::new();
            for job in jobs.drain(..) {
                match job {
                    Job::Outcome(outcome) => outcomes.push(outcome),
                    Job::Flush(flush) => flushes.push(flush),
                }
            }
            if !outcomes.is_empty() {
                self.write_batch(outcomes).await;
            }
            for flush in flushes {
                let _ = flush.send(());
            }
        }
    }

    /// Commits one batch and answers its callers.
    async fn write_batch(&self, jobs: Vec<OutcomeJob>) {
        self.writers.batches.fetch_add(1, Ordering::Relaxed);
        let result = match self.pool.acquire().await {
            Ok(mut connection) => {
                let result = Self::batch_in(&mut connection, &self.audit.key, &jobs, &self.writers.retried).await;
                settle(connection, &result);
                result
            }
            Err(error) => Err(CaseError::Database(error)),
        };
        let results = match result {
            Ok(results) => results,
            Err(error) => {
                tracing::warn!(%error, outcomes = jobs.len(), "a batch of outcomes failed; none was recorded");
                for job in jobs {
                    let _ = job.reply.send(Err(batch_error(&error)));
                }
                return;
            }
        };
        // The anchor only moves forward: anchoring the batch's last entry covers every entry before it.
        let last = results.iter().filter_map(|result| result.as_ref().ok()?.1.as_ref()).max_by_key(|link| link.seq);
        if let Some(last) = last {
            self.anchored(AuditLink { seq: last.seq, link: last.link.clone() }).await;
        }
        for (job, result) in jobs.into_iter().zip(results) {
            if let Ok((outcome, _)) = &result {
                if let Some(case) = outcome.case.as_ref().filter(|_| outcome.change == LadderChange::Proposed) {
                    tracing::info!(case_id = %case.case_id, rung = case.rung.key(), state = case.state.as_str(), region = %case.region, "case proposed");
                }
            }
            let _ = job.reply.send(result.map(|(outcome, link)| (outcome, link.map(|link| link.seq))));
        }
    }

    /// One transaction for the whole batch. First in a few statements for all of it ([`batch_steps`], no
    /// savepoints): when every outcome goes through, that transaction commits. When one fails, it is rolled back
    /// and the batch runs again in a new transaction with a savepoint per outcome, so that only the failing ones fail. `Err` when the batch
    /// as a whole failed.
    async fn batch_in(
        connection: &mut sqlx::AnyConnection,
        key: &super::audit::AuditKey,
        jobs: &[OutcomeJob],
        retried: &AtomicU64,
    ) -> Result<Vec<Result<(LadderOutcome, Option<AuditLink>), CaseError>>, CaseError> {
        {
            let mut tx = connection.begin().await?;
            // One outcome alone takes the same three statements either way: the plain steps, whose answers the
            // batched statements must equal (the group-commit tests compare the two).
            let attempt = if let [job] = jobs {
                outcome_steps(&mut tx, key, &job.policy, &job.record, job.clock_ms).await.map(|done| vec![done])
            } else {
                let items: Vec<BatchItem<'_>> =
                    jobs.iter().map(|job| (job.policy.as_ref(), &job.record, job.clock_ms)).collect();
                batch_steps(&mut tx, key, &items).await
            };
            if let Ok(results) = attempt {
                tx.commit().await?;
                return Ok(results.into_iter().map(Ok).collect());
            }
            tx.rollback().await?;
        }
        retried.fetch_add(1, Ordering::Relaxed);
        let mut tx = connection.begin().await?;
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            results.push(Self::in_savepoint(&mut tx, key, job).await?);
        }
        tx.commit().await?;
        Ok(results)
    }

    /// Runs one outcome inside its own savepoint: kept on success, rolled back (and its caller alone answered with
    /// the error) on failure. Two replicas may propose for one caller at once: the unique index on open cases lets
    /// one win; the other runs again and finds the winner's case. `Err` when the savepoint itself cannot be set or
    /// rolled back: the transaction is in doubt and the whole batch fails.
    async fn in_savepoint(
        tx: &mut Transaction<'_, Any>,
        key: &super::audit::AuditKey,
        job: &OutcomeJob,
    ) -> Result<Result<(LadderOutcome, Option<AuditLink>), CaseError>, CaseError> {
        let mut retries = 0;
        loop {
            tx.execute("SAVEPOINT outcome").await?;
            match outcome_steps(tx, key, &job.policy, &job.record, job.clock_ms).await {
                Ok(done) => {
                    tx.execute("RELEASE SAVEPOINT outcome").await?;
                    return Ok(Ok(done));
                }
                Err(error) => {
                    tx.execute("ROLLBACK TO SAVEPOINT outcome").await?;
                    tx.execute("RELEASE SAVEPOINT outcome").await?;
                    match &error {
                        CaseError::Database(sqlx::Error::Database(database))
                            if retries < RACE_RETRIES && database.kind() == sqlx::error::ErrorKind::UniqueViolation =>
                        {
                            retries += 1;
                        }
                        _ => return Ok(Err(error)),
                    }
                }
            }
        }
    }
}

/// The writer of a caller: a stable hash of its key, so one caller's outcomes are evaluated in queue order.
fn shard(caller_ref: &str, writers: usize) -> usize {
    if writers <= 1 {
        return 0;
    }
    let hash = caller_ref
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
    (hash % writers as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::shard;

    #[test]
    fn a_caller_always_has_the_same_writer_and_callers_spread() {
        let callers: Vec<String> = (0..400).map(|n| format!("{n:064x}")).collect();
        let mut counts = [0usize; 4];
        for caller in &callers {
            let writer = shard(caller, 4);
            assert_eq!(writer, shard(caller, 4));
            counts[writer] += 1;
        }
        assert!(counts.iter().all(|&count| count > 50), "{counts:?}");
        assert_eq!(shard(&callers[0], 1), 0);
    }
}
