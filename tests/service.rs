//! Running under systemd (issue 17): the shipped unit files pass `systemd-analyze verify`; the
//! real binary says READY=1 to NOTIFY_SOCKET only once its socket answers, pings the watchdog
//! while ready, says STOPPING=1 on SIGTERM; and it serves on a socket passed as systemd passes
//! one (LISTEN_FDS, fd 3), answering a connection made before it started. `/v1/health` and
//! `/v1/ready` answer anyone.

mod common;

use std::io::Write;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, code, current_user, raw_get, read_raw_answer};

/// The datagrams the daemon sends to NOTIFY_SOCKET, in order.
struct Notices {
    socket: UnixDatagram,
}

impl Notices {
    fn bind(path: &Path) -> Notices {
        let socket = UnixDatagram::bind(path).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Notices { socket }
    }

    /// The next datagram holding `wanted`, with every one before it.
    fn until(&self, wanted: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let mut buf = [0u8; 4096];
            let n = self.socket.recv(&mut buf).unwrap_or_else(|e| panic!("no {wanted} from the daemon ({e}); saw {seen:?}"));
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            let done = text.lines().any(|l| l == wanted);
            seen.push(text);
            if done {
                return seen;
            }
        }
        panic!("no {wanted} from the daemon; saw {seen:?}");
    }
}

fn policy(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("policy.toml");
    std::fs::write(&path, common::POLICY.replace("{ADMIN}", &current_user())).unwrap();
    path
}

/// In the child, between fork and exec: `fd` becomes fd 3, open across exec, as systemd passes
/// its first socket. Only async-signal-safe calls.
fn pass_as_fd_3(fd: i32) -> std::io::Result<()> {
    // SAFETY: dup2 and fcntl on fds this process holds.
    let ok = unsafe {
        if fd == 3 {
            // dup2 onto itself would keep close-on-exec.
            libc::fcntl(3, libc::F_SETFD, 0) == 0
        } else {
            libc::dup2(fd, 3) == 3
        }
    };
    if ok { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// `zsa daemon` on the test policy in `dir`, started as systemd starts a socket-activated
/// service: `fd` as fd 3, `LISTEN_FDS=1`, `LISTEN_PID` its own pid (the shell execs into it).
fn activated(dir: &Path, fd: i32, socket: &Path) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"", BIN, "daemon", "--state"])
        .arg(dir.join("state"))
        .arg("--policy")
        .arg(policy(dir))
        .arg("--socket")
        .arg(socket)
        .env("ZSA_LOG", "warn");
    // SAFETY: between fork and exec only async-signal-safe calls (`pass_as_fd_3`).
    unsafe {
        cmd.pre_exec(move || pass_as_fd_3(fd));
    }
    cmd
}

/// A child process killed when the test ends, passing or not.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_unit_files_pass_systemd_analyze_verify() {
    let Ok(analyze) = which("systemd-analyze") else {
        panic!("systemd-analyze is missing: install Debian's systemd package (.ci/run does)");
    };
    let dir = tempfile::tempdir().unwrap();
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    // As installed: the binary where ExecStart says (here, the one just built).
    let service = std::fs::read_to_string(assets.join("zsa.service")).unwrap().replace("/usr/local/bin/zsa", BIN);
    std::fs::write(dir.path().join("zsa.service"), service).unwrap();
    std::fs::copy(assets.join("zsa.socket"), dir.path().join("zsa.socket")).unwrap();
    std::fs::create_dir(dir.path().join("zsa.service.d")).unwrap();
    std::fs::copy(assets.join("zsa-runs.conf"), dir.path().join("zsa.service.d/runs.conf")).unwrap();
    let out = Command::new(analyze)
        .current_dir(dir.path())
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.path().display()))
        .args(["verify", "--man=no", "zsa.socket", "zsa.service"])
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "systemd-analyze verify failed:\n{said}");
    // Anything it says about our units is a problem, even when it exits 0.
    let ours: Vec<&str> = said.lines().filter(|l| l.contains("zsa.")).collect();
    assert!(ours.is_empty(), "systemd-analyze verify warns:\n{said}");
}

fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or(())
}

