//! TLS on the gRPC listener: rustls (ring) over the TCP listener, with the certificate, key and client CAs
//! reloaded from their files while serving, and client certificates named for [`crate::auth`].
//!
//! tonic's `ServerTlsConfig` is fixed at start-up, so saring accepts TLS itself: the accept loop hands every
//! connection to its own handshake task with the [`ServerConfig`] current at that moment (an `ArcSwap` the
//! watcher replaces), and passes finished handshakes to tonic as [`TlsConnection`]s. A reload never touches open
//! connections; new ones get the new certificate. Files that fail to load are refused and the old ones serve on.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;

use crate::auth::TlsPeer;
use crate::config::{ClientAuth, TlsSettings};

/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the TLS files cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// The files were read but do not make a TLS configuration.
    #[error("{0}")]
    Refused(String),
}

/// The three files' contents.
struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl Files {
    fn read(settings: &TlsSettings) -> Result<Self, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Unreadable { path: path.display().to_string(), source })
        };
        Ok(Files {
            cert: read(&settings.cert_path)?,
            key: read(&settings.key_path)?,
            client_ca: settings.client_ca_path.as_deref().map(read).transpose()?,
        })
    }

    fn fingerprint(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        for part in [&self.cert[..], &self.key[..], self.client_ca.as_deref().unwrap_or_default()] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part);
        }
        hash.finalize().into()
    }

    fn server_config(&self, settings: &TlsSettings) -> Result<ServerConfig, TlsError> {
        let refused = |what: &str, error: &dyn std::fmt::Display| TlsError::Refused(format!("{what}: {error}"));
        let cert_path = settings.cert_path.display();
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<_, _>>()
            .map_err(|error| refused(&format!("server.tls.cert_path {cert_path}"), &error))?;
        if chain.is_empty() {
            return Err(TlsError::Refused(format!("server.tls.cert_path {cert_path}: no PEM certificate in it")));
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key)
            .map_err(|error| refused(&format!("server.tls.key_path {}", settings.key_path.display()), &error))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|error| refused("TLS protocol versions", &error))?;
        let builder = match (&self.client_ca, settings.client_ca_path.as_deref()) {
            (Some(pem), Some(path)) => {
                let mut roots = RootCertStore::empty();
                for certificate in CertificateDer::pem_slice_iter(pem) {
                    let certificate = certificate
                        .map_err(|error| refused(&format!("server.tls.client_ca_path {}", path.display()), &error))?;
                    roots
                        .add(certificate)
                        .map_err(|error| refused(&format!("server.tls.client_ca_path {}", path.display()), &error))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = match settings.client_auth {
                    ClientAuth::Required => verifier,
                    ClientAuth::Optional => verifier.allow_unauthenticated(),
                };
                let verifier = verifier
                    .build()
                    .map_err(|error| refused(&format!("server.tls.client_ca_path {}", path.display()), &error))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|error| refused("server.tls.cert_path and key_path", &error))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// The TLS configuration in force, replaced when its files change.
pub struct ReloadingTls {
    settings: TlsSettings,
    current: ArcSwap<ServerConfig>,
    /// The fingerprint of the files last read, and why they were refused if they were.
    seen: parking_lot::Mutex<([u8; 32], Option<String>)>,
}

impl ReloadingTls {
    /// Loads the files `settings` names; an error here stops the start-up.
    pub fn load(settings: &TlsSettings) -> Result<Self, TlsError> {
        let files = Files::read(settings)?;
        let config = files.server_config(settings)?;
        Ok(ReloadingTls {
            settings: settings.clone(),
            current: ArcSwap::from_pointee(config),
            seen: parking_lot::Mutex::new((files.fingerprint(), None)),
        })
    }

    /// Re-reads the files; when they changed, new connections get the new configuration. Returns whether it was
    /// replaced. Files that fail to load leave the old configuration serving (and keep failing until they
    /// change).
    pub fn reload(&self) -> Result<bool, TlsError> {
        let files = Files::read(&self.settings)?;
        let fingerprint = files.fingerprint();
        let mut seen = self.seen.lock();
        if seen.0 == fingerprint {
            return match &seen.1 {
                None => Ok(false),
                Some(refusal) => Err(TlsError::Refused(refusal.clone())),
            };
        }
        let built = files.server_config(&self.settings);
        *seen = (fingerprint, built.as_ref().err().map(ToString::to_string));
        self.current.store(Arc::new(built?));
        Ok(true)
    }

    /// Checks the files every `server.tls.reload_interval_s` (never when it is 0), logging what changed.
    pub async fn watch(self: Arc<Self>) {
        if self.settings.reload_interval_s == 0 {
            return;
        }
        let mut ticks = tokio::time::interval(Duration::from_secs(self.settings.reload_interval_s));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_refusal = None;
        loop {
            ticks.tick().await;
            let tls = Arc::clone(&self);
            let refusal = match tokio::task::spawn_blocking(move || tls.reload()).await {
                Ok(Ok(replaced)) => {
                    if replaced {
                        tracing::info!("tls certificate files changed: new connections use them");
                    }
                    None
                }
                Ok(Err(error)) => Some(error.to_string()),
                Err(error) => Some(format!("reload task failed: {error}")),
            };
            if let Some(error) = refusal.as_ref().filter(|refusal| last_refusal.as_ref() != Some(*refusal)) {
                tracing::warn!(%error, "tls files refused; the loaded certificate serves on");
            }
            last_refusal = refusal;
        }
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }
}

/// The names a client certificate carries: subject CNs, then DNS and URI SANs.
pub fn certificate_names(certificate: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(certificate.as_ref()) else { return Vec::new() };
    let mut names: Vec<String> =
        parsed.subject().iter_common_name().filter_map(|name| name.as_str().ok()).map(str::to_owned).collect();
    if let Ok(Some(alternative)) = parsed.subject_alternative_name() {
        for name in &alternative.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(name)
                | x509_parser::extensions::GeneralName::URI(name) => names.push((*name).to_owned()),
                _ => {}
            }
        }
    }
    names
}

