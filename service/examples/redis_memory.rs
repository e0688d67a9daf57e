//! Measures what caller history costs in Redis: writes histories for N callers (each with a few contacts) through
//! the real Redis store, reads `MEMORY USAGE` of a sample of history keys and per-contact markers, prints bytes per
//! caller and a projection to 100 million callers, then deletes what it wrote.
//!
//! `cargo run --release -p saring --example redis_memory -- [redis://127.0.0.1:6379/0] [callers]`

use std::time::Duration;

use saring::privacy::KeyHasher;
use saring::store::{HistoryStore, RedisSettings, RedisStore};
use saring_models::history::contact_fingerprint;
use saring_models::{Disposition, HistoryEvent};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut arguments = std::env::args().skip(1);
    let url = arguments.next().unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
    let callers: u32 = arguments.next().map(|count| count.parse()).transpose()?.unwrap_or(20_000);
    let prefix = format!("saring-memory-probe:{}", std::process::id());
    let store = RedisStore::new(RedisSettings {
        url: url.clone(),
        prefix: prefix.clone(),
        retention: Duration::from_secs(180 * 86_400),
        marker_ttl: Duration::from_secs(7 * 86_400),
        connect_timeout: Duration::from_secs(2),
    })?;
    let hasher = KeyHasher::new(b"memory-probe-secret");
    let contacts_per_caller = 3;
    for caller in 0..callers {
        let key = hasher.number(&format!("+62812{caller:08}"));
        for contact in 0..contacts_per_caller {
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
    let client = redis::Client::open(url.as_str())?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let sample = callers.min(1000);
    let (mut history_bytes, mut marker_bytes) = (0u64, 0u64);
    for caller in 0..sample {
        let key = store.history_key('n', &hasher.number(&format!("+62812{caller:08}")));
        let usage: u64 = redis::cmd("MEMORY").arg("USAGE").arg(&key).query_async(&mut connection).await?;
        history_bytes += usage;
        let marker = format!("{key}:c:{:016x}", contact_fingerprint(&format!("m-{caller}-0")));
        let usage: u64 = redis::cmd("MEMORY").arg("USAGE").arg(&marker).query_async(&mut connection).await?;
        marker_bytes += usage;
    }
    let history_per_caller = history_bytes as f64 / f64::from(sample);
    let per_marker = marker_bytes as f64 / f64::from(sample);
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut connection).await?;
    let version = info.lines().find_map(|line| line.strip_prefix("redis_version:")).unwrap_or("?").trim().to_owned();
    println!("redis {version}, {callers} callers x {contacts_per_caller} contacts, MEMORY USAGE over {sample} callers");
    println!(
        "history key: {history_per_caller:.0} bytes per caller (value {} bytes)",
        saring::store::redis::ENCODED_BYTES
    );
    println!("per-contact marker: {per_marker:.0} bytes, kept {} days", 7);
    println!(
        "projection for 100 million callers: {:.1} GiB of histories (+ markers: {:.1} GiB per million contacts a week)",
        history_per_caller * 1e8 / f64::from(1u32 << 30),
        per_marker * 1e6 / f64::from(1u32 << 30)
    );
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut connection).await?;
    for chunk in keys.chunks(1000) {
        let _: () = redis::cmd("DEL").arg(chunk).query_async(&mut connection).await?;
    }
    Ok(())
}
