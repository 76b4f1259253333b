//! Approvals signed with the approver's SSH key (issue 15): a real `ssh-agent` started by the
//! test holds keys `ssh-keygen` made; the real CLI and console sign through it; the real daemon
//! checks each signature before it counts the approval and keeps it in the log; the signed
//! export is checked again offline. A stolen token, a signature over another request or by a
//! key not listed for the approver counts for nothing and changes nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::console::Console;
use common::{Daemon, code, stderr, stdout};
use zsa::client::agent;
use zsa::model::wire::{ApproveBody, NewRequest};
use zsa::model::{Change, RequestId, RequestState};

/// A real `ssh-agent` on a socket of its own, stopped when dropped.
struct Agent {
    socket: PathBuf,
    child: Child,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .args(["-D", "-a"])
            .arg(&socket)
            .stdout(Stdio::null())
            .spawn()
            .expect("ssh-agent runs (Debian package openssh-client; .ci/run installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "ssh-agent did not open its socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        Agent { socket, child }
    }

    /// Loads the private key at `key` into the agent, as `ssh-add` would for its owner.
    fn add(&self, key: &Path) {
        let out = Command::new("ssh-add").arg(key).env("SSH_AUTH_SOCK", &self.socket).output().expect("ssh-add runs");
        assert!(out.status.success(), "ssh-add: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new Ed25519 key pair in `dir` named `name`; its public key's line.
fn keypair(dir: &Path, name: &str) -> (PathBuf, String) {
    keypair_of(dir, name, &["-t", "ed25519"])
}

/// A new key pair of the kind `kind` says (`-t ecdsa`, `-t rsa -b 2048`).
fn keypair_of(dir: &Path, name: &str, kind: &[&str]) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(kind)
        .args(["-q", "-N", "", "-C"])
        .arg(format!("{name}@test"))
        .arg("-f")
        .arg(&path)
        .output()
        .expect("ssh-keygen runs (Debian package openssh-client)");
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap().trim().to_string();
    (path, public)
}

/// The test policy with `journal` taking only signed approvals and alice's key listed.
fn policy(alice_key: &str, bob_key: &str) -> String {
    common::POLICY.replace("ticket_pattern = \"INC-[0-9]+\"", "ticket_pattern = \"INC-[0-9]+\"\nsigned_approvals = true")
        + &format!("[people.alice]\nssh_keys = [\"{alice_key}\"]\n[people.bob]\nssh_keys = [\"{bob_key}\"]\n")
}

struct Setup {
    d: Daemon,
    keys: tempfile::TempDir,
    agent: Agent,
    alice_pub: String,
    bob_key: PathBuf,
}

/// A daemon with that policy, and an agent holding alice's key (bob's is made, not loaded).
fn setup() -> Setup {
    let keys = tempfile::tempdir().unwrap();
    let (alice, alice_pub) = keypair(keys.path(), "alice");
    let (bob_key, bob_pub) = keypair(keys.path(), "bob");
    let d = Daemon::start_with(&policy(&alice_pub, &bob_pub));
    let agent = Agent::start(keys.path());
    agent.add(&alice);
    Setup { d, keys, agent, alice_pub, bob_key }
}

async fn ask(d: &mut Daemon, reason: &str) -> RequestId {
    ask_as(d, "dave", reason).await
}

async fn ask_as(d: &mut Daemon, requester: &str, reason: &str) -> RequestId {
    let dave = d.user(requester).await;
    let new = NewRequest { task: "journal".into(), reason: Some(reason.into()), ticket: Some("INC-7".into()), ..Default::default() };
    dave.request(&new).await.expect("dave asks").request.id
}

/// `zsa approve` as `user` with the agent at `agent` (None: no agent at all).
async fn approve_cli(d: &mut Daemon, user: &str, id: RequestId, agent: Option<&Path>) -> std::process::Output {
    let token = d.token(user).await;
    let mut cmd = Command::new(common::BIN);
    cmd.args(["approve", &id.to_string()]).env("ZSA_SOCKET", &d.socket).env("ZSA_TOKEN", token);
    match agent {
        Some(a) => cmd.env("SSH_AUTH_SOCK", a),
        None => cmd.env_remove("SSH_AUTH_SOCK"),
    };
    cmd.output().unwrap()
}

async fn state_of(d: &Daemon, id: RequestId) -> RequestState {
    d.admin().show_request(id).await.unwrap().request.state
}

async fn events(d: &Daemon) -> usize {
    d.admin().audit(&Default::default()).await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_approval_counts_and_is_kept_in_the_log() {
    let mut s = setup();
    let id = ask(&mut s.d, "mail flow stuck").await;
    let out = approve_cli(&mut s.d, "alice", id, Some(&s.agent.socket)).await;
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(state_of(&s.d, id).await, RequestState::Approved);

    let log = s.d.admin().audit(&Default::default()).await.unwrap();
    let approved = log.iter().find(|e| matches!(e.change, Change::RequestApproved { .. })).expect("the approval is in the log");
    let Change::RequestApproved { signature: Some(sig), .. } = &approved.change else {
        panic!("the approval was recorded unsigned: {approved:?}")
    };
    let listed = ssh_key::PublicKey::from_openssh(&s.alice_pub).unwrap();
    assert_eq!(sig.key, listed.fingerprint(ssh_key::HashAlg::Sha256).to_string(), "the log names the key that signed");
    assert!(sig.signature.starts_with("-----BEGIN SSH SIGNATURE-----"), "{}", sig.signature);
    let shown = s.d.cli(None, &["show", &id.to_string()]).await;
    assert!(
        stdout(&shown).contains("approved by alice at") && stdout(&shown).contains(&format!("(signed with {})", sig.key)),
        "{}",
        stdout(&shown)
    );
    let log = s.d.cli(None, &["audit"]).await;
    assert!(stdout(&log).contains(&format!("signed with {}", sig.key)), "{}", stdout(&log));
    // Anyone can check it with OpenSSH alone: the statement is rebuilt from the request.
    let request = s.d.admin().show_request(id).await.unwrap().request.request;
    let statement = zsa::evidence::approval::statement(&(&request).into(), "alice", sig.signed_at);
    let (signers, signature) = (s.keys.path().join("allowed_signers"), s.keys.path().join("approval.sig"));
    std::fs::write(&signers, format!("alice {}\n", s.alice_pub)).unwrap();
    std::fs::write(&signature, &sig.signature).unwrap();
    let mut verify = Command::new("ssh-keygen")
        .args(["-Y", "verify", "-n", "zsa", "-I", "alice", "-f"])
        .arg(&signers)
        .arg("-s")
        .arg(&signature)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut verify.stdin.take().unwrap(), statement.as_bytes()).unwrap();
    let checked = verify.wait_with_output().unwrap();
    assert!(checked.status.success(), "ssh-keygen -Y verify: {}", String::from_utf8_lossy(&checked.stdout));
}

/// A token taken from alice approves nothing without her key; nor does her signature over
/// another request, a signature by a key the policy does not list for her, a broken one, or one
/// made long ago. Each refusal says why, and none changes anything.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_without_the_key_and_a_signature_over_something_else_are_refused() {
    let mut s = setup();
    let first = ask(&mut s.d, "mail flow stuck").await;
    let second = ask_as(&mut s.d, "carol", "another reason").await;
    let alice = s.d.user("alice").await;
    let bob = s.d.user("bob").await;
    let before = events(&s.d).await;

    let refused = |r: Result<zsa::model::wire::Outcome, zsa::client::ClientError>| match r {
        Err(zsa::client::ClientError::Refused { code, message, .. }) => (code, message),
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(o) => panic!("expected a refusal, got {:?}", o.request.state),
    };
    let (c, m) = refused(alice.send_approval(first, &ApproveBody { comment: None, signature: None }).await);
    assert_eq!(c, "signature_required", "{m}");
    assert!(m.contains("signed with your SSH key") && m.contains("ssh -A"), "{m}");

    let view = |id| {
        let admin = s.d.admin();
        async move { admin.show_request(id).await.unwrap().request.request }
    };
    let (first_req, second_req) = (view(first).await, view(second).await);
    let listed = vec![ssh_key::PublicKey::from_openssh(&s.alice_pub).unwrap().fingerprint(ssh_key::HashAlg::Sha256).to_string()];
    let now = chrono::Utc::now();
    let over_first = agent::sign_approval(Some(&s.agent.socket), &first_req, "alice", &listed, now).unwrap();
    let (c, m) = refused(alice.send_approval(second, &ApproveBody { comment: None, signature: Some(over_first.clone()) }).await);
    assert_eq!(c, "signature_mismatch", "a signature over {first} does not approve {second}: {m}");
    assert!(m.contains("made over something else"), "{m}");
    // Nor is it bob's approval of the same request, though bob holds a token too.
    let (c, _) = refused(bob.send_approval(first, &ApproveBody { comment: None, signature: Some(over_first.clone()) }).await);
    assert_eq!(c, "signature_key_unknown", "alice's key is not bob's");

    // Bob's key, loaded into the agent, is not one listed for alice.
    s.agent.add(&s.bob_key);
    let bobs = vec![zsa::policy::fingerprint(&ssh_key::PublicKey::read_openssh_file(&s.bob_key.with_extension("pub")).unwrap())];
    let by_bob = agent::sign_approval(Some(&s.agent.socket), &first_req, "alice", &bobs, now).unwrap();
    let (c, m) = refused(alice.send_approval(first, &ApproveBody { comment: None, signature: Some(by_bob) }).await);
    assert_eq!(c, "signature_key_unknown", "{m}");
    assert!(m.contains(&listed[0]), "it names the key that is listed: {m}");

    let mut broken = over_first.clone();
    broken.signature = broken.signature.replace("-----BEGIN SSH SIGNATURE-----\n", "-----BEGIN SSH SIGNATURE-----\nAAAA");
    let (c, _) = refused(alice.send_approval(first, &ApproveBody { comment: None, signature: Some(broken) }).await);
    assert_eq!(c, "signature_unreadable");

    let old = agent::sign_approval(Some(&s.agent.socket), &first_req, "alice", &listed, now - chrono::Duration::hours(1)).unwrap();
    let (c, m) = refused(alice.send_approval(first, &ApproveBody { comment: None, signature: Some(old) }).await);
    assert_eq!(c, "signature_stale", "{m}");

    assert_eq!(events(&s.d).await, before, "no refusal wrote anything");
    assert_eq!(state_of(&s.d, first).await, RequestState::Pending);
    assert_eq!(state_of(&s.d, second).await, RequestState::Pending);

    // The right signature, sent as a script would, counts.
    let out = alice.send_approval(first, &ApproveBody { comment: None, signature: Some(over_first) }).await.unwrap();
    assert_eq!(out.request.state, RequestState::Approved);
    assert!(second_req.reason.is_some());
}

/// The CLI says plainly what is missing: no agent, or no listed key in it; and sends nothing.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_says_when_there_is_no_agent_or_no_listed_key_in_it() {
    let mut s = setup();
    let id = ask(&mut s.d, "mail flow stuck").await;
    let out = approve_cli(&mut s.d, "alice", id, None).await;
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("no SSH agent") && stderr(&out).contains("ssh -A"), "{}", stderr(&out));

    let empty = Agent::start(&s.keys.path().join("empty").tap_mkdir());
    let out = approve_cli(&mut s.d, "alice", id, Some(&empty.socket)).await;
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("none of the 0 key(s) in your SSH agent"), "{}", stderr(&out));
    assert!(stderr(&out).contains("SHA256:"), "it names the listed key: {}", stderr(&out));

    // Carol approves journal too, but the policy lists no key for her.
    let out = approve_cli(&mut s.d, "carol", id, Some(&s.agent.socket)).await;
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("lists no key for you") && stderr(&out).contains("[people.carol] ssh_keys"), "{}", stderr(&out));
    assert_eq!(state_of(&s.d, id).await, RequestState::Pending, "nothing was approved");
}

