//! Just enough of an SMTP server, on loopback and written here with tokio, to take the mail zsa
//! sends: EHLO/MAIL/RCPT/DATA/QUIT, no TLS. Shared by the channel's own tests and the daemon's.

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// One mail as the server got it.
#[derive(Debug)]
pub struct Mail {
    /// The `MAIL FROM:` line.
    pub from: String,
    /// Every `RCPT TO:` line the server took for this mail, in order: the envelope's recipients.
    pub rcpt: Vec<String>,
    /// What came after DATA, dot-stuffing undone, CRLFs kept.
    pub data: String,
}

impl Mail {
    /// The header section (up to the first empty line), CRLFs kept.
    pub fn headers(&self) -> &str {
        self.data.split("\r\n\r\n").next().unwrap_or("")
    }
}

/// A server that answers RCPT with `rcpt_reply` (a 2xx reply takes the recipient). Every mail
/// taken is sent on the channel returned.
pub async fn smtp_server(rcpt_reply: &'static str) -> (u16, mpsc::UnboundedReceiver<Mail>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read);
                write.write_all(b"220 test.local ESMTP\r\n").await.unwrap();
                let (mut from, mut rcpt) = (String::new(), Vec::new());
                let mut line = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply: &str = match verb.as_str() {
                        "EHLO" | "HELO" => "250-test.local\r\n250 8BITMIME\r\n",
                        "MAIL" => {
                            from = line.trim_end().to_string();
                            rcpt.clear();
                            "250 ok\r\n"
                        }
                        "RCPT" => {
                            if rcpt_reply.starts_with('2') {
                                rcpt.push(line.trim_end().to_string());
                            }
                            rcpt_reply
                        }
                        "DATA" => {
                            write.write_all(b"354 go on\r\n").await.unwrap();
                            let mut data = String::new();
                            loop {
                                let mut l = String::new();
                                if lines.read_line(&mut l).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                if l == ".\r\n" {
                                    break;
                                }
                                // RFC 5321 4.5.2: a line the client began with a dot got one more.
                                data.push_str(l.strip_prefix('.').unwrap_or(&l));
                            }
                            let _ = tx.send(Mail { from: from.clone(), rcpt: std::mem::take(&mut rcpt), data });
                            "250 queued\r\n"
                        }
                        "QUIT" => {
                            write.write_all(b"221 bye\r\n").await.unwrap();
                            return;
                        }
                        "RSET" => {
                            (from, rcpt) = (String::new(), Vec::new());
                            "250 ok\r\n"
                        }
                        "NOOP" => "250 ok\r\n",
                        _ => "502 not here\r\n",
                    };
                    write.write_all(reply.as_bytes()).await.unwrap();
                }
            });
        }
    });
    (port, rx)
}
