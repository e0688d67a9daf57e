//! Measures what caller history costs in Redis: writes the histories of N callers (each with a few contacts)
//! through the real Redis store, then reads Redis's `used_memory` growth and `MEMORY USAGE` of every history bucket
//! (histories alone) and of a sample of per-contact markers; prints bytes per caller and a projection to 100 million
//! callers, then deletes what it wrote. Markers are kept a week and are counted apart: they are per contact, not per
//! caller.
//!
//! `cargo run --release -p saring --example redis_memory -- [redis://127.0.0.1:6379/0] [callers] [bucket bits]`
//!
//! Redis needs `hash-max-listpack-value` ≥ 152 (and `hash-max-listpack-entries` above the callers per bucket) to
//! keep a bucket as one listpack: the example says what the server is set to.

use std::sync::Arc;
use std::time::{Duration, Instant};

use saring::privacy::KeyHasher;
use saring::store::{HistoryStore, RedisSettings, RedisStore};
use saring_models::history::contact_fingerprint;
use saring_models::{Disposition, HistoryEvent};

const CONTACTS_PER_CALLER: u32 = 3;
const WRITERS: u32 = 64;

async fn used_memory(connection: &mut redis::aio::MultiplexedConnection) -> redis::RedisResult<i64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(connection).await?;
    Ok(info
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut arguments = std::env::args().skip(1);
    let url = arguments.next().unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
    let callers: u32 = arguments.next().map(|count| count.parse()).transpose()?.unwrap_or(20_000);
    let bits: u8 =
        arguments.next().map(|bits| bits.parse()).transpose()?.unwrap_or(saring::store::redis::DEFAULT_BUCKET_BITS);
    let prefix = format!("saring-memory-probe:{}", std::process::id());
    let store = Arc::new(
        RedisStore::new(RedisSettings {
            url: url.clone(),
            prefix: prefix.clone(),
            retention: Duration::from_secs(180 * 86_400),
            marker_ttl: Duration::from_secs(7 * 86_400),
            connect_timeout: Duration::from_secs(2),
        })?
        .with_bucket_bits(bits)?,
    );
    let client = redis::Client::open(url.as_str())?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let config: Vec<String> =
        redis::cmd("CONFIG").arg("GET").arg("hash-max-listpack-*").query_async(&mut connection).await?;
    store.connect().await?;
    let before = used_memory(&mut connection).await?;
    let hasher = KeyHasher::new(b"memory-probe-secret");
    let started = Instant::now();
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (store, hasher) = (Arc::clone(&store), hasher.clone());
        writers.push(tokio::spawn(async move {
            for caller in (writer..callers).step_by(WRITERS as usize) {
                let key = hasher.number(&format!("+62812{caller:08}"));
                for contact in 0..CONTACTS_PER_CALLER {
                    let contact_id = format!("m-{caller}-{contact}");
                    let event = HistoryEvent {
                        contact_fingerprint: contact_fingerprint(&contact_id),
                        at_ms: 1_772_323_200_000 + i64::from(contact) * 3_600_000,
                        answered: true,
                        talk_s: 20.0,
                        night: false,
                        disposition: Disposition::NonEmergency,
                    };
                    store.record(&contact_id, Some(&key), None, &event).await?;
                }
            }
            Ok::<_, saring::store::StoreError>(())
        }));
    }
    for writer in writers {
        writer.await??;
    }
    let written_in = started.elapsed();
    let after = used_memory(&mut connection).await?;

    // Every bucket's MEMORY USAGE (SAMPLES 0: every field), and a sample of markers.
    let mut bucket_bytes = 0u64;
    let mut listpacks = 0u32;
    let buckets = 1u32 << bits;
    let digits = usize::from(bits).div_ceil(4);
    for bucket in 0..buckets {
        let key = format!("{prefix}:v2:n:{{{bucket:0digits$x}}}");
        let usage: Option<u64> =
            redis::cmd("MEMORY").arg("USAGE").arg(&key).arg("SAMPLES").arg(0).query_async(&mut connection).await?;
        if let Some(usage) = usage {
            bucket_bytes += usage;
            let encoding: String = redis::cmd("OBJECT").arg("ENCODING").arg(&key).query_async(&mut connection).await?;
            listpacks += u32::from(encoding == "listpack");
        }
    }
    let sample = callers.min(1000);
    let mut marker_bytes = 0u64;
    for caller in 0..sample {
        let (bucket, field) = store.history_place('n', &hasher.number(&format!("+62812{caller:08}")));
        let marker =
            format!("{bucket}:c:{}:{:016x}", hex::encode(field), contact_fingerprint(&format!("m-{caller}-0")));
        let usage: u64 = redis::cmd("MEMORY").arg("USAGE").arg(&marker).query_async(&mut connection).await?;
        marker_bytes += usage;
    }
    let per_caller = bucket_bytes as f64 / f64::from(callers);
    let per_marker = marker_bytes as f64 / f64::from(sample);
    // The markers go (they are per contact and expire in a week); what is left is the histories.
    delete_matching(&mut connection, &format!("{prefix}:v2:*:c:*")).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let histories_only = used_memory(&mut connection).await?;
    let delta_per_caller = (histories_only - before) as f64 / f64::from(callers);
    let per_marker_delta = (after - histories_only) as f64 / (f64::from(callers) * f64::from(CONTACTS_PER_CALLER));
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut connection).await?;
    let version = info.lines().find_map(|line| line.strip_prefix("redis_version:")).unwrap_or("?").trim().to_owned();
    println!("redis {version}, config {config:?}");
    println!(
        "{callers} callers x {CONTACTS_PER_CALLER} contacts written in {:.1} s ({:.0} outcomes/s from {WRITERS} tasks), \
         {bits} bucket bits: {} buckets, {listpacks} of them listpacks",
        written_in.as_secs_f64(),
        f64::from(callers * CONTACTS_PER_CALLER) / written_in.as_secs_f64(),
        buckets
    );
    println!("histories: {per_caller:.1} bytes per caller (MEMORY USAGE of every bucket)");
    println!(
        "histories: {delta_per_caller:.1} bytes per caller (used_memory growth {} bytes, markers deleted)",
        histories_only - before
    );
    println!(
        "per-contact marker: {per_marker:.0} bytes (MEMORY USAGE, {sample} sampled), {per_marker_delta:.0} bytes \
         (used_memory), kept 7 days"
    );
    println!(
        "projection for 100 million callers: {:.1} GiB of histories (+ markers: {:.2} GiB per million contacts a week)",
        per_caller * 1e8 / f64::from(1u32 << 30),
        per_marker * 1e6 / f64::from(1u32 << 30)
    );
    delete_matching(&mut connection, &format!("{prefix}:*")).await?;
    Ok(())
}

/// Deletes every key matching `pattern`.
async fn delete_matching(connection: &mut redis::aio::MultiplexedConnection, pattern: &str) -> redis::RedisResult<()> {
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(10_000)
            .query_async(connection)
            .await?;
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(&keys).query_async(connection).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