trait Mkdir {
    fn tap_mkdir(self) -> Self;
}

impl Mkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

/// The console's `a` signs through the agent it was started with (over SSH, the forwarded one);
/// with no agent it says so and the request stays pending.
#[tokio::test(flavor = "multi_thread")]
async fn the_console_signs_through_the_agent_and_says_when_there_is_none() {
    let mut s = setup();
    let id = ask(&mut s.d, "mail flow stuck").await;
    let token = s.d.token("alice").await;

    let mut without = Console::open_with_env(&s.d, &token, s.d.dir.path(), 30, 160, &["tui"], &[("SSH_AUTH_SOCK", "")]);
    without.wait_for("Waiting for approval (1)");
    without.press("a");
    without.wait_for(&format!("Approve {id}?"));
    without.press("\r");
    without.wait("the refusal", |screen| screen.replace('\n', "").contains("no SSH agent"));
    without.quit();
    assert_eq!(state_of(&s.d, id).await, RequestState::Pending);

    let socket = s.agent.socket.to_str().unwrap().to_string();
    let mut with = Console::open_with_env(&s.d, &token, s.d.dir.path(), 30, 160, &["tui"], &[("SSH_AUTH_SOCK", &socket)]);
    with.wait_for("Waiting for approval (1)");
    with.press("a");
    let prompt = with.wait_for(&format!("Approve {id}?"));
    assert!(prompt.contains("signed through your SSH agent with") && prompt.contains("SHA256:"), "the prompt says it will sign: {prompt}");
    with.press("\r");
    with.wait_for("Waiting for approval (0)");
    with.quit();
    assert_eq!(state_of(&s.d, id).await, RequestState::Approved);
}

