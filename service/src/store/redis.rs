//! Caller history in Redis, shared by every replica.
//!
//! Layout 2 (Redis Cluster-safe: nothing crosses a slot), about 193 bytes a caller (BENCHMARKS.md):
//! - histories are bucketed: a bucket is one hash, `{prefix}:v2:n:{<bucket>}` (numbers) or `{prefix}:v2:d:{<bucket>}`
//!   (devices), where `<bucket>` is the first `bucket_bits` bits of the keyed hash in hex; each field is the first
//!   16 bytes of one caller's keyed hash (binary) and its value that caller's packed history
//!   ([`saring_models::PackedHistory`], 152 bytes: 33 `f32` counters, last and first seen, total). A bucket of a
//!   few hundred callers is stored by Redis as one compact listpack when `hash-max-listpack-value` ≥ 152 (checked
//!   at connect; see OPERATIONS.md) — the per-key overhead (~100 bytes) is paid once per bucket, not per caller;
//! - retention is kept per caller: a sweep ([`HistoryStore::sweep_expired`], run by every replica every
//!   `cases.retention_interval_minutes`) removes the fields whose last contact is older than `history.retention_days`
//!   (hash fields have no TTL of their own before Redis 7.4); each bucket also expires `retention` after its last
//!   write;
//! - one marker per (history, contact), `{prefix}:v2:n:{<bucket>}:c:<field hex>:<contact fingerprint>`, hash-tagged
//!   into the bucket's slot, with a TTL: the script sets it and applies the contact in one atomic step, so a contact
//!   counts once per history however often it is retried. The marker holds the disposition the history counts the
//!   contact under (`d` and its counter row), so a correction (a second script, mirroring
//!   `CallerHistory::correct`) moves the contact's weight exactly once;
//! - `{prefix}:layout`, a small hash: the bucket bits the data was written with (a replica configured otherwise
//!   refuses to use the store rather than read every caller as a stranger) and when `saring history migrate`
//!   finished moving layout 1.
//!
//! The scripts do the arithmetic of [`CallerHistory`] bit for bit: every step computes in doubles and rounds to
//! `f32` as it stores (the decay, then the contact's weight), and `2 ^ x` in Lua is the C library's `pow`, which
//! [`saring_models::history::decay_factor`] calls too.
//!
//! **Layout 1** (one key per history, `{prefix}:v1:n:{<64 hex>}`, 40 doubles; markers `{<key>}:c:<fingerprint>`)
//! is read until `saring history migrate` has moved it ([`RedisStore::migrate`]): while the layout hash does not say
//! the move finished, a read fetches both layouts in its one round-trip and adds them (decay is linear), a write
//! goes to layout 2 only and first asks whether layout 1 already counted the contact, and a correction of a contact
//! counted under layout 1 finds its weight wherever it is now. The check of layout-1 markers continues for one
//! marker window after the move finished.
//!
//! A read is one round-trip (a pipeline of `HGET`s on one Redis; concurrent commands on a Cluster, where a
//! number's and a device's buckets live in different slots). Concurrent reads share the multiplexed connection,
//! which already pipelines them. A write is one round-trip of two EVALSHA calls (number, device) returning the
//! histories they stored. Each history is updated atomically and exactly once; the two are independent, so a retry
//! after a partial failure completes the other exactly once.
//!
//! Every history read or written passes through a bounded near-cache ([`super::near_cache`]): a read that misses
//! its budget answers from it, flagged `history_stale` ([`HistoryStore::cached`]).
//!
//! Replication is asynchronous: a write the master acknowledged and had not yet sent to a replica is lost when
//! that master dies and the replica is promoted (a Redis Cluster failover, or a Sentinel one). Opt in to
//! [`RedisStore::with_replica_wait`] (`history.redis_wait_replicas`) and a write counts as taken only once that many
//! replicas have it (`WAIT`); otherwise it fails and the journal keeps the outcome and replays it (idempotently:
//! markers make the replay a duplicate where the write survived).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{ErrorKind, RedisError, Script, ServerErrorKind, Value};
use saring_models::history::{Counter, HALF_LIVES_S, PACKED_BYTES, STORED_COUNTER_COUNT};
use saring_models::{CallerHistory, Disposition, HistoryEvent, PackedHistory};
use tokio::sync::OnceCell;

use super::near_cache::{Kind, NearCache};
use super::{Corrected, DispositionChange, Erased, Histories, HistoryStore, Recorded, StoreError};
use crate::privacy::HistoryKey;

/// Bucket bits unless configured (`history.redis_bucket_bits`): 65,536 buckets per kind, a few hundred callers
/// each at tens of millions of callers.
pub const DEFAULT_BUCKET_BITS: u8 = 16;
/// The most bucket bits a layout may use.
pub const MAX_BUCKET_BITS: u8 = 24;
/// Bytes of a caller's keyed hash used as its field in a bucket.
const FIELD_BYTES: usize = 16;
/// The smallest `hash-max-listpack-value` that keeps a bucket a listpack.
pub const LISTPACK_VALUE_NEEDED: usize = PACKED_BYTES;
/// How long a record of a layout-1 history moved into layout 2 is kept (a crashed migration re-run within this
/// time does not move a history twice).
const MOVE_MARKER_TTL_S: u64 = 30 * 86_400;
/// Buckets one sweep step asks Redis to sweep, in one round-trip.
const SWEEP_CHUNK: u32 = 64;
/// The pause between two sweep steps.
const SWEEP_PAUSE: Duration = Duration::from_millis(25);
/// How often a replica still reading layout 1 asks whether the migration finished.
const LAYOUT_RECHECK_MS: i64 = 30_000;

/// The packed-history `struct` format and the decay-and-round steps every script shares.
const LUA_COMMON: &str = r#"
local C = '<' .. string.rep('f', 33)
local FMT = C .. 'i8i8I4'
local function load(raw)
  local v = {struct.unpack(FMT, raw)}
  v[37] = nil
  return v
end
local function round(v)
  local rounded = {struct.unpack(C, struct.pack(C, unpack(v, 1, 33)))}
  for i = 1, 33 do v[i] = rounded[i] end
end
local function factor(elapsed_ms, half_life)
  if elapsed_ms <= 0 then return 1 end
  return 2 ^ (-(elapsed_ms / 1000) / half_life)
end
"#;

/// The server-side apply: marker check, lazy decay, increments, TTLs. Mirrors `CallerHistory::apply`.
const APPLY_SCRIPT: &str = r#"
-- KEYS[1] bucket, KEYS[2] marker
-- ARGV[1] field, ARGV[2] at_ms, ARGV[3] bucket ttl s, ARGV[4] marker ttl s, ARGV[5..7] half-lives s,
-- ARGV[8] marker value ('d' and the disposition's row), ARGV[9..] the contact's counter rows
-- Returns 0 for a contact counted before, else the history as stored
if not redis.call('SET', KEYS[2], ARGV[8], 'NX', 'EX', ARGV[4]) then return 0 end
local at = tonumber(ARGV[2])
local v
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if raw then
  v = load(raw)
else
  v = {}
  for i = 1, 33 do v[i] = 0 end
  v[34] = at; v[35] = at; v[36] = 0
end
local half_lives = {tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])}
if at > v[34] then
  for h = 1, 3 do
    local f = factor(at - v[34], half_lives[h])
    for r = 0, 10 do v[r * 3 + h] = v[r * 3 + h] * f end
  end
  round(v)
  v[34] = at
end
for j = 9, #ARGV do
  local r = tonumber(ARGV[j])
  for h = 1, 3 do v[r * 3 + h] = v[r * 3 + h] + factor(v[34] - at, half_lives[h]) end
end
if v[36] == 0 then
  v[34] = at; v[35] = at
elseif at < v[35] then
  v[35] = at
end
if v[36] < 4294967295 then v[36] = v[36] + 1 end
local packed = struct.pack(FMT, unpack(v, 1, 36))
redis.call('HSET', KEYS[1], ARGV[1], packed)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return packed
"#;

