//! The daemon's TCP listeners: real TLS (a certificate from `zsa admin tls init`, rustls on both
//! sides), real HTTP with reqwest, on 127.0.0.1 ports the system chose. Over the network a bearer
//! token is the only identity; plain HTTP gets nothing; a key others can read is refused; the
//! config file is checked line by line; each network address holds a capped number of
//! connections, and idle ones are closed.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{BIN, code, current_user, stderr, stdout};
use tokio::io::AsyncReadExt;
use zsa::client::Client;
use zsa::daemon::listen::LimitSettings;
use zsa::daemon::{DaemonConfig, DaemonHandle, TlsListener, start};
use zsa::model::TokenScope;
use zsa::model::wire::IssueToken;

/// A certificate and key `zsa admin tls init` made, and what it printed.
struct Pair {
    cert: PathBuf,
    key: PathBuf,
    pem: Vec<u8>,
    fingerprint: String,
}

/// Runs `zsa admin tls init` for 127.0.0.1 and localhost into `dir`.
fn tls_init(dir: &Path) -> Pair {
    let out = Command::new(BIN)
        .args(["admin", "tls", "init", "--json", "--name", "localhost", "--name", "127.0.0.1", "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let made: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let (cert, key) = (PathBuf::from(made["cert"].as_str().unwrap()), PathBuf::from(made["key"].as_str().unwrap()));
    Pair { pem: std::fs::read(&cert).unwrap(), cert, key, fingerprint: made["fingerprint"].as_str().unwrap().to_string() }
}

/// A daemon in this process with a TLS listener on a port of 127.0.0.1 the system picks.
struct Net {
    _dir: tempfile::TempDir,
    pair: Pair,
    handle: DaemonHandle,
}

impl Net {
    async fn start(limits: LimitSettings) -> Net {
        Self::start_on(limits, Arc::new(zsa::clock::SystemClock)).await
    }

    async fn start_on(limits: LimitSettings, clock: Arc<dyn zsa::clock::Clock>) -> Net {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.toml");
        std::fs::write(&policy, common::POLICY.replace("{ADMIN}", &current_user())).unwrap();
        let pair = tls_init(&dir.path().join("tls"));
        let config = DaemonConfig {
            state_dir: dir.path().join("state"),
            policy,
            socket: dir.path().join("zsa.sock"),
            listeners: vec![TlsListener { address: "127.0.0.1:0".parse().unwrap(), cert: pair.cert.clone(), key: pair.key.clone() }],
            limits,
            ..Default::default()
        };
        let handle = start(config, clock).await.expect("the daemon starts");
        assert_eq!(handle.tcp_addrs.len(), 1);
        assert_ne!(handle.tcp_addrs[0].port(), 0, "the port the system chose is known");
        Net { _dir: dir, pair, handle }
    }

    fn addr(&self) -> SocketAddr {
        self.handle.tcp_addrs[0]
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr().port())
    }

    /// A token for `user`, issued by the admin over the Unix socket.
    async fn token(&self, user: &str) -> String {
        Client::new(&self.handle.socket, None).unwrap().issue_token(user).await.unwrap().token
    }

    /// An HTTPS client that trusts this daemon's certificate (and no pool: each call its own
    /// connection, so none is held between calls).
    fn https(&self) -> reqwest::Client {
        self.https_from(None)
    }

    fn https_from(&self, local: Option<IpAddr>) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&self.pair.pem).unwrap()])
            .pool_max_idle_per_host(0)
            .local_address(local)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// A TLS connection that completes its handshake and then says nothing.
    async fn idle_tls(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&self.pair.pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        use rustls::pki_types::pem::PemObject;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(self.addr()).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("the handshake completes")
    }
}

