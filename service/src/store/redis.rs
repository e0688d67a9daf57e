//! Caller history in Redis, shared by every replica.
//!
//! Layout (Redis Cluster-safe: nothing crosses a slot):
//! - one key per number and per device, `{prefix}:v1:n:{<hmac>}` / `{prefix}:v1:d:{<hmac>}`, holding the history
//!   as 40 little-endian doubles (320 bytes): 12 counters × 3 half-lives, as-of, first seen, last seen, total;
//! - one marker per (history, contact), `{prefix}:v1:n:{<hmac>}:c:<contact fingerprint>`, hash-tagged into the
//!   history's slot, with a TTL: the script sets it and applies the contact in one atomic step, so a contact
//!   counts once per history however often it is retried. The marker holds the disposition the history counts the
//!   contact under (`d` and its counter index; `1` in markers written before corrections), so a correction
//!   (a second script, mirroring `CallerHistory::correct`) moves the contact's weight exactly once.
//!
//! A read is one round-trip (one `MGET number device` on one Redis; two concurrent GETs on a Cluster, where the
//! two keys live in different slots). Concurrent reads share the multiplexed connection, which already pipelines
//! them: requests queued while the socket is busy are written together and flushed once. A write is one
//! round-trip of two EVALSHA calls (number, device); the script does the decay arithmetic of
//! [`saring_models::CallerHistory::apply`] server-side and returns the history it stored. Each history is updated
//! atomically and exactly once; the two are independent, so a retry after a partial failure completes the other
//! exactly once.
//!
//! Every history read or written passes through a bounded near-cache ([`super::near_cache`]): a read that misses
//! its budget answers from it, flagged `history_stale` ([`HistoryStore::cached`]).
//!
//! Replication is asynchronous: a write the master acknowledged and had not yet sent to a replica is lost when
//! that master dies and the replica is promoted (a Redis Cluster failover, or a Sentinel one). Opt in to
//! [`RedisStore::with_replica_wait`] (`history.redis_wait_replicas`) and a write counts as taken only once that many
//! replicas have it (`WAIT`); otherwise it fails and the journal keeps the outcome and replays it (idempotently:
//! markers make the replay a duplicate where the write survived).

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{ErrorKind, RedisError, Script, ServerErrorKind, Value};
use saring_models::history::{Counter, COUNTER_COUNT, HALF_LIFE_COUNT, HALF_LIVES_S};
use saring_models::{CallerHistory, Disposition, HistoryEvent};
use tokio::sync::OnceCell;

use super::near_cache::{Kind, NearCache};
use super::{Corrected, DispositionChange, Erased, Histories, HistoryStore, Recorded, StoreError};
use crate::privacy::HistoryKey;

/// Doubles in one encoded history.
const ENCODED_DOUBLES: usize = COUNTER_COUNT * HALF_LIFE_COUNT + 4;
/// Bytes in one encoded history.
pub const ENCODED_BYTES: usize = ENCODED_DOUBLES * 8;

/// The server-side apply: marker check, lazy decay, increments, TTLs. Mirrors `CallerHistory::apply`.
const APPLY_SCRIPT: &str = r#"
-- KEYS[1] history, KEYS[2] marker
-- ARGV[1] at_ms, ARGV[2] retention s, ARGV[3] marker ttl s, ARGV[4..6] half-lives s, ARGV[7] marker value
-- ('d' and the disposition's counter index), ARGV[8..] counter indexes
-- Returns 0 for a contact counted before, else the history as stored
if not redis.call('SET', KEYS[2], ARGV[7], 'NX', 'EX', ARGV[3]) then return 0 end
local FMT = '<' .. string.rep('d', 40)
local at = tonumber(ARGV[1])
local v
local raw = redis.call('GET', KEYS[1])
if raw then
  v = {struct.unpack(FMT, raw)}
  v[41] = nil
else
  v = {}
  for i = 1, 40 do v[i] = 0 end
  v[37] = at; v[38] = at; v[39] = at
end
local half_lives = {tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])}
if at > v[37] then
  local elapsed_s = (at - v[37]) / 1000
  for h = 1, 3 do
    local factor = 2 ^ (-elapsed_s / half_lives[h])
    for c = 0, 11 do v[c * 3 + h] = v[c * 3 + h] * factor end
  end
  v[37] = at
end
local weights = {1, 1, 1}
if v[37] > at then
  local age_s = (v[37] - at) / 1000
  for h = 1, 3 do weights[h] = 2 ^ (-age_s / half_lives[h]) end