#[test]
fn ready_is_said_once_the_socket_answers_the_watchdog_is_pinged_and_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (state, socket, notify) = (dir.path().join("state"), dir.path().join("zsa.sock"), dir.path().join("notify"));
    let notices = Notices::bind(&notify);
    // WATCHDOG_PID must be the daemon's own pid, as systemd sets it: the shell execs into it.
    let mut child = Killed(
        Command::new("sh")
            .args(["-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\"", BIN, "daemon", "--state"])
            .arg(&state)
            .arg("--policy")
            .arg(policy(dir.path()))
            .arg("--socket")
            .arg(&socket)
            .env("NOTIFY_SOCKET", &notify)
            .env("WATCHDOG_USEC", "2000000")
            .env("ZSA_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let before = notices.until("READY=1");
    assert_eq!(before.len(), 1, "nothing before READY=1: {before:?}");
    // The moment READY=1 arrives, the socket answers and the daemon is ready.
    let (status, body) = raw_get(&mut UnixStream::connect(&socket).unwrap(), "/v1/ready");
    assert!(status.contains("200"), "{status} {body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], true, "{body}");
    // Pinged at half the interval while ready.
    notices.until("WATCHDOG=1");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.0.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    notices.until("STOPPING=1");
    assert!(child.0.wait().unwrap().success());
}

#[test]
fn a_socket_passed_as_systemd_passes_it_is_served_even_a_connection_made_before_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let passed = dir.path().join("passed.sock");
    let listener = UnixListener::bind(&passed).unwrap();
    // A client that connected while the daemon was not running yet: its call waits in the backlog.
    let mut early = UnixStream::connect(&passed).unwrap();
    write!(early, "GET /v1/health HTTP/1.1\r\nHost: zsa\r\nConnection: close\r\n\r\n").unwrap();
    let own_socket = dir.path().join("not-bound.sock");
    let mut cmd = activated(dir.path(), std::os::fd::AsRawFd::as_raw_fd(&listener), &own_socket);
    let mut child = Killed(cmd.stdout(Stdio::null()).spawn().unwrap());
    let (status, body) = read_raw_answer(&mut early);
    assert!(status.contains("200") && body.contains("\"ok\""), "{status} {body}");
    // Every call on it is served, as the account that connects.
    let client = zsa::client::Client::new(&passed, None).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let me = runtime.block_on(client.whoami()).unwrap();
    assert_eq!(me.user, current_user());
    assert!(!own_socket.exists(), "the daemon bound its own --socket too");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.0.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(child.0.wait().unwrap().success());
    assert!(passed.exists(), "the socket systemd passed is systemd's to remove");
}

#[test]
fn anything_but_one_listening_unix_socket_passed_is_refused_saying_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = std::fs::File::create(dir.path().join("not-a-socket")).unwrap();
    let out = activated(dir.path(), std::os::fd::AsRawFd::as_raw_fd(&file), &dir.path().join("zsa.sock")).output().unwrap();
    assert_eq!(code(&out), 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a listening Unix stream socket; zsa.socket must say ListenStream=/run/zsa/zsa.sock"), "{err}");
    assert!(!dir.path().join("state").exists(), "nothing was created");
}

/// Liveness and readiness answer anyone, even an account the policy does not know, and say
/// nothing but whether and what is wrong.
#[test]
fn health_and_ready_answer_anyone_and_say_nothing_sensitive() {
    let d = common::Daemon::start();
    for path in ["/v1/health", "/v1/ready"] {
        let mut stream = UnixStream::connect(&d.socket).unwrap();
        let (status, body) = raw_get(&mut stream, path);
        assert!(status.contains("200"), "{path}: {status} {body}");
        assert!(!body.contains(&d.state.display().to_string()) && !body.contains("carol"), "{body}");
    }
    let mut stream = UnixStream::connect(&d.socket).unwrap();
    let (_, body) = raw_get(&mut stream, "/v1/ready");
    let ready: zsa::model::wire::Readiness = serde_json::from_str(&body).unwrap();
    assert!(
        ready.ready && ready.checks.iter().any(|c| c.name == "store" && c.ok) && ready.checks.iter().any(|c| c.name == "deadlines" && c.ok)
    );
    // `zsa ready`, as nobody the policy knows (through su, when the tests run as root).
    let mut ready = Command::new(BIN);
    ready.args(["ready", "--socket"]).arg(&d.socket).env_remove("ZSA_TOKEN");
    if nix::unistd::geteuid().is_root() {
        ready = Command::new("su");
        ready.args(["nobody", "-s", "/bin/sh", "-c"]).arg(format!("exec {BIN} ready --socket {}", d.socket.display()));
    } else {
        eprintln!("not root: `zsa ready` asked as this account, not as one the policy does not know (nobody)");
    }
    let out = ready.output().unwrap();
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ready");
}

/// `--log-format json`: every line is one JSON object; each request is answered in a line that
/// carries its span (method, path, caller, the token's id, status, latency), and no token is
/// ever written, even at trace level.
#[test]
fn the_json_log_has_one_line_per_request_with_its_caller_and_never_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let (state, socket, log) = (dir.path().join("state"), dir.path().join("zsa.sock"), dir.path().join("daemon.log"));
    let child = common::daemon_command(&state, &policy(dir.path()), &socket)
        .args(["--log-format", "json"])
        .env("ZSA_LOG", "trace")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    common::wait_for_socket(&socket);
    let zsa = |token: Option<&str>, args: &[&str]| common::cli_on(&socket, token, args);
    let out = zsa(None, &["admin", "token", "issue", "dave", "--ttl", "1d"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(code(&zsa(Some(&token), &["whoami"])), 0);
    assert_eq!(code(&zsa(Some(&format!("{token}x")), &["whoami"])), 1);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.0.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    child.0.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(&token), "a token was written to the log");
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object ({e}): {l}"))).collect();
    let answered = |path: &str, status: u64| {
        lines.iter().find(|l| l["fields"]["message"] == "answered" && l["span"]["path"] == path && l["span"]["status"] == status).cloned()
    };
    let whoami = lines
        .iter()
        .find(|l| l["fields"]["message"] == "answered" && l["span"]["path"] == "/v1/whoami" && l["span"]["token"] == "T1")
        .unwrap_or_else(|| panic!("no answered line for whoami with the token:\n{text}"));
    assert_eq!(
        (&whoami["span"]["method"], &whoami["span"]["caller"], &whoami["span"]["status"]),
        (&"GET".into(), &"dave".into(), &200.into())
    );
    assert!(whoami["span"]["ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{whoami}");
    let refused = answered("/v1/whoami", 401).unwrap_or_else(|| panic!("no answered line for the refused token:\n{text}"));
    assert!(refused["span"].get("caller").is_none(), "nobody is named for a token that is not valid: {refused}");
    let issued = answered("/v1/admin/tokens", 201).or_else(|| answered("/v1/admin/tokens", 200));
    assert_eq!(issued.unwrap_or_else(|| panic!("{text}"))["span"]["caller"], current_user().as_str());
}
