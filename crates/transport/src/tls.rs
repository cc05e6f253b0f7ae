//! TLS for `https://` upstreams: rustls with the `ring` provider, trusting the
//! system's CA certificates plus any the caller adds (a private CA).
//!
//! [`read_pem_certificates`] and [`read_pem_private_key`] read PEM files and name
//! the file in every error; a server that offers TLS uses them too.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate or key file that could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file could not be read or holds no PEM item of the expected kind.
    #[error("cannot read {what} from {}: {detail}", path.display())]
    File {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it could not be used.
        detail: String,
    },
    /// rustls refused the configuration (for example a key that does not match
    /// its certificate).
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

/// Reads every certificate of a PEM file (a CA bundle, or a certificate chain).
pub fn read_pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |detail: String| TlsError::File {
        what: "certificates",
        path: path.to_owned(),
        detail,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(e.to_string()))?;
    if certificates.is_empty() {
        return Err(error("the file holds no PEM certificate".to_owned()));
    }
    Ok(certificates)
}

/// Reads the private key of a PEM file (PKCS #8, PKCS #1 or SEC1).
pub fn read_pem_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        what: "a private key",
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

/// The rustls crypto provider FrameX for Rust uses.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system's CA certificates, read once per process. Certificates the system
/// store holds but rustls cannot parse are left out.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

/// The TLS settings of the client's connections: the system's CAs and
/// `extra_roots` trusted, with the error of each extra root that rustls cannot
/// use (it is left out).
pub(crate) fn client_config(
    extra_roots: &[CertificateDer<'static>],
) -> (rustls::ClientConfig, Vec<TlsError>) {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(system_roots().iter().cloned());
    let mut rejected = Vec::new();
    for root in extra_roots {
        if let Err(e) = roots.add(root.clone()) {
            rejected.push(TlsError::Config(format!(
                "a CA certificate is not usable: {e}"
            )));
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (config, rejected)
}

/// A connector for `http://` and `https://` URLs over `http`, with `config`
/// for TLS, which expects the server's certificate to name `server_name`
/// whatever host the URI it is handed has (an endpoint's address).
pub(crate) fn wrap<R>(
    mut http: HttpConnector<R>,
    config: rustls::ClientConfig,
    server_name: &str,
) -> HttpsConnector<HttpConnector<R>> {
    // The HTTPS connector hands `https://` URLs to the HTTP connector.
    http.enforce_http(false);
    let server_name = server_name.to_owned();
    HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .with_server_name_resolver(move |_: &http::Uri| {
            rustls_pki_types::ServerName::try_from(server_name.clone())
        })
        .enable_http1()
        .wrap_connector(http)
}

/// A rustls server configuration for a certificate chain and its key.
pub fn server_config(
    certificates: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(|e| {
            TlsError::Config(format!("the certificate and key do not work together: {e}"))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