/// The server-side correction: moves one applied contact's decayed weight from the disposition its marker names to
/// another, exactly once. Mirrors `CallerHistory::correct` (same weight expression, same clamp of dust at 0).
/// Returns 0 when the history does not hold the contact (no marker or no history), 1 when it holds the new
/// disposition already, and the history it stored when the weight moved.
const CORRECT_SCRIPT: &str = r#"
-- KEYS[1] bucket, KEYS[2] marker
-- ARGV[1] field, ARGV[2] at_ms, ARGV[3] bucket ttl s, ARGV[4..6] half-lives s, ARGV[7] the recorded disposition's
-- row (used when the marker names none), ARGV[8] the new disposition's row, ARGV[9] the marker value to assume when
-- there is no marker ('' for none: a contact counted under layout 1 and moved here), ARGV[10] marker ttl s
local marker = redis.call('GET', KEYS[2])
local assumed = false
if not marker then
  if ARGV[9] == '' then return 0 end
  marker = ARGV[9]
  assumed = true
end
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local from = tonumber(ARGV[7])
if string.sub(marker, 1, 1) == 'd' then from = tonumber(string.sub(marker, 2)) end
local to = tonumber(ARGV[8])
if from == to then return 1 end
local v = load(raw)
local at = tonumber(ARGV[2])
local half_lives = {tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])}
for h = 1, 3 do
  local weight = factor(v[34] - at, half_lives[h])
  local removed = v[from * 3 + h] - weight
  if removed < 0 then removed = 0 end
  v[from * 3 + h] = removed
  v[to * 3 + h] = v[to * 3 + h] + weight
end
local packed = struct.pack(FMT, unpack(v, 1, 36))
redis.call('HSET', KEYS[1], ARGV[1], packed)
redis.call('EXPIRE', KEYS[1], ARGV[3])
if assumed then
  redis.call('SET', KEYS[2], 'd' .. to, 'EX', ARGV[10])
else
  redis.call('SET', KEYS[2], 'd' .. to, 'KEEPTTL')
end
return packed
"#;

/// Adds a history moved from layout 1 (already packed as layout 2) to the caller's field, exactly once per moved
/// key (its move marker). Mirrors `CallerHistory::merge`. Returns 1 when added, 0 when it was added before.
const ADOPT_SCRIPT: &str = r#"
-- KEYS[1] bucket, KEYS[2] move marker
-- ARGV[1] field, ARGV[2] the moved history, packed, ARGV[3] move marker ttl s, ARGV[4..6] half-lives s,
-- ARGV[7] bucket ttl s
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[3]) then return 0 end
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local packed = ARGV[2]
if raw then
  local a = load(raw)
  local b = load(ARGV[2])
  local at = math.max(a[34], b[34])
  for h = 1, 3 do
    local half_life = tonumber(ARGV[3 + h])
    local fa = factor(at - a[34], half_life)
    local fb = factor(at - b[34], half_life)
    for r = 0, 10 do a[r * 3 + h] = a[r * 3 + h] * fa + b[r * 3 + h] * fb end
  end
  a[34] = at
  a[35] = math.min(a[35], b[35])
  a[36] = math.min(a[36] + b[36], 4294967295)
  packed = struct.pack(FMT, unpack(a, 1, 36))
end
redis.call('HSET', KEYS[1], ARGV[1], packed)
redis.call('EXPIRE', KEYS[1], ARGV[7])
return 1
"#;

/// Removes a bucket's histories whose last contact is older than the cut-off; returns how many.
const SWEEP_SCRIPT: &str = r#"
-- KEYS[1] bucket; ARGV[1] cut-off, Unix ms
local cutoff = tonumber(ARGV[1])
local all = redis.call('HGETALL', KEYS[1])
local removed = 0
for i = 1, #all, 2 do
  local value = all[i + 1]
  if #value == 152 and struct.unpack('<i8', value, 133) < cutoff then
    redis.call('HDEL', KEYS[1], all[i])
    removed = removed + 1
  end
end
return removed
"#;

/// Layout 1's correction of a history not moved yet (40 doubles, rows with the contacts counter first).
const V1_CORRECT_SCRIPT: &str = r#"
-- KEYS[1] history, KEYS[2] marker
-- ARGV[1] at_ms, ARGV[2] retention s, ARGV[3..5] half-lives s, ARGV[6] the recorded disposition's counter index
-- (for a marker that holds '1'), ARGV[7] the new disposition's counter index
local marker = redis.call('GET', KEYS[2])
if not marker then return 0 end
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local from = tonumber(ARGV[6])
if string.sub(marker, 1, 1) == 'd' then from = tonumber(string.sub(marker, 2)) end
local to = tonumber(ARGV[7])
if from == to then return 1 end
local FMT1 = '<' .. string.rep('d', 40)
local v = {struct.unpack(FMT1, raw)}
v[41] = nil
local at = tonumber(ARGV[1])
local half_lives = {tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])}
for h = 1, 3 do
  local weight = 1
  if v[37] > at then weight = 2 ^ (-((v[37] - at) / 1000) / half_lives[h]) end
  local removed = v[from * 3 + h] - weight
  if removed < 0 then removed = 0 end
  v[from * 3 + h] = removed
  v[to * 3 + h] = v[to * 3 + h] + weight
end
local packed = struct.pack(FMT1, unpack(v))
redis.call('SET', KEYS[1], packed, 'EX', ARGV[2])
redis.call('SET', KEYS[2], 'd' .. to, 'KEEPTTL')
return packed
"#;

/// The marker value that names the disposition a history holds for a contact: `d` and its counter row.
fn marker_value(disposition: Disposition) -> String {
    format!("d{}", disposition_row(disposition))
}

/// A disposition's counter row in layout 2 (and in [`CallerHistory::counters`]).
fn disposition_row(disposition: Disposition) -> usize {
    Counter::Disposition(disposition).row().expect("a disposition's counter is stored")
}

/// A layout-1 marker value (`d` and the counter index, contacts counter first) as layout 2 writes it; `None` for
/// a marker that names no disposition.
fn marker_value_from_v1(value: &[u8]) -> Option<String> {
    let index: usize = std::str::from_utf8(value.strip_prefix(b"d")?).ok()?.parse().ok()?;
    Some(format!("d{}", index.checked_sub(1)?))
}

/// Settings of the Redis store.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://host:port/db`.
    pub url: String,
    /// Key prefix (tests use a unique one each).
    pub prefix: String,
    /// How long an untouched history is kept.
    pub retention: Duration,
    /// How long a per-contact marker is kept.
    pub marker_ttl: Duration,
    /// Timeout of one connection attempt.
    pub connect_timeout: Duration,
}

/// Where the store connects: one Redis, or a Redis Cluster (`redis-cluster://host:port,host:port`).
enum Backend {
    Single(redis::Client),
    Cluster(Box<redis::cluster::ClusterClient>),
}

