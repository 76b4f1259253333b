//! TLS for a client of a remote daemon (`https://HOST:PORT`): how its certificate is trusted;
//! and the provider and fingerprint both the client and the daemon's listeners use.
//!
//! By default a certificate is pinned on first use, as ssh pins host keys: `zsa login` shows the
//! SHA-256 fingerprint of the certificate the daemon presents, asks (or takes `--fingerprint`),
//! and stores it in the context. Every later connection accepts exactly that certificate, with
//! the handshake's signature still checked by the provider's algorithms, so only whoever holds
//! its private key can answer. Its names and dates are not checked: the pin is the identity, as
//! a host key is for ssh. A changed certificate is refused, saying so. A context may trust a
//! private CA's file (`--ca FILE`) or the system's roots (`--system-roots`) instead, which then
//! check names and dates as browsers do and survive a certificate's renewal.
//!
//! Everything uses rustls with the aws-lc-rs provider, as reqwest and lettre do here.

use std::fmt;
use std::io::ErrorKind;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

/// A certificate's fingerprint as zsa shows and stores it, and as `zsa admin tls init` prints it:
/// `SHA256:` and the digest of its DER encoding in uppercase hex pairs joined by `:`
/// (`SHA256:AB:CD:...`), the pairs `openssl x509 -noout -fingerprint -sha256` prints, so a
/// person can compare the two by eye with the tools they have.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let pairs: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    format!("SHA256:{}", pairs.join(":"))
}

/// A fingerprint as someone typed or pasted it: `SHA256:` then 32 bytes of hex, in pairs joined by
/// `:` or not, in either case. Returned in the form `fingerprint` makes, so the two compare equal.
pub fn parse_fingerprint(text: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "{text:?} is not a certificate fingerprint: give it as zsa prints it, SHA256: and 32 hex pairs \
             (SHA256:AB:CD:...)"
        )
    };
    let hex_part = text.trim().strip_prefix("SHA256:").or_else(|| text.trim().strip_prefix("sha256:")).ok_or_else(bad)?;
    let digits: String = hex_part.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&digits).map_err(|_| bad())?;
    if bytes.len() != 32 {
        return Err(bad());
    }
    let pairs: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
    Ok(format!("SHA256:{}", pairs.join(":")))
}

/// The innermost cause of an error, the one that says what happened (a refused certificate is
/// several layers down in a client's error).
pub fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut detail = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    detail
}

/// The crypto provider of every TLS connection zsa makes or accepts.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// How a remote daemon's certificate is trusted (one per context).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Exactly the certificate with this fingerprint (`SHA256:AB:...`).
    Pin(String),
    /// Certificates a private CA in this PEM file issued for the host's name.
    Ca(PathBuf),
    /// Certificates the system's roots vouch for, for the host's name.
    SystemRoots,
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trust::Pin(fp) => write!(f, "pinned certificate {fp}"),
            Trust::Ca(path) => write!(f, "certificates issued by the CA in {}", path.display()),
            Trust::SystemRoots => f.write_str("the system's root certificates"),
        }
    }
}

/// The refusal of a certificate other than the pinned one: the whole sentence the user reads.
#[derive(Debug)]
pub struct CertificateChanged {
    pub host: String,
    pub pinned: String,
    pub now: String,
}

impl fmt::Display for CertificateChanged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the certificate of {} changed: pinned {}, now {}; nothing was sent. Someone may be impersonating the \
             daemon; if this is expected (its certificate was replaced) run zsa login again",
            self.host, self.pinned, self.now
        )
    }
}

impl std::error::Error for CertificateChanged {}

/// Accepts exactly the pinned certificate (or, with no pin, any certificate, only to show its
/// fingerprint at login: nothing is sent over such a connection). Either way it remembers the
/// certificate it saw, and the handshake's signature is checked with the provider's algorithms.
#[derive(Debug)]
pub struct PinnedVerifier {
    host: String,
    pin: Option<String>,
    algorithms: WebPkiSupportedAlgorithms,
    seen: Mutex<Option<CertificateDer<'static>>>,
}

