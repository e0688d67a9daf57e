//! Training/serving parity: `saring-train evaluate`'s per-contact likelihoods equal the service's answers.

use saring::proto;
use saring_models::{Model, ModelArtifact};
use saring_training::evaluate::evaluate;
use saring_training::events::Event;
use saring_training::replay::replay;
use saring_training::simulate::{simulate, SimulationConfig};

use crate::common::{contact_request, outcome_request, start};

#[tokio::test]
async fn evaluate_and_the_service_give_the_same_likelihoods() {
    let config = SimulationConfig { seed: 99, days: 3, callers: 1500, ..SimulationConfig::default() };
    let events = simulate(&config);
    let model = Model::new(ModelArtifact::from_json(saring::server::SHIPPED_MODEL).unwrap());
    let (_, predictions) = evaluate(&model, &replay(&events).rows);

    let harness = start().await;
    let mut routing = harness.screening(saring::auth::Role::Routing);
    let mut served = Vec::new();
    for event in &events {
        match event {
            Event::Contact(contact) => {
                let reply = routing.score_contact(contact_request(contact)).await.unwrap().into_inner();
                served.push(reply);
            }
            Event::Outcome(outcome) => {
                routing.record_outcome(outcome_request(outcome, None)).await.unwrap();
            }
        }
    }
    assert_eq!(served.len(), predictions.len());
    assert!(served.len() > 500);
    for (reply, prediction) in served.iter().zip(&predictions) {
        assert_eq!(reply.contact_id, prediction.contact_id);
        assert_eq!(
            reply.prank_likelihood.to_bits(),
            prediction.prank_likelihood.to_bits(),
            "{}: service {} vs evaluate {}",
            reply.contact_id,
            reply.prank_likelihood,
            prediction.prank_likelihood
        );
        let band = match prediction.band {
            "high" => proto::Band::High,
            "elevated" => proto::Band::Elevated,
            _ => proto::Band::Low,
        };
        assert_eq!(reply.band, band as i32);
    }
    harness.server.stop().await.unwrap();
}
