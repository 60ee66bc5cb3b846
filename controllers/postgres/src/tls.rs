//! TLS for the controller's sessions and for the replication links it
//! configures, with libpq's `sslmode` semantics:
//!
//! * `disable` — plain TCP.
//! * `prefer` (default) — TLS when the server offers it, plain when it does
//!   not. The certificate is not checked.
//! * `require` — TLS or no session. Without `tls_ca_file` the session is
//!   encrypted but the server is **not authenticated** (libpq's `require`):
//!   whoever can intercept the connection can present any certificate.
//! * `require` + `tls_ca_file` — the server certificate must chain to a CA of
//!   that PEM bundle and name the member's host (libpq's `verify-full`).
//!
//! The connector is rustls with the *ring* provider, chosen explicitly so
//! that no process-wide default provider is needed and nothing but a C
//! compiler is needed to build it.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use switchyard_topology::Connection;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The store's TLS settings and the connector built from them once, in
/// `build()`.
#[derive(Clone)]
pub(crate) struct Tls {
    pub(crate) mode: SslMode,
    /// CA bundle the server certificate is verified against (`verify-full`).
    pub(crate) ca_file: Option<PathBuf>,
    /// `None` for `disable`.
    connector: Option<MakeRustlsConnect>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The rustls config holds only public material (CA certificates),
        // but it is long and says nothing a reader needs.
        f.debug_struct("Tls")
            .field("mode", &self.mode)
            .field("ca_file", &self.ca_file)
            .field("verify_server", &self.ca_file.is_some())
            .finish()
    }
}

