//! Tests of the connection layer against tiny loopback servers: TLS policy
//! (trust, names, expiry, pins) and the bounded line reader.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use super::*;

struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        TestCa { issuer }
    }

    /// A leaf for `names`, optionally already expired.
    fn leaf(
        &self,
        names: &[&str],
        expired: bool,
    ) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        for name in names {
            params.subject_alt_names.push(match name.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*name).try_into().unwrap()),
            });
        }
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), key)
    }

    fn write_pem(&self, dir: &std::path::Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, self.issuer.pem()).unwrap();
        path
    }
}

/// Serves one TLS connection that sends `greeting`; returns the port.
async fn tls_server(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    greeting: &'static [u8],
) -> u16 {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        if let Ok(mut tls) = acceptor.accept(tcp).await {
            let _ = tls.write_all(greeting).await;
            let _ = tls.flush().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    port
}

/// Serves one plain connection that sends `script` then waits.
async fn plain_server(script: Vec<u8>, hold: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let _ = tcp.write_all(&script).await;
        tokio::time::sleep(hold).await;
    });
    port
}

fn endpoint(host: &str, port: u16, security: Security) -> Endpoint {
    Endpoint {
        host: host.into(),
        port,
        security,
        timeout: Duration::from_secs(5),
        ca_file: None,
        pin_sha256: None,
    }
}

fn sha256(der: &CertificateDer<'_>) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, der.as_ref())
        .as_ref()
        .try_into()
        .unwrap()
}

#[tokio::test]
async fn tls_with_ca_file_reads_the_greeting() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"], false);
    let port = tls_server(cert, key, b"+OK hello\r\n").await;
    let mut ep = endpoint("localhost", port, Security::Tls);
    ep.ca_file = Some(ca.write_pem(dir.path()));
    let mut conn = Connection::connect(&ep).await.unwrap();
    assert!(conn.is_tls());
    assert_eq!(conn.read_line().await.unwrap(), b"+OK hello");
    let info = conn.tls_info().unwrap();
    assert!(info.version.starts_with("TLS"), "{info:?}");
}

#[tokio::test]
async fn unknown_ca_is_a_certificate_error_naming_the_host() {
    let ca = TestCa::new();
    let (cert, key) = ca.leaf(&["localhost"], false);
    let port = tls_server(cert, key, b"+OK\r\n").await;
    let err = Connection::connect(&endpoint("localhost", port, Security::Tls))
        .await
        .err()
        .expect("an untrusted CA must be refused");
    let text = err.to_string();
    assert!(matches!(err, NetError::Certificate { .. }), "{text}");
    assert!(
        text.contains("localhost") && text.contains("certificate"),
        "{text}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn wrong_host_name_is_refused() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf(&["mail.example.org"], false);
    let port = tls_server(cert, key, b"+OK\r\n").await;
    let mut ep = endpoint("localhost", port, Security::Tls);
    ep.ca_file = Some(ca.write_pem(dir.path()));
    let err = Connection::connect(&ep)
        .await
        .err()
        .expect("wrong name must be refused");
    assert!(
        err.to_string()
            .contains("not valid for the name \"localhost\""),
        "{err}"
    );
}

#[tokio::test]
async fn expired_certificate_is_refused() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf(&["localhost"], true);
    let port = tls_server(cert, key, b"+OK\r\n").await;
    let mut ep = endpoint("localhost", port, Security::Tls);
    ep.ca_file = Some(ca.write_pem(dir.path()));
    let err = Connection::connect(&ep)
        .await
        .err()
        .expect("expired must be refused");
    assert!(err.to_string().contains("expired"), "{err}");
}