/// A live connection. Both kinds reconnect by themselves; both are cheap to clone.
#[derive(Clone)]
pub enum Connection {
    /// One Redis, multiplexed, with automatic reconnect.
    Single(ConnectionManager),
    /// A Redis Cluster, routed by key slot.
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Connection {
    /// Runs the commands in one round-trip: a pipeline on one Redis; concurrent single-slot commands on a
    /// Cluster (a pipeline may not cross slots there, and a number's and a device's keys live in different ones).
    async fn run(&mut self, commands: Vec<redis::Cmd>) -> redis::RedisResult<Vec<Value>> {
        match self {
            // One command needs no pipeline (its encoding and reply matching cost more than the command's own).
            Connection::Single(connection) if commands.len() == 1 => {
                let command = commands.into_iter().next().expect("one command");
                Ok(vec![command.query_async::<Value>(connection).await?])
            }
            Connection::Single(connection) => {
                let mut pipeline = redis::pipe();
                for command in commands {
                    pipeline.add_command(command);
                }
                pipeline.query_async(connection).await
            }
            Connection::Cluster(connection) => {
                let queries = commands.into_iter().map(|command| {
                    let mut connection = connection.clone();
                    async move { command.query_async::<Value>(&mut connection).await }
                });
                let mut values = Vec::new();
                for result in futures_join_all(queries).await {
                    values.push(result?);
                }
                Ok(values)
            }
        }
    }

    /// Waits until `replicas` replicas have this connection's writes to the keys' masters, at most `timeout`;
    /// returns the fewest replicas any of those masters reached.
    async fn wait_replicas(&mut self, keys: &[String], replicas: u32, timeout: Duration) -> redis::RedisResult<i64> {
        let timeout_ms = timeout.as_millis().max(1) as u64;
        let wait = || {
            let mut command = redis::cmd("WAIT");
            command.arg(replicas).arg(timeout_ms);
            command
        };
        match self {
            // One connection: WAIT covers every earlier write on it, the two histories included.
            Connection::Single(connection) => wait().query_async::<i64>(connection).await,
            Connection::Cluster(connection) => {
                use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
                let mut slots: Vec<Slot> = keys.iter().map(Slot::for_key).collect();
                slots.dedup();
                // The cluster client keeps one connection per node, so WAIT sent to a key's master covers the
                // write just made there on it.
                let queries = slots.into_iter().map(|slot| {
                    let mut connection = connection.clone();
                    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_slot(
                        slot,
                        SlotAddr::Master,
                    )));
                    let command = wait();
                    async move { connection.route_command(command, routing).await }
                });
                let mut fewest = i64::MAX;
                for reached in futures_join_all(queries).await {
                    fewest = fewest.min(redis::from_redis_value::<i64>(reached?)?);
                }
                Ok(fewest)
            }
        }
    }

    /// The keys matching `pattern` that live in `slot_key`'s slot: a SCAN over one Redis, or over the master
    /// that holds the slot on a Cluster.
    async fn scan_slot(&mut self, slot_key: &str, pattern: &str) -> redis::RedisResult<Vec<Vec<u8>>> {
        let mut found = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let mut command = redis::cmd("SCAN");
            command.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000);
            let (next, keys): (u64, Vec<Vec<u8>>) = match self {
                Connection::Single(connection) => command.query_async(connection).await?,
                Connection::Cluster(connection) => {
                    use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
                    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_slot(
                        Slot::for_key(slot_key),
                        SlotAddr::Master,
                    )));
                    redis::from_redis_value(connection.route_command(command, routing).await?)?
                }
            };
            found.extend(keys);
            if next == 0 {
                return Ok(found);
            }
            cursor = next;
        }
    }

    /// Every key matching `pattern`: a SCAN over one Redis, or over every master of a Cluster.
    async fn scan_all(&mut self, pattern: &str) -> redis::RedisResult<Vec<Vec<u8>>> {
        Ok(self.scan_nodes(pattern, usize::MAX).await?.0)
    }

    /// Keys matching `pattern`, scanning at most `max_pages` SCAN pages per node (of 1,000 keys each) and
    /// stopping at the first page that found one when `max_pages` is bounded; and whether the scan went through
    /// every key.
    async fn scan_nodes(&mut self, pattern: &str, max_pages: usize) -> redis::RedisResult<(Vec<Vec<u8>>, bool)> {
        use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
        let nodes: Vec<Option<(String, u16)>> = match self {
            Connection::Single(_) => vec![None],
            Connection::Cluster(connection) => {
                // CLUSTER SLOTS: [start, end, [host, port, id], replicas...] per slot range; the first node is the
                // master.
                let ranges: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(connection).await?;
                let mut masters = Vec::new();
                for range in ranges {
                    let Value::Array(parts) = range else { continue };
                    let Some(Value::Array(master)) = parts.get(2) else { continue };
                    let host: String = redis::from_redis_value_ref(&master[0])?;
                    let port: u16 = redis::from_redis_value_ref(&master[1])?;
                    if !masters.contains(&Some((host.clone(), port))) {
                        masters.push(Some((host, port)));
                    }
                }
                masters
            }
        };
        let mut found = Vec::new();
        for node in nodes {
            let mut cursor: u64 = 0;
            for page in 0.. {
                if page == max_pages || (max_pages != usize::MAX && !found.is_empty()) {
                    return Ok((found, false));
                }
                let mut command = redis::cmd("SCAN");
                command.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000);
                let (next, keys): (u64, Vec<Vec<u8>>) = match (&mut *self, &node) {
                    (Connection::Single(connection), _) => command.query_async(connection).await?,
                    (Connection::Cluster(connection), Some((host, port))) => {
                        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port: *port,
                        });
                        redis::from_redis_value(connection.route_command(command, routing).await?)?
                    }
                    (Connection::Cluster(_), None) => (0, Vec::new()),
                };
                found.extend(keys);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        let complete = found.is_empty() || max_pages == usize::MAX;
        Ok((found, complete))
    }

    async fn load_script(&mut self, script: &Script) -> redis::RedisResult<()> {
        match self {
            Connection::Single(connection) => script.load_async(connection).await.map(drop),
            // SCRIPT LOAD is routed to every primary.
            Connection::Cluster(connection) => script.load_async(connection).await.map(drop),
        }
    }
}

/// Awaits futures concurrently, keeping their order (at most two here: a number and a device).
async fn futures_join_all<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.map(Box::pin).collect();
    match futures.len() {
        2 => {
            let (second, first) = (futures.pop().unwrap(), futures.pop().unwrap());
            let (first, second) = tokio::join!(first, second);
            vec![first, second]
        }
        _ => {
            let mut outputs = Vec::new();
            for future in futures {
                outputs.push(future.await);
            }
            outputs
        }
    }
}

/// The Redis history store.
pub struct RedisStore {
    settings: RedisSettings,
    backend: Backend,
    connection: OnceCell<Connection>,
    scripts: Scripts,
    /// Replicas a write must reach (0: do not wait) and how long to wait for them.
    replica_wait: (u32, Duration),
    /// The histories last read or written here, for reads that miss their budget.
    near: NearCache,
    /// The first bits of a keyed hash that name its bucket.
    bucket_bits: u8,
    /// Whether layout 1 may still hold histories (the migration has not finished).
    reading_v1: AtomicBool,
    /// Until when (Unix ms) layout-1 markers are asked about: the end of the migration plus one marker window;
    /// `i64::MAX` while it runs.
    v1_markers_until_ms: AtomicI64,
    /// When the layout hash was last read (Unix ms).
    layout_checked_ms: AtomicI64,
}

/// The scripts, loaded on every connection.
struct Scripts {
    apply: Script,
    correct: Script,
    adopt: Script,
    sweep: Script,
    v1_correct: Script,
}

impl Scripts {
    fn new() -> Self {
        let with_common = |body: &str| Script::new(&format!("{LUA_COMMON}{body}"));
        Scripts {
            apply: with_common(APPLY_SCRIPT),
            correct: with_common(CORRECT_SCRIPT),
            adopt: with_common(ADOPT_SCRIPT),
            sweep: Script::new(SWEEP_SCRIPT),
            v1_correct: Script::new(V1_CORRECT_SCRIPT),
        }
    }

    fn all(&self) -> [&Script; 5] {
        [&self.apply, &self.correct, &self.adopt, &self.sweep, &self.v1_correct]
    }
}

/// Histories the near-cache keeps unless configured (`history.near_cache_entries`): about 420 bytes each.
pub const DEFAULT_NEAR_CACHE_ENTRIES: usize = 65_536;

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("RedisStore").field("prefix", &self.settings.prefix).finish_non_exhaustive()
    }
}

fn store_error(error: RedisError) -> StoreError {
    StoreError(format!("redis: {error}"))
}

fn parse_error(error: redis::ParsingError) -> StoreError {
    StoreError(format!("redis: unexpected reply: {error}"))
}

fn now_ms() -> i64 {
    crate::grpc::now_ms()
}

/// Where one history lives in layout 2.
struct Place {
    /// The bucket's key.
    bucket: String,
    /// The caller's field in the bucket (binary).
    field: [u8; FIELD_BYTES],
}

