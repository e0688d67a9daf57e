//! Heap allocations per ScoreContact, counted by a counting global allocator (`stats_alloc`), in steady state
//! (after every history exists and a warm-up pass):
//! - features + inference (`features::extract` + `Model::score`): the goal is zero;
//! - the reasons an operator reads (`operator_reasons` + `strongest` + five `sentence` strings);
//! - the transport-free core `Screener::score` with the in-memory store, whole (history read, features, model,
//!   reasons, drift, recent contacts);
//! - and one gRPC ScoreContact round-trip in process (client and server in one process, so both sides'
//!   allocations are counted) to the ceiling and to saring's whole server (auth, limits, deadline, metrics layers,
//!   handler, core): the difference is what saring's request path allocates beyond tonic's;
//! - and the in-memory store's heap bytes per caller history (over 1,000,000 callers unless `--callers N`), with
//!   the projection for 20 million callers (issue 20: ≤ 200 B a caller, ≤ 4 GiB).
//!
//! `cargo run --release -p saring-bench --bin score-allocs [-- [--store-only] [--callers N]]`

use std::alloc::System;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use saring::screening::{Contact, Location, OutcomeReport, Screener};
use saring::store::MemoryStore;
use saring_bench::mix::Mix;
use saring_models::features::extract;
use saring_models::phone::normalise_indonesian_number;
use saring_models::reasons::{operator_reasons, sentence, strongest};
use saring_models::region::utc_offset_seconds;
use saring_models::{Channel, Disposition, Model, ModelArtifact};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Passes over the sample per measurement.
const PASSES: usize = 3;

fn contact_of(request: &saring::proto::ContactRequest) -> Option<Contact> {
    let at = request.received_at?;
    Some(Contact {
        contact_id: request.contact_id.clone(),
        caller: match request.caller.as_deref() {
            Some(raw) => Some(normalise_indonesian_number(raw).ok()?),
            None => None,
        },
        channel: match request.channel {
            1 => Channel::Voice,
            2 => Channel::Whatsapp,
            3 => Channel::Sms,
            _ => Channel::App,
        },
        received_at_ms: at.seconds * 1000 + i64::from(at.nanos) / 1_000_000,
        utc_offset_s: utc_offset_seconds(&request.region)?,
        region: request.region.clone(),
        sim_present: request.sim_present,
        device_id: request.device_id.clone(),
        location: request.location.map(|l| Location { lat: l.lat, lon: l.lon, accuracy_m: l.accuracy_m }),
    })
}

fn disposition_of(value: i32) -> Disposition {
    match value {
        1 => Disposition::GenuineEmergency,
        2 => Disposition::NonEmergency,
        3 => Disposition::Prank,
        4 => Disposition::Silent,
        5 => Disposition::Abusive,
        6 => Disposition::Accidental,
        7 => Disposition::Test,
        _ => Disposition::Unknown,
    }
}

/// Records every outcome of the mix once (contact ids suffixed `.pre`), so scoring finds real histories.
async fn preload(screener: &Screener<MemoryStore>, mix: &Mix) -> anyhow::Result<()> {
    for entry in &mix.entries {
        let Some(contact) = contact_of(&entry.contact) else { continue };
        let contact_id = format!("{}.pre", contact.contact_id);
        let report = OutcomeReport {
            contact_id: contact_id.clone(),
            contact: Some(Contact { contact_id, ..contact }),
            answered: entry.outcome.answered,
            ring_s: entry.outcome.ring_s,
            talk_s: entry.outcome.talk_s,
            disposition: disposition_of(entry.outcome.disposition),
            category: None,
            operator_id: None,
        };
        screener.record_outcome(&report).await?;
    }
    Ok(())
}

