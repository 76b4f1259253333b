//! `zsa login`, contexts and the client over TLS, through the real CLI against a real daemon
//! listening with TLS on a port of 127.0.0.1 (`zsa daemon --listen --tls-cert --tls-key`).
//!
//! A daemon whose certificate changes is the same daemon restarted on its state and port with
//! other files. Only an impostor, who presents a copy of the pinned certificate without its key,
//! is a TLS server of this file's own: no daemon would serve that, and it answers nothing.
//!
//! Tokens go to the kernel keyring (keyutils) of the account running the tests, as they would on
//! a developer's machine or in CI (no desktop needed). Each test uses context names of its own
//! and removes what it stored.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::console::Console;
use common::{BIN, Daemon, POLICY, code, stderr, stdout};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use zsa::client::Address;

/// A certificate and its key.
struct Cert {
    der: CertificateDer<'static>,
    key: Vec<u8>,
    fingerprint: String,
    cert_pem: String,
    key_pem: String,
}

fn new_cert() -> Cert {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let der = made.cert.der().clone();
    let fingerprint = zsa::tls::fingerprint(&der);
    Cert { der, key: made.signing_key.serialize_der(), fingerprint, cert_pem: made.cert.pem(), key_pem: made.signing_key.serialize_pem() }
}

/// Where a daemon finds its certificate and key (the key 0600, as the daemon demands).
struct CertFiles {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl Cert {
    fn files(&self) -> CertFiles {
        cert_files(&self.cert_pem, &self.key_pem)
    }
}

/// Files of a certificate chain (PEM, leaf first) and the leaf's key.
fn cert_files(chain_pem: &str, key_pem: &str) -> CertFiles {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, chain_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    CertFiles { _dir: dir, cert, key }
}

/// `zsa admin tls init` for 127.0.0.1: the files it wrote, and the fingerprint it printed.
fn tls_init() -> (CertFiles, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["admin", "tls", "init", "--json", "--name", "127.0.0.1", "--dir"])
        .arg(dir.path().join("tls"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let made: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let path = |key: &str| PathBuf::from(made[key].as_str().unwrap());
    (CertFiles { cert: path("cert"), key: path("key"), _dir: dir }, made["fingerprint"].as_str().unwrap().to_string())
}

/// A free port on 127.0.0.1 for the daemon (which is told a port, not asked for one).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn listen_args(port: u16, files: &CertFiles) -> Vec<String> {
    let path = |p: &Path| p.to_str().unwrap().to_string();
    vec!["--listen".into(), format!("127.0.0.1:{port}"), "--tls-cert".into(), path(&files.cert), "--tls-key".into(), path(&files.key)]
}

/// The real daemon, on its Unix socket (where the test's account is the admin) and with TLS on
/// a port of 127.0.0.1.
struct Remote {
    d: Daemon,
    port: u16,
    _files: CertFiles,
}

impl Remote {
    fn start(policy: &str, files: CertFiles) -> Remote {
        let port = free_port();
        let d = Daemon::start_with_args(policy, &[], &listen_args(port, &files));
        Remote { d, port, _files: files }
    }

    /// The daemon restarted on the same state and port presenting another certificate, as one
    /// whose certificate was replaced would (or an impostor in its place).
    fn present(&mut self, files: CertFiles) {
        self.d.stop();
        self.d.args = listen_args(self.port, &files);
        self._files = files;
        self.d.spawn();
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn address(&self) -> Address {
        Address::parse(&self.url()).unwrap()
    }
}

/// A server that is not the daemon, on `port`: it completes TLS handshakes with `config` and
/// answers nothing. It stops with the test's process.
fn impostor(port: u16, config: Arc<rustls::ServerConfig>) {
    let (ready, started) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            // tokio binds with SO_REUSEADDR: the daemon's closed connections do not hold the port.
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
            ready.send(()).unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = acceptor.accept(tcp).await;
                });
            }
        });
    });
    started.recv().unwrap();
}

/// Removes a context's token from the keyring when the test ends, however it ends.
struct Forget(String, Address);

impl Drop for Forget {
    fn drop(&mut self) {
        let _ = zsa::token_store::keyring_delete(&self.0, &self.1);
    }
}