impl Place {
    /// The field in hex, for marker names.
    fn field_hex(&self) -> String {
        hex::encode(self.field)
    }

    fn marker(&self, contact_fingerprint: u64) -> String {
        format!("{}:c:{}:{contact_fingerprint:016x}", self.bucket, self.field_hex())
    }
}

/// What [`RedisStore::migrate`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Migrated {
    /// Layout-1 histories moved into layout 2.
    pub moved: u64,
    /// Histories found moved before (a re-run after an interrupted one).
    pub already_moved: u64,
}

impl RedisStore {
    /// A store for `settings`. Does not connect yet: the first operation (or [`RedisStore::connect`]) does, so
    /// saring starts and answers (degraded) while Redis is down.
    pub fn new(settings: RedisSettings) -> Result<Self, StoreError> {
        let backend = match settings.url.strip_prefix("redis-cluster://") {
            Some(nodes) => {
                let nodes: Vec<String> = nodes.split(',').map(|node| format!("redis://{}", node.trim())).collect();
                Backend::Cluster(Box::new(redis::cluster::ClusterClient::new(nodes).map_err(store_error)?))
            }
            None => Backend::Single(redis::Client::open(settings.url.as_str()).map_err(store_error)?),
        };
        Ok(RedisStore {
            settings,
            backend,
            connection: OnceCell::new(),
            scripts: Scripts::new(),
            replica_wait: (0, Duration::ZERO),
            near: NearCache::new(DEFAULT_NEAR_CACHE_ENTRIES),
            bucket_bits: DEFAULT_BUCKET_BITS,
            reading_v1: AtomicBool::new(true),
            v1_markers_until_ms: AtomicI64::new(i64::MAX),
            layout_checked_ms: AtomicI64::new(0),
        })
    }

    /// Buckets histories by the first `bits` bits of their keyed hash (1..=[`MAX_BUCKET_BITS`]); data written with
    /// other bits is refused at connect.
    pub fn with_bucket_bits(mut self, bits: u8) -> Result<Self, StoreError> {
        if !(1..=MAX_BUCKET_BITS).contains(&bits) {
            return Err(StoreError(format!("redis: bucket bits {bits} must be within 1..={MAX_BUCKET_BITS}")));
        }
        self.bucket_bits = bits;
        Ok(self)
    }

    /// Keeps at most `entries` histories in the near-cache (0: none; then a read that misses its budget answers
    /// without history, as `history_timeout`).
    pub fn with_near_cache(mut self, entries: usize) -> Self {
        self.near = NearCache::new(entries);
        self
    }

    /// The near-cache (for tests and metrics).
    pub fn near_cache(&self) -> &NearCache {
        &self.near
    }

    /// Makes a write count as taken only once `replicas` replicas of each written key's master acknowledge it
    /// within `timeout` (Redis `WAIT`); a write that reaches fewer fails, so the journal keeps the outcome. The
    /// write may still be in Redis: replaying it later is a duplicate there, or restores it after a failover lost
    /// it. 0 (the default) does not wait. A master with fewer replicas than this fails every write until
    /// replicas are back.
    pub fn with_replica_wait(mut self, replicas: u32, timeout: Duration) -> Self {
        self.replica_wait = (replicas, timeout);
        self
    }

    /// Whether layout 1 is still read (the migration has not finished, as last checked).
    pub fn reading_v1(&self) -> bool {
        self.reading_v1.load(Ordering::Relaxed)
    }

    /// Connects (once), loads the scripts and checks the layout. Later failures are handled by the connection
    /// manager, which reconnects in the background.
    pub async fn connect(&self) -> Result<Connection, StoreError> {
        let connection = self
            .connection
            .get_or_try_init(|| async {
                let mut connection = match &self.backend {
                    Backend::Single(client) => {
                        let config = redis::aio::ConnectionManagerConfig::new()
                            .set_connection_timeout(Some(self.settings.connect_timeout))
                            .set_number_of_retries(1)
                            .set_max_delay(Duration::from_millis(500));
                        Connection::Single(
                            ConnectionManager::new_with_config(client.clone(), config).await.map_err(store_error)?,
                        )
                    }
                    Backend::Cluster(client) => {
                        Connection::Cluster(client.get_async_connection().await.map_err(store_error)?)
                    }
                };
                self.load_scripts(&mut connection).await?;
                self.check_layout(&mut connection).await?;
                self.warn_if_buckets_are_not_compact(&mut connection).await;
                Ok::<_, StoreError>(connection)
            })
            .await?;
        Ok(connection.clone())
    }

    async fn load_scripts(&self, connection: &mut Connection) -> Result<(), StoreError> {
        for script in self.scripts.all() {
            connection.load_script(script).await.map_err(store_error)?;
        }
        Ok(())
    }

    /// The layout hash's key.
    fn layout_key(&self) -> String {
        format!("{}:layout", self.settings.prefix)
    }

    /// Records this store's bucket bits in the layout hash when none are there, refuses other bits, and reads
    /// whether layout 1 has been moved.
    async fn check_layout(&self, connection: &mut Connection) -> Result<(), StoreError> {
        let key = self.layout_key();
        let mut set = redis::cmd("HSETNX");
        set.arg(&key).arg("bucket_bits").arg(self.bucket_bits);
        let mut get = redis::cmd("HMGET");
        get.arg(&key).arg("bucket_bits").arg("migrated_ms").arg("v1_markers_until_ms");
        let mut replies = connection.run(vec![set, get]).await.map_err(store_error)?;
        let (bits, mut migrated_ms, mut markers_until_ms): (Option<u8>, Option<i64>, Option<i64>) =
            redis::from_redis_value(replies.pop().unwrap_or(Value::Nil)).map_err(parse_error)?;
        if bits != Some(self.bucket_bits) {
            return Err(StoreError(format!(
                "redis: the histories under prefix {:?} are bucketed by {} bits, this replica is configured for {} \
                 (history.redis_bucket_bits): it would read every caller as a stranger",
                self.settings.prefix,
                bits.map_or("?".into(), |bits| bits.to_string()),
                self.bucket_bits
            )));
        }
        if migrated_ms.is_none() {
            // Nothing says layout 1 was moved: a new deployment has none (its first replica finds that out at
            // once, scanning a small keyspace); an upgraded one finds its keys on the first pages.
            let pattern = format!("{}:v1:*", glob_literal(&self.settings.prefix));
            let (found, complete) = connection.scan_nodes(&pattern, 100).await.map_err(store_error)?;
            if found.is_empty() && complete {
                let now = now_ms();
                let mut done = redis::cmd("HSET");
                done.arg(&key).arg("migrated_ms").arg(now).arg("v1_markers_until_ms").arg(now);
                connection.run(vec![done]).await.map_err(store_error)?;
                (migrated_ms, markers_until_ms) = (Some(now), Some(now));
            } else {
                tracing::warn!(
                    "Redis may still hold histories of layout 1: reading both layouts until `saring history migrate` \
                     has moved them (OPERATIONS.md)"
                );
            }
        }
        self.note_migration(migrated_ms, markers_until_ms);
        Ok(())
    }

    fn note_migration(&self, migrated_ms: Option<i64>, markers_until_ms: Option<i64>) {
        self.layout_checked_ms.store(now_ms(), Ordering::Relaxed);
        match migrated_ms {
            Some(migrated_ms) => {
                if self.reading_v1.swap(false, Ordering::Relaxed) {
                    tracing::info!("history layout 1 has been moved to layout 2; reading layout 2 only");
                }
                let window_ms = i64::try_from(self.settings.marker_ttl.as_millis()).unwrap_or(i64::MAX);
                let until_ms = markers_until_ms.unwrap_or(migrated_ms.saturating_add(window_ms));
                self.v1_markers_until_ms.store(until_ms, Ordering::Relaxed);
            }
            None => {
                self.reading_v1.store(true, Ordering::Relaxed);
                self.v1_markers_until_ms.store(i64::MAX, Ordering::Relaxed);
            }
        }
    }