#[tokio::test]
async fn pin_accepts_its_certificate_and_refuses_another() {
    let ca = TestCa::new();
    let (cert, key) = ca.leaf(&["localhost"], false);
    let pin = sha256(&cert);
    let port = tls_server(cert, key, b"* OK pinned\r\n").await;
    let mut ep = endpoint("localhost", port, Security::Tls);
    ep.pin_sha256 = Some(pin);
    let mut conn = Connection::connect(&ep)
        .await
        .expect("pinned cert is trusted without the CA");
    assert_eq!(conn.read_line().await.unwrap(), b"* OK pinned");

    let (other, key) = ca.leaf(&["localhost"], false);
    let port = tls_server(other, key, b"* OK\r\n").await;
    ep.port = port;
    let err = Connection::connect(&ep)
        .await
        .err()
        .expect("another cert must be refused");
    assert!(
        err.to_string().contains("does not match tls_pin_sha256"),
        "{err}"
    );
}

#[tokio::test]
async fn read_line_accepts_bare_lf_and_keeps_binary() {
    let port = plain_server(
        b"one\r\ntwo\nthr\0ee\xff\r\n".to_vec(),
        Duration::from_secs(1),
    )
    .await;
    let mut conn = Connection::connect(&endpoint("127.0.0.1", port, Security::Plain))
        .await
        .unwrap();
    assert_eq!(conn.read_line().await.unwrap(), b"one");
    assert_eq!(conn.read_line().await.unwrap(), b"two");
    assert_eq!(conn.read_line().await.unwrap(), b"thr\0ee\xff");
}

#[tokio::test]
async fn endless_line_is_an_error_not_an_allocation() {
    let port = plain_server(vec![b'x'; 300_000], Duration::from_secs(2)).await;
    let mut conn = Connection::connect(&endpoint("127.0.0.1", port, Security::Plain))
        .await
        .unwrap();
    conn.set_max_line(1000);
    let err = conn.read_line().await.unwrap_err();
    assert!(
        matches!(err, NetError::LineTooLong { limit: 1000, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn close_and_stall_are_typed() {
    let port = plain_server(b"partial".to_vec(), Duration::ZERO).await;
    let mut conn = Connection::connect(&endpoint("127.0.0.1", port, Security::Plain))
        .await
        .unwrap();
    let err = conn.read_line().await.unwrap_err();
    assert!(
        matches!(err, NetError::Closed { .. }) && err.is_transient(),
        "{err}"
    );

    let port = plain_server(Vec::new(), Duration::from_secs(5)).await;
    let mut ep = endpoint("127.0.0.1", port, Security::Plain);
    ep.timeout = Duration::from_millis(200);
    let mut conn = Connection::connect(&ep).await.unwrap();
    let err = conn.read_line().await.unwrap_err();
    assert!(
        matches!(err, NetError::Timeout { during: "read", .. }),
        "{err}"
    );
}

#[tokio::test]
async fn start_tls_refuses_data_sent_ahead() {
    let port = plain_server(
        b"+OK begin TLS\r\ninjected\r\n".to_vec(),
        Duration::from_secs(1),
    )
    .await;
    let mut conn = Connection::connect(&endpoint("127.0.0.1", port, Security::Starttls))
        .await
        .unwrap();
    conn.read_line().await.unwrap();
    // Make sure the injected line has arrived in the buffer.
    while conn.buffered().is_empty() {
        conn.fill().await.unwrap();
    }
    let err = conn.start_tls().await.unwrap_err();
    assert!(matches!(err, NetError::DataBeforeTls { .. }), "{err}");
}

#[tokio::test]
async fn refused_connection_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let err = Connection::connect(&endpoint("127.0.0.1", port, Security::Plain))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, NetError::Connect { .. }) && err.is_transient(),
        "{err}"
    );
}

#[tokio::test]
async fn errors_say_what_to_check() {
    // (An unresolvable host is not tried here: its lookup could leave
    // loopback for the machine's resolver.)
    // TLS against a server that speaks plain text.
    let port = plain_server(b"* OK plain IMAP here\r\n".to_vec(), Duration::from_secs(1)).await;
    let err = Connection::connect(&endpoint("127.0.0.1", port, Security::Tls))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("starttls"), "{err}");
    // Nothing listening.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let err = Connection::connect(&endpoint("127.0.0.1", port, Security::Plain))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("is `port` right"), "{err}");
}
