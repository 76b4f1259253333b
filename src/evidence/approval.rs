//! Approvals signed with the approver's SSH key: the one statement an approver signs (built the
//! same way by the client that asks the agent to sign, the daemon that checks before counting,
//! and the offline verifier), the SSHSIG wrapping (namespace `zsa`) and its check. Pure: the
//! agent is the client's business (`client::agent`), the policy's keys the caller's.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use ssh_key::{HashAlg, LineEnding, PublicKey, SshSig};

use crate::model::{ApprovalSignature, Request, RequestId, SignedApproval};

/// The SSHSIG namespace: a signature made for zsa is never valid for git, a file or a login.
pub const NAMESPACE: &str = "zsa";

/// The longest armored signature taken (an RSA 16384-bit one is about 3 KiB).
pub const MAX_SIGNATURE_CHARS: usize = 16 * 1024;

/// What of a request an approver vouches for: everything the grant it starts depends on.
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    pub request: RequestId,
    pub task: &'a str,
    pub requester: &'a str,
    pub duration_secs: u64,
    pub reason: Option<&'a str>,
    pub ticket: Option<&'a str>,
    pub params: &'a BTreeMap<String, String>,
    pub requested_at: DateTime<Utc>,
    /// The grant an extension request would lengthen.
    pub extends: Option<crate::model::GrantId>,
    /// When the grant would start, if asked ahead.
    pub starts_at: Option<DateTime<Utc>>,
}

impl<'a> From<&'a Request> for Facts<'a> {
    fn from(r: &'a Request) -> Self {
        Facts {
            request: r.id,
            task: &r.task,
            requester: &r.requester,
            duration_secs: r.duration_secs,
            reason: r.reason.as_deref(),
            ticket: r.ticket.as_deref(),
            params: &r.params,
            requested_at: r.created_at,
            extends: r.extends,
            starts_at: r.starts_at,
        }
    }
}

/// The statement, field by field in a fixed order; serde_json escapes every control character,
/// so nothing typed into a request can add a field or a line.
#[derive(Serialize)]
struct Statement<'a> {
    statement: &'static str,
    request: String,
    task: &'a str,
    requester: &'a str,
    duration_secs: u64,
    /// The reason's SHA-256: the approver read it; the statement need not repeat it.
    reason_sha256: Option<String>,
    ticket: Option<&'a str>,
    params: &'a BTreeMap<String, String>,
    requested_at: String,
    /// Only on an extension: what approving it lengthens.
    #[serde(skip_serializing_if = "Option::is_none")]
    extends: Option<String>,
    /// Only when asked ahead: when the grant starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    starts_at: Option<String>,
    approver: &'a str,
    signed_at: String,
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The exact bytes `approver` signs to approve the request `facts` describe at `signed_at`.
pub fn statement(facts: &Facts<'_>, approver: &str, signed_at: DateTime<Utc>) -> String {
    let s = Statement {
        statement: "zsa approval v1",
        request: facts.request.to_string(),
        task: facts.task,
        requester: facts.requester,
        duration_secs: facts.duration_secs,
        reason_sha256: facts.reason.map(|r| hex::encode(Sha256::digest(r.as_bytes()))),
        ticket: facts.ticket,
        params: facts.params,
        requested_at: time(facts.requested_at),
        extends: facts.extends.map(|g| g.to_string()),
        starts_at: facts.starts_at.map(time),
        approver,
        signed_at: time(signed_at),
    };
    // Serializing plain strings, numbers and a map of strings cannot fail.
    serde_json::to_string(&s).unwrap_or_default()
}

/// What the SSH agent is asked to sign for `statement` (the SSHSIG "signed data").
pub fn to_be_signed(statement: &str) -> Result<Vec<u8>, String> {
    SshSig::signed_data(NAMESPACE, HashAlg::Sha512, statement.as_bytes()).map_err(|e| format!("cannot frame the statement: {e}"))
}

/// The armored SSHSIG from the agent's signature with `key`.
pub fn armor(key: &PublicKey, signature: ssh_key::Signature) -> Result<String, String> {
    let sig = SshSig::new(key.key_data().clone(), NAMESPACE, HashAlg::Sha512, signature).map_err(|e| e.to_string())?;
    sig.to_pem(LineEnding::LF).map_err(|e| e.to_string())
}

/// Why a signature does not stand for the approval it came with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bad {
    /// Not an SSH signature at all (or too long).
    Unreadable(String),
    /// Made with a key not listed for the approver (its fingerprint).
    UnknownKey(String),
    /// Made over another statement (another request, approver or time), or for another use.
    Mismatch,
}

