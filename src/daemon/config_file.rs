//! The daemon's config file: where its state, policy and socket are, which TCP addresses it
//! listens on with which certificate and key, and its connection limits. Every setting is also a
//! flag of `zsa daemon`, and a flag wins (`commands::daemon` merges the two). Unknown keys are
//! refused, and every problem names its line, as the policy's do. Relative paths are taken from
//! the file's own directory, so a file means the same wherever the daemon is started.
//!
//! ```toml
//! state = "/var/lib/zsa"
//! policy = "/etc/zsa/policy.toml"
//! socket = "/run/zsa/zsa.sock"
//! store = "postgres://zsa@db.example.com:5432/zsa"   # or sqlite:PATH; default sqlite:STATE/zsa.db
//!
//! [[listen]]
//! address = "0.0.0.0:8443"
//! tls_cert = "tls/cert.pem"
//! tls_key = "tls/key.pem"
//!
//! [limits]
//! max_connections = 1000
//! max_connections_per_account = 64
//! max_connections_per_peer = 64
//! header_timeout = "10s"
//! idle_timeout = "30s"
//! ```

use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::listen::LimitSettings;
use crate::model::{duration, text};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    state: Option<Spanned<String>>,
    policy: Option<Spanned<String>>,
    socket: Option<Spanned<String>>,
    store: Option<Spanned<String>>,
    checkpoint_file: Option<Spanned<String>>,
    #[serde(default)]
    listen: Vec<Spanned<RawListener>>,
    limits: Option<RawLimits>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    address: Spanned<String>,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_connections: Option<Spanned<i64>>,
    max_connections_per_account: Option<Spanned<i64>>,
    max_connections_per_peer: Option<Spanned<i64>>,
    header_timeout: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
}

/// The most any connection limit may be set to.
pub const MAX_LIMIT: u32 = 1 << 20;

/// A config file, read and checked for what can be checked without looking elsewhere.
#[derive(Debug, Default)]
pub struct DaemonFile {
    pub path: PathBuf,
    pub state: Option<PathBuf>,
    pub policy: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub store: Option<crate::store::Location>,
    pub checkpoint_file: Option<PathBuf>,
    pub listeners: Vec<FileListener>,
    pub limits: LimitSettings,
}

/// A `[[listen]]` table; certificate and key may come from flags instead.
#[derive(Debug)]
pub struct FileListener {
    pub address: SocketAddr,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The line of its `[[listen]]`, for messages.
    pub line: usize,
}

/// Why a config file cannot be used: each problem with its line (0: the file as a whole).
#[derive(Debug)]
pub struct ConfigError {
    pub file: String,
    pub problems: Vec<(usize, String)>,
}

/// One problem a line, `file:line: message`, as compilers and `zsa policy check` write them.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = text::inert(&self.file);
        for (i, (line, message)) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match line {
                0 => write!(f, "{file}: {message}")?,
                line => write!(f, "{file}:{line}: {message}")?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The config file read when `--config` is not given: root's under /etc, anyone else's in their
/// XDG config directory, beside the policy. It is used only if it is there.
pub fn default_path() -> PathBuf {
    crate::config::default_policy().with_file_name("daemon.toml")
}

/// An address to listen on: an IP address and a port (`0.0.0.0:8443`, `[::1]:8443`).
pub fn parse_address(s: &str) -> Result<SocketAddr, String> {
    s.trim().parse().map_err(|_| {
        format!(
            "'{}' is not an IP address and port; write it like 0.0.0.0:8443 (every IPv4 address), [::]:8443 (every address) or 127.0.0.1:8443",
            text::inert(s)
        )
    })
}

/// A timeout as people write durations (`30s`, `2m`).
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    duration::parse(s).map(Duration::from_secs)
}

/// Reads the file at `path`, which must be there and trusted like a policy file (whoever can
/// write it decides as much as the policy's writer: `fs_trust::open_daemon_config`).
pub fn load(path: &Path) -> Result<DaemonFile, ConfigError> {
    let whole = |message: String| ConfigError { file: path.display().to_string(), problems: vec![(0, message)] };
    let mut file = crate::fs_trust::open_daemon_config(path).map_err(|e| whole(e.0))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| whole(format!("cannot read it: {e}")))?;
    let source = String::from_utf8(bytes).map_err(|e| whole(format!("it is not UTF-8 text (byte {})", e.utf8_error().valid_up_to())))?;
    parse(&source, path)
}

