//! A simulated stretch of traffic through the real server: persistent pranksters rise above genuine callers.

use std::collections::HashMap;

use saring::proto;
use saring_models::phone::normalise_indonesian_number;
use saring_models::Disposition;
use saring_training::events::Event;
use saring_training::simulate::{simulate, SimulationConfig};

use crate::common::{contact_request, outcome_request, start};

fn band_rank(band: i32) -> u8 {
    match proto::Band::try_from(band).unwrap() {
        proto::Band::High => 2,
        proto::Band::Elevated => 1,
        _ => 0,
    }
}

#[tokio::test]
async fn persistent_pranksters_end_up_in_a_higher_band_than_genuine_callers() {
    // Two days of traffic: the second day is the "simulated day", scored with the first day's history.
    let config = SimulationConfig { seed: 4242, days: 2, callers: 3000, ..SimulationConfig::default() };
    let events = simulate(&config);
    let harness = start().await;
    let mut routing = harness.screening(saring::auth::Role::Routing);
    let client = &mut routing;

    let mut contacts = HashMap::new();
    // Per normalised number: (prank or abusive outcomes, genuine outcomes, bands given).
    let mut callers: HashMap<String, (u32, u32, Vec<u8>)> = HashMap::new();
    let mut number_of = HashMap::new();
    for event in &events {
        match event {
            Event::Contact(contact) => {
                let reply = client.score_contact(contact_request(contact)).await.unwrap().into_inner();
                assert!(!reply.degraded, "{:?}", reply.degraded_reasons);
                if let Some(number) = contact.caller.as_deref().and_then(|raw| normalise_indonesian_number(raw).ok()) {
                    callers.entry(number.clone()).or_default().2.push(band_rank(reply.band));
                    number_of.insert(contact.contact_id.clone(), number);
                }
                contacts.insert(contact.contact_id.clone(), contact.clone());
            }
            Event::Outcome(outcome) => {
                // Every other outcome relies on the server remembering the contact; the rest carry it.
                let embedded = contacts.get(&outcome.contact_id).filter(|_| outcome.contact_id.len() % 2 == 0);
                let ack = client.record_outcome(outcome_request(outcome, embedded)).await.unwrap().into_inner();
                assert!(!ack.duplicate);
                if let Some(number) = number_of.get(&outcome.contact_id) {
                    let entry = callers.get_mut(number).unwrap();
                    entry.0 += u32::from(outcome.disposition.is_misuse());
                    entry.1 += u32::from(matches!(
                        outcome.disposition,
                        Disposition::GenuineEmergency | Disposition::NonEmergency
                    ));
                }
            }
        }
    }
    // Persistent pranksters: five or more confirmed pranks or abuse; their last contact is what an operator sees.
    let prankster_last: Vec<u8> = callers
        .values()
        .filter(|(misuse, genuine, _)| *misuse >= 5 && *genuine == 0)
        .map(|(_, _, bands)| *bands.last().unwrap())
        .collect();
    let genuine_last: Vec<u8> = callers
        .values()
        .filter(|(misuse, genuine, _)| *misuse == 0 && *genuine >= 1)
        .map(|(_, _, bands)| *bands.last().unwrap())
        .collect();
    assert!(prankster_last.len() >= 5, "the simulation has persistent pranksters: {}", prankster_last.len());
    assert!(genuine_last.len() >= 50, "the simulation has genuine callers: {}", genuine_last.len());
    let mean = |bands: &[u8]| bands.iter().map(|band| f64::from(*band)).sum::<f64>() / bands.len() as f64;
    let raised = |bands: &[u8]| bands.iter().filter(|band| **band >= 1).count() as f64 / bands.len() as f64;
    eprintln!(
        "pranksters: {} mean band {:.2}, raised {:.2}; genuine: {} mean band {:.2}, raised {:.2}",
        prankster_last.len(),
        mean(&prankster_last),
        raised(&prankster_last),
        genuine_last.len(),
        mean(&genuine_last),
        raised(&genuine_last)
    );
    assert!(mean(&prankster_last) > mean(&genuine_last) + 0.5);
    assert!(raised(&prankster_last) >= 0.8, "most persistent pranksters are ELEVATED or HIGH");
    assert!(raised(&genuine_last) <= 0.2, "most genuine callers stay LOW");
    harness.server.stop().await.unwrap();
}
