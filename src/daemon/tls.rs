//! A TCP listener's TLS: its certificate chain and key from PEM files, TLS 1.2 and 1.3 with
//! rustls's safe defaults and the aws-lc-rs provider, HTTP/1.1 only. The key must be a secret:
//! a regular file of the daemon's account (or root's) that no other account may read or write
//! (`fs_trust::read_secret`), and it must belong to the certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

/// Why a certificate and key cannot serve: the whole sentence, naming the file and what to do.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct TlsProblem(pub String);

/// What a listener serves with, and the fingerprint of its certificate (for the log, and to
/// compare with what a client is shown).
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    pub fingerprint: String,
}

/// Reads and checks a certificate chain (leaf first) and its key, and makes the server's TLS
/// configuration from them.
pub fn load(cert: &Path, key: &Path) -> Result<ServerTls, TlsProblem> {
    let chain = read_chain(cert)?;
    let secret = crate::fs_trust::read_secret(key, "the TLS key").map_err(|e| TlsProblem(e.0))?;
    let private = PrivateKeyDer::from_pem_slice(secret.as_bytes()).map_err(|e| {
        TlsProblem(format!(
            "{} holds no usable private key ({e}); give the PEM key (-----BEGIN PRIVATE KEY-----) that belongs to {}",
            key.display(),
            cert.display()
        ))
    })?;
    let fingerprint = crate::tls::fingerprint(&chain[0]);
    let mut config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsProblem(format!("cannot set up TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsProblem(format!(
                "the TLS key {} does not belong to the certificate {}; give the key made with it (zsa admin tls init makes a matching pair)",
                key.display(),
                cert.display()
            )),
            e => TlsProblem(format!("the certificate {} and key {} cannot be used: {e}", cert.display(), key.display())),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServerTls { config: Arc::new(config), fingerprint })
}

/// The certificates in a PEM file, the leaf first; at least one.
fn read_chain(cert: &Path) -> Result<Vec<CertificateDer<'static>>, TlsProblem> {
    let shown = cert.display();
    let bytes = std::fs::read(cert).map_err(|e| TlsProblem(format!("cannot read the TLS certificate {shown}: {e}")))?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsProblem(format!("the TLS certificate {shown} is not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(TlsProblem(format!(
            "{shown} holds no certificate (-----BEGIN CERTIFICATE-----); give the certificate in PEM, or make one with zsa admin tls init --dir DIR"
        )));
    }
    Ok(chain)
}