/// Checks config text; `path` names it in messages and anchors its relative paths.
pub fn parse(source: &str, path: &Path) -> Result<DaemonFile, ConfigError> {
    let file = path.display().to_string();
    let line_of = |offset: usize| source[..offset.min(source.len())].matches('\n').count() + 1;
    let raw: RawFile = toml::from_str(source).map_err(|e| {
        let line = e.span().map_or(0, |s| line_of(s.start));
        let message = e.message().trim().to_string();
        let help = if message.starts_with("unknown field") { "; remove it or correct its spelling" } else { "" };
        ConfigError { file: file.clone(), problems: vec![(line, format!("{message}{help}"))] }
    })?;
    let mut problems = Vec::new();
    let base = path.parent().unwrap_or(Path::new("."));
    let path_of = |value: &Option<Spanned<String>>, key: &str, problems: &mut Vec<(usize, String)>| -> Option<PathBuf> {
        let value = value.as_ref()?;
        if value.get_ref().trim().is_empty() {
            problems.push((line_of(value.span().start), format!("{key} is empty; give a path, or leave the key out for the default")));
            return None;
        }
        Some(base.join(value.get_ref()))
    };
    let state = path_of(&raw.state, "state", &mut problems);
    let policy = path_of(&raw.policy, "policy", &mut problems);
    let socket = path_of(&raw.socket, "socket", &mut problems);
    let checkpoint_file = path_of(&raw.checkpoint_file, "checkpoint_file", &mut problems);
    let store = raw.store.as_ref().and_then(|value| match crate::store::Location::parse(value.get_ref()) {
        // A relative SQLite path is taken from the file's directory, as every other path is.
        Ok(crate::store::Location::Sqlite(db)) => Some(crate::store::Location::Sqlite(base.join(db))),
        Ok(location) => Some(location),
        Err(e) => {
            problems.push((line_of(value.span().start), format!("store: {e}")));
            None
        }
    });
    let mut listeners = Vec::new();
    for listen in &raw.listen {
        let line = line_of(listen.span().start);
        let l = listen.get_ref();
        let cert = path_of(&l.tls_cert, "tls_cert", &mut problems);
        let key = path_of(&l.tls_key, "tls_key", &mut problems);
        match parse_address(l.address.get_ref()) {
            Ok(address) => listeners.push(FileListener { address, cert, key, line }),
            Err(e) => problems.push((line_of(l.address.span().start), format!("address: {e}"))),
        }
    }
    let mut limits = LimitSettings::default();
    if let Some(raw) = &raw.limits {
        let count = |value: &Option<Spanned<i64>>, key: &str, problems: &mut Vec<(usize, String)>| -> Option<usize> {
            let value = value.as_ref()?;
            match *value.get_ref() {
                n if (1..=i64::from(MAX_LIMIT)).contains(&n) => Some(n as usize),
                n => {
                    problems.push((line_of(value.span().start), format!("limits.{key} = {n}: it must be from 1 to {MAX_LIMIT}")));
                    None
                }
            }
        };
        limits.max_connections = count(&raw.max_connections, "max_connections", &mut problems);
        limits.per_account = count(&raw.max_connections_per_account, "max_connections_per_account", &mut problems);
        limits.per_peer = count(&raw.max_connections_per_peer, "max_connections_per_peer", &mut problems);
        let timeout = |value: &Option<Spanned<String>>, key: &str, problems: &mut Vec<(usize, String)>| -> Option<Duration> {
            let value = value.as_ref()?;
            parse_timeout(value.get_ref()).map_err(|e| problems.push((line_of(value.span().start), format!("limits.{key}: {e}")))).ok()
        };
        limits.header_timeout = timeout(&raw.header_timeout, "header_timeout", &mut problems);
        limits.idle_timeout = timeout(&raw.idle_timeout, "idle_timeout", &mut problems);
    }
    if !problems.is_empty() {
        return Err(ConfigError { file, problems });
    }
    Ok(DaemonFile { path: path.to_path_buf(), state, policy, socket, store, checkpoint_file, listeners, limits })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(source: &str) -> String {
        parse(source, Path::new("/etc/zsa/daemon.toml")).unwrap_err().to_string()
    }

    #[test]
    fn a_whole_file_is_read_with_paths_from_its_own_directory() {
        let source = r#"
state = "/var/lib/zsa"
policy = "policy.toml"
[[listen]]
address = "127.0.0.1:8443"
tls_cert = "tls/cert.pem"
tls_key = "/etc/zsa/tls/key.pem"
[[listen]]
address = "[::1]:0"
[limits]
max_connections_per_peer = 8
idle_timeout = "5s"
"#;
        let f = parse(source, Path::new("/etc/zsa/daemon.toml")).unwrap();
        assert_eq!(f.state.as_deref(), Some(Path::new("/var/lib/zsa")));
        assert_eq!(f.policy.as_deref(), Some(Path::new("/etc/zsa/policy.toml")));
        assert_eq!(f.socket, None);
        assert_eq!(f.listeners.len(), 2);
        assert_eq!(f.listeners[0].address, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(f.listeners[0].cert.as_deref(), Some(Path::new("/etc/zsa/tls/cert.pem")));
        assert_eq!(f.listeners[0].line, 4);
        assert_eq!((f.listeners[1].cert.as_ref(), f.listeners[1].key.as_ref()), (None, None));
        assert_eq!(f.limits.per_peer, Some(8));
        assert_eq!(f.limits.idle_timeout, Some(Duration::from_secs(5)));
        assert_eq!(f.limits.max_connections, None);
        assert_eq!(f.store, None);
        let f = parse("store = \"sqlite:db/zsa.db\"\n", Path::new("/etc/zsa/daemon.toml")).unwrap();
        assert_eq!(f.store, Some(crate::store::Location::Sqlite("/etc/zsa/db/zsa.db".into())));
        let f = parse("store = \"postgres://zsa@127.0.0.1:5432/zsa\"\n", Path::new("/etc/zsa/daemon.toml")).unwrap();
        assert_eq!(f.store, Some(crate::store::Location::Postgres("postgres://zsa@127.0.0.1:5432/zsa".into())));
    }

    #[test]
    fn each_mistake_names_its_line() {
        let p = problems("state = \"/s\"\n[[listen]]\naddress = \"localhost:8443\"\n");
        assert!(p.starts_with("/etc/zsa/daemon.toml:3: address: 'localhost:8443' is not an IP address and port"), "{p}");
        let p = problems("state = \"/s\"\nlisten_on = \"x\"\n");
        assert!(p.starts_with("/etc/zsa/daemon.toml:2: unknown field `listen_on`"), "{p}");
        let p = problems("[limits]\nmax_connections_per_peer = 0\nidle_timeout = \"soon\"\n");
        assert!(p.contains("daemon.toml:2: limits.max_connections_per_peer = 0: it must be from 1"), "{p}");
        assert!(p.contains("daemon.toml:3: limits.idle_timeout:"), "{p}");
        let p = problems("[[listen]]\naddress = \"127.0.0.1:1\"\ntls_certificate = \"c\"\n");
        assert!(p.starts_with("/etc/zsa/daemon.toml:3: unknown field `tls_certificate`"), "{p}");
        let p = problems("policy = \"\"\n");
        assert!(p.starts_with("/etc/zsa/daemon.toml:1: policy is empty"), "{p}");
        let p = problems("state = \"/s\"\nstore = \"mysql://zsa:hunter2@db/zsa\"\n");
        assert!(p.starts_with("/etc/zsa/daemon.toml:2: store: 'mysql://zsa:***@db/zsa' is not a store: give sqlite:PATH"), "{p}");
        assert!(!p.contains("hunter2"), "a password is never shown: {p}");
        let p = problems("store = \"postgres://zsa:hunter2@db:notaport/zsa\"\n");
        assert!(p.starts_with("/etc/zsa/daemon.toml:1: store: 'postgres://zsa:***@db:notaport/zsa' is not a PostgreSQL URL"), "{p}");
        assert!(!p.contains("hunter2"), "a password is never shown: {p}");
    }
}