/// A context name no other test (or run) uses: the keyring is the account's, shared by all.
fn unique(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// `zsa ARGS` as a user with `config` as their config directory, no ZSA_* variables but `env`,
/// `input` on standard input, and no controlling terminal (as in CI: nothing can be asked).
fn zsa(config: &Path, args: &[&str], env: &[(&str, &str)], input: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("XDG_CONFIG_HOME", config)
        .env_remove("ZSA_SOCKET")
        .env_remove("ZSA_TOKEN")
        .env_remove("ZSA_CONTEXT")
        .env("ZSA_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setsid only detaches the child from the test's terminal, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("run zsa");
    if let Some(text) = input {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn config_file(config: &Path) -> PathBuf {
    config.join("zsa/config.toml")
}

/// `zsa login URL --context NAME --token-stdin --fingerprint FP`, which must succeed.
fn login(config: &Path, remote: &Remote, name: &str, token: &str, fingerprint: &str, extra: &[&str]) -> Output {
    let url = remote.url();
    let mut args = vec!["login", &url, "--context", name, "--token-stdin", "--fingerprint", fingerprint];
    args.extend_from_slice(extra);
    let out = zsa(config, &args, &[], Some(&format!("{token}\n")));
    assert_eq!(code(&out), 0, "login failed: {}{}", stdout(&out), stderr(&out));
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn login_keeps_the_token_in_the_keyring_only_and_every_command_works_over_tls() {
    let policy = format!(
        "{POLICY}\n[[tasks]]\nname = \"echo\"\nrequesters = [\"oncall\"]\napproval = \"auto\"\nmax_duration = \"15m\"\n\
         run = [\"/bin/echo\", \"hello\", \"{{name}}\"]\n[tasks.params.name]\npattern = \"[a-z]{{1,8}}\"\n"
    );
    let (files, fingerprint) = tls_init();
    let mut remote = Remote::start(&policy, files);
    let alice = remote.d.token("alice").await;
    let carol = remote.d.token("carol").await;
    let config = tempfile::tempdir().unwrap();
    let name = unique("tls");
    let _forget = Forget(name.clone(), remote.address());

    let out = login(config.path(), &remote, &name, &alice, &fingerprint, &[]);
    assert!(stdout(&out).contains(&format!("Logged in to {} as alice", remote.url())), "{}", stdout(&out));
    assert!(stdout(&out).contains("kernel keyring"), "{}", stdout(&out));

    // The token is in the keyring and nowhere in the config file, which names the rest.
    assert_eq!(zsa::token_store::keyring_load(&name, &remote.address()).unwrap().as_deref(), Some(alice.as_str()));
    let written = std::fs::read_to_string(config_file(config.path())).unwrap();
    assert!(!written.contains(&alice), "the token is in the config file:\n{written}");
    for part in [format!("current_context = \"{name}\""), remote.url(), fingerprint.clone(), "token_store = \"keyring\"".into()] {
        assert!(written.contains(&part), "{part} is not in the config file:\n{written}");
    }

    // whoami through the current context, saying which context, endpoint and token store.
    let out = zsa(config.path(), &["whoami"], &[], None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("alice (via token)"), "{text}");
    assert!(text.contains(&format!("client: context {name}, {}, token from the kernel keyring", remote.url())), "{text}");
    let out = zsa(config.path(), &["whoami", "--json"], &[], None);
    let me: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((me["user"].as_str(), me["client"]["context"].as_str()), (Some("alice"), Some(name.as_str())));

    // The event stream follows over TLS: an event made meanwhile arrives.
    let mut follow = Command::new(BIN)
        .args(["audit", "--follow", "--json"])
        .env("XDG_CONFIG_HOME", config.path())
        .env_remove("ZSA_SOCKET")
        .env_remove("ZSA_TOKEN")
        .env_remove("ZSA_CONTEXT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(String::new()));
    let (sink, mut reader) = (lines.clone(), follow.stdout.take().unwrap());
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut reader, &mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    // The follower's token came from the keyring: it is in neither its command line nor its
    // environment, where other local users (ps, /proc) could read it.
    let pid = follow.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    let cmdline = loop {
        // Empty until the child has exec'd.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        if String::from_utf8_lossy(&cmdline).contains("--follow") {
            break cmdline;
        }
        assert!(Instant::now() < deadline, "the follower never started");
        std::thread::sleep(Duration::from_millis(10));
    };
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(&alice) && !String::from_utf8_lossy(&environ).contains(&alice));

    // Commands over TLS as a second identity: ZSA_TOKEN wins over the context's token, and goes
    // to the context's endpoint. carol asks, alice approves, carol checks.
    let as_carol = [("ZSA_TOKEN", carol.as_str())];
    let out = zsa(config.path(), &["request", "journal", "--reason", "legal hold", "--ticket", "INC-7", "--json"], &as_carol, None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let asked: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = asked["request"]["id"].as_str().unwrap().to_string();
    let out = zsa(config.path(), &["approve", &id, "--comment", "ok"], &[], None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = zsa(config.path(), &["check", "journal"], &as_carol, None);
    assert_eq!(code(&out), 0, "carol holds it now: {}{}", stdout(&out), stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lines.lock().unwrap().contains("request_approved") {
        assert!(Instant::now() < deadline, "the event stream over TLS never showed the approval:\n{}", lines.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = follow.kill();
    let _ = follow.wait();

    // A run's output streams back over TLS, and zsa run exits with the command's code.
    let out = zsa(config.path(), &["request", "echo", "--for", "5m"], &as_carol, None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = zsa(config.path(), &["run", "echo", "--param", "name=tls"], &as_carol, None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("hello tls"), "{}", stdout(&out));

    // Logout removes the token from the keyring; the context then says what to do.
    let out = zsa(config.path(), &["logout"], &[], None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("removed from the kernel keyring"), "{}", stdout(&out));
    assert_eq!(zsa::token_store::keyring_load(&name, &remote.address()).unwrap(), None);
    let out = zsa(config.path(), &["whoami"], &[], None);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("zsa login {} --context {name}", remote.url())), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_certificate_is_refused_naming_both_fingerprints() {
    let (first, second) = (new_cert(), new_cert());
    let mut remote = Remote::start(POLICY, first.files());
    let alice = remote.d.token("alice").await;
    let config = tempfile::tempdir().unwrap();
    let name = unique("pinned");
    let _forget = Forget(name.clone(), remote.address());
    login(config.path(), &remote, &name, &alice, &first.fingerprint, &[]);

    remote.present(second.files());
    let out = zsa(config.path(), &["whoami"], &[], None);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let expected =
        format!("the certificate of 127.0.0.1:{} changed: pinned {}, now {}", remote.port, first.fingerprint, second.fingerprint);
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
    assert!(stderr(&out).contains("if this is expected (its certificate was replaced) run zsa login again"), "{}", stderr(&out));
    let out = zsa(config.path(), &["whoami", "--json"], &[], None);
    assert!(stderr(&out).contains("\"code\":\"untrusted_certificate\""), "{}", stderr(&out));

    // Login with the old fingerprint is refused too; with the new one it pins the new certificate.
    let url = remote.url();
    let args = ["login", &url, "--context", &name, "--token-stdin", "--fingerprint", &first.fingerprint];
    let out = zsa(config.path(), &args, &[], Some(&alice));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("is {}, not the {} you gave", second.fingerprint, first.fingerprint)), "{}", stderr(&out));
    login(config.path(), &remote, &name, &alice, &second.fingerprint, &[]);
    assert_eq!(code(&zsa(config.path(), &["whoami"], &[], None)), 0);
}

/// Without a terminal nothing can be asked: login says how to give the fingerprint, and keeps
/// nothing. A token on the command line is refused before anything happens.
#[tokio::test(flavor = "multi_thread")]
async fn login_never_trusts_or_takes_a_token_without_being_told() {
    let cert = new_cert();
    let mut remote = Remote::start(POLICY, cert.files());
    let alice = remote.d.token("alice").await;
    let config = tempfile::tempdir().unwrap();
    let name = unique("asked");
    let _forget = Forget(name.clone(), remote.address());
    let url = remote.url();

    let out = zsa(config.path(), &["login", &url, "--context", &name, "--token-stdin"], &[], Some(&alice));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains(&cert.fingerprint) && stderr(&out).contains("--fingerprint"), "{}", stderr(&out));
    assert!(!config_file(config.path()).exists(), "nothing is written");
    assert_eq!(zsa::token_store::keyring_load(&name, &remote.address()).unwrap(), None);

    let out = zsa(config.path(), &["--token", &alice, "login", &url, "--context", &name], &[], None);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("never takes a token on the command line"), "{}", stderr(&out));

    // A wrong token is refused by the daemon, and nothing is kept either.
    let args = ["login", &url, "--context", &name, "--token-stdin", "--fingerprint", &cert.fingerprint];
    let out = zsa(config.path(), &args, &[], Some("zsa_not-a-token\n"));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(!config_file(config.path()).exists(), "nothing is written");
    assert_eq!(zsa::token_store::keyring_load(&name, &remote.address()).unwrap(), None);

    // A remote daemon with no token, or with no trust, is refused before anything is sent.
    std::fs::create_dir_all(config.path().join("zsa")).unwrap();
    let hand = format!("[contexts.bare]\nendpoint = \"{url}\"\nfingerprint = \"{}\"\n", cert.fingerprint);
    std::fs::write(config_file(config.path()), hand).unwrap();
    let out = zsa(config.path(), &["whoami", "--context", "bare"], &[], None);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("knows you only by a token") && stderr(&out).contains("zsa login"), "{}", stderr(&out));
    let out = zsa(config.path(), &["whoami"], &[("ZSA_SOCKET", "https://127.0.0.1:9"), ("ZSA_TOKEN", &alice)], None);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("no certificate is trusted for https://127.0.0.1:9"), "{}", stderr(&out));
}

/// The interactive login a person does: the fingerprint shown and the question asked at the
/// terminal, the token typed at a prompt that does not echo it.
#[tokio::test(flavor = "multi_thread")]
async fn at_a_terminal_login_shows_the_fingerprint_asks_and_hides_the_token() {
    let cert = new_cert();
    let mut remote = Remote::start(POLICY, cert.files());
    let alice = remote.d.token("alice").await;
    let config = tempfile::tempdir().unwrap();
    let name = unique("typed");
    let _forget = Forget(name.clone(), remote.address());
    let url = remote.url();
    let env = [("XDG_CONFIG_HOME", config.path().to_str().unwrap())];
    let mut term = Console::spawn(config.path(), 24, 200, &["login", &url, "--context", &name], &env);
    term.wait_for(&cert.fingerprint);
    term.wait_for("(yes/no)");
    term.press("yes\r");
    term.wait_for("Token for");
    term.wait_for_echo_off();
    term.press(&format!("{alice}\r"));
    let screen = term.wait_for("Logged in");
    assert!(screen.contains("as alice"), "{screen}");
    assert!(!String::from_utf8_lossy(&term.raw.lock().unwrap()).contains(&alice), "the token was echoed:\n{screen}");
    let written = std::fs::read_to_string(config_file(config.path())).unwrap();
    assert!(written.contains(&cert.fingerprint) && !written.contains(&alice), "{written}");
}

#[tokio::test(flavor = "multi_thread")]
async fn store_file_keeps_a_private_file_and_says_so_loudly() {
    let cert = new_cert();
    let mut remote = Remote::start(POLICY, cert.files());
    let alice = remote.d.token("alice").await;
    let config = tempfile::tempdir().unwrap();
    let name = unique("filed");
    let _forget = Forget(name.clone(), remote.address());
    let out = login(config.path(), &remote, &name, &alice, &cert.fingerprint, &["--store", "file"]);
    assert!(stderr(&out).contains("PLAIN TEXT"), "{}", stderr(&out));

    use std::os::unix::fs::PermissionsExt;
    let file = config.path().join("zsa/tokens").join(&name);
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), alice);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(file.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(zsa::token_store::keyring_load(&name, &remote.address()).unwrap(), None, "not in the keyring");
    let written = std::fs::read_to_string(config_file(config.path())).unwrap();
    assert!(written.contains("token_store = \"file\"") && !written.contains(&alice), "{written}");

    let out = zsa(config.path(), &["whoami"], &[], None);
    assert!(stdout(&out).contains(&format!("token from the file {}", file.display())), "{}{}", stdout(&out), stderr(&out));
    // A token file others can read is no secret: refused, saying how to fix it.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = zsa(config.path(), &["whoami"], &[], None);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();

    assert_eq!(code(&zsa(config.path(), &["logout"], &[], None)), 0);
    assert!(!file.exists(), "logout removes the file");
}

/// Nothing the client logs, even at trace level, holds the token: not at login, not after.
#[tokio::test(flavor = "multi_thread")]
async fn the_token_is_in_no_log_even_at_trace_level() {
    let cert = new_cert();
    let mut remote = Remote::start(POLICY, cert.files());
    let alice = remote.d.token("alice").await;
    // The daemon, too, logs at trace level, into a file.
    let daemon_log = remote.d.dir.path().join("daemon.log");
    remote.d.stop();
    remote.d.env.push(("ZSA_LOG".into(), "trace".into()));
    remote.d.log = Some(daemon_log.clone());
    remote.d.spawn();
    let config = tempfile::tempdir().unwrap();
    let name = unique("traced");
    let _forget = Forget(name.clone(), remote.address());
    let url = remote.url();
    let trace = [("ZSA_LOG", "trace")];
    let args = ["login", &url, "--context", &name, "--token-stdin", "--fingerprint", &cert.fingerprint];
    let login = zsa(config.path(), &args, &trace, Some(&alice));
    assert_eq!(code(&login), 0, "{}", stderr(&login));
    let whoami = zsa(config.path(), &["whoami"], &trace, None);
    assert_eq!(code(&whoami), 0, "{}", stderr(&whoami));
    for out in [&login, &whoami] {
        let log = stderr(out);
        // The log is really at trace level (TLS and HTTP both speak), so the check means something.
        assert!(log.contains("TRACE") && log.lines().count() > 5, "no trace log:\n{log}");
        assert!(!log.contains(&alice) && !stdout(out).contains(&alice), "the token is in the log:\n{log}");
    }
    remote.d.stop();
    let log = std::fs::read_to_string(&daemon_log).unwrap();
    assert!(log.contains("TRACE") && log.contains("listening with TLS"), "the daemon's log is not at trace level:\n{log}");
    assert!(!log.contains(&alice), "the token is in the daemon's log:\n{log}");
}

/// Contexts: list, use, ZSA_CONTEXT and --context, and --socket / ZSA_SOCKET winning over them
/// all. A `unix:` context works against the real daemon as before.
#[tokio::test(flavor = "multi_thread")]
async fn contexts_are_listed_and_chosen_in_the_documented_order() {
    let cert = new_cert();
    let mut daemon = Remote::start(POLICY, cert.files());
    let alice = daemon.d.token("alice").await;
    let carol = daemon.d.token("carol").await;
    let config = tempfile::tempdir().unwrap();
    let (remote, local) = (unique("remote"), unique("local"));
    let socket = format!("unix:{}", daemon.d.socket.display());
    let _forget = (Forget(remote.clone(), daemon.address()), Forget(local.clone(), Address::parse(&socket).unwrap()));

    login(config.path(), &daemon, &remote, &alice, &cert.fingerprint, &[]);
    let out = zsa(config.path(), &["login", &socket, "--context", &local, "--token-stdin"], &[], Some(&carol));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let user = |args: &[&str], env: &[(&str, &str)]| {
        let out = zsa(config.path(), &[args, &["whoami", "--json"]].concat(), env, None);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let me: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (me["user"].as_str().unwrap().to_string(), me["client"]["context"].as_str().map(str::to_string))
    };
    // The last login is the current context.
    assert_eq!(user(&[], &[]), ("carol".to_string(), Some(local.clone())));

    let out = zsa(config.path(), &["context", "list"], &[], None);
    let list = stdout(&out);
    let marked: Vec<&str> = list.lines().filter(|l| l.trim_start().starts_with('*')).collect();
    assert!(marked.len() == 1 && marked[0].contains(&local) && list.contains(&remote) && list.contains(&daemon.url()), "{list}");

    let out = zsa(config.path(), &["context", "use", &remote], &[], None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(user(&[], &[]), ("alice".to_string(), Some(remote.clone())));
    // ZSA_CONTEXT over the current one, --context over ZSA_CONTEXT.
    assert_eq!(user(&[], &[("ZSA_CONTEXT", &local)]), ("carol".to_string(), Some(local.clone())));
    assert_eq!(user(&["--context", &remote], &[("ZSA_CONTEXT", &local)]), ("alice".to_string(), Some(remote.clone())));
    // ZSA_SOCKET wins over every context: the socket's own identity, the test's account (admin).
    let (who, context) = user(&[], &[("ZSA_SOCKET", daemon.d.socket.to_str().unwrap()), ("ZSA_CONTEXT", &local)]);
    assert_eq!((who, context), (common::current_user(), None));
    let out = zsa(config.path(), &["whoami", "--context", &local], &[("ZSA_SOCKET", daemon.d.socket.to_str().unwrap())], None);
    assert_eq!(code(&out), 2, "both --context and a socket: {}", stderr(&out));

    let out = zsa(config.path(), &["context", "show"], &[("ZSA_CONTEXT", &local)], None);
    let shown = stdout(&out);
    assert!(
        shown.contains(&format!("context:  {local} (from ZSA_CONTEXT)")) && shown.contains("token:    kept in the kernel keyring"),
        "{shown}"
    );
    assert!(!shown.contains(&carol), "{shown}");
    let out = zsa(config.path(), &["context", "use", "nowhere"], &[], None);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("there is no context \"nowhere\"") && stderr(&out).contains(&remote), "{}", stderr(&out));

    // The console follows the daemon over TLS through the current context.
    let console = Console::spawn(config.path(), 30, 110, &["tui"], &[("XDG_CONFIG_HOME", config.path().to_str().unwrap())]);
    console.wait_for("Waiting for approval (0)");
    let dave = daemon.d.user("dave").await;
    dave.request(&zsa::model::wire::NewRequest { task: "export".into(), ..Default::default() }).await.unwrap();
    let screen = console.wait_for("Waiting for approval (1)");
    assert!(screen.contains("dave"), "{screen}");
    console.quit();
}

/// A private CA and a certificate it issued for 127.0.0.1.
fn ca_and_leaf() -> (String, Cert) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, "zsa test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let issuer: &rcgen::Issuer<'_, rcgen::KeyPair> = &ca;
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&key, issuer).unwrap();
    let der = leaf.der().clone();
    let cert = Cert {
        fingerprint: zsa::tls::fingerprint(&der),
        der,
        key: key.serialize_der(),
        cert_pem: leaf.pem(),
        key_pem: key.serialize_pem(),
    };
    (ca.pem(), cert)
}

/// --ca and --system-roots trust what a CA issued for the host (and survive a renewal, since no
/// one certificate is pinned); a certificate from anyone else is refused, saying what is trusted.
#[tokio::test(flavor = "multi_thread")]
async fn a_private_ca_or_the_system_roots_can_be_trusted_instead_of_a_pin() {
    let (ca, leaf) = ca_and_leaf();
    let mut remote = Remote::start(POLICY, leaf.files());
    let alice = remote.d.token("alice").await;
    let config = tempfile::tempdir().unwrap();
    let ca_file = config.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let (by_ca, by_roots) = (unique("by-ca"), unique("by-roots"));
    let _forget = (Forget(by_ca.clone(), remote.address()), Forget(by_roots.clone(), remote.address()));
    let url = remote.url();

    let out =
        zsa(config.path(), &["login", &url, "--context", &by_ca, "--token-stdin", "--ca", ca_file.to_str().unwrap()], &[], Some(&alice));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(std::fs::read_to_string(config_file(config.path())).unwrap().contains(&format!("ca = \"{}\"", ca_file.display())));
    assert_eq!(code(&zsa(config.path(), &["whoami"], &[], None)), 0);

    // The system's roots, here the test CA (rustls reads SSL_CERT_FILE as the system's store).
    let system = [("SSL_CERT_FILE", ca_file.to_str().unwrap())];
    let out = zsa(config.path(), &["login", &url, "--context", &by_roots, "--token-stdin", "--system-roots"], &system, Some(&alice));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(code(&zsa(config.path(), &["whoami"], &system, None)), 0);
    let out = zsa(config.path(), &["whoami"], &[("SSL_CERT_FILE", "/dev/null/none")], None);
    assert_eq!(code(&out), 1, "the real system roots do not know the test CA: {}", stderr(&out));
    assert!(stderr(&out).contains("is not trusted") && stderr(&out).contains("system's root certificates"), "{}", stderr(&out));

    // A certificate the CA did not issue is refused, naming what the context trusts.
    remote.present(new_cert().files());
    let out = zsa(config.path(), &["whoami", "--context", &by_ca], &[], None);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let expected = format!("the certificate of 127.0.0.1:{} is not trusted", remote.port);
    assert!(stderr(&out).contains(&expected) && stderr(&out).contains(&ca_file.display().to_string()), "{}", stderr(&out));
}

/// Runs `cmd` in the session keyring named `ring`: joined (made if absent) between fork and exec,
/// after the command's own uid is set. When made here, it is given to `owner` first (as the
/// session keyring of that account's login would be), open to it as a login's keyring is.
fn in_session_keyring(cmd: &mut Command, ring: &str, owner: Option<u32>) {
    let name = std::ffi::CString::new(ring).unwrap();
    let keyctl = |op: u32, a: libc::c_long, b: libc::c_long, c: libc::c_long| {
        // SAFETY: keyctl(2) with integer arguments, or a pointer to a name that outlives the call.
        match unsafe { libc::syscall(libc::SYS_keyctl, op as libc::c_long, a, b, c) } {
            failed if failed < 0 => Err(std::io::Error::last_os_error()),
            id => Ok(id),
        }
    };
    // SAFETY: only keyctl(2) calls between fork and exec; the name was made before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let id = keyctl(libc::KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr() as libc::c_long, 0, 0)?;
            if let Some(uid) = owner {
                // Possessor: everything; owner (user): everything, so it can join by name.
                keyctl(libc::KEYCTL_SETPERM, id, 0x3f3f_0000, 0)?;
                keyctl(libc::KEYCTL_CHOWN, id, uid as libc::c_long, -1)?;
            }
            Ok(())
        });
    }
}