/// Allocations and bytes per call of `work` over `calls` calls.
fn per_call(name: &str, calls: usize, work: impl FnOnce()) {
    let region = Region::new(GLOBAL);
    let started = Instant::now();
    work();
    let elapsed = started.elapsed();
    let stats = region.change();
    println!(
        "{name:<52} {:>7.2} allocations/call {:>9.1} bytes/call {:>8.2} µs/call",
        stats.allocations as f64 / calls as f64,
        stats.bytes_allocated as f64 / calls as f64,
        elapsed.as_secs_f64() * 1e6 / calls as f64
    );
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let callers = match args.iter().position(|arg| arg == "--callers") {
        Some(index) => args.get(index + 1).ok_or_else(|| anyhow::anyhow!("--callers takes a number"))?.parse()?,
        None => 1_000_000,
    };
    if args.iter().any(|arg| arg == "--store-only") {
        return memory_store_bytes(&runtime, callers);
    }
    let mix = Mix::simulated(7, 14, 5000);
    let model = Model::new(ModelArtifact::from_json(saring::server::SHIPPED_MODEL)?);
    let hasher = saring::privacy::KeyHasher::new(b"score-allocs-secret-0123456789");
    let screener = Screener::new(
        MemoryStore::new(Duration::from_secs(3600)),
        model.clone(),
        hasher,
        200_000,
        Duration::from_secs(1),
    );
    let contacts: Vec<Contact> = mix.entries.iter().filter_map(|entry| contact_of(&entry.contact)).collect();
    runtime.block_on(preload(&screener, &mix))?;
    // The histories each contact reads, loaded once (the store is not under test in the pure parts).
    let loaded: Vec<_> = runtime.block_on(async {
        let mut loaded = Vec::new();
        for contact in &contacts {
            let caller = contact.caller.as_deref().map(|number| screener.number_key(number));
            let device = contact.device_id.as_deref().map(|device| {
                let hasher = saring::privacy::KeyHasher::new(b"score-allocs-secret-0123456789");
                hasher.device(device)
            });
            use saring::store::HistoryStore;
            loaded.push(screener.store().load(caller.as_ref(), device.as_ref()).await.expect("memory store"));
        }
        loaded
    });
    let contexts: Vec<_> = contacts.iter().map(Contact::context).collect();
    let calls = contacts.len() * PASSES;
    println!("{} contacts of the simulated log (seed 7, 14 days, 5,000 callers), {PASSES} passes each", contacts.len());

    let features_and_inference = || {
        for _ in 0..PASSES {
            for (context, histories) in contexts.iter().zip(&loaded) {
                let features = extract(context, histories.caller.as_ref(), histories.device.as_ref());
                black_box(model.score(black_box(&features)));
            }
        }
    };
    features_and_inference();
    per_call("features::extract + Model::score", calls, features_and_inference);

    let reasons = || {
        for _ in 0..PASSES {
            for (context, histories) in contexts.iter().zip(&loaded) {
                let features = extract(context, histories.caller.as_ref(), histories.device.as_ref());
                let score = model.score(&features);
                let sums = operator_reasons(&score.contributions, &features);
                let strongest = strongest::<5>(&sums);
                let sentences: Vec<String> =
                    strongest.into_iter().flatten().map(|index| sentence(index, &features)).collect();
                black_box(sentences);
            }
        }
    };
    per_call("  + reasons (5 sentences into a Vec)", calls, reasons);

    // Screener::score consumes its contact: the clones are made before counting.
    let mut batches: Vec<Vec<Contact>> = (0..PASSES).map(|_| contacts.clone()).collect();
    runtime.block_on(async {
        for contact in batches.pop().expect("a batch") {
            black_box(screener.score(contact).await);
        }
    });
    let batches_len = batches.len() * contacts.len();
    per_call("Screener::score (memory store, whole core)", batches_len, || {
        runtime.block_on(async {
            for batch in batches {
                for contact in batch {
                    black_box(screener.score(contact).await);
                }
            }
        })
    });
    drop(screener);
    grpc_round_trip(&runtime, &mix)?;
    saring_round_trip(&runtime, &mix, model)?;
    memory_store_bytes(&runtime, callers)?;
    Ok(())
}

/// Heap bytes the in-memory store keeps per caller history and per recorded contact id (its marker), as net bytes
/// allocated while recording `callers` new callers once each (markers expiring at once, so the histories alone stay),
/// then, in a second store keeping markers an hour, `callers` contacts of one caller (one history, the markers).
fn memory_store_bytes(runtime: &tokio::runtime::Runtime, callers: usize) -> anyhow::Result<()> {
    use saring::store::HistoryStore;
    let hasher = saring::privacy::KeyHasher::new(b"score-allocs-secret-0123456789");
    let context = saring_models::features::ContactContext {
        received_at_ms: 1_780_000_000_000,
        channel: Channel::Voice,
        utc_offset_s: 7 * 3600,
        withheld: false,
        sim_present: true,
        has_device: false,
        location_accuracy_m: None,
    };
    let keys: Vec<_> = (0..callers).map(|index| hasher.number(&format!("+62813{index:08}"))).collect();
    let ids: Vec<String> = (0..callers).map(|index| format!("c-{index:012}")).collect();
    let event = |id: &str| {
        context.history_event(saring_models::history::contact_fingerprint(id), true, 30.0, Disposition::NonEmergency)
    };
    let net = |stats: stats_alloc::Stats| {
        stats.bytes_allocated as f64 - stats.bytes_deallocated as f64 + stats.bytes_reallocated as f64
    };
    let region = Region::new(GLOBAL);
    let store = MemoryStore::new(Duration::ZERO);
    runtime.block_on(async {
        for (key, id) in keys.iter().zip(&ids) {
            store.record(id, Some(key), None, &event(id)).await.expect("memory store");
        }
    });
    let per_history = net(region.change()) / callers as f64;
    drop(store);
    let region = Region::new(GLOBAL);
    let store = MemoryStore::new(Duration::from_secs(3600));
    runtime.block_on(async {
        for id in &ids {
            store.record(id, Some(&keys[0]), None, &event(id)).await.expect("memory store");
        }
    });
    let per_marker = net(region.change()) / callers as f64;
    let gib_for_20_million = per_history * 20e6 / (1u64 << 30) as f64;
    println!(
        "in-memory store, {callers} callers: {per_history:.1} heap bytes per caller history (goal ≤ 200), so \
         {gib_for_20_million:.2} GiB for 20 million callers (goal ≤ 4); {per_marker:.0} per contact id held for the \
         marker window"
    );
    Ok(())
}

