//! An HTTP POST of the notice. `json`: the notice as JSON, signed (HMAC-SHA256 over
//! "<timestamp>.<body>", see docs/NOTICES.md for how a receiver checks it). `slack`: text and
//! blocks as Slack and Mattermost incoming webhooks take them, with nothing a user typed able to
//! format a link or ping anyone. The URL is a secret (chat webhook URLs carry their token), so it
//! is never in a message: only its host is.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use sha2::Sha256;

use super::{ChannelOptions, WebhookFormat, first_line, is_loopback};
use crate::clock::Clock;
use crate::notify::{DeliveryError, Notice};

pub const TIMESTAMP_HEADER: &str = "X-Zsa-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Zsa-Signature";
pub const DELIVERY_HEADER: &str = "X-Zsa-Delivery";

/// Slack shows at most 3000 characters in one section and 50 blocks in one message; a character
/// escapes to at most 5 (`&amp;`), so 600 raw characters always fit a section.
const SECTION_CHARS: usize = 600;
const MAX_SECTIONS: usize = 40;

pub struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
    format: WebhookFormat,
    secret: Option<Vec<u8>>,
    clock: Arc<dyn Clock>,
    timeout: Duration,
}

impl Webhook {
    pub fn new(url: &str, format: WebhookFormat, secret: Option<String>, options: &ChannelOptions) -> Result<Webhook, String> {
        // The URL is secret: say what is wrong with it, never what it is.
        let url = reqwest::Url::parse(url.trim()).map_err(|e| format!("the webhook URL is not a URL ({e})"))?;
        let host = url.host_str().unwrap_or_default().to_string();
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&host) => {}
            "http" => {
                return Err(format!(
                    "the webhook URL to {host} is plain http: the notice (and any token in the URL) would cross the network in the \
                     clear. Use https (plain http is allowed only to this machine)"
                ));
            }
            other => return Err(format!("the webhook URL's scheme is {other:?}; use https")),
        }
        let client = reqwest::Client::builder()
            .connect_timeout(options.timeout)
            .timeout(options.timeout)
            // A redirect would resend the notice somewhere the policy did not name.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Webhook { client, url, format, secret: secret.map(String::into_bytes), clock: options.clock.clone(), timeout: options.timeout })
    }

    fn host(&self) -> &str {
        self.url.host_str().unwrap_or("the webhook")
    }

    pub async fn deliver(&self, notice: &Notice) -> Result<(), DeliveryError> {
        let body = match self.format {
            WebhookFormat::Json => serde_json::to_vec(notice),
            WebhookFormat::Slack => serde_json::to_vec(&slack_body(notice)),
        }
        .map_err(|e| DeliveryError::Permanent(format!("cannot write notice {} as JSON: {e}", first_line(&notice.key))))?;
        let timestamp = self.clock.now().timestamp().to_string();
        let mut request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(DELIVERY_HEADER, &notice.key)
            .header(TIMESTAMP_HEADER, &timestamp);
        if let Some(secret) = &self.secret {
            request = request.header(SIGNATURE_HEADER, sign(secret, &timestamp, &body));
        }
        let host = self.host();
        let response = match request.body(body).send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Err(DeliveryError::Retry(format!("{host} did not answer within {}", humantime::format_duration(self.timeout))));
            }
            // without_url: the URL holds the webhook's token.
            Err(e) => return Err(DeliveryError::Retry(format!("cannot reach {host}: {}", error_chain(&e.without_url())))),
        };
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let said = response.text().await.unwrap_or_default();
        let message = format!("{host} answered {status}: {}", first_line(&said));
        Err(if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            DeliveryError::Retry(message)
        } else {
            DeliveryError::Permanent(message)
        })
    }
}

/// `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`, the value of `X-Zsa-Signature`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The error and its causes on one line ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    first_line(&text)
}

/// Text for Slack's mrkdwn (and Mattermost's markdown) that formats nothing and pings nobody:
/// `&`, `<` and `>` escaped as Slack asks (so `<!here>`, `<@U123>` and `<http://x|link>` stay
/// text), and every `@` made the fullwidth `＠` (so `@channel`, `@here`, `@everyone`, `@all` and
/// `@name` ping nobody on either).
pub fn slack_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '@' => out.push('\u{FF20}'),
            c => out.push(c),
        }
    }
    out
}

/// `{"text": ..., "blocks": [...]}`: `text` whole (what Mattermost shows, and Slack's
/// notification), the blocks the subject and the body in sections Slack accepts.
fn slack_body(notice: &Notice) -> serde_json::Value {
    let section = |text: String| serde_json::json!({"type": "section", "text": {"type": "mrkdwn", "text": text}});
    let mut blocks = vec![section(format!("*{}*", slack_escape(&notice.subject)))];
    let chars: Vec<char> = notice.text.chars().collect();
    let chunks: Vec<String> = chars.chunks(SECTION_CHARS).map(|c| c.iter().collect()).collect();
    let cut = chunks.len() > MAX_SECTIONS;
    blocks.extend(chunks.iter().take(MAX_SECTIONS).map(|c| section(slack_escape(c))));
    if cut {
        blocks.push(section("(cut short: see `zsa show` for the rest)".into()));
    }
    serde_json::json!({
        "text": format!("{}\n\n{}", slack_escape(&notice.subject), slack_escape(&notice.text)),
        "blocks": blocks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_a_user_typed_pings_or_links() {
        let hostile = "hi @channel @here @everyone <!here> <!channel> <@U024BE7LH> <https://evil.example|click> a&b";
        let shown = slack_escape(hostile);
        for bad in ["@", "<", ">", "&b"] {
            assert!(!shown.contains(bad), "{bad} survived in {shown}");
        }
        assert!(shown.contains("＠channel") && shown.contains("&lt;!here&gt;") && shown.contains("a&amp;b"), "{shown}");
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed apart: python3 -c "import hmac,hashlib; print(hmac.new(b'key', b'1700000000.{}', hashlib.sha256).hexdigest())"
        assert_eq!(sign(b"key", "1700000000", b"{}"), "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae");
    }
}