end
for j = 8, #ARGV do
  local c = tonumber(ARGV[j])
  for h = 1, 3 do v[c * 3 + h] = v[c * 3 + h] + weights[h] end
end
if v[40] == 0 then
  v[38] = at; v[39] = at
else
  if at < v[38] then v[38] = at end
  if at > v[39] then v[39] = at end
end
v[40] = v[40] + 1
local packed = struct.pack(FMT, unpack(v))
redis.call('SET', KEYS[1], packed, 'EX', ARGV[2])
return packed
"#;

/// The server-side correction: moves one applied contact's decayed weight from the disposition its marker names to
/// another, exactly once. Mirrors `CallerHistory::correct` (same weight expression, same clamp of dust at 0).
/// Returns 0 when the history does not hold the contact (no marker or no history), 1 when it holds the new
/// disposition already, and the history it stored when the weight moved.
const CORRECT_SCRIPT: &str = r#"
-- KEYS[1] history, KEYS[2] marker
-- ARGV[1] at_ms, ARGV[2] retention s, ARGV[3..5] half-lives s, ARGV[6] the recorded disposition's counter index
-- (for a marker that predates corrections and holds '1'), ARGV[7] the new disposition's counter index
local marker = redis.call('GET', KEYS[2])
if not marker then return 0 end
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local from = tonumber(ARGV[6])
if string.sub(marker, 1, 1) == 'd' then from = tonumber(string.sub(marker, 2)) end
local to = tonumber(ARGV[7])
if from == to then return 1 end
local FMT = '<' .. string.rep('d', 40)
local v = {struct.unpack(FMT, raw)}
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
local packed = struct.pack(FMT, unpack(v))
redis.call('SET', KEYS[1], packed, 'EX', ARGV[2])
redis.call('SET', KEYS[2], 'd' .. to, 'KEEPTTL')
return packed
"#;

/// The marker value that names the disposition a history holds for a contact.
fn marker_value(disposition: Disposition) -> String {
    format!("d{}", Counter::Disposition(disposition).index())
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
    script: Script,
    correct_script: Script,
    /// Replicas a write must reach (0: do not wait) and how long to wait for them.
    replica_wait: (u32, Duration),
    /// The histories last read or written here, for reads that miss their budget.
    near: NearCache,
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
            script: Script::new(APPLY_SCRIPT),
            correct_script: Script::new(CORRECT_SCRIPT),
            replica_wait: (0, Duration::ZERO),
            near: NearCache::new(DEFAULT_NEAR_CACHE_ENTRIES),
        })
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

    /// Connects (once) and loads the script. Later failures are handled by the connection manager, which
    /// reconnects in the background.
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
                connection.load_script(&self.script).await.map_err(store_error)?;
                connection.load_script(&self.correct_script).await.map_err(store_error)?;
                Ok::<_, StoreError>(connection)
            })
            .await?;
        Ok(connection.clone())
    }

    /// The key of a history.
    pub fn history_key(&self, kind: char, key: &HistoryKey) -> String {
        format!("{}:v1:{kind}:{{{}}}", self.settings.prefix, key.to_hex())
    }

    /// The keys of a number's and a device's histories, in that order, for those given.
    fn history_keys(&self, caller: Option<&HistoryKey>, device: Option<&HistoryKey>) -> Vec<String> {
        [caller.map(|key| self.history_key('n', key)), device.map(|key| self.history_key('d', key))]
            .into_iter()
            .flatten()
            .collect()
    }

    /// Writes the key of a history into `out` (cleared first): the same text as [`RedisStore::history_key`],
    /// without its two allocations.
    fn write_history_key(&self, out: &mut Vec<u8>, kind: u8, key: &HistoryKey) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.clear();
        out.extend_from_slice(self.settings.prefix.as_bytes());
        out.extend_from_slice(b":v1:");
        out.push(kind);
        out.extend_from_slice(b":{");
        for byte in key.0 {
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0x0f)]);
        }
        out.push(b'}');
    }

    /// Reads the encoded histories of the keys given, in order (number, then device).
    async fn read(&self, caller: Option<&HistoryKey>, device: Option<&HistoryKey>) -> Result<Vec<Value>, StoreError> {
        let mut connection = self.connect().await?;
        match &mut connection {
            Connection::Single(single) => {
                // One command, one reply: fewer bytes each way and less parsing than a pipeline of two GETs.
                let mut command = redis::cmd("MGET");
                let mut key = Vec::with_capacity(self.settings.prefix.len() + 72);
                for (kind, given) in [(b'n', caller), (b'd', device)] {
                    if let Some(given) = given {
                        self.write_history_key(&mut key, kind, given);
                        command.arg(key.as_slice());
                    }
                }
                match command.query_async::<Value>(single).await.map_err(store_error)? {
                    Value::Array(values) => Ok(values),
                    other => Err(StoreError(format!("redis: unexpected MGET reply {other:?}"))),
                }
            }
            Connection::Cluster(_) => {
                let keys = self.history_keys(caller, device);
                connection.run(keys.iter().map(redis::Cmd::get).collect()).await.map_err(store_error)
            }
        }
    }

    /// Refreshes the near-cache with what a write stored (values in the order of the keys given; a history comes
    /// back as bulk bytes, anything else changed nothing).
    fn remember_written(&self, caller: Option<&HistoryKey>, device: Option<&HistoryKey>, written: &[Value]) {
        let ticket = self.near.ticket();
        let given = [(Kind::Number, caller), (Kind::Device, device)];
        for ((kind, key), value) in given.into_iter().filter_map(|(kind, key)| Some((kind, key?))).zip(written) {
            if let Ok(Some(history)) = decode(value) {
                self.near.put(kind, key, Some(&history), ticket);
            }
        }
    }

    fn marker_key(history_key: &str, contact_fingerprint: u64) -> String {
        format!("{history_key}:c:{contact_fingerprint:016x}")
    }

    fn apply_command(&self, history_key: &str, event: &HistoryEvent) -> redis::Cmd {
        let mut command = redis::cmd("EVALSHA");
        command
            .arg(self.script.get_hash())
            .arg(2)
            .arg(history_key)
            .arg(Self::marker_key(history_key, event.contact_fingerprint))
            .arg(event.at_ms)
            .arg(self.settings.retention.as_secs().max(1))
            .arg(self.settings.marker_ttl.as_secs().max(1));
        for half_life in HALF_LIVES_S {
            command.arg(half_life);
        }
        command.arg(marker_value(event.disposition));
        for counter in event.counters() {
            command.arg(counter.index());
        }
        command
    }
}