    /// Reads the layout hash again when it is time to (only while layout 1 still matters).
    async fn recheck_layout(&self, connection: &mut Connection) {
        let now = now_ms();
        if now < self.v1_markers_until_ms.load(Ordering::Relaxed).min(i64::MAX - LAYOUT_RECHECK_MS)
            && self.layout_checked_ms.load(Ordering::Relaxed) + LAYOUT_RECHECK_MS <= now
        {
            self.layout_checked_ms.store(now, Ordering::Relaxed);
            let mut get = redis::cmd("HMGET");
            get.arg(self.layout_key()).arg("migrated_ms").arg("v1_markers_until_ms");
            if let Ok(mut replies) = connection.run(vec![get]).await {
                if let Ok((migrated_ms, markers_until_ms)) =
                    redis::from_redis_value::<(Option<i64>, Option<i64>)>(replies.pop().unwrap_or(Value::Nil))
                {
                    self.note_migration(migrated_ms, markers_until_ms);
                }
            }
        }
    }

    /// Whether layout-1 markers must still be asked about.
    fn asking_v1_markers(&self) -> bool {
        now_ms() < self.v1_markers_until_ms.load(Ordering::Relaxed)
    }

    /// Logs a warning when Redis would store buckets as hash tables (a few times the memory per caller).
    async fn warn_if_buckets_are_not_compact(&self, connection: &mut Connection) {
        let mut get = redis::cmd("CONFIG");
        get.arg("GET").arg("hash-max-listpack-value");
        let reply = match connection {
            Connection::Single(single) => get.query_async::<Value>(single).await,
            Connection::Cluster(cluster) => get.query_async::<Value>(cluster).await,
        };
        let value = reply
            .ok()
            .and_then(|reply| redis::from_redis_value::<std::collections::HashMap<String, usize>>(reply).ok())
            .and_then(|config| config.get("hash-max-listpack-value").copied());
        match value {
            Some(value) if value >= LISTPACK_VALUE_NEEDED => {}
            Some(value) => tracing::warn!(
                hash_max_listpack_value = value,
                needed = LISTPACK_VALUE_NEEDED,
                "Redis keeps history buckets as hash tables, several times the memory per caller: set \
                 hash-max-listpack-value to at least {LISTPACK_VALUE_NEEDED} (OPERATIONS.md)"
            ),
            None => tracing::info!("could not read Redis's hash-max-listpack-value (CONFIG GET refused)"),
        }
    }

    /// The bucket of a keyed hash: its first `bucket_bits` bits.
    fn bucket(&self, key: &HistoryKey) -> u32 {
        let first = u32::from_be_bytes([key.0[0], key.0[1], key.0[2], 0]) >> 8;
        first >> (24 - u32::from(self.bucket_bits))
    }

    /// [`RedisStore::bucket`] in hex, read back from the bucket key [`RedisStore::place`] names.
    #[cfg(test)]
    fn bucket_id(&self, key: &HistoryKey) -> String {
        let bucket = self.place('n', key).bucket;
        bucket[bucket.rfind('{').expect("{") + 1..bucket.len() - 1].to_owned()
    }

    /// Where a number's (`'n'`) or a device's (`'d'`) history lives in layout 2 (one allocation: the key).
    fn place(&self, kind: char, key: &HistoryKey) -> Place {
        let mut field = [0u8; FIELD_BYTES];
        field.copy_from_slice(&key.0[..FIELD_BYTES]);
        // Written by hand: `format!` with a padded hex argument cost a few hundred instructions more per call.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digits = u32::from(self.bucket_bits).div_ceil(4);
        let bucket = self.bucket(key);
        let prefix = &self.settings.prefix;
        let mut name = String::with_capacity(prefix.len() + 8 + digits as usize);
        name.push_str(prefix);
        name.push_str(":v2:");
        name.push(kind);
        name.push_str(":{");
        for digit in (0..digits).rev() {
            name.push(char::from(HEX[((bucket >> (4 * digit)) & 0xf) as usize]));
        }
        name.push('}');
        Place { bucket: name, field }
    }

    /// The bucket key and field of a number's (`'n'`) or a device's (`'d'`) history (for tests and tools).
    pub fn history_place(&self, kind: char, key: &HistoryKey) -> (String, Vec<u8>) {
        let place = self.place(kind, key);
        (place.bucket, place.field.to_vec())
    }

    /// The key whose presence says that a sweep was claimed within the last interval (its value: when, in Unix ms).
    pub fn sweep_claim_key(&self) -> String {
        format!("{}:v2:swept", self.settings.prefix)
    }

    /// The layout-1 key of a history.
    pub fn v1_key(&self, kind: char, key: &HistoryKey) -> String {
        format!("{}:v1:{kind}:{{{}}}", self.settings.prefix, key.to_hex())
    }

    fn v1_marker(v1_key: &str, contact_fingerprint: u64) -> String {
        format!("{v1_key}:c:{contact_fingerprint:016x}")
    }

