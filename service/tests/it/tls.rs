//! TLS on the gRPC listener, over real sockets with certificates made at test time: tokens work over TLS, client
//! certificates authenticate machines with the role `[[auth.clients]]` gives them, untrusted or missing
//! certificates are refused when mTLS is required, and replaced certificate files serve new connections without
//! a restart.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use saring::app::App;
use saring::auth::{ClientEntry, Role};
use saring::cases::{CaseStore, Escalator};
use saring::config::{ClientAuth, Settings, TlsSettings};
use saring::proto;
use saring::server::limits::Limits;
use saring::server::tls::ReloadingTls;
use saring::server::{build_screener, load_models, memory_store, RunningServer, Transport};
use saring_models::ladder::LadderPolicy;
use tonic::transport::Channel;
use tonic::Code;

use crate::common::pki::{scratch, tls_channel, Ca, Pem};
use crate::common::{authenticator, escalations, sample_contact, screening, sqlite_url, Bearer};

/// The machines this file's certificates name.
fn clients() -> Vec<ClientEntry> {
    vec![
        ClientEntry { name: "routing-engine-1".into(), role: Role::Routing },
        ClientEntry { name: "dispatch-1".into(), role: Role::Dispatch },
    ]
}

/// Starts the service over TLS with `server`'s certificate (written to `directory`), trusting client
/// certificates of `client_ca` when given.
async fn serve_tls(directory: &Path, server: &Pem, client_ca: Option<(&Ca, ClientAuth)>) -> RunningServer {
    serve_reloading(directory, server, client_ca).await.0
}

/// [`serve_tls`], with the reloading configuration the server uses.
async fn serve_reloading(
    directory: &Path,
    server: &Pem,
    client_ca: Option<(&Ca, ClientAuth)>,
) -> (RunningServer, Arc<ReloadingTls>) {
    let (cert_path, key_path) = server.write_to(directory);
    let client_ca_path = client_ca.map(|(ca, _)| {
        let path = directory.join("clients-ca.pem");
        std::fs::write(&path, &ca.cert_pem).unwrap();
        path
    });
    let tls = TlsSettings {
        cert_path,
        key_path,
        client_ca_path,
        client_auth: client_ca.map_or(ClientAuth::Required, |(_, auth)| auth),
        reload_interval_s: 1,
    };
    let settings = Settings::default();
    let models = Arc::new(load_models(&settings).unwrap());
    let screener = build_screener(&settings, models, memory_store(&settings));
    let escalator =
        Escalator::new(CaseStore::connect(&sqlite_url("tls")).await.unwrap(), LadderPolicy::default_policy());
    let auth = authenticator().with_clients(&clients()).unwrap();
    let app = Arc::new(App { screener, escalator, auth });
    let tls = Arc::new(ReloadingTls::load(&tls).expect("the test certificates load"));
    let transport =
        Transport { tls: Some(Arc::clone(&tls)), limits: Arc::new(Limits::unlimited()), ..Transport::plaintext() };
    (RunningServer::start_with("127.0.0.1:0".parse().unwrap(), app, transport).await.unwrap(), tls)
}

/// What ScoreContact answers on `channel` with `bearer`: `Ok` or the code.
async fn score(channel: &Channel, bearer: Bearer) -> Code {
    let reply = screening(channel, bearer).score_contact(sample_contact("tls-1", Some("081234567890"))).await;
    reply.map_or_else(|status| status.code(), |_| Code::Ok)
}

/// Whether a connection trusting `ca` and presenting `identity` is refused at the TLS layer: it cannot connect,
/// or its first call fails before any handler answers (TLS 1.3 clients learn of a refused certificate late).
async fn refused(port: u16, ca: &Ca, identity: Option<&Pem>) -> bool {
    let Ok(channel) = tls_channel(port, ca, identity).await else { return true };
    let code = score(&channel, Bearer::of(Role::Operator)).await;
    !matches!(code, Code::Ok | Code::Unauthenticated | Code::PermissionDenied | Code::InvalidArgument)
}