/// The whole log, rewritten from `changed` on as someone holding the database and the daemon's
/// audit key could: `edit` applied to the one event it matches, every hash after it recomputed,
/// every checkpoint signed anew with the key.
fn rewrite(bundle: &str, key: &zsa::evidence::SigningKey, edit: impl Fn(&mut serde_json::Value) -> bool) -> String {
    let mut lines = bundle.lines();
    let mut out = vec![lines.next().unwrap().to_string()];
    let mut prev = zsa::store::chain::GENESIS.to_string();
    let mut hashes: std::collections::HashMap<u64, String> = std::collections::HashMap::new();
    for line in lines {
        let mut event: zsa::store::RawEvent = serde_json::from_str(line).unwrap();
        let mut body: serde_json::Value = serde_json::from_str(&event.body).unwrap();
        let mut touched = edit(&mut body);
        if body["kind"] == "checkpoint" {
            let seq = body["signed_seq"].as_u64().unwrap();
            let at = serde_json::from_value(body["signed_at"].clone()).unwrap();
            let c = key.sign(seq, &hashes[&seq], at);
            body["signed_hash"] = c.hash.into();
            body["signature"] = c.signature.into();
            touched = true;
        }
        if touched {
            event.body = serde_json::to_string(&body).unwrap();
        }
        event.prev_hash = prev.clone();
        event.hash = zsa::store::chain::hash(&prev, &event.body);
        hashes.insert(event.seq, event.hash.clone());
        prev = event.hash.clone();
        out.push(serde_json::to_string(&event).unwrap());
    }
    out.join("\n") + "\n"
}