async fn json(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// Over TLS a token names the caller; without one, or with a bad one, the caller is nobody (401,
/// saying why): never the daemon's own account, which here is the admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_token_is_the_only_identity() {
    let net = Net::start(LimitSettings::default()).await;
    // The fingerprint printed is the SHA-256 of the certificate the daemon serves.
    let der = rustls::pki_types::CertificateDer::pem_slice_iter(&net.pair.pem).next().unwrap().unwrap();
    use rustls::pki_types::pem::PemObject;
    let sha = sha2::Sha256::digest(der.as_ref());
    use sha2::Digest;
    let hex: Vec<String> = sha.iter().map(|b| format!("{b:02X}")).collect();
    assert_eq!(net.pair.fingerprint, format!("SHA256:{}", hex.join(":")));
    assert_eq!(net.pair.fingerprint, zsa::tls::fingerprint(der.as_ref()));

    let token = net.token("dave").await;
    let (status, me) = json(net.https().get(net.url("/v1/whoami")).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!((status, me["user"].as_str(), me["via"].as_str()), (200, Some("dave"), Some("token")), "{me}");

    let (status, body) = json(net.https().get(net.url("/v1/whoami")).send().await.unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthenticated")), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("over the network") && message.contains("bearer token"), "{message}");
    // Nor does a command get through as the daemon's account.
    let (status, _) = json(net.https().get(net.url("/v1/admin/tokens")).send().await.unwrap()).await;
    assert_eq!(status, 401);

    let (status, body) = json(net.https().get(net.url("/v1/whoami")).bearer_auth("zsa_0000").send().await.unwrap()).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("not one the daemon issued"), "{body}");

    // A client that does not trust the certificate gets no answer at all.
    let untrusting = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    assert!(untrusting.get(net.url("/v1/whoami")).send().await.is_err());
    // The socket is unchanged: there the kernel names the admin.
    assert_eq!(Client::new(&net.handle.socket, None).unwrap().whoami().await.unwrap().user, current_user());
    net.handle.shutdown().await;
}

/// Over TLS as on the socket, a token that expired (by the daemon's clock), was revoked, or is
/// out of its scope is refused with its own reason, and one that is none of those still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_revoked_or_out_of_scope_token_is_refused_over_tls() {
    use chrono::TimeZone;
    let clock = Arc::new(zsa::clock::ManualClock::new(chrono::Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap()));
    let net = Net::start_on(LimitSettings::default(), clock.clone()).await;
    let admin = Client::new(&net.handle.socket, None).unwrap();
    let issue = |ttl_secs: Option<u64>, scope: TokenScope| {
        let asked = IssueToken { user: "dave".into(), ttl_secs, scope, ..Default::default() };
        let admin = admin.clone();
        async move { admin.issue_token_with(&asked).await.unwrap() }
    };
    let (short, revoked, gate) =
        (issue(Some(3600), TokenScope::All).await, issue(None, TokenScope::All).await, issue(None, TokenScope::Check).await);
    let whoami = |token: String| {
        let request = net.https().get(net.url("/v1/whoami")).bearer_auth(token);
        async move { json(request.send().await.unwrap()).await }
    };
    for token in [&short, &revoked, &gate] {
        assert_eq!(whoami(token.token.clone()).await.0, 200);
    }

    // Out of scope: a check-only token cannot ask for anything.
    let asked = serde_json::json!({"task": "restart"});
    let response = net.https().post(net.url("/v1/requests")).bearer_auth(&gate.token).json(&asked).send().await.unwrap();
    let (status, body) = json(response).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("token_scope")), "{body}");
    let (status, body) = json(net.https().get(net.url("/v1/check?task=restart")).bearer_auth(&gate.token).send().await.unwrap()).await;
    assert_eq!((status, body["allowed"].as_bool()), (200, Some(false)), "check is within its scope: {body}");

    admin.revoke_token(revoked.id).await.unwrap();
    let (status, body) = whoami(revoked.token.clone()).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("was revoked"), "{body}");

    clock.advance(chrono::Duration::seconds(3601));
    let (status, body) = whoami(short.token.clone()).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("expired at"), "{body}");
    assert_eq!(whoami(gate.token.clone()).await.0, 200, "a token that is none of those still works");
    net.handle.shutdown().await;
}