#[tokio::test]
async fn a_tls_client_scores_with_a_token_and_plaintext_is_not_served() {
    let directory = scratch("tls-token");
    let ca = Ca::new("saring test CA");
    let server = serve_tls(&directory, &ca.server(), None).await;
    let port = server.local_addr.port();

    let channel = tls_channel(port, &ca, None).await.expect("connects over TLS");
    assert_eq!(score(&channel, Bearer::of(Role::Routing)).await, Code::Ok);
    assert_eq!(score(&channel, Bearer::none()).await, Code::Unauthenticated, "TLS alone authenticates no one");
    assert_eq!(score(&channel, Bearer::of(Role::Legal)).await, Code::PermissionDenied);

    let plaintext = Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await;
    if let Ok(plaintext) = plaintext {
        assert_ne!(score(&plaintext, Bearer::of(Role::Routing)).await, Code::Ok, "plaintext must not be served");
    }
    server.stop().await.unwrap();
    std::fs::remove_dir_all(directory).ok();
}

#[tokio::test]
async fn a_client_certificate_authenticates_a_machine_with_its_role() {
    let directory = scratch("tls-mtls");
    let (ca, clients_ca) = (Ca::new("saring server CA"), Ca::new("saring clients CA"));
    let server = serve_tls(&directory, &ca.server(), Some((&clients_ca, ClientAuth::Required))).await;
    let port = server.local_addr.port();

    let routing = tls_channel(port, &ca, Some(&clients_ca.client("routing-engine-1"))).await.unwrap();
    assert_eq!(score(&routing, Bearer::none()).await, Code::Ok, "the certificate is the credential");
    let legal = escalations(&routing, Bearer::none()).list(proto::ListCasesRequest::default()).await.unwrap_err();
    assert_eq!(legal.code(), Code::PermissionDenied, "{legal:?}");
    assert!(legal.message().contains("role routing"), "{legal:?}");
    // A person's token still decides when one is sent, certificate or not.
    let with_token = escalations(&routing, Bearer::of(Role::Legal)).list(proto::ListCasesRequest::default()).await;
    assert!(with_token.is_ok(), "{with_token:?}");

    // Two confirmed pranks reported by the routing machine open an (automatically approved) warning; the dispatch
    // machine delivers it, and the case names the machine as the one who did.
    let mut routing_engine = screening(&routing, Bearer::none());
    crate::ladder::prank(&mut routing_engine, "mtls-1", "0812-3400-0099", 3.0).await;
    let warning = crate::ladder::prank(&mut routing_engine, "mtls-2", "0812-3400-0099", 2.0).await.open_case.unwrap();
    let dispatch = tls_channel(port, &ca, Some(&clients_ca.client("dispatch-1"))).await.unwrap();
    assert_eq!(score(&dispatch, Bearer::none()).await, Code::PermissionDenied);
    let delivered = crate::ladder::deliver(&mut escalations(&dispatch, Bearer::none()), &warning).await;
    assert_eq!(delivered.actioned_by, "dispatch-1");

    // A certificate the CA signed for a name no [[auth.clients]] entry has: no role without a token.
    let stranger = tls_channel(port, &ca, Some(&clients_ca.client("stranger"))).await.unwrap();
    assert_eq!(score(&stranger, Bearer::none()).await, Code::Unauthenticated);
    assert_eq!(score(&stranger, Bearer::of(Role::Operator)).await, Code::Ok);
    server.stop().await.unwrap();
    std::fs::remove_dir_all(directory).ok();
}