/// The signed export is checked offline, approvals included, with the daemon's public key
/// alone; so is the live log. Rewritten with the daemon's own audit key, the log still verifies
/// if what approvers signed is untouched, and not if the request they approved was changed: the
/// audit key cannot make an approver seem to approve what they did not.
#[tokio::test(flavor = "multi_thread")]
async fn signed_approvals_are_checked_offline_and_the_audit_key_cannot_forge_them() {
    let mut s = setup();
    let id = ask(&mut s.d, "mail flow stuck").await;
    assert_eq!(code(&approve_cli(&mut s.d, "alice", id, Some(&s.agent.socket)).await), 0);
    let live = s.d.cli(None, &["audit", "verify"]).await;
    assert_eq!(code(&live), 0, "{}", stderr(&live));
    assert!(stdout(&live).contains("ok: 1 approvals signed with the approvers' SSH keys checked again"), "{}", stdout(&live));

    let key = stdout(&s.d.cli(None, &["audit", "key"]).await).lines().next().unwrap().to_string();
    let exported = s.d.dir.path().join("log.zsa");
    let out = s.d.cli(None, &["audit", "export", "--signed", exported.to_str().unwrap()]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let audit_key = zsa::evidence::SigningKey::load_or_create(&s.d.state).unwrap();
    s.d.kill9();

    let away = tempfile::tempdir().unwrap();
    // `zsa audit verify --offline` of `text` in a fresh directory, with `extra` arguments.
    let verify = |text: &str, extra: &[&std::ffi::OsStr]| {
        let file = away.path().join("log.zsa");
        std::fs::write(&file, text).unwrap();
        Command::new(common::BIN)
            .args(["audit", "verify", "--offline"])
            .arg(&file)
            .args(["--key", &key])
            .args(extra)
            .env("ZSA_SOCKET", away.path().join("no-daemon.sock"))
            .env_remove("SSH_AUTH_SOCK")
            .current_dir(away.path())
            .output()
            .unwrap()
    };
    let offline = |text: &str| verify(text, &[]);
    let bundle = std::fs::read_to_string(&exported).unwrap();
    let out = offline(&bundle);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("ok: 1 approvals signed with the approvers' SSH keys checked again"), "{}", stdout(&out));

    // A rewrite of what nobody signed for passes: the forger's tools work.
    let harmless = rewrite(&bundle, &audit_key, |body| {
        let hit = body["kind"] == "request_created";
        if hit {
            body["pending_until"] = "2099-01-01T00:00:00Z".into();
        }
        hit
    });
    assert_ne!(harmless, bundle);
    let out = offline(&harmless);
    assert_eq!(code(&out), 0, "the rewrite is signed with the audit key itself: {}{}", stdout(&out), stderr(&out));

    // Four hours instead of one, which alice never approved: caught.
    let longer = rewrite(&bundle, &audit_key, |body| {
        let hit = body["kind"] == "request_created";
        if hit {
            body["duration_secs"] = (4 * 3600).into();
        }
        hit
    });
    let out = offline(&longer);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(
        stderr(&out).contains(&format!("alice's approval of {id}")) && stderr(&out).contains("not over this approval"),
        "{}",
        stderr(&out)
    );
    // Nor can her approval be moved to bob.
    let moved = rewrite(&bundle, &audit_key, |body| {
        let hit = body["kind"] == "request_approved";
        if hit {
            body["actor"] = "bob".into();
        }
        hit
    });
    let out = offline(&moved);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(stderr(&out).contains(&format!("bob's approval of {id}")), "{}", stderr(&out));

    // Her signature removed, or her approval made bob's without one: the request was asked for
    // under signed approvals, so an unsigned approval, or a grant naming someone whose signed
    // approval is not there, is caught.
    let unsigned = rewrite(&bundle, &audit_key, |body| {
        let hit = body["kind"] == "request_approved";
        if hit {
            body.as_object_mut().unwrap().remove("signature");
        }
        hit
    });
    let out = offline(&unsigned);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(stderr(&out).contains("is not signed") && stderr(&out).contains("the signature was removed"), "{}", stderr(&out));
    let given_to_bob = rewrite(&bundle, &audit_key, |body| match body["kind"].as_str() {
        Some("request_approved") => {
            body.as_object_mut().unwrap().remove("signature");
            body["kind"] = "approval_dropped".into();
            body["approver"] = "alice".into();
            body["why"] = "made up".into();
            true
        }
        Some("grant_started") => {
            body["approved_by"] = serde_json::json!(["bob"]);
            true
        }
        _ => false,
    });
    let out = offline(&given_to_bob);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(stderr(&out).contains("names bob as an approver, but the log holds no standing signed approval"), "{}", stderr(&out));

    // A key of the forger's own, signing as alice and named in the event: it verifies as a
    // signature, so only a list of whose keys are whose catches it (allowed_signers).
    let request = s.d.admin().show_request(id).await;
    assert!(request.is_err(), "the daemon is gone: what follows uses the export alone");
    let forger = ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let asked: serde_json::Value = bundle
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str::<serde_json::Value>(&serde_json::from_str::<zsa::store::RawEvent>(l).unwrap().body).unwrap())
        .find(|b| b["kind"] == "request_created")
        .unwrap();
    let forged = rewrite(&bundle, &audit_key, |body| {
        let hit = body["kind"] == "request_approved";
        if hit {
            let at: chrono::DateTime<chrono::Utc> = serde_json::from_value(body["signature"]["signed_at"].clone()).unwrap();
            let params = Default::default();
            let facts = zsa::evidence::approval::Facts {
                starts_at: None,
                extends: None,
                request: id,
                task: asked["task"].as_str().unwrap(),
                requester: asked["requester"].as_str().unwrap(),
                duration_secs: asked["duration_secs"].as_u64().unwrap(),
                reason: asked["reason"].as_str(),
                ticket: asked["ticket"].as_str(),
                params: &params,
                requested_at: serde_json::from_value(asked["at"].clone()).unwrap(),
            };
            let text = zsa::evidence::approval::statement(&facts, "alice", at);
            let sig = forger.sign("zsa", ssh_key::HashAlg::Sha512, text.as_bytes()).unwrap();
            body["signature"]["signature"] = sig.to_pem(ssh_key::LineEnding::LF).unwrap().into();
            body["signature"]["key"] = zsa::policy::fingerprint(forger.public_key()).into();
        }
        hit
    });
    let out = offline(&forged);
    assert_eq!(code(&out), 0, "the forger's own key signed it, as the event says: {}", stderr(&out));
    let signers = away.path().join("allowed_signers");
    std::fs::write(&signers, format!("# the approvers' keys, kept by the auditors\nalice {}\n", s.alice_pub)).unwrap();
    let with_signers = |text: &str| verify(text, &["--allowed-signers".as_ref(), signers.as_os_str()]);
    let out = with_signers(&forged);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(stderr(&out).contains("does not list for alice"), "{}", stderr(&out));
    let out = with_signers(&bundle);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("each signed with a key") && stdout(&out).contains("lists for its approver"), "{}", stdout(&out));
}

