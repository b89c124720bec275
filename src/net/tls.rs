//! TLS to a server (`rediss://`), with rustls: the server's certificate checked against
//! the given CA file (or the Mozilla roots), a client certificate when the server asks for
//! one (`tls-auth-clients yes`), and no check at all only when asked (`insecure`).
//!
//! [`Tls`] is built once and shared by every [`Link`](super::Link) to that server; the
//! link runs the handshake itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::{Error as PemError, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How to set TLS up (the CLI fills it from `--tls-ca`, `--tls-cert`, `--tls-key`,
/// `--tls-server-name`, `--insecure`).
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The name the certificate must carry (default: the host).
    pub server_name: Option<String>,
    pub insecure: bool,
}

/// A client configuration and the name to check, shared by every connection.
#[derive(Clone)]
pub struct Tls {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tls({:?})", self.name)
    }
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{}: {source}", path.display())]
    Pem { path: PathBuf, source: PemError },
    /// A certificate rustls refuses.
    #[error("{}: {source}", path.display())]
    Certificate { path: PathBuf, source: rustls::Error },
    #[error("{}: no PEM certificate in it", .0.display())]
    NoCertificate(PathBuf),
    /// A client certificate without its key, or a key without its certificate.
    #[error("--tls-cert and --tls-key go together")]
    CertWithoutKey,
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    /// rustls refused the configuration (protocol versions, the client key).
    #[error("{0}")]
    Config(rustls::Error),
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |source| TlsError::Pem { path: path.to_path_buf(), source };
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path).map_err(pem)?.collect();
    let certs = certs.map_err(pem)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

impl Tls {
    /// The configuration for `host` (whose name the certificate must carry unless
    /// `opts.server_name` says another).
    pub fn new(opts: &TlsOptions, host: &str) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?;
        let builder = if opts.insecure {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        } else {
            let mut roots = RootCertStore::empty();
            match &opts.ca {
                Some(ca) => {
                    for c in read_certs(ca)? {
                        roots.add(c).map_err(|source| TlsError::Certificate { path: ca.clone(), source })?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            builder.with_root_certificates(roots)
        };
        let config = match (&opts.cert, &opts.key) {
            (Some(cert), Some(key)) => {
                let key =
                    PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Pem { path: key.clone(), source })?;
                builder.with_client_auth_cert(read_certs(cert)?, key).map_err(TlsError::Config)?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(TlsError::CertWithoutKey),
        };
        let name = opts.server_name.as_deref().unwrap_or(host).to_string();
        let name = ServerName::try_from(name.clone()).map_err(|_| TlsError::ServerName(name))?;
        Ok(Tls { config: Arc::new(config), name })
    }
}

/// `--insecure`: any certificate is accepted (the signatures of the handshake are still
/// checked, so the session is encrypted, just not authenticated).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