#[tokio::test]
async fn required_mtls_refuses_a_missing_or_untrusted_client_certificate() {
    let directory = scratch("tls-refused");
    let (ca, clients_ca, rogue_ca) = (Ca::new("server CA"), Ca::new("clients CA"), Ca::new("rogue CA"));
    let server = serve_tls(&directory, &ca.server(), Some((&clients_ca, ClientAuth::Required))).await;
    let port = server.local_addr.port();

    assert!(refused(port, &ca, None).await, "no client certificate");
    assert!(refused(port, &ca, Some(&rogue_ca.client("routing-engine-1"))).await, "a certificate of another CA");
    assert!(!refused(port, &ca, Some(&clients_ca.client("routing-engine-1"))).await, "the control: a trusted one");
    server.stop().await.unwrap();

    // Optional: no certificate connects (and authenticates with a token); a rogue one is still refused.
    let server = serve_tls(&directory, &ca.server(), Some((&clients_ca, ClientAuth::Optional))).await;
    let port = server.local_addr.port();
    let anonymous = tls_channel(port, &ca, None).await.unwrap();
    assert_eq!(score(&anonymous, Bearer::of(Role::Operator)).await, Code::Ok);
    assert_eq!(score(&anonymous, Bearer::none()).await, Code::Unauthenticated);
    assert!(refused(port, &ca, Some(&rogue_ca.client("routing-engine-1"))).await);
    server.stop().await.unwrap();
    std::fs::remove_dir_all(directory).ok();
}

#[tokio::test]
async fn replaced_certificate_files_serve_new_connections_without_a_restart() {
    let directory = scratch("tls-reload");
    let (first_ca, second_ca) = (Ca::new("first CA"), Ca::new("second CA"));
    let (server, tls) = serve_reloading(&directory, &first_ca.server(), None).await;
    let port = server.local_addr.port();

    let established = tls_channel(port, &first_ca, None).await.unwrap();
    assert_eq!(score(&established, Bearer::of(Role::Routing)).await, Code::Ok);
    assert!(refused(port, &second_ca, None).await, "the second CA signed nothing served yet");

    second_ca.server().write_to(&directory);
    let mut picked_up = false;
    for _ in 0..150 {
        if !refused(port, &second_ca, None).await {
            picked_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(picked_up, "the new certificate was not served within 30 s");
    assert!(refused(port, &first_ca, None).await, "new connections no longer get the first certificate");
    assert_eq!(score(&established, Bearer::of(Role::Routing)).await, Code::Ok, "open connections carry on");

    // A broken replacement, or a key that is not the certificate's, is refused; the loaded certificate serves on.
    std::fs::write(directory.join("cert.pem"), "not a certificate").unwrap();
    assert!(tls.reload().is_err());
    std::fs::write(directory.join("cert.pem"), first_ca.server().cert).unwrap();
    assert!(tls.reload().is_err(), "a certificate without its key");
    assert!(!refused(port, &second_ca, None).await);
    server.stop().await.unwrap();
    std::fs::remove_dir_all(directory).ok();
}

#[tokio::test]
async fn the_binary_serves_mtls_as_its_config_says() {
    let directory = scratch("tls-binary");
    let (ca, clients_ca) = (Ca::new("server CA"), Ca::new("clients CA"));
    let (cert, key) = ca.server().write_to(&directory);
    let clients_ca_path = directory.join("clients-ca.pem");
    std::fs::write(&clients_ca_path, &clients_ca.cert_pem).unwrap();
    let config = format!(
        "[server.tls]\ncert_path = {cert:?}\nkey_path = {key:?}\nclient_ca_path = {clients_ca_path:?}\n\
         [[auth.clients]]\nname = \"routing-engine-1\"\nrole = \"routing\"\n"
    );
    let saring = crate::common::process::SaringProcess::spawn_configured(&config, &[], &[]);
    let port: u16 = saring.address.rsplit(':').next().unwrap().parse().unwrap();

    let routing = tls_channel(port, &ca, Some(&clients_ca.client("routing-engine-1"))).await.unwrap();
    assert_eq!(score(&routing, Bearer::none()).await, Code::Ok);
    let legal = escalations(&routing, Bearer::none()).list(proto::ListCasesRequest::default()).await.unwrap_err();
    assert_eq!(legal.code(), Code::PermissionDenied);
    assert!(refused(port, &ca, None).await, "client certificates are required by default");
    let (clean, log) = tokio::task::spawn_blocking(move || saring.terminate()).await.unwrap();
    assert!(clean, "{log:?}");
    assert!(log.iter().any(|line| line.contains("\"tls\":true")), "{log:?}");
    std::fs::remove_dir_all(directory).ok();
}
