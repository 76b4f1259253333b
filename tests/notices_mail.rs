//! Notices by email end to end: the real daemon mails approvers and requesters through its smtp
//! channel to an SMTP server on loopback (`common::smtp`), and the mails are read as a mail client
//! would (mail-parser: headers, MIME parts, transfer encodings). Nothing of zsa is mocked.

mod common;

use std::time::Duration;

use common::Daemon;
use common::smtp::{Mail, smtp_server};
use mail_parser::MessageParser;
use tokio::sync::mpsc;
use zsa::model::wire::NewRequest;
use zsa::notify::outbox::DeliveryState;

/// Generous, for waiting on something that must happen; never a bound on how fast.
const PATIENCE: Duration = Duration::from_secs(60);

/// Approvers and on-call people with addresses, and mail for every new request (to its
/// approvers) and every decision (to its requester) through `mail`, plain SMTP to `{PORT}`.
const POLICY: &str = r#"
[settings]
pending_ttl = "1h"
[groups]
admins = ["{ADMIN}"]
approvers = ["alice", "bob", "carol"]
oncall = ["carol", "dave"]
[roles]
admins = ["admins"]
[[tasks]]
name = "journal"
description = "Exchange journal rules"
requesters = ["oncall"]
approval = "manual"
approvers = ["approvers"]
max_duration = "4h"
[people.alice]
email = "alice@example.com"
[people.bob]
email = "bob@example.com"
[people.carol]
email = "carol@example.com"
[people.dave]
email = "dave@example.com"
[channels.mail]
kind = "smtp"
host = "127.0.0.1"
port = {PORT}
tls = "none"
from = "zsa <zsa@example.com>"
[[notify]]
on = ["request_created"]
to = ["approvers"]
via = "mail"
[[notify]]
on = ["request_approved", "request_denied"]
to = ["requester"]
via = "mail"
"#;

const APPROVERS: [&str; 3] = ["alice", "bob", "carol"];

/// One mail as a mail client reads it.
#[derive(Debug)]
struct Read {
    /// The envelope's recipients (RCPT TO), as addresses.
    rcpt: Vec<String>,
    /// The raw header section.
    headers: String,
    /// The To header: (display name, address) of each recipient it names.
    to: Vec<(Option<String>, String)>,
    bcc: bool,
    cc: bool,
    subject: String,
    text: String,
    html: String,
}

fn read(mail: &Mail) -> Read {
    let message = MessageParser::default().parse(mail.data.as_bytes()).unwrap_or_else(|| panic!("not a mail:\n{}", mail.data));
    let to = message
        .to()
        .and_then(|a| a.as_list())
        .unwrap_or_default()
        .iter()
        .map(|a| (a.name().map(str::to_string), a.address().unwrap_or_default().to_string()))
        .collect();
    assert_eq!((message.text_body_count(), message.html_body_count()), (1, 1), "one plain text and one HTML part:\n{}", mail.data);
    Read {
        rcpt: mail.rcpt.iter().map(|r| r.trim_start_matches("RCPT TO:<").trim_end_matches('>').to_string()).collect(),
        headers: mail.headers().to_string(),
        to,
        bcc: message.bcc().is_some(),
        cc: message.cc().is_some(),
        subject: message.subject().unwrap_or_default().to_string(),
        // Lines end in CRLF on the wire; a reader sees lines.
        text: message.body_text(0).unwrap_or_default().replace("\r\n", "\n"),
        html: message.body_html(0).unwrap_or_default().replace("\r\n", "\n"),
    }
}

/// The next `n` mails, sorted by their envelope recipients.
async fn next_mails(mails: &mut mpsc::UnboundedReceiver<Mail>, n: usize) -> Vec<Read> {
    let mut got = Vec::new();
    for _ in 0..n {
        let mail = tokio::time::timeout(PATIENCE, mails.recv()).await.expect("a mail within the patience").expect("server running");
        got.push(read(&mail));
    }
    got.sort_by(|a, b| a.rcpt.cmp(&b.rcpt));
    got
}