/// `su` from an account's login keeps that login's session keyring (Debian's su runs no
/// pam_keyinit), and every process of that login possesses what is put there. So a token root
/// keeps at `zsa login` there would be the other account's to read: zsa keeps it in a session
/// keyring of its own instead, and the other account finds nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_is_never_kept_in_a_session_keyring_another_account_owns() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root, to act as a second account (useradd) in a session keyring it owns");
        return;
    }
    let mut d = Daemon::start();
    let bob = d.token("bob").await;
    let alice = common::Account::create("zkey");
    let account = nix::unistd::User::from_name(&alice.name).unwrap().unwrap();
    let (uid, gid) = (account.uid.as_raw(), account.gid.as_raw());
    let ring = unique("zsa-shared-login");
    let name = unique("shared");
    let endpoint = format!("unix:{}", d.socket.display());
    let _forget = Forget(name.clone(), Address::parse(&endpoint).unwrap());

    // Root logs in inside alice's session keyring, as after `su` from her login.
    let root_config = tempfile::tempdir().unwrap();
    let mut login = Command::new(BIN);
    login
        .args(["login", &endpoint, "--context", &name, "--token-stdin"])
        .env("XDG_CONFIG_HOME", root_config.path())
        .env_remove("ZSA_SOCKET")
        .env_remove("ZSA_TOKEN")
        .env_remove("ZSA_CONTEXT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    in_session_keyring(&mut login, &ring, Some(uid));
    let mut child = login.spawn().unwrap();
    child.stdin.take().unwrap().write_all(format!("{bob}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "login failed: {}{}", stdout(&out), stderr(&out));
    assert_eq!(zsa::token_store::keyring_load(&name, &Address::parse(&endpoint).unwrap()).unwrap(), Some(bob.clone()), "root finds it");

    // Alice, in her own login's session keyring, names the same context and looks for its token.
    let alice_config = tempfile::tempdir().unwrap();
    std::fs::create_dir(alice_config.path().join("zsa")).unwrap();
    std::fs::write(config_file(alice_config.path()), format!("[contexts.{name}]\nendpoint = \"{endpoint}\"\ntoken_store = \"keyring\"\n"))
        .unwrap();
    for path in [alice_config.path().to_path_buf(), alice_config.path().join("zsa"), config_file(alice_config.path())] {
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
    }
    let mut show = Command::new(BIN);
    show.args(["context", "show", &name, "--json"])
        .uid(uid)
        .gid(gid)
        .env("XDG_CONFIG_HOME", alice_config.path())
        .env("HOME", alice_config.path())
        .env_remove("ZSA_SOCKET")
        .env_remove("ZSA_TOKEN")
        .env_remove("ZSA_CONTEXT");
    in_session_keyring(&mut show, &ring, None);
    let out = show.output().unwrap();
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let shown: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(shown["token_kept"], serde_json::json!(false), "alice read root's token from her session keyring: {shown}");
}

/// Logging a context in again to another daemon keeps the new token, wherever the old one was
/// kept: with `--store file` both live in the same file, which must not be removed as the old one.
#[tokio::test(flavor = "multi_thread")]
async fn logging_in_again_elsewhere_with_store_file_keeps_the_new_token() {
    let mut d = Daemon::start();
    let alice = d.token("alice").await;
    // The same daemon by a second address: a symlink to its socket.
    let other = d.socket.with_file_name("other.sock");
    std::os::unix::fs::symlink(&d.socket, &other).unwrap();
    let config = tempfile::tempdir().unwrap();
    let name = unique("moved");
    for socket in [&d.socket, &other] {
        let endpoint = format!("unix:{}", socket.display());
        let out = zsa(
            config.path(),
            &["login", &endpoint, "--context", &name, "--token-stdin", "--store", "file"],
            &[],
            Some(&format!("{alice}\n")),
        );
        assert_eq!(code(&out), 0, "login to {endpoint} failed: {}{}", stdout(&out), stderr(&out));
    }
    let file = config.path().join("zsa/tokens").join(&name);
    assert_eq!(std::fs::read_to_string(&file).map(|t| t.trim().to_string()).ok(), Some(alice.clone()), "the new token is kept");
    let out = zsa(config.path(), &["whoami"], &[], None);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("alice"), "{}", stdout(&out));
}

/// Presents `cert` but proves the handshake with another key, as a server that copied a pinned
/// certificate (it is public) but not its private key would.
#[derive(Debug)]
struct StolenCertificate(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for StolenCertificate {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn stolen_config(cert: &Cert, key_of: &Cert) -> Arc<rustls::ServerConfig> {
    let provider = zsa::tls::provider();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_of.key.clone()));
    let signer = provider.key_provider.load_private_key(key).unwrap();
    let certified = Arc::new(rustls::sign::CertifiedKey::new(vec![cert.der.clone()], signer));
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(StolenCertificate(certified)));
    Arc::new(config)
}

