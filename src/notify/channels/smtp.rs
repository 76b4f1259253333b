//! Email over SMTP with lettre: STARTTLS or TLS (or, to a relay on this machine only, none),
//! optional authentication, a plain text and an HTML part. Headers are written by lettre, which
//! encodes the subject and names; a CR or LF in them is refused before that anyway, so no text
//! of a notice can add a header.

use std::time::{Duration, SystemTime};

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::{Digest, Sha256};

use super::{SmtpTls, first_line, is_loopback};
use crate::notify::{DeliveryError, Notice};

pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// `host:port`, to say where a delivery failed.
    server: String,
    from: Mailbox,
    timeout: Duration,
}

impl Smtp {
    pub fn new(
        host: &str,
        port: Option<u16>,
        tls: SmtpTls,
        from: &str,
        username: Option<&str>,
        password: Option<String>,
        timeout: Duration,
    ) -> Result<Smtp, String> {
        let from: Mailbox = from.parse().map_err(|e| {
            format!("from = {from:?} is not an email address ({e}); write it as \"zsa <zsa@example.com>\" or \"zsa@example.com\"")
        })?;
        let builder = match tls {
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
            SmtpTls::None if is_loopback(host) => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)),
            SmtpTls::None => {
                return Err(format!(
                    "tls = \"none\" would send mail (and any password) to {host} in the clear; it is allowed only for a relay on this \
                     machine (localhost, 127.0.0.1, ::1). Use tls = \"starttls\" or \"tls\""
                ));
            }
        };
        let mut builder = builder.map_err(|e| format!("cannot use {host} as a TLS server name: {e}"))?;
        if let Some(port) = port {
            builder = builder.port(port);
        }
        builder = builder.timeout(Some(timeout));
        match (username, password) {
            (Some(user), Some(password)) => builder = builder.credentials(Credentials::new(user.to_string(), password)),
            (None, None) => {}
            (Some(user), None) => {
                return Err(format!(
                    "username = {user:?} is set without a password; add password = {{ file = \"...\" }} or {{ env = \"...\" }}"
                ));
            }
            (None, Some(_)) => return Err("a password is set without a username; add username = \"...\"".into()),
        }
        let port = port.unwrap_or(match tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        });
        Ok(Smtp { transport: builder.build(), server: format!("{host}:{port}"), from, timeout })
    }

    /// The mail for one notice. Refusals here are permanent: the same notice would fail again.
    fn message(&self, notice: &Notice) -> Result<Message, DeliveryError> {
        let refuse = |problem: String| DeliveryError::Permanent(format!("mail for {}: {problem}", first_line(&notice.key)));
        no_line_break("subject", &notice.subject).map_err(refuse)?;
        if let Some(name) = &notice.to.name {
            no_line_break("recipient's name", name).map_err(refuse)?;
        }
        if notice.to.address.is_empty() {
            return Err(refuse(format!(
                "{} has no email address; give them one in the policy's [people] table",
                first_line(notice.to.name.as_deref().unwrap_or("the recipient"))
            )));
        }
        let address: Address =
            notice.to.address.parse().map_err(|e| refuse(format!("{:?} is not an email address ({e})", first_line(&notice.to.address))))?;
        // The same Message-ID on every retry lets a mail client show a retried notice once.
        let digest = hex::encode(Sha256::digest(notice.key.as_bytes()));
        let message_id = format!("<{}.zsa@{}>", &digest[..32], self.from.email.domain());
        Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(notice.to.name.clone(), address))
            .subject(notice.subject.clone())
            .message_id(Some(message_id))
            .date(SystemTime::from(notice.at))
            .multipart(MultiPart::alternative_plain_html(notice.text.clone(), notice.html.clone()))
            .map_err(|e| refuse(format!("cannot build the mail: {e}")))
    }

    pub async fn deliver(&self, notice: &Notice) -> Result<(), DeliveryError> {
        let message = self.message(notice)?;
        let server = &self.server;
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.is_permanent() => {
                Err(DeliveryError::Permanent(format!("the mail server {server} refused the mail: {}", first_line(&e.to_string()))))
            }
            Ok(Err(e)) => {
                Err(DeliveryError::Retry(format!("the mail server {server} did not take the mail: {}", first_line(&e.to_string()))))
            }
            Err(_) => Err(DeliveryError::Retry(format!(
                "the mail server {server} did not finish within {}",
                humantime::format_duration(self.timeout)
            ))),
        }
    }
}

/// A header's text must stay on its line: a CR or LF (or any other control character) in it could
/// end the header and start one of the sender's choosing.
fn no_line_break(what: &str, text: &str) -> Result<(), String> {
    match text.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!(
            "the {what} holds the control character U+{:04X} (a line break could add a mail header); it was not sent",
            c as u32
        )),
        None => Ok(()),
    }
}
