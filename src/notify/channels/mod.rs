//! How a rendered `Notice` reaches someone: one kind per module. Channels are declared in the
//! policy as `[channels.NAME]` with a `kind`; secrets (SMTP password, webhook URL and signing key)
//! are never in the policy or the log: the policy names a file or an environment variable that
//! holds them.

use serde::Deserialize;

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