/// Bad tokens over the network are counted by address: the tenth within a minute from
/// 127.0.0.1 blocks that address (429, even for a good token, audited once naming it), while
/// 127.0.0.2 and the socket are still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_over_the_network_block_their_address_only() {
    let net = Net::start(LimitSettings::default()).await;
    let good = net.token("dave").await;
    let whoami = |from: &str, token: &str| {
        let request = net.https_from(Some(from.parse().unwrap())).get(net.url("/v1/whoami")).bearer_auth(token);
        async move { json(request.send().await.unwrap()).await }
    };
    for n in 0..9 {
        assert_eq!(whoami("127.0.0.1", &format!("zsa_guess{n}")).await.0, 401);
    }
    let (status, body) = whoami("127.0.0.1", "zsa_guess9").await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("came from address 127.0.0.1 (10 within 1m)"), "{body}");
    assert_eq!(whoami("127.0.0.1", &good).await.0, 429, "the address is blocked, good token or not");
    assert_eq!(whoami("127.0.0.2", &good).await.0, 200, "another address is not");

    let admin = Client::new(&net.handle.socket, None).unwrap();
    let events = admin.audit(&zsa::client::AuditParams { limit: Some(1000), ..Default::default() }).await.unwrap();
    let sources: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.change {
            zsa::model::Change::AuthThrottled { source, .. } => Some(source.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(sources, ["address 127.0.0.1"]);
    net.handle.shutdown().await;
}

/// Plain HTTP sent to the TLS port gets no HTTP answer: the handshake fails and the connection
/// closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_tls_port_gets_nothing() {
    let net = Net::start(LimitSettings::default()).await;
    let addr = net.addr();
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /v1/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = Vec::new();
        let ended = s.read_to_end(&mut answer);
        (ended.map_err(|e| e.kind()), answer)
    })
    .await
    .unwrap();
    let (ended, bytes) = answer;
    assert!(
        !matches!(ended, Err(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "the connection was left open: {ended:?}"
    );
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("HTTP/") && !text.contains("whoami") && !text.contains("user"), "{text:?}");
    // At most a TLS alert record (content type 21).
    assert!(bytes.is_empty() || bytes[0] == 0x15, "{bytes:?}");
    net.handle.shutdown().await;
}

