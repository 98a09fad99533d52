//! Throw-away certificate authorities and server certificates for TLS tests, made in-process with rcgen.
//!
//! The usual set-up is one [`TestCa`] per Dovecot instance and one leaf from
//! [`TestCa::localhost_cert`]. TLS-policy tests can make an unrelated CA
//! ([`TestCa::new`] again), a leaf for the wrong host ([`TestCa::server_cert`])
//! or an expired leaf ([`TestCa::expired_cert`]) and serve it from their own
//! listener.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The names every test server certificate answers to: clients may dial
/// `localhost`, `127.0.0.1` or `::1`.
pub const LOCALHOST_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A certificate authority that exists only for the life of a test run.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate and its private key, both PEM, as a server needs them.
pub struct ServerCert {
    /// The leaf certificate alone (PEM).
    pub cert_pem: String,
    /// The leaf's PKCS#8 private key (PEM).
    pub key_pem: String,
    /// The leaf certificate (DER), for a rustls server config.
    pub cert_der: CertificateDer<'static>,
    /// The leaf's private key (PKCS#8 DER), for a rustls server config.
    pub key_der: Vec<u8>,
}

impl TestCa {
    /// A fresh self-signed CA; `name` goes into its common name so a failing
    /// handshake's log says which CA was involved.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("mailferry test CA {name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("generate the test CA key");
        let issuer =
            CertifiedIssuer::self_signed(params, key).expect("self-sign the test CA certificate");
        TestCa { issuer }
    }

    /// The CA certificate (PEM), what a client adds to its root store.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate (DER).
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A valid leaf for `localhost`, `127.0.0.1` and `::1`, EKU serverAuth.
    pub fn localhost_cert(&self) -> ServerCert {
        self.server_cert(&LOCALHOST_NAMES)
    }

    /// A valid leaf for exactly `names` (DNS names or IP addresses): pass
    /// another host to get a "wrong host" certificate.
    pub fn server_cert(&self, names: &[&str]) -> ServerCert {
        let params = leaf_params(names);
        self.sign(params)
    }

    /// A leaf for `names` whose validity ended in 2001, for expiry tests.
    pub fn expired_cert(&self, names: &[&str]) -> ServerCert {
        let mut params = leaf_params(names);
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        self.sign(params)
    }

    /// A root store holding only this CA.
    pub fn root_store(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.cert_der())
            .expect("the test CA certificate is a valid trust anchor");
        roots
    }

    /// A rustls client config (ring provider) that trusts only this CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        client_config_with_roots(self.root_store())
    }

    fn sign(&self, params: CertificateParams) -> ServerCert {
        let key = KeyPair::generate().expect("generate a test server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign a test server certificate");
        ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }
}

impl ServerCert {
    /// The private key in the form rustls' server config takes.
    pub fn private_key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// A rustls client config (ring provider, not the process default, which
/// may be unset) trusting exactly `roots`. An empty store makes every
/// handshake fail with a certificate error: the "no CA" case.
pub fn client_config_with_roots(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

fn leaf_params(names: &[&str]) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params =
        CertificateParams::new(names.clone()).expect("test certificate names are valid SANs");
    let common_name = names.first().cloned().unwrap_or_else(|| "no name".into());
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params
}