    fn given<'a>(
        caller: Option<&'a HistoryKey>,
        device: Option<&'a HistoryKey>,
    ) -> impl Iterator<Item = (Kind, char, &'a HistoryKey)> {
        [(Kind::Number, 'n', caller), (Kind::Device, 'd', device)]
            .into_iter()
            .filter_map(|(kind, tag, key)| Some((kind, tag, key?)))
    }

    /// Reads the histories given (number, then device), adding layout 1's while it may still hold them.
    async fn read(
        &self,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
    ) -> Result<Vec<Option<CallerHistory>>, StoreError> {
        let mut connection = self.connect().await?;
        self.recheck_layout(&mut connection).await;
        let with_v1 = self.reading_v1();
        let mut commands = Vec::with_capacity(4);
        for (_, tag, key) in Self::given(caller, device) {
            let place = self.place(tag, key);
            let mut get = redis::cmd("HGET");
            get.arg(&place.bucket).arg(&place.field[..]);
            commands.push(get);
            if with_v1 {
                commands.push(redis::Cmd::get(self.v1_key(tag, key)));
            }
        }
        let values = connection.run(commands).await.map_err(store_error)?;
        let per_history = if with_v1 { 2 } else { 1 };
        values
            .chunks(per_history)
            .map(|values| {
                let mut history = decode(&values[0])?;
                if let Some(old) = values.get(1).map(decode_v1).transpose()?.flatten() {
                    match &mut history {
                        Some(history) => history.merge(&old),
                        None => history = Some(old),
                    }
                }
                Ok(history)
            })
            .collect()
    }

    /// Refreshes the near-cache with what a write stored (values in the order of the keys given; a history comes
    /// back as bulk bytes, anything else changed nothing). While layout 1 is read a write returns layout 2's part
    /// only, so nothing is cached then.
    fn remember_written(&self, caller: Option<&HistoryKey>, device: Option<&HistoryKey>, written: &[Value]) {
        if self.reading_v1() {
            for (kind, _, key) in Self::given(caller, device) {
                self.near.forget(kind, key);
            }
            return;
        }
        let ticket = self.near.ticket();
        for ((kind, _, key), value) in Self::given(caller, device).zip(written) {
            if let Ok(Some(history)) = decode(value) {
                self.near.put(kind, key, Some(&history), ticket);
            }
        }
    }

    fn half_lives(command: &mut redis::Cmd) {
        for half_life in HALF_LIVES_S {
            command.arg(half_life);
        }
    }

    fn apply_command(&self, place: &Place, event: &HistoryEvent) -> redis::Cmd {
        let mut command = redis::cmd("EVALSHA");
        command
            .arg(self.scripts.apply.get_hash())
            .arg(2)
            .arg(&place.bucket)
            .arg(place.marker(event.contact_fingerprint))
            .arg(&place.field[..])
            .arg(event.at_ms)
            .arg(self.settings.retention.as_secs().max(1))
            .arg(self.settings.marker_ttl.as_secs().max(1));
        Self::half_lives(&mut command);
        command.arg(marker_value(event.disposition));
        for row in event.counters().filter_map(Counter::row) {
            command.arg(row);
        }
        command
    }

    fn correct_command(&self, place: &Place, change: &DispositionChange, assumed_marker: &str) -> redis::Cmd {
        let mut command = redis::cmd("EVALSHA");
        command
            .arg(self.scripts.correct.get_hash())
            .arg(2)
            .arg(&place.bucket)
            .arg(place.marker(change.contact_fingerprint))
            .arg(&place.field[..])
            .arg(change.at_ms)
            .arg(self.settings.retention.as_secs().max(1));
        Self::half_lives(&mut command);
        command
            .arg(disposition_row(change.from))
            .arg(disposition_row(change.to))
            .arg(assumed_marker)
            .arg(self.settings.marker_ttl.as_secs().max(1));
        command
    }

    fn v1_correct_command(&self, v1_key: &str, change: &DispositionChange) -> redis::Cmd {
        let mut command = redis::cmd("EVALSHA");
        command
            .arg(self.scripts.v1_correct.get_hash())
            .arg(2)
            .arg(v1_key)
            .arg(Self::v1_marker(v1_key, change.contact_fingerprint))
            .arg(change.at_ms)
            .arg(self.settings.retention.as_secs().max(1));
        Self::half_lives(&mut command);
        command.arg(Counter::Disposition(change.from).index()).arg(Counter::Disposition(change.to).index());
        command
    }

    /// Runs script calls (`commands` builds them again for a retry) in one round-trip, reloading the scripts once
    /// after NOSCRIPT: Redis restarted or flushed its scripts. Markers make the retry safe for a history the first
    /// attempt already updated.
    async fn run_scripts(
        &self,
        connection: &mut Connection,
        commands: impl Fn() -> Vec<redis::Cmd>,
    ) -> Result<Vec<Value>, StoreError> {
        match connection.run(commands()).await {
            Ok(replies) => Ok(replies),
            Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.load_scripts(connection).await?;
                connection.run(commands()).await.map_err(store_error)
            }
            Err(error) => Err(store_error(error)),
        }
    }

    /// Runs one write (`commands` builds it again for a retry) in one round-trip, reloading the scripts once after
    /// NOSCRIPT, then waits for the configured replicas.
    async fn write(&self, keys: &[String], commands: impl Fn() -> Vec<redis::Cmd>) -> Result<Vec<Value>, StoreError> {
        let mut connection = self.connect().await?;
        let written = self.run_scripts(&mut connection, commands).await?;
        let (replicas, timeout) = self.replica_wait;
        if replicas > 0 {
            let reached = connection.wait_replicas(keys, replicas, timeout).await.map_err(store_error)?;
            if reached < i64::from(replicas) {
                return Err(StoreError(format!(
                    "redis: the write reached {reached} of {replicas} replicas within {} ms",
                    timeout.as_millis()
                )));
            }
        }
        Ok(written)
    }

    /// Whether layout 1 counted this contact in the number's or the device's history (its marker is there).
    async fn counted_in_v1(
        &self,
        contact_fingerprint: u64,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
    ) -> Result<bool, StoreError> {
        let markers = Self::given(caller, device)
            .map(|(_, tag, key)| Self::v1_marker(&self.v1_key(tag, key), contact_fingerprint));
        self.any_exists(markers.collect()).await
    }

    /// Whether any of `keys` exists (one round-trip).
    async fn any_exists(&self, keys: Vec<String>) -> Result<bool, StoreError> {
        if keys.is_empty() {
            return Ok(false);
        }
        let mut connection = self.connect().await?;
        let held = connection.run(keys.iter().map(redis::Cmd::exists).collect()).await.map_err(store_error)?;
        Ok(held.into_iter().any(|value| matches!(value, Value::Int(count) if count > 0)))
    }

    /// Corrects one history while layout-1 markers matter: a contact layout 1 counted is corrected in layout 1
    /// while its history is still there, and in layout 2 (taking layout 1's marker as its own) once it was moved.
    async fn correct_one(&self, tag: char, key: &HistoryKey, change: &DispositionChange) -> Result<Value, StoreError> {
        let place = self.place(tag, key);
        let v1_key = self.v1_key(tag, key);
        let mut assumed = String::new();
        if self.asking_v1_markers() {
            let moving = format!("{v1_key}:moving");
            let mut found = false;
            for _ in 0..200 {
                let mut connection = self.connect().await?;
                let probe = vec![
                    redis::Cmd::get(Self::v1_marker(&v1_key, change.contact_fingerprint)),
                    redis::Cmd::exists(&v1_key),
                    redis::Cmd::exists(&moving),
                ];
                let replies = connection.run(probe).await.map_err(store_error)?;
                let marker: Option<Vec<u8>> = redis::from_redis_value_ref(&replies[0]).map_err(parse_error)?;
                let (exists, being_moved): (bool, bool) = (
                    redis::from_redis_value_ref(&replies[1]).map_err(parse_error)?,
                    redis::from_redis_value_ref(&replies[2]).map_err(parse_error)?,
                );
                let Some(marker) = marker else {
                    found = true;
                    break;
                };
                if being_moved {
                    // `saring history migrate` is moving this history right now: a moment.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                if exists {
                    let corrected = self
                        .write(std::slice::from_ref(&v1_key), || vec![self.v1_correct_command(&v1_key, change)])
                        .await?;
                    match corrected.first() {
                        // Moved away between the probe and the script: look again.
                        Some(Value::Int(0)) => continue,
                        Some(value) => return Ok(value.clone()),
                        None => return Ok(Value::Int(0)),
                    }
                }
                assumed = marker_value_from_v1(&marker).unwrap_or_default();
                found = true;
                break;
            }
            if !found {
                // Still being moved after a second of waiting: fail (the correction is retried or journaled)
                // rather than answer that no history holds the contact.
                return Err(StoreError("redis: the history is being moved to layout 2; try again".into()));
            }
        }
        let keys = [place.bucket.clone()];
        let corrected = self.write(&keys, || vec![self.correct_command(&place, change, &assumed)]).await?;
        Ok(corrected.into_iter().next().unwrap_or(Value::Int(0)))
    }
}

/// Decodes a stored history (`None` for a missing field).
pub fn decode(value: &Value) -> Result<Option<CallerHistory>, StoreError> {
    let bytes = match value {
        Value::Nil => return Ok(None),
        Value::BulkString(bytes) => bytes,
        other => return Err(StoreError(format!("redis: unexpected history value {other:?}"))),
    };
    match PackedHistory::from_slice(bytes) {
        Some(packed) => Ok(Some(packed.unpack())),
        None => Err(StoreError(format!("redis: a history holds {} bytes, expected {PACKED_BYTES}", bytes.len()))),
    }
}

/// Bytes of a layout-1 history: 40 little-endian doubles.
pub const V1_ENCODED_BYTES: usize = 40 * 8;

/// Decodes a layout-1 history (`None` for a missing key): its counters rounded to `f32` as layout 2 keeps them,
/// the contacts counter dropped (it is the sum of the dispositions').
pub fn decode_v1(value: &Value) -> Result<Option<CallerHistory>, StoreError> {
    let bytes = match value {
        Value::Nil => return Ok(None),
        Value::BulkString(bytes) => bytes,
        other => return Err(StoreError(format!("redis: unexpected layout-1 history value {other:?}"))),
    };
    if bytes.len() != V1_ENCODED_BYTES {
        return Err(StoreError(format!(
            "redis: a layout-1 history holds {} bytes, expected {V1_ENCODED_BYTES}",
            bytes.len()
        )));
    }
    let doubles: Vec<f64> =
        bytes.chunks_exact(8).map(|chunk| f64::from_le_bytes(chunk.try_into().expect("chunks of 8"))).collect();
    let mut history = CallerHistory {
        counters: [[0.0; 3]; STORED_COUNTER_COUNT],
        first_seen_ms: doubles[37] as i64,
        last_seen_ms: doubles[36] as i64,
        total_contacts: u32::try_from(doubles[39] as u64).unwrap_or(u32::MAX),
        recent_contacts: [0; saring_models::history::RECENT_CONTACT_IDS],
    };
    for (row, values) in history.counters.iter_mut().enumerate() {
        // Layout 1 kept the contacts counter first: its row r + 1 is layout 2's row r.
        for (half_life, value) in values.iter_mut().enumerate() {
            *value = doubles[(row + 1) * 3 + half_life] as f32;
        }
    }
    Ok(Some(history))
}