impl RedisStore {
    fn correct_command(&self, history_key: &str, change: &DispositionChange) -> redis::Cmd {
        let mut command = redis::cmd("EVALSHA");
        command
            .arg(self.correct_script.get_hash())
            .arg(2)
            .arg(history_key)
            .arg(Self::marker_key(history_key, change.contact_fingerprint))
            .arg(change.at_ms)
            .arg(self.settings.retention.as_secs().max(1));
        for half_life in HALF_LIVES_S {
            command.arg(half_life);
        }
        command.arg(Counter::Disposition(change.from).index()).arg(Counter::Disposition(change.to).index());
        command
    }

    /// Runs one write (`commands` builds it again for a retry) in one round-trip, reloading the scripts once after
    /// NOSCRIPT, then waits for the configured replicas.
    async fn write(&self, keys: &[String], commands: impl Fn() -> Vec<redis::Cmd>) -> Result<Vec<Value>, StoreError> {
        let mut connection = self.connect().await?;
        let written = match connection.run(commands()).await {
            Ok(written) => written,
            Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                // Redis restarted or flushed its scripts: load them again and retry once. Markers make the retry
                // safe for a history the first attempt already updated.
                connection.load_script(&self.script).await.map_err(store_error)?;
                connection.load_script(&self.correct_script).await.map_err(store_error)?;
                connection.run(commands()).await.map_err(store_error)?
            }
            Err(error) => return Err(store_error(error)),
        };
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
}

