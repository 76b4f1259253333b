//! Where a PostgreSQL store is and how zsa reaches it: the URL read once and checked, and each
//! session opened from it. The log never crosses a network in the clear: a server that is not
//! this machine (a Unix socket or loopback) is reached only over TLS, with its certificate and
//! name checked against the roots the URL names (`sslrootcert=PATH`, or `=system` for this
//! machine's), never "TLS if the server offers it" and never without a check.
//!
//! zsa reads two parameters itself, the way libpq spells them: `sslrootcert` (which the driver
//! does not know) and `sslmode`, where `verify-full` and `verify-ca` mean what `require`
//! means here: TLS, with the chain and the name always checked.

use std::path::PathBuf;
use std::time::Duration;

use postgres::config::{Host, SslMode};
use postgres::{Client, NoTls};

use super::StoreError;

/// How long a session may take to connect (a database that is down is said so in seconds).
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// The roots a server's certificate is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Roots {
    /// A PEM file of CA certificates (a private CA's, or the server's own self-signed one).
    File(PathBuf),
    /// This machine's trusted roots (rustls-platform-verifier).
    System,
}

/// A PostgreSQL URL, read and checked: what the driver connects with, and the roots TLS
/// checks against (`None`: no TLS, allowed only for this machine's server).
#[derive(Clone, Debug)]
pub struct Target {
    config: postgres::Config,
    roots: Option<Roots>,
    /// The URL as shown in messages: never with its password.
    shown: String,
}

impl Target {
    /// Reads a store URL and checks that it keeps the log off the network or inside checked
    /// TLS. Reads no file and opens nothing.
    pub fn parse(url: &str) -> Result<Target, String> {
        let shown = crate::model::text::inert(&redacted(url)).into_owned();
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut root_file = None;
        let mut kept = Vec::new();
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy().into_owned();
            match key {
                "sslrootcert" if value.is_empty() => return Err(format!("'{shown}': sslrootcert needs a file's path, or system")),
                "sslrootcert" => root_file = Some(value),
                "sslmode" if value == "verify-full" || value == "verify-ca" => kept.push("sslmode=require".to_string()),
                _ => kept.push(param.to_string()),
            }
        }
        let driver_url = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
        let mut config = driver_url
            .parse::<postgres::Config>()
            .map_err(|e| format!("'{shown}' is not a PostgreSQL URL ({e}); write it like postgres://zsa@127.0.0.1:5432/zsa"))?;
        let tls = match (config.get_ssl_mode(), &root_file) {
            (SslMode::Require, _) => true,
            (SslMode::Disable, Some(_)) => {
                return Err(format!("'{shown}' asks for no TLS (sslmode=disable) and names roots for it (sslrootcert); drop one"));
            }
            (_, Some(_)) => true,
            (_, None) => false,
        };
        if !tls {
            if let Some(host) = remote_host(&config) {
                return Err(format!(
                    "'{shown}': {} is not this machine, so the log would cross the network: zsa reaches it only over TLS with its certificate checked. \
                     Add sslmode=require and sslrootcert=PATH (the CA that signed the server's certificate) or sslrootcert=system (this machine's roots), \
                     or reach the database over a Unix socket (postgres://zsa@%2Frun%2Fpostgresql/zsa)",
                    crate::model::text::inert(&host)
                ));
            }
            // Never "TLS if offered": over loopback or a socket there is nothing to protect.
            config.ssl_mode(SslMode::Disable);
            return Ok(Target { config, roots: None, shown });
        }
        if config.get_hosts().iter().all(|h| !matches!(h, Host::Tcp(_))) {
            return Err(format!(
                "'{shown}' reaches the database over a Unix socket, which has no TLS and needs none: drop sslmode and sslrootcert"
            ));
        }
        let roots = match root_file.as_deref() {
            None => {
                return Err(format!(
                    "'{shown}' asks for TLS but names no roots to check the server's certificate against: add sslrootcert=PATH (the CA that signed it) or sslrootcert=system (this machine's roots)"
                ));
            }
            Some("system") => Roots::System,
            Some(path) => Roots::File(PathBuf::from(path)),
        };
        config.ssl_mode(SslMode::Require);
        Ok(Target { config, roots: Some(roots), shown })
    }

    /// The URL as shown in messages and logs: never with its password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// What opens sessions to this target: the roots read now (a file that cannot be read, or
    /// that anyone else could rewrite, is refused here, before any session is opened).
    pub fn connector(&self) -> Result<Connector, StoreError> {
        let tls = match &self.roots {
            None => None,
            Some(roots) => Some(tokio_postgres_rustls::MakeRustlsConnect::new(
                client_config(roots).map_err(|why| StoreError::Unavailable(format!("cannot set up TLS to {}: {why}", self.shown)))?,
            )),
        };
        let mut config = self.config.clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_WAIT);
        }
        if config.get_application_name().is_none() {
            config.application_name("zsa");
        }
        // A connection gone half-open (a failover, a dropped NAT entry) is found within seconds,
        // not the system's hours: a heartbeat must never hang on one for long.
        config.keepalives(true).keepalives_idle(Duration::from_secs(5)).keepalives_interval(Duration::from_secs(2)).keepalives_retries(3);
        config.tcp_user_timeout(Duration::from_secs(10));
        Ok(Connector { config, tls, shown: self.shown.clone() })
    }
}