/// `text` as a SCAN pattern that matches only itself.
fn glob_literal(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() + 8);
    for character in text.chars() {
        if matches!(character, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

impl RedisStore {
    /// Deletes one layout-1 history and its markers (all in the history's slot); whether the history was there.
    async fn erase_v1_history(&self, connection: &mut Connection, history_key: &str) -> Result<bool, StoreError> {
        let pattern = format!("{}:c:*", glob_literal(history_key));
        let markers = connection.scan_slot(history_key, &pattern).await.map_err(store_error)?;
        // The history first (its markers alone count nothing), then its markers in slices of one slot each.
        let mut commands = vec![redis::Cmd::del(history_key), redis::Cmd::del(format!("{history_key}:moving"))];
        for chunk in markers.chunks(500) {
            commands.push(redis::Cmd::del(chunk));
        }
        let replies = connection.run(commands).await.map_err(store_error)?;
        Ok(replies.into_iter().take(2).any(|value| matches!(value, Value::Int(count) if count > 0)))
    }

    /// Deletes one layout-2 history and its markers (all in the bucket's slot); whether the history was there.
    async fn erase_history(&self, connection: &mut Connection, place: &Place) -> Result<bool, StoreError> {
        let pattern = format!("{}:c:{}:*", glob_literal(&place.bucket), place.field_hex());
        let markers = connection.scan_slot(&place.bucket, &pattern).await.map_err(store_error)?;
        let mut hdel = redis::cmd("HDEL");
        hdel.arg(&place.bucket).arg(&place.field[..]);
        let mut commands = vec![hdel];
        for chunk in markers.chunks(500) {
            commands.push(redis::Cmd::del(chunk));
        }
        let replies = connection.run(commands).await.map_err(store_error)?;
        Ok(matches!(replies.first(), Some(Value::Int(count)) if *count > 0))
    }

    /// Moves every layout-1 history into layout 2 without losing or doubling a count, then records in the layout
    /// hash that the move finished (replicas then stop reading layout 1, and stop asking its markers one marker
    /// window later). Safe to run while replicas serve, and to run again after an interruption. Run it once every
    /// replica runs this version: a replica of the previous version writes layout 1 only.
    ///
    /// Each history is renamed to `<key>:moving` (atomically, in its slot), added to its layout-2 field by a script
    /// that records the move (so a re-run does not add it twice), then deleted. A read that falls between the
    /// rename and the add sees that one caller without its layout-1 part for that moment.
    pub async fn migrate(&self) -> Result<Migrated, StoreError> {
        let mut connection = self.connect().await?;
        let prefix = glob_literal(&self.settings.prefix);
        let mut migrated = Migrated::default();
        // Left over by an interrupted run: finish those first.
        for key in connection.scan_all(&format!("{prefix}:v1:?:{{*}}:moving")).await.map_err(store_error)? {
            let key = String::from_utf8_lossy(&key).into_owned();
            if let Some(v1_key) = key.strip_suffix(":moving") {
                self.adopt(&mut connection, v1_key, &mut migrated).await?;
            }
        }
        // Histories an old replica wrote during the run are found by the next pass.
        for _pass in 0..10 {
            let keys = connection.scan_all(&format!("{prefix}:v1:?:{{*}}")).await.map_err(store_error)?;
            if keys.is_empty() {
                let now = now_ms();
                let window_ms = i64::try_from(self.settings.marker_ttl.as_millis()).unwrap_or(i64::MAX);
                let markers_until_ms = now.saturating_add(window_ms);
                let mut done = redis::cmd("HSET");
                done.arg(self.layout_key())
                    .arg("migrated_ms")
                    .arg(now)
                    .arg("v1_markers_until_ms")
                    .arg(markers_until_ms);
                connection.run(vec![done]).await.map_err(store_error)?;
                self.note_migration(Some(now), Some(markers_until_ms));
                return Ok(migrated);
            }
            for key in keys {
                let key = String::from_utf8_lossy(&key).into_owned();
                let mut rename = redis::cmd("RENAMENX");
                rename.arg(&key).arg(format!("{key}:moving"));
                match connection.run(vec![rename]).await {
                    Ok(_) => {}
                    // Gone meanwhile (erased, expired): nothing to move.
                    Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::ResponseError) => continue,
                    Err(error) => return Err(store_error(error)),
                }
                self.adopt(&mut connection, &key, &mut migrated).await?;
            }
        }
        Err(StoreError(
            "redis: layout-1 histories keep appearing: is a replica of the previous version still \
                        writing? Stop it and run the migration again"
                .into(),
        ))
    }

    /// Adds the history renamed to `<v1_key>:moving` to its layout-2 field (once), then deletes it.
    async fn adopt(
        &self,
        connection: &mut Connection,
        v1_key: &str,
        migrated: &mut Migrated,
    ) -> Result<(), StoreError> {
        let moving = format!("{v1_key}:moving");
        let Some((tag, key)) = self.parse_v1_key(v1_key) else {
            return Err(StoreError(format!("redis: {v1_key:?} is not a layout-1 history key")));
        };
        let value = connection.run(vec![redis::Cmd::get(&moving)]).await.map_err(store_error)?;
        let Some(history) = value.first().map(decode_v1).transpose()?.flatten() else { return Ok(()) };
        let place = self.place(tag, &key);
        let move_marker =
            format!("{}:mv:{}:{}:{}", place.bucket, place.field_hex(), history.last_seen_ms, history.total_contacts);
        let mut adopt = redis::cmd("EVALSHA");
        adopt
            .arg(self.scripts.adopt.get_hash())
            .arg(2)
            .arg(&place.bucket)
            .arg(&move_marker)
            .arg(&place.field[..])
            .arg(&PackedHistory::pack(&history).0[..])
            .arg(MOVE_MARKER_TTL_S);
        Self::half_lives(&mut adopt);
        adopt.arg(self.settings.retention.as_secs().max(1));
        let adopted = self.write(std::slice::from_ref(&place.bucket), || vec![adopt.clone()]).await?;
        match adopted.first() {
            Some(Value::Int(1)) => migrated.moved += 1,
            _ => migrated.already_moved += 1,
        }
        connection.run(vec![redis::Cmd::del(&moving)]).await.map_err(store_error)?;
        self.near.forget(if tag == 'n' { Kind::Number } else { Kind::Device }, &key);
        Ok(())
    }

    /// The kind and keyed hash of a layout-1 history key.
    fn parse_v1_key(&self, v1_key: &str) -> Option<(char, HistoryKey)> {
        let rest = v1_key.strip_prefix(&self.settings.prefix)?.strip_prefix(":v1:")?;
        let (tag, hash) = rest.split_once(':')?;
        let tag = match tag {
            "n" => 'n',
            "d" => 'd',
            _ => return None,
        };
        let hash = hash.strip_prefix('{')?.strip_suffix('}')?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hash, &mut bytes).ok()?;
        Some((tag, HistoryKey(bytes)))
    }
}

impl HistoryStore for RedisStore {
    async fn load(&self, caller: Option<&HistoryKey>, device: Option<&HistoryKey>) -> Result<Histories, StoreError> {
        if caller.is_none() && device.is_none() {
            return Ok(Histories::default());
        }
        let ticket = self.near.ticket();
        let mut read = self.read(caller, device).await?.into_iter();
        let histories = Histories {
            caller: if caller.is_some() { read.next().flatten() } else { None },
            device: if device.is_some() { read.next().flatten() } else { None },
        };
        if let Some(key) = caller {
            self.near.put(Kind::Number, key, histories.caller.as_ref(), ticket);
        }
        if let Some(key) = device {
            self.near.put(Kind::Device, key, histories.device.as_ref(), ticket);
        }
        Ok(histories)
    }

