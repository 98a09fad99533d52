//! TLS client set-up: trust roots, the optional certificate pin, the handshake.
//!
//! Trust: the system's roots plus the account's `ca_file`. With
//! `tls_pin_sha256` the server's end-entity certificate must have that SHA-256
//! and the chain is not checked (pinning is how one trusts a self-signed
//! server); the handshake signature is verified either way.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::{Endpoint, NetError};

/// What a handshake agreed on, for `mailferry check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    pub version: String,
    pub cipher: String,
}

impl TlsInfo {
    pub(super) fn of(conn: &rustls::ClientConnection) -> TlsInfo {
        let version = conn
            .protocol_version()
            .map_or("unknown".into(), |v| format!("{v:?}").replace('_', "."));
        let cipher = conn
            .negotiated_cipher_suite()
            .map_or("unknown".into(), |c| format!("{:?}", c.suite()));
        TlsInfo { version, cipher }
    }
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The system's trust roots, read once per process.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut store = RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for err in &found.errors {
            tracing::debug!(error = %err, "skipping an unreadable system certificate");
        }
        let (added, ignored) = store.add_parsable_certificates(found.certs);
        tracing::debug!(added, ignored, "system trust roots loaded");
        store
    })
}

fn client_config(endpoint: &Endpoint) -> Result<ClientConfig, NetError> {
    let fail = |reason: String| NetError::Tls {
        host: endpoint.host.clone(),
        reason,
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?;
    let config = match endpoint.pin_sha256 {
        Some(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinVerifier { pin }))
            .with_no_client_auth(),
        None => {
            let mut roots = system_roots().clone();
            if let Some(path) = &endpoint.ca_file {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| fail(format!("ca_file {}: {e}", path.display())))?;
                if certs.is_empty() {
                    return Err(fail(format!(
                        "ca_file {}: no certificate in it",
                        path.display()
                    )));
                }
                roots.add_parsable_certificates(certs);
            }
            if roots.is_empty() {
                return Err(fail(
                    "no trusted CA certificates: install ca-certificates or set ca_file".into(),
                ));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(config)
}

pub(super) async fn handshake(
    endpoint: &Endpoint,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, NetError> {
    let config = client_config(endpoint)?;
    let name = ServerName::try_from(endpoint.host.clone()).map_err(|_| NetError::Tls {
        host: endpoint.host.clone(),
        reason: "not a valid DNS name or IP address for TLS".into(),
    })?;
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| classify(endpoint, e))
}

/// Turns a handshake error into a certificate, TLS or I/O error.
fn classify(endpoint: &Endpoint, err: std::io::Error) -> NetError {
    let host = endpoint.host.clone();
    let Some(tls) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return NetError::Io { host, source: err };
    };
    match tls {
        // Plain text where a TLS record was expected: a plain-text port.
        rustls::Error::InvalidMessage(_) => NetError::Tls {
            host,
            reason: format!(
                "port {} did not answer in TLS; for a plain-text port (110, 143) use security = \"starttls\"",
                endpoint.port
            ),
        },
        rustls::Error::InvalidCertificate(why) => NetError::Certificate {
            host,
            reason: certificate_reason(why, endpoint),
        },
        other => NetError::Tls {
            host,
            reason: other.to_string(),
        },
    }
}

fn certificate_reason(why: &rustls::CertificateError, endpoint: &Endpoint) -> String {
    use rustls::CertificateError as E;
    match why {
        E::UnknownIssuer | E::BadSignature => {
            "issued by a CA that is not trusted (set ca_file, or tls_pin_sha256 for a self-signed server)".into()
        }
        E::NotValidForName | E::NotValidForNameContext { .. } => {
            format!("not valid for the name {:?}", endpoint.host)
        }
        E::Expired | E::ExpiredContext { .. } => "expired".into(),
        E::NotValidYet | E::NotValidYetContext { .. } => "not valid yet".into(),
        E::Revoked => "revoked".into(),
        E::Other(other) => other.to_string(),
        other => format!("{other:?}"),
    }
}

/// Accepts exactly the certificate whose DER has the pinned SHA-256.
#[derive(Debug)]
struct PinVerifier {
    pin: [u8; 32],
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest = ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref());
        if digest.as_ref() == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch(hex)))),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[derive(Debug)]
struct PinMismatch(String);

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "does not match tls_pin_sha256 (the server's is {})",
            self.0
        )
    }
}

impl std::error::Error for PinMismatch {}