fn parse(armored: &str) -> Result<SshSig, Bad> {
    if armored.len() > MAX_SIGNATURE_CHARS {
        return Err(Bad::Unreadable(format!("it is longer than {MAX_SIGNATURE_CHARS} characters")));
    }
    armored.trim().parse::<SshSig>().map_err(|e| Bad::Unreadable(e.to_string()))
}

/// Checks `signed` as `approver`'s approval of `facts`, made with one of `keys` (those the
/// policy lists for the approver): what the log keeps if it holds.
pub fn check(facts: &Facts<'_>, approver: &str, signed: &SignedApproval, keys: &[PublicKey]) -> Result<ApprovalSignature, Bad> {
    let sig = parse(&signed.signature)?;
    let Some(key) = keys.iter().find(|k| k.key_data() == sig.public_key()) else {
        return Err(Bad::UnknownKey(PublicKey::from(sig.public_key().clone()).fingerprint(HashAlg::Sha256).to_string()));
    };
    let text = statement(facts, approver, signed.signed_at);
    key.verify(NAMESPACE, text.as_bytes(), &sig).map_err(|_| Bad::Mismatch)?;
    Ok(ApprovalSignature { signed_at: signed.signed_at, key: crate::policy::fingerprint(key), signature: signed.signature.clone() })
}

/// Checks a recorded signature again with no policy at hand: made by the key the record names
/// (the key is inside the signature) over the statement for `facts` and `approver`, at a time
/// the daemon would have taken when it recorded it at `recorded_at`.
pub fn check_recorded(facts: &Facts<'_>, approver: &str, recorded: &ApprovalSignature, recorded_at: DateTime<Utc>) -> Result<(), String> {
    use crate::model::text::inert_line;
    let sig = parse(&recorded.signature).map_err(|e| match e {
        Bad::Unreadable(why) => format!("its signature cannot be read: {}", inert_line(&why)),
        _ => "its signature cannot be read".into(),
    })?;
    let key = PublicKey::from(sig.public_key().clone());
    let print = crate::policy::fingerprint(&key);
    if print != recorded.key {
        return Err(format!("it names the key {}, but its signature was made with {print}", inert_line(&recorded.key)));
    }
    if (recorded.signed_at - recorded_at).num_seconds().abs() > SIGNED_AT_SLACK_SECS {
        return Err(format!(
            "it was signed at {}, more than {} minutes from when it was recorded ({}): the daemon would have refused it",
            time(recorded.signed_at),
            SIGNED_AT_SLACK_SECS / 60,
            time(recorded_at)
        ));
    }
    let text = statement(facts, approver, recorded.signed_at);
    key.verify(NAMESPACE, text.as_bytes(), &sig).map_err(|_| {
        format!(
            "the signature by {print} is not over this approval of {} as the log records it: the request or the approval was altered",
            facts.request
        )
    })
}

/// How far the time an approver says they signed may be from the daemon's when it records the
/// approval: signing and sending take seconds, so a signature kept for later, or from a badly
/// wrong clock, is refused.
pub const SIGNED_AT_SLACK_SECS: i64 = 10 * 60;

/// Who may sign as whom, from an OpenSSH `allowed_signers` file (`alice ssh-ed25519 AAAA...`,
/// several principals separated by commas): what an auditor holds to check, offline, that each
/// signed approval was made with a key of its approver's, not merely a key the log names.
#[derive(Clone, Debug, Default)]
pub struct AllowedSigners {
    by_principal: std::collections::HashMap<String, Vec<String>>,
}

impl AllowedSigners {
    /// Reads the file's text; `source` names it in messages. Options (`namespaces=...`,
    /// `valid-after=...`) are not read, and a line that has them is refused rather than trusted
    /// without them.
    pub fn parse(text: &str, source: &str) -> Result<AllowedSigners, String> {
        let mut by_principal: std::collections::HashMap<String, Vec<String>> = Default::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("{source}:{}", n + 1);
            let (principals, key) =
                line.split_once(char::is_whitespace).ok_or_else(|| format!("{at}: a line is principals, then a key"))?;
            let key = PublicKey::from_openssh(key.trim()).map_err(|e| {
                format!("{at}: not a public key after the principals ({e}); options such as namespaces= or valid-after= are not read, so write the principals and the key only")
            })?;
            for principal in principals.split(',').filter(|p| !p.is_empty()) {
                by_principal.entry(principal.to_string()).or_default().push(crate::policy::fingerprint(&key));
            }
        }
        Ok(AllowedSigners { by_principal })
    }

    /// Whether the key with fingerprint `key` may sign as `principal`.
    pub fn allows(&self, principal: &str, key: &str) -> bool {
        self.by_principal.get(principal).is_some_and(|keys| keys.iter().any(|k| k == key))
    }
}