/// Each mail went to one person only, by envelope and by header, and nothing in it is a header
/// the daemon did not mean to write: no Bcc, no Cc, and `evil@example.com` in no header.
fn one_recipient_each(mails: &[Read], names: &[&str]) {
    let addresses: Vec<Vec<String>> = mails.iter().map(|m| m.rcpt.clone()).collect();
    let expected: Vec<Vec<String>> = names.iter().map(|n| vec![format!("{n}@example.com")]).collect();
    assert_eq!(addresses, expected, "the envelope's recipients");
    for (m, name) in mails.iter().zip(names) {
        assert_eq!(m.to, [(Some(name.to_string()), format!("{name}@example.com"))], "{}", m.headers);
        assert!(!m.bcc && !m.cc, "a Bcc or Cc header:\n{}", m.headers);
        let lines: Vec<String> = m.headers.lines().map(str::to_ascii_lowercase).collect();
        assert!(!lines.iter().any(|l| l.starts_with("bcc:") || l.starts_with("cc:")), "{}", m.headers);
        assert!(!m.headers.contains("evil@example.com"), "{}", m.headers);
    }
}

/// The daemon's outbox, once every delivery in it has been sent: (trigger, recipient) of each.
async fn all_sent(d: &Daemon, count: usize) -> Vec<(String, String)> {
    let until = tokio::time::Instant::now() + PATIENCE;
    loop {
        let notices = d.admin().notices(false).await.unwrap();
        if notices.len() == count && notices.iter().all(|n| n.state == DeliveryState::Sent) {
            let mut got: Vec<_> = notices.iter().map(|n| (n.trigger.as_str().to_string(), n.recipient.clone())).collect();
            got.sort();
            return got;
        }
        assert!(tokio::time::Instant::now() < until, "not all {count} notices were sent: {notices:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn daemon() -> (Daemon, mpsc::UnboundedReceiver<Mail>) {
    let (port, mails) = smtp_server("250 ok\r\n").await;
    (Daemon::start_with(&POLICY.replace("{PORT}", &port.to_string())), mails)
}

#[tokio::test(flavor = "multi_thread")]
async fn approvers_get_a_mail_with_everything_and_the_requester_the_decision() {
    let (mut d, mut mails) = daemon().await;
    let dave = d.user("dave").await;
    let new = NewRequest {
        task: "journal".into(),
        duration_secs: Some(1800),
        reason: Some("mail flow to the archive is broken".into()),
        ticket: Some("INC-4711".into()),
        ..Default::default()
    };
    let id = dave.request(&new).await.unwrap().request.id;
    assert_eq!(id.to_string(), "R1");

    let asked = next_mails(&mut mails, 3).await;
    one_recipient_each(&asked, &APPROVERS);
    for m in &asked {
        assert_eq!(m.subject, "R1: dave asks for journal (30m)");
        for line in [
            "Who: dave",
            "Task: journal (Exchange journal rules)",
            "For: 30m",
            "Why: mail flow to the archive is broken",
            "Ticket: INC-4711",
            "Approvals: 0 of 1 (none yet)",
            "  zsa approve R1\n",
            "  zsa deny R1 --comment \"why\"\n",
        ] {
            assert!(m.text.contains(line), "{line:?} missing from the text part:\n{}", m.text);
        }
        for cell in [
            "<th align=\"left\">Who</th><td>dave</td>",
            "<th align=\"left\">Task</th><td>journal (Exchange journal rules)</td>",
            "<th align=\"left\">For</th><td>30m</td>",
            "<th align=\"left\">Why</th><td>mail flow to the archive is broken</td>",
            "<th align=\"left\">Ticket</th><td>INC-4711</td>",
            "<pre>zsa approve R1\n",
        ] {
            assert!(m.html.contains(cell), "{cell:?} missing from the HTML part:\n{}", m.html);
        }
    }

    d.user("alice").await.approve(id, Some("go ahead".into())).await.unwrap();
    let decided = next_mails(&mut mails, 1).await;
    one_recipient_each(&decided, &["dave"]);
    let m = &decided[0];
    assert_eq!(m.subject, "R1: alice approved dave's request for journal (1 of 1)");
    for line in ["By: alice", "Comment: go ahead", "  zsa show R1\n"] {
        assert!(m.text.contains(line), "{line:?} missing from the text part:\n{}", m.text);
    }
    assert!(m.html.contains("<th align=\"left\">By</th><td>alice</td>"), "{}", m.html);

    let mut expected: Vec<(String, String)> =
        APPROVERS.iter().map(|a| ("request_created".to_string(), format!("{a}@example.com"))).collect();
    expected.push(("request_approved".into(), "dave@example.com".into()));
    expected.sort();
    assert_eq!(all_sent(&d, 4).await, expected);
    assert!(mails.try_recv().is_err(), "a mail the outbox does not account for");
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_a_user_types_adds_a_header_or_a_recipient_or_markup() {
    let (mut d, mut mails) = daemon().await;
    let dave = d.user("dave").await;
    let request = |reason: &str, ticket: Option<&str>| NewRequest {
        task: "journal".into(),
        duration_secs: Some(600),
        reason: Some(reason.into()),
        ticket: ticket.map(Into::into),
        ..Default::default()
    };

    // A CR never gets in: the reason is refused at request time, through the API and the CLI...
    let crlf = "urgent\r\nBcc: evil@example.com";
    let refused = dave.request(&request(crlf, None)).await.unwrap_err();
    assert_eq!(refused.code(), "bad_text", "{refused}");
    assert!(refused.to_string().contains("control character U+000D at position 7"), "{refused}");
    let out = d.cli(Some("dave"), &["request", "journal", "--for", "10m", "--reason", crlf]).await;
    assert_ne!(common::code(&out), 0, "{}", common::stdout(&out));
    assert!(common::stderr(&out).contains("control character U+000D"), "{}", common::stderr(&out));
    // ...and so is a ticket with any line break (a ticket is one line), and a user name with one.
    for ticket in ["INC-1\r\nBcc: evil@example.com", "INC-1\nBcc: evil@example.com"] {
        let refused = dave.request(&request("fine", Some(ticket))).await.unwrap_err();
        assert_eq!(refused.code(), "bad_text", "{refused}");
    }
    let refused = d.admin().issue_token("dave\r\nBcc: evil@example.com").await.unwrap_err();
    assert!(refused.to_string().contains("is not a valid user name"), "{refused}");
    assert!(d.admin().requests(true).await.unwrap().is_empty(), "a refused request was recorded");

    // A reason may span lines (LF): it reaches the mail as one inert line, and its markup as text.
    let hostile = "urgent\nBcc: evil@example.com\n<script>alert(1)</script> & <b>bold</b>";
    let id = dave.request(&request(hostile, Some("INC-1"))).await.unwrap().request.id;
    let asked = next_mails(&mut mails, 3).await;
    one_recipient_each(&asked, &APPROVERS);
    for m in &asked {
        assert_eq!(m.subject, format!("{id}: dave asks for journal (10m)"));
        assert!(!m.text.lines().any(|l| l.to_ascii_lowercase().starts_with("bcc:")), "{}", m.text);
        assert!(m.text.contains("Why: urgent Bcc: evil@example.com <script>alert(1)</script> & <b>bold</b>\n"), "{}", m.text);
        let cell = "<td>urgent Bcc: evil@example.com &lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;</td>";
        assert!(m.html.contains(cell), "{cell} missing from:\n{}", m.html);
        assert!(!m.html.contains("<script>") && !m.html.contains("<b>"), "{}", m.html);
    }

    // The same for what an approver types: a denial's comment.
    let comment = "not like this\nBcc: evil@example.com\n<img src=x onerror=alert(1)>";
    d.user("bob").await.deny(id, Some(comment.into())).await.unwrap();
    let denied = next_mails(&mut mails, 1).await;
    one_recipient_each(&denied, &["dave"]);
    let m = &denied[0];
    assert_eq!(m.subject, format!("{id}: bob denied dave's request for journal"));
    assert!(m.text.contains("Comment: not like this Bcc: evil@example.com <img src=x onerror=alert(1)>\n"), "{}", m.text);
    assert!(m.html.contains("<td>not like this Bcc: evil@example.com &lt;img src=x onerror=alert(1)&gt;</td>"), "{}", m.html);
    assert!(!m.html.contains("<img"), "{}", m.html);

    // Nothing else went out: every mail is one the outbox planned, to one of its recipients.
    let mut expected: Vec<(String, String)> =
        APPROVERS.iter().map(|a| ("request_created".to_string(), format!("{a}@example.com"))).collect();
    expected.push(("request_denied".into(), "dave@example.com".into()));
    expected.sort();
    assert_eq!(all_sent(&d, 4).await, expected);
    assert!(mails.try_recv().is_err(), "a mail the outbox does not account for");
}