/// Each network address holds at most its cap of connections, counted before the handshake; one
/// more is refused with the JSON error, while another address, and the socket, still get in;
/// a connection given back makes room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_address_holds_at_most_its_cap_of_connections() {
    let net = Net::start(LimitSettings { per_peer: Some(4), ..Default::default() }).await;
    let token = net.token("dave").await;
    // Two that finished their handshake and two that never started one.
    let mut held_tls = vec![net.idle_tls().await, net.idle_tls().await];
    let mut held_tcp =
        vec![tokio::net::TcpStream::connect(net.addr()).await.unwrap(), tokio::net::TcpStream::connect(net.addr()).await.unwrap()];
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (status, body) = json(net.https().get(net.url("/v1/whoami")).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("too_many_connections")), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("address 127.0.0.1 already holds 4 connections"), "{message}");

    // Another address is not held back by this one's connections.
    let other = net.https_from(Some("127.0.0.2".parse().unwrap()));
    let (status, me) = json(other.get(net.url("/v1/whoami")).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!((status, me["user"].as_str()), (200, Some("dave")), "{me}");
    assert!(Client::new(&net.handle.socket, None).unwrap().whoami().await.is_ok());

    // One given back (a TLS one, then a bare one): room for exactly one more again.
    drop(held_tls.pop());
    drop(held_tcp.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = json(net.https().get(net.url("/v1/whoami")).bearer_auth(&token).send().await.unwrap()).await;
        if status == 200 {
            break;
        }
        assert!(status == 429 && Instant::now() < deadline, "{status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop((held_tls, held_tcp));
    net.handle.shutdown().await;
}

/// Waits until the peer closes `s`; how long that took.
async fn closed_after<S: tokio::io::AsyncRead + Unpin>(s: &mut S, within: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(within.saturating_sub(start.elapsed()), s.read(&mut buf)).await {
            Err(_) => return Err(format!("still open after {within:?}")),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// A connection that says nothing for the idle timeout (set short here; the header timeout is
/// long, so only the idle timeout can close them) is closed, with or without a handshake; an
/// event stream over TLS delivers although nothing moves on it for longer than that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_the_event_stream_works_over_tls() {
    let idle = Duration::from_secs(2);
    let limits = LimitSettings { idle_timeout: Some(idle), header_timeout: Some(Duration::from_secs(120)), ..Default::default() };
    let net = Net::start(limits).await;
    let token = net.token("dave").await;

    let mut events = net.https().get(net.url("/v1/events")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(events.status(), 200);
    let mut tls = net.idle_tls().await;
    let mut bare = tokio::net::TcpStream::connect(net.addr()).await.unwrap();
    let (tls_closed, bare_closed) = tokio::join!(closed_after(&mut tls, idle * 10), closed_after(&mut bare, idle * 10));
    for closed in [tls_closed, bare_closed] {
        let after = closed.expect("an idle connection is closed");
        assert!(after >= idle - Duration::from_millis(500), "closed after {after:?}, before the idle timeout");
    }

    // The stream, quiet all that time, still delivers: a request dave makes over TLS.
    let new = serde_json::json!({ "task": "restart" });
    let (status, made) = json(net.https().post(net.url("/v1/requests")).bearer_auth(&token).json(&new).send().await.unwrap()).await;
    assert_eq!(status, 201, "{made}");
    let id = made["request"]["id"].as_str().unwrap().to_string();
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = events.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("event: request_created") && seen.contains(&format!("\"{id}\"")) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "the event stream over TLS delivers the request: {seen}");
    drop(events);
    net.handle.shutdown().await;
}

/// A free port on 127.0.0.1 for the real binary (which is told a port, not asked for one).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The real `zsa daemon` on a config file: it listens with TLS where the file says, with the
/// file's limits; the socket still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_listens_where_its_config_file_says() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), common::POLICY.replace("{ADMIN}", &current_user())).unwrap();
    let pair = tls_init(&dir.path().join("tls"));
    let port = free_port();
    let config = dir.path().join("daemon.toml");
    std::fs::write(
        &config,
        format!(
            "state = \"state\"\npolicy = \"policy.toml\"\nsocket = \"zsa.sock\"\n\n[[listen]]\naddress = \"127.0.0.1:{port}\"\ntls_cert = \"tls/cert.pem\"\ntls_key = \"tls/key.pem\"\n\n[limits]\nmax_connections_per_peer = 1\n"
        ),
    )
    .unwrap();
    /// Kills the daemon however the test ends.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child =
        Killed(Command::new(BIN).args(["daemon", "--config"]).arg(&config).env("ZSA_LOG", "warn").stdout(Stdio::null()).spawn().unwrap());
    let socket = dir.path().join("zsa.sock");
    common::wait_for_socket_while(&socket, || child.0.try_wait().ok().flatten().map(|s| format!("the daemon exited ({s})")));
    let token = Client::new(&socket, None).unwrap().issue_token("carol").await.unwrap().token;
    let https = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pair.pem).unwrap()])
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!("https://localhost:{port}/v1/whoami");
    // The file's limit is in force: while one connection is held, the next is refused.
    let held = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = json(https.get(&url).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(status, 429, "{body}");
    drop(held);
    // Then the listener answers, with TLS, as the token's user.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, me) = json(https.get(&url).bearer_auth(&token).send().await.unwrap()).await;
        if status == 200 {
            assert_eq!(me["user"].as_str(), Some("carol"), "{me}");
            break;
        }
        assert!(status == 429 && Instant::now() < deadline, "{status} {me}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(child);
}

/// A key file others can read is refused at start, saying chmod 600, and so is a TCP listener
/// without a certificate and key; neither starts anything or touches the state.
#[test]
fn a_key_others_can_read_or_a_listener_without_tls_is_refused_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), common::POLICY.replace("{ADMIN}", &current_user())).unwrap();
    let pair = tls_init(&dir.path().join("tls"));
    let state = dir.path().join("state");
    let daemon = |extra: &[&str]| {
        let mut cmd = common::daemon_command(&state, &dir.path().join("policy.toml"), &dir.path().join("zsa.sock"));
        cmd.args(extra).stdout(Stdio::piped()).stderr(Stdio::piped());
        // A daemon that starts is a failure here, and must not hang the test.
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!("the daemon started and kept running: {}", stderr(&out));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    };
    let (cert, key) = (pair.cert.to_str().unwrap(), pair.key.to_str().unwrap());
    let listen = format!("127.0.0.1:{}", free_port());

    std::fs::set_permissions(&pair.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = daemon(&["--listen", &listen, "--tls-cert", cert, "--tls-key", key]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("chmod 600 {key}")) && stderr(&out).contains("the TLS key"), "{}", stderr(&out));
    assert!(!state.exists(), "nothing was started");

    let out = daemon(&["--listen", &listen]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("never serves plain HTTP over TCP") && stderr(&out).contains("--tls-cert"), "{}", stderr(&out));
    let out = daemon(&["--listen", &listen, "--tls-cert", cert]);
    assert!(code(&out) == 1 && stderr(&out).contains("has no TLS key"), "{}", stderr(&out));
    assert!(!state.exists(), "nothing was started");

    // Once private, the same key starts the daemon.
    std::fs::set_permissions(&pair.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = daemon(&["--listen", &listen, "--tls-cert", cert, "--tls-key", key, "--check-config"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("listen {listen} with TLS, certificate {}", pair.fingerprint)), "{}", stdout(&out));
}

