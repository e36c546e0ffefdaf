//! TLS for the HTTP driver's `https://` origins: rustls with the `ring` provider, trusting the
//! Mozilla roots of `webpki-roots` plus any certificate authorities the administrator added
//! ([`NetPolicy::extra_root_certs`](super::ssrf::NetPolicy::extra_root_certs)). TLS 1.2 and
//! 1.3, ALPN `http/1.1`, the origin's host name checked against the certificate.

use std::net::TcpStream;
use std::sync::Arc;

use async_io::Async;
use futures_rustls::client::TlsStream;
use futures_rustls::pki_types::{CertificateDer, ServerName};
use futures_rustls::rustls::{self, ClientConfig, RootCertStore};
use futures_rustls::TlsConnector;

use super::DriverError;

/// A client configuration trusting the webpki roots and `extra_roots` (DER certificates).
pub fn client_config(extra_roots: &[Vec<u8>]) -> Result<Arc<ClientConfig>, DriverError> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    for der in extra_roots {
        roots.add(CertificateDer::from(der.clone())).map_err(|e| DriverError::BadRootCertificate(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DriverError::BadRootCertificate(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The TLS handshake with `host` over `tcp`; the error says what failed (an unknown issuer,
/// a name mismatch, an expired certificate, ...).
pub async fn connect(config: Arc<ClientConfig>, host: &str, tcp: Async<TcpStream>) -> Result<TlsStream<Async<TcpStream>>, String> {
    let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host} is not a valid TLS server name: {e}"))?;
    TlsConnector::from(config).connect(name, tcp).await.map_err(|e| e.to_string())
}
