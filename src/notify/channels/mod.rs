//! How a rendered `Notice` reaches someone: one kind per module. Channels are declared in the
//! policy as `[channels.NAME]` with a `kind`; secrets (SMTP password, webhook URL and signing key)
//! are never in the policy or the log: the policy names a file or an environment variable that
//! holds them.

mod exec;
mod file;
mod smtp;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::clock::Clock;
use crate::notify::{DeliveryError, Notice};

pub use exec::Exec;
pub use file::File;
pub use smtp::Smtp;
pub use webhook::{Webhook, slack_escape};

/// Where a secret is read from when the channel is built (at policy load). A secret written
/// inline is refused without being repeated in the message (see `WrittenSecret`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "WrittenSecret")]
pub enum SecretSource {
    /// A file readable by the daemon only (the daemon refuses one others may read or write).
    File(std::path::PathBuf),
    /// An environment variable of the daemon.
    Env(String),
}

/// A secret as the policy writes it: `{ file = "/path" }` or `{ env = "NAME" }`, or (refused)
/// the secret itself.
#[derive(Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum WrittenSecret {
    Named {
        file: Option<std::path::PathBuf>,
        env: Option<String>,
    },
    /// Never read: a secret written inline is refused, and not repeated.
    Inline(#[allow(dead_code)] String),
}

impl TryFrom<WrittenSecret> for SecretSource {
    type Error = &'static str;

    fn try_from(written: WrittenSecret) -> Result<Self, Self::Error> {
        match written {
            WrittenSecret::Named { file: Some(f), env: None } => Ok(SecretSource::File(f)),
            WrittenSecret::Named { file: None, env: Some(e) } => Ok(SecretSource::Env(e)),
            WrittenSecret::Inline(_) => Err("secrets are never written in the policy (it is logged and shared): name a file that \
                 holds it, { file = \"/etc/zsa/NAME\" }, or an environment variable of the daemon, { env = \"NAME\" }"),
            WrittenSecret::Named { .. } => Err("a secret is read from exactly one place: write { file = \"/path\" } or { env = \"NAME\" }"),
        }
    }
}

/// `[channels.NAME]` as written in the policy, by `kind`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChannelConfig {
    /// Email over SMTP: `host`, `port`, `tls` ("starttls", "tls", or "none" for a relay on
    /// loopback only), `from`, optional `username` with `password` (a SecretSource).
    Smtp { host: String, port: Option<u16>, tls: SmtpTls, from: String, username: Option<String>, password: Option<SecretSource> },
    /// An HTTP POST of the notice: `url` (a SecretSource: chat webhook URLs are secrets),
    /// `format` ("json", signed with HMAC-SHA256 over timestamp + body when `secret` is set; or
    /// "slack": text + blocks, as Slack and Mattermost incoming webhooks take).
    Webhook { url: SecretSource, format: WebhookFormat, secret: Option<SecretSource> },
    /// A program (absolute path, no shell) that gets the notice as JSON on standard input.
    Exec { program: std::path::PathBuf, args: Option<Vec<String>> },
    /// Appends each notice as a JSON line to a file: for `zsa demo` and for trying a policy out.
    File { path: std::path::PathBuf },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    Starttls,
    Tls,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    Json,
    Slack,
}

/// How long one delivery may take, connecting and sending together, unless the channel is built
/// with another: a receiver that never answers must not hold a delivery (or the sender) forever.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What every channel is built with besides its own `[channels.NAME]`.
#[derive(Clone)]
pub struct ChannelOptions {
    /// The most one delivery may take, connecting included.
    pub timeout: Duration,
    /// The time a webhook signs (the sender's clock, so tests can set it).
    pub clock: Arc<dyn Clock>,
}

impl ChannelOptions {
    pub fn new(clock: Arc<dyn Clock>) -> ChannelOptions {
        ChannelOptions { timeout: DEFAULT_TIMEOUT, clock }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> ChannelOptions {
        self.timeout = timeout;
        self
    }
}

/// Why a channel cannot be built from its `[channels.NAME]`: said whole, naming the channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("channel {channel}: {problem}")]
pub struct ChannelSetupError {
    pub channel: String,
    pub problem: String,
}

/// A channel ready to deliver: its secrets read, its client built. Built once when the policy
/// loads, so a missing secret is reported then rather than at the first notice.
pub enum Channel {
    Smtp(Smtp),
    Webhook(Webhook),
    Exec(Exec),
    File(File),
}

impl Channel {
    pub fn build(name: &str, config: &ChannelConfig, options: &ChannelOptions) -> Result<Channel, ChannelSetupError> {
        let fail = |problem: String| ChannelSetupError { channel: name.to_string(), problem };
        Ok(match config {
            ChannelConfig::Smtp { host, port, tls, from, username, password } => {
                let password =
                    password.as_ref().map(|p| read_secret(p, &format!("the SMTP password of channel {name}"))).transpose().map_err(fail)?;
                Channel::Smtp(Smtp::new(host, *port, *tls, from, username.as_deref(), password, options.timeout).map_err(fail)?)
            }
            ChannelConfig::Webhook { url, format, secret } => {
                let url = read_secret(url, &format!("the webhook URL of channel {name}")).map_err(fail)?;
                let secret =
                    secret.as_ref().map(|s| read_secret(s, &format!("the signing key of channel {name}"))).transpose().map_err(fail)?;
                Channel::Webhook(Webhook::new(&url, *format, secret, options).map_err(fail)?)
            }
            ChannelConfig::Exec { program, args } => {
                Channel::Exec(Exec::new(program, args.clone().unwrap_or_default(), options.timeout).map_err(fail)?)
            }
            ChannelConfig::File { path } => Channel::File(File::new(path, options.timeout)),
        })
    }

    /// Delivers one notice, within the channel's timeout. `Retry` when trying later may help.
    pub async fn deliver(&self, notice: &Notice) -> Result<(), DeliveryError> {
        match self {
            Channel::Smtp(c) => c.deliver(notice).await,
            Channel::Webhook(c) => c.deliver(notice).await,
            Channel::Exec(c) => c.deliver(notice).await,
            Channel::File(c) => c.deliver(notice).await,
        }
    }
}

/// Reads a secret from where the policy says. A trailing newline (as `echo` leaves) is not part
/// of it; an empty secret is refused, since it is surely a mistake.
pub fn read_secret(source: &SecretSource, role: &str) -> Result<String, String> {
    let raw = match source {
        SecretSource::File(path) => crate::fs_trust::read_secret(path, role).map_err(|e| e.to_string())?,
        SecretSource::Env(var) => std::env::var(var).map_err(|e| match e {
            std::env::VarError::NotPresent => {
                format!("{role} is to come from the environment variable {var}, which the daemon's environment does not have; set it where the daemon starts (e.g. an EnvironmentFile= of its unit)")
            }
            std::env::VarError::NotUnicode(_) => format!("{role}: the environment variable {var} is not valid UTF-8"),
        })?,
    };
    let secret = raw.trim_end_matches(['\n', '\r']).to_string();
    if secret.is_empty() {
        return Err(format!("{role} is empty; put the secret in it"));
    }
    Ok(secret)
}

/// Is `host` this machine (a name or address that cannot leave it)? Only there may mail go
/// without TLS, or a webhook over plain HTTP.
pub(crate) fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The first line of what the other side said, inert and short: enough to say why, never enough
/// to flood the log or move a terminal's cursor.
pub(crate) fn first_line(said: &str) -> String {
    let line = said.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let mut shown: String = crate::model::text::inert_line(line).chars().take(200).collect();
    if line.chars().count() > 200 {
        shown.push('…');
    }
    shown
}
