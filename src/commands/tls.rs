//! `zsa admin tls init`: a self-signed certificate and key for a daemon's first TCP listener,
//! made here (no daemon is asked). The key is written 0600 and nothing is ever written over an
//! existing file; the fingerprint printed is the one clients show and pin (`crate::tls`).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::output::json_line;
use super::{CliError, CmdResult};
use crate::cli::TlsCmd;
use crate::model::{duration, text};

pub fn run(command: &TlsCmd, json: bool) -> CmdResult {
    let TlsCmd::Init { dir, names, valid_for } = command;
    let secs = duration::parse(valid_for).map_err(|e| CliError::Usage(format!("--valid-for: {e}")))?;
    let names = if names.is_empty() { default_names() } else { names.clone() };
    let made = init(dir, &names, std::time::Duration::from_secs(secs))?;
    if json {
        json_line(&serde_json::json!({
            "cert": made.cert, "key": made.key, "fingerprint": made.fingerprint, "names": names, "not_after": made.not_after,
        }));
        return Ok(());
    }
    let (cert, key) = (made.cert.display(), made.key.display());
    println!("wrote {cert} (the certificate: clients may have it)");
    println!("wrote {key} (the private key, mode 0600: it never leaves this host)");
    println!("names: {}", names.iter().map(|n| text::inert(n).into_owned()).collect::<Vec<_>>().join(", "));
    println!("valid until {}", made.not_after);
    println!("fingerprint: {}", made.fingerprint);
    println!();
    println!("Start the daemon with:  zsa daemon --listen 0.0.0.0:8443 --tls-cert {cert} --tls-key {key}");
    println!("Clients pin this fingerprint the first time they connect: check that they show the same.");
    Ok(())
}

/// What `init` wrote.
pub struct Made {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub fingerprint: String,
    pub not_after: String,
}

/// The names a certificate gets when none is given: this host's name and the loopback ones.
fn default_names() -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(host) = nix::unistd::gethostname()
        && let Some(host) = host.to_str().filter(|h| !h.is_empty() && *h != "localhost")
    {
        names.push(host.to_string());
    }
    names.extend(["localhost", "127.0.0.1", "::1"].map(String::from));
    names
}

/// Makes an ECDSA P-256 key and a self-signed certificate for `names`, valid from a minute ago
/// for `valid`, and writes them as DIR/cert.pem and DIR/key.pem.
pub fn init(dir: &Path, names: &[String], valid: std::time::Duration) -> Result<Made, CliError> {
    let refused = |m: String| CliError::Refused(m);
    for name in names {
        if name.trim().is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(CliError::Usage(format!("--name '{}' is not a host name or IP address", text::inert(name))));
        }
    }
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| CliError::Usage(format!("--name: {e}; give DNS names (zsa.example.com) or IP addresses (10.0.0.5)")))?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = now + valid;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, names.first().map_or("zsa daemon", String::as_str));
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "zsa (self-signed)");
    params.serial_number = Some(serial());
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| anyhow::anyhow!("cannot make a key: {e}"))?;
    let cert = params.self_signed(&key).map_err(|e| anyhow::anyhow!("cannot make the certificate: {e}"))?;

    // Every directory on the way must be one nobody else can write (or they could swap the key),
    // and the last is made private if it is new.
    let entry = crate::fs_trust::walk(dir, true, Some(0o755), "the TLS directory").map_err(|e| refused(e.0))?;
    match &entry.meta {
        None => {
            fs::DirBuilder::new().mode(0o700).create(&entry.path).map_err(|e| refused(format!("cannot create {}: {e}", dir.display())))?
        }
        Some(meta) => {
            use std::os::unix::fs::MetadataExt;
            let mine = meta.uid() == 0 || meta.uid() == nix::unistd::geteuid().as_raw();
            if !meta.is_dir() || !mine || meta.mode() & 0o022 != 0 {
                return Err(refused(format!(
                    "refusing {} (the TLS directory): it must be a directory of yours or root's that nobody else can write \
                     (others could swap the key); give another --dir, or fix it (chown, chmod go-w)",
                    dir.display()
                )));
            }
        }
    }
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    for path in [&cert_path, &key_path] {
        if fs::symlink_metadata(path).is_ok() {
            return Err(refused(format!(
                "{} is already there and is never written over; move it away first, or give another --dir",
                path.display()
            )));
        }
    }
    write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    if let Err(e) = write_new(&cert_path, cert.pem().as_bytes(), 0o644) {
        let _ = fs::remove_file(&key_path);
        return Err(e);
    }
    let not_after = chrono::DateTime::from_timestamp(params.not_after.unix_timestamp(), 0).map(|t| t.to_rfc3339()).unwrap_or_default();
    Ok(Made { cert: cert_path, key: key_path, fingerprint: crate::tls::fingerprint(cert.der()), not_after })
}

/// A random positive 128-bit serial number, as certificates should carry.
fn serial() -> rcgen::SerialNumber {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes[0] &= 0x7f;
    rcgen::SerialNumber::from_slice(&bytes)
}

/// Writes a file that must not exist yet (never through a symlink), with `mode`.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CliError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| CliError::Refused(format!("cannot create {}: {e}", path.display())))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| CliError::Refused(format!("cannot write {}: {e}", path.display())))
}
