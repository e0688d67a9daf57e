//! Certificates made at test time (rcgen): a CA, server certificates for localhost, client certificates by name.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A certificate and its key, in PEM.
#[derive(Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

impl Pem {
    /// As a tonic client identity.
    pub fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert, &self.key)
    }

    /// Writes `cert.pem` and `key.pem` in `directory` (replacing the previous ones in one rename each).
    pub fn write_to(&self, directory: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = (directory.join("cert.pem"), directory.join("key.pem"));
        for (path, text) in [(&key, &self.key), (&cert, &self.cert)] {
            let temporary = path.with_extension("tmp");
            std::fs::write(&temporary, text).unwrap();
            std::fs::rename(&temporary, path).unwrap();
        }
        (cert, key)
    }
}

/// A certificate authority.
pub struct Ca {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// A new self-signed CA.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).unwrap();
        Ca { cert_pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// As a trust root for a tonic client.
    pub fn certificate(&self) -> Certificate {
        Certificate::from_pem(&self.cert_pem)
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self) -> Pem {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.distinguished_name.push(DnType::CommonName, "saring test server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A client certificate whose subject CN is `name`.
    pub fn client(&self, name: &str) -> Pem {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    fn issue(&self, params: CertificateParams) -> Pem {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pem { cert: cert.pem(), key: key.serialize_pem() }
    }
}

/// A fresh directory for certificate files.
pub fn scratch(name: &str) -> PathBuf {
    let directory = std::env::temp_dir().join(super::process::unique_prefix(name).replace(':', "-"));
    std::fs::create_dir_all(&directory).unwrap();
    directory
}

/// A new TLS connection to `127.0.0.1:port` trusting `ca`, presenting `identity` if given.
pub async fn tls_channel(port: u16, ca: &Ca, identity: Option<&Pem>) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(ca.certificate()).domain_name("localhost");
    if let Some(identity) = identity {
        tls = tls.identity(identity.identity());
    }
    Channel::from_shared(format!("https://127.0.0.1:{port}")).unwrap().tls_config(tls)?.connect().await
}
