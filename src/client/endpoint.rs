//! Where the daemon is: its Unix socket (`unix:PATH`, or a bare path as before) or a remote daemon
//! over TLS (`https://HOST:PORT`), and for a remote one how its certificate is trusted.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::tls::Trust;

/// A daemon's address, as written in `--socket`, ZSA_SOCKET, `zsa login` and a context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    Unix(PathBuf),
    /// `host` as in a URL (an IPv6 address in brackets).
    Https {
        host: String,
        port: u16,
    },
}

impl Address {
    /// Reads `unix:PATH`, `unix://PATH`, a bare path, or `https://HOST[:PORT]` (443 by default).
    /// Plain `http://` is refused: a token would cross the network in the clear.
    pub fn parse(text: &str) -> Result<Address, String> {
        let text = text.trim();
        if let Some(path) = text.strip_prefix("unix://").or_else(|| text.strip_prefix("unix:")) {
            if path.is_empty() {
                return Err("unix: needs the socket's path: unix:/run/zsa/zsa.sock".into());
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("http://") {
            return Err(format!(
                "{text}: plain http is never used, since the token would cross the network in the clear; \
                 a remote daemon is https://HOST:PORT"
            ));
        }
        if !lower.starts_with("https://") {
            if let Some((scheme, _)) = text.split_once("://") {
                return Err(format!("{text}: zsa speaks to unix:PATH or https://HOST:PORT, not {scheme}://"));
            }
            if text.is_empty() {
                return Err("the daemon's address is empty: give unix:PATH or https://HOST:PORT".into());
            }
            return Ok(Address::Unix(PathBuf::from(text)));
        }
        let url = reqwest::Url::parse(text).map_err(|e| format!("{text} is not a URL: {e}"))?;
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| format!("{text} names no host"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{text}: no name or password goes in the address; zsa login asks for the token"));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(format!("{text}: a daemon's address is https://HOST:PORT, with no path or query"));
        }
        // An IPv6 address comes in brackets, as a URL writes it.
        Ok(Address::Https { host: host.to_ascii_lowercase(), port: url.port_or_known_default().unwrap_or(443) })
    }

    pub fn is_remote(&self) -> bool {
        matches!(self, Address::Https { .. })
    }

    /// `host:port` of a remote daemon, the place refusals name.
    pub fn host_port(&self) -> Option<String> {
        match self {
            Address::Https { host, port } => Some(format!("{host}:{port}")),
            Address::Unix(_) => None,
        }
    }

    pub fn socket(&self) -> Option<&Path> {
        match self {
            Address::Unix(path) => Some(path),
            Address::Https { .. } => None,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
            Address::Https { host, port } => write!(f, "https://{host}:{port}"),
        }
    }
}

/// An address, and for a remote daemon how its certificate is trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub address: Address,
    pub trust: Option<Trust>,
}

impl Endpoint {
    pub fn unix(path: &Path) -> Endpoint {
        Endpoint { address: Address::Unix(path.to_path_buf()), trust: None }
    }

    /// How people know it: a socket's path, as before, or a remote daemon's URL.
    pub fn describe(&self) -> String {
        match &self.address {
            Address::Unix(path) => path.display().to_string(),
            remote => remote.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_as_documented() {
        let unix = |p: &str| Ok(Address::Unix(PathBuf::from(p)));
        assert_eq!(Address::parse("/run/zsa/zsa.sock"), unix("/run/zsa/zsa.sock"));
        assert_eq!(Address::parse("unix:/run/zsa/zsa.sock"), unix("/run/zsa/zsa.sock"));
        assert_eq!(Address::parse("unix:///run/zsa/zsa.sock"), unix("/run/zsa/zsa.sock"));
        assert_eq!(Address::parse("zsa.sock"), unix("zsa.sock"));
        let https = |h: &str, port| Ok(Address::Https { host: h.into(), port });
        assert_eq!(Address::parse("https://ZSA.example.com:8443"), https("zsa.example.com", 8443));
        assert_eq!(Address::parse("https://zsa.example.com/"), https("zsa.example.com", 443));
        assert_eq!(Address::parse("https://[::1]:9000"), https("[::1]", 9000));
        assert_eq!(Address::parse("https://127.0.0.1:9000").unwrap().to_string(), "https://127.0.0.1:9000");
        assert_eq!(Address::parse("unix:/s").unwrap().to_string(), "unix:/s");
    }

    #[test]
    fn plain_http_and_tokens_in_urls_are_refused_saying_why() {
        assert!(Address::parse("http://zsa:80").unwrap_err().contains("in the clear"));
        assert!(Address::parse("https://alice:secret@zsa:8443").unwrap_err().contains("no name or password"));
        assert!(Address::parse("https://zsa:8443/v1?token=x").unwrap_err().contains("no path or query"));
        assert!(Address::parse("ftp://zsa").unwrap_err().contains("not ftp://"));
        assert!(Address::parse("unix:").is_err());
    }
}
