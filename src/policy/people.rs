//! `[people.NAME]`: what the policy knows of a person beyond their groups: where notices reach
//! them (`email`) and the SSH public keys whose signatures count as theirs (`ssh_keys`, for tasks
//! with `signed_approvals`). Checked here with their places in the file.

use std::collections::BTreeMap;

use serde::Deserialize;
use ssh_key::{Algorithm, HashAlg, PublicKey};
use toml::Spanned;

use super::notify::check_email;
use super::{Problems, valid_name};
use crate::model::text;

/// One person as the policy describes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Person {
    pub email: Option<String>,
    /// Keys whose SSHSIG signatures (namespace `zsa`) stand for this person's approval.
    pub ssh_keys: Vec<PublicKey>,
    /// When this person's group memberships start (a new hire's first day, a rotation's start).
    pub eligible_from: Option<chrono::DateTime<chrono::Utc>>,
    /// When all of this person's group memberships end (a contractor's last day).
    pub eligible_until: Option<chrono::DateTime<chrono::Utc>>,
}

impl Person {
    /// The `SHA256:...` fingerprints of the person's keys, as `ssh-add -l` shows them.
    pub fn key_fingerprints(&self) -> Vec<String> {
        self.ssh_keys.iter().map(fingerprint).collect()
    }
}

/// A key's `SHA256:...` fingerprint: what events record and messages name (never its comment,
/// which is free text).
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPerson {
    email: Option<Spanned<String>>,
    ssh_keys: Option<Vec<Spanned<String>>>,
    eligible_from: Option<Spanned<String>>,
    eligible_until: Option<Spanned<String>>,
}

const KEY_HELP: &str =
    "paste the one line of the person's public key file, e.g. ~/.ssh/id_ed25519.pub: \"ssh-ed25519 AAAA... alice@laptop\"";

pub(super) fn people(raw: BTreeMap<String, Spanned<RawPerson>>, p: &mut Problems) -> BTreeMap<String, Person> {
    let mut out = BTreeMap::new();
    // Which person each key was first listed for: one key is one person's, or a signature would
    // not say whose approval it is.
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    for (name, person) in raw {
        let span = person.span();
        let shown = text::inert(&name);
        if !valid_name(&name) {
            p.at(span.clone(), format!("person name '{shown}' may hold only letters, digits, '.', '-', '_' and '@'"));
        }
        let person = person.into_inner();
        if let Some(email) = &person.email
            && let Err(e) = check_email(email.get_ref())
        {
            p.at_with_help(email.span(), format!("people.{shown}.email: {e}"), "write it as name@example.org");
        }
        let mut keys = Vec::new();
        for (i, line) in person.ssh_keys.iter().flatten().enumerate() {
            let here = format!("people.{shown}.ssh_keys[{i}]");
            match ssh_key(line.get_ref()) {
                Err(e) => p.at_with_help(line.span(), format!("{here}: {e}"), KEY_HELP),
                Ok(key) => {
                    let print = fingerprint(&key);
                    match owners.get(&print) {
                        Some(owner) if *owner == name => p.at(line.span(), format!("{here}: the key {print} is listed twice")),
                        Some(owner) => p.at(
                            line.span(),
                            format!(
                                "{here}: the key {print} is also listed for '{}'; a key must be one person's, or a signature would not say whose approval it is",
                                text::inert(owner)
                            ),
                        ),
                        None => {
                            owners.insert(print, name.clone());
                            keys.push(key);
                        }
                    }
                }
            }
        }
        let mut when = |key: &str, value: &Option<Spanned<String>>, read: fn(&str) -> Option<chrono::DateTime<chrono::Utc>>| {
            let u = value.as_ref()?;
            let t = read(u.get_ref());
            if t.is_none() {
                p.at(
                    u.span(),
                    format!(
                        "people.{shown}.{key}: '{}' is not a date (2026-12-31) or a time (2026-12-31T18:00:00Z)",
                        text::inert(u.get_ref())
                    ),
                );
            }
            t
        };
        let eligible_from = when("eligible_from", &person.eligible_from, super::start_of);
        let eligible_until = when("eligible_until", &person.eligible_until, super::end_of);
        if let (Some(f), Some(u)) = (eligible_from, eligible_until)
            && f >= u
        {
            p.at(span.clone(), format!("people.{shown}: eligible_from {f} is not before eligible_until {u}; nobody would be eligible"));
        }
        out.insert(name, Person { email: person.email.map(Spanned::into_inner), ssh_keys: keys, eligible_from, eligible_until });
    }
    out
}

/// One line of an OpenSSH public key file, of a kind whose signatures zsa can check: Ed25519,
/// ECDSA, or RSA of 2048 to 4096 bits (what the verifier takes). Security-key (`sk-`) keys are
/// refused: zsa would not check that the key was touched, which OpenSSH requires.
fn ssh_key(line: &str) -> Result<PublicKey, String> {
    let key = PublicKey::from_openssh(line.trim()).map_err(|e| format!("not an SSH public key ({e})"))?;
    let ed25519 = "use an Ed25519 key (ssh-keygen -t ed25519)";
    match key.algorithm() {
        Algorithm::Ed25519 | Algorithm::Ecdsa { .. } => Ok(key),
        Algorithm::Rsa { .. } => {
            let bits = key.key_data().rsa().and_then(|k| k.n.as_positive_bytes()).map_or(0, |n| n.len() * 8);
            if (2048..=4096).contains(&bits) {
                Ok(key)
            } else {
                Err(format!("an RSA key of {bits} bits cannot sign approvals here (2048 to 4096 bits are checked); {ed25519}"))
            }
        }
        Algorithm::SkEd25519 | Algorithm::SkEcdsaSha2NistP256 => Err(format!(
            "security-key ({}) keys are not accepted: zsa does not check that the key was touched; {ed25519}",
            key.algorithm().as_str()
        )),
        other => Err(format!("{} keys are not accepted for signatures; {ed25519}", other.as_str())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_unsupported_or_broken_ones_are_named() {
        let ed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKmSM6Z6xlm2m9d8nV+ZxvVbKfkxM0Q9nYbS9N1fJ7mK alice@laptop";
        let key = ssh_key(ed).unwrap();
        assert!(fingerprint(&key).starts_with("SHA256:"));
        assert!(ssh_key("ssh-ed25519 AAAA").unwrap_err().contains("not an SSH public key"));
        assert!(ssh_key("hello").unwrap_err().contains("not an SSH public key"));
        // A security key's: zsa would not check that it was touched.
        let sk = ssh_key::public::SkEd25519::new(ssh_key::public::Ed25519PublicKey([7; 32]), "ssh:");
        let sk = PublicKey::from(ssh_key::public::KeyData::SkEd25519(sk)).to_openssh().unwrap();
        assert!(ssh_key(&sk).unwrap_err().contains("security-key (sk-ssh-ed25519@openssh.com) keys are not accepted"), "{sk}");
    }
}