impl Tls {
    /// Validate `connection.tls` / `connection.tls_ca_file` and build the
    /// connector. The error is the message of a `Config` error.
    pub(crate) fn from_connection(c: &Connection) -> Result<Tls, String> {
        let mode = match c.tls.as_deref().unwrap_or("prefer") {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            other => {
                return Err(format!(
                    "connection.tls = {other:?}: expected \"disable\", \"prefer\" or \"require\""
                ))
            }
        };
        let ca_file = c.tls_ca_file.as_deref().map(PathBuf::from);
        if let Some(path) = &ca_file {
            if mode != SslMode::Require {
                return Err(format!(
                    "connection.tls_ca_file is set but connection.tls is {:?}: certificate \
                     verification needs tls = \"require\" (otherwise a server, or an attacker, \
                     that does not offer TLS would be accepted unverified)",
                    c.tls.as_deref().unwrap_or("prefer (the default)")
                ));
            }
            if !path.is_absolute() {
                return Err(format!(
                    "connection.tls_ca_file {:?} must be an absolute path (it is also written \
                     into standbys' primary_conninfo as sslrootcert)",
                    path.display()
                ));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let connector = match (mode, &ca_file) {
            (SslMode::Disable, _) => None,
            (_, Some(path)) => Some(verifying_config(provider, path)?),
            (_, None) => Some(encrypt_only_config(provider)?),
        };
        Ok(Tls {
            mode,
            ca_file,
            connector: connector.map(MakeRustlsConnect::new),
        })
    }

    /// The connector, `None` when TLS is disabled.
    pub(crate) fn connector(&self) -> Option<&MakeRustlsConnect> {
        self.connector.as_ref()
    }

    /// The libpq parameters a standby's `primary_conninfo` needs so that
    /// replication is protected like the controller's own sessions. The CA
    /// path is the controller's: the bundle must be at the same path on
    /// every member host (docs/postgres.md).
    pub(crate) fn conninfo_params(&self, quote: impl Fn(&str) -> String) -> String {
        match (self.mode, &self.ca_file) {
            (SslMode::Disable, _) => "sslmode=disable".into(),
            (SslMode::Require, Some(ca)) => format!(
                "sslmode=verify-full sslrootcert={}",
                quote(&ca.display().to_string())
            ),
            (SslMode::Require, None) => "sslmode=require".into(),
            _ => "sslmode=prefer".into(),
        }
    }
}

fn builder(
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, String> {
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS provider: {e}"))
}

/// `verify-full`: chain to the bundle's CAs, and the host name.
fn verifying_config(provider: Arc<CryptoProvider>, path: &Path) -> Result<ClientConfig, String> {
    let field = format!("connection.tls_ca_file {}", path.display());
    let pem = std::fs::read(path).map_err(|e| format!("{field}: cannot read: {e}"))?;
    let mut roots = RootCertStore::empty();
    for (i, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let cert = cert.map_err(|e| format!("{field}: certificate {}: {e}", i + 1))?;
        roots
            .add(cert)
            .map_err(|e| format!("{field}: certificate {} is not usable as a CA: {e}", i + 1))?;
    }
    if roots.is_empty() {
        return Err(format!("{field}: contains no PEM certificate"));
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| format!("{field}: {e}"))?;
    Ok(builder(provider)?
        .with_webpki_verifier(verifier)
        .with_no_client_auth())
}

/// libpq's `require`/`prefer`: encrypt, accept any certificate.
fn encrypt_only_config(provider: Arc<CryptoProvider>) -> Result<ClientConfig, String> {
    let verifier = Arc::new(EncryptOnly {
        algorithms: provider.signature_verification_algorithms,
    });
    Ok(builder(provider)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Accepts any server certificate, but still checks the handshake
/// signatures against it: the session is encrypted to whoever holds that
/// certificate's key — which, without a CA, may be anyone (libpq `require`).
#[derive(Debug)]
struct EncryptOnly {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Why a session could not be set up at the TLS layer. These are
/// configuration problems of a member that is up, not outages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TlsFailure {
    /// The certificate did not verify (unknown CA, wrong host name, expired).
    Untrusted(String),
    /// `require`, but the server answered the TLS request with "no".
    NotOffered,
    /// Any other handshake failure (protocol versions, alerts).
    Handshake(String),
}

impl TlsFailure {
    /// What went wrong, for an error message or an observed member's detail.
    pub(crate) fn message(&self) -> String {
        match self {
            TlsFailure::Untrusted(why) => format!(
                "TLS: the server certificate was not trusted ({why}); it must chain to a CA in \
                 connection.tls_ca_file and name this member's host"
            ),
            TlsFailure::NotOffered => "TLS: connection.tls = \"require\" but the server does not \
                 offer TLS (is ssl = on?)"
                .into(),
            TlsFailure::Handshake(why) => format!("TLS handshake failed: {why}"),
        }
    }
}

/// Classify a connect error as a TLS failure, if it is one.
pub(crate) fn classify(e: &tokio_postgres::Error) -> Option<TlsFailure> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(from_rustls(r));
        }
        // tokio-rustls hands rustls errors back wrapped in an io::Error,
        // whose `source()` skips the wrapped error itself.
        if let Some(r) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(from_rustls(r));
        }
        // tokio-postgres's own refusal in `require` mode (connect_tls.rs).
        if err.to_string() == "server does not support TLS" {
            return Some(TlsFailure::NotOffered);
        }
        cur = err.source();
    }
    None
}

fn from_rustls(e: &rustls::Error) -> TlsFailure {
    match e {
        rustls::Error::InvalidCertificate(_) => TlsFailure::Untrusted(e.to_string()),
        _ => TlsFailure::Handshake(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(tls: Option<&str>, ca: Option<&str>) -> Connection {
        Connection {
            tls: tls.map(String::from),
            tls_ca_file: ca.map(String::from),
            ..Connection::default()
        }
    }

    #[test]
    fn modes_and_replication_params() {
        let q = |s: &str| format!("'{s}'");
        let t = Tls::from_connection(&conn(None, None)).unwrap();
        assert_eq!(t.mode, SslMode::Prefer);
        assert!(t.connector().is_some());
        assert_eq!(t.conninfo_params(q), "sslmode=prefer");
        let t = Tls::from_connection(&conn(Some("disable"), None)).unwrap();
        assert!(t.connector().is_none());
        assert_eq!(t.conninfo_params(q), "sslmode=disable");
        let t = Tls::from_connection(&conn(Some("require"), None)).unwrap();
        assert_eq!(t.conninfo_params(q), "sslmode=require");
        assert!(format!("{t:?}").contains("verify_server: false"), "{t:?}");
    }

    #[test]
    fn ca_file_is_validated() {
        let dir = tempfile::tempdir().unwrap();
        let path = |n: &str| dir.path().join(n).display().to_string();
        let e = Tls::from_connection(&conn(Some("prefer"), Some(&path("ca.pem")))).unwrap_err();
        assert!(e.contains("needs tls = \"require\""), "{e}");
        let e = Tls::from_connection(&conn(Some("require"), Some("ca.pem"))).unwrap_err();
        assert!(e.contains("absolute"), "{e}");
        let e =
            Tls::from_connection(&conn(Some("require"), Some(&path("missing.pem")))).unwrap_err();
        assert!(
            e.contains("missing.pem") && e.contains("cannot read"),
            "{e}"
        );
        std::fs::write(path("empty.pem"), "not a certificate\n").unwrap();
        let e = Tls::from_connection(&conn(Some("require"), Some(&path("empty.pem")))).unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        std::fs::write(
            path("junk.pem"),
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = Tls::from_connection(&conn(Some("require"), Some(&path("junk.pem")))).unwrap_err();
        assert!(e.contains("junk.pem") && e.contains("certificate 1"), "{e}");

        let ca = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap();
        std::fs::write(path("ca.pem"), ca.pem()).unwrap();
        let t = Tls::from_connection(&conn(Some("require"), Some(&path("ca.pem")))).unwrap();
        let q = |s: &str| format!("'{s}'");
        assert_eq!(
            t.conninfo_params(q),
            format!("sslmode=verify-full sslrootcert='{}'", path("ca.pem"))
        );
    }
}