/// The pin is of the certificate, but only its private key's holder can answer for it: the
/// handshake's signature is checked, so a server presenting a copy of the pinned certificate
/// (or the pinned one first in a chain led by another) is refused and gets no token.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_of_the_pinned_certificate_without_its_key_is_refused() {
    let (pinned, other) = (new_cert(), new_cert());
    let mut remote = Remote::start(POLICY, pinned.files());
    let alice = remote.d.token("alice").await;
    let config = tempfile::tempdir().unwrap();
    let name = unique("stolen");
    let _forget = Forget(name.clone(), remote.address());
    login(config.path(), &remote, &name, &alice, &pinned.fingerprint, &[]);
    assert_eq!(code(&zsa(config.path(), &["whoami"], &[], None)), 0);

    // The pinned certificate behind another leaf, with that leaf's own key: the leaf is what counts.
    remote.present(cert_files(&format!("{}{}", other.cert_pem, pinned.cert_pem), &other.key_pem));
    let out = zsa(config.path(), &["whoami"], &[], None);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains(&format!("pinned {}, now {}", pinned.fingerprint, other.fingerprint)), "{}", stderr(&out));

    // The daemon is gone; an impostor holds its port with a copy of the pinned certificate.
    remote.d.stop();
    impostor(remote.port, stolen_config(&pinned, &other));
    let out = zsa(config.path(), &["whoami", "--json"], &[], None);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("\"code\":\"untrusted_certificate\""), "{}", stderr(&out));
}
