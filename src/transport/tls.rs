//! TLS for `wss://`, `https://` and `mqtts://`: one rustls client configuration per run that
//! trusts the public web roots (built in, nothing fetched) and, when the scenario or
//! `--ca-file` names one, a private CA. Owns certificate loading; not the connections.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "cannot read the CA file {path}: {detail}; give a PEM file with one or more certificates"
    )]
    CaFile { path: PathBuf, detail: String },
    #[error(
        "the CA file {0} holds no certificate; give a PEM file with -----BEGIN CERTIFICATE-----"
    )]
    NoCertificate(PathBuf),
    #[error("cannot set up TLS: {0}")]
    Config(String),
}

/// The run's TLS client settings, shared by every connection.
#[derive(Clone)]
pub struct TlsContext {
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsContext")
    }
}

impl TlsContext {
    /// Trusts the public roots plus every certificate in `ca_file`.
    pub fn new(ca_file: Option<&Path>) -> Result<Self, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca_file {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| TlsError::CaFile {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                })?
                .collect::<Result<_, _>>()
                .map_err(|e| TlsError::CaFile {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                })?;
            if certs.is_empty() {
                return Err(TlsError::NoCertificate(path.to_path_buf()));
            }
            for c in certs {
                roots.add(c).map_err(|e| TlsError::CaFile {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                })?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsContext {
            config: Arc::new(config),
        })
    }

    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.config.clone()
    }

    /// An HTTP client builder that uses this configuration for `https://`, and lets an idle
    /// connection go after [`POOL_IDLE`].
    pub fn http_client(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .tls_backend_preconfigured((*self.config).clone())
            .pool_idle_timeout(POOL_IDLE)
    }
}

/// How long an HTTP connection may sit idle in a pool before chatload closes it: shorter than
/// servers keep one (Node.js closes after 5 s, `chatload serve` after its `--header-timeout`,
/// 10 s), so chatload never starts a request on a connection the server is closing at that
/// moment, which fails the request for a reason of the client's making.
pub const POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(4);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ca_file_names_the_path() {
        let e = TlsContext::new(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty.pem");
        std::fs::write(&p, "not a certificate\n").unwrap();
        let e = TlsContext::new(Some(&p)).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate(_)), "{e}");
    }

    #[test]
    fn public_roots_alone_build() {
        assert!(TlsContext::new(None).is_ok());
    }
}