impl PinnedVerifier {
    pub fn new(host: &str, pin: Option<String>) -> PinnedVerifier {
        PinnedVerifier { host: host.to_string(), pin, algorithms: provider().signature_verification_algorithms, seen: Mutex::new(None) }
    }

    /// The certificate the last handshake presented.
    pub fn seen(&self) -> Option<CertificateDer<'static>> {
        self.seen.lock().ok().and_then(|s| s.clone())
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(end_entity.clone().into_owned());
        }
        let now = fingerprint(end_entity);
        match &self.pin {
            Some(pinned) if *pinned != now => {
                let changed = CertificateChanged { host: self.host.clone(), pinned: pinned.clone(), now };
                Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(Arc::new(changed)))))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
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

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The client configuration for a pinned certificate (`host` names it in refusals).
pub fn pinned_config(host: &str, pin: &str) -> Result<rustls::ClientConfig, String> {
    let verifier = Arc::new(PinnedVerifier::new(host, Some(pin.to_string())));
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The certificate `host:port` presents, from a handshake alone: it is shown at login before
/// anything (a token above all) is sent. Blocking; at most `patience` to connect and for each read.
pub fn fetch_certificate(host: &str, port: u16, patience: Duration) -> Result<CertificateDer<'static>, String> {
    let place = format!("{host}:{port}");
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<_> = (bare, port).to_socket_addrs().map_err(|e| format!("cannot resolve {place}: {e}"))?.collect();
    let mut last = format!("{place} has no address");
    let mut socket = None;
    for address in addresses {
        match TcpStream::connect_timeout(&address, patience) {
            Ok(s) => {
                socket = Some(s);
                break;
            }
            Err(e) => last = format!("cannot connect to {place}: {e}"),
        }
    }
    let mut socket = socket.ok_or(last)?;
    socket.set_read_timeout(Some(patience)).and_then(|_| socket.set_write_timeout(Some(patience))).map_err(|e| e.to_string())?;
    let verifier = Arc::new(PinnedVerifier::new(&place, None));
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(bare.to_string()).map_err(|e| format!("{host} is not a host name: {e}"))?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| format!("cannot set up TLS: {e}"))?;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut socket) {
            let why = if e.kind() == ErrorKind::UnexpectedEof || e.kind() == ErrorKind::InvalidData {
                format!("{e} (is it a TLS port? plain HTTP is never used)")
            } else {
                e.to_string()
            };
            return Err(format!("no TLS handshake with {place}: {why}"));
        }
    }
    conn.send_close_notify();
    let _ = conn.complete_io(&mut socket);
    verifier.seen().ok_or_else(|| format!("{place} presented no certificate"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_is_sha256_in_uppercase_pairs_and_reads_back_in_any_form() {
        let fp = fingerprint(b"certificate");
        assert!(fp.starts_with("SHA256:") && fp.len() == 7 + 32 * 3 - 1, "{fp}");
        assert_eq!(fp, fingerprint(b"certificate"));
        assert_ne!(fp, fingerprint(b"another"));
        assert_eq!(parse_fingerprint(&fp).unwrap(), fp);
        let bare = fp.replace(':', "").replace("SHA256", "sha256:").to_lowercase();
        assert_eq!(parse_fingerprint(&bare).unwrap(), fp);
        assert!(parse_fingerprint("SHA256:AB:CD").unwrap_err().contains("32 hex pairs"));
        assert!(parse_fingerprint(&fp.replace("SHA256:", "MD5:")).is_err());
    }

    #[test]
    fn the_fingerprint_is_sha256_of_the_der_in_colon_hex_pairs() {
        // SHA-256 of the empty input, as every tool writes it.
        let empty = fingerprint(b"");
        assert_eq!(empty, "SHA256:E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55");
        assert_eq!(fingerprint(b"abc").len(), "SHA256:".len() + 32 * 3 - 1);
    }
}