/// `zsa daemon --check-config` says ok for a good file and names the line of each problem in a
/// bad one: an unknown key, an address that is no address, a missing key file, a key others can
/// read, a key that is not the certificate's; a config file others can write is not read.
#[test]
fn check_config_names_the_line_of_each_problem() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), common::POLICY.replace("{ADMIN}", &current_user())).unwrap();
    let pair = tls_init(&dir.path().join("tls"));
    let other = tls_init(&dir.path().join("other"));
    let config = dir.path().join("daemon.toml");
    let check = |text: &str| {
        std::fs::write(&config, text).unwrap();
        Command::new(BIN).args(["daemon", "--check-config", "--config"]).arg(&config).env_remove("ZSA_STATE").output().unwrap()
    };
    let shown = config.display().to_string();
    let good = "state = \"state\"\npolicy = \"policy.toml\"\nsocket = \"zsa.sock\"\n[[listen]]\naddress = \"127.0.0.1:8443\"\ntls_cert = \"tls/cert.pem\"\ntls_key = \"tls/key.pem\"\n";
    let out = check(good);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).starts_with(&format!("{shown}: ok")) && stdout(&out).contains(&pair.fingerprint), "{}", stdout(&out));
    assert!(!dir.path().join("state").exists() && !dir.path().join("zsa.sock").exists(), "a check creates nothing");

    let out = check(&format!("{good}[limits]\nidle_timout = \"5s\"\n"));
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains(&format!("{shown}:9: unknown field `idle_timout`")), "{}", stderr(&out));

    let out = check(&good.replace("127.0.0.1:8443", "zsa.example.com:8443"));
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains(&format!("{shown}:5: address: 'zsa.example.com:8443' is not an IP address and port")),
        "{}",
        stderr(&out)
    );

    let out = check(&good.replace("tls/key.pem", "tls/nokey.pem"));
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains(&format!("{shown}:4: the listener on 127.0.0.1:8443: cannot read")), "{}", stderr(&out));

    let out = check(&good.replace("tls/key.pem", other.key.to_str().unwrap()));
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains(&format!("{shown}:4:")) && stderr(&out).contains("does not belong to the certificate"),
        "{}",
        stderr(&out)
    );

    // A config file others can write is not read: it chooses the policy.
    std::fs::write(&config, good).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = Command::new(BIN).args(["daemon", "--check-config", "--config"]).arg(&config).output().unwrap();
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("the daemon's config file") && stderr(&out).contains("every local account can write to it"),
        "{}",
        stderr(&out)
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();

    std::fs::set_permissions(&pair.key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = check(good);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains(&format!("{shown}:4:")) && stderr(&out).contains("chmod 600"), "{}", stderr(&out));
    assert!(stderr(&out).contains("the daemon would not start"), "{}", stderr(&out));
}

/// `zsa admin tls init` writes the key 0600, never over a file that is there, and its
/// certificate names what it was asked to.
#[test]
fn tls_init_writes_a_private_key_and_never_over_a_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let pair = tls_init(&tls);
    assert_eq!(std::fs::metadata(&pair.key).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&tls).unwrap().permissions().mode() & 0o777, 0o700);
    let key_before = std::fs::read(&pair.key).unwrap();
    let out = Command::new(BIN).args(["admin", "tls", "init", "--dir"]).arg(&tls).output().unwrap();
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("is already there and is never written over"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&pair.key).unwrap(), key_before);
    assert_eq!(std::fs::read(&pair.cert).unwrap(), pair.pem);
    // The text form prints the same fingerprint.
    let out = Command::new(BIN).args(["admin", "tls", "init", "--dir"]).arg(dir.path().join("again")).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let cert = std::fs::read(dir.path().join("again/cert.pem")).unwrap();
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::pem_slice_iter(&cert).next().unwrap().unwrap();
    assert!(stdout(&out).contains(&format!("fingerprint: {}", zsa::tls::fingerprint(der.as_ref()))), "{}", stdout(&out));
}
