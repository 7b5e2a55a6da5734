//! A self-signed certificate for 127.0.0.1 and localhost, generated per test (rcgen), written
//! as PEM files for chatload's `--ca-file` / `ca_file` and for mosquitto, and as a rustls
//! server configuration for the test servers.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
use std::sync::Arc;

pub struct TestCert {
    pub dir: tempfile::TempDir,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    pub server: Arc<rustls::ServerConfig>,
}

pub fn self_signed() -> TestCert {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("certificate");
    let dir = tempfile::tempdir().expect("temp dir");
    let cert_pem = dir.path().join("cert.pem");
    let key_pem = dir.path().join("key.pem");
    std::fs::write(&cert_pem, ck.cert.pem()).expect("write cert");
    std::fs::write(&key_pem, ck.signing_key.serialize_pem()).expect("write key");
    let certs = vec![CertificateDer::from(ck.cert.der().to_vec())];
    let key = PrivateKeyDer::from_pem_file(&key_pem).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    TestCert {
        dir,
        cert_pem,
        key_pem,
        server: Arc::new(server),
    }
}