/// A TLS connection whose handshake is done, with what it says about the client.
pub struct TlsConnection {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    peer: TlsPeer,
}

impl TlsConnection {
    fn new(stream: tokio_rustls::server::TlsStream<TcpStream>, remote_addr: SocketAddr) -> Self {
        let certificate_names = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| Arc::from(certificate_names(leaf)));
        TlsConnection { stream, peer: TlsPeer { remote_addr: Some(remote_addr), certificate_names } }
    }
}

impl Connected for TlsConnection {
    type ConnectInfo = TlsPeer;

    fn connect_info(&self) -> TlsPeer {
        self.peer.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(self: Pin<&mut Self>, context: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(context, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(self: Pin<&mut Self>, context: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(context, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(context, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(context)
    }
}

/// The connections of a TLS listener, handshakes done, for `serve_with_incoming_shutdown`. Dropping it (tonic
/// does at shutdown) stops the accept loop and closes the listening socket.
pub struct TlsIncoming(mpsc::Receiver<TlsConnection>);

impl futures_core::Stream for TlsIncoming {
    type Item = Result<TlsConnection, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(context).map(|connection| connection.map(Ok))
    }
}

/// Accepts on `listener`, each handshake in its own task (a slow client holds up no one) with the configuration
/// current when it connected.
pub fn incoming(listener: TcpListener, tls: Arc<ReloadingTls>) -> TlsIncoming {
    let (sender, receiver) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = sender.closed() => return,
            };
            let (stream, remote_addr) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Without it, small replies wait on Nagle's algorithm and delayed ACKs (~40 ms per call).
            let _ = stream.set_nodelay(true);
            let acceptor = tls.acceptor();
            let sender = sender.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let _ = sender.send(TlsConnection::new(stream, remote_addr)).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%remote_addr, %error, "tls handshake refused"),
                    Err(_) => tracing::debug!(%remote_addr, "tls handshake timed out"),
                }
            });
        }
    });
    TlsIncoming(receiver)
}