/// Opens sessions to one target, over TLS where it says so.
#[derive(Clone)]
pub struct Connector {
    config: postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    shown: String,
}

impl Connector {
    /// A new session; a refused certificate is said so, with what to check.
    pub fn connect(&self) -> Result<Client, StoreError> {
        let connected = match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(NoTls),
        };
        connected.map_err(|e| {
            let why = crate::tls::innermost(&e);
            let hint = if self.tls.is_some() && (why.contains("certificate") || why.contains("Certificate")) {
                " (the server's certificate is not signed by the roots in sslrootcert, or does not name the host in the URL; nothing was sent)"
            } else {
                ""
            };
            StoreError::Unavailable(format!("cannot connect to {}: {why}{hint}", self.shown))
        })
    }

    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// The first host (or host address) in `config` that is not this machine, if any.
fn remote_host(config: &postgres::Config) -> Option<String> {
    let remote = config.get_hosts().iter().find_map(|host| match host {
        Host::Tcp(name) => {
            let local = name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
            (!local).then(|| name.clone())
        }
        _ => None,
    });
    remote.or_else(|| config.get_hostaddrs().iter().find(|ip| !ip.is_loopback()).map(|ip| ip.to_string()))
}

/// A rustls client configuration that checks the server's chain and name against `roots`.
fn client_config(roots: &Roots) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    match roots {
        Roots::System => {
            use rustls_platform_verifier::BuilderVerifierExt;
            Ok(builder.with_platform_verifier().map_err(|e| format!("cannot read this machine's roots: {e}"))?.with_no_client_auth())
        }
        Roots::File(path) => {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            use std::io::Read;
            // Whoever could rewrite the roots could put their own server between zsa and its log.
            let mut pem = Vec::new();
            crate::fs_trust::open_store_roots(path)
                .map_err(|e| e.0)?
                .take(1 << 20)
                .read_to_end(&mut pem)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let mut store = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("{} holds no PEM certificate zsa can read: {e}", path.display()))?;
                store.add(cert).map_err(|e| format!("{} holds a certificate that cannot be a root: {e}", path.display()))?;
            }
            if store.is_empty() {
                return Err(format!("{} holds no certificate (-----BEGIN CERTIFICATE-----)", path.display()));
            }
            Ok(builder.with_root_certificates(store).with_no_client_auth())
        }
    }
}

/// `url` without its password (in its user part, or a `password=` parameter), for messages and logs.
pub fn redacted(url: &str) -> String {
    let url = match url.split_once('?') {
        Some((base, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    // The driver decodes keys (`passwor%64` is `password`): so is it read here.
                    Some((k, _)) if percent_encoding::percent_decode_str(k).decode_utf8_lossy().eq_ignore_ascii_case("password") => {
                        format!("{k}=***")
                    }
                    _ => p.to_string(),
                })
                .collect();
            format!("{base}?{}", params.join("&"))
        }
        None => url.to_string(),
    };
    let url = url.as_str();
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