/// Decodes a stored history (`None` for a missing key).
pub fn decode(value: &Value) -> Result<Option<CallerHistory>, StoreError> {
    let bytes = match value {
        Value::Nil => return Ok(None),
        Value::BulkString(bytes) => bytes,
        other => return Err(StoreError(format!("redis: unexpected history value {other:?}"))),
    };
    if bytes.len() != ENCODED_BYTES {
        return Err(StoreError(format!("redis: a history holds {} bytes, expected {ENCODED_BYTES}", bytes.len())));
    }
    let mut doubles = [0.0; ENCODED_DOUBLES];
    for (double, chunk) in doubles.iter_mut().zip(bytes.chunks_exact(8)) {
        *double = f64::from_le_bytes(chunk.try_into().expect("chunks of 8"));
    }
    let mut counters = [[0.0; HALF_LIFE_COUNT]; COUNTER_COUNT];
    for (counter, row) in counters.iter_mut().enumerate() {
        row.copy_from_slice(&doubles[counter * HALF_LIFE_COUNT..(counter + 1) * HALF_LIFE_COUNT]);
    }
    let base = COUNTER_COUNT * HALF_LIFE_COUNT;
    Ok(Some(CallerHistory {
        counters,
        as_of_ms: doubles[base] as i64,
        first_seen_ms: doubles[base + 1] as i64,
        last_seen_ms: doubles[base + 2] as i64,
        total_contacts: doubles[base + 3] as u64,
        recent_contacts: [0; saring_models::history::RECENT_CONTACT_IDS],
    }))
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
    /// Deletes one history and its markers (all in the history's slot); whether the history was there.
    async fn erase_history(&self, connection: &mut Connection, history_key: &str) -> Result<bool, StoreError> {
        let pattern = format!("{}:c:*", glob_literal(history_key));
        let markers = connection.scan_slot(history_key, &pattern).await.map_err(store_error)?;
        let mut removed = false;
        // The history first (its markers alone count nothing), then its markers in slices of one slot each.
        let mut commands = vec![redis::Cmd::del(history_key)];
        for chunk in markers.chunks(500) {
            commands.push(redis::Cmd::del(chunk));
        }
        for (index, value) in connection.run(commands).await.map_err(store_error)?.into_iter().enumerate() {
            if index == 0 {
                removed = redis::from_redis_value::<i64>(value)
                    .map_err(|error| StoreError(format!("redis: unexpected DEL reply: {error}")))?
                    > 0;
            }
        }
        Ok(removed)
    }
}

impl HistoryStore for RedisStore {
    async fn load(&self, caller: Option<&HistoryKey>, device: Option<&HistoryKey>) -> Result<Histories, StoreError> {
        if caller.is_none() && device.is_none() {
            return Ok(Histories::default());
        }
        let ticket = self.near.ticket();
        let values = self.read(caller, device).await?;
        let mut decoded = values.iter().map(decode);
        let histories = Histories {
            caller: if caller.is_some() { decoded.next().transpose()?.flatten() } else { None },
            device: if device.is_some() { decoded.next().transpose()?.flatten() } else { None },
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
        let keys = self.history_keys(caller, device);
        if keys.is_empty() {
            return Ok(false);
        }
        let mut connection = self.connect().await?;
        let commands = keys.iter().map(|key| redis::Cmd::exists(Self::marker_key(key, contact_fingerprint))).collect();
        let held = connection.run(commands).await.map_err(store_error)?;
        Ok(held.into_iter().any(|value| matches!(value, Value::Int(count) if count > 0)))
    }

    async fn erase(&self, caller: Option<&HistoryKey>, device: Option<&HistoryKey>) -> Result<Erased, StoreError> {
        let mut connection = self.connect().await?;
        let mut erased = Erased::default();
        for (kind, tag, key) in [(Kind::Number, 'n', caller), (Kind::Device, 'd', device)] {
            let Some(key) = key else { continue };
            self.near.forget(kind, key);
            if self.erase_history(&mut connection, &self.history_key(tag, key)).await? {
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

    async fn record(
        &self,
        _contact_id: &str,
        caller: Option<&HistoryKey>,
        device: Option<&HistoryKey>,
        event: &HistoryEvent,
    ) -> Result<Recorded, StoreError> {
        let keys = self.history_keys(caller, device);
        if keys.is_empty() {
            // Withheld number and no device: nothing to remember.
            return Ok(Recorded::Applied);
        }
        let applied = self.write(&keys, || keys.iter().map(|key| self.apply_command(key, event)).collect()).await?;
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
        let keys = self.history_keys(caller, device);
        if keys.is_empty() {
            return Ok(Corrected::NotHeld);
        }
        let corrected =
            self.write(&keys, || keys.iter().map(|key| self.correct_command(key, change)).collect()).await?;
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

    #[test]
    fn a_read_key_is_the_documented_key() {
        let store = RedisStore::new(RedisSettings {
            url: "redis://127.0.0.1:6379/0".into(),
            prefix: "saring-t".into(),
            retention: Duration::from_secs(60),
            marker_ttl: Duration::from_secs(60),
            connect_timeout: Duration::from_millis(100),
        })
        .unwrap();
        let key = HistoryKey(std::array::from_fn(|index| (index * 37 + 11) as u8));
        let mut written = Vec::new();
        for kind in ['n', 'd'] {
            store.write_history_key(&mut written, kind as u8, &key);
            assert_eq!(String::from_utf8(written.clone()).unwrap(), store.history_key(kind, &key));
        }
    }
}