/// ECDSA and RSA keys sign approvals as Ed25519 ones do; RSA keys the verifier cannot check
/// (under 2048 or over 4096 bits) are refused when the policy is checked, not at the first
/// approval with a misleading message.
#[tokio::test(flavor = "multi_thread")]
async fn ecdsa_and_rsa_keys_sign_and_keys_that_could_not_are_refused_in_the_policy() {
    for kind in [&["-t", "ecdsa", "-b", "256"][..], &["-t", "ecdsa", "-b", "521"], &["-t", "rsa", "-b", "2048"]] {
        let keys = tempfile::tempdir().unwrap();
        let (alice, alice_pub) = keypair_of(keys.path(), "alice", kind);
        let (_, bob_pub) = keypair(keys.path(), "bob");
        let mut d = Daemon::start_with(&policy(&alice_pub, &bob_pub));
        let agent = Agent::start(keys.path());
        agent.add(&alice);
        let id = ask(&mut d, "mail flow stuck").await;
        let out = approve_cli(&mut d, "alice", id, Some(&agent.socket)).await;
        assert_eq!(code(&out), 0, "{kind:?}: {}", stderr(&out));
        assert_eq!(state_of(&d, id).await, RequestState::Approved, "{kind:?}");
    }
    let keys = tempfile::tempdir().unwrap();
    let (_, small) = keypair_of(keys.path(), "small", &["-t", "rsa", "-b", "1024"]);
    let (_, bob_pub) = keypair(keys.path(), "bob");
    let file = keys.path().join("policy.toml");
    std::fs::write(&file, policy(&small, &bob_pub).replace("{ADMIN}", "root")).unwrap();
    let out = Command::new(common::BIN).args(["policy", "check"]).arg(&file).output().unwrap();
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("people.alice.ssh_keys[0]: an RSA key of 1024 bits cannot sign approvals"), "{said}");
}