/// One ScoreContact through saring's whole gRPC server in process (a routing token, the default limits, an
/// in-memory case database, the in-memory store with the mix's outcomes recorded): client and server allocations
/// together, comparable with the ceiling's line.
fn saring_round_trip(runtime: &tokio::runtime::Runtime, mix: &Mix, model: Model) -> anyhow::Result<()> {
    use saring::auth::{Authenticator, Role};
    use saring::server::limits::{Limits, LimitsSettings};
    use saring::server::{RunningServer, Transport};
    runtime.block_on(async {
        let token = "score-allocs-routing-token".to_owned();
        let auth = Authenticator::development_with(&[(Role::Routing, token.clone())])?;
        let screener = Screener::new(
            MemoryStore::new(Duration::from_secs(3600)),
            model,
            saring::privacy::KeyHasher::new(b"score-allocs-secret-0123456789"),
            200_000,
            Duration::from_secs(1),
        );
        let store = saring::cases::CaseStore::connect("sqlite::memory:").await?;
        let escalator = saring::cases::Escalator::new(store, saring_models::ladder::LadderPolicy::default_policy());
        let app = Arc::new(saring::app::App { screener, escalator, auth: auth.clone() });
        preload(&app.screener, mix).await?;
        let transport =
            Transport { limits: Arc::new(Limits::new(auth, &LimitsSettings::default())), ..Transport::plaintext() };
        let server = RunningServer::start_with("127.0.0.1:0".parse()?, app, transport).await?;
        let mut client =
            saring::proto::screening_client::ScreeningClient::connect(format!("http://{}", server.local_addr)).await?;
        let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse()?;
        let requests: Vec<_> = (0..2000).map(|index| mix.entry(index).contact.clone()).collect();
        let call = |contact: saring::proto::ContactRequest| {
            let mut request = tonic::Request::new(contact);
            request.metadata_mut().insert("authorization", bearer.clone());
            request
        };
        for request in requests.iter().take(200) {
            client.score_contact(call(request.clone())).await?;
        }
        let region = Region::new(GLOBAL);
        for request in &requests {
            client.score_contact(call(request.clone())).await?;
        }
        let stats = region.change();
        println!(
            "{:<52} {:>7.2} allocations/call {:>9.1} bytes/call (client + server)",
            "gRPC round-trip to saring (whole server, memory store)",
            stats.allocations as f64 / requests.len() as f64,
            stats.bytes_allocated as f64 / requests.len() as f64
        );
        server.stop().await?;
        anyhow::Ok(())
    })
}

/// One ScoreContact through gRPC in process: client and server allocations together.
fn grpc_round_trip(runtime: &tokio::runtime::Runtime, mix: &Mix) -> anyhow::Result<()> {
    runtime.block_on(async {
        let (addr, server) = saring_bench::ceiling::spawn("127.0.0.1:0".parse()?).await?;
        let mut client = saring::proto::screening_client::ScreeningClient::connect(format!("http://{addr}")).await?;
        let requests: Vec<_> = (0..2000).map(|index| mix.entry(index).contact.clone()).collect();
        for request in requests.iter().take(200) {
            client.score_contact(request.clone()).await?;
        }
        let region = Region::new(GLOBAL);
        for request in &requests {
            client.score_contact(request.clone()).await?;
        }
        let stats = region.change();
        println!(
            "{:<52} {:>7.2} allocations/call {:>9.1} bytes/call (client + server, for scale)",
            "gRPC round-trip to the ceiling (constant reply)",
            stats.allocations as f64 / requests.len() as f64,
            stats.bytes_allocated as f64 / requests.len() as f64
        );
        server.abort();
        let _ = Arc::new(());
        anyhow::Ok(())
    })
}