    fn cached(&self, caller: Option<&HistoryKey>, device: Option<&HistoryKey>) -> Option<Histories> {
        self.near.get(caller, device)
    }

    async fn counted(
        &self,
        contact_fingerprint: u64,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
    ) -> Result<bool, StoreError> {
        let markers = Self::given(caller, device).map(|(_, tag, key)| self.place(tag, key).marker(contact_fingerprint));
        if self.any_exists(markers.collect()).await? {
            return Ok(true);
        }
        if self.asking_v1_markers() {
            return self.counted_in_v1(contact_fingerprint, caller, device).await;
        }
        Ok(false)
    }

    async fn erase(&self, caller: Option<&HistoryKey>, device: Option<&HistoryKey>) -> Result<Erased, StoreError> {
        let mut connection = self.connect().await?;
        let mut erased = Erased::default();
        for (kind, tag, key) in Self::given(caller, device) {
            self.near.forget(kind, key);
            let mut removed = self.erase_history(&mut connection, &self.place(tag, key)).await?;
            if self.asking_v1_markers() {
                // Layout 1 may still hold it, or its markers.
                removed |= self.erase_v1_history(&mut connection, &self.v1_key(tag, key)).await?;
            }
            if removed {
                erased.histories += 1;
            }
            // A read that was in flight during the erasure may have cached the history again.
            self.near.forget(kind, key);
        }
        Ok(erased)
    }

    async fn forget_named(&self, named: &crate::privacy::NamedKeys) -> Result<Erased, StoreError> {
        // The histories in Redis are shared: the replica that served the erasure removed them; only this
        // replica's near-cache may still hold them.
        self.near.forget_named(named);
        Ok(Erased::default())
    }

    async fn sweep_expired(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        let mut connection = self.connect().await?;
        let buckets = 1u32 << self.bucket_bits;
        let digits = usize::from(self.bucket_bits).div_ceil(4);
        let mut removed = 0u64;
        for tag in ['n', 'd'] {
            let mut bucket = 0u32;
            while bucket < buckets {
                if bucket > 0 {
                    // Paced, so a sweep never competes with scoring for Redis: 64 buckets every 25 ms (65,536
                    // buckets a kind take ~26 s).
                    tokio::time::sleep(SWEEP_PAUSE).await;
                }
                let chunk_end = (bucket + SWEEP_CHUNK).min(buckets);
                let commands: Vec<redis::Cmd> = (bucket..chunk_end)
                    .map(|id| {
                        let mut sweep = redis::cmd("EVALSHA");
                        sweep
                            .arg(self.scripts.sweep.get_hash())
                            .arg(1)
                            .arg(format!("{}:v2:{tag}:{{{id:0digits$x}}}", self.settings.prefix))
                            .arg(cutoff_ms);
                        sweep
                    })
                    .collect();
                let replies = self.run_scripts(&mut connection, || commands.clone()).await?;
                removed += replies
                    .into_iter()
                    .map(|value| if let Value::Int(count) = value { count.max(0) as u64 } else { 0 })
                    .sum::<u64>();
                bucket = chunk_end;
            }
        }
        Ok(removed)
    }

    async fn claim_sweep(&self, every: Duration) -> Result<bool, StoreError> {
        let mut connection = self.connect().await?;
        let every_ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut claim = redis::cmd("SET");
        claim.arg(self.sweep_claim_key()).arg(now_ms()).arg("NX").arg("PX").arg(every_ms);
        let replies = connection.run(vec![claim]).await.map_err(store_error)?;
        Ok(replies.first() == Some(&Value::Okay))
    }

    async fn record(
        &self,
        _contact_id: &str,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
        event: &HistoryEvent,
    ) -> Result<Recorded, StoreError> {
        let places: Vec<Place> = Self::given(caller, device).map(|(_, tag, key)| self.place(tag, key)).collect();
        if places.is_empty() {
            // Withheld number and no device: nothing to remember.
            return Ok(Recorded::Applied);
        }
        if self.asking_v1_markers() && self.counted_in_v1(event.contact_fingerprint, caller, device).await? {
            return Ok(Recorded::Duplicate);
        }
        let keys: Vec<String> = places.iter().map(|place| place.bucket.clone()).collect();
        let applied =
            self.write(&keys, || places.iter().map(|place| self.apply_command(place, event)).collect()).await?;
        self.remember_written(caller, device, &applied);
        // The script answers the history it stored, or 0 for a contact counted before.
        let any_applied = applied.iter().any(|value| matches!(value, Value::BulkString(_)));
        Ok(if any_applied { Recorded::Applied } else { Recorded::Duplicate })
    }

    async fn correct(
        &self,
        _contact_id: &str,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
        change: &DispositionChange,
    ) -> Result<Corrected, StoreError> {
        let corrected: Vec<Value> = if self.asking_v1_markers() {
            let mut corrected = Vec::new();
            for (_, tag, key) in Self::given(caller, device) {
                corrected.push(self.correct_one(tag, key, change).await?);
            }
            corrected
        } else {
            let places: Vec<Place> = Self::given(caller, device).map(|(_, tag, key)| self.place(tag, key)).collect();
            if places.is_empty() {
                return Ok(Corrected::NotHeld);
            }
            let keys: Vec<String> = places.iter().map(|place| place.bucket.clone()).collect();
            self.write(&keys, || places.iter().map(|place| self.correct_command(place, change, "")).collect()).await?
        };
        if corrected.is_empty() {
            return Ok(Corrected::NotHeld);
        }
        self.remember_written(caller, device, &corrected);
        Ok(corrected.iter().fold(Corrected::NotHeld, |combined, value| {
            combined.and(match value {
                Value::BulkString(_) => Corrected::Applied,
                Value::Int(1) => Corrected::Unchanged,
                _ => Corrected::NotHeld,
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(bits: u8) -> RedisStore {
        RedisStore::new(RedisSettings {
            url: "redis://127.0.0.1:6379/0".into(),
            prefix: "saring-t".into(),
            retention: Duration::from_secs(60),
            marker_ttl: Duration::from_secs(60),
            connect_timeout: Duration::from_millis(100),
        })
        .unwrap()
        .with_bucket_bits(bits)
        .unwrap()
    }

    #[test]
    fn a_bucket_is_the_first_bits_of_the_keyed_hash() {
        let key = HistoryKey(std::array::from_fn(|index| (index * 37 + 0xab) as u8));
        assert_eq!(store(16).bucket_id(&key), "abd0");
        assert_eq!(store(12).bucket_id(&key), "abd");
        assert_eq!(store(5).bucket_id(&key), "15");
        assert_eq!(store(24).bucket_id(&key), "abd0f5");
        let place = store(16).place('n', &key);
        assert_eq!(place.bucket, "saring-t:v2:n:{abd0}");
        assert_eq!(place.field[..], key.0[..16]);
    }

    #[test]
    fn a_layout_one_key_is_read_back() {
        let key = HistoryKey(std::array::from_fn(|index| (index * 11 + 3) as u8));
        let store = store(16);
        assert_eq!(store.parse_v1_key(&store.v1_key('d', &key)), Some(('d', key)));
        assert_eq!(store.parse_v1_key("saring-t:v1:n:{00}"), None);
        assert_eq!(store.parse_v1_key("other:v1:n:{00}"), None);
    }

    #[test]
    fn layout_one_markers_name_the_same_disposition_in_layout_two() {
        for disposition in Disposition::ALL {
            let v1 = format!("d{}", Counter::Disposition(disposition).index());
            assert_eq!(marker_value_from_v1(v1.as_bytes()), Some(marker_value(disposition)));
        }
        assert_eq!(marker_value_from_v1(b"1"), None);
    }
}
